package redisstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// claim takes the delivery's claim and requires that it is held.
func (b bundle) claim(t *testing.T, customerID, deliveryID string, ttl time.Duration) *redisstore.Claim {
	t.Helper()
	c, err := b.st.ClaimDelivery(b.ctx, customerID, deliveryID, ttl, "")
	require.NoError(t, err)
	require.True(t, c.Held, "claim of %s not held", deliveryID)
	require.False(t, c.Sent)
	return c
}

// finish records the send and requires that it was the first.
func (b bundle) finish(t *testing.T, c *redisstore.Claim, rec redisstore.SentRecord) {
	t.Helper()
	first, err := c.Finish(b.ctx, rec, herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "sent"}, nil, 0)
	require.NoError(t, err)
	require.True(t, first)
}

func (b bundle) ledger(t *testing.T, customerID, deliveryID string) redisstore.SentRecord {
	t.Helper()
	msg, ch, ok := strings.Cut(deliveryID, ":")
	require.True(t, ok, "delivery %q is not message:channel", deliveryID)
	recs, err := b.st.Sent(b.ctx, customerID, msg, []herald.Channel{herald.Channel(ch)})
	require.NoError(t, err)
	rec, ok := recs[herald.Channel(ch)]
	require.True(t, ok, "no ledger record of %s", deliveryID)
	return rec
}

func TestClaimDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.LedgerKey("c1", "m1:email")

	a := b.claim(t, "c1", "m1:email", time.Minute)

	// Another copy of the task while the claim is held.
	other, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
	require.NoError(t, err)
	require.False(t, other.Held)
	require.False(t, other.Sent)
	// Releasing a claim it never held changes nothing.
	other.Release(b.ctx)
	again, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
	require.NoError(t, err)
	require.False(t, again.Held)

	// Other deliveries and customers are independent.
	b.claim(t, "c1", "m1:slack", time.Minute)
	b.claim(t, "c2", "m1:email", time.Minute)

	a.Release(b.ctx)
	require.False(t, a.Held)
	require.False(t, b.exists(t, key))
	a.Release(b.ctx) // twice is harmless

	a = b.claim(t, "c1", "m1:email", time.Minute)
	rec := redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "pid-1", SentAt: stored(start), Workflow: "welcome", Topic: "onboarding", Template: "welcome", Locale: "en"}
	first, err := a.Finish(b.ctx, rec, herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "sent"}, nil, 0)
	require.NoError(t, err)
	require.True(t, first)
	require.False(t, a.Held)
	require.Equal(t, rec, b.ledger(t, "c1", "m1:email"))

	// A Release after Finish (a deferred one) keeps the record.
	a.Release(b.ctx)
	require.Equal(t, rec, b.ledger(t, "c1", "m1:email"))

	for range 3 {
		c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
		require.NoError(t, err)
		require.True(t, c.Sent)
		require.False(t, c.Held)
		c.Release(b.ctx)
	}
	require.Equal(t, rec, b.ledger(t, "c1", "m1:email"))
}

func TestClaimDeliveryTTL(t *testing.T) {
	t.Parallel()
	// Long enough that the claim is still there when its TTL is read; a
	// fraction of a second is sent as PX, whole seconds as EX.
	for _, ttl := range []time.Duration{10500 * time.Millisecond, 20 * time.Second, time.Hour} {
		t.Run(ttl.String(), func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.claim(t, "c1", "m1:email", ttl)
			require.LessOrEqual(t, b.pttl(t, redisstore.LedgerKey("c1", "m1:email")), ttl)
		})
	}
}

// A claim whose worker died runs out, and the delivery can be claimed again.
func TestClaimDeliveryExpires(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.LedgerKey("c1", "m1:email")
	dead := b.claim(t, "c1", "m1:email", 50*time.Millisecond)
	require.Eventually(t, func() bool { return !b.exists(t, key) }, 10*time.Second, 5*time.Millisecond)

	next := b.claim(t, "c1", "m1:email", time.Minute)
	// The dead worker's handle must not release the new claim.
	dead.Release(b.ctx)
	require.True(t, b.exists(t, key))
	c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
	require.NoError(t, err)
	require.False(t, c.Held)
	require.False(t, c.Sent)
	b.finish(t, next, redisstore.SentRecord{Channel: herald.ChannelEmail})
}

