package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
)

// Journey keys. A customer's journeys share the customer's hash tag; the
// waiting index is global: it is the schedule of follow-ups (see ClaimFollowUps).
const (
	waitingKey = "herald:journeys:waiting" // zset "<customer>|<journey>" scored by wake time (WaitScore)
	journeyTTL = 90 * 24 * time.Hour       // finished journeys stay readable this long
	// runningKey maps each running journey to its customer (hash journey →
	// customer); an ended journey's customer is under journeyOwnerKey for
	// as long as its state. A journey's message ("<journey>.<step>.<n>")
	// is found through them (MessageOwner): it needs no index of its own.
	runningKey = "herald:journeys:customers"
	// journeyLock names the claim that serialises one customer's journey
	// changes across workers.
	journeyLock = "journeys"
)

// ErrBusy is returned when another worker holds the customer's journey lock.
var ErrBusy = errors.New("customer's journeys are locked by another worker")

// journeyOwnerKey holds the customer of an ended journey, for as long as
// its state (journeyTTL, which is also its messages' LedgerTTL).
func journeyOwnerKey(journeyID string) string { return "herald:journey:" + journeyID }

func journeyKey(customerID, journeyID string) string {
	return Key(customerID, "journey", journeyID)
}

// journeysKey is one hash per customer: field "a:<workflow>" holds the
// running journey's ID, or "" once it has ended: either way it says the
// workflow was entered (for entry: once). Older data also marks that with
// "e:<workflow>" and deletes "a:" at the end. One key rather than two, and
// one field a workflow, keep a waiting journey small.
func journeysKey(customerID string) string { return Key(customerID, "journeys") }

// seenKey is one hash per customer: field <event> holds the latest event
// of that name that some workflow exits, waits or reaches its goal on (see
// JourneyBatch.Seen). It expires SeenTTL after its last write: it only
// has to outlast how late a start event can reach a worker.
func seenKey(customerID string) string { return Key(customerID, "seen") }

// SeenTTL is how long a customer's seen events are kept after the last.
const SeenTTL = 7 * 24 * time.Hour

// sourceKey holds a workflow version's file, so a journey can go on after
// the file changed.
func sourceKey(workflowID, version string) string {
	return "herald:workflow:" + workflowID + ":" + version
}

// LockCustomer takes the customer's journey lock for ttl at most: journey
// changes happen under it. It returns ErrBusy when another worker holds it;
// release gives it back (only if it is still ours).
func (s *Store) LockCustomer(ctx context.Context, customerID string, ttl time.Duration) (release func(), err error) {
	release, ok, err := s.Claim(ctx, customerID, journeyLock, ttl)
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	if !ok {
		return nil, ErrBusy
	}
	return release, nil
}

// JourneyBatch is what a journey handler starts from: the customer, their
// preferences and journey index, read under the customer's journey lock.
type JourneyBatch struct {
	Customer herald.Customer
	Prefs    herald.Preferences
	// Active maps a workflow to its running journey's ID.
	Active map[string]string
	// Ever holds the workflows the customer ever started.
	Ever map[string]bool
	// Seen holds, for each event some workflow exits, waits or reaches
	// its goal on, the latest one the workers handled in the last SeenTTL
	// (see SeenEventPipe): a start event handled after such an event that
	// happened later must not start the journey the exit ended, nor wait
	// for what already happened, nor miss its goal.
	Seen map[string]SeenEvent
	// Release gives the journey lock back.
	Release func()

	// The state of the journey BeginJourney was asked for, read under the
	// lock in the same round trip (see Journey).
	customerID, journeyID string
	journey               *redis.StringCmd
}

// Journey returns the state of the journey BeginJourney read: ok is false
// when it does not exist; an error is temporary when Redis failed, else the
// state is corrupt.
func (jb *JourneyBatch) Journey() (st workflows.State, ok bool, err error) {
	if jb.journey == nil {
		return st, false, errors.New("redisstore: the batch read no journey (use BeginJourney)")
	}
	b, err := jb.journey.Bytes()
	if errors.Is(err, redis.Nil) {
		return st, false, nil
	}
	if err != nil {
		return st, false, herald.Temporary(err, "redis", 0)
	}
	if st, err = readJourney(jb.customerID, jb.journeyID, b); err != nil {
		return st, false, err
	}
	return st, true, nil
}

