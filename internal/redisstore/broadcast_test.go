package redisstore_test

import (
	"encoding/json"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/stretchr/testify/require"
)

func TestCustomerIndex(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"b", "a", "c"} {
		_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: id})
		require.NoError(t, err)
	}
	// A customer stored before the index existed.
	raw, _ := json.Marshal(herald.Customer{ID: "old"})
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.Key("old", "customer"), raw, 0).Err())
	_, err := b.st.DeleteCustomer(b.ctx, "b")
	require.NoError(t, err)

	ids, err := b.st.CustomerIDs(b.ctx, "", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c"}, ids, "ID order; erased customers leave the index")
	require.NoError(t, b.st.EnsureCustomerIndex(b.ctx))
	ids, err = b.st.CustomerIDs(b.ctx, "", 10)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c", "old"}, ids, "the one-off scan adds older customers")
	ids, err = b.st.CustomerIDs(b.ctx, "a", 1)
	require.NoError(t, err)
	require.Equal(t, []string{"c"}, ids, "a page starts after the cursor")

	profiles, gone, err := b.st.Profiles(b.ctx, []string{"a", "b"})
	require.NoError(t, err)
	require.Len(t, profiles, 1)
	require.Equal(t, []string{"b"}, gone)
}

func TestBroadcastRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec, created, err := b.st.CreateBroadcast(b.ctx, "launch", "fp1", []byte(`{"b":{"id":"launch"}}`), redisstore.BroadcastScheduled, []string{"a", "b", "c"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, int64(3), rec.Total)
	again, created, err := b.st.CreateBroadcast(b.ctx, "launch", "fp2", []byte(`{}`), redisstore.BroadcastScheduled, []string{"x"})
	require.NoError(t, err)
	require.False(t, created, "the ID is taken")
	require.Equal(t, "fp1", again.Fingerprint)
	keys, err := b.rdb.Keys(b.ctx, "herald:{b:launch}:audience*").Result()
	require.NoError(t, err)
	require.Equal(t, []string{"herald:{b:launch}:audience"}, keys, "the refused audience is not left behind")

	st, err := b.st.StartBroadcast(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, redisstore.BroadcastRunning, st)
	page, err := b.st.AudiencePage(b.ctx, "launch", 1, 5)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "c"}, page)
	require.NoError(t, b.st.BeginPage(b.ctx, "launch", 0))
	rec, _, err = b.st.Broadcast(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, int64(0), rec.Inflight)
	require.NoError(t, b.st.EndPage(b.ctx, "launch", 2, map[string]int64{"queued": 2}))
	require.NoError(t, b.st.CountBroadcast(b.ctx, "launch", "sent:email"))
	info, err := b.st.Cancel(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, redisstore.BroadcastCancelled, info.Status)
	require.Equal(t, int64(1), info.Counts.Cancelled, "the customer the walk had not reached")
	require.Equal(t, map[string]int64{"email": 1}, info.Counts.Sent)
	require.NoError(t, b.st.FinishBroadcast(b.ctx, "launch"))
	info, err = b.st.BroadcastInfo(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, redisstore.BroadcastCancelled, info.Status, "a cancelled broadcast stays cancelled")
	n, err := b.rdb.Exists(b.ctx, "herald:{b:launch}:audience").Result()
	require.NoError(t, err)
	require.Zero(t, n, "the audience list is dropped")
	_, err = b.st.BroadcastInfo(b.ctx, "nope")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err))
}
