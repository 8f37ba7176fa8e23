package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/preferences"
)

type storeBundle struct {
	store *Prefs
	rdb   *redis.Client
	clock *testClock
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func setupStore(t *testing.T) storeBundle {
	t.Helper()
	rdb := redistest.Start(t).Client()
	clock := &testClock{now: utc("2026-06-01T12:00:00Z")}
	return storeBundle{store: NewPrefs(rdb, clock.Now), rdb: rdb, clock: clock}
}

var (
	customerActor = preferences.Actor{Kind: preferences.ActorCustomer}
	apiActor      = preferences.Actor{Kind: preferences.ActorAPI, Name: "crm-sync"}
)

func TestStoreGetDefaults(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	p, err := b.store.Get(context.Background(), "cus_1")
	require.NoError(t, err)
	require.Equal(t, herald.Preferences{}, p)
	_, err = b.store.Get(context.Background(), "bad{id}")
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
}

func TestStoreApply(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()

	p, entries, err := b.store.Apply(ctx, "cus_1", preferences.Patch{
		Channels:   map[herald.Channel]bool{herald.ChannelEmail: false},
		Topics:     map[string]bool{"product-updates": false, "newsletter": true},
		QuietHours: &herald.QuietHours{Start: "21:00", End: "08:00"},
	}, apiActor, preferences.SourceAPI)
	require.NoError(t, err)
	require.False(t, p.ChannelOn(herald.ChannelEmail))
	require.Equal(t, b.clock.Now(), p.UpdatedAt)
	require.Len(t, entries, 4)
	fields := []string{}
	for _, e := range entries {
		fields = append(fields, e.Field)
		require.Equal(t, apiActor, e.Actor)
		require.Equal(t, preferences.SourceAPI, e.Source)
		require.Equal(t, "cus_1", e.CustomerID)
		require.True(t, strings.HasPrefix(e.ID, "cns_"))
		require.Equal(t, b.clock.Now(), e.At)
	}
	require.Equal(t, []string{"channels.email", "topics.newsletter", "topics.product-updates", "quiet_hours"}, fields)
	require.Nil(t, entries[0].From)
	require.Equal(t, false, entries[0].To)
	require.Equal(t, map[string]any{"start": "21:00", "end": "08:00"}, entries[3].To)

	got, err := b.store.Get(ctx, "cus_1")
	require.NoError(t, err)
	require.Equal(t, p, got)

	// Nothing changes: nothing written, no entry, UpdatedAt kept.
	b.clock.Add(time.Hour)
	again, none, err := b.store.Apply(ctx, "cus_1", preferences.Patch{Topics: map[string]bool{"product-updates": false}}, customerActor, preferences.SourcePreferencePage)
	require.NoError(t, err)
	require.Empty(t, none)
	require.Equal(t, p, again)

	// Clear quiet hours with JSON null; opt back in.
	b.clock.Add(time.Hour)
	_, entries, err = b.store.Apply(ctx, "cus_1", preferences.Patch{ClearQuietHours: true, Topics: map[string]bool{"product-updates": true}}, customerActor, preferences.SourcePreferencePage)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	got, err = b.store.Get(ctx, "cus_1")
	require.NoError(t, err)
	require.Nil(t, got.QuietHours)
	require.True(t, got.Topics["product-updates"])

	log, err := b.store.Consent(ctx, "cus_1")
	require.NoError(t, err)
	require.Len(t, log, 6, "append-only: every change, oldest first")
	require.Equal(t, "channels.email", log[0].Field)
	require.Equal(t, "quiet_hours", log[5].Field)
	require.Nil(t, log[5].To)
	require.Equal(t, entries, log[4:], "Apply returns what Consent reads")

	last, ok, err := b.store.LastConsent(ctx, "cus_1", preferences.TopicField("product-updates"))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, log[4], last)
	require.Equal(t, true, last.To)
	require.Equal(t, false, last.From)
	require.Equal(t, customerActor, last.Actor)

	_, ok, err = b.store.LastConsent(ctx, "cus_1", preferences.TopicField("billing"))
	require.NoError(t, err)
	require.False(t, ok)
}

