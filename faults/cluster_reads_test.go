//go:build cluster

package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// The reads that go in one round trip mix Cluster slots: the idempotency
// record and the customer (RememberFor), the customer's keys and an
// address's suppression record (LoadSendStateClaiming). On a Cluster they
// still answer as on one server, whichever nodes the keys live on.
func TestClusterOneRoundTripReads(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: startCluster(t)})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	st := redisstore.New(rdb, nil)
	prefs := redisstore.NewPrefs(rdb, nil)
	const customers = 12 // enough for their keys to span the three nodes
	for i := range customers {
		id := custID(i)
		_, _, err := st.UpsertCustomer(ctx, herald.Customer{ID: id, Email: id + "@example.com"})
		require.NoError(t, err)
		if i%2 == 0 {
			require.NoError(t, prefs.Suppress(ctx, herald.ChannelEmail, id+"@example.com", "smtp 550 5.1.1"))
		}
	}
	for i := range customers {
		id := custID(i)
		got, err := st.RememberFor(ctx, "app\x00/v1/messages\x00k-"+id, redisstore.Idempotent{Fingerprint: "fp"}, time.Minute, id)
		require.NoError(t, err)
		require.False(t, got.Seen)
		require.True(t, got.CustomerFound, id)
		got, err = st.RememberFor(ctx, "app\x00/v1/messages\x00k-"+id, redisstore.Idempotent{Fingerprint: "fp2"}, time.Minute, id+"-gone")
		require.NoError(t, err)
		require.True(t, got.Seen)
		require.Equal(t, "fp", got.Record.Fingerprint)
		require.False(t, got.CustomerFound)

		supp := redisstore.SuppressKey(herald.ChannelEmail, id+"@example.com")
		state, cl, err := st.LoadSendStateClaiming(ctx, id, redisstore.PrefsKey(id), "", time.Time{},
			redisstore.ClaimAsk{DeliveryID: "m1:email", TTL: time.Minute, SuppressKey: supp})
		require.NoError(t, err)
		require.Equal(t, id+"@example.com", state.Customer.Email)
		require.True(t, cl.Held, id)
		suppressed, err := cl.SuppressedAt(ctx, supp)
		require.NoError(t, err)
		require.Equal(t, i%2 == 0, suppressed, id)
		cl.Release(ctx)
	}
}
