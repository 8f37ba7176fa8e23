package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// ReasonExitedFirst is the timeline reason of a journey not started because
// an event that ends it happened after its start event and reached a
// worker first.
const ReasonExitedFirst = "exited_first"

// ReasonPredates is the timeline reason of an event a running journey
// watches that did not move it, as it happened before the journey's start
// event (workflows.Predates).
const ReasonPredates = "predates"

// watchdogLate is the default of Options.WatchdogLate: the lease of a
// claimed follow-up, after which another waker may take it again.
const watchdogLate = 30 * time.Second

// WakeTaskID is the deterministic asynq task ID of a journey's follow-up:
// one per (journey, step visit), so a step is never scheduled twice.
func WakeTaskID(journeyID string, seq int) string { return "w:" + journeyID + ":" + strconv.Itoa(seq) }

func (e *Engine) registerJourneys(mux *asynq.ServeMux) {
	mux.HandleFunc(wire.TypeEvent, e.handleEvent)
	mux.HandleFunc(wire.TypeWake, e.handleWake)
	mux.HandleFunc(wire.TypeWatchdog, e.handleWatchdog)
	mux.HandleFunc(wire.TypeCancelJourney, e.handleCancelJourney)
}

// notes is what a journey handler has to write besides the journey's
// state: its timeline lines and more writes for the state's pipeline
// (counters). The handler passes it down and writes it with the state in
// one round trip (saveJourney), or on its own (flushNotes).
type notes struct {
	entries []herald.TimelineEntry
	pipe    []func(redis.Pipeliner)
}

// note collects a timeline line, timed now unless it has a time.
func (e *Engine) note(n *notes, entry herald.TimelineEntry) {
	if entry.At.IsZero() {
		entry.At = e.now().UTC()
	}
	n.entries = append(n.entries, entry)
}

// flushNotes writes what is still collected (lines of a handler that saved
// no state).
func (e *Engine) flushNotes(ctx context.Context, customerID string, n *notes) error {
	if len(n.entries) == 0 && len(n.pipe) == 0 {
		return nil
	}
	if err := e.st.AppendEntriesWith(ctx, customerID, n.entries, n.pipe); err != nil {
		return err
	}
	n.entries, n.pipe = nil, nil
	return nil
}

// flushNotesOnExit is flushNotes for a handler's way out (deferred): what
// an early return left collected is written, and a failure is logged, as
// the handler's own error already decides its task's fate.
func (e *Engine) flushNotesOnExit(ctx context.Context, customerID string, n *notes) {
	if err := e.flushNotes(context.WithoutCancel(ctx), customerID, n); err != nil {
		e.log.Warn("timeline lines not written", "customer", customerID, "lines", len(n.entries), "err", err)
	}
}

// lock serialises journey changes of one customer across workers. A busy
// lock makes the task wait a moment (not a failure).
func (e *Engine) lock(ctx context.Context, customerID string) (func(), error) {
	release, err := e.st.LockCustomer(ctx, customerID, e.claimTTL())
	if errors.Is(err, redisstore.ErrBusy) {
		return nil, busy(customerID)
	}
	return release, err
}

