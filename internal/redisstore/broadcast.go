package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/redis/go-redis/v9"
)

// A broadcast's keys share the hash tag {b:<id>}, so creating, advancing and
// finishing it are single-slot transactions in Redis Cluster too:
//
//	herald:{b:<id>}:meta      hash: spec, fingerprint, status, times, the
//	                          fan-out cursor, and the counts
//	herald:{b:<id>}:audience  list of the frozen audience's customer IDs,
//	                          deleted when the fan-out ends
//	herald:broadcasts         sorted set of broadcast IDs by creation time
//
// Once a broadcast is done, what it keeps is the meta hash: counters, not a
// record per recipient.
const broadcastsKey = "herald:broadcasts"

// Broadcast statuses.
const (
	BroadcastScheduled = "scheduled"
	BroadcastRunning   = "running"
	BroadcastDone      = "done"
	BroadcastCancelled = "cancelled"
)

var broadcastIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$`)

// ValidBroadcastID reports whether id may name a broadcast: 1–64 letters,
// digits, . and -, so it reads unambiguously inside a message ID.
func ValidBroadcastID(id string) error {
	if !broadcastIDRe.MatchString(id) {
		return herald.Errorf(herald.EInvalid, "broadcast id %q: use 1-64 letters, digits, . or - (starting with a letter or digit)", clip(id))
	}
	return nil
}

func broadcastKey(id, part string) string { return "herald:{b:" + id + "}:" + part }

// BroadcastRecord is a broadcast as stored.
type BroadcastRecord struct {
	ID          string
	Spec        json.RawMessage
	Fingerprint string
	Status      string
	CreatedAt   time.Time
	StartedAt   time.Time
	FinishedAt  time.Time
	// Total is the size of the frozen audience; Cursor how much of it the
	// fan-out has walked.
	Total, Cursor int64
	// Inflight is the start of a page the fan-out began queueing and did
	// not finish (-1: none): a resumed fan-out checks it first.
	Inflight int64
	// Counts are the counters: queued, sent:<channel>, suppressed:<reason>,
	// deferred, failed, skipped (erased), cancelled.
	Counts map[string]int64
	// Waiting counts the messages the fan-out queued for a later local
	// hour, by that time (unix seconds): fields waiting:<unix> of the meta
	// hash, one per distinct time.
	Waiting map[int64]int64
}

// WaitingField is the meta field counting the messages queued for at.
func WaitingField(at time.Time) string { return "waiting:" + strconv.FormatInt(at.Unix(), 10) }

// BroadcastRequest is what a broadcast record keeps of its request.
type BroadcastRequest struct {
	Broadcast wire.Broadcast `json:"b"`
	Actor     string         `json:"actor,omitempty"`
	Notes     []string       `json:"notes,omitempty"`
	StartAt   time.Time      `json:"start"`
}

// Info is the broadcast as the API shows it.
func (r BroadcastRecord) Info() wire.BroadcastInfo {
	var st BroadcastRequest
	_ = json.Unmarshal(r.Spec, &st)
	info := wire.BroadcastInfo{
		Broadcast: st.Broadcast, Status: r.Status, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
		Actor: st.Actor, Notes: st.Notes,
		Counts: wire.Counts{Matched: r.Total, Sent: map[string]int64{}, Suppressed: map[string]int64{}},
	}
	info.ID = r.ID
	if !st.StartAt.IsZero() {
		t := st.StartAt
		info.StartAt = &t
	}
	for k, v := range r.Counts {
		switch {
		case k == "queued":
			info.Counts.Queued = v
		case k == "deferred":
			info.Counts.Deferred = v
		case k == "failed":
			info.Counts.Failed = v
		case k == "skipped":
			info.Counts.Skipped = v
		case k == "cancelled":
			info.Counts.Cancelled = v
		case strings.HasPrefix(k, "sent:"):
			info.Counts.Sent[strings.TrimPrefix(k, "sent:")] = v
		case strings.HasPrefix(k, "suppressed:"):
			info.Counts.Suppressed[strings.TrimPrefix(k, "suppressed:")] = v
		}
	}
	return info
}

// LocalWait is what a broadcast at each customer's local time has queued
// for a later hour: how many messages, and when the next and the last go
// out.
type LocalWait struct {
	Messages int64     `json:"messages"`
	Next     time.Time `json:"next_at"`
	Last     time.Time `json:"last_at"`
}

// BroadcastView is a broadcast as the API and the CLI show it: its counts
// and, while messages wait for their customer's local time, how many and
// until when.
type BroadcastView struct {
	wire.BroadcastInfo
	Waiting *LocalWait `json:"waiting,omitempty"`
}

// View is the broadcast as shown at now. The messages waiting are those
// queued for a time after now (an erased customer's stays counted until its
// time); a cancelled broadcast has none.
func (r BroadcastRecord) View(now time.Time) BroadcastView {
	v := BroadcastView{BroadcastInfo: r.Info()}
	if r.Status == BroadcastCancelled {
		return v
	}
	var w LocalWait
	for sec, n := range r.Waiting {
		at := time.Unix(sec, 0).UTC()
		if n <= 0 || !at.After(now) {
			continue
		}
		w.Messages += n
		if w.Next.IsZero() || at.Before(w.Next) {
			w.Next = at
		}
		if at.After(w.Last) {
			w.Last = at
		}
	}
	if w.Messages > 0 {
		v.Waiting = &w
	}
	return v
}

func parseBroadcast(id string, h map[string]string) (BroadcastRecord, bool) {
	if len(h) == 0 || h["status"] == "" {
		return BroadcastRecord{}, false
	}
	r := BroadcastRecord{ID: id, Spec: json.RawMessage(h["spec"]), Fingerprint: h["fp"], Status: h["status"], Inflight: -1, Counts: map[string]int64{}}
	num := func(k string) int64 { n, _ := strconv.ParseInt(h[k], 10, 64); return n }
	at := func(k string) time.Time {
		if h[k] == "" {
			return time.Time{}
		}
		return time.UnixMilli(num(k)).UTC()
	}
	r.CreatedAt, r.StartedAt, r.FinishedAt = at("created_at"), at("started_at"), at("finished_at")
	r.Total, r.Cursor = num("total"), num("cursor")
	if v, ok := h["inflight"]; ok && v != "" {
		r.Inflight = num("inflight")
	}
	for k, v := range h {
		if at, ok := strings.CutPrefix(k, "waiting:"); ok {
			sec, err1 := strconv.ParseInt(at, 10, 64)
			n, err2 := strconv.ParseInt(v, 10, 64)
			if err1 == nil && err2 == nil {
				if r.Waiting == nil {
					r.Waiting = map[int64]int64{}
				}
				r.Waiting[sec] += n
			}
			continue
		}
		if k == "queued" || k == "deferred" || k == "failed" || k == "skipped" || k == "cancelled" ||
			strings.HasPrefix(k, "sent:") || strings.HasPrefix(k, "suppressed:") {
			n, _ := strconv.ParseInt(v, 10, 64)
			r.Counts[k] = n
		}
	}
	return r, true
}

// createScript creates a broadcast unless one exists under the ID: it moves
// the audience written under a temporary key into place and writes the
// record in one step, so a broadcast is there whole or not at all.
// KEYS: meta, tmp audience, audience. ARGV: fp, spec, status, created ms,
// total. Returns 1 when created, 0 when the ID was taken.
var createScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 1 then
  redis.call("DEL", KEYS[2])
  return {0, redis.call("HGETALL", KEYS[1])}
end
if redis.call("EXISTS", KEYS[2]) == 1 then
  redis.call("RENAME", KEYS[2], KEYS[3])
  redis.call("PERSIST", KEYS[3])
end
redis.call("HSET", KEYS[1], "fp", ARGV[1], "spec", ARGV[2], "status", ARGV[3], "created_at", ARGV[4], "total", ARGV[5], "cursor", 0)
if ARGV[3] == "done" then
  redis.call("HSET", KEYS[1], "finished_at", ARGV[4])
end
return {1, redis.call("HGETALL", KEYS[1])}`)

