package redisstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const waitingKey = "herald:journeys:waiting"

// tripHook counts round trips to Redis (a pipeline is one) and the commands
// they carry, leaving out the connection handshake (HELLO, CLIENT SETINFO).
type tripHook struct{ trips, cmds atomic.Int64 }

func handshake(cmd redis.Cmder) bool { return cmd.Name() == "hello" || cmd.Name() == "client" }

func (h *tripHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *tripHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !handshake(cmd) {
			h.trips.Add(1)
			h.cmds.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *tripHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !handshake(cmds[0]) {
			h.trips.Add(1)
			h.cmds.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// counted returns a store on its own client whose round trips h counts.
func (b bundle) counted(t *testing.T) (*redisstore.Store, *tripHook) {
	t.Helper()
	rdb := b.srv.Client()
	h := &tripHook{}
	rdb.AddHook(h)
	return redisstore.New(rdb, b.clock.Now), h
}

func (b bundle) customer(t *testing.T, id string) {
	t.Helper()
	_, _, err := b.st.UpsertCustomer(b.ctx, herald.Customer{ID: id, Email: id + "@example.com"})
	require.NoError(t, err)
}

func TestLockCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	release, err := b.st.LockCustomer(b.ctx, "c1", time.Minute)
	require.NoError(t, err)
	require.Greater(t, b.pttl(t, redisstore.Key("c1", "claim", "journeys")), 59*time.Second)

	_, err = b.st.LockCustomer(b.ctx, "c1", time.Minute)
	require.ErrorIs(t, err, redisstore.ErrBusy)
	other, err := b.st.LockCustomer(b.ctx, "c2", time.Minute)
	require.NoError(t, err, "another customer's lock is another lock")
	other()

	release()
	again, err := b.st.LockCustomer(b.ctx, "c1", time.Minute)
	require.NoError(t, err)
	again()
}

func TestBeginJourneys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.PrefsKey("c1"), `{"paused":true}`, 0).Err())
	require.NoError(t, b.rdb.HSet(b.ctx, redisstore.Key("c1", "journeys"), "a:onboarding", "j1", "e:onboarding", "1", "e:trial", "1").Err())

	st, h := b.counted(t)
	jb, err := st.BeginJourneys(b.ctx, "c1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, int64(1), h.trips.Load(), "lock and reads in one round trip")
	require.Equal(t, "c1@example.com", jb.Customer.Email)
	require.True(t, jb.Prefs.Paused)
	require.Equal(t, map[string]string{"onboarding": "j1"}, jb.Active)
	require.Equal(t, map[string]bool{"onboarding": true, "trial": true}, jb.Ever)

	// BeginJourneys and LockCustomer take the same lock.
	_, err = b.st.LockCustomer(b.ctx, "c1", time.Minute)
	require.ErrorIs(t, err, redisstore.ErrBusy)
	_, err = b.st.BeginJourneys(b.ctx, "c1", time.Minute)
	require.ErrorIs(t, err, redisstore.ErrBusy)

	jb.Release()
	release, err := b.st.LockCustomer(b.ctx, "c1", time.Minute)
	require.NoError(t, err, "released")
	release()
}

// A follow-up's handler reads its journey's state with the lock and the
// customer, in the same round trip.
func TestBeginJourneyReadsItsState(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	wake := start.Add(time.Hour).Truncate(time.Second)
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("j1", workflows.StatusActive, wake)))

	st, h := b.counted(t)
	jb, err := st.BeginJourney(b.ctx, "c1", "j1", time.Minute)
	require.NoError(t, err)
	require.Equal(t, int64(1), h.trips.Load(), "lock, customer and journey in one round trip")
	got, ok, err := jb.Journey()
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "j1", got.JourneyID)
	require.True(t, got.WakeAt.Equal(wake))
	_, err = b.st.BeginJourney(b.ctx, "c1", "j1", time.Minute)
	require.ErrorIs(t, err, redisstore.ErrBusy, "the same lock as BeginJourneys")
	jb.Release()

	jb, err = b.st.BeginJourney(b.ctx, "c1", "j-gone", time.Minute)
	require.NoError(t, err)
	defer jb.Release()
	_, ok, err = jb.Journey()
	require.NoError(t, err)
	require.False(t, ok, "a journey that does not exist")
}

func TestBeginJourneysNoJourneys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	jb, err := b.st.BeginJourneys(b.ctx, "c1", time.Minute)
	require.NoError(t, err)
	defer jb.Release()
	require.Empty(t, jb.Active)
	require.Empty(t, jb.Ever)
	require.Equal(t, herald.Preferences{}, jb.Prefs)
}

