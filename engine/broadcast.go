package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
)

// Broadcast task types, as they read in the dashboard.
const (
	TypeBroadcast        = wire.TypeBroadcast
	TypeBroadcastJourney = wire.TypeBroadcastJourney
)

// MaxBroadcastIDs bounds an audience given as customer IDs.
const MaxBroadcastIDs = 100_000

// broadcastPage is how many customers the fan-out reads and queues at a
// time; its cursor moves once per page.
const broadcastPage = 500

// enqueueWorkers is how many messages of a page are queued at once.
const enqueueWorkers = 64

// The broadcast's request, progress and counts (see wire).
type (
	Broadcast     = wire.Broadcast
	Audience      = wire.Audience
	BroadcastInfo = wire.BroadcastInfo
	Counts        = wire.Counts
)

var localTimeRe = regexp.MustCompile(`^(?:(\d{4}-\d{2}-\d{2})[T ])?([01]\d|2[0-3]):([0-5]\d)$`)

// localTime is a parsed local_time.
type localTime struct {
	date         time.Time // zero: the next such hour
	hour, minute int
}

func parseLocalTime(s string) (localTime, error) {
	m := localTimeRe.FindStringSubmatch(s)
	if m == nil {
		return localTime{}, fmt.Errorf("local_time %q: want HH:MM (such as 09:00) or YYYY-MM-DD HH:MM", s)
	}
	var lt localTime
	if m[1] != "" {
		d, err := time.Parse("2006-01-02", m[1])
		if err != nil {
			return lt, fmt.Errorf("local_time %q: %q is not a date", s, m[1])
		}
		lt.date = d
	}
	lt.hour, _ = strconv.Atoi(m[2])
	lt.minute, _ = strconv.Atoi(m[3])
	return lt, nil
}

// at is when a customer in loc receives the broadcast, given it was
// created at created; never before now.
func (lt localTime) at(loc *time.Location, created, now time.Time) time.Time {
	var t time.Time
	if lt.date.IsZero() {
		c := created.In(loc)
		t = time.Date(c.Year(), c.Month(), c.Day(), lt.hour, lt.minute, 0, 0, loc)
		if t.Before(c) {
			t = time.Date(c.Year(), c.Month(), c.Day()+1, lt.hour, lt.minute, 0, 0, loc)
		}
	} else {
		t = time.Date(lt.date.Year(), lt.date.Month(), lt.date.Day(), lt.hour, lt.minute, 0, 0, loc)
	}
	if t.Before(now) {
		return now
	}
	return t
}

// BroadcastContent is what a broadcast is checked against.
type BroadcastContent struct {
	Templates *templates.Set
	Workflows *workflows.Set // nil: none
	Topics    map[string]herald.Topic
}

// validateBroadcast checks a broadcast's request against the engine's
// content and topics.
func (e *Engine) validateBroadcast(b Broadcast) (*workflows.Audience, error) {
	return CheckBroadcast(b, BroadcastContent{Templates: e.Templates(), Workflows: e.Workflows(), Topics: e.opt.Policy.Topics})
}