func (e *Engine) handleEvent(ctx context.Context, t *asynq.Task) error {
	var ev herald.Event
	if err := wire.Decode(t.Payload(), &ev); err != nil {
		return skip(err)
	}
	if err := wire.Check("id", ev.ID, "customer_id", ev.CustomerID, "name", ev.Name); err != nil {
		return skip(err)
	}
	ctx, cancel := e.taskBudget(ctx) // a step may send inline
	defer cancel()
	ctx, jb, err := e.beginJourneys(ctx, ev.CustomerID, "")
	if err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			return skip(herald.Errorf(herald.ENotFound, "event %s for unknown customer %q: upsert the customer first", ev.Name, ev.CustomerID))
		}
		return err
	}
	defer jb.Release()
	cust, active, ever := jb.Customer, jb.Active, jb.Ever
	n := &notes{}
	defer e.flushNotesOnExit(ctx, cust.ID, n)

	// A retried event task may record the event line twice; everything it
	// starts or sends is keyed by the event's ID and happens once.
	// The preference change itself is on the timeline already (one line
	// per field, written with the consent entry); its event only carries
	// the journey exits to a worker.
	if ev.Name != wire.EventPreferencesChanged {
		e.note(n, redisstore.EventLine(ev.ID, ev.Name, ev.Actor, boundedData(ev.Data)))
	}
	// The timeline got the sealed form; the journey sees the values.
	sealedData := ev.Data
	if ev.Data, err = e.svc.Unseal(ctx, cust.ID, ev.ID, ev.Data, ev.Sealed); err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			return skip(err)
		}
		return err
	}
	e.emitFromEvent(ctx, ev)
	if ev.Name == wire.EventPreferencesChanged {
		if p, _ := ev.Data["paused"].(bool); p {
			if err := e.exitTopicLocked(ctx, n, cust, ""); err != nil {
				return err
			}
		}
		if left, ok := ev.Data["topics_left"].([]any); ok {
			for _, t := range left {
				if s, ok := t.(string); ok {
					if err := e.exitTopicLocked(ctx, n, cust, s); err != nil {
						return err
					}
				}
			}
		}
	}
	set := e.Workflows()
	if set == nil {
		return e.flushNotes(ctx, cust.ID, n)
	}
	e.noteSeen(ctx, n, cust.ID, set, ev, sealedData, jb.Seen)
	in := e.input(cust, workflows.Input{Kind: workflows.InputEvent, Event: ev.Name, EventID: ev.ID, Data: ev.Data, At: ev.At})
	matched := false
	moved := map[string]bool{} // workflows whose running journey took the event
	for _, jid := range active {
		s, w, err := e.loadJourney(ctx, cust.ID, jid)
		if err != nil {
			return err
		}
		if w == nil {
			continue
		}
		next, actions, err := workflows.Advance(w, s, in, e.now())
		if err != nil {
			e.log.Error("advance journey", "journey", jid, "err", err)
			continue
		}
		if len(actions) > 0 || next.StepSeq != s.StepSeq || next.Status != s.Status || collecting(w, s, ev.Name) {
			matched, moved[w.ID] = true, true
		} else if workflows.Predates(s, in) {
			e.notePredates(n, w, s, ev, in)
		}
		if err := e.apply(ctx, n, cust, w, s, next, actions, "event "+ev.Name); err != nil {
			return err
		}
	}
	if converted, err := e.reachGoals(ctx, n, cust, set, ev, in, active); err != nil {
		return err
	} else if converted {
		matched = true
	}
	for _, w := range set.Triggered(ev.Name) {
		if moved[w.ID] {
			continue // its running journey took the event (a digest collecting its trigger)
		}
		matched = true
		if err := e.maybeStart(ctx, n, cust, jb.Prefs, w, ev, active, ever[w.ID], jb.Seen); err != nil {
			return err
		}
	}
	if !matched && len(n.entries) > 0 && n.entries[0].Ref == ev.ID {
		// Support's first question: did this event do anything?
		redisstore.MarkUnmatched(&n.entries[0])
	}
	return e.flushNotes(ctx, cust.ID, n)
}

// notePredates says on the timeline why ev, which would have moved journey
// s, did not: it happened before the journey's start event.
func (e *Engine) notePredates(n *notes, w *workflows.Workflow, s workflows.State, ev herald.Event, in workflows.Input) {
	in.At = time.Time{} // as if it had happened now
	if _, acts, err := workflows.Advance(w, s, in, e.now()); err != nil || len(acts) == 0 {
		return
	}
	e.note(n, herald.TimelineEntry{Kind: herald.KindJourney, Ref: s.JourneyID, Reason: ReasonPredates,
		Summary: fmt.Sprintf("journey %s not moved by %s: it happened (at %s) before the event that started the journey (at %s)",
			w.ID, ev.Name, ev.At.UTC().Format(time.RFC3339Nano), s.StartedAt.UTC().Format(time.RFC3339Nano)),
		Data: map[string]any{"workflow": w.ID, "journey": s.JourneyID, "event": ev.Name}})
}

// beginJourneys takes the customer's journey lock and reads what a journey
// handler starts from in one round trip: the customer, their preferences
// and journeys and, unless journeyID is empty, that journey's state
// (JourneyBatch.Journey). The returned context carries the customer and
// preferences to the handler's inline sends (sendState), which need not
// read them again.
func (e *Engine) beginJourneys(ctx context.Context, customerID, journeyID string) (context.Context, *redisstore.JourneyBatch, error) {
	var jb *redisstore.JourneyBatch
	var err error
	if journeyID != "" {
		jb, err = e.st.BeginJourney(ctx, customerID, journeyID, e.claimTTL())
	} else {
		jb, err = e.st.BeginJourneys(ctx, customerID, e.claimTTL())
	}
	if errors.Is(err, redisstore.ErrBusy) {
		return ctx, nil, busy(customerID)
	}
	if err != nil {
		return ctx, nil, err
	}
	return context.WithValue(ctx, sendStateKey{}, redisstore.SendState{Customer: jb.Customer, Prefs: jb.Prefs}), jb, nil
}

