package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/preferences"
)

// MaxSendWindow is how long RecordSend keeps sends: the longest cap window
// a Policy may use.
const MaxSendWindow = 31 * 24 * time.Hour

// applyAttempts bounds optimistic retries when two writers race on one
// customer's preferences.
const applyAttempts = 16

// Prefs keeps preferences, the consent log, send counters and the
// suppression list in Redis. Every key of one customer carries the hash tag
// {c:<id>} so a customer's keys share a Cluster slot and one MULTI can
// change them together.
type Prefs struct {
	rdb      redis.UniversalClient
	now      func() time.Time
	timeline *Store
}

// NewPrefs returns a Prefs on rdb; now is the clock (time.Now when nil).
func NewPrefs(rdb redis.UniversalClient, now func() time.Time) *Prefs {
	if now == nil {
		now = time.Now
	}
	return &Prefs{rdb: rdb, now: now, timeline: New(rdb, now)}
}

func customerKey(id, suffix string) string { return Key(id, suffix) }

func prefsKey(id string) string        { return customerKey(id, "prefs") }
func consentKey(id string) string      { return customerKey(id, "consent") }
func sendsKey(id, class string) string { return customerKey(id, "sends:"+class) }
func sendClassesKey(id string) string  { return customerKey(id, "send-classes") }
func suppressKey(ch herald.Channel, address string) string {
	return "herald:suppress:" + string(ch) + ":" + Hash(address)
}

func checkID(id string) error {
	if id == "" {
		return herald.Errorf(herald.EInvalid, "customer id is empty")
	}
	// A brace would break the hash tag and move the key to another slot.
	if strings.ContainsAny(id, "{}") {
		return herald.Errorf(herald.EInvalid, "customer id %q contains a brace", id)
	}
	return nil
}

// Get returns the customer's preferences; zero Preferences (defaults) when
// the customer never chose anything.
func (s *Prefs) Get(ctx context.Context, customerID string) (herald.Preferences, error) {
	if err := checkID(customerID); err != nil {
		return herald.Preferences{}, err
	}
	return getPrefs(ctx, s.rdb, customerID)
}

func getPrefs(ctx context.Context, c redis.Cmdable, id string) (herald.Preferences, error) {
	var p herald.Preferences
	b, err := c.Get(ctx, prefsKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return p, nil
	}
	if err != nil {
		return p, herald.Temporary(err, "redis", 0)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, &herald.Error{Code: herald.EInternal, Message: "preferences of " + id + " are corrupt", Err: err}
	}
	return p, nil
}

// Apply merges p into the customer's preferences and appends one consent
// entry per changed field, atomically: a concurrent Apply is retried, so no
// change is lost and the log always matches the stored preferences. A patch
// that changes nothing writes nothing and returns no entries. Apply does not
// validate p against topics; callers run preferences.Patch.Validate first.
func (s *Prefs) Apply(ctx context.Context, customerID string, p preferences.Patch, actor preferences.Actor, source string) (herald.Preferences, []preferences.ConsentEntry, error) {
	if err := checkID(customerID); err != nil {
		return herald.Preferences{}, nil, err
	}
	var (
		out     herald.Preferences
		entries []preferences.ConsentEntry
	)
	pk, ck := prefsKey(customerID), consentKey(customerID)
	txf := func(tx *redis.Tx) error {
		cur, err := getPrefs(ctx, tx, customerID)
		if err != nil {
			return err
		}
		next, changes := p.Merge(cur)
		out, entries = cur, nil
		if len(changes) == 0 {
			return nil
		}
		at := s.now().UTC()
		next.UpdatedAt = at
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		raw := make([]any, 0, len(changes))
		for _, c := range changes {
			e := preferences.ConsentEntry{ID: newID(at), At: at, CustomerID: customerID, Actor: actor, Source: source, Field: c.Field, From: c.From, To: c.To}
			eb, err := json.Marshal(e)
			if err != nil {
				return err
			}
			// Hand back exactly what Consent will read later.
			var back preferences.ConsentEntry
			_ = json.Unmarshal(eb, &back)
			entries = append(entries, back)
			raw = append(raw, eb)
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			pipe.Set(ctx, pk, b, 0)
			pipe.RPush(ctx, ck, raw...)
			pipe.LTrim(ctx, ck, -ConsentCap, -1)
			lines := make([]herald.TimelineEntry, len(entries))
			for i, e := range entries {
				lines[i] = ConsentLine(e)
			}
			s.timeline.AppendPipe(ctx, pipe, customerID, lines...)
			return nil
		})
		out = next
		return err
	}
	for range applyAttempts {
		err := s.rdb.Watch(ctx, txf, pk)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			var he *herald.Error
			if errors.As(err, &he) {
				return herald.Preferences{}, nil, err
			}
			return herald.Preferences{}, nil, herald.Temporary(err, "redis", 0)
		}
		return out, entries, nil
	}
	return herald.Preferences{}, nil, herald.Errorf(herald.ETemporary, "preferences of %s: too many concurrent changes, try again", customerID)
}

