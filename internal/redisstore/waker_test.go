package redisstore_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const lease = 30 * time.Second

func (b bundle) score(t *testing.T, member string) (float64, bool) {
	t.Helper()
	s, err := b.rdb.ZScore(b.ctx, waitingKey, member).Result()
	if err == redis.Nil {
		return 0, false
	}
	require.NoError(t, err)
	return s, true
}

func names(fs []redisstore.FollowUp) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.JourneyID)
	}
	return out
}

// A claim takes the due journeys, earliest first and at most its limit,
// leases them (a second claim before the lease ends takes nothing) and
// reads their states; the lease's end brings them back.
func TestClaimFollowUps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, id := range []string{"j1", "j2", "j3"} {
		require.NoError(t, b.st.SaveJourney(b.ctx, journey(id, workflows.StatusActive, start.Add(time.Duration(i)*time.Minute))))
	}
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("later", workflows.StatusActive, start.Add(time.Hour))))
	require.NoError(t, b.rdb.ZAdd(b.ctx, waitingKey, redis.Z{Score: float64(start.Unix() - 60), Member: "no-separator"}).Err())
	s, _ := b.score(t, "c1|j1")
	require.Equal(t, redisstore.WaitScore(start), s, "the wake time to the millisecond")
	require.Equal(t, float64(start.UnixMilli()+1)/1000, s, "rounded up: never due before its journey")

	now := start.Add(2 * time.Minute).Truncate(time.Millisecond).Add(time.Millisecond) // j3's score
	got, err := b.st.ClaimFollowUps(b.ctx, now, now.Add(lease), 3)
	require.NoError(t, err)
	require.Equal(t, []string{"j1", "j2"}, names(got), "at most the limit (the junk entry was one), earliest first")
	for _, f := range got {
		require.True(t, f.Found)
		require.NoError(t, f.Err)
		require.Equal(t, f.JourneyID, f.State.JourneyID)
		require.Equal(t, "c1", f.CustomerID)
		require.True(t, f.Due.Equal(f.State.WakeAt), "the stored state keeps the wake time as its score does, rounded up to the millisecond: %v / %v", f.Due, f.State.WakeAt)
		s, _ := b.score(t, "c1|"+f.JourneyID)
		require.Equal(t, redisstore.WaitScore(now.Add(lease)), s, "leased")
	}
	_, ok := b.score(t, "no-separator")
	require.False(t, ok, "an entry naming no journey is dropped")

	got, err = b.st.ClaimFollowUps(b.ctx, now, now.Add(lease), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"j3"}, names(got), "what another claim holds is not due")
	got, err = b.st.ClaimFollowUps(b.ctx, now.Add(lease-time.Millisecond), now.Add(2*lease), 10)
	require.NoError(t, err)
	require.Empty(t, got, "not before the lease ends")

	// The lease ends: the members come back, due at the lease's end.
	again := now.Add(lease)
	got, err = b.st.ClaimFollowUps(b.ctx, again, again.Add(lease), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"j1", "j2", "j3"}, names(got))
	require.True(t, got[0].Due.Equal(again), "%v", got[0].Due)
	s, _ = b.score(t, "c1|later")
	require.Equal(t, redisstore.WaitScore(start.Add(time.Hour)), s, "a journey not due is untouched")
}

// A score an older version wrote (whole seconds) is due at that second.
func TestClaimFollowUpsReadsWholeSeconds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	wake := start.Truncate(time.Second)
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("j1", workflows.StatusActive, wake)))
	require.NoError(t, b.rdb.ZAdd(b.ctx, waitingKey, redis.Z{Score: float64(wake.Unix()), Member: "c1|j1"}).Err())
	s, _ := b.score(t, "c1|j1")
	require.Equal(t, redisstore.WaitScore(wake), s, "a whole second is the same score either way")
	got, err := b.st.ClaimFollowUps(b.ctx, wake.Add(-time.Millisecond), wake.Add(lease), 10)
	require.NoError(t, err)
	require.Empty(t, got)
	got, err = b.st.ClaimFollowUps(b.ctx, wake, wake.Add(lease), 10)
	require.NoError(t, err)
	require.Equal(t, []string{"j1"}, names(got))
	require.True(t, got[0].Due.Equal(wake))
}