// busy makes a task wait a moment for a customer whose journeys another
// worker is changing (not a failure).
func busy(customerID string) error {
	return &waitError{reason: "customer " + customerID + " is busy", after: time.Second}
}

// noteSeen keeps, with what the handler writes, ev as the latest of its
// name if some current workflow exits, ends a wait or reaches its goal on
// it: a start event that happened before it but reaches a worker after it
// (two events sent close together, a retried task, a backlog) then neither
// starts the journey it ended, nor waits for it, nor misses its goal (see
// maybeStart). sealed is ev's data as the timeline has it.
func (e *Engine) noteSeen(ctx context.Context, n *notes, customerID string, set *workflows.Set, ev herald.Event, sealed map[string]any, seen map[string]redisstore.SeenEvent) {
	if ev.At.IsZero() || !ev.At.After(seen[ev.Name].At) {
		return
	}
	watched, waited := false, false
	for _, w := range set.All() {
		watched = watched || w.Watched(ev.Name)
		waited = waited || w.WaitsFor(ev.Name)
	}
	if !watched {
		return
	}
	se := redisstore.SeenEvent{At: ev.At, ID: ev.ID}
	if waited {
		// The wait's then step may show it.
		se.Data, se.Sealed = boundedData(sealed), ev.Sealed
	}
	n.pipe = append(n.pipe, func(p redis.Pipeliner) {
		redisstore.SeenEventPipe(ctx, p, customerID, ev.Name, se)
	})
}

// seenFor returns the customer's seen events that w watches and that
// happened after trigger, their data unsealed (left sealed when the values
// are gone).
func (e *Engine) seenFor(ctx context.Context, customerID string, w *workflows.Workflow, trigger herald.Event, seen map[string]redisstore.SeenEvent) map[string]workflows.Seen {
	if trigger.At.IsZero() {
		return nil
	}
	var out map[string]workflows.Seen
	for name, se := range seen {
		if !se.At.After(trigger.At) || !w.Watched(name) {
			continue
		}
		data := se.Data
		if d, err := e.svc.Unseal(ctx, customerID, se.ID, se.Data, se.Sealed); err == nil {
			data = d
		}
		if out == nil {
			out = map[string]workflows.Seen{}
		}
		out[name] = workflows.Seen{ID: se.ID, At: se.At, Data: data}
	}
	return out
}

