// Package redisstore holds all of herald's persistence in Redis: customers,
// preferences and the consent log, send counters and suppressions, the
// timeline, the delivery ledger and claims, journeys and their lock,
// acknowledgements and the message indexes that lead to them, idempotency
// records, routing and the Slack user cache. Every per-customer key carries
// the hash tag {c:<id>} so one customer's keys share a Redis Cluster slot and
// can change together.
package redisstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// TimelineCap is how many timeline entries are kept per customer.
const TimelineCap = 500

// LedgerTTL is how long a sent delivery is remembered: longer than any retry
// schedule and asynq's retention, so a duplicate task always finds it, and
// as long as a message can be acknowledged (a click, a reply, a button).
const LedgerTTL = 90 * 24 * time.Hour

// ValidID reports whether id may name a customer: 1–128 of letters, digits
// and . _ : @ + -, so it can never break out of a key's hash tag or a path.
// Every send checks it more than once: a loop, not a regular expression.
func ValidID(id string) error {
	if !validID(id) {
		return herald.Errorf(herald.EInvalid, "customer id %q: use 1-128 letters, digits or . _ : @ + - (starting with a letter or digit)", clip(id))
	}
	return nil
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == ':' || c == '@' || c == '+' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Key returns the customer-scoped key herald:{c:<id>}:<parts…>.
func Key(customerID string, parts ...string) string {
	return "herald:{c:" + customerID + "}:" + strings.Join(parts, ":")
}

// Hash returns the hex SHA-256 of s, for keys that must not hold personal data.
func Hash(s string) string {
	h := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(s))))
	return hex.EncodeToString(h[:])
}

// Store is the Redis state.
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
	// expiring remembers, per workflow, the statistics hour whose expiry
	// this process has set (see CountPipe).
	expiring sync.Map
}

// New returns a Store on rdb; now is the clock (time.Now when nil).
func New(rdb redis.UniversalClient, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{rdb: rdb, now: now}
}

// Redis returns the client.
func (s *Store) Redis() redis.UniversalClient { return s.rdb }

// UpsertCustomer creates or replaces the customer's profile, keeping
// CreatedAt. It reports whether the customer is new.
func (s *Store) UpsertCustomer(ctx context.Context, c herald.Customer) (herald.Customer, bool, error) {
	if err := ValidID(c.ID); err != nil {
		return c, false, err
	}
	now := s.now().UTC()
	key := Key(c.ID, "customer")
	created := false
	var err error
	// Another writer between our read and write fails the transaction:
	// read again and retry, as optimistic locking intends.
	for attempt := 0; attempt < 16; attempt++ {
		created = false
		err = s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			old, err := getJSON[herald.Customer](ctx, tx, key)
			switch {
			case errors.Is(err, redis.Nil):
				created = true
				c.CreatedAt = now
			case err != nil:
				return err
			default:
				c.CreatedAt = old.CreatedAt
			}
			c.UpdatedAt = now
			b, _ := json.Marshal(c)
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, key, b, 0)
				return nil
			})
			return err
		}, key)
		if !errors.Is(err, redis.TxFailedErr) {
			break
		}
	}
	if err != nil {
		return c, false, fmt.Errorf("store customer: %w", err)
	}
	// Outside the transaction: the index is in another Cluster slot. Every
	// upsert re-adds the ID, so one lost here is back with the next.
	if err := s.indexCustomer(ctx, c.ID); err != nil {
		return c, created, fmt.Errorf("index customer: %w", err)
	}
	return c, created, nil
}

// Customer returns the customer or an ENotFound error.
func (s *Store) Customer(ctx context.Context, id string) (herald.Customer, error) {
	if err := ValidID(id); err != nil {
		return herald.Customer{}, err
	}
	c, err := getJSON[herald.Customer](ctx, s.rdb, Key(id, "customer"))
	if errors.Is(err, redis.Nil) {
		return c, CustomerNotFound(id)
	}
	if err != nil {
		return c, herald.Temporary(err, "redis", 0)
	}
	return c, nil
}

// CustomerNotFound is the error of a customer that does not exist.
func CustomerNotFound(id string) error {
	return herald.Errorf(herald.ENotFound, "customer %q not found", id)
}