func TestStoreLastConsentPages(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()
	_, _, err := b.store.Apply(ctx, "cus_1", preferences.Patch{Paused: ptr(true)}, apiActor, preferences.SourceImport)
	require.NoError(t, err)
	for i := range 150 { // more than two pages after the entry we look for
		_, _, err := b.store.Apply(ctx, "cus_1", preferences.Patch{Topics: map[string]bool{"newsletter": i%2 == 0}}, customerActor, preferences.SourcePreferencePage)
		require.NoError(t, err)
	}
	e, ok, err := b.store.LastConsent(ctx, "cus_1", "paused")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, preferences.SourceImport, e.Source)
	e, ok, err = b.store.LastConsent(ctx, "cus_1", preferences.TopicField("newsletter"))
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, false, e.To, "the newest of 150")
}

func TestStoreApplyConcurrent(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()
	const writers = 12
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			_, _, err := b.store.Apply(ctx, "cus_1", preferences.Patch{Topics: map[string]bool{fmt.Sprintf("t%02d", i): false}}, customerActor, preferences.SourcePreferencePage)
			require.NoError(t, err)
		})
	}
	wg.Wait()
	p, err := b.store.Get(ctx, "cus_1")
	require.NoError(t, err)
	require.Len(t, p.Topics, writers, "no write lost")
	log, err := b.store.Consent(ctx, "cus_1")
	require.NoError(t, err)
	require.Len(t, log, writers, "one entry per change, no duplicate from a retried transaction")
}

func TestStoreKeys(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()
	_, _, err := b.store.Apply(ctx, "cus_1", preferences.Patch{Paused: ptr(true)}, customerActor, preferences.SourcePreferencePage)
	require.NoError(t, err)
	require.NoError(t, b.store.RecordSend(ctx, "cus_1", "marketing", b.clock.Now()))
	require.NoError(t, b.store.Suppress(ctx, herald.ChannelEmail, " Ann@Example.com ", preferences.SourceBounce))
	keys, err := b.rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	sum := sha256.Sum256([]byte("ann@example.com"))
	// Every key of a customer carries the hash tag {c:<id>}: one Cluster slot.
	require.ElementsMatch(t, []string{
		"herald:{c:cus_1}:prefs",
		"herald:{c:cus_1}:consent",
		"herald:{c:cus_1}:timeline",
		"herald:{c:cus_1}:sends:marketing",
		"herald:{c:cus_1}:send-classes",
		"herald:suppress:email:" + hex.EncodeToString(sum[:]),
	}, keys)
	for _, k := range keys {
		require.NotContains(t, strings.ToLower(k), "ann", "no address in a key")
	}
}

func TestStoreSuppress(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()
	ok, err := b.store.IsSuppressed(ctx, herald.ChannelEmail, "ann@example.com")
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, b.store.Suppress(ctx, herald.ChannelEmail, "Ann@Example.com", preferences.SourceBounce))
	for _, addr := range []string{"ann@example.com", "ANN@EXAMPLE.COM", " ann@example.com"} {
		ok, err = b.store.IsSuppressed(ctx, herald.ChannelEmail, addr)
		require.NoError(t, err)
		require.True(t, ok, addr)
	}
	ok, err = b.store.IsSuppressed(ctx, herald.ChannelSlack, "ann@example.com")
	require.NoError(t, err)
	require.False(t, ok, "suppression is per channel")
	ok, err = b.store.IsSuppressed(ctx, herald.ChannelEmail, "")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, herald.EInvalid, herald.ErrorCode(b.store.Suppress(ctx, herald.ChannelEmail, " ", preferences.SourceBounce)))
}