// BeginJourneys takes the customer's journey lock (as LockCustomer does) and
// reads the customer, their preferences and journey index in the same round
// trip. Errors: ENotFound for an unknown customer, ErrBusy when another
// worker holds the lock.
func (s *Store) BeginJourneys(ctx context.Context, customerID string, ttl time.Duration) (*JourneyBatch, error) {
	return s.begin(ctx, customerID, "", ttl)
}

// BeginJourney is BeginJourneys for one journey's handler (a follow-up):
// the journey's state is read in the same round trip (JourneyBatch.Journey).
func (s *Store) BeginJourney(ctx context.Context, customerID, journeyID string, ttl time.Duration) (*JourneyBatch, error) {
	return s.begin(ctx, customerID, journeyID, ttl)
}

func (s *Store) begin(ctx context.Context, customerID, journeyID string, ttl time.Duration) (*JourneyBatch, error) {
	token := NewID("")
	lk := Key(customerID, "claim", journeyLock)
	var lock *redis.BoolCmd
	var cust, prefs, journey *redis.StringCmd
	var idx, seen *redis.MapStringStringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		lock = p.SetNX(ctx, lk, token, ttl)
		cust = p.Get(ctx, Key(customerID, "customer"))
		prefs = p.Get(ctx, PrefsKey(customerID))
		idx = p.HGetAll(ctx, journeysKey(customerID))
		seen = p.HGetAll(ctx, seenKey(customerID))
		if journeyID != "" {
			// After the lock in the same connection's order: read under it.
			journey = p.Get(ctx, journeyKey(customerID, journeyID))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, herald.Temporary(err, "redis", 0)
	}
	jb := &JourneyBatch{Release: func() {}, customerID: customerID, journeyID: journeyID, journey: journey}
	if lock.Val() {
		jb.Release = func() { _ = releaseScript.Run(context.WithoutCancel(ctx), s.rdb, []string{lk}, token).Err() }
	}
	b, err := cust.Bytes()
	if errors.Is(err, redis.Nil) {
		jb.Release()
		return nil, herald.Errorf(herald.ENotFound, "customer %q not found", customerID)
	}
	if err == nil {
		err = json.Unmarshal(b, &jb.Customer)
	}
	if err != nil {
		jb.Release()
		return nil, herald.Temporary(err, "redis", 0)
	}
	if !lock.Val() {
		return nil, ErrBusy
	}
	if b, err := prefs.Bytes(); err == nil {
		if err := json.Unmarshal(b, &jb.Prefs); err != nil {
			jb.Release()
			return nil, &herald.Error{Code: herald.EInternal, Message: "preferences of " + customerID + " are corrupt", Err: err}
		}
	}
	jb.Active, jb.Ever = splitIndex(idx.Val())
	jb.Seen = seenEvents(seen.Val())
	return jb, nil
}

// SeenEvent is an event kept for a customer: when it happened, its ID and,
// for an event a wait waits for, its data as the timeline has it (secret
// values sealed, named by Sealed).
type SeenEvent struct {
	At     time.Time
	ID     string
	Data   map[string]any
	Sealed []string
}

// storedSeen is a SeenEvent as a field of the customer's seen key holds it.
type storedSeen struct {
	At     int64          `json:"at"` // Unix milliseconds
	ID     string         `json:"id,omitempty"`
	Data   map[string]any `json:"data,omitempty"`
	Sealed []string       `json:"sealed,omitempty"`
}