// A failed start leaves the lock free.
func TestBeginJourneysFails(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		setup func(b bundle)
		code  string
	}{
		{"unknown customer", func(bundle) {}, herald.ENotFound},
		{"corrupt customer", func(b bundle) {
			require.NoError(t, b.rdb.Set(b.ctx, redisstore.Key("c1", "customer"), "{", 0).Err())
		}, ""},
		{"corrupt preferences", func(b bundle) {
			b.customer(t, "c1")
			require.NoError(t, b.rdb.Set(b.ctx, redisstore.PrefsKey("c1"), "{", 0).Err())
		}, herald.EInternal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			tc.setup(b)
			_, err := b.st.BeginJourneys(b.ctx, "c1", time.Minute)
			require.Error(t, err)
			if tc.code != "" {
				require.Equal(t, tc.code, herald.ErrorCode(err), "got %v", err)
			}
			require.False(t, b.exists(t, redisstore.Key("c1", "claim", "journeys")), "lock left held")
		})
	}
}

func journey(id string, status string, wake time.Time) workflows.State {
	return workflows.State{
		JourneyID: id, WorkflowID: "onboarding", Version: "v1", CustomerID: "c1",
		Status: status, Step: "welcome", StepSeq: 2, WakeAt: wake,
		StartedAt: start, UpdatedAt: start, Data: map[string]any{"plan": "pro"},
	}
}

func TestSaveJourney(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wake := start.Add(time.Hour).Truncate(time.Second)
	waiting := journey("j1", workflows.StatusActive, wake)
	st, h := b.counted(t)
	require.NoError(t, st.SaveJourney(b.ctx, waiting,
		herald.TimelineEntry{Kind: herald.KindJourney, Summary: "first"},
		herald.TimelineEntry{Kind: herald.KindJourney, Summary: "second"}))
	require.Equal(t, int64(1), h.trips.Load(), "state, indexes and timeline in one round trip")
	require.Equal(t, int64(6), h.cmds.Load(), "SET, HSET index, HSET customer, ZADD, LPUSH, LTRIM and nothing more")
	// Its messages are found through it, while it runs and after.
	owner := func() string {
		t.Helper()
		cust, ok, err := b.st.MessageOwner(b.ctx, "j1.welcome.2")
		require.NoError(t, err)
		require.True(t, ok)
		return cust
	}
	require.Equal(t, "c1", owner())

	got, ok, err := b.st.Journey(b.ctx, "c1", "j1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "j1", got.JourneyID)
	require.True(t, got.WakeAt.Equal(wake))
	require.Equal(t, map[string]any{"plan": "pro"}, got.Data)
	ttl, err := b.rdb.PTTL(b.ctx, redisstore.Key("c1", "journey", "j1")).Result()
	require.NoError(t, err)
	require.Equal(t, time.Duration(-1), ttl, "a running journey never expires")

	active, ever, err := b.st.JourneyIndex(b.ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"onboarding": "j1"}, active)
	require.Equal(t, map[string]bool{"onboarding": true}, ever)
	score, err := b.rdb.ZScore(b.ctx, waitingKey, "c1|j1").Result()
	require.NoError(t, err)
	require.Equal(t, float64(wake.Unix()), score)
	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Len(t, tl, 2)
	require.Equal(t, "second", tl[0].Summary, "newest first")
	require.True(t, tl[0].At.Equal(stored(start)), "a line without a time gets the clock's: %v", tl[0].At)

	// Finished: kept for a while, out of the running and waiting indexes,
	// still counted as ever started.
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("j1", workflows.StatusFinished, time.Time{})))
	require.Greater(t, b.pttl(t, redisstore.Key("c1", "journey", "j1")), 89*24*time.Hour)
	active, ever, err = b.st.JourneyIndex(b.ctx, "c1")
	require.NoError(t, err)
	require.Empty(t, active)
	require.Equal(t, map[string]bool{"onboarding": true}, ever)
	n, err := b.rdb.ZCard(b.ctx, waitingKey).Result()
	require.NoError(t, err)
	require.Zero(t, n)
	tl, err = b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Len(t, tl, 2, "no lines, none written")
	require.Equal(t, "c1", owner())
	require.Greater(t, b.pttl(t, "herald:journey:j1"), 89*24*time.Hour, "an ended journey's customer lasts as its state")
	require.False(t, b.exists(t, "herald:journeys:customers"), "out of the running journeys'")
	_, ok, err = b.st.MessageOwner(b.ctx, "j2.welcome.2")
	require.NoError(t, err)
	require.False(t, ok, "another journey's message is unknown")

	// Erasure drops both.
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("j3", workflows.StatusActive, wake)))
	require.NoError(t, b.st.ForgetMessageIndexes(b.ctx, "c1"))
	for _, m := range []string{"j1.welcome.2", "j3.welcome.2"} {
		_, ok, err = b.st.MessageOwner(b.ctx, m)
		require.NoError(t, err)
		require.False(t, ok, m)
	}
}

func TestSaveJourneyUnencodable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := journey("j1", workflows.StatusActive, time.Time{})
	s.Data = map[string]any{"ch": make(chan int)}
	err := b.st.SaveJourney(b.ctx, s)
	require.Error(t, err)
	require.Equal(t, herald.EInternal, herald.ErrorCode(err), "got %v", err)
	require.False(t, b.exists(t, redisstore.Key("c1", "journey", "j1")))
}