// CheckBroadcast checks a broadcast's request against content and topics
// (what `herald validate` and the workers do), saying every problem at
// once, and returns its compiled filter.
func CheckBroadcast(b Broadcast, c BroadcastContent) (*workflows.Audience, error) {
	var probs []string
	if err := redisstore.ValidBroadcastID(b.ID); err != nil {
		probs = append(probs, herald.ErrorMessage(err))
	}
	switch {
	case b.Template == "" && b.Workflow == "":
		probs = append(probs, "template or workflow: one is required")
	case b.Template != "" && b.Workflow != "":
		probs = append(probs, "template and workflow: give one, not both")
	case b.Template != "":
		if c.Templates == nil || !c.Templates.Has(b.Template) {
			probs = append(probs, fmt.Sprintf("template: unknown template %q", b.Template))
		}
		if b.Topic == "" {
			probs = append(probs, "topic: required with a template")
		}
	case b.Workflow != "":
		var w *workflows.Workflow
		if c.Workflows != nil {
			w, _ = c.Workflows.Get(b.Workflow)
		}
		switch {
		case w == nil:
			probs = append(probs, fmt.Sprintf("workflow: unknown workflow %q", b.Workflow))
		case b.Topic != "" && b.Topic != w.Topic:
			probs = append(probs, fmt.Sprintf("topic: workflow %s sends on topic %q, not %q (leave topic out)", w.ID, w.Topic, b.Topic))
		}
		// The journeys start with the broadcast's data, as an event's
		// would: data their sends cannot render is refused here.
		if w != nil && c.Templates != nil {
			for _, st := range workflowStarts(w) {
				if err := service.MissingStartData(st, c.Templates.DataKeys(st.Template, st.Channels...), b.Data); err != nil {
					probs = append(probs, herald.ErrorMessage(err))
				}
			}
		}
		if len(b.Channels) > 0 || b.Mode != "" {
			probs = append(probs, "channels and mode: the workflow's steps choose them")
		}
	}
	if b.Topic != "" {
		if _, ok := c.Topics[b.Topic]; !ok {
			probs = append(probs, fmt.Sprintf("topic: unknown topic %q", b.Topic))
		}
	}
	for _, c := range b.Channels {
		if !c.Valid() {
			probs = append(probs, fmt.Sprintf("channels: unknown channel %q", c))
		}
	}
	if b.Mode != "" && b.Mode != "first" && b.Mode != "all" {
		probs = append(probs, fmt.Sprintf("mode %q: want first or all", b.Mode))
	}
	if b.SendAt != nil && b.LocalTime != "" {
		probs = append(probs, "send_at and local_time: give one, not both")
	}
	if b.LocalTime != "" {
		if _, err := parseLocalTime(b.LocalTime); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if b.Audience.Filter == "" && len(b.Audience.CustomerIDs) == 0 {
		probs = append(probs, `audience: give a filter, customer_ids or both (everyone: "filter": "true")`)
	}
	if n := len(b.Audience.CustomerIDs); n > MaxBroadcastIDs {
		probs = append(probs, fmt.Sprintf("audience.customer_ids: %d IDs, at most %d", n, MaxBroadcastIDs))
	} else {
		for i, id := range b.Audience.CustomerIDs {
			if err := redisstore.ValidID(id); err != nil {
				probs = append(probs, fmt.Sprintf("audience.customer_ids[%d]: %s", i, herald.ErrorMessage(err)))
				break
			}
		}
	}
	aud, err := workflows.CompileAudience(b.Audience.Filter)
	if err != nil {
		probs = append(probs, "audience."+herald.ErrorMessage(err))
	}
	if len(probs) > 0 {
		return nil, herald.Errorf(herald.EInvalid, "%s", strings.Join(probs, "; "))
	}
	return aud, nil
}

// fingerprint identifies a broadcast's request, so a repeat is recognised
// and another request under the same ID refused.
func fingerprint(b Broadcast) string {
	b.DryRun = false
	if b.SendAt != nil {
		t := b.SendAt.UTC()
		b.SendAt = &t
	}
	raw, _ := json.Marshal(b)
	var v any
	_ = json.Unmarshal(raw, &v) // maps re-encode with sorted keys
	canon, _ := json.Marshal(v)
	h := sha256.Sum256(canon)
	return hex.EncodeToString(h[:])
}

// CreateBroadcast validates a broadcast, fixes its audience and schedules
// its fan-out. The same request again returns the same broadcast (created
// false); another request under the same ID is an EConflict. A template
// that the broadcast's data cannot fill is an EInvalid naming the template,
// the locale and what is missing, as is any other problem with the
// request. A dry run returns the audience's size and a sample and stores
// nothing.
func (e *Engine) CreateBroadcast(ctx context.Context, b Broadcast, actor string) (BroadcastInfo, bool, error) {
	aud, err := e.validateBroadcast(b)
	if err != nil {
		return BroadcastInfo{}, false, err
	}
	fp := fingerprint(b)
	if !b.DryRun {
		if rec, ok, err := e.st.Broadcast(ctx, b.ID); err != nil {
			return BroadcastInfo{}, false, err
		} else if ok {
			return e.repeat(ctx, rec, fp)
		}
	}
	now := e.now().UTC()
	ids, notes, err := e.evaluate(ctx, aud, b.Audience.CustomerIDs)
	if err != nil {
		return BroadcastInfo{}, false, err
	}
	first := ""
	if len(ids) > 0 {
		first = ids[0]
	}
	if err := e.checkBroadcastData(ctx, b, first); err != nil {
		return BroadcastInfo{}, false, err
	}
	if b.DryRun {
		info := BroadcastInfo{Broadcast: b, Status: "dry_run", Notes: notes, Counts: Counts{Matched: int64(len(ids)), Sent: map[string]int64{}, Suppressed: map[string]int64{}}}
		info.Sample = ids[:min(10, len(ids))]
		return info, false, nil
	}
	st := redisstore.BroadcastRequest{Broadcast: b, Actor: actor, StartAt: now}
	switch {
	case b.SendAt != nil && b.SendAt.After(now):
		st.StartAt = b.SendAt.UTC()
	case b.SendAt != nil:
		st.Notes = append(st.Notes, fmt.Sprintf("send_at %s is in the past: sending now", b.SendAt.UTC().Format(time.RFC3339)))
	}
	if lt, _ := parseLocalTime(b.LocalTime); b.LocalTime != "" && !lt.date.IsZero() {
		if earliest := time.Date(lt.date.Year(), lt.date.Month(), lt.date.Day()+1, lt.hour, lt.minute, 0, 0, time.UTC).Add(-26 * time.Hour); earliest.Before(now) {
			st.Notes = append(st.Notes, fmt.Sprintf("local_time %s has passed in some zones: customers there receive it now", b.LocalTime))
		}
	}
	st.Notes = append(st.Notes, notes...)
	spec, _ := json.Marshal(st)
	status := redisstore.BroadcastScheduled
	if len(ids) == 0 {
		status = redisstore.BroadcastDone
		st.Notes = append(st.Notes, "the audience is empty: nothing to send")
		spec, _ = json.Marshal(st)
	} else if err := e.scheduleFanOut(ctx, b.ID, st.StartAt); err != nil {
		// Queued before the record exists, so a record never lacks its
		// fan-out; a fan-out taken before the record is written waits
		// for it (recordGrace), one whose creation stopped does nothing.
		return BroadcastInfo{}, false, err
	} else if e.recordFault != nil {
		e.recordFault(b.ID)
	}
	rec, created, err := e.st.CreateBroadcast(ctx, b.ID, fp, spec, status, ids)
	if err != nil {
		return BroadcastInfo{}, false, err
	}
	if !created {
		return e.repeat(ctx, rec, fp)
	}
	e.log.Info("broadcast created", "broadcast", b.ID, "matched", len(ids), "start", st.StartAt, "by", actor)
	return rec.Info(), true, nil
}

// repeat answers a POST of a broadcast that exists: the same request gets
// it (its fan-out queued again in case the first request stopped between
// record and queue), another an EConflict.
func (e *Engine) repeat(ctx context.Context, rec redisstore.BroadcastRecord, fp string) (BroadcastInfo, bool, error) {
	if rec.Fingerprint != fp {
		return BroadcastInfo{}, false, herald.Errorf(herald.EConflict, "broadcast %q exists with another request; choose another id", rec.ID)
	}
	info := rec.Info()
	if err := e.st.ListBroadcast(ctx, rec.ID, rec.CreatedAt); err != nil {
		return info, false, err
	}
	if rec.Status == redisstore.BroadcastScheduled || rec.Status == redisstore.BroadcastRunning {
		start := time.Time{}
		if info.StartAt != nil {
			start = *info.StartAt
		}
		if err := e.scheduleFanOut(ctx, rec.ID, start); err != nil {
			return info, false, err
		}
	}
	return info, false, nil
}

func (e *Engine) scheduleFanOut(ctx context.Context, id string, at time.Time) error {
	opts := []asynq.Option{asynq.TaskID("b:" + id), asynq.Queue(wire.QueueBulk), asynq.Timeout(30 * time.Minute)}
	if at.After(e.now()) {
		opts = append(opts, asynq.ProcessAt(at))
	}
	return e.enqueue(ctx, asynq.NewTask(TypeBroadcast, wire.Encode(broadcastTask{ID: id, Queued: e.now().UnixMilli()})), opts...)
}

type broadcastTask struct {
	ID string `json:"broadcast"`
	// Queued is when the fan-out was queued (unix ms; 0 in older tasks).
	Queued int64 `json:"queued,omitempty"`
}

// recordGrace is how long a fan-out waits for its broadcast's record,
// which its creation writes just after queueing it: a worker can take the
// task in between. A record still missing after that was never written
// (the creation stopped), and the fan-out does nothing.
const recordGrace = 30 * time.Second

// profileEnv is what an audience filter sees of a customer.
func (e *Engine) profileEnv(p redisstore.Profile) map[string]any {
	topics := make(map[string]bool, len(e.opt.Policy.Topics))
	for name, t := range e.opt.Policy.Topics {
		topics[name] = preferences.TopicOn(t, p.Prefs)
	}
	channels := make(map[herald.Channel]bool, len(herald.Channels))
	for _, ch := range herald.Channels {
		channels[ch] = p.Prefs.ChannelOn(ch)
	}
	return workflows.CustomerEnv(p.Customer, p.Prefs.Paused, topics, channels)
}

// evaluate fixes an audience: the customers (from ids, or every indexed
// customer) the filter selects, in order, without repeats. notes say what
// was left out and why.
func (e *Engine) evaluate(ctx context.Context, aud *workflows.Audience, ids []string) ([]string, []string, error) {
	var out, notes []string
	failed, firstErr, missing := 0, "", 0
	take := func(page []string) error {
		profiles, gone, err := e.st.Profiles(ctx, page)
		if err != nil {
			return err
		}
		missing += len(gone)
		for _, p := range profiles {
			ok, err := aud.Match(e.profileEnv(p))
			if err != nil {
				if failed++; firstErr == "" {
					firstErr = err.Error()
				}
			}
			if ok {
				out = append(out, p.Customer.ID)
			}
		}
		return nil
	}
	if len(ids) > 0 {
		seen := make(map[string]bool, len(ids))
		uniq := make([]string, 0, len(ids))
		for _, id := range ids {
			if !seen[id] {
				seen[id] = true
				uniq = append(uniq, id)
			}
		}
		for start := 0; start < len(uniq); start += 1000 {
			if err := take(uniq[start:min(start+1000, len(uniq))]); err != nil {
				return nil, nil, err
			}
		}
		if missing > 0 {
			notes = append(notes, fmt.Sprintf("%d of the customer IDs are not customers: left out", missing))
		}
	} else {
		if err := e.st.EnsureCustomerIndex(ctx); err != nil {
			return nil, nil, err
		}
		for after := ""; ; {
			page, err := e.st.CustomerIDs(ctx, after, 1000)
			if err != nil {
				return nil, nil, err
			}
			if len(page) == 0 {
				break
			}
			if err := take(page); err != nil {
				return nil, nil, err
			}
			after = page[len(page)-1]
		}
	}
	if failed > 0 {
		notes = append(notes, fmt.Sprintf("the filter failed on %d customers, left out (first: %s)", failed, firstErr))
	}
	return out, notes, nil
}

// Broadcast returns a broadcast and its counts.
func (e *Engine) Broadcast(ctx context.Context, id string) (BroadcastInfo, error) {
	return e.st.BroadcastInfo(ctx, id)
}

// Broadcasts lists broadcasts, newest first.
func (e *Engine) Broadcasts(ctx context.Context, offset, limit int) ([]BroadcastInfo, error) {
	return e.st.BroadcastInfos(ctx, offset, limit)
}

// BroadcastView returns a broadcast, its counts and what waits for a later
// local time.
func (e *Engine) BroadcastView(ctx context.Context, id string) (BroadcastView, error) {
	return e.st.BroadcastView(ctx, id)
}

// BroadcastView is a broadcast as the API shows it (see redisstore).
type BroadcastView = redisstore.BroadcastView

// CancelBroadcast stops every send of the broadcast not yet made: the
// fan-out stops, messages waiting in a queue (for a customer's local hour,
// quiet hours, a retry) are deleted and counted as cancelled at once, and
// one that started meanwhile does nothing and counts itself.
func (e *Engine) CancelBroadcast(ctx context.Context, id string) (BroadcastInfo, error) {
	info, err := e.svc.CancelBroadcast(ctx, id)
	if err == nil {
		e.log.Info("broadcast cancelled", "broadcast", id, "status", info.Status, "cancelled", info.Counts.Cancelled)
	}
	return info, err
}

// BroadcastMessageID is the message ID of a broadcast's message to one
// customer: the same on every run of the fan-out, so the delivery ledger
// makes a resumed or repeated fan-out send nothing twice.
func BroadcastMessageID(broadcast, customer string) string {
	return service.BroadcastMessageID(broadcast, customer)
}

// broadcastOf returns the broadcast a message belongs to ("" for none).
// Broadcast IDs hold no "_", so the first one after the prefix ends it.
func broadcastOf(messageID string) string {
	rest, ok := strings.CutPrefix(messageID, "b_")
	if !ok {
		return ""
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok {
		return ""
	}
	return id
}

// handleBroadcast is the fan-out: it walks the frozen audience a page at a
// time, queueing each customer's message with its deterministic ID, and
// moves its cursor in Redis after each page. Killed at any moment, it
// resumes at the cursor; the page it was queueing is checked against the
// customers' timelines, so no message runs twice and no count is doubled.
func (e *Engine) handleBroadcast(ctx context.Context, t *asynq.Task) error {
	var p broadcastTask
	if err := wire.Decode(t.Payload(), &p); err != nil {
		return skip(err)
	}
	if err := redisstore.ValidBroadcastID(p.ID); err != nil {
		return skip(err)
	}
	rec, ok, err := e.st.Broadcast(ctx, p.ID)
	if err != nil {
		return err
	}
	if !ok {
		if p.Queued > 0 && e.now().Sub(time.UnixMilli(p.Queued)) < recordGrace {
			return &waitError{reason: "broadcast " + p.ID + ": its record is not written yet", after: time.Second}
		}
		return nil // no record: its creation stopped before writing it
	}
	status, err := e.st.StartBroadcast(ctx, p.ID)
	if err != nil {
		return err
	}
	if status == redisstore.BroadcastCancelled {
		// Cancelled before this run: sweep again, in case the cancel's
		// own sweep stopped midway.
		_, err = service.SweepBroadcast(ctx, e.insp, e.st, p.ID)
		return err
	}
	if status != redisstore.BroadcastRunning {
		return nil
	}
	var st redisstore.BroadcastRequest
	if err := json.Unmarshal(rec.Spec, &st); err != nil {
		return skip(fmt.Errorf("broadcast %s: corrupt record: %w", p.ID, err))
	}
	lt, _ := parseLocalTime(st.Broadcast.LocalTime)
	var run atomic.Int64 // messages this run queued
	for cursor, inflight := rec.Cursor, rec.Inflight; ; {
		if err := ctx.Err(); err != nil {
			return err
		}
		if status, err := e.st.BroadcastStatus(ctx, p.ID); err != nil || status != redisstore.BroadcastRunning {
			if status == redisstore.BroadcastCancelled {
				// Cancelled: the rest of the audience is dropped, and what
				// the page under way queued after the cancel's own sweep
				// is deleted too.
				_, err = service.SweepBroadcast(ctx, e.insp, e.st, p.ID)
			}
			return err
		}
		ids, err := e.st.AudiencePage(ctx, p.ID, cursor, broadcastPage)
		if err != nil {
			return err
		}
		if len(ids) == 0 {
			e.log.Info("broadcast fully queued", "broadcast", p.ID, "customers", cursor)
			return e.st.FinishBroadcast(ctx, p.ID)
		}
		// A page the walk was queueing when it stopped: some of its
		// messages may have run and be gone from the queue, so the ones
		// queued again run only if they did not.
		once := inflight == cursor
		if err := e.st.BeginPage(ctx, p.ID, cursor, cursor+int64(len(ids))); err != nil {
			return err
		}
		profiles, gone, err := e.st.Profiles(ctx, ids)
		if err != nil {
			return err
		}
		waiting, err := e.queuePage(ctx, st, lt, profiles, once, &run)
		if err != nil {
			return err
		}
		counts := map[string]int64{"queued": int64(len(profiles))}
		for at, n := range waiting {
			counts[redisstore.WaitingField(at)] += n
		}
		goneMsgs := make([]string, len(gone))
		for i, c := range gone {
			goneMsgs[i] = BroadcastMessageID(p.ID, c)
		}
		if err := e.st.EndPage(ctx, p.ID, cursor+int64(len(ids)), counts, goneMsgs); err != nil {
			return err
		}
		e.metrics.broadcast("queued", len(profiles))
		cursor, inflight = cursor+int64(len(ids)), -1
	}
}

// queuePage queues one message (or journey start) per customer, several at
// once. waiting counts the messages queued for a later local hour, by
// that time.
func (e *Engine) queuePage(ctx context.Context, st redisstore.BroadcastRequest, lt localTime, profiles []redisstore.Profile, once bool, run *atomic.Int64) (waiting map[time.Time]int64, err error) {
	b := st.Broadcast
	now := e.now()
	jobs := make(chan redisstore.Profile)
	var mu sync.Mutex
	var first error
	waiting = map[time.Time]int64{}
	var wg sync.WaitGroup
	for range enqueueWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				at, err := e.queueOne(ctx, b, st.StartAt, lt, now, p, once)
				if err == nil && e.fanOutFault != nil {
					e.fanOutFault(ctx, run.Add(1))
				}
				mu.Lock()
				switch {
				case err != nil && first == nil:
					first = err
				case err == nil && !at.IsZero():
					waiting[at.UTC()]++ // one key per instant, whatever the zone
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range profiles {
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	return waiting, first
}

// queueOne queues one customer's message (or journey start); at is the
// local hour it waits for (zero: none, it runs now).
func (e *Engine) queueOne(ctx context.Context, b Broadcast, created time.Time, lt localTime, now time.Time, p redisstore.Profile, once bool) (at time.Time, err error) {
	id := BroadcastMessageID(b.ID, p.Customer.ID)
	var opts []asynq.Option
	if b.LocalTime != "" {
		loc := e.zone(p.Customer)
		if t := lt.at(loc, created, now); t.After(now) {
			at = t
			opts = append(opts, asynq.ProcessAt(at))
		}
	}
	if b.Workflow != "" {
		task := asynq.NewTask(TypeBroadcastJourney, wire.Encode(journeyTask{Broadcast: b.ID, CustomerID: p.Customer.ID, Workflow: b.Workflow, Once: once}))
		return at, e.enqueue(ctx, task, append(opts, asynq.TaskID("m:"+id), asynq.Queue(e.wakeQueue(b.Workflow)), e.taskTimeout())...)
	}
	m := wire.Message{
		ID: id, CustomerID: p.Customer.ID, Template: b.Template, Topic: b.Topic, Data: b.Data,
		Channels: b.Channels, Mode: b.Mode, Actor: "broadcast " + b.ID, Once: once,
	}
	return at, e.enqueue(ctx, asynq.NewTask(wire.TypeMessage, wire.Encode(m)),
		append(opts, asynq.TaskID("m:"+id), asynq.Queue(e.Queue(b.Topic)), e.taskTimeout())...)
}

// zone is the customer's time zone, or the configured default for
// customers without a valid one.
func (e *Engine) zone(c herald.Customer) *time.Location {
	if c.Timezone != "" {
		if loc, err := time.LoadLocation(c.Timezone); err == nil {
			return loc
		}
	}
	if e.opt.DefaultZone != nil {
		return e.opt.DefaultZone
	}
	return time.UTC
}

type journeyTask struct {
	Broadcast  string `json:"broadcast"`
	CustomerID string `json:"customer_id"`
	Workflow   string `json:"workflow"`
	Once       bool   `json:"once,omitempty"`
}

// handleBroadcastJourney starts the workflow's journey for one customer of
// a broadcast, as its trigger event would; the journey ID derives from the
// broadcast and the customer, so it starts once.
func (e *Engine) handleBroadcastJourney(ctx context.Context, t *asynq.Task) error {
	var p journeyTask
	if err := wire.Decode(t.Payload(), &p); err != nil {
		return skip(err)
	}
	if err := wire.Check("broadcast", p.Broadcast, "customer_id", p.CustomerID, "workflow", p.Workflow); err != nil {
		return skip(err)
	}
	id := BroadcastMessageID(p.Broadcast, p.CustomerID)
	if e.broadcastSkip(ctx, id, p.CustomerID, nil, p.Once) {
		return nil
	}
	var w *workflows.Workflow
	if set := e.Workflows(); set != nil {
		w, _ = set.Get(p.Workflow)
	}
	if w == nil {
		return skip(herald.Errorf(herald.EInvalid, "broadcast %s: workflow %q is no longer loaded", p.Broadcast, p.Workflow))
	}
	ctx, cancel := e.taskBudget(ctx)
	defer cancel()
	ctx, jb, err := e.beginJourneys(ctx, p.CustomerID, "")
	if err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			e.tallyOnce(ctx, id, "skipped")
			return nil // erased meanwhile
		}
		return err
	}
	defer jb.Release()
	n := &notes{}
	defer e.flushNotesOnExit(ctx, p.CustomerID, n)
	var data map[string]any
	if rec, ok, err := e.st.Broadcast(ctx, p.Broadcast); err == nil && ok {
		var st redisstore.BroadcastRequest
		if json.Unmarshal(rec.Spec, &st) == nil {
			data = st.Broadcast.Data
		}
	}
	ev := herald.Event{ID: id, CustomerID: p.CustomerID, Name: "broadcast." + p.Broadcast, Data: data, Actor: "broadcast " + p.Broadcast}
	e.note(n, herald.TimelineEntry{Kind: herald.KindEvent, Summary: "broadcast " + p.Broadcast + " starts journey " + w.ID, Ref: id})
	if err := e.maybeStart(ctx, n, jb.Customer, jb.Prefs, w, ev, jb.Active, jb.Ever[w.ID], jb.Seen); err != nil {
		return err
	}
	return e.flushNotes(ctx, p.CustomerID, n)
}

// broadcastSkip reports whether a broadcast's message (msgID) must not run:
// once is set and the customer's timeline shows the message ran before
// (its outcome counted it), or its broadcast was cancelled (counted as
// such, once, unless the message got past this task before: see
// Store.Settled). task names the task (nil: a journey start). Not a
// broadcast's message, or Redis unreadable: false, and the message's own
// checks apply.
func (e *Engine) broadcastSkip(ctx context.Context, msgID, customerID string, task *redisstore.MessageTask, once bool) bool {
	id := broadcastOf(msgID)
	if id == "" {
		return false
	}
	st, ran, err := e.st.BroadcastGate(ctx, id, customerID, msgID, once)
	if err != nil {
		return false
	}
	if ran {
		return true
	}
	if st != redisstore.BroadcastCancelled {
		return false
	}
	if task != nil {
		settled, err := e.st.Settled(ctx, []redisstore.MessageTask{*task})
		if err == nil && settled[0] {
			return true // its worker died after the message got past this task
		}
	}
	e.tallyOnce(ctx, msgID, "cancelled")
	return true
}

// tallyOnce counts a broadcast's message as cancelled or skipped (erased)
// unless it was counted so before: by a cancel's sweep, or by this task's
// own earlier run when its worker died before asynq took it as done.
func (e *Engine) tallyOnce(ctx context.Context, msgID, field string) {
	id := broadcastOf(msgID)
	if id == "" {
		return
	}
	n, err := e.st.TallyOnce(context.WithoutCancel(ctx), id, field, msgID)
	if err != nil {
		e.log.Warn("broadcast count", "broadcast", id, "field", field, "err", err)
	}
	e.metrics.broadcast(field, int(n))
}

// outcomeCount is the broadcast counter a message's outcome moves (none
// for a message outside a broadcast, or an outcome the counts leave out).
// It is written with the outcome's own record (ledger or timeline line), so
// that a worker killed between two writes cannot leave the counts out of
// step with what the records say.
func (e *Engine) outcomeCount(msgID string, ch herald.Channel, o herald.Outcome, reason string) []redisstore.Count {
	id := broadcastOf(msgID)
	if id == "" {
		return nil
	}
	var field string
	switch o {
	case herald.OutcomeSent:
		field = "sent:" + string(ch)
	case herald.OutcomeSuppressed:
		field = "suppressed:" + reason
	case herald.OutcomeDeferred:
		if reason == "" { // a routine wait for a rate-limit slot
			return nil
		}
		field = "deferred"
	case herald.OutcomeFailedPermanent:
		field = "failed"
	default:
		return nil
	}
	return []redisstore.Count{{Broadcast: id, Name: field}}
}

// countedBroadcast moves the broadcast metric for the broadcast counters
// among counts, once the write that holds them succeeded.
func (e *Engine) countedBroadcast(counts []redisstore.Count, err error) error {
	if err != nil {
		return err
	}
	for _, c := range counts {
		if c.Broadcast != "" {
			kind, _, _ := strings.Cut(c.Name, ":")
			e.metrics.broadcast(kind, 1)
		}
	}
	return nil
}

// handleBroadcastCreate creates a broadcast asked for through Redis (the Go
// client, the CLI) and leaves the answer where the asker waits for it.
func (e *Engine) handleBroadcastCreate(ctx context.Context, t *asynq.Task) error {
	var p wire.CreateBroadcast
	if err := wire.Decode(t.Payload(), &p); err != nil {
		return skip(err)
	}
	if err := wire.Check("request", p.Request); err != nil {
		return skip(err)
	}
	info, created, err := e.CreateBroadcast(ctx, p.Broadcast, p.Actor)
	if herald.IsTemporary(err) {
		return err // asynq retries; the asker keeps waiting
	}
	ans := wire.BroadcastAnswer{Created: created}
	if err != nil {
		ans.Code, ans.Message = herald.ErrorCode(err), herald.ErrorMessage(err)
	} else {
		ans.Info = &info
	}
	return e.st.SetBroadcastAnswer(ctx, p.Request, wire.Encode(ans))
}

// CustomerPage is one page of a customer listing.
type CustomerPage struct {
	Customers []herald.Customer `json:"customers"`
	// Next is the cursor of the next page ("" at the end).
	Next string `json:"next_cursor,omitempty"`
}

// Customers pages through customers in ID order, keeping those the filter
// selects; cursor is a page's Next. A page holds up to limit customers and
// reads at most 20 times as many.
func (e *Engine) Customers(ctx context.Context, filter string, limit int, cursor string) (CustomerPage, error) {
	aud, err := workflows.CompileAudience(filter)
	if err != nil {
		return CustomerPage{}, err
	}
	if cursor != "" {
		if err := redisstore.ValidID(cursor); err != nil {
			return CustomerPage{}, herald.Errorf(herald.EInvalid, "cursor: not a cursor from a previous page")
		}
	}
	if err := e.st.EnsureCustomerIndex(ctx); err != nil {
		return CustomerPage{}, err
	}
	out := CustomerPage{Customers: []herald.Customer{}}
	after := cursor
	for scanned := 0; len(out.Customers) < limit && scanned < 20*limit; {
		ids, err := e.st.CustomerIDs(ctx, after, min(1000, max(limit, 100)))
		if err != nil {
			return out, err
		}
		if len(ids) == 0 {
			return out, nil
		}
		profiles, _, err := e.st.Profiles(ctx, ids)
		if err != nil {
			return out, err
		}
		for _, p := range profiles {
			if ok, _ := aud.Match(e.profileEnv(p)); ok {
				out.Customers = append(out.Customers, p.Customer)
				if len(out.Customers) == limit {
					out.Next = p.Customer.ID
					return out, nil
				}
			}
		}
		scanned += len(ids)
		after = ids[len(ids)-1]
	}
	out.Next = after // read as far as one request may: carry on from here
	return out, nil
}
