package redisstore_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/stretchr/testify/require"
)

// Counters land in the hour they were made, expire, and are summed over the
// hours asked for; gauges are what is true now.
func TestWorkflowStats(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hour := start.Truncate(time.Hour)
	count := func(at time.Time, cs ...redisstore.Count) {
		t.Helper()
		require.NoError(t, b.st.Count(b.ctx, at, cs...))
	}
	c := func(version, step, name string) redisstore.Count {
		return redisstore.Count{Workflow: "w", Version: version, Step: step, Name: name}
	}
	count(hour.Add(-30*time.Hour), c("v1", "", "started"), c("v1", "a", "entered")) // outside 24 h
	count(hour.Add(-2*time.Hour), c("v1", "", "started"), c("v1", "a", "entered"), c("v1", "a", "sent:email"))
	count(hour.Add(10*time.Minute), c("v2", "", "started"), c("v2", "a", "entered"), c("v2", "a", "sent:slack"),
		c("v2", "a", "suppressed:opted_out_topic"), c("v2", "b|odd", "exited:cancelled"), c("v2", "", "exited"))
	count(hour, redisstore.Count{Workflow: "w", Version: "v2", Name: "running", N: 2, Gauge: true},
		redisstore.Count{Workflow: "w", Version: "v2", Step: "b|odd", Name: "waiting", N: 1, Gauge: true},
		redisstore.Count{Workflow: "w", Version: "v2", Name: "running", N: -1, Gauge: true})

	st, err := b.st.WorkflowStats(b.ctx, "w", []string{"a", "b|odd", "c"}, hour.Add(-24*time.Hour), hour.Add(30*time.Minute))
	require.NoError(t, err)
	require.Equal(t, redisstore.JourneyNumbers{Started: 2, Exited: 1, Running: 1}, st.Journeys)
	require.EqualValues(t, 2, st.Steps["a"].Entered)
	require.Equal(t, map[string]int64{"email": 1, "slack": 1}, st.Steps["a"].Sent)
	require.Equal(t, map[string]int64{"opted_out_topic": 1}, st.Steps["a"].Suppressed)
	require.Equal(t, map[string]int64{"cancelled": 1}, st.Steps["b|odd"].Exited, "a step ID with the separator in it")
	require.EqualValues(t, 1, st.Steps["b|odd"].Waiting)
	require.NotNil(t, st.Steps["c"], "a step nothing reached yet is listed")
	require.EqualValues(t, 1, st.Versions["v1"]["a"].Sent["email"])
	require.EqualValues(t, 1, st.Versions["v2"]["a"].Sent["slack"])

	st, err = b.st.WorkflowStats(b.ctx, "w", nil, hour.Add(-48*time.Hour), hour)
	require.NoError(t, err)
	require.EqualValues(t, 3, st.Journeys.Started, "48 hours hold all three")

	keys, err := b.rdb.Keys(b.ctx, "herald:stats:{w:w}:20*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 3, "one hash an hour")
	for _, k := range keys {
		require.LessOrEqual(t, b.pttl(t, k), redisstore.StatsTTL)
	}
	ttl, err := b.rdb.PTTL(b.ctx, "herald:stats:{w:w}:now").Result()
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl, "gauges do not expire")
}
