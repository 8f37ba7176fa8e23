package ratelimit_test

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// counter is a provider that counts the calls it gets.
type counter struct{ n atomic.Int64 }

func (c *counter) Send(_ context.Context, m herald.Message) (herald.Receipt, error) {
	c.n.Add(1)
	return herald.Receipt{Channel: m.Channel, ProviderID: m.ID, SentAt: time.Now()}, nil
}

// TestEngineWaitsInsteadOfFailing runs real asynq workers: three messages
// under a 1/s limit are all delivered, none counted as a failure, whether
// the sends wait for their slots (maxWait 10s) or are re-scheduled
// (maxWait 0).
func TestEngineWaitsInsteadOfFailing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		maxWait       time.Duration
		wantRequeued  bool // some deliveries were refused and re-scheduled
		wantNoRequeue bool // no delivery was refused
	}{
		{name: "re-scheduled", maxWait: 0, wantRequeued: true},
		{name: "waited", maxWait: 10 * time.Second, wantNoRequeue: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rs := redistest.Start(t)
			rdb := rs.Client()
			ctx := context.Background()

			var provider counter
			limited := ratelimit.Middleware(rdb, "smtp", ratelimit.PerSecond(1), tt.maxWait)(&provider)
			tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
			require.NoError(t, err)
			e, err := engine.New(engine.Options{
				Redis: rdb, RedisConn: asynq.RedisClientOpt{Addr: rs.Addr},
				Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: limited},
				Templates: tset,
				Policy:    preferences.Policy{Topics: map[string]herald.Topic{"onboarding": {Name: "onboarding", OptIn: true}}},
				PublicURL: "https://herald.example.com", SigningKey: []byte("0123456789abcdef0123456789abcdef"),
				MaxRetry: 1, RetryBase: time.Second, RetryMax: time.Second,
			})
			require.NoError(t, err)
			t.Cleanup(func() { _ = e.Close() })
			srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
				Concurrency: 4, Queues: map[string]int{"critical": 1, "default": 1, "bulk": 1, "email": 1},
				RetryDelayFunc: e.RetryDelay, IsFailure: e.IsFailure,
				TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
				LogLevel: asynq.FatalLevel,
			})
			require.NoError(t, srv.Start(e.Mux()))
			t.Cleanup(srv.Shutdown)
			t.Cleanup(e.StartWaker(ctx))

			_, _, err = e.Store().UpsertCustomer(ctx, herald.Customer{ID: "c1", Email: "ada@example.com", Attributes: map[string]any{"first_name": "Ada"}})
			require.NoError(t, err)
			for range 3 {
				_, err := e.Send(ctx, wire.Message{CustomerID: "c1", Template: "hello", Topic: "onboarding", Data: map[string]any{"plan": "Pro"}, Channels: []herald.Channel{herald.ChannelEmail}})
				require.NoError(t, err)
			}
			require.Eventually(t, func() bool { return provider.n.Load() == 3 }, 20*time.Second, 50*time.Millisecond, "all three are delivered")

			insp := asynq.NewInspectorFromRedisClient(rdb)
			var archived []*asynq.TaskInfo
			for _, q := range []string{"critical", "default", "bulk", "email"} {
				a, err := insp.ListArchivedTasks(q)
				if err == nil {
					archived = append(archived, a...)
				}
			}
			require.Empty(t, archived, "a rate-limit wait never archives, even with MaxRetry 1")
			var tl []herald.TimelineEntry
			require.Eventually(t, func() bool {
				tl, err = e.Store().Timeline(ctx, "c1", 0)
				require.NoError(t, err)
				sent := 0
				for _, en := range tl {
					if en.Outcome == herald.OutcomeSent {
						sent++
					}
				}
				return sent == 3
			}, 5*time.Second, 20*time.Millisecond, "the timeline records three sends")
			for _, en := range tl {
				require.NotEqual(t, herald.OutcomeFailedTemporary, en.Outcome, "a wait is not recorded as a failure: %s", en.Summary)
				require.NotEqual(t, herald.OutcomeFailedPermanent, en.Outcome, en.Summary)
			}
			requeued := testutil.ToFloat64(e.Metrics().RateLimitWaits.WithLabelValues("email"))
			if tt.wantRequeued {
				require.Positive(t, requeued, "the re-schedules are counted")
			}
			if tt.wantNoRequeue {
				require.Zero(t, requeued, "every send waited for its slot instead")
			}
		})
	}
}