func (e *Engine) maybeStart(ctx context.Context, n *notes, c herald.Customer, prefs herald.Preferences, w *workflows.Workflow, ev herald.Event, active map[string]string, ever bool, seen map[string]redisstore.SeenEvent) error {
	// Events w watches, sent after ev but handled before it: an exit
	// ended the journey ev starts; a wait's event or the goal move it on
	// at once (workflows.CatchUp).
	later := e.seenFor(ctx, c.ID, w, ev, seen)
	if x, se, ok := workflows.ExitedFirst(w, workflows.Input{At: ev.At}, later); ok {
		e.note(n, herald.TimelineEntry{Kind: herald.KindJourney, Ref: ev.ID, Reason: ReasonExitedFirst,
			Summary: fmt.Sprintf("journey %s not started by %s (at %s): %s, which ends it, happened after it (at %s) and was handled first",
				w.ID, ev.Name, ev.At.UTC().Format(time.RFC3339Nano), x, se.At.Format(time.RFC3339Nano)),
			Data: map[string]any{"workflow": w.ID, "exit_event": x}})
		e.metrics.Journeys.WithLabelValues(w.ID, ReasonExitedFirst).Inc()
		return nil
	}
	// A customer who left the workflow's topic (or paused everything) does
	// not start its journey: every send of it would be suppressed anyway.
	if t, ok := e.opt.Policy.Topics[w.Topic]; ok && !t.Required {
		why, reason := "", "opted_out"
		switch {
		case prefs.Paused:
			why = "the customer paused all messages"
		case !preferences.TopicOn(t, prefs):
			why = "the customer opted out of topic " + w.Topic
			if _, chose := prefs.Topics[w.Topic]; !chose {
				why, reason = "the customer has not opted in to topic "+w.Topic+" (an opt-in topic)", preferences.ReasonNotOptedIn
			}
		}
		if why != "" {
			e.note(n, herald.TimelineEntry{Kind: herald.KindJourney, Ref: ev.ID, Reason: reason,
				Summary: fmt.Sprintf("journey %s not started by %s: %s", w.ID, ev.Name, why),
				Data:    map[string]any{"workflow": w.ID}})
			return nil
		}
	}
	_, isActive := active[w.ID]
	if !workflows.CanEnter(w, isActive, ever) {
		e.log.Debug("journey not started: entry rule", "workflow", w.ID, "customer", c.ID, "entry", w.Entry)
		e.note(n, herald.TimelineEntry{Kind: herald.KindJourney, Ref: ev.ID,
			Summary: fmt.Sprintf("journey %s not started: entry rule %s (already %s)", w.ID, w.Entry, map[bool]string{true: "running", false: "run before"}[isActive])})
		return nil
	}
	// Deterministic: a retried event task starts the same journey, not a second one.
	jid := "j_" + redisstore.Hash(ev.ID + "\x00" + w.ID)[:20]
	if _, stored := e.sources.Load(w.ID + ":" + w.Version); !stored {
		if err := e.st.SaveWorkflowSource(ctx, w.ID, w.Version, w.Source); err != nil {
			return err
		}
		e.sources.Store(w.ID+":"+w.Version, true)
	}
	in := e.input(c, workflows.Input{Kind: workflows.InputStart, Event: ev.Name, EventID: ev.ID, Data: ev.Data, At: ev.At})
	s, actions, err := workflows.Start(w, jid, c.ID, in, e.now())
	if err != nil {
		e.log.Error("start journey", "workflow", w.ID, "err", err)
		return nil
	}
	e.metrics.Journeys.WithLabelValues(w.ID, "started").Inc()
	cause := "start by " + ev.Name
	// The start and the moves CatchUp adds are saved in one write.
	s, actions, took, err := workflows.CatchUp(w, s, actions, in, later, e.now())
	if err != nil {
		e.log.Error("advance journey", "journey", jid, "err", err)
	}
	for _, name := range took {
		if g := w.Goal; g != nil && name == g.Event {
			cause += " (its goal " + name + " happened after it and was handled first)"
		} else {
			cause += " (" + name + ", which ends its wait, happened after it and was handled first)"
		}
	}
	return e.apply(ctx, n, c, w, workflows.State{}, s, actions, cause)
}

// input fills what the state machine needs to know about the customer.
func (e *Engine) input(c herald.Customer, in workflows.Input) workflows.Input {
	cm := map[string]any{}
	for k, v := range c.Attributes {
		cm[k] = v
	}
	cm["id"], cm["locale"], cm["timezone"] = c.ID, c.Locale, c.Timezone
	in.Customer, in.Location = cm, c.Location()
	return in
}