func getJSON[T any](ctx context.Context, rdb redis.Cmdable, key string) (T, error) {
	var v T
	b, err := rdb.Get(ctx, key).Bytes()
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", key, err)
	}
	return v, nil
}

// AckCap is how many acknowledgement lines (opens, clicks, replies, button
// presses) are kept per customer. They live in their own list, so however
// often a customer clicks, the delivery, consent and journey lines that
// explain what herald did stay on the timeline.
const AckCap = 100

// MaxTimelineEntry bounds one timeline line as stored: a line whose data
// would make it longer (or does not encode) keeps its summary and drops the
// data (noting so).
// With TimelineCap and AckCap this caps a customer's timeline at about
// (TimelineCap+AckCap+slack) × MaxTimelineEntry ≈ 1.3 MB.
const MaxTimelineEntry = 2 << 10

// encodeEntry stamps and encodes a line within MaxTimelineEntry.
func (s *Store) encodeEntry(e herald.TimelineEntry) []byte {
	if e.At.IsZero() {
		e.At = s.now().UTC()
	}
	b, err := encodeLine(e)
	if err != nil || len(b) > MaxTimelineEntry {
		e.Data = map[string]any{"truncated": true}
		if len(e.Summary) > 512 {
			e.Summary = e.Summary[:512] + "…"
		}
		b, _ = encodeLine(e)
	}
	return b
}

func timelineKey(customerID string, e herald.TimelineEntry) (string, int64) {
	if e.Kind == herald.KindAcknowledgement {
		return Key(customerID, "timeline", "acks"), AckCap
	}
	return Key(customerID, "timeline"), TimelineCap
}

// Append adds an entry to the customer's timeline (newest first, capped).
func (s *Store) Append(ctx context.Context, customerID string, e herald.TimelineEntry) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.AppendPipe(ctx, p, customerID, e)
		return nil
	})
	return err
}

// AppendPipe queues timeline entries on a pipeline (newest last in
// entries, so they read newest first).
func (s *Store) AppendPipe(ctx context.Context, p redis.Pipeliner, customerID string, entries ...herald.TimelineEntry) {
	byKey := map[string][]any{}
	caps := map[string]int64{}
	var order []string
	// An event's line, followed in the same batch by the line of the
	// journey it started, holds both (mergeJourney).
	type eventLine struct {
		a  []any
		at time.Time
	}
	events := map[string]*eventLine{}
	for _, e := range entries {
		if e.At.IsZero() {
			e.At = s.now().UTC()
		}
		key, limit := timelineKey(customerID, e)
		if _, ok := byKey[key]; !ok {
			order = append(order, key)
		}
		caps[key] = limit
		if ev := events[key]; ev != nil {
			events[key] = nil
			if m, ok := mergeJourney(ev.a, e, ev.at); ok {
				if b, err := compactJSON(m); err == nil && len(b) <= MaxTimelineEntry {
					byKey[key][len(byKey[key])-1] = b
					continue
				}
			}
		}
		b := s.encodeEntry(e)
		if a := structuredLine(e); e.Kind == herald.KindEvent && a != nil {
			if ab, err := compactJSON(a); err == nil && bytes.Equal(ab, b) {
				events[key] = &eventLine{a, e.At}
			}
		}
		byKey[key] = append(byKey[key], b)
	}
	for _, key := range order {
		p.LPush(ctx, key, byKey[key]...)
		p.LTrim(ctx, key, 0, caps[key]-1)
	}
}

// HasOutcome reports whether the newest lines of the customer's timeline
// (the 50 a task's run writes among) hold one about ref with outcome o on
// channel ch: whether an earlier run of a task, cut off after recording
// it (a worker killed before asynq took the task as done), did so.
func (s *Store) HasOutcome(ctx context.Context, customerID, ref string, ch herald.Channel, o herald.Outcome) (bool, error) {
	return s.HasLine(ctx, customerID, ref, func(e herald.TimelineEntry) bool { return e.Outcome == o && e.Channel == ch })
}

