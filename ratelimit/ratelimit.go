package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// KeyPrefix is prepended to a limit's name to form its Redis key: the limit
// "smtp" lives in "herald:rate:smtp". One key per limit, so it is fine in
// Redis Cluster.
const KeyPrefix = "herald:rate:"

// DeadlineReserve is the part of a Send's context deadline the middleware
// keeps for the provider call itself: it waits for a slot only while the
// slot starts at least DeadlineReserve before the deadline.
const DeadlineReserve = time.Second

// Limit is a provider rate limit: Rate calls per Period, of which up to Burst
// may start at once after a quiet spell.
type Limit struct {
	// Rate is the number of calls per Period. Zero (or less) means
	// unlimited.
	Rate int
	// Period is the length of the window Rate counts over. It must be
	// positive when Rate is.
	Period time.Duration
	// Burst is how many calls may start at the same instant; 0 means 1,
	// that is, calls are spread evenly, one every Period/Rate.
	Burst int
}

// PerSecond returns a limit of n calls a second, spread evenly (burst 1).
func PerSecond(n int) Limit { return Limit{Rate: n, Period: time.Second} }

// PerMinute returns a limit of n calls a minute, spread evenly (burst 1).
func PerMinute(n int) Limit { return Limit{Rate: n, Period: time.Minute} }

// IsZero reports whether l is unlimited (Rate zero or less).
func (l Limit) IsZero() bool { return l.Rate <= 0 }

// String returns e.g. "10/1s burst 1".
func (l Limit) String() string {
	if l.IsZero() {
		return "unlimited"
	}
	return fmt.Sprintf("%d/%s burst %d", l.Rate, l.Period, max(l.Burst, 1))
}

// check reports a limit that cannot be enforced.
func (l Limit) check() error {
	if !l.IsZero() && l.Period <= 0 {
		return fmt.Errorf("ratelimit: limit %d per %s: the period must be positive", l.Rate, l.Period)
	}
	return nil
}

// interval returns Period/Rate in whole microseconds, rounded up so that
// rounding never lets more than Rate calls through per Period. Rates above
// a million a second are therefore capped at a million a second.
func (l Limit) interval() int64 {
	per := int64(l.Rate) * int64(time.Microsecond)
	return max((l.Period.Nanoseconds()+per-1)/per, 1)
}

// Limiter reserves slots of limits kept in Redis. Every process using the
// same Redis and the same limit name shares the limit. A Limiter is safe for
// concurrent use.
type Limiter struct {
	rdb redis.UniversalClient
}

// NewLimiter returns a Limiter keeping its limits in rdb.
func NewLimiter(rdb redis.UniversalClient) *Limiter {
	return &Limiter{rdb: rdb}
}

// Reserve reserves the next slot of the limit called name unless that slot
// is more than maxWait away (a negative maxWait counts as zero).
//
// With ok true the slot is the caller's: it must start its call after wait
// (zero: now). A caller that then does not make the call simply loses the
// slot. With ok false nothing is reserved and the next slot is wait away;
// the caller should come back then. A zero limit is always ok with no wait
// and does not touch Redis.
//
// The slot times come from Redis's clock, so processes on machines whose
// clocks disagree still share one schedule. Every process must use the
// same Limit for a name.
//
// Reserve fails if Redis does, or if limit has a Rate but no positive
// Period.
func (l *Limiter) Reserve(ctx context.Context, name string, limit Limit, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	r, err := l.reserve(ctx, name, limit, maxWait)
	return r.wait, r.ok, err
}

// reservation is the outcome of one run of the reservation script. slot and
// now are microseconds on Redis's clock: the start of the slot (reserved or,
// if refused, the one that would have been) and the time of the decision.
type reservation struct {
	ok        bool
	wait      time.Duration
	slot, now int64
}

// maxWaitMicros keeps maxWait exactly representable in the script's
// floating-point numbers (about 35 years).
const maxWaitMicros = 1 << 50

func (l *Limiter) reserve(ctx context.Context, name string, limit Limit, maxWait time.Duration) (reservation, error) {
	if err := limit.check(); err != nil {
		return reservation{}, err
	}
	if limit.IsZero() {
		return reservation{ok: true}, nil
	}
	mw := min(max(maxWait.Microseconds(), 0), maxWaitMicros)
	v, err := reserveScript.Run(ctx, l.rdb, []string{KeyPrefix + name},
		limit.interval(), max(limit.Burst, 1), mw).Int64Slice()
	if err != nil {
		return reservation{}, err
	}
	if len(v) != 4 {
		return reservation{}, fmt.Errorf("ratelimit: unexpected script reply %v", v)
	}
	return reservation{
		ok:   v[0] == 1,
		wait: time.Duration(v[1]) * time.Microsecond,
		slot: v[2],
		now:  v[3],
	}, nil
}