// A claim that ran out (deleted by hand here, as its expiry would) and was
// taken by another worker: the first worker's Release leaves the other's
// claim alone.
func TestClaimDeliveryLostRelease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.LedgerKey("c1", "m1:email")

	slow := b.claim(t, "c1", "m1:email", time.Minute)
	require.NoError(t, b.rdb.Del(b.ctx, key).Err())
	fast := b.claim(t, "c1", "m1:email", time.Minute)

	slow.Release(b.ctx)
	require.True(t, b.exists(t, key), "a stale release dropped another worker's claim")
	c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
	require.NoError(t, err)
	require.False(t, c.Held)
	require.False(t, c.Sent)

	fast.Release(b.ctx)
	require.False(t, b.exists(t, key))
}

// Finish reports first=false when the ledger key no longer held our claim:
// the claim ran out (deleted by hand here) and another worker may have sent
// too.
func TestFinishNotFirst(t *testing.T) {
	t.Parallel()
	entry := herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "sent"}
	for _, tc := range []struct {
		name string
		// after our claim is gone: "claimed" (another worker holds it),
		// "sent" (another worker finished), "" (nobody took it).
		other string
	}{
		{"claim replaced by another worker's", "claimed"},
		{"another worker sent", "sent"},
		{"claim ran out, nobody took it", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			key := redisstore.LedgerKey("c1", "m1:email")
			slow := b.claim(t, "c1", "m1:email", time.Minute)
			require.NoError(t, b.rdb.Del(b.ctx, key).Err())
			var fast *redisstore.Claim
			switch tc.other {
			case "claimed":
				fast = b.claim(t, "c1", "m1:email", time.Minute)
			case "sent":
				b.finish(t, b.claim(t, "c1", "m1:email", time.Minute), redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "fast"})
			}

			first, err := slow.Finish(b.ctx, redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "slow"}, entry, nil, 0)
			require.NoError(t, err)
			require.False(t, first, "Finish without our claim reported first")
			require.False(t, slow.Held)
			// The send is recorded all the same, and holds off later copies.
			require.Equal(t, "slow", b.ledger(t, "c1", "m1:email").ProviderID)
			require.Greater(t, b.pttl(t, key), time.Minute)
			c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
			require.NoError(t, err)
			require.True(t, c.Sent)
			require.False(t, c.Held)

			if fast != nil {
				// The worker whose claim was overwritten is not first either.
				first, err := fast.Finish(b.ctx, redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "fast"}, entry, nil, 0)
				require.NoError(t, err)
				require.False(t, first)
			}
		})
	}
}

func TestClaimDeliverySuppressed(t *testing.T) {
	t.Parallel()
	const suppress = "herald:suppress:email:abc"
	for _, tc := range []struct {
		name        string
		suppressKey string
		suppressed  bool // whether suppress exists
		state       string
		want        bool
	}{
		{"no key asked", "", true, "fresh", false},
		{"suppressed", suppress, true, "fresh", true},
		{"not suppressed", suppress, false, "fresh", false},
		{"other key suppressed", "herald:suppress:email:def", true, "fresh", false},
		{"suppressed while held elsewhere", suppress, true, "held", true},
		{"suppressed after send", suppress, true, "sent", true},
		{"not suppressed after send", suppress, false, "sent", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			if tc.suppressed {
				require.NoError(t, b.rdb.Set(b.ctx, suppress, "1", 0).Err())
			}
			switch tc.state {
			case "held":
				b.claim(t, "c1", "m1:email", time.Minute)
			case "sent":
				b.finish(t, b.claim(t, "c1", "m1:email", time.Minute), redisstore.SentRecord{Channel: herald.ChannelEmail})
			}
			c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, tc.suppressKey)
			require.NoError(t, err)
			require.Equal(t, tc.want, c.Suppressed)
			require.Equal(t, tc.state == "fresh", c.Held)
			require.Equal(t, tc.state == "sent", c.Sent)
		})
	}
}

func TestClaimDeliveryRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.down(t)
	for _, supp := range []string{"", "herald:suppress:x"} {
		c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, supp)
		require.Error(t, err, "claim while Redis is down: %+v", c)
		require.Nil(t, c)
		require.True(t, herald.IsTemporary(err), "got %v", err)
	}
}

