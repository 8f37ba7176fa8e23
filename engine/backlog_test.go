package engine_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// A delivery put off for a provider rate-limit slot shows in the backlog as
// rate_limited, not as a retry; a sent message has its queued-to-sent
// latency by channel and queue, and no provider call is recorded for the
// wait.
func TestBacklogAndLatencyMetrics(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) {
		o.RateLimits = map[herald.Channel]func(context.Context) error{
			herald.ChannelEmail: func(context.Context) error { return herald.RateLimited("smtp", time.Hour) },
		}
	})
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelSlack}})

	m := b.e.Metrics()
	eventually(t, func() bool {
		return testutil.ToFloat64(m.RateLimitWaits.WithLabelValues("email")) == 1 &&
			testutil.CollectAndCount(m.DeliveryLatency) == 1
	}, "one wait, one send")
	c := engine.NewQueueCollector(b.insp)
	eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo("default")
		require.NoError(t, err)
		return info.Active == 0 && c.Backlog("default", info)["rate_limited"] == 1
	}, "the wait is in the backlog as rate_limited")
	info, err := b.insp.GetQueueInfo("default")
	require.NoError(t, err)
	got := c.Backlog("default", info)
	require.Zero(t, got["retrying"], "%v", got)
	require.Zero(t, got["ready"], "%v", got)

	require.Equal(t, map[string]uint64{"slack default": 1}, histCounts(t, m.DeliveryLatency, "channel", "queue"))
	require.Equal(t, map[string]uint64{"slack ok": 1}, histCounts(t, m.ProviderLatency, "channel", "result"), "the wait is no provider call")
}

// histCounts returns a histogram vector's observation counts by the named
// labels' values.
func histCounts(t *testing.T, v *prometheus.HistogramVec, labels ...string) map[string]uint64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(v))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]uint64{}
	for _, mf := range mfs {
		for _, met := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range met.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			parts := make([]string, len(labels))
			for i, n := range labels {
				parts[i] = l[n]
			}
			out[strings.Join(parts, " ")] += met.GetHistogram().GetSampleCount()
		}
	}
	return out
}

// The waiting index's size and what in it is overdue by more than a lease.
func TestFollowUpCollector(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	now := time.Now()
	require.NoError(t, rdb.ZAdd(context.Background(), "herald:journeys:waiting",
		redis.Z{Score: redisstore.WaitScore(now.Add(time.Hour)), Member: "c1|j1"},
		redis.Z{Score: redisstore.WaitScore(now.Add(-time.Second)), Member: "c2|j2"}, // due: a waker takes it now
		redis.Z{Score: redisstore.WaitScore(now.Add(-time.Minute)), Member: "c3|j3"}, // overdue by more than 30s
		redis.Z{Score: float64(now.Add(-2 * time.Hour).Unix()), Member: "c4|j4"},     // an older version's score
	).Err())
	c := engine.NewFollowUpCollector(rdb, 30*time.Second)
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(`
# HELP herald_follow_ups_overdue Journey follow-ups due for longer than a lease (worker.watchdog_interval) that no worker has taken: 0 unless no worker runs or the workers are far behind.
# TYPE herald_follow_ups_overdue gauge
herald_follow_ups_overdue 2
# HELP herald_journeys_waiting Journeys waiting for a follow-up at a due time (a wait step, a wait for an event with a timeout, a digest window): the schedule the workers' wakers take them from.
# TYPE herald_journeys_waiting gauge
herald_journeys_waiting 4
`)))
}