// Members whose journey is gone or does not decode are claimed with what
// was found; settling them removes them.
func TestClaimFollowUpsMissingAndCorrupt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.rdb.ZAdd(b.ctx, waitingKey, redis.Z{Score: float64(start.Unix()), Member: "c1|gone"}).Err())
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("bad", workflows.StatusActive, start)))
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.JourneyKey("c1", "bad"), "{not json", 0).Err())
	got, err := b.st.ClaimFollowUps(b.ctx, start.Add(time.Second), start.Add(lease), 10)
	require.NoError(t, err)
	require.Len(t, got, 2)
	byID := map[string]redisstore.FollowUp{got[0].JourneyID: got[0], got[1].JourneyID: got[1]}
	require.False(t, byID["gone"].Found)
	require.NoError(t, byID["gone"].Err)
	require.False(t, byID["bad"].Found)
	require.Equal(t, herald.EInternal, herald.ErrorCode(byID["bad"].Err))
	n, err := b.st.SettleFollowUps(b.ctx, got)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	card, err := b.rdb.ZCard(b.ctx, waitingKey).Result()
	require.NoError(t, err)
	require.Zero(t, card)
}

// Settling gives back only what is still under the claim's lease: a save
// since the claim (which wrote its own score) and a later claim's lease
// are left as they are.
func TestSettleFollowUpsComparesTheLease(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, id := range []string{"finished", "later", "saved", "reclaimed"} {
		require.NoError(t, b.st.SaveJourney(b.ctx, journey(id, workflows.StatusActive, start)))
	}
	now := start.Add(time.Second)
	got, err := b.st.ClaimFollowUps(b.ctx, now, now.Add(lease), 10)
	require.NoError(t, err)
	require.Len(t, got, 4)
	claimed := map[string]redisstore.FollowUp{}
	for _, f := range got {
		claimed[f.JourneyID] = f
	}

	// "saved" moves on to a wait of an hour after the claim: its save's
	// score stands. "reclaimed" lost its claim to the lease and was taken
	// again.
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("saved", workflows.StatusActive, start.Add(time.Hour))))
	require.NoError(t, b.rdb.ZAdd(b.ctx, waitingKey, redis.Z{Score: redisstore.WaitScore(now.Add(2 * lease)), Member: "c1|reclaimed"}).Err())

	// What the waker would give back: "finished" ended (its state read as
	// not waiting), "later" waits for later, "saved" and "reclaimed" as
	// read at the claim.
	fin := claimed["finished"]
	fin.State.Status, fin.State.WakeAt = workflows.StatusFinished, time.Time{}
	lat := claimed["later"]
	lat.State.WakeAt = start.Add(10 * time.Minute)
	n, err := b.st.SettleFollowUps(b.ctx, []redisstore.FollowUp{fin, lat, claimed["saved"], claimed["reclaimed"]})
	require.NoError(t, err)
	require.Equal(t, 2, n, "finished and later were still leased")

	_, ok := b.score(t, "c1|finished")
	require.False(t, ok, "removed")
	s, _ := b.score(t, "c1|later")
	require.Equal(t, redisstore.WaitScore(start.Add(10*time.Minute)), s, "back at its wake time")
	s, _ = b.score(t, "c1|saved")
	require.Equal(t, redisstore.WaitScore(start.Add(time.Hour)), s, "the save's score, not the claim's")
	s, _ = b.score(t, "c1|reclaimed")
	require.Equal(t, redisstore.WaitScore(now.Add(2*lease)), s, "the later claim's lease")
}