// ConsentCap bounds a customer's consent log. Each entry is a few hundred
// bytes, so the log stays under about 1 MB; the oldest entries go first, and
// erasure's entry is written after the log is emptied.
const ConsentCap = 2000

// ConsentLine is the timeline line of a consent entry: what changed, from
// what to what, by whom and from where, so the timeline answers "why did I
// (not) get this?" without the consent log.
func ConsentLine(c preferences.ConsentEntry) herald.TimelineEntry {
	return herald.TimelineEntry{
		At: c.At, Kind: herald.KindConsent, Ref: c.ID,
		Summary: fmt.Sprintf("%s changed from %v to %v by %s (%s)", c.Field, showValue(c.From), showValue(c.To), actorText(c.Actor), c.Source),
	}
}

func showValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "unset"
	case string, bool, float64, int:
		return fmt.Sprint(x)
	case herald.QuietHours:
		return x.Start + "–" + x.End
	case *herald.QuietHours:
		if x == nil {
			return "unset"
		}
		return x.Start + "–" + x.End
	case map[string]any:
		// Quiet hours, as read back from JSON.
		start, sok := x["start"].(string)
		end, eok := x["end"].(string)
		if sok && eok && len(x) == 2 {
			return start + "–" + end
		}
	}
	// Anything else (a channel order, an object) as compact JSON, not as
	// Go prints it.
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

func actorText(a preferences.Actor) string {
	if a.Name != "" {
		return a.Kind + " " + a.Name
	}
	return a.Kind
}

// newID returns a consent entry ID that sorts by time.
func newID(at time.Time) string {
	var r [6]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("cns_%013x%s", at.UnixMilli(), hex.EncodeToString(r[:]))
}

// Consent returns the customer's consent log, oldest first.
func (s *Prefs) Consent(ctx context.Context, customerID string) ([]preferences.ConsentEntry, error) {
	if err := checkID(customerID); err != nil {
		return nil, err
	}
	raw, err := s.rdb.LRange(ctx, consentKey(customerID), 0, -1).Result()
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	out := make([]preferences.ConsentEntry, 0, len(raw))
	for _, r := range raw {
		var e preferences.ConsentEntry
		if err := json.Unmarshal([]byte(r), &e); err != nil {
			return nil, &herald.Error{Code: herald.EInternal, Message: "consent log of " + customerID + " is corrupt", Err: err}
		}
		out = append(out, e)
	}
	return out, nil
}

// LastConsent returns the newest entry that changed field (e.g.
// TopicField("product-updates")), so a suppressed send can name the choice
// that stopped it. It reads the log backwards in pages.
func (s *Prefs) LastConsent(ctx context.Context, customerID, field string) (preferences.ConsentEntry, bool, error) {
	if err := checkID(customerID); err != nil {
		return preferences.ConsentEntry{}, false, err
	}
	const page = 64
	key := consentKey(customerID)
	for stop := int64(-1); ; stop -= page {
		raw, err := s.rdb.LRange(ctx, key, stop-page+1, stop).Result()
		if err != nil {
			return preferences.ConsentEntry{}, false, herald.Temporary(err, "redis", 0)
		}
		for i := len(raw) - 1; i >= 0; i-- {
			var e preferences.ConsentEntry
			if err := json.Unmarshal([]byte(raw[i]), &e); err != nil {
				return preferences.ConsentEntry{}, false, &herald.Error{Code: herald.EInternal, Message: "consent log of " + customerID + " is corrupt", Err: err}
			}
			if e.Field == field {
				return e, true, nil
			}
		}
		if len(raw) < page {
			return preferences.ConsentEntry{}, false, nil
		}
	}
}

