package ratelimit_test

import (
	"context"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// counter is a provider that counts the calls it gets.
type counter struct{ n atomic.Int64 }

func (c *counter) Send(_ context.Context, m herald.Message) (herald.Receipt, error) {
	c.n.Add(1)
	return herald.Receipt{Channel: m.Channel, ProviderID: m.ID, SentAt: time.Now()}, nil
}

func TestWorkersShareOneLimit(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	limit := redis_rate.Limit{Rate: 10, Burst: 10, Period: time.Second}

	// Two workers: separate clients, separate middleware, one limit.
	var provider counter
	workers := []herald.Sender{
		ratelimit.Middleware(rs.Client(), "smtp", limit)(&provider),
		ratelimit.Middleware(rs.Client(), "smtp", limit)(&provider),
	}
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for _, w := range workers {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 15 {
					_, err := w.Send(context.Background(), herald.Message{ID: "m", Channel: herald.ChannelEmail})
					switch herald.ErrorCode(err) {
					case "":
						allowed.Add(1)
					case herald.ERateLimited:
						refused.Add(1)
					default:
						t.Errorf("unexpected error: %v", err)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)

	// GCRA: the burst at once, then Rate per Period.
	ceiling := int64(limit.Burst) + int64(elapsed.Seconds()*float64(limit.Rate)) + 1
	require.LessOrEqual(t, allowed.Load(), ceiling, "together the workers stay within the limit (elapsed %s)", elapsed)
	require.GreaterOrEqual(t, allowed.Load(), int64(limit.Burst), "the burst goes through")
	require.Equal(t, allowed.Load(), provider.n.Load(), "only allowed calls reach the provider")
	require.Equal(t, int64(8*15), allowed.Load()+refused.Load())
}

func TestRefusedCallWaitsAndSkipsProvider(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	var provider counter
	s := ratelimit.Middleware(rs.Client(), "slack", redis_rate.PerMinute(1))(&provider)
	ctx := context.Background()

	_, err := s.Send(ctx, herald.Message{ID: "a"})
	require.NoError(t, err)
	_, err = s.Send(ctx, herald.Message{ID: "b"})
	require.Error(t, err)
	require.Equal(t, herald.ERateLimited, herald.ErrorCode(err))
	require.Equal(t, "slack", herald.ErrorReason(err))
	require.Greater(t, herald.RetryAfter(err), 50*time.Second, "waits about a minute")
	require.LessOrEqual(t, herald.RetryAfter(err), time.Minute)
	require.Equal(t, int64(1), provider.n.Load(), "the refused call never reached the provider")
	require.False(t, herald.IsTemporary(err), "a wait is not a failure")

	n, err := rs.Client().Exists(ctx, "rate:"+ratelimit.KeyPrefix+"slack").Result()
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "the count lives in Redis")
}

func TestLimitsAreIndependentAndZeroIsUnlimited(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	ctx := context.Background()
	tests := []struct {
		name   string
		limit  redis_rate.Limit
		calls  int
		wantOK int
	}{
		{"one-per-minute", redis_rate.PerMinute(1), 3, 1},
		{"three-per-minute", redis_rate.PerMinute(3), 5, 3},
		{"unlimited", redis_rate.Limit{}, 50, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var provider counter
			s := ratelimit.Middleware(rs.Client(), tt.name, tt.limit)(&provider)
			for range tt.calls {
				_, _ = s.Send(ctx, herald.Message{})
			}
			require.Equal(t, int64(tt.wantOK), provider.n.Load())
		})
	}
}

func TestRedisDownIsTemporary(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	var provider counter
	_, err := ratelimit.Middleware(rdb, "smtp", redis_rate.PerSecond(1))(&provider).Send(context.Background(), herald.Message{})
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err))
	require.Zero(t, provider.n.Load())
}

// TestEngineWaitsInsteadOfFailing runs real asynq workers: three messages
// under a 1/s limit are all delivered, none counted as a failure.
func TestEngineWaitsInsteadOfFailing(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client()
	ctx := context.Background()

	var provider counter
	limited := ratelimit.Middleware(rdb, "smtp", redis_rate.PerSecond(1))(&provider)
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

	_, _, err = e.Store().UpsertCustomer(ctx, herald.Customer{ID: "c1", Email: "ada@example.com", Attributes: map[string]any{"first_name": "Ada"}})
	require.NoError(t, err)
	for range 3 {
		_, err := e.Send(ctx, wire.Message{CustomerID: "c1", Template: "hello", Topic: "onboarding", Data: map[string]any{"plan": "Pro"}, Channels: []herald.Channel{herald.ChannelEmail}})
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return provider.n.Load() == 3 }, 20*time.Second, 50*time.Millisecond, "all three are delivered")

	insp := asynq.NewInspectorFromRedisClient(rdb)
	archived, err := insp.ListArchivedTasks("email")
	require.NoError(t, err)
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
	require.Positive(t, testutil.ToFloat64(e.Metrics().RateLimitWaits.WithLabelValues("email")), "the waits are counted")
}