// seenEvents reads a customer's seen events; a field that does not decode
// is left out.
func seenEvents(all map[string]string) map[string]SeenEvent {
	var out map[string]SeenEvent
	for k, v := range all {
		var st storedSeen
		if json.Unmarshal([]byte(v), &st) != nil || st.At == 0 {
			continue
		}
		if out == nil {
			out = map[string]SeenEvent{}
		}
		out[k] = SeenEvent{At: time.UnixMilli(st.At).UTC(), ID: st.ID, Data: st.Data, Sealed: st.Sealed}
	}
	return out
}

// SeenEventPipe keeps in p the event named name as the latest of its name
// (JourneyBatch.Seen). The caller holds the customer's journey lock and
// only moves the time forward.
func SeenEventPipe(ctx context.Context, p redis.Pipeliner, customerID, name string, se SeenEvent) {
	b, err := json.Marshal(storedSeen{At: se.At.UnixMilli(), ID: se.ID, Data: se.Data, Sealed: se.Sealed})
	if err != nil {
		return // event data is JSON already
	}
	p.HSet(ctx, seenKey(customerID), name, b)
	p.Expire(ctx, seenKey(customerID), SeenTTL)
}

// JourneyIndex reads which journeys run (workflow → journey ID) and which
// workflows the customer ever started.
func (s *Store) JourneyIndex(ctx context.Context, customerID string) (active map[string]string, ever map[string]bool, err error) {
	all, err := s.rdb.HGetAll(ctx, journeysKey(customerID)).Result()
	if err != nil {
		return nil, nil, herald.Temporary(err, "redis", 0)
	}
	active, ever = splitIndex(all)
	return active, ever, nil
}

func splitIndex(all map[string]string) (active map[string]string, ever map[string]bool) {
	active, ever = map[string]string{}, map[string]bool{}
	for k, v := range all {
		switch {
		case strings.HasPrefix(k, "a:"):
			if v != "" {
				active[k[2:]] = v
			}
			ever[k[2:]] = true
		case strings.HasPrefix(k, "e:"):
			ever[k[2:]] = true
		}
	}
	return active, ever
}