func TestJourneyMissingAndCorrupt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ok, err := b.st.Journey(b.ctx, "c1", "j1")
	missing(t, ok, err)

	require.NoError(t, b.rdb.Set(b.ctx, redisstore.Key("c1", "journey", "j1"), "{", 0).Err())
	_, ok, err = b.st.Journey(b.ctx, "c1", "j1")
	require.Error(t, err)
	require.False(t, ok)
	require.Equal(t, herald.EInternal, herald.ErrorCode(err), "got %v", err)
}

func TestAppendEntries(t *testing.T) {
	t.Parallel()
	b := setup(t)
	st, h := b.counted(t)
	require.NoError(t, st.AppendEntries(b.ctx, "c1",
		herald.TimelineEntry{Kind: herald.KindEvent, Summary: "a"},
		herald.TimelineEntry{Kind: herald.KindEvent, Summary: "b"}))
	require.Equal(t, int64(1), h.trips.Load())
	require.Equal(t, int64(2), h.cmds.Load(), "LPUSH and LTRIM, no transaction")
	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Equal(t, []string{"b", "a"}, []string{tl[0].Summary, tl[1].Summary})
}

func TestJourneys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("j1", workflows.StatusActive, time.Time{})))
	done := journey("j0", workflows.StatusFinished, time.Time{})
	require.NoError(t, b.st.SaveJourney(b.ctx, done))
	other := journey("j9", workflows.StatusActive, time.Time{})
	other.CustomerID = "c2"
	require.NoError(t, b.st.SaveJourney(b.ctx, other))
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.Key("c1", "journey", "jx"), "{", 0).Err())

	got, err := b.st.Journeys(b.ctx, "c1")
	require.NoError(t, err)
	ids := []string{}
	for _, s := range got {
		ids = append(ids, s.JourneyID)
	}
	require.ElementsMatch(t, []string{"j0", "j1"}, ids, "running and finished, not another customer's, not an unreadable one")

	got, err = b.st.Journeys(b.ctx, "c3")
	require.NoError(t, err)
	require.NotNil(t, got, "none is an empty list")
	require.Empty(t, got)
}

func TestWorkflowSource(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ok, err := b.st.WorkflowSource(b.ctx, "onboarding", "v1")
	missing(t, ok, err)

	require.NoError(t, b.st.SaveWorkflowSource(b.ctx, "onboarding", "v1", []byte("id: onboarding\n")))
	require.NoError(t, b.st.SaveWorkflowSource(b.ctx, "onboarding", "v1", []byte("changed")), "a version is stored once")
	src, ok, err := b.st.WorkflowSource(b.ctx, "onboarding", "v1")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "id: onboarding\n", string(src))
	_, ok, err = b.st.WorkflowSource(b.ctx, "onboarding", "v2")
	missing(t, ok, err)
}

// Redis down: every read and write fails with an error a retry can fix.
func TestRedisDownIsTemporary(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.down(t)
	for name, call := range map[string]func() error{
		"LockCustomer":  func() error { _, err := b.st.LockCustomer(b.ctx, "c1", time.Minute); return err },
		"BeginJourneys": func() error { _, err := b.st.BeginJourneys(b.ctx, "c1", time.Minute); return err },
		"SaveJourney": func() error {
			return b.st.SaveJourney(b.ctx, journey("j1", workflows.StatusActive, time.Time{}))
		},
		"JourneyIndex": func() error { _, _, err := b.st.JourneyIndex(b.ctx, "c1"); return err },
		"Journey":      func() error { _, _, err := b.st.Journey(b.ctx, "c1", "j1"); return err },
		"AppendEntries": func() error {
			return b.st.AppendEntries(b.ctx, "c1", herald.TimelineEntry{Summary: "x"})
		},
		"SaveWorkflowSource": func() error { return b.st.SaveWorkflowSource(b.ctx, "w", "v1", []byte("x")) },
		"WorkflowSource":     func() error { _, _, err := b.st.WorkflowSource(b.ctx, "w", "v1"); return err },
		"ClaimFollowUps":     func() error { _, err := b.st.ClaimFollowUps(b.ctx, start, start, 10); return err },
		"MessageCustomer":    func() error { _, err := b.st.MessageCustomer(b.ctx, "m1"); return err },
		"EmailMessage":       func() error { _, _, err := b.st.EmailMessage(b.ctx, "<a@example.com>"); return err },
		"MarkAckSeen":        func() error { _, err := b.st.MarkAckSeen(b.ctx, "c1", "a1", time.Hour); return err },
		"SaveAckUpdate":      func() error { return b.st.SaveAckUpdate(b.ctx, "c1", "a1", []byte("{}"), time.Hour) },
		"AckUpdate":          func() error { _, _, err := b.st.AckUpdate(b.ctx, "c1", "a1"); return err },
	} {
		err := call()
		require.Error(t, err, name)
		require.True(t, herald.IsTemporary(err), "%s: got %v", name, err)
		require.False(t, errors.Is(err, redisstore.ErrBusy), name)
	}
}

// missing requires a read that found nothing and did not fail.
func missing(t *testing.T, ok bool, err error) {
	t.Helper()
	require.NoError(t, err)
	require.False(t, ok, "found")
}