// reserveScript is GCRA with reservations. The key holds the theoretical
// arrival time (TAT) in microseconds on Redis's clock: the time the next
// slot would start were there no burst. A slot is granted at
// max(now, TAT - (burst-1)*interval); taking it moves TAT to
// max(TAT, now) + interval. If the slot is more than maxWait away, nothing
// changes and the wait until the slot is returned. The key expires a
// second after TAT: a missing key is the same as a TAT in the past.
//
// KEYS[1]: the limit's key. ARGV: interval, burst, maxWait (microseconds,
// burst a count). Reply: {ok (1/0), wait, slot, now} in microseconds.
var reserveScript = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local maxwait = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '')
if tat == nil or tat < now then tat = now end
local slot = tat - (burst - 1) * interval
if slot < now then slot = now end
local wait = slot - now
if wait > maxwait then
  return {0, wait, slot, now}
end
tat = tat + interval
local ttl = math.ceil((tat - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', ttl))
return {1, wait, slot, now}
`)

// Options configure MiddlewareWith.
type Options struct {
	// MaxWait is the longest a Send waits for its slot; a slot further
	// away is refused with herald.ERateLimited. Zero never waits.
	MaxWait time.Duration
	// OnWait, if set, is called once for every slot reserved, with the
	// wait before it (zero when the slot is free now), just before the
	// middleware waits. Refusals and errors do not call it: they show as
	// the error Send returns. It is called from many goroutines at once
	// and must not block; it suits a wait counter or histogram.
	OnWait func(wait time.Duration)
}

// Middleware is MiddlewareWith with Options{MaxWait: maxWait}.
func Middleware(rdb redis.UniversalClient, name string, limit Limit, maxWait time.Duration) herald.Middleware {
	return MiddlewareWith(rdb, name, limit, Options{MaxWait: maxWait})
}

// MiddlewareWith returns a herald.Middleware that holds each Send to the
// limit called name, shared through rdb by every process using that name.
//
// Each Send reserves the next slot of the limit, accepting one up to
// opt.MaxWait away, but never one starting later than DeadlineReserve
// before the deadline of the Send's context (without a deadline, MaxWait
// alone counts). Then:
//
//   - slot reserved: the Send waits for it and calls the provider. If the
//     context ends during the wait, it returns a temporary error wrapping
//     the context's error, without calling the provider; the slot is lost.
//   - slot too far away: nothing is reserved; it returns
//     herald.RateLimited(name, wait) with wait the time until the next slot,
//     without calling the provider. The caller re-schedules the delivery.
//   - Redis fails: it returns herald.Temporary(err, "redis", 0), without
//     calling the provider.
//
// Every call counts, including ones the provider then refuses: a provider's
// own limit counts them too. A zero limit returns the sender unchanged.
// MiddlewareWith panics if limit has a Rate but no positive Period.
func MiddlewareWith(rdb redis.UniversalClient, name string, limit Limit, opt Options) herald.Middleware {
	gate := GateWith(rdb, name, limit, opt)
	return func(next herald.Sender) herald.Sender {
		if limit.IsZero() {
			return next
		}
		return herald.SenderFunc(func(ctx context.Context, m herald.Message) (herald.Receipt, error) {
			if err := gate(ctx); err != nil {
				return herald.Receipt{}, err
			}
			return next.Send(ctx, m)
		})
	}
}

// A Gate lets a caller through once the limit has a slot for it: it
// returns nil when the caller may call the provider now, having waited for
// its slot, and the errors MiddlewareWith documents otherwise. Callers that
// hold something scarce while calling the provider (a connection, an
// in-flight slot) pass the gate first, so the wait holds nothing.
type Gate func(ctx context.Context) error

// GateWith returns the Gate of the limit called name (see MiddlewareWith
// for the waiting rules). A zero limit's gate always lets through at once.
// GateWith panics if limit has a Rate but no positive Period.
func GateWith(rdb redis.UniversalClient, name string, limit Limit, opt Options) Gate {
	if err := limit.check(); err != nil {
		panic(fmt.Sprintf("%v (limit %q)", err, name))
	}
	if limit.IsZero() {
		return func(context.Context) error { return nil }
	}
	l := NewLimiter(rdb)
	return func(ctx context.Context) error {
		r, err := l.reserve(ctx, name, limit, opt.budget(ctx))
		if err != nil {
			return herald.Temporary(err, "redis", 0)
		}
		if !r.ok {
			return herald.RateLimited(name, r.wait)
		}
		if opt.OnWait != nil {
			opt.OnWait(r.wait)
		}
		if err := sleep(ctx, r.wait); err != nil {
			return herald.Temporary(fmt.Errorf("waiting for rate limit %s: %w", name, err), "rate limit "+name, 0)
		}
		return nil
	}
}

// budget returns how long a Send with ctx may wait for its slot.
func (o Options) budget(ctx context.Context) time.Duration {
	d := o.MaxWait
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)-DeadlineReserve)
	}
	return max(d, 0)
}

// sleep waits d or until ctx ends, whichever comes first, and returns
// ctx's error in the second case.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