// HasLine is HasOutcome for any line about ref that match accepts.
func (s *Store) HasLine(ctx context.Context, customerID, ref string, match func(herald.TimelineEntry) bool) (bool, error) {
	lines, err := recentLines(ctx, s.rdb, customerID).Result()
	if err != nil {
		return false, tempErr(err)
	}
	for _, l := range lines {
		if !lineHasRef(l, ref) {
			continue
		}
		es, err := decodeLine([]byte(l))
		if err != nil {
			continue
		}
		for _, e := range es {
			if e.Ref == ref && match(e) {
				return true, nil
			}
		}
	}
	return false, nil
}

// Timeline returns up to limit entries, newest first (limit <= 0: all
// kept), acknowledgements merged in by time.
func (s *Store) Timeline(ctx context.Context, customerID string, limit int) ([]herald.TimelineEntry, error) {
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit - 1)
	}
	var main, acks *redis.StringSliceCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		main = p.LRange(ctx, Key(customerID, "timeline"), 0, stop)
		acks = p.LRange(ctx, Key(customerID, "timeline", "acks"), 0, stop)
		return nil
	})
	if err != nil {
		return nil, err
	}
	decode := func(raw []string) []herald.TimelineEntry {
		out := make([]herald.TimelineEntry, 0, len(raw))
		for _, r := range raw {
			if e, err := decodeLine([]byte(r)); err == nil {
				out = append(out, e...)
			}
		}
		return out
	}
	a, b := decode(main.Val()), decode(acks.Val())
	repairOrder(a)
	out := make([]herald.TimelineEntry, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && !a[0].At.Before(b[0].At)) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// reorderWindow is how far apart in time two timeline lines may be for
// repairOrder to swap them.
const reorderWindow = 2 * time.Second

// repairOrder puts lines written a moment out of order (newest first) back
// in the order they happened. A handler writes an event's line with the
// journey's state, after the send the event caused has written its own; a
// line's time is when it happened. Lines further apart keep the order they
// were written in, so a line about something long past (backdated) stays
// where it was added.
func repairOrder(es []herald.TimelineEntry) {
	for i := 1; i < len(es); i++ {
		for j := i; j > 0 && es[j].At.After(es[j-1].At) && es[j].At.Sub(es[j-1].At) < reorderWindow; j-- {
			es[j], es[j-1] = es[j-1], es[j]
		}
	}
}

// Claim takes a short-lived exclusive claim on a delivery. It returns a
// release function, and false when another worker holds the claim.
func (s *Store) Claim(ctx context.Context, customerID, deliveryID string, ttl time.Duration) (func(), bool, error) {
	key := Key(customerID, "claim", deliveryID)
	token := NewID("")
	ok, err := s.rdb.SetNX(ctx, key, token, ttl).Result()
	if err != nil || !ok {
		return func() {}, false, err
	}
	return func() {
		_ = releaseScript.Run(context.WithoutCancel(ctx), s.rdb, []string{key}, token).Err()
	}, true, nil
}

// releaseScript deletes a claim only if it is still ours.
var releaseScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// idemKey names an idempotency record: keys are exact (unlike Hash, which
// folds case and space for addresses), so "order-abc" and "order-ABC" are
// two requests.
func idemKey(key string) string {
	h := sha256.Sum256([]byte(key))
	return "herald:idem:" + hex.EncodeToString(h[:])
}

// Idempotent stores the first answer for key and returns the earlier one on
// a repeat. fingerprint identifies the request body: the same key with a
// different body is an EConflict.
type Idempotent struct {
	Fingerprint string          `json:"fp"`
	Status      int             `json:"status"`
	Body        json.RawMessage `json:"body"`
	// Provisional marks an answer stored before the request ran (it was
	// known beforehand): a repeat trusts it only once it sees that the
	// request took effect.
	Provisional bool `json:"prov,omitempty"`
}

// Remember stores rec under key for ttl unless a record is there; it returns
// the stored record and whether it was already there. One SET NX GET: a
// repeat reads the first record in the same command that failed to replace
// it.
func (s *Store) Remember(ctx context.Context, key string, rec Idempotent, ttl time.Duration) (Idempotent, bool, error) {
	r, err := s.RememberFor(ctx, key, rec, ttl, "")
	return r.Record, r.Seen, err
}

