package ratelimit_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// provider is a herald.Sender that records when it is called.
type provider struct {
	mu    sync.Mutex
	calls []time.Time
}

func (p *provider) Send(_ context.Context, m herald.Message) (herald.Receipt, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, time.Now())
	return herald.Receipt{Channel: m.Channel, ProviderID: m.ID, SentAt: time.Now()}, nil
}

func (p *provider) Calls() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.calls)
}

// gcra is the reservation rule, computed independently of the script: given
// the decision time Redis reports, it says what the script must answer.
// Times are microseconds.
type gcra struct {
	interval, burst int64
	tat             int64 // 0: no key
}

func (g *gcra) reserve(now, maxWait int64) (ok bool, wait, slot int64) {
	t := max(g.tat, now)
	slot = max(now, t-(g.burst-1)*g.interval)
	wait = slot - now
	if wait > maxWait {
		return false, wait, slot
	}
	g.tat = t + g.interval
	return true, wait, slot
}

func repeat[T any](v T, n int) []T {
	s := make([]T, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func TestInterval(t *testing.T) {
	t.Parallel()
	tests := []struct {
		limit ratelimit.Limit
		want  int64 // microseconds
	}{
		{ratelimit.PerSecond(10), 100_000},
		{ratelimit.PerSecond(100), 10_000},
		{ratelimit.PerMinute(6), 10_000_000},
		{ratelimit.Limit{Rate: 7, Period: time.Second}, 142_858}, // 142857.14…, rounded up
		{ratelimit.Limit{Rate: 3, Period: time.Microsecond}, 1},  // capped at 1µs
	}
	for _, tt := range tests {
		t.Run(tt.limit.String(), func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, ratelimit.Interval(tt.limit))
		})
	}
}

// TestReserveSchedule checks each reservation against the GCRA rule, using
// the decision time Redis reports, so the check is exact however slowly the
// calls come: a slot is granted at max(now, TAT-(burst-1)*interval), TAT
// then moves to max(TAT, now)+interval, and a refusal changes nothing.
func TestReserveSchedule(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	l := ratelimit.NewLimiter(rs.Client())
	const long = time.Hour

	tests := []struct {
		name     string
		limit    ratelimit.Limit
		maxWaits []time.Duration // one call each
		wantOK   []bool
	}{
		{
			// Waits 0, 100ms, 200ms, … (less the time the calls take).
			name: "10 a second, spaced 100ms", limit: ratelimit.PerSecond(10),
			maxWaits: repeat(long, 8), wantOK: repeat(true, 8),
		},
		{
			name: "10 a second, burst 3", limit: ratelimit.Limit{Rate: 10, Period: time.Second, Burst: 3},
			maxWaits: repeat(long, 8), wantOK: repeat(true, 8),
		},
		{
			name: "7 a second, interval rounded up", limit: ratelimit.Limit{Rate: 7, Period: time.Second},
			maxWaits: repeat(long, 5), wantOK: repeat(true, 5),
		},
		{
			name: "6 a minute, burst 2", limit: ratelimit.Limit{Rate: 6, Period: time.Minute, Burst: 2},
			maxWaits: repeat(long, 5), wantOK: repeat(true, 5),
		},
		{
			// The refused calls leave TAT alone: the fourth call gets the
			// very slot the second and third were refused.
			name: "refusals reserve nothing", limit: ratelimit.PerMinute(1),
			maxWaits: []time.Duration{0, 0, 30 * time.Second, 2 * time.Minute, 0, 90 * time.Second},
			wantOK:   []bool{true, false, false, true, false, false},
		},
		{
			name: "burst 3 then refusals", limit: ratelimit.Limit{Rate: 1, Period: time.Minute, Burst: 3},
			maxWaits: []time.Duration{0, 0, 0, 0, 30 * time.Second, 2 * time.Minute},
			wantOK:   []bool{true, true, true, false, false, true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			key := ratelimit.KeyPrefix + tt.name
			model := gcra{interval: ratelimit.Interval(tt.limit), burst: int64(max(tt.limit.Burst, 1))}
			var refusedSlot int64
			for i, mw := range tt.maxWaits {
				r, err := ratelimit.ReserveSlot(ctx, l, tt.name, tt.limit, mw)
				require.NoError(t, err)
				ok, wait, slot := model.reserve(r.Now, mw.Microseconds())
				require.Equal(t, tt.wantOK[i], r.OK, "call %d", i)
				require.Equal(t, ok, r.OK, "call %d", i)
				require.Equal(t, slot, r.Slot, "call %d: slot", i)
				require.Equal(t, time.Duration(wait)*time.Microsecond, r.Wait, "call %d: wait", i)

				// The public API says the same.
				if !r.OK {
					refusedSlot = r.Slot
					w, ok, err := l.Reserve(ctx, tt.name, tt.limit, 0)
					require.NoError(t, err)
					require.False(t, ok, "call %d: still refused", i)
					require.Positive(t, w)
					require.LessOrEqual(t, w, r.Wait, "call %d: the same slot, a little later", i)
				} else if refusedSlot != 0 && r.Now < refusedSlot {
					require.Equal(t, refusedSlot, r.Slot, "call %d gets the slot refused before", i)
					refusedSlot = 0
				}

				// Redis holds TAT, expiring a second after it.
				v, err := rs.Client().Get(ctx, key).Result()
				require.NoError(t, err)
				require.Equal(t, strconv.FormatInt(model.tat, 10), v, "call %d: TAT", i)
				ttl, err := rs.Client().PTTL(ctx, key).Result()
				require.NoError(t, err)
				require.Positive(t, ttl)
				require.LessOrEqual(t, ttl, time.Duration(model.tat-r.Now)*time.Microsecond+2*time.Second)
			}
		})
	}
}