// CreateBroadcast stores a new broadcast with its frozen audience, or
// returns the one already under the ID (created false): the caller compares
// fingerprints. A new broadcast is returned as written, before its
// fan-out (which may be queued already) can move it on.
func (s *Store) CreateBroadcast(ctx context.Context, id, fingerprint string, spec []byte, status string, audience []string) (BroadcastRecord, bool, error) {
	if r, ok, err := s.Broadcast(ctx, id); err != nil || ok {
		return r, false, err
	}
	now := s.now().UTC()
	tmp := broadcastKey(id, "audience:"+NewID(""))
	for start := 0; start < len(audience); start += 10000 {
		chunk := audience[start:min(start+10000, len(audience))]
		vals := make([]any, len(chunk))
		for i, v := range chunk {
			vals[i] = v
		}
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.RPush(ctx, tmp, vals...)
			p.Expire(ctx, tmp, time.Hour) // an abandoned creation cleans up after itself
			return nil
		})
		if err != nil {
			return BroadcastRecord{}, false, tempErr(err)
		}
	}
	// The audience list loses the temporary key's TTL as it is put in place.
	res, err := createScript.Run(ctx, s.rdb, []string{broadcastKey(id, "meta"), tmp, broadcastKey(id, "audience")},
		fingerprint, string(spec), status, now.UnixMilli(), len(audience)).Slice()
	if err != nil {
		return BroadcastRecord{}, false, tempErr(err)
	}
	created, _ := res[0].(int64)
	fields, _ := res[1].([]any)
	h := make(map[string]string, len(fields)/2)
	for i := 0; i+1 < len(fields); i += 2 {
		k, _ := fields[i].(string)
		v, _ := fields[i+1].(string)
		h[k] = v
	}
	r, ok := parseBroadcast(id, h)
	if !ok {
		return BroadcastRecord{}, false, herald.Errorf(herald.EInternal, "broadcast %q: its record is unreadable", id)
	}
	if err := s.ListBroadcast(ctx, id, r.CreatedAt); err != nil {
		return BroadcastRecord{}, false, err
	}
	return r, created == 1, nil
}