// Journey returns a journey's state; ok is false when there is none. A
// state that does not decode is a non-temporary error.
func (s *Store) Journey(ctx context.Context, customerID, journeyID string) (st workflows.State, ok bool, err error) {
	b, err := s.rdb.Get(ctx, journeyKey(customerID, journeyID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return st, false, nil
	}
	if err != nil {
		return st, false, herald.Temporary(err, "redis", 0)
	}
	if st, err = readJourney(customerID, journeyID, b); err != nil {
		return st, false, err
	}
	return st, true, nil
}

// decodeJourney decodes a stored journey state; one that does not decode
// is a non-temporary error.
func readJourney(customerID, journeyID string, b []byte) (workflows.State, error) {
	st, err := decodeJourney(b, customerID, journeyID)
	if err != nil {
		return st, &herald.Error{Code: herald.EInternal, Message: "journey " + journeyID + " is corrupt", Err: err}
	}
	return st, nil
}

// SaveJourney writes the state, keeps the running-journey and waiting
// indexes in step with it and appends the timeline entries, in one round
// trip. The waiting index lives on another Cluster slot, so this is a
// pipeline, not a transaction: the waker reconciles the index with the
// state if a crash splits them.
func (s *Store) SaveJourney(ctx context.Context, st workflows.State, entries ...herald.TimelineEntry) error {
	return s.SaveJourneyWith(ctx, st, entries, nil)
}

// SaveJourneyWith is SaveJourney with more writes in the same round trip
// (the journey's counters: CountJourneyPipe, GoalJourneyPipe).
func (s *Store) SaveJourneyWith(ctx context.Context, st workflows.State, entries []herald.TimelineEntry, extra []func(redis.Pipeliner)) error {
	b, err := encodeJourney(st)
	if err != nil {
		return &herald.Error{Code: herald.EInternal, Message: "journey " + st.JourneyID + " does not encode", Err: err}
	}
	member := st.CustomerID + "|" + st.JourneyID // as DropWaiting and ClaimFollowUps read it
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		if st.Status == workflows.StatusActive {
			p.Set(ctx, journeyKey(st.CustomerID, st.JourneyID), b, 0)
			// A running journey's field says its workflow was entered.
			p.HSet(ctx, journeysKey(st.CustomerID), "a:"+st.WorkflowID, st.JourneyID)
			p.HSet(ctx, runningKey, st.JourneyID, st.CustomerID)
		} else {
			p.Set(ctx, journeyKey(st.CustomerID, st.JourneyID), b, journeyTTL)
			// Emptied, the field still says the workflow was entered.
			p.HSet(ctx, journeysKey(st.CustomerID), "a:"+st.WorkflowID, "")
			p.HDel(ctx, runningKey, st.JourneyID)
			p.Set(ctx, journeyOwnerKey(st.JourneyID), st.CustomerID, journeyTTL)
		}
		if st.Waiting() {
			p.ZAdd(ctx, waitingKey, redis.Z{Score: WaitScore(st.WakeAt), Member: member})
		} else {
			p.ZRem(ctx, waitingKey, member)
		}
		if len(entries) > 0 {
			s.AppendPipe(ctx, p, st.CustomerID, entries...)
		}
		for _, f := range extra {
			f(p)
		}
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// AppendEntriesWith is AppendEntries with more writes in the same round
// trip.
func (s *Store) AppendEntriesWith(ctx context.Context, customerID string, entries []herald.TimelineEntry, extra []func(redis.Pipeliner)) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.AppendPipe(ctx, p, customerID, entries...)
		for _, f := range extra {
			f(p)
		}
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// AppendEntries adds timeline entries in one round trip (newest last in
// entries, so they read newest first); unlike Append, not a transaction.
func (s *Store) AppendEntries(ctx context.Context, customerID string, entries ...herald.TimelineEntry) error {
	return s.AppendEntriesWith(ctx, customerID, entries, nil)
}

// Journeys returns the customer's journeys, running and recent (export).
func (s *Store) Journeys(ctx context.Context, customerID string) ([]workflows.State, error) {
	out := []workflows.State{}
	if _, ok := s.rdb.(*redis.ClusterClient); ok {
		// One slot holds the customer's keys; HGETALL of the active index
		// is enough to find running journeys on a cluster.
		active, _, err := s.JourneyIndex(ctx, customerID)
		if err != nil {
			return nil, err
		}
		for _, jid := range active {
			if st, ok, err := s.Journey(ctx, customerID, jid); err == nil && ok && st.JourneyID != "" {
				out = append(out, st)
			}
		}
		return out, nil
	}
	prefix := journeyKey(customerID, "")
	it := s.rdb.Scan(ctx, 0, prefix+"*", 200).Iterator()
	for it.Next(ctx) {
		if b, err := s.rdb.Get(ctx, it.Val()).Bytes(); err == nil {
			if st, err := decodeJourney(b, customerID, strings.TrimPrefix(it.Val(), prefix)); err == nil {
				out = append(out, st)
			}
		}
	}
	return out, it.Err()
}

// SaveWorkflowSource stores a workflow version's file unless it is there:
// a version's source never changes.
func (s *Store) SaveWorkflowSource(ctx context.Context, workflowID, version string, src []byte) error {
	if err := s.rdb.SetNX(ctx, sourceKey(workflowID, version), src, 0).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// WorkflowSource returns a stored workflow version's file; ok is false when
// it is not stored.
func (s *Store) WorkflowSource(ctx context.Context, workflowID, version string) (src []byte, ok bool, err error) {
	src, err = s.rdb.Get(ctx, sourceKey(workflowID, version)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, herald.Temporary(err, "redis", 0)
	}
	return src, true, nil
}

// Waiting names a journey in the waiting index.
type Waiting struct {
	CustomerID string
	JourneyID  string
}

// DropWaiting removes a journey from the waiting index (one that no longer
// waits or cannot go on).
func (s *Store) DropWaiting(ctx context.Context, customerID, journeyID string) error {
	return s.rdb.ZRem(ctx, waitingKey, customerID+"|"+journeyID).Err()
}