// apply carries out a step's actions in crash-safe order: sends first (their
// message IDs are deterministic, so a retried task re-enqueues nothing new),
// then the state, which schedules the follow-up in the waiting index.
func (e *Engine) apply(ctx context.Context, n *notes, c herald.Customer, w *workflows.Workflow, prev, next workflows.State, actions []workflows.Action, cause string) error {
	if len(actions) == 0 && prev.StepSeq == next.StepSeq && prev.Status == next.Status {
		return nil
	}
	e.emitJourneyStart(ctx, w, prev, next)
	for _, a := range actions {
		if a.Kind != workflows.ActionSend {
			continue
		}
		chans := make([]herald.Channel, 0, len(a.Channels))
		for _, ch := range a.Channels {
			chans = append(chans, herald.Channel(ch))
		}
		m := wire.Message{
			ID: next.JourneyID + "." + a.StepID + "." + strconv.Itoa(a.StepSeq), CustomerID: c.ID,
			Template: a.Template, Topic: w.Topic, Channels: chans, Mode: a.Mode, Data: next.Data,
			WorkflowID: w.ID, JourneyID: next.JourneyID, StepID: a.StepID, Version: w.Version, Actor: "journey",
			QueuedAt: e.now(),
		}
		// The step's task sends the message itself. A message that fails
		// for good is on the timeline; the journey goes on.
		if err := e.runMessage(ctx, m); err != nil {
			if !errors.Is(err, asynq.SkipRetry) {
				return err
			}
			e.log.Warn("journey message not sent", "journey", next.JourneyID, "step", a.StepID, "err", err)
		}
	}
	// One timeline line per transition: how it started, where it waits,
	// how it ended. Its summary names the workflow, the step and the
	// wake-up; its data holds only what the summary does not say.
	var parts []string
	data := map[string]any{}
	started, by := prev.JourneyID == "", strings.TrimPrefix(cause, "start by ")
	if started {
		parts = append(parts, fmt.Sprintf("started (version %s) by %s", w.Version, by))
	}
	// What the state machine decided on the way: the branch taken and why,
	// a wait that timed out, the event that ended a wait.
	for _, h := range newHistory(prev, next) {
		switch h.Kind {
		case "branch":
			parts = append(parts, fmt.Sprintf("step %s: branch %s", h.Step, h.Detail))
		case "timeout":
			parts = append(parts, fmt.Sprintf("step %s: wait timed out", h.Step))
		case "event":
			parts = append(parts, fmt.Sprintf("step %s: %s", h.Step, h.Detail))
		}
	}
	parts = append(parts, journeyParts(prev, next, actions)...)
	e.countJourney(ctx, n, w, prev, next, actions)
	var waits []workflows.Action
	for _, a := range actions {
		switch a.Kind {
		case workflows.ActionScheduleWake:
			waits = append(waits, a)
			parts = append(parts, fmt.Sprintf("step %s: waiting until %s", a.StepID, a.At.In(c.Location()).Format("2006-01-02 15:04 MST")))
		case workflows.ActionExit, workflows.ActionFinish:
			event := "finished"
			part := fmt.Sprintf("finished (%s)", a.Reason)
			if a.Kind == workflows.ActionExit {
				event = "exited"
				part = "exited on " + a.Reason
			}
			e.metrics.Journeys.WithLabelValues(w.ID, event).Inc()
			parts = append(parts, part)
			data["cause"] = cause
		}
	}
	switch {
	case started && len(parts) == 1+len(waits) && len(waits) <= 1 && len(data) == 0:
		// The line most journeys write: it started, and waits or not.
		var step string
		var wake time.Time
		if len(waits) == 1 {
			step, wake = waits[0].StepID, waits[0].At.In(c.Location())
		}
		e.note(n, redisstore.JourneyStartLine(next.JourneyID, w.ID, w.Version, by, step, wake))
	case len(parts) > 0:
		e.note(n, herald.TimelineEntry{Kind: herald.KindJourney, Ref: next.JourneyID,
			Summary: fmt.Sprintf("journey %s %s", w.ID, strings.Join(parts, "; ")), Data: data})
	}
	for _, a := range actions {
		if a.Kind == workflows.ActionCancelWake {
			e.cancelWake(prev)
		}
	}
	if err := e.saveJourney(ctx, n, next, journeyCounts(prev, next, actions)); err != nil {
		return err
	}
	e.emitJourneyEnd(ctx, w, next, actions)
	return nil
}

// timelineDataMax bounds the bytes of event data a timeline line keeps.
const timelineDataMax = 1024