// A save just before a claim writes a wake time the claim does not take;
// a save just after it writes over the lease. The claim re-scores only
// what it read as due, inside the script, so whichever comes first, the
// save's score is the one that stays.
func TestClaimNeverOverwritesASave(t *testing.T) {
	t.Parallel()
	b := setup(t)
	now := start.Add(time.Second)
	for i := range 200 {
		id := fmt.Sprintf("j%03d", i)
		require.NoError(t, b.st.SaveJourney(b.ctx, journey(id, workflows.StatusActive, start)))
	}
	first, err := b.st.ClaimFollowUps(b.ctx, now, now.Add(lease), 5)
	require.NoError(t, err)
	require.Len(t, first, 5, "five claimed before their saves")
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := range 200 {
			_ = b.st.SaveJourney(b.ctx, journey(fmt.Sprintf("j%03d", i), workflows.StatusActive, start.Add(time.Hour)))
		}
	}()
	go func() {
		defer wg.Done()
		for range 50 {
			if _, err := b.st.ClaimFollowUps(b.ctx, now, now.Add(lease), 5); err != nil {
				return
			}
		}
	}()
	wg.Wait()
	for i := range 200 {
		s, ok := b.score(t, fmt.Sprintf("c1|j%03d", i))
		require.True(t, ok)
		require.Equal(t, redisstore.WaitScore(start.Add(time.Hour)), s, "j%03d: the save's score", i)
	}
}

// Workers claiming at the same time never take the same member twice.
func TestConcurrentClaimsTakeEachOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 600
	members := make([]redis.Z, n)
	for i := range n {
		members[i] = redis.Z{Score: redisstore.WaitScore(start.Add(time.Duration(i) * time.Millisecond)), Member: fmt.Sprintf("c%d|j%d", i%7, i)}
	}
	require.NoError(t, b.rdb.ZAdd(b.ctx, waitingKey, members...).Err())
	now := start.Add(time.Minute)
	var mu sync.Mutex
	taken := map[string]int{}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		st := redisstore.New(b.srv.Client(), nil) // a worker of its own
		go func() {
			defer wg.Done()
			for {
				got, err := st.ClaimFollowUps(b.ctx, now, now.Add(lease+time.Duration(w)*time.Millisecond), 7)
				if err != nil || len(got) == 0 {
					return
				}
				mu.Lock()
				for _, f := range got {
					taken[f.CustomerID+"|"+f.JourneyID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, taken, n, "every member claimed")
	for m, k := range taken {
		require.Equal(t, 1, k, "%s claimed %d times", m, k)
	}
}

func TestRestoreWaitingAndCounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := journey("j1", workflows.StatusActive, start.Add(time.Minute))
	require.NoError(t, b.st.RestoreWaiting(b.ctx, s))
	score, _ := b.score(t, "c1|j1")
	require.Equal(t, redisstore.WaitScore(s.WakeAt), score)
	require.NoError(t, b.st.RestoreWaiting(b.ctx, journey("j2", workflows.StatusFinished, time.Time{})))
	_, ok := b.score(t, "c1|j2")
	require.False(t, ok, "a journey that does not wait is not put in")
	require.NoError(t, b.rdb.ZAdd(b.ctx, waitingKey, redis.Z{Score: redisstore.WaitScore(start.Add(-time.Hour)), Member: "c2|j9"}).Err())

	total, late, err := b.st.WaitingCounts(b.ctx, start)
	require.NoError(t, err)
	require.EqualValues(t, 2, total)
	require.EqualValues(t, 1, late)
	_, late, err = b.st.WaitingCounts(b.ctx, start.Add(time.Minute))
	require.NoError(t, err)
	require.EqualValues(t, 1, late, "due before, not at")
}

func TestFollowUpsRedisDownIsTemporary(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.st.SaveJourney(b.ctx, journey("j1", workflows.StatusActive, start)))
	got, err := b.st.ClaimFollowUps(b.ctx, start.Add(time.Second), start.Add(lease), 10)
	require.NoError(t, err)
	b.down(t)
	for name, call := range map[string]func() error{
		"SettleFollowUps": func() error { _, err := b.st.SettleFollowUps(b.ctx, got); return err },
		"RestoreWaiting":  func() error { return b.st.RestoreWaiting(b.ctx, journey("j1", workflows.StatusActive, start)) },
		"WaitingCounts":   func() error { _, _, err := b.st.WaitingCounts(b.ctx, start); return err },
	} {
		err := call()
		require.Error(t, err, name)
		require.True(t, herald.IsTemporary(err), "%s: got %v", name, err)
	}
}