// A sent delivery whose task runs again later (a copy from asynq's retry
// set, a duplicate enqueue) finds the ledger record every time, whatever
// stale claim handles do in between, and never gets the claim.
func TestClaimDeliveryAfterFinishAlwaysSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.LedgerKey("c1", "m1:email")

	// Workers whose claims ran out (deleted by hand, as expiry would) while
	// they still hold their handles.
	stale := make([]*redisstore.Claim, 100)
	for i := range stale {
		stale[i] = b.claim(t, "c1", "m1:email", time.Minute)
		require.NoError(t, b.rdb.Del(b.ctx, key).Err())
	}
	w := b.claim(t, "c1", "m1:email", time.Minute)
	rec := redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "pid-1", SentAt: stored(start)}
	b.finish(t, w, rec)
	w.Release(b.ctx)

	for i := range 100 {
		c, err := b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, "")
		require.NoError(t, err)
		require.True(t, c.Sent, "run %d", i)
		require.False(t, c.Held, "run %d", i)
		c.Release(b.ctx)
		stale[i].Release(b.ctx)
		require.Equal(t, rec, b.ledger(t, "c1", "m1:email"), "run %d", i)
	}
	require.Greater(t, b.pttl(t, key), time.Minute, "the ledger record lost its TTL")
}

func TestClaimDeliveryRace(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const workers = 20

	race := func(deliveryID string) (held, sent int) {
		var nHeld, nSent atomic.Int32
		var wg sync.WaitGroup
		startCh := make(chan struct{})
		errs := make(chan error, workers)
		for range workers {
			wg.Go(func() {
				<-startCh
				c, err := b.st.ClaimDelivery(b.ctx, "c1", deliveryID, time.Minute, "")
				if err != nil {
					errs <- err
					return
				}
				if c.Held {
					nHeld.Add(1)
				}
				if c.Sent {
					nSent.Add(1)
				}
			})
		}
		close(startCh)
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		return int(nHeld.Load()), int(nSent.Load())
	}

	held, sent := race("m1:email")
	require.Equal(t, 1, held)
	require.Zero(t, sent)

	b.finish(t, b.claim(t, "c1", "m2:email", time.Minute), redisstore.SentRecord{Channel: herald.ChannelEmail})
	held, sent = race("m2:email")
	require.Zero(t, held)
	require.Equal(t, workers, sent)
}

func TestFinish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.claim(t, "c1", "m1:email", time.Minute)
	rec := redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "<abc@mail>", SentAt: stored(start)}
	indexes := map[string]string{
		"herald:msg:m1": "c1",
		"herald:mid:" + redisstore.Hash("<abc@mail>"): "c1:m1:email",
	}
	b.clock.Advance(time.Second)
	first, err := c.Finish(b.ctx, rec, herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "email sent", Channel: herald.ChannelEmail, Outcome: "sent", Ref: "m1"}, indexes, time.Hour)
	require.NoError(t, err)
	require.True(t, first)

	require.Equal(t, rec, b.ledger(t, "c1", "m1:email"))
	ttl := b.pttl(t, redisstore.LedgerKey("c1", "m1:email"))
	require.LessOrEqual(t, ttl, redisstore.LedgerTTL)
	require.Greater(t, ttl, redisstore.LedgerTTL-time.Hour)

	for k, v := range indexes {
		got, err := b.rdb.Get(b.ctx, k).Result()
		require.NoError(t, err, k)
		require.Equal(t, v, got)
		require.LessOrEqual(t, b.pttl(t, k), time.Hour)
	}

	// A second delivery, with its own entry time.
	c = b.claim(t, "c1", "m1:slack", time.Minute)
	at := start.Add(-time.Minute)
	first, err = c.Finish(b.ctx, redisstore.SentRecord{Channel: herald.ChannelSlack}, herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "slack sent", At: at}, nil, 0)
	require.NoError(t, err)
	require.True(t, first)

	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Equal(t, []herald.TimelineEntry{
		{Kind: herald.KindDelivery, Summary: "slack sent", At: stored(at)},
		{Kind: herald.KindDelivery, Summary: "email sent", Channel: herald.ChannelEmail, Outcome: "sent", Ref: "m1", At: stored(start.Add(time.Second))},
	}, tl)
	tl, err = b.st.Timeline(b.ctx, "c2", 0)
	require.NoError(t, err)
	require.Empty(t, tl)
}

func TestFinishRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.claim(t, "c1", "m1:email", time.Minute)
	b.down(t)
	first, err := c.Finish(b.ctx, redisstore.SentRecord{}, herald.TimelineEntry{}, nil, 0)
	require.Error(t, err)
	require.False(t, first)
}

