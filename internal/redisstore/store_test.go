package redisstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// start is the fixed time the test clock starts at.
var start = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)

// clock is a settable clock, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock(t time.Time) *clock {
	c := &clock{}
	c.Set(t)
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type bundle struct {
	ctx   context.Context
	srv   *redistest.Server
	rdb   *redis.Client
	st    *redisstore.Store
	clock *clock
}

func setup(t *testing.T) bundle {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	clk := newClock(start)
	return bundle{ctx: t.Context(), srv: srv, rdb: rdb, st: redisstore.New(rdb, clk.Now), clock: clk}
}

// pttl returns the key's remaining time to live; it fails the test when the
// key is missing or has no expiry.
func (b bundle) pttl(t *testing.T, key string) time.Duration {
	t.Helper()
	d, err := b.rdb.PTTL(b.ctx, key).Result()
	require.NoError(t, err)
	require.Positive(t, d, "key %s: missing or without expiry (PTTL %v)", key, d)
	return d
}

// down stops the Redis server. Its address is then held by a listener that
// drops every connection: the store still meets a Redis that is gone, and no
// redis-server started meanwhile by a parallel test can appear in its place.
func (b bundle) down(t *testing.T) {
	t.Helper()
	b.srv.Stop()
	l, err := net.Listen("tcp", b.srv.Addr)
	require.NoError(t, err, "hold the stopped server's address")
	t.Cleanup(func() { _ = l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

func (b bundle) exists(t *testing.T, key string) bool {
	t.Helper()
	n, err := b.rdb.Exists(b.ctx, key).Result()
	require.NoError(t, err)
	return n == 1
}

// ValidID is a loop: it accepts exactly what its documented pattern does.
func TestValidIDMatchesItsPattern(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$`)
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []string{"a", "Z", "0", "9", ".", "_", ":", "@", "+", "-", "{", "}", " ", "/", "\\", "\n", "\x00", "é", "*", "$"}
	for range 20000 {
		var sb strings.Builder
		for range rng.IntN(131) {
			if rng.IntN(8) == 0 {
				sb.WriteString(alphabet[rng.IntN(len(alphabet))])
			} else {
				sb.WriteString(alphabet[rng.IntN(4)])
			}
		}
		id := sb.String()
		require.Equal(t, re.MatchString(id), redisstore.ValidID(id) == nil, "%q", id)
	}
}

func TestValidID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"7", true},
		{"c42", true},
		{"Ada.Lovelace_1815", true},
		{"ada+test@example.com", true},
		{"tenant:42", true},
		{"a-b", true},
		{strings.Repeat("x", 128), true},
		{strings.Repeat("x", 129), false},
		{"", false},
		{"-a", false},
		{".a", false},
		{"_a", false},
		{":a", false},
		{"@a", false},
		{"a b", false},
		{"a}b", false},
		{"a{b", false},
		{"a*", false},
		{"a?", false},
		{"a[b]", false},
		{"a/b", false},
		{`a\b`, false},
		{"a\n", false},
		{"\na", false},
		{"zoë", false},
	} {
		t.Run(fmt.Sprintf("%.20q", tc.id), func(t *testing.T) {
			t.Parallel()
			err := redisstore.ValidID(tc.id)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
		})
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, "herald:{c:c42}:customer", redisstore.Key("c42", "customer"))
	require.Equal(t, "herald:{c:c42}:claim:m1:email", redisstore.Key("c42", "claim", "m1:email"))
	require.Equal(t, "herald:{c:c42}:ledger:m1:email", redisstore.LedgerKey("c42", "m1:email"))
	// Hash normalises e-mail addresses.
	require.Equal(t, redisstore.Hash("ada@example.com"), redisstore.Hash("  Ada@Example.COM "))
	require.NotEqual(t, redisstore.Hash("ada@example.com"), redisstore.Hash("bob@example.com"))
	require.Len(t, redisstore.Hash("x"), 64)
}

func TestUpsertCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)

	c, created, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c1", Email: "ada@example.com", Locale: "en"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, start, c.CreatedAt)
	require.Equal(t, start, c.UpdatedAt)

	b.clock.Advance(time.Hour)
	c, created, err = b.st.UpsertCustomer(b.ctx, herald.Customer{
		ID: "c1", Email: "ada@example.org", Timezone: "Europe/London",
		// A caller's CreatedAt is ignored: the stored one is kept.
		CreatedAt: start.Add(-24 * time.Hour),
	})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, start, c.CreatedAt)
	require.Equal(t, start.Add(time.Hour), c.UpdatedAt)

	got, err := b.st.Customer(b.ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, c, got)
	require.Equal(t, "ada@example.org", got.Email)
	require.Empty(t, got.Locale, "an upsert replaces the whole profile")
	require.Equal(t, "Europe/London", got.Timezone)

	// Another customer is created on its own.
	_, created, err = b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c2"})
	require.NoError(t, err)
	require.True(t, created)
}

func TestUpsertCustomerInvalidID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "a}b"})
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
	keys, err := b.rdb.Keys(b.ctx, "*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// A profile written by someone else between UpsertCustomer's read and its
// write (another API request for the same customer) must not make the upsert
// fail: it retries, and keeps the CreatedAt of the profile that won.
func TestUpsertCustomerConcurrentWrite(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.Key("c1", "customer")
	other := b.srv.Client()
	rdb := b.srv.Client()
	var fired atomic.Bool
	rdb.AddHook(getHook{key: key, before: func(ctx context.Context) {
		if fired.CompareAndSwap(false, true) {
			// The other writer: created an hour before our clock.
			v, _ := json.Marshal(herald.Customer{ID: "c1", Email: "other@example.com", CreatedAt: start.Add(-time.Hour), UpdatedAt: start.Add(-time.Hour)})
			require.NoError(t, other.Set(ctx, key, v, 0).Err())
		}
	}})
	st := redisstore.New(rdb, b.clock.Now)

	c, created, err := st.UpsertCustomer(b.ctx, herald.Customer{ID: "c1", Email: "ada@example.com"})
	require.True(t, fired.Load(), "the hook did not run")
	require.NoError(t, err, "an upsert racing another write of the same customer fails")
	require.False(t, created)
	require.Equal(t, start.Add(-time.Hour), c.CreatedAt)
	got, err := b.st.Customer(b.ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, "ada@example.com", got.Email)
}

// getHook calls before ahead of each GET of key.
type getHook struct {
	key    string
	before func(context.Context)
}

func (h getHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h getHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) == 2 && strings.EqualFold(fmt.Sprint(args[0]), "get") && args[1] == h.key {
			h.before(ctx)
		}
		return next(ctx, cmd)
	}
}

func (h getHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)

	_, err := b.st.Customer(b.ctx, "nobody")
	require.Error(t, err)
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err))

	_, err = b.st.Customer(b.ctx, "no body")
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))

	// "a" and "ab" are different customers.
	_, _, err = b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "ab"})
	require.NoError(t, err)
	_, err = b.st.Customer(b.ctx, "a")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err))
	indexed, err := b.st.CustomerIDs(b.ctx, "", 10)
	require.NoError(t, err)
	require.NotContains(t, indexed, "a", "an erased customer leaves the index")

	b.down(t)
	_, err = b.st.Customer(b.ctx, "ab")
	require.Error(t, err)
	require.True(t, herald.IsTemporary(err), "got %v", err)
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	b := setup(t)

	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Empty(t, tl)

	// At is filled in from the clock when unset, kept (to the millisecond)
	// when set.
	require.NoError(t, b.st.Append(b.ctx, "c1", herald.TimelineEntry{Kind: herald.KindEvent, Summary: "first"}))
	b.clock.Advance(time.Second)
	at := start.Add(-time.Hour)
	require.NoError(t, b.st.Append(b.ctx, "c1", herald.TimelineEntry{Kind: herald.KindMessage, Summary: "second", At: at}))
	b.clock.Advance(time.Second)
	require.NoError(t, b.st.Append(b.ctx, "c1", herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "third", Channel: herald.ChannelEmail}))
	require.NoError(t, b.st.Append(b.ctx, "c2", herald.TimelineEntry{Kind: herald.KindEvent, Summary: "other customer"}))

	tl, err = b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Equal(t, []herald.TimelineEntry{
		{Kind: herald.KindDelivery, Summary: "third", Channel: herald.ChannelEmail, At: stored(start.Add(2 * time.Second))},
		{Kind: herald.KindMessage, Summary: "second", At: stored(at)},
		{Kind: herald.KindEvent, Summary: "first", At: stored(start)},
	}, tl)

	tl, err = b.st.Timeline(b.ctx, "c1", 2)
	require.NoError(t, err)
	require.Equal(t, []string{"third", "second"}, summaries(tl))

	tl, err = b.st.Timeline(b.ctx, "c1", 10)
	require.NoError(t, err)
	require.Len(t, tl, 3)

	// AppendPipe takes entries newest last.
	_, err = b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
		b.st.AppendPipe(b.ctx, p, "c1",
			herald.TimelineEntry{Kind: herald.KindJourney, Summary: "fourth"},
			herald.TimelineEntry{Kind: herald.KindJourney, Summary: "fifth"})
		return nil
	})
	require.NoError(t, err)
	tl, err = b.st.Timeline(b.ctx, "c1", 3)
	require.NoError(t, err)
	require.Equal(t, []string{"fifth", "fourth", "third"}, summaries(tl))
	require.Equal(t, stored(start.Add(2*time.Second)), tl[0].At)

	// An entry that does not decode is skipped.
	require.NoError(t, b.rdb.LPush(b.ctx, redisstore.Key("c1", "timeline"), "not json").Err())
	tl, err = b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"fifth", "fourth", "third", "second", "first"}, summaries(tl))

	tl, err = b.st.Timeline(b.ctx, "c2", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"other customer"}, summaries(tl))
}

func TestTimelineCap(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.Key("c1", "timeline")
	for i := range redisstore.TimelineCap + 10 {
		require.NoError(t, b.st.Append(b.ctx, "c1", herald.TimelineEntry{Kind: herald.KindEvent, Summary: fmt.Sprint(i)}))
		n, err := b.rdb.LLen(b.ctx, key).Result()
		require.NoError(t, err)
		require.EqualValues(t, min(i+1, redisstore.TimelineCap), n)
	}
	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Len(t, tl, redisstore.TimelineCap)
	require.Equal(t, fmt.Sprint(redisstore.TimelineCap+9), tl[0].Summary, "newest first")
	require.Equal(t, "10", tl[len(tl)-1].Summary, "the oldest entries are dropped")

	// AppendPipe keeps the cap too.
	_, err = b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
		b.st.AppendPipe(b.ctx, p, "c1", herald.TimelineEntry{Summary: "x"}, herald.TimelineEntry{Summary: "y"})
		return nil
	})
	require.NoError(t, err)
	tl, err = b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Len(t, tl, redisstore.TimelineCap)
	require.Equal(t, "y", tl[0].Summary)
	require.Equal(t, "12", tl[len(tl)-1].Summary)
}

func summaries(tl []herald.TimelineEntry) []string {
	out := make([]string, len(tl))
	for i, e := range tl {
		out[i] = e.Summary
	}
	return out
}

func TestClaim(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.Key("c1", "claim", "journeys")

	release, ok, err := b.st.Claim(b.ctx, "c1", "journeys", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	require.LessOrEqual(t, b.pttl(t, key), time.Minute)

	_, ok, err = b.st.Claim(b.ctx, "c1", "journeys", time.Minute)
	require.NoError(t, err)
	require.False(t, ok, "a held claim is taken twice")

	// Claims of another name or customer are independent.
	_, ok, err = b.st.Claim(b.ctx, "c1", "other", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = b.st.Claim(b.ctx, "c2", "journeys", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)

	release()
	require.False(t, b.exists(t, key))
	release() // twice is harmless

	release2, ok, err := b.st.Claim(b.ctx, "c1", "journeys", time.Minute)
	require.NoError(t, err)
	require.True(t, ok, "a released claim cannot be taken again")

	// Our claim runs out (deleted by hand here, as its expiry would) and
	// another worker takes it: releasing ours must leave theirs alone.
	require.NoError(t, b.rdb.Del(b.ctx, key).Err())
	_, ok, err = b.st.Claim(b.ctx, "c1", "journeys", time.Minute)
	require.NoError(t, err)
	require.True(t, ok)
	release2()
	require.True(t, b.exists(t, key), "a stale release dropped another worker's claim")
	_, ok, err = b.st.Claim(b.ctx, "c1", "journeys", time.Minute)
	require.NoError(t, err)
	require.False(t, ok)
}

func TestClaimRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.down(t)
	release, ok, err := b.st.Claim(b.ctx, "c1", "journeys", time.Minute)
	require.Error(t, err)
	require.False(t, ok)
	release()
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const scope = "token\x00/v1/events\x00key-1"
	recKey := "herald:idem:" + redisstore.Hash(scope)
	pending := redisstore.Idempotent{Fingerprint: "fp1"}
	done := redisstore.Idempotent{Fingerprint: "fp1", Status: 202, Body: json.RawMessage(`{"id":"e_1"}`)}

	rec, seen, err := b.st.Remember(b.ctx, scope, pending, time.Minute)
	require.NoError(t, err)
	require.False(t, seen)
	sameRecord(t, pending, rec)
	require.LessOrEqual(t, b.pttl(t, recKey), time.Minute)
	raw, err := b.rdb.Get(b.ctx, recKey).Result()
	require.NoError(t, err)
	require.NotContains(t, raw, "key-1")

	// A repeat gets the first record, whatever it brings.
	rec, seen, err = b.st.Remember(b.ctx, scope, redisstore.Idempotent{Fingerprint: "fp2"}, time.Minute)
	require.NoError(t, err)
	require.True(t, seen)
	sameRecord(t, pending, rec)

	require.NoError(t, b.st.Settle(b.ctx, scope, done, 24*time.Hour))
	require.Greater(t, b.pttl(t, recKey), time.Minute)
	rec, seen, err = b.st.Remember(b.ctx, scope, pending, time.Minute)
	require.NoError(t, err)
	require.True(t, seen)
	sameRecord(t, done, rec)
	require.Greater(t, b.pttl(t, recKey), time.Minute, "a repeat shortened the settled record's life")

	// Another key is independent.
	rec, seen, err = b.st.Remember(b.ctx, scope+"x", redisstore.Idempotent{Fingerprint: "fp3"}, time.Minute)
	require.NoError(t, err)
	require.False(t, seen)
	require.Equal(t, "fp3", rec.Fingerprint)

	require.NoError(t, b.st.Forget(b.ctx, scope))
	require.False(t, b.exists(t, recKey))
	require.NoError(t, b.st.Forget(b.ctx, scope), "forgetting twice")
	rec, seen, err = b.st.Remember(b.ctx, scope, redisstore.Idempotent{Fingerprint: "fp4"}, time.Minute)
	require.NoError(t, err)
	require.False(t, seen)
	require.Equal(t, "fp4", rec.Fingerprint)
}

// RememberFor reads whether a customer exists in the round trip that takes
// the key, whether the key is new or a repeat.
func TestRememberForReadsTheCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c1", Email: "ada@example.com"})
	require.NoError(t, err)
	for _, tc := range []struct {
		customer string
		found    bool
	}{{"c1", true}, {"c2", false}, {"", false}, {"bad}id", false}} {
		got, err := b.st.RememberFor(b.ctx, "tok\x00/v1/messages\x00k-"+tc.customer, redisstore.Idempotent{Fingerprint: "fp1"}, time.Minute, tc.customer)
		require.NoError(t, err)
		require.False(t, got.Seen)
		require.Equal(t, tc.found, got.CustomerFound, "customer %q", tc.customer)
		require.Equal(t, tc.customer == "c1" || tc.customer == "c2", got.Checked, "customer %q", tc.customer)
		again, err := b.st.RememberFor(b.ctx, "tok\x00/v1/messages\x00k-"+tc.customer, redisstore.Idempotent{Fingerprint: "fp2"}, time.Minute, tc.customer)
		require.NoError(t, err)
		require.True(t, again.Seen)
		require.Equal(t, "fp1", again.Record.Fingerprint)
		require.Equal(t, tc.found, again.CustomerFound, "customer %q on a repeat", tc.customer)
	}
}

// sameRecord compares idempotency records; a nil body is stored as null.
func sameRecord(t *testing.T, want, got redisstore.Idempotent) {
	t.Helper()
	require.Equal(t, want.Fingerprint, got.Fingerprint)
	require.Equal(t, want.Status, got.Status)
	body := func(b json.RawMessage) string {
		if b == nil {
			return "null"
		}
		return string(b)
	}
	require.JSONEq(t, body(want.Body), body(got.Body))
}

// Idempotency keys are opaque: keys that differ only in letter case or in
// surrounding spaces name different requests.
func TestIdempotencyKeysAreExact(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, first, second string }{
		{"key case", "tok\x00/v1/events\x00order-abc", "tok\x00/v1/events\x00order-ABC"},
		{"trailing space", "tok\x00/v1/events\x00k", "tok\x00/v1/events\x00k "},
		{"token name case", "Tok\x00/v1/events\x00k", "tok\x00/v1/events\x00k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			_, seen, err := b.st.Remember(b.ctx, tc.first, redisstore.Idempotent{Fingerprint: "fp1", Status: 202}, time.Minute)
			require.NoError(t, err)
			require.False(t, seen)
			rec, seen, err := b.st.Remember(b.ctx, tc.second, redisstore.Idempotent{Fingerprint: "fp2"}, time.Minute)
			require.NoError(t, err)
			require.False(t, seen, "key %q answered with the record of %q: %+v", tc.second, tc.first, rec)
		})
	}
}

func TestSlackUsers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	su := b.st.SlackUsers()

	_, ok, err := su.Get(b.ctx, "ada@example.com")
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, su.Set(b.ctx, "ada@example.com", "U123", time.Hour))
	id, ok, err := su.Get(b.ctx, "Ada@Example.com")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "U123", id)

	keys, err := b.rdb.Keys(b.ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	require.NotContains(t, keys[0], "ada", "the key holds the address")
	require.LessOrEqual(t, b.pttl(t, keys[0]), time.Hour)
}

func TestDeleteCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Customers whose IDs share a prefix with "a", and global keys.
	ids := []string{"a", "ab", "a:b", "a.b", "A", "b"}
	// customer, timeline, prefs, journeys and two ledger keys
	const perCustomer = 6
	for _, id := range ids {
		_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: id})
		require.NoError(t, err)
		require.NoError(t, b.st.Append(b.ctx, id, herald.TimelineEntry{Summary: "x"}))
		require.NoError(t, b.rdb.Set(b.ctx, redisstore.Key(id, "prefs"), "{}", 0).Err())
		require.NoError(t, b.rdb.SAdd(b.ctx, redisstore.Key(id, "journeys"), "j1").Err())
		c, err := b.st.ClaimDelivery(b.ctx, id, "m1:email", time.Minute, "")
		require.NoError(t, err)
		_, err = c.Finish(b.ctx, redisstore.SentRecord{Channel: herald.ChannelEmail}, herald.TimelineEntry{Summary: "sent"}, nil, 0)
		require.NoError(t, err)
		_, err = b.st.ClaimDelivery(b.ctx, id, "m1:slack", time.Minute, "")
		require.NoError(t, err)
	}
	global := []string{"herald:idem:x", "herald:slackuser:y", "herald:{c:a}", "herald:c:a:customer", "herald:{c:a}x"}
	for _, k := range global {
		require.NoError(t, b.rdb.Set(b.ctx, k, "1", 0).Err())
	}
	before, err := b.rdb.Keys(b.ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, before, perCustomer*len(ids)+len(global)+1) // + the customer index

	n, err := b.st.DeleteCustomer(b.ctx, "a")
	require.NoError(t, err)
	require.Equal(t, perCustomer, n)

	after, err := b.rdb.Keys(b.ctx, "*").Result()
	require.NoError(t, err)
	require.Len(t, after, len(before)-perCustomer)
	for _, k := range after {
		require.False(t, strings.HasPrefix(k, "herald:{c:a}:"), "left %s", k)
	}
	for _, id := range ids[1:] {
		_, err := b.st.Customer(b.ctx, id)
		require.NoError(t, err, "customer %s", id)
	}
	_, err = b.st.Customer(b.ctx, "a")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err))

	// Nothing left to delete.
	n, err = b.st.DeleteCustomer(b.ctx, "a")
	require.NoError(t, err)
	require.Zero(t, n)
}

// A customer with more keys than one SCAN step returns loses them all.
func TestDeleteCustomerManyKeys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const keys = 1200
	_, err := b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
		for i := range keys {
			p.Set(b.ctx, redisstore.Key("c1", "ledger", fmt.Sprint(i)), "{}", 0)
			p.Set(b.ctx, redisstore.Key("c2", "ledger", fmt.Sprint(i)), "{}", 0)
		}
		return nil
	})
	require.NoError(t, err)

	n, err := b.st.DeleteCustomer(b.ctx, "c1")
	require.NoError(t, err)
	// SCAN may return a key twice, so the count is at least the keys.
	require.GreaterOrEqual(t, n, keys)
	left, err := b.rdb.Keys(b.ctx, "herald:{c:c1}:*").Result()
	require.NoError(t, err)
	require.Empty(t, left)
	size, err := b.rdb.DBSize(b.ctx).Result()
	require.NoError(t, err)
	require.EqualValues(t, keys, size)
}

func TestDeleteCustomerRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.down(t)
	_, err := b.st.DeleteCustomer(b.ctx, "c1")
	require.Error(t, err)
}