// Remembered is what RememberFor found.
type Remembered struct {
	// Record is the stored record: rec, or the one already there (Seen).
	Record Idempotent
	Seen   bool
	// Checked is true when the customer asked about was read, in the same
	// round trip as the record; CustomerFound says whether they exist.
	// Checked is false when none was asked about, or the read failed (the
	// caller asks again, and meets the error itself).
	Checked, CustomerFound bool
}

// RememberFor is Remember that also reads whether customerID exists ("":
// no customer; an invalid ID is not read) in the same round trip, so a
// request that needs both waits for Redis once. The two keys live on
// different Cluster slots: a pipeline, not a script.
func (s *Store) RememberFor(ctx context.Context, key string, rec Idempotent, ttl time.Duration, customerID string) (Remembered, error) {
	out := Remembered{Record: rec}
	b, _ := json.Marshal(rec)
	var set *redis.StatusCmd
	var found *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetArgs(ctx, idemKey(key), b, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl})
		if customerID != "" && validID(customerID) {
			found = p.Exists(ctx, Key(customerID, "customer"))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return out, err
	}
	old, err := set.Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		return out, err
	default:
		out.Seen = true
		out.Record = Idempotent{}
		if err := json.Unmarshal([]byte(old), &out.Record); err != nil {
			return out, fmt.Errorf("decode %s: %w", idemKey(key), err)
		}
	}
	if found != nil {
		// Read on its own: the key's redis.Nil, the pipeline's first
		// error, would hide its failure.
		n, err := found.Result()
		out.Checked, out.CustomerFound = err == nil, err == nil && n > 0
	}
	return out, nil
}

// Settle replaces the record under key (the final answer after a pending one).
func (s *Store) Settle(ctx context.Context, key string, rec Idempotent, ttl time.Duration) error {
	b, _ := json.Marshal(rec)
	return s.rdb.Set(ctx, idemKey(key), b, ttl).Err()
}

// Forget drops an idempotency record (when the first attempt failed).
func (s *Store) Forget(ctx context.Context, key string) error {
	return s.rdb.Del(ctx, idemKey(key)).Err()
}

// SlackUsers caches email → Slack user ID lookups across workers; the key
// holds a hash of the address, not the address.
type SlackUsers struct{ rdb redis.UniversalClient }

// SlackUsers returns the Slack user cache.
func (s *Store) SlackUsers() SlackUsers { return SlackUsers{s.rdb} }

// Get returns a cached user ID.
func (c SlackUsers) Get(ctx context.Context, email string) (string, bool, error) {
	v, err := c.rdb.Get(ctx, "herald:slackuser:"+Hash(email)).Result()
	if errors.Is(err, redis.Nil) {
		return "", false, nil
	}
	return v, err == nil, err
}

// Set caches a user ID for ttl.
func (c SlackUsers) Set(ctx context.Context, email, userID string, ttl time.Duration) error {
	return c.rdb.Set(ctx, "herald:slackuser:"+Hash(email), userID, ttl).Err()
}

// DeleteCustomer removes every key of the customer (profile, timeline,
// ledger, journeys, preferences); callers keep what erasure must keep
// (suppression hashes, the consent entry) outside the customer's keys or
// write it afterwards.
//
// Keys named in keep (suffixes such as "customer") stay, for a caller that
// deletes them last.
func (s *Store) DeleteCustomer(ctx context.Context, customerID string, keep ...string) (int, error) {
	pattern := "herald:{c:" + customerID + "}:*"
	kept := map[string]bool{}
	for _, k := range keep {
		kept[Key(customerID, k)] = true
	}
	var n atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		var keys []string
		for it.Next(ctx) {
			if !kept[it.Val()] {
				keys = append(keys, it.Val())
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		if len(keys) > 0 {
			if err := c.Unlink(ctx, keys...).Err(); err != nil {
				return err
			}
		}
		n.Add(int64(len(keys)))
		return nil
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	default:
		err = fmt.Errorf("store: unsupported client %T", s.rdb)
	}
	if err == nil {
		err = s.rdb.ZRem(ctx, CustomersKey, customerID).Err()
	}
	return int(n.Load()), err
}
