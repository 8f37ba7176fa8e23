package redisstore_test

import (
	"time"

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
	require.NoError(t, b.st.BeginPage(b.ctx, "launch", 0, 2))
	rec, _, err = b.st.Broadcast(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, int64(0), rec.Inflight)
	require.NoError(t, b.st.EndPage(b.ctx, "launch", 2, map[string]int64{"queued": 2}, nil))
	require.NoError(t, b.rdb.HIncrBy(b.ctx, "herald:{b:launch}:meta", "sent:email", 1).Err()) // as a send's record counts it
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

// A cancel that comes while the fan-out queues a page counts the audience
// it had not reached at once, keeps that page's customers apart to be
// counted one by one, and every message is counted once, whoever counts
// it and however often.
func TestBroadcastCountsEachMessageOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	audience := []string{"a", "b", "c", "d", "e", "f"}
	_, _, err := b.st.CreateBroadcast(b.ctx, "launch", "fp", []byte(`{"b":{"id":"launch"}}`), redisstore.BroadcastScheduled, audience)
	require.NoError(t, err)
	_, err = b.st.StartBroadcast(b.ctx, "launch")
	require.NoError(t, err)
	require.NoError(t, b.st.BeginPage(b.ctx, "launch", 0, 2))
	require.NoError(t, b.st.EndPage(b.ctx, "launch", 2, map[string]int64{"queued": 2}, nil))
	require.NoError(t, b.st.BeginPage(b.ctx, "launch", 2, 4)) // c and d, then the cancel

	info, err := b.st.Cancel(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, int64(2), info.Counts.Cancelled, "e and f, never reached; c and d are counted one by one")
	msg := func(c string) string { return "b_launch_" + c }
	_, _, err = b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c", Email: "c@example.com"})
	require.NoError(t, err)
	page, err := b.st.CancelledPage(b.ctx, "launch", msg)
	require.NoError(t, err)
	require.Equal(t, []redisstore.PageCustomer{{ID: "c"}, {ID: "d", Gone: true}}, page)

	// The page ends after the cancel: d, gone, is skipped.
	require.NoError(t, b.st.EndPage(b.ctx, "launch", 4, map[string]int64{"queued": 1}, []string{msg("d")}))
	// c's message counted by a sweep, then by its task, twice (its
	// worker died after counting).
	for range 3 {
		_, err = b.st.TallyOnce(b.ctx, "launch", "cancelled", msg("c"))
		require.NoError(t, err)
	}
	// d is skipped once, whoever finds it gone; b's message is cancelled
	// from the queue, in a batch with c.
	n, err := b.st.TallyOnce(b.ctx, "launch", "skipped", msg("d"))
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = b.st.TallyOnce(b.ctx, "launch", "cancelled", msg("b"), msg("c"))
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	require.NoError(t, b.st.DropCancelledPage(b.ctx, "launch"))

	info, err = b.st.BroadcastInfo(b.ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, int64(4), info.Counts.Cancelled, "b, c, e and f")
	require.Equal(t, int64(1), info.Counts.Skipped, "d")
	marks, err := b.rdb.HKeys(b.ctx, "herald:{b:launch}:tallied").Result()
	require.NoError(t, err)
	require.Len(t, marks, 3)
	for _, m := range marks {
		require.Len(t, m, 8, "a digest, not the customer's ID")
	}
	ttl, err := b.rdb.TTL(b.ctx, "herald:{b:launch}:tallied").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 24*time.Hour, "the marks expire, after any message could still run")
	n, err = b.rdb.Exists(b.ctx, "herald:{b:launch}:page", "herald:{b:launch}:audience").Result()
	require.NoError(t, err)
	require.Zero(t, n)

	// A broadcast that is gone counts nothing.
	n, err = b.st.TallyOnce(b.ctx, "nope", "cancelled", "b_nope_a")
	require.NoError(t, err)
	require.Zero(t, n)
	n, err = b.rdb.Exists(b.ctx, "herald:{b:nope}:meta").Result()
	require.NoError(t, err)
	require.Zero(t, n)
}