// boundedData is what a timeline line keeps of event data: short scalar
// values as they are, the shape of the rest, within timelineDataMax. The
// timeline answers "what happened", not "what was the payload".
func boundedData(d map[string]any) map[string]any {
	if len(d) == 0 {
		return nil
	}
	keys := make([]string, 0, len(d))
	for k := range d {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make(map[string]any, len(keys))
	used := 0
	for _, k := range keys {
		var v any
		switch x := d[k].(type) {
		case string:
			v = x
			if len(x) > 120 {
				v = fmt.Sprintf("(text, %d bytes)", len(x))
			}
		case bool, nil, json.Number, float64, int, int64:
			v = x
		case map[string]any:
			v = fmt.Sprintf("(object, %d keys)", len(x))
		case []any:
			v = fmt.Sprintf("(list, %d items)", len(x))
		default:
			v = fmt.Sprintf("(%T)", x)
		}
		used += len(k) + len(fmt.Sprint(v)) + 6
		if used > timelineDataMax {
			out["…"] = fmt.Sprintf("%d more keys", len(keys)-len(out))
			break
		}
		out[k] = v
	}
	return out
}

// newHistory returns the history entries next added to prev.
func newHistory(prev, next workflows.State) []workflows.HistoryEntry {
	if len(next.History) == 0 {
		return nil
	}
	if len(prev.History) == 0 {
		return next.History
	}
	last := prev.History[len(prev.History)-1]
	for i := len(next.History) - 1; i >= 0; i-- {
		if h := next.History[i]; h.At.Equal(last.At) && h.Kind == last.Kind && h.Step == last.Step && h.Seq == last.Seq {
			return next.History[i+1:]
		}
	}
	return next.History
}

// saveJourney writes the state, keeps the running-journey and waiting
// indexes in step with it and writes the collected timeline lines, in one
// round trip. The waiting index lives on another Cluster slot, so this is a
// pipeline, not a transaction: the waker reconciles the index with the
// state if a crash splits them. A waiting state's score in the index is its
// follow-up's schedule (see StartWaker).
func (e *Engine) saveJourney(ctx context.Context, n *notes, s workflows.State, counts []redisstore.Count) error {
	entries, extra := n.entries, n.pipe
	if len(counts) > 0 {
		now := e.now()
		extra = append(extra, func(p redis.Pipeliner) { e.st.CountPipe(ctx, p, now, counts...) })
	}
	if err := e.st.SaveJourneyWith(ctx, s, entries, extra); err != nil {
		if !herald.IsTemporary(err) {
			return skip(err)
		}
		return err
	}
	n.entries, n.pipe = nil, nil
	return nil
}

// wakeTask is the wake-up task of a waiting journey's current visit.
func wakeTask(s workflows.State) *asynq.Task {
	p := wire.Wake{JourneyID: s.JourneyID, CustomerID: s.CustomerID, WorkflowID: s.WorkflowID, Version: s.Version, StepID: s.Step, StepSeq: s.StepSeq}
	return asynq.NewTask(wire.TypeWake, wire.Encode(p))
}

// wakeQueue is the queue of a workflow's follow-ups: its topic's priority.
func (e *Engine) wakeQueue(workflowID string) string {
	if set := e.Workflows(); set != nil {
		if w, ok := set.Get(workflowID); ok {
			return e.Queue(w.Topic)
		}
	}
	return wire.QueueDefault
}

// cancelWake deletes a queued follow-up (one the waker queued and no
// worker took yet, or one an older version scheduled). Failing is
// harmless: a wake-up for a step the journey has left is a no-op.
func (e *Engine) cancelWake(prev workflows.State) {
	if prev.JourneyID == "" || !prev.Waiting() {
		return
	}
	if err := e.insp.DeleteTask(e.wakeQueue(prev.WorkflowID), WakeTaskID(prev.JourneyID, prev.StepSeq)); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		e.log.Debug("cancel wake-up", "journey", prev.JourneyID, "err", err)
	}
}

// loadJourney returns a journey and the workflow version it runs on,
// rebuilding an old version from its stored source when the file changed
// since. A nil workflow means the journey cannot go on (logged).
func (e *Engine) loadJourney(ctx context.Context, customerID, journeyID string) (workflows.State, *workflows.Workflow, error) {
	s, ok, err := e.st.Journey(ctx, customerID, journeyID)
	return e.journeyRead(ctx, journeyID, s, ok, err)
}

// journeyRead is loadJourney for a state already read: its workflow
// version, or none (logged) when the state is unreadable or its version is
// gone.
func (e *Engine) journeyRead(ctx context.Context, journeyID string, s workflows.State, ok bool, err error) (workflows.State, *workflows.Workflow, error) {
	if err != nil && !herald.IsTemporary(err) {
		e.log.Error("journey state unreadable", "journey", journeyID, "err", err)
		return s, nil, nil
	}
	if err != nil || !ok {
		return s, nil, err
	}
	w, err := e.workflowVersion(ctx, s.WorkflowID, s.Version)
	if err != nil {
		return s, nil, err
	}
	return s, w, nil
}