// ListBroadcast adds the broadcast to the listing (idempotent).
func (s *Store) ListBroadcast(ctx context.Context, id string, created time.Time) error {
	return tempErr(s.rdb.ZAddNX(ctx, broadcastsKey, redis.Z{Score: float64(created.UnixMilli()), Member: id}).Err())
}

// Broadcast reads a broadcast; ok is false when there is none.
func (s *Store) Broadcast(ctx context.Context, id string) (BroadcastRecord, bool, error) {
	h, err := s.rdb.HGetAll(ctx, broadcastKey(id, "meta")).Result()
	if err != nil {
		return BroadcastRecord{}, false, tempErr(err)
	}
	r, ok := parseBroadcast(id, h)
	return r, ok, nil
}

// Broadcasts lists up to n broadcasts, newest first, starting after the
// first `skip`.
func (s *Store) Broadcasts(ctx context.Context, skip, n int) ([]BroadcastRecord, error) {
	ids, err := s.rdb.ZRevRange(ctx, broadcastsKey, int64(skip), int64(skip+n-1)).Result()
	if err != nil {
		return nil, tempErr(err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, broadcastKey(id, "meta"))
		}
		return nil
	})
	if err != nil {
		return nil, tempErr(err)
	}
	out := make([]BroadcastRecord, 0, len(ids))
	for i, c := range cmds {
		if r, ok := parseBroadcast(ids[i], c.Val()); ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// BroadcastStatus reads only the status ("" when there is no broadcast).
func (s *Store) BroadcastStatus(ctx context.Context, id string) (string, error) {
	st, err := s.rdb.HGet(ctx, broadcastKey(id, "meta"), "status").Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return st, tempErr(err)
}

// startScript moves a scheduled broadcast to running. KEYS: meta. ARGV: ms.
var startScript = redis.NewScript(`
if redis.call("HGET", KEYS[1], "status") == "scheduled" then
  redis.call("HSET", KEYS[1], "status", "running", "started_at", ARGV[1])
end
return redis.call("HGET", KEYS[1], "status")`)

// StartBroadcast marks a scheduled broadcast running and returns its status
// after ("" when there is none).
func (s *Store) StartBroadcast(ctx context.Context, id string) (string, error) {
	st, err := startScript.Run(ctx, s.rdb, []string{broadcastKey(id, "meta")}, s.now().UnixMilli()).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return st, tempErr(err)
}

// AudiencePage returns up to n customer IDs of the frozen audience from
// position start.
func (s *Store) AudiencePage(ctx context.Context, id string, start int64, n int) ([]string, error) {
	ids, err := s.rdb.LRange(ctx, broadcastKey(id, "audience"), start, start+int64(n)-1).Result()
	return ids, tempErr(err)
}

// BeginPage records that the fan-out starts queueing the page
// [start, end) of the audience.
func (s *Store) BeginPage(ctx context.Context, id string, start, end int64) error {
	return tempErr(s.rdb.HSet(ctx, broadcastKey(id, "meta"), "inflight", start, "inflight_end", end).Err())
}

// endPageScript moves the cursor past a queued page and adds its counts;
// the page's customers who are gone (erased) count as skipped unless
// something counted their message already. KEYS: meta, tallied. ARGV:
// cursor, mark TTL (s), n, n field/count pairs, then the marks of the
// customers gone.
var endPageScript = redis.NewScript(`
redis.call("HSET", KEYS[1], "cursor", ARGV[1])
redis.call("HDEL", KEYS[1], "inflight", "inflight_end")
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  redis.call("HINCRBY", KEYS[1], ARGV[4 + 2 * i], ARGV[5 + 2 * i])
end
local skipped = 0
for i = 4 + 2 * n, #ARGV do
  if redis.call("HSETNX", KEYS[2], ARGV[i], "skipped") == 1 then skipped = skipped + 1 end
end
if skipped > 0 then
  redis.call("HINCRBY", KEYS[1], "skipped", skipped)
  redis.call("EXPIRE", KEYS[2], ARGV[2])
end
return skipped`)

// EndPage moves the cursor past a queued page and adds its counts, in one
// script. gone are the message IDs of the page's customers who are gone:
// each counts as skipped once (see TallyOnce).
func (s *Store) EndPage(ctx context.Context, id string, cursor int64, counts map[string]int64, gone []string) error {
	args := []any{cursor, int64(tallyTTL / time.Second), 0}
	n := 0
	for k, v := range counts {
		if v != 0 {
			args = append(args, k, v)
			n++
		}
	}
	args[2] = n
	for _, m := range gone {
		args = append(args, tallyMark(m))
	}
	return tempErr(endPageScript.Run(ctx, s.rdb, []string{broadcastKey(id, "meta"), broadcastKey(id, "tallied")}, args...).Err())
}

// tallyTTL is how long a broadcast keeps the marks of the messages it
// counted as cancelled or skipped after the last one: longer than any
// message of it can wait in a queue.
const tallyTTL = 30 * 24 * time.Hour

// tallyMark is a message's mark in its broadcast's tallied hash: 8 bytes
// of its ID's SHA-256, so that the hash holds no customer ID.
func tallyMark(msgID string) string {
	sum := sha256.Sum256([]byte(msgID))
	return string(sum[:8])
}

// tallyScript counts messages once each. KEYS: meta, tallied. ARGV:
// field, mark TTL (s), marks. Returns how many it counted.
var tallyScript = redis.NewScript(`
if redis.call("EXISTS", KEYS[1]) == 0 then return 0 end
local n = 0
for i = 3, #ARGV do
  if redis.call("HSETNX", KEYS[2], ARGV[i], ARGV[1]) == 1 then n = n + 1 end
end
if n > 0 then
  redis.call("HINCRBY", KEYS[1], ARGV[1], n)
  redis.call("EXPIRE", KEYS[2], ARGV[2])
end
return n`)

// TallyOnce counts each of a broadcast's messages (by ID) under field
// (cancelled, skipped) unless one of them was tallied before, under any
// field: a message deleted from its queue by a cancel and one stopped when
// it runs, or a task that runs again after its worker died, count once.
// It returns how many it counted.
func (s *Store) TallyOnce(ctx context.Context, id, field string, msgIDs ...string) (int64, error) {
	if len(msgIDs) == 0 {
		return 0, nil
	}
	args := make([]any, 0, 2+len(msgIDs))
	args = append(args, field, int64(tallyTTL/time.Second))
	for _, m := range msgIDs {
		args = append(args, tallyMark(m))
	}
	n, err := tallyScript.Run(ctx, s.rdb, []string{broadcastKey(id, "meta"), broadcastKey(id, "tallied")}, args...).Int64()
	return n, tempErr(err)
}

// finishScript ends a running broadcast (a cancelled one stays cancelled)
// and drops its audience list. KEYS: meta, audience. ARGV: ms.
var finishScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "status")
if st == "running" or st == "scheduled" then
  redis.call("HSET", KEYS[1], "status", "done", "finished_at", ARGV[1])
