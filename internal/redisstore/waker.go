package redisstore

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
)

// The waiting index is the schedule of journey follow-ups: a journey that
// waits is a member "<customer>|<journey>" scored by its wake time in unix
// seconds, with the milliseconds as a fraction (older versions wrote whole
// seconds, which read the same). A waker takes the due members with
// ClaimFollowUps, which re-scores them to the end of a lease in the same
// script: a member whose wake-up task is lost comes back when the lease ends, and
// a journey save after the claim writes its own score over the lease.

// WaitScore is t as a score of the waiting index, rounded up to the
// millisecond so that a member is never due before its journey.
func WaitScore(t time.Time) float64 { return float64(ceilMS(t)) / 1000 }

// scoreTime is the time of a waiting-index score.
func scoreTime(score float64) time.Time {
	return time.UnixMilli(int64(math.Round(score * 1000)))
}

func scoreArg(score float64) string { return strconv.FormatFloat(score, 'f', -1, 64) }

// claimScript takes up to ARGV[3] members due at ARGV[1] and re-scores them
// to ARGV[2] (only those it just read, so nothing written since is
// overwritten). It returns members and their scores before the claim.
var claimScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
if #due == 0 then return due end
local args = {}
for i = 1, #due, 2 do
	args[#args + 1] = ARGV[2]
	args[#args + 1] = due[i]
end
redis.call('ZADD', KEYS[1], 'XX', unpack(args))
return due`)

// settleScript gives claimed members back: for each pair (member, score)
// of ARGV[2..], a member still at the lease score ARGV[1] (no save and no
// other claim since) is removed (score "") or re-scored.
var settleScript = redis.NewScript(`
local lease = tonumber(ARGV[1])
local drop, n = {}, 0
for i = 2, #ARGV, 2 do
	local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
	if s and tonumber(s) == lease then
		n = n + 1
		if ARGV[i + 1] == '' then
			drop[#drop + 1] = ARGV[i]
		else
			redis.call('ZADD', KEYS[1], 'XX', ARGV[i + 1], ARGV[i])
		end
	end
end
if #drop > 0 then redis.call('ZREM', KEYS[1], unpack(drop)) end
return n`)

// FollowUp is a waiting journey a waker took, with its state read after the
// claim.
type FollowUp struct {
	Waiting
	// Due is the member's score before the claim: the wake time a save
	// wrote, or the end of an earlier claim's lease.
	Due time.Time
	// Lease is the score the claim gave the member (for Settle).
	Lease float64
	// State is the journey's state; Found is false when there is none.
	State workflows.State
	Found bool
	// Err says why a stored state does not decode.
	Err error
}

// ClaimFollowUps takes up to limit journeys of the waiting index due at now,
// earliest first, and leases them until until: no other ClaimFollowUps takes
// them before then. It reads their states in one more round trip. Members
// that name no journey are dropped.
func (s *Store) ClaimFollowUps(ctx context.Context, now, until time.Time, limit int) ([]FollowUp, error) {
	lease := WaitScore(until)
	// now rounded down: a member (scored rounded up) is due by now.
	due := float64(now.UnixMilli()) / 1000
	res, err := claimScript.Run(ctx, s.rdb, []string{waitingKey}, scoreArg(due), scoreArg(lease), limit).StringSlice()
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	out := make([]FollowUp, 0, len(res)/2)
	var junk []any
	for i := 0; i+1 < len(res); i += 2 {
		cust, jid, ok := strings.Cut(res[i], "|")
		if !ok {
			junk = append(junk, res[i])
			continue
		}
		due, _ := strconv.ParseFloat(res[i+1], 64)
		out = append(out, FollowUp{Waiting: Waiting{CustomerID: cust, JourneyID: jid}, Due: scoreTime(due), Lease: lease})
	}
	if len(junk) > 0 {
		_ = s.rdb.ZRem(ctx, waitingKey, junk...).Err()
	}
	if len(out) == 0 {
		return out, nil
	}
	gets := make([]*redis.StringCmd, len(out))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range out {
			gets[i] = p.Get(ctx, journeyKey(c.CustomerID, c.JourneyID))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, herald.Temporary(err, "redis", 0)
	}
	for i := range out {
		b, err := gets[i].Bytes()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, herald.Temporary(err, "redis", 0)
		}
		out[i].State, out[i].Err = readJourney(out[i].CustomerID, out[i].JourneyID, b)
		out[i].Found = out[i].Err == nil
	}
	return out, nil
}

// Settle gives back claimed journeys that need no wake-up task now: each
// one still under its claim's lease (nothing saved or claimed it since)
// is put back at its wake time if its state waits, else removed from the
// waiting index. It returns how many were still under the lease.
func (s *Store) SettleFollowUps(ctx context.Context, claims []FollowUp) (int, error) {
	n := 0
	for start := 0; start < len(claims); { // one script per lease: a batch shares one
		lease := claims[start].Lease
		args := []any{scoreArg(lease)}
		end := start
		for ; end < len(claims) && claims[end].Lease == lease; end++ {
			c, score := claims[end], ""
			if c.Found && c.State.Waiting() {
				score = scoreArg(WaitScore(c.State.WakeAt))
			}
			args = append(args, c.CustomerID+"|"+c.JourneyID, score)
		}
		k, err := settleScript.Run(ctx, s.rdb, []string{waitingKey}, args...).Int()
		if err != nil {
			return n, herald.Temporary(err, "redis", 0)
		}
		n += k
		start = end
	}
	return n, nil
}

// RestoreWaiting puts a waiting journey at its wake time in the waiting
// index (as a save writes it); called under the customer's journey lock.
func (s *Store) RestoreWaiting(ctx context.Context, st workflows.State) error {
	if !st.Waiting() {
		return nil
	}
	err := s.rdb.ZAdd(ctx, waitingKey, redis.Z{Score: WaitScore(st.WakeAt), Member: st.CustomerID + "|" + st.JourneyID}).Err()
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// WaitingCounts returns how many journeys the waiting index holds and how
// many of them were due before overdue and are still there (no waker took
// them, or took them and lost them for longer than a lease).
func (s *Store) WaitingCounts(ctx context.Context, overdue time.Time) (total, late int64, err error) {
	var card, count *redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		card = p.ZCard(ctx, waitingKey)
		count = p.ZCount(ctx, waitingKey, "-inf", "("+scoreArg(WaitScore(overdue)))
		return nil
	})
	if err != nil {
		return 0, 0, herald.Temporary(err, "redis", 0)
	}
	return card.Val(), count.Val(), nil
}