type suppression struct {
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// Suppress puts address on channel ch's suppression list for good. Only a
// SHA-256 of the lowercased address is stored, so the list survives erasure
// without keeping the address.
func (s *Prefs) Suppress(ctx context.Context, ch herald.Channel, address, reason string) error {
	if strings.TrimSpace(address) == "" {
		return herald.Errorf(herald.EInvalid, "suppress: empty %s address", ch)
	}
	b, _ := json.Marshal(suppression{Reason: reason, At: s.now().UTC()})
	if err := s.rdb.Set(ctx, suppressKey(ch, address), b, 0).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// IsSuppressed reports whether address is on channel ch's suppression list.
func (s *Prefs) IsSuppressed(ctx context.Context, ch herald.Channel, address string) (bool, error) {
	if strings.TrimSpace(address) == "" {
		return false, nil
	}
	n, err := s.rdb.Exists(ctx, suppressKey(ch, address)).Result()
	if err != nil {
		return false, herald.Temporary(err, "redis", 0)
	}
	return n > 0, nil
}

// RecordSend counts a send in class for frequency caps and forgets sends
// older than MaxSendWindow. The send's time is its identity, so recording
// the same send twice (a retried task passing the same at) counts once.
func (s *Prefs) RecordSend(ctx context.Context, customerID, class string, at time.Time) error {
	if err := checkID(customerID); err != nil {
		return err
	}
	if class == "" {
		return herald.Errorf(herald.EInvalid, "record send: empty class")
	}
	_, err := s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		recordSendPipe(ctx, pipe, customerID, class, at, s.now())
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// recordSendPipe adds RecordSend's commands to pipe (now dates the horizon
// of sends forgotten).
func recordSendPipe(ctx context.Context, pipe redis.Pipeliner, customerID, class string, at, now time.Time) {
	key := sendsKey(customerID, class)
	horizon := now.Add(-MaxSendWindow)
	pipe.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: strconv.FormatInt(at.UnixNano(), 10)})
	pipe.ZRemRangeByScore(ctx, key, "-inf", "("+strconv.FormatInt(horizon.UnixMilli(), 10))
	pipe.PExpire(ctx, key, MaxSendWindow)
	pipe.SAdd(ctx, sendClassesKey(customerID), class)
	pipe.PExpire(ctx, sendClassesKey(customerID), MaxSendWindow)
}

// RecentSends returns the customer's sends in class at or after since,
// oldest first.
func (s *Prefs) RecentSends(ctx context.Context, customerID, class string, since time.Time) ([]time.Time, error) {
	if err := checkID(customerID); err != nil {
		return nil, err
	}
	members, err := s.rdb.ZRangeByScore(ctx, sendsKey(customerID, class), &redis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	out := make([]time.Time, 0, len(members))
	for _, m := range members {
		ns, err := strconv.ParseInt(m, 10, 64)
		if err != nil {
			continue
		}
		if t := time.Unix(0, ns).UTC(); !t.Before(since) {
			out = append(out, t)
		}
	}
	return out, nil
}

// Erase forgets the customer: preferences and send counters go, each
// address is suppressed (hash only, reason "erasure") so it is never written
// to again, and the consent log is replaced by one "erasure" entry that
// holds no personal data but proves when and by whom it happened.
// Suppression comes first: if Erase fails halfway, the address is already
// safe and a retry finishes the job.
func (s *Prefs) Erase(ctx context.Context, customerID string, addresses map[herald.Channel]string, actor preferences.Actor) error {
	if err := checkID(customerID); err != nil {
		return err
	}
	for ch, addr := range addresses {
		if strings.TrimSpace(addr) == "" {
			continue
		}
		if err := s.Suppress(ctx, ch, addr, preferences.SourceErasure); err != nil {
			return err
		}
	}
	classes, err := s.rdb.SMembers(ctx, sendClassesKey(customerID)).Result()
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	at := s.now().UTC()
	entry, _ := json.Marshal(preferences.ConsentEntry{
		ID: newID(at), At: at, CustomerID: customerID, Actor: actor,
		Source: preferences.SourceErasure, Field: "*", To: "erased",
	})
	keys := []string{prefsKey(customerID), consentKey(customerID), sendClassesKey(customerID), Key(customerID, "timeline"), Key(customerID, "timeline", "acks")}
	for _, c := range classes {
		keys = append(keys, sendsKey(customerID, c))
	}
	_, err = s.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.Del(ctx, keys...)
		pipe.RPush(ctx, consentKey(customerID), entry)
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// PrefsKey is the Redis key of a customer's preferences, for readers that
// fetch them together with other keys in one round trip.
func PrefsKey(customerID string) string { return prefsKey(customerID) }

// SendsKey is the Redis key of a customer's sends in a capped class.
func SendsKey(customerID, class string) string { return sendsKey(customerID, class) }

// SuppressKey is the Redis key of an address's suppression record.
func SuppressKey(ch herald.Channel, address string) string { return suppressKey(ch, address) }