end
redis.call("HDEL", KEYS[1], "inflight", "inflight_end")
redis.call("DEL", KEYS[2])
return 1`)

// FinishBroadcast marks the fan-out complete.
func (s *Store) FinishBroadcast(ctx context.Context, id string) error {
	return tempErr(finishScript.Run(ctx, s.rdb, []string{broadcastKey(id, "meta"), broadcastKey(id, "audience")}, s.now().UnixMilli()).Err())
}

// cancelScript cancels a broadcast and drops the part of its audience not
// yet queued, and its counts of messages waiting for a local hour. A done
// broadcast may still have messages waiting (for a customer's local hour,
// for quiet hours): cancelling it stops those. The page the fan-out is
// queueing is kept apart (KEYS[3]): its customers are counted one by one
// (see Store.CancelledPage), the rest of the audience at once.
// KEYS: meta, audience, page. ARGV: ms, page TTL (s). Returns the status
// after.
var cancelScript = redis.NewScript(`
local st = redis.call("HGET", KEYS[1], "status")
if st == "scheduled" or st == "running" or st == "done" then
  local from = tonumber(redis.call("HGET", KEYS[1], "cursor") or 0)
  local pstart = redis.call("HGET", KEYS[1], "inflight")
  local pend = redis.call("HGET", KEYS[1], "inflight_end")
  if pstart and pend and tonumber(pstart) == from and redis.call("EXISTS", KEYS[2]) == 1 then
    local page = redis.call("LRANGE", KEYS[2], from, tonumber(pend) - 1)
    if #page > 0 then
      redis.call("RPUSH", KEYS[3], unpack(page))
      redis.call("EXPIRE", KEYS[3], ARGV[2])
    end
    from = from + #page
  end
  local left = tonumber(redis.call("HGET", KEYS[1], "total") or 0) - from
  redis.call("HSET", KEYS[1], "status", "cancelled", "finished_at", ARGV[1])
  if left > 0 then redis.call("HINCRBY", KEYS[1], "cancelled", left) end
  for _, f in ipairs(redis.call("HKEYS", KEYS[1])) do
    if string.sub(f, 1, 8) == "waiting:" then redis.call("HDEL", KEYS[1], f) end
  end
  redis.call("DEL", KEYS[2])
  return "cancelled"