func TestReserveZeroAndInvalidLimits(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	l := ratelimit.NewLimiter(rs.Client())
	ctx := t.Context()

	for _, lim := range []ratelimit.Limit{{}, {Rate: 0, Period: time.Second}, {Rate: -1, Period: time.Second}} {
		w, ok, err := l.Reserve(ctx, "free", lim, 0)
		require.NoError(t, err)
		require.True(t, ok)
		require.Zero(t, w)
	}
	n, err := rs.Client().DBSize(ctx).Result()
	require.NoError(t, err)
	require.Zero(t, n, "an unlimited limit never touches Redis")

	_, _, err = l.Reserve(ctx, "bad", ratelimit.Limit{Rate: 5}, time.Second)
	require.Error(t, err, "a rate needs a period")
	require.Panics(t, func() { ratelimit.Middleware(rs.Client(), "bad", ratelimit.Limit{Rate: 5}, 0) })
}

// TestTwoProcessesShareOneSchedule runs two limiters on two clients, as two
// worker processes would, with ten goroutines each taking 400 slots of one
// limit between them. A refused goroutine comes back when its slot is
// within maxWait, as a re-scheduled delivery would. The slot times (Redis's
// clock) must never crowd a window beyond the limit, and must leave no
// gaps: delivery runs at the limit.
func TestTwoProcessesShareOneSchedule(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	limit := ratelimit.Limit{Rate: 100, Period: time.Second, Burst: 5}
	const total = 400
	const maxWait = time.Second
	interval := ratelimit.Interval(limit)
	ctx := t.Context()

	var (
		mu      sync.Mutex
		slots   []int64
		refused int
		tickets atomic.Int64
		wg      sync.WaitGroup
	)
	for _, l := range []*ratelimit.Limiter{ratelimit.NewLimiter(rs.Client()), ratelimit.NewLimiter(rs.Client())} {
		for range 10 {
			wg.Go(func() {
				for tickets.Add(1) <= total {
					for {
						r, err := ratelimit.ReserveSlot(ctx, l, "smtp", limit, maxWait)
						if err != nil {
							t.Error(err)
							return
						}
						if r.OK {
							if r.Wait > maxWait || r.Slot < r.Now {
								t.Errorf("granted %+v beyond maxWait %s", r, maxWait)
							}
							mu.Lock()
							slots = append(slots, r.Slot)
							mu.Unlock()
							break
						}
						mu.Lock()
						refused++
						mu.Unlock()
						// Re-scheduled: back when the slot is well within
						// maxWait.
						time.Sleep(r.Wait - maxWait/2)
					}
				}
			})
		}
	}
	wg.Wait()
	require.Len(t, slots, total)
	slices.Sort(slots)
	t.Logf("%d slots over %s, %d refusals", total, time.Duration(slots[total-1]-slots[0])*time.Microsecond, refused)

	// Every window starting at a slot, the most crowded kind: GCRA puts at
	// most window/interval + burst - 1 slots in it, one fewer than
	// rate×window + burst.
	for _, window := range []time.Duration{time.Second, 2 * time.Second} {
		w := window.Microseconds()
		most := int(w/interval) + limit.Burst - 1
		j := 0
		for i := range slots {
			for j < len(slots) && slots[j] < slots[i]+w {
				j++
			}
			require.LessOrEqual(t, j-i, most, "%d slots in the %s from slot %d", j-i, window, i)
		}
	}

	// Dense: the n slots span no more than (n-1) intervals plus 10%, so
	// delivery runs at 90% of the limit or better.
	span := slots[total-1] - slots[0]
	require.LessOrEqual(t, span, (total-1)*interval*10/9, "slots span %dµs", span)
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	other := ratelimit.NewLimiter(rs.Client()) // another worker process

	tests := []struct {
		name     string
		limit    ratelimit.Limit
		taken    int           // slots another worker reserved first
		maxWait  time.Duration // Options.MaxWait
		timeout  time.Duration // the Send's context deadline; 0: none
		wantCode string        // "": delivered
		wantWait bool          // delivered after waiting for its slot
	}{
		{name: "free slot goes now", limit: ratelimit.PerSecond(10)},
		{name: "burst left goes now", limit: ratelimit.Limit{Rate: 1, Period: time.Minute, Burst: 3}, taken: 2},
		{
			name: "waits for its slot", limit: ratelimit.PerSecond(1), taken: 1,
			maxWait: 5 * time.Second, wantWait: true,
		},
		{
			name: "waits when the deadline leaves room", limit: ratelimit.PerSecond(1), taken: 1,
			maxWait: time.Hour, timeout: time.Minute, wantWait: true,
		},
		{
			name: "slot beyond maxWait is refused", limit: ratelimit.PerMinute(1), taken: 1,
			maxWait: time.Second, wantCode: herald.ERateLimited,
		},
		{
			name: "maxWait zero never waits", limit: ratelimit.PerSecond(1), taken: 1,
			wantCode: herald.ERateLimited,
		},
		{
			// Without the deadline it would sleep for most of a minute.
			name: "deadline shorter than the wait is refused", limit: ratelimit.PerMinute(1), taken: 1,
			maxWait: time.Hour, timeout: 5 * time.Second, wantCode: herald.ERateLimited,
		},
		{
			name: "deadline within the reserve still takes a free slot", limit: ratelimit.PerMinute(1),
			maxWait: time.Hour, timeout: ratelimit.DeadlineReserve,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for range tt.taken {
				_, ok, err := other.Reserve(t.Context(), tt.name, tt.limit, time.Hour)
				require.NoError(t, err)
				require.True(t, ok)
			}
			var p provider
			var mu sync.Mutex
			var waits []time.Duration
			s := ratelimit.MiddlewareWith(rs.Client(), tt.name, tt.limit, ratelimit.Options{
				MaxWait: tt.maxWait,
				OnWait: func(d time.Duration) {
					mu.Lock()
					waits = append(waits, d)
					mu.Unlock()
				},
			})(&p)
			ctx := t.Context()
			if tt.timeout > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.timeout)
				defer cancel()
			}

			start := time.Now()
			_, err := s.Send(ctx, herald.Message{ID: "m", Channel: herald.ChannelEmail})
			mu.Lock()
			defer mu.Unlock()
			if tt.wantCode != "" {
				require.Equal(t, tt.wantCode, herald.ErrorCode(err), "%v", err)
				require.Equal(t, tt.name, herald.ErrorReason(err))
				require.False(t, herald.IsTemporary(err), "a wait is not a failure")
				budget := tt.maxWait
				if tt.timeout > 0 {
					budget = min(budget, tt.timeout-ratelimit.DeadlineReserve)
				}
				require.Greater(t, herald.RetryAfter(err), budget, "the slot is beyond what the Send could wait")
				require.LessOrEqual(t, herald.RetryAfter(err), tt.limit.Period*time.Duration(tt.taken), "and no further than the slots taken")
				require.Empty(t, p.Calls(), "the provider is not called")
				require.Empty(t, waits, "refusals are not waits")
				return
			}
			require.NoError(t, err)
			calls := p.Calls()
			require.Len(t, calls, 1)
			require.Len(t, waits, 1)
			if !tt.wantWait {
				require.Zero(t, waits[0])
				return
			}
			require.Positive(t, waits[0])
			require.LessOrEqual(t, waits[0], tt.limit.Period, "one interval at most")
			require.GreaterOrEqual(t, calls[0].Sub(start), waits[0], "the provider is called after the wait")
		})
	}
}