func (e *Engine) workflowVersion(ctx context.Context, id, version string) (*workflows.Workflow, error) {
	set := e.Workflows()
	if set == nil {
		return nil, nil
	}
	if w, ok := set.Version(id, version); ok {
		return w, nil
	}
	src, ok, err := e.st.WorkflowSource(ctx, id, version)
	if err != nil {
		return nil, err
	}
	if !ok {
		e.log.Error("journey's workflow version is gone", "workflow", id, "version", version)
		return nil, nil
	}
	w, err := workflows.Parse(id+".yaml", src, workflows.LoadOptions{Stored: true})
	if err != nil {
		e.log.Error("stored workflow version does not parse", "workflow", id, "version", version, "err", err)
		return nil, nil
	}
	if w.Version != version { // a hash-versioned file re-parsed under a new name keeps its hash
		e.log.Warn("stored workflow version mismatch", "workflow", id, "want", version, "got", w.Version)
	}
	set.Add(w)
	return w, nil
}

func (e *Engine) handleWake(ctx context.Context, t *asynq.Task) error {
	var p wire.Wake
	if err := wire.Decode(t.Payload(), &p); err != nil {
		return skip(err)
	}
	if err := wire.Check("journey", p.JourneyID, "customer_id", p.CustomerID, "workflow", p.WorkflowID); err != nil {
		return skip(err)
	}
	ctx, cancel := e.taskBudget(ctx) // the step may send inline
	defer cancel()
	ctx, jb, err := e.beginJourneys(ctx, p.CustomerID, p.JourneyID)
	if err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			return nil // erased: nothing to follow up
		}
		return err
	}
	defer jb.Release()
	cust := jb.Customer
	n := &notes{}
	defer e.flushNotesOnExit(ctx, cust.ID, n)
	st, ok, err := jb.Journey() // read with the lock
	s, w, err := e.journeyRead(ctx, p.JourneyID, st, ok, err)
	if err != nil {
		return err
	}
	if w == nil {
		// Gone, unreadable or on a workflow version that is gone (logged):
		// nothing will wake it.
		return e.st.DropWaiting(ctx, p.CustomerID, p.JourneyID)
	}
	next, actions, err := workflows.Advance(w, s, e.input(cust, workflows.Input{Kind: workflows.InputWake, WakeSeq: p.StepSeq}), e.now())
	if err != nil {
		return skip(err)
	}
	if len(actions) == 1 && actions[0].Kind == workflows.ActionScheduleWake && next.StepSeq == s.StepSeq && actions[0].At.Equal(s.WakeAt) {
		// Not due yet (a copy of the task, another worker's clock): the
		// waiting index, which a claim's lease may have moved, has it at
		// its time again, and the waker queues it then.
		return e.st.RestoreWaiting(ctx, s)
	}
	return e.apply(ctx, n, cust, w, s, next, actions, "wake-up")
}

// handleWatchdog serves the periodic task older versions scheduled to
// find lost follow-ups: the waker's lease does that now, so it is one
// claim pass.
func (e *Engine) handleWatchdog(ctx context.Context, _ *asynq.Task) error {
	_, err := e.wakeDue(ctx)
	return err
}

// Journeys returns the customer's journeys, running and recent (export).
func (e *Engine) Journeys(ctx context.Context, customerID string) ([]workflows.State, error) {
	return e.st.Journeys(ctx, customerID)
}

// exitTopic ends the customer's running journeys of topic ("" = all).
func (e *Engine) exitTopic(ctx context.Context, customerID, topic string) error {
	c, err := e.st.Customer(ctx, customerID)
	if err != nil {
		return err
	}
	var unlock func()
	for i := 0; ; i++ {
		unlock, err = e.lock(ctx, customerID)
		if err == nil {
			break
		}
		if i == 50 {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer unlock()
	n := &notes{}
	if err := e.exitTopicLocked(ctx, n, c, topic); err != nil {
		return err
	}
	return e.flushNotes(ctx, customerID, n)
}

func (e *Engine) exitTopicLocked(ctx context.Context, n *notes, c herald.Customer, topic string) error {
	active, _, err := e.st.JourneyIndex(ctx, c.ID)
	if err != nil {
		return err
	}
	for _, jid := range active {
		s, w, err := e.loadJourney(ctx, c.ID, jid)
		if err != nil {
			return err
		}
		if w == nil || s.Status != workflows.StatusActive || (topic != "" && w.Topic != topic) {
			continue
		}
		reason := "opted out of " + w.Topic
		if topic == "" {
			reason = "paused all messages"
		}
		next, actions := workflows.Exit(s, reason, e.now())
		if err := e.apply(ctx, n, c, w, s, next, actions, "preferences"); err != nil {
			return err
		}
	}
	return nil
}