end
return st`)

// CancelBroadcast cancels a broadcast; it returns the status
// after ("" when there is none). The count "cancelled" starts with the
// recipients the fan-out had not reached; queued messages add theirs as
// they are deleted from the queue or stopped when they run, and those of
// the page the fan-out was queueing as CancelledPage finds them.
func (s *Store) CancelBroadcast(ctx context.Context, id string) (string, error) {
	st, err := cancelScript.Run(ctx, s.rdb, []string{broadcastKey(id, "meta"), broadcastKey(id, "audience"), broadcastKey(id, "page")},
		s.now().UnixMilli(), int64(tallyTTL/time.Second)).Text()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	return st, tempErr(err)
}

// PageCustomer is a customer of the page a cancel interrupted.
type PageCustomer struct {
	ID string
	// Gone says the customer is gone (erased); Ran that their timeline
	// holds an entry about the broadcast's message.
	Gone, Ran bool
}

// CancelledPage reads the customers of the page the fan-out was queueing
// when the broadcast was cancelled (none when it was between pages), and
// for each whether they are gone and whether their message ran. The page
// is kept until DropCancelledPage.
func (s *Store) CancelledPage(ctx context.Context, id string, msgID func(customer string) string) ([]PageCustomer, error) {
	ids, err := s.rdb.LRange(ctx, broadcastKey(id, "page"), 0, -1).Result()
	if err != nil || len(ids) == 0 {
		return nil, tempErr(err)
	}
	exists := make([]*redis.IntCmd, len(ids))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range ids {
			exists[i] = p.Exists(ctx, Key(c, "customer"))
		}
		return nil
	}); err != nil {
		return nil, tempErr(err)
	}
	msgs := make([]string, len(ids))
	for i, c := range ids {
		msgs[i] = msgID(c)
	}
	ran, err := s.MessagesRan(ctx, ids, msgs)
	if err != nil {
		return nil, err
	}
	out := make([]PageCustomer, len(ids))
	for i, c := range ids {
		out[i] = PageCustomer{ID: c, Gone: exists[i].Val() == 0, Ran: ran[i]}
	}
	return out, nil
}

// MessagesRan says, for each customer and message ID at the same index,
// whether the customer's newest timeline entries hold one about the
// message: whether a copy of it ran (see BroadcastGate).
func (s *Store) MessagesRan(ctx context.Context, customers, msgIDs []string) ([]bool, error) {
	cmds := make([]*redis.StringSliceCmd, len(customers))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, c := range customers {
			cmds[i] = recentLines(ctx, p, c)
		}
		return nil
	}); err != nil {
		return nil, tempErr(err)
	}
	out := make([]bool, len(customers))
	for i, c := range cmds {
		out[i] = mentions(c.Val(), msgIDs[i])
	}
	return out, nil
}

// MessageTask names a queued task of a broadcast's message: its customer, its
// message and, for a delivery task, its channel. Continued marks a message
// task that carries on a message deferred before (its earlier run wrote
// the deferral).
type MessageTask struct {
	Customer, Message string
	Channel           herald.Channel
	Continued         bool
}

// Settled says, for each task, whether its message got past the point the
// task stands for, so that it counts elsewhere: a first message task's
// message ran (a timeline entry about it indexed it: its outcome counted
// it, or another task carries it on); a delivery task's channel, or any
// channel of a continued message task, has it sent in the ledger. A task
// that stopped after that and was queued again (its worker died) is no
// message to count as cancelled.
func (s *Store) Settled(ctx context.Context, refs []MessageTask) ([]bool, error) {
	type check struct {
		index  *redis.IntCmd
		ledger []*redis.StringCmd
	}
	checks := make([]check, len(refs))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range refs {
			channels := []herald.Channel{r.Channel}
			switch {
			case r.Channel != "":
			case r.Continued:
				channels = []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}
			default:
				checks[i].index = p.Exists(ctx, MessageIndexKey(r.Message))
				continue
			}
			for _, ch := range channels {
				checks[i].ledger = append(checks[i].ledger, p.Get(ctx, LedgerKey(r.Customer, r.Message+":"+string(ch))))
			}
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) {
		return nil, tempErr(err)
	}
	out := make([]bool, len(refs))
	for i, c := range checks {
		if c.index != nil {
			out[i] = c.index.Val() == 1
		}
		for _, g := range c.ledger {
			if v := g.Val(); v != "" && !strings.HasPrefix(v, claimPrefix) {
				out[i] = true
			}
		}
	}
	return out, nil
}

// DropCancelledPage deletes the page CancelledPage reads.
func (s *Store) DropCancelledPage(ctx context.Context, id string) error {
	return tempErr(s.rdb.Del(ctx, broadcastKey(id, "page")).Err())
}

// BroadcastBytes is the memory Redis reports for a broadcast's keys.
func (s *Store) BroadcastBytes(ctx context.Context, id string) (int64, error) {
	var total int64
	for _, k := range []string{broadcastKey(id, "meta"), broadcastKey(id, "audience")} {
		n, err := s.rdb.MemoryUsage(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return 0, tempErr(err)
		}
		total += n
	}
	return total, nil
}

// BroadcastGate reads, in one round trip, the broadcast's status and, when
// once is set, whether the customer's timeline already holds an entry about
// msgID: a message queued again by a resumed fan-out runs only if its first
// copy did not. Only the newest entries are read: a first copy ran moments
// before.
func (s *Store) BroadcastGate(ctx context.Context, id, customerID, msgID string, once bool) (string, bool, error) {
	var st *redis.StringCmd
	var tl *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		st = p.HGet(ctx, broadcastKey(id, "meta"), "status")
		if once {
			tl = recentLines(ctx, p, customerID)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", false, tempErr(err)
	}
	return st.Val(), tl != nil && mentions(tl.Val(), msgID), nil
}

// BroadcastAnswerTTL is how long a worker's answer to a broadcast request
// from the Go client waits to be read.
const BroadcastAnswerTTL = 10 * time.Minute

func answerKey(request string) string { return "herald:broadcast:answer:" + request }

// SetBroadcastAnswer stores the answer to a broadcast request.
func (s *Store) SetBroadcastAnswer(ctx context.Context, request string, answer []byte) error {
	return tempErr(s.rdb.Set(ctx, answerKey(request), answer, BroadcastAnswerTTL).Err())
}

// BroadcastAnswer reads the answer to a broadcast request (ok false while
// there is none).
func (s *Store) BroadcastAnswer(ctx context.Context, request string) ([]byte, bool, error) {
	b, err := s.rdb.Get(ctx, answerKey(request)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	return b, err == nil, tempErr(err)
}

// BroadcastInfo reads a broadcast as the API shows it (ENotFound when there
// is none).
func (s *Store) BroadcastInfo(ctx context.Context, id string) (wire.BroadcastInfo, error) {
	if err := ValidBroadcastID(id); err != nil {
		return wire.BroadcastInfo{}, err
	}
	rec, ok, err := s.Broadcast(ctx, id)
	if err != nil {
		return wire.BroadcastInfo{}, err
	}
	if !ok {
		return wire.BroadcastInfo{}, herald.Errorf(herald.ENotFound, "broadcast %q not found", id)
	}
	return rec.Info(), nil
}

// BroadcastView reads a broadcast as the API and the CLI show it, with
// what waits for a later local time (ENotFound when there is none).
func (s *Store) BroadcastView(ctx context.Context, id string) (BroadcastView, error) {
	if err := ValidBroadcastID(id); err != nil {
		return BroadcastView{}, err
	}
	rec, ok, err := s.Broadcast(ctx, id)
	if err != nil {
		return BroadcastView{}, err
	}
	if !ok {
		return BroadcastView{}, herald.Errorf(herald.ENotFound, "broadcast %q not found", id)
	}
	return rec.View(s.now()), nil
}

// BroadcastInfos lists broadcasts as the API shows them, newest first.
func (s *Store) BroadcastInfos(ctx context.Context, offset, limit int) ([]wire.BroadcastInfo, error) {
	recs, err := s.Broadcasts(ctx, offset, limit)
	if err != nil {
		return nil, err
	}
	out := make([]wire.BroadcastInfo, len(recs))
	for i, r := range recs {
		out[i] = r.Info()
	}
	return out, nil
}

// Cancel cancels a broadcast (see CancelBroadcast) and reads it after.
func (s *Store) Cancel(ctx context.Context, id string) (wire.BroadcastInfo, error) {
	if err := ValidBroadcastID(id); err != nil {
		return wire.BroadcastInfo{}, err
	}
	st, err := s.CancelBroadcast(ctx, id)
	if err != nil {
		return wire.BroadcastInfo{}, err
	}
	if st == "" {
		return wire.BroadcastInfo{}, herald.Errorf(herald.ENotFound, "broadcast %q not found", id)
	}
	return s.BroadcastInfo(ctx, id)
}