// The timeline grows at most timelineSlack (50) past TimelineCap on Finish,
// which then trims it back to TimelineCap; Append keeps it at TimelineCap.
func TestFinishTimelineBounded(t *testing.T) {
	t.Parallel()
	const slack = 50
	for _, tc := range []struct {
		name string
		runs []run // f: Finish, a: Append, n times each
	}{
		{"finish only", []run{{'f', redisstore.TimelineCap + 60}}},
		{"finish past the cap then append", []run{{'f', redisstore.TimelineCap + 40}, {'a', 1}, {'f', 60}}},
		{"append to the cap then finish", []run{{'a', redisstore.TimelineCap + 5}, {'f', slack + 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			key := redisstore.Key("c1", "timeline")
			want, n, trims := 0, 0, 0
			for _, r := range tc.runs {
				for range r.n {
					n++
					summary := strconv.Itoa(n)
					switch r.op {
					case 'f':
						c := b.claim(t, "c1", "m"+summary+":email", time.Minute)
						first, err := c.Finish(b.ctx, redisstore.SentRecord{Channel: herald.ChannelEmail}, herald.TimelineEntry{Summary: summary}, nil, 0)
						require.NoError(t, err)
						require.True(t, first)
						want++
						if want > redisstore.TimelineCap+slack {
							want = redisstore.TimelineCap
							trims++
						}
					case 'a':
						require.NoError(t, b.st.Append(b.ctx, "c1", herald.TimelineEntry{Summary: summary}))
						want = min(want+1, redisstore.TimelineCap)
					}
					got, err := b.rdb.LLen(b.ctx, key).Result()
					require.NoError(t, err)
					require.EqualValues(t, want, got, "after entry %d", n)
					require.LessOrEqual(t, got, int64(redisstore.TimelineCap+slack))
				}
			}
			require.Positive(t, trims, "the case never trims")
			tl, err := b.st.Timeline(b.ctx, "c1", 0)
			require.NoError(t, err)
			require.Len(t, tl, want)
			for i, e := range tl {
				require.Equal(t, strconv.Itoa(n-i), e.Summary, "entries are newest first and the oldest dropped")
			}
		})
	}
}

type run struct {
	op byte
	n  int
}

func TestSent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	email := redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "<1@mail>", SentAt: stored(start), Workflow: "wf", Journey: "j1", Step: "s1", Topic: "news", Template: "t1", Locale: "pl"}
	other := redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "<2@mail>", SentAt: stored(start.Add(time.Minute))}
	b.finish(t, b.claim(t, "c1", "m1:email", time.Minute), email)
	b.claim(t, "c1", "m1:slack", time.Minute) // in progress
	b.finish(t, b.claim(t, "c1", "m2:email", time.Minute), other)
	b.finish(t, b.claim(t, "c2", "m1:slack", time.Minute), redisstore.SentRecord{Channel: herald.ChannelSlack})
	// A delivery ID that is not message:channel.
	b.finish(t, b.claim(t, "c1", "m1", time.Minute), redisstore.SentRecord{Channel: herald.ChannelSlack})

	for _, tc := range []struct {
		name     string
		customer string
		message  string
		channels []herald.Channel
		want     map[herald.Channel]redisstore.SentRecord
	}{
		{"sent, in progress and missing", "c1", "m1", []herald.Channel{herald.ChannelEmail, herald.ChannelSlack, "sms"}, map[herald.Channel]redisstore.SentRecord{herald.ChannelEmail: email}},
		{"one channel", "c1", "m1", []herald.Channel{herald.ChannelEmail}, map[herald.Channel]redisstore.SentRecord{herald.ChannelEmail: email}},
		{"in progress only", "c1", "m1", []herald.Channel{herald.ChannelSlack}, map[herald.Channel]redisstore.SentRecord{}},
		{"another message", "c1", "m2", herald.Channels, map[herald.Channel]redisstore.SentRecord{herald.ChannelEmail: other}},
		{"unknown message", "c1", "m3", herald.Channels, map[herald.Channel]redisstore.SentRecord{}},
		{"another customer", "c2", "m1", herald.Channels, map[herald.Channel]redisstore.SentRecord{herald.ChannelSlack: {Channel: herald.ChannelSlack}}},
		{"unknown customer", "c3", "m1", herald.Channels, map[herald.Channel]redisstore.SentRecord{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := b.st.Sent(b.ctx, tc.customer, tc.message, tc.channels)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// A message with no channels (nothing could deliver it) has no sends: asking
// is no error, least of all a temporary one that a caller would retry.
func TestSentNoChannels(t *testing.T) {
	t.Parallel()
	b := setup(t)
	got, err := b.st.Sent(b.ctx, "c1", "m1", nil)
	require.NoError(t, err)
	require.Empty(t, got)
}

func TestSentCorruptRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.LedgerKey("c1", "m1:email"), "{not json", 0).Err())
	_, err := b.st.Sent(b.ctx, "c1", "m1", herald.Channels)
	require.Error(t, err)
	require.False(t, herald.IsTemporary(err))
}

func TestSentRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.down(t)
	_, err := b.st.Sent(b.ctx, "c1", "m1", herald.Channels)
	require.Error(t, err)
	require.True(t, herald.IsTemporary(err), "got %v", err)
}

func TestLoadSendState(t *testing.T) {
	t.Parallel()
	var (
		prefsKey = redisstore.Key("c1", "prefs")
		capKey   = redisstore.Key("c1", "cap", "marketing")
		prefs    = herald.Preferences{
			Channels:     map[herald.Channel]bool{herald.ChannelEmail: false},
			ChannelOrder: []herald.Channel{herald.ChannelSlack, herald.ChannelEmail},
			Topics:       map[string]bool{"news": false},
			QuietHours:   &herald.QuietHours{Start: "22:00", End: "07:00"},
			UpdatedAt:    start.Add(-time.Hour),
		}
		since = start // not on a millisecond: 09:26:53.589793238
		// Sends around since: one in the same millisecond but before it.
		sends = []time.Time{
			since.Add(-time.Hour),
			since.Truncate(time.Millisecond),
			since,
			since.Add(time.Microsecond),
			since.Add(30 * time.Minute),
		}
	)
	prefsJSON, err := json.Marshal(prefs)
	require.NoError(t, err)

	for _, tc := range []struct {
		name     string
		id       string
		customer bool
		prefs    string
		capKey   string
		sends    bool
		wantCode string
		want     func(c herald.Customer) redisstore.SendState
	}{
		{
			name: "customer, preferences and sends", id: "c1", customer: true, prefs: string(prefsJSON), capKey: capKey, sends: true,
			want: func(c herald.Customer) redisstore.SendState {
				return redisstore.SendState{Customer: c, Prefs: prefs, RecentSends: []time.Time{since, since.Add(time.Microsecond), since.Add(30 * time.Minute)}}
			},
		},
		{
			name: "no cap asked", id: "c1", customer: true, prefs: string(prefsJSON), sends: true,
			want: func(c herald.Customer) redisstore.SendState { return redisstore.SendState{Customer: c, Prefs: prefs} },
		},
		{
			name: "no sends recorded", id: "c1", customer: true, prefs: string(prefsJSON), capKey: capKey,
			want: func(c herald.Customer) redisstore.SendState { return redisstore.SendState{Customer: c, Prefs: prefs} },
		},
		{
			name: "no preferences", id: "c1", customer: true, capKey: capKey, sends: true,
			want: func(c herald.Customer) redisstore.SendState {
				return redisstore.SendState{Customer: c, RecentSends: []time.Time{since, since.Add(time.Microsecond), since.Add(30 * time.Minute)}}
			},
		},
		{name: "unknown customer", id: "c1", prefs: string(prefsJSON), capKey: capKey, sends: true, wantCode: herald.ENotFound},
		{name: "corrupt preferences", id: "c1", customer: true, prefs: `{"channels":`, wantCode: herald.EInternal},
		{name: "preferences of the wrong shape", id: "c1", customer: true, prefs: `{"channels":["email"]}`, wantCode: herald.EInternal},
		{name: "invalid id", id: "c1}x", customer: true, prefs: string(prefsJSON), wantCode: herald.EInvalid},
		{name: "empty id", id: "", wantCode: herald.EInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var cust herald.Customer
			if tc.customer {
				cust, _, err = b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c1", Email: "ada@example.com", Locale: "pl", Attributes: map[string]any{"plan": "pro"}})
				require.NoError(t, err)
			}
			if tc.prefs != "" {
				require.NoError(t, b.rdb.Set(b.ctx, prefsKey, tc.prefs, 0).Err())
			}
			if tc.sends {
				zs := []redis.Z{{Score: float64(since.UnixMilli()), Member: "not a time"}}
				for _, s := range sends {
					zs = append(zs, redis.Z{Score: float64(s.UnixMilli()), Member: strconv.FormatInt(s.UnixNano(), 10)})
				}
				require.NoError(t, b.rdb.ZAdd(b.ctx, capKey, zs...).Err())
			}

			got, err := b.st.LoadSendState(b.ctx, tc.id, prefsKey, tc.capKey, since)
			if tc.wantCode != "" {
				require.Error(t, err)
				require.Equal(t, tc.wantCode, herald.ErrorCode(err), "got %v", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want(cust), got)
		})
	}
}

func TestLoadSendStateCorruptCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.Key("c1", "customer"), "{", 0).Err())
	_, err := b.st.LoadSendState(b.ctx, "c1", redisstore.Key("c1", "prefs"), "", start)
	require.Equal(t, herald.EInternal, herald.ErrorCode(err))
	var he *herald.Error
	require.ErrorAs(t, err, &he, "want a *herald.Error, got %T", err)
}

func TestLoadSendStateRedisDown(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.down(t)
	for _, capKey := range []string{"", redisstore.Key("c1", "cap", "x")} {
		_, err := b.st.LoadSendState(b.ctx, "c1", redisstore.Key("c1", "prefs"), capKey, start)
		require.Error(t, err)
		require.True(t, herald.IsTemporary(err), "got %v", err)
	}
}

func TestLedgerKeyHoldsOneDelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.finish(t, b.claim(t, "c1", "m1:email", time.Minute), redisstore.SentRecord{Channel: herald.ChannelEmail})
	keys, err := b.rdb.Keys(b.ctx, "*ledger*").Result()
	require.NoError(t, err)
	require.Equal(t, []string{fmt.Sprintf("herald:{c:%s}:ledger:%s", "c1", "m1:email")}, keys)
}

// LoadSendStateClaiming reads the customer and takes the claim in one
// round trip: the claim behaves as ClaimDelivery's, a customer that does
// not exist leaves no claim behind, and SuppressedAt answers for the key
// checked with the claim and asks Redis for any other.
func TestLoadSendStateClaiming(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const guess, other = "herald:suppress:email:abc", "herald:suppress:email:def"
	require.NoError(t, b.rdb.Set(b.ctx, other, "1", 0).Err())
	_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c1", Email: "ada@example.com"})
	require.NoError(t, err)
	load := func(customerID, deliveryID string) (redisstore.SendState, *redisstore.Claim, error) {
		return b.st.LoadSendStateClaiming(b.ctx, customerID, redisstore.PrefsKey(customerID), "", time.Time{},
			redisstore.ClaimAsk{DeliveryID: deliveryID, TTL: time.Minute, SuppressKey: guess})
	}

	st, c, err := load("c1", "m1:email")
	require.NoError(t, err)
	require.Equal(t, "ada@example.com", st.Customer.Email)
	require.True(t, c.Held)
	require.Equal(t, "m1:email", c.DeliveryID())
	sup, err := c.SuppressedAt(b.ctx, guess)
	require.NoError(t, err)
	require.False(t, sup)
	sup, err = c.SuppressedAt(b.ctx, other)
	require.NoError(t, err)
	require.True(t, sup, "another key than the guess is read from Redis")
	sup, err = c.SuppressedAt(b.ctx, "")
	require.NoError(t, err)
	require.False(t, sup)

	// Another copy meanwhile: in progress elsewhere; after the send: sent.
	_, again, err := load("c1", "m1:email")
	require.NoError(t, err)
	require.False(t, again.Held)
	require.False(t, again.Sent)
	b.finish(t, c, redisstore.SentRecord{Channel: herald.ChannelEmail})
	_, again, err = load("c1", "m1:email")
	require.NoError(t, err)
	require.True(t, again.Sent)
	require.False(t, again.Held)

	// No customer: not found, and no claim left on the ledger key.
	_, c, err = load("c2", "m2:email")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err))
	require.Nil(t, c)
	require.False(t, b.exists(t, redisstore.LedgerKey("c2", "m2:email")))

	// Nothing asked: nothing claimed.
	_, c, err = b.st.LoadSendStateClaiming(b.ctx, "c1", redisstore.PrefsKey("c1"), "", time.Time{}, redisstore.ClaimAsk{})
	require.NoError(t, err)
	require.Nil(t, c)
}