func TestMiddlewareZeroLimitPassesThrough(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	var p provider
	for _, lim := range []ratelimit.Limit{{}, {Period: time.Second, Burst: 3}} {
		s := ratelimit.Middleware(rs.Client(), "free", lim, 0)(&p)
		require.Same(t, &p, s, "the sender itself")
	}
	n, err := rs.Client().DBSize(t.Context()).Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestMiddlewareCancelledWhileWaiting cancels the Send's context from the
// wait observer, so the cancellation certainly lands during the wait.
func TestMiddlewareCancelledWhileWaiting(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	limit := ratelimit.PerMinute(1)
	l := ratelimit.NewLimiter(rs.Client())
	_, ok, err := l.Reserve(t.Context(), "slack", limit, 0)
	require.NoError(t, err)
	require.True(t, ok)

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var p provider
	var waited time.Duration
	s := ratelimit.MiddlewareWith(rs.Client(), "slack", limit, ratelimit.Options{
		MaxWait: 2 * time.Minute,
		OnWait:  func(d time.Duration) { waited = d; cancel() },
	})(&p)
	_, err = s.Send(ctx, herald.Message{ID: "m"})
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "%v", err)
	require.ErrorIs(t, err, context.Canceled)
	require.Positive(t, waited)
	require.Empty(t, p.Calls())

	// The slot is lost: the next one is two intervals after the first.
	w, ok, err := l.Reserve(t.Context(), "slack", limit, 0)
	require.NoError(t, err)
	require.False(t, ok)
	require.Greater(t, w, time.Minute)
}

func TestRedisDownIsTemporary(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	var p provider
	_, err := ratelimit.Middleware(rdb, "smtp", ratelimit.PerSecond(1), time.Second)(&p).Send(t.Context(), herald.Message{})
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err))
	require.Equal(t, "redis", herald.ErrorReason(err))
	require.Empty(t, p.Calls())

	_, _, err = ratelimit.NewLimiter(rdb).Reserve(t.Context(), "smtp", ratelimit.PerSecond(1), time.Second)
	require.Error(t, err)
}