func TestStoreSends(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()
	now := b.clock.Now()
	old := now.Add(-MaxSendWindow - time.Hour)
	for _, at := range []time.Time{old, now.Add(-48 * time.Hour), now.Add(-time.Hour), now.Add(-time.Hour), now} {
		require.NoError(t, b.store.RecordSend(ctx, "cus_1", "marketing", at))
	}
	require.NoError(t, b.store.RecordSend(ctx, "cus_1", "lifecycle", now))

	got, err := b.store.RecentSends(ctx, "cus_1", "marketing", now.Add(-7*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, []time.Time{now.Add(-48 * time.Hour), now.Add(-time.Hour), now}, got, "oldest first; the same send recorded twice counts once")

	got, err = b.store.RecentSends(ctx, "cus_1", "marketing", now.Add(-time.Hour))
	require.NoError(t, err)
	require.Len(t, got, 2, "since is inclusive")

	n, err := b.rdb.ZCard(ctx, sendsKey("cus_1", "marketing")).Result()
	require.NoError(t, err)
	require.EqualValues(t, 3, n, "sends older than the longest window are trimmed")
	ttl, err := b.rdb.PTTL(ctx, sendsKey("cus_1", "marketing")).Result()
	require.NoError(t, err)
	require.Greater(t, ttl, time.Duration(0))

	// Wired into the policy: three marketing sends in a week hit the cap.
	p := testPolicy()
	since := now.Add(-p.Window("marketing"))
	recent, err := b.store.RecentSends(ctx, "cus_1", "marketing", since)
	require.NoError(t, err)
	d := p.Decide(preferences.Input{Customer: herald.Customer{Email: "a@example.com"}, Topic: "product-updates", Now: now, RecentSends: recent})
	require.Equal(t, preferences.ReasonFrequencyCapped, d.Reason)
	require.Equal(t, now.Add(-48*time.Hour).Add(7*24*time.Hour), d.NotBefore)
}

func TestStoreErase(t *testing.T) {
	t.Parallel()
	b := setupStore(t)
	ctx := context.Background()
	_, _, err := b.store.Apply(ctx, "cus_1", preferences.Patch{Topics: map[string]bool{"newsletter": true}, QuietHours: &herald.QuietHours{Start: "21:00", End: "08:00"}}, customerActor, preferences.SourcePreferencePage)
	require.NoError(t, err)
	require.NoError(t, b.store.RecordSend(ctx, "cus_1", "marketing", b.clock.Now()))
	require.NoError(t, b.store.RecordSend(ctx, "cus_1", "lifecycle", b.clock.Now()))
	_, _, err = b.store.Apply(ctx, "cus_2", preferences.Patch{Paused: ptr(true)}, customerActor, preferences.SourcePreferencePage)
	require.NoError(t, err)

	b.clock.Add(time.Hour)
	operator := preferences.Actor{Kind: preferences.ActorOperator, Name: "dpo@herald.example"}
	require.NoError(t, b.store.Erase(ctx, "cus_1", map[herald.Channel]string{herald.ChannelEmail: "Ann@Example.com", herald.ChannelSlack: "U123"}, operator))

	p, err := b.store.Get(ctx, "cus_1")
	require.NoError(t, err)
	require.Equal(t, herald.Preferences{}, p)
	recent, err := b.store.RecentSends(ctx, "cus_1", "marketing", time.Time{})
	require.NoError(t, err)
	require.Empty(t, recent)

	log, err := b.store.Consent(ctx, "cus_1")
	require.NoError(t, err)
	require.Len(t, log, 1)
	require.Equal(t, preferences.SourceErasure, log[0].Source)
	require.Equal(t, operator, log[0].Actor)
	require.Equal(t, b.clock.Now(), log[0].At)
	require.Nil(t, log[0].From)

	for ch, addr := range map[herald.Channel]string{herald.ChannelEmail: "ann@example.com", herald.ChannelSlack: "U123"} {
		ok, err := b.store.IsSuppressed(ctx, ch, addr)
		require.NoError(t, err)
		require.True(t, ok, "an erased address is never written to again")
	}
	keys, err := b.rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		require.False(t, strings.Contains(k, "cus_1") && !strings.HasSuffix(k, ":consent"), "left behind: %s", k)
		v, _ := b.rdb.Dump(ctx, k).Result()
		require.NotContains(t, strings.ToLower(v), "ann@example.com")
		require.NotContains(t, v, "U123")
	}
	other, err := b.store.Get(ctx, "cus_2")
	require.NoError(t, err)
	require.True(t, other.Paused, "other customers untouched")
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func ptr[T any](v T) *T { return &v }

func testPolicy() preferences.Policy {
	return preferences.Policy{
		Topics: map[string]herald.Topic{"product-updates": {Name: "product-updates", OptIn: true, Class: "marketing"}},
		Caps:   []preferences.Cap{{Class: "marketing", Max: 3, Per: 7 * 24 * time.Hour, Action: preferences.CapDefer}},
	}
}
