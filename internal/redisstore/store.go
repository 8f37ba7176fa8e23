// Package redisstore holds all of herald's persistence in Redis: customers,
// preferences and the consent log, send counters and suppressions, the
// timeline, the delivery ledger and claims, idempotency records, routing and
// the Slack user cache. Every per-customer key carries the hash tag {c:<id>}
// so one customer's keys share a Redis Cluster slot and can change together.
package redisstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
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

var idRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,127}$`)

// ValidID reports whether id may name a customer: 1–128 of letters, digits
// and . _ : @ + -, so it can never break out of a key's hash tag or a path.
func ValidID(id string) error {
	if !idRe.MatchString(id) {
		return herald.Errorf(herald.EInvalid, "customer id %q: use 1-128 letters, digits or . _ : @ + - (starting with a letter or digit)", clip(id))
	}
	return nil
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
		return c, herald.Errorf(herald.ENotFound, "customer %q not found", id)
	}
	if err != nil {
		return c, herald.Temporary(err, "redis", 0)
	}
	return c, nil
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

// Append adds an entry to the customer's timeline (newest first, capped).
func (s *Store) Append(ctx context.Context, customerID string, e herald.TimelineEntry) error {
	if e.At.IsZero() {
		e.At = s.now().UTC()
	}
	b, _ := json.Marshal(e)
	key := Key(customerID, "timeline")
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, key, b)
		p.LTrim(ctx, key, 0, TimelineCap-1)
		return nil
	})
	return err
}

// AppendPipe queues timeline entries on a pipeline (newest last in
// entries, so they read newest first).
func (s *Store) AppendPipe(ctx context.Context, p redis.Pipeliner, customerID string, entries ...herald.TimelineEntry) {
	vals := make([]any, 0, len(entries))
	for _, e := range entries {
		if e.At.IsZero() {
			e.At = s.now().UTC()
		}
		b, _ := json.Marshal(e)
		vals = append(vals, b)
	}
	key := Key(customerID, "timeline")
	p.LPush(ctx, key, vals...)
	p.LTrim(ctx, key, 0, TimelineCap-1)
}

// Timeline returns up to limit entries, newest first (limit <= 0: all kept).
func (s *Store) Timeline(ctx context.Context, customerID string, limit int) ([]herald.TimelineEntry, error) {
	stop := int64(-1)
	if limit > 0 {
		stop = int64(limit - 1)
	}
	raw, err := s.rdb.LRange(ctx, Key(customerID, "timeline"), 0, stop).Result()
	if err != nil {
		return nil, err
	}
	out := make([]herald.TimelineEntry, 0, len(raw))
	for _, r := range raw {
		var e herald.TimelineEntry
		if json.Unmarshal([]byte(r), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
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
}

// Remember stores rec under key for ttl unless a record is there; it returns
// the stored record and whether it was already there.
func (s *Store) Remember(ctx context.Context, key string, rec Idempotent, ttl time.Duration) (Idempotent, bool, error) {
	k := idemKey(key)
	b, _ := json.Marshal(rec)
	ok, err := s.rdb.SetNX(ctx, k, b, ttl).Result()
	if err != nil {
		return rec, false, err
	}
	if ok {
		return rec, false, nil
	}
	old, err := getJSON[Idempotent](ctx, s.rdb, k)
	if err != nil {
		return rec, false, err
	}
	return old, true, nil
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
func (s *Store) DeleteCustomer(ctx context.Context, customerID string) (int, error) {
	pattern := "herald:{c:" + customerID + "}:*"
	var n atomic.Int64
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, pattern, 500).Iterator()
		var keys []string
		for it.Next(ctx) {
			keys = append(keys, it.Val())
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