// Finish counts the send for its frequency caps in the same round trip as
// the ledger record, as RecordSend would: read back by RecentSends and by
// the send state, kept for MaxSendWindow. A claim without a class counts
// nothing.
func TestFinishCountsTheSendForCaps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	prefs := redisstore.NewPrefs(b.rdb, b.clock.Now)
	at := stored(start)
	c := b.claim(t, "c1", "m1:email", time.Minute)
	c.CapClass = "marketing"
	b.finish(t, c, redisstore.SentRecord{Channel: herald.ChannelEmail, SentAt: at})
	c = b.claim(t, "c1", "m2:email", time.Minute)
	b.finish(t, c, redisstore.SentRecord{Channel: herald.ChannelEmail, SentAt: at.Add(time.Second)})

	sends, err := prefs.RecentSends(b.ctx, "c1", "marketing", at.Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, []time.Time{at}, sends)
	require.LessOrEqual(t, b.pttl(t, redisstore.SendsKey("c1", "marketing")), redisstore.MaxSendWindow)
	require.LessOrEqual(t, b.pttl(t, redisstore.Key("c1", "send-classes")), redisstore.MaxSendWindow)
	require.Zero(t, b.rdb.Exists(b.ctx, redisstore.SendsKey("c1", "")).Val())
}

// failExists makes every EXISTS in a pipeline fail after Redis answered,
// as a Cluster node down for that slot would, while the other commands of
// the pipeline succeed.
type failExists struct{}

func (failExists) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (failExists) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (failExists) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, c := range cmds {
			if c.Name() == "exists" {
				c.SetErr(errors.New("CLUSTERDOWN the slot is not served"))
			}
		}
		return err
	}
}

// A failed suppression or customer check is never "not suppressed" or "no
// such customer", even when the pipeline's first error is the claim's or
// the key's redis.Nil: the claim fails, the customer is left unchecked.
func TestFailedExistsIsNotAnAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: "c1", Email: "ada@example.com"})
	require.NoError(t, err)
	b.rdb.AddHook(failExists{})
	const supp = "herald:suppress:email:abc"

	_, err = b.st.ClaimDelivery(b.ctx, "c1", "m1:email", time.Minute, supp)
	require.Error(t, err)
	require.True(t, herald.IsTemporary(err), "%v", err)
	_, _, err = b.st.LoadSendStateClaiming(b.ctx, "c1", redisstore.PrefsKey("c1"), "", time.Time{},
		redisstore.ClaimAsk{DeliveryID: "m2:email", TTL: time.Minute, SuppressKey: supp})
	require.Error(t, err)
	require.True(t, herald.IsTemporary(err), "%v", err)
	// The key is taken; the customer is not known, and the caller reads
	// it again.
	got, err := b.st.RememberFor(b.ctx, "tok\x00/v1/messages\x00k", redisstore.Idempotent{Fingerprint: "fp"}, time.Minute, "c1")
	require.NoError(t, err)
	require.False(t, got.Seen)
	require.False(t, got.Checked)
	require.False(t, got.CustomerFound)
}

// Finish adds the send to its broadcast's counter in the ledger's write,
// and Landed tells a caller whose Finish lost its answer that the write
// was made: the ledger holds its record, not another's or none.
func TestFinishCountsItsBroadcastAndLanded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.claim(t, "c1", "b_bc1_c1:email", time.Minute)
	rec := redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "<abc@mail>", SentAt: stored(start)}
	landed, err := c.Landed(b.ctx, rec)
	require.NoError(t, err)
	require.False(t, landed, "only the claim is there")

	c.Counts = []redisstore.Count{{Broadcast: "bc1", Name: "sent:email"}}
	b.finish(t, c, rec)
	n, err := b.rdb.HGet(b.ctx, "herald:{b:bc1}:meta", "sent:email").Int()
	require.NoError(t, err)
	require.Equal(t, 1, n)

	landed, err = c.Landed(b.ctx, rec)
	require.NoError(t, err)
	require.True(t, landed)
	other := rec
	other.ProviderID = "<def@mail>"
	landed, err = c.Landed(b.ctx, other)
	require.NoError(t, err)
	require.False(t, landed, "another worker's record")

	b.down(t)
	_, err = c.Landed(b.ctx, rec)
	require.Error(t, err)
	require.True(t, herald.IsTemporary(err), "%v", err)
}
