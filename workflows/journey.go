package workflows

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"

	"github.com/heraldhq/herald"
)

// Journey statuses.
const (
	StatusActive   = "active"
	StatusFinished = "finished"
	StatusExited   = "exited"
)

// Input kinds.
const (
	InputStart = "start"
	InputEvent = "event"
	InputWake  = "wake"
)

// Wait kinds: why an active journey is paused.
const (
	WaitKindWait  = "wait"  // a wait step
	WaitKindDelay = "delay" // a send held by delay_until_local
	// WaitKindDigest is a digest step collecting events until its window closes.
	WaitKindDigest = "digest"
)

// Action kinds.
const (
	ActionSend         = "send"
	ActionScheduleWake = "schedule_wake"
	ActionCancelWake   = "cancel_wake"
	ActionFinish       = "finish"
	ActionExit         = "exit"
	// ActionSplit: the journey entered Arm of the split at StepID; counted
	// per arm.
	ActionSplit = "split"
	// ActionDigest: a digest step collected one more event.
	ActionDigest = "digest"
	// ActionConvert: the journey reached its workflow's goal (Reason is
	// the goal event); it happens once per journey.
	ActionConvert = "convert"
)

// Finish reasons.
const (
	ReasonEnd       = "end"       // an end step
	ReasonCompleted = "completed" // fell off the last step
)

// MaxHistory is how many history entries a journey keeps: enough to answer
// "why did I get this?" without letting a long journey grow without bound.
const MaxHistory = 50

// maxStepsPerAdvance guards against loops the loader could not see (a
// Workflow built by hand). Parse rejects loops without a wait, so a loaded
// workflow visits each step at most once per call.
const maxStepsPerAdvance = 1000

// State is one journey: a customer's run through one workflow version. It is
// plain data, serialised as JSON by the shell.
type State struct {
	JourneyID  string `json:"journey_id"`
	WorkflowID string `json:"workflow_id"`
	Version    string `json:"version"`
	CustomerID string `json:"customer_id"`
	Status     string `json:"status"`
	Step       string `json:"step"`
	// StepSeq counts step entries. A wake-up carries the StepSeq it was
	// scheduled for, so wake-ups from an earlier visit of the same step are
	// recognised as stale; the shell also builds task IDs from it.
	StepSeq   int            `json:"step_seq"`
	WakeAt    time.Time      `json:"wake_at,omitzero"`
	WaitKind  string         `json:"wait_kind,omitempty"`
	StartedAt time.Time      `json:"started_at"`
	UpdatedAt time.Time      `json:"updated_at"`
	Data      map[string]any `json:"data,omitempty"`
	History   []HistoryEntry `json:"history,omitempty"`
	// Arms holds the arm (the step it leads to) taken at each split step.
	Arms map[string]string `json:"arms,omitempty"`
	// Digest holds the events a digest step has collected in its window.
	Digest *DigestBuffer `json:"digest,omitempty"`
	// ConvertedAt is when the journey reached its workflow's goal.
	ConvertedAt time.Time `json:"converted_at,omitzero"`
}

// DigestBuffer is what a digest step collected, oldest first by when each
// event happened. Event IDs make a retried event task collect its event
// once.
type DigestBuffer struct {
	Step   string        `json:"step"`
	Events []DigestEvent `json:"events"`
}

// DigestEvent is one collected event.
type DigestEvent struct {
	ID string `json:"id,omitempty"`
	// At is when the event happened (Input.At).
	At   time.Time      `json:"at"`
	Data map[string]any `json:"data,omitempty"`
}

// Waiting reports whether the journey is paused until a wake-up.
func (s State) Waiting() bool { return s.Status == StatusActive && !s.WakeAt.IsZero() }

// HistoryEntry records one thing that happened in a journey.
type HistoryEntry struct {
	At   time.Time `json:"at"`
	Step string    `json:"step,omitempty"`
	Seq  int       `json:"seq,omitempty"`
	// Kind is start, send, delay, wait, timeout, event, branch, split,
	// digest, goal, end, finish or exit.
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

// Input is what moves a journey.
type Input struct {
	Kind  string // InputStart, InputEvent or InputWake
	Event string
	// EventID identifies the event, so a digest collects it once.
	EventID string
	// At is when the event happened (when herald received it); a digest
	// lists its events in this order, whatever order their tasks ran in.
	// Zero means now.
	At   time.Time
	Data map[string]any
	// WakeSeq is, for a wake-up, the StepSeq it was scheduled for.
	WakeSeq int
	// Customer holds what branch conditions see as customer.*: the shell
	// passes the customer's attributes (and whatever fields it chooses).
	Customer map[string]any
	// Location is the customer's time zone for delay_until_local; nil is UTC.
	Location *time.Location
}

// Action is something the shell must do for a journey.
type Action struct {
	Kind    string
	StepID  string
	StepSeq int
	// Send.
	Template string
	Channels []string
	Mode     string
	// At is when a schedule_wake must fire.
	At time.Time
	// Reason is the event name for exit, ReasonEnd or ReasonCompleted for
	// finish, the goal event for convert.
	Reason string
	// Arm is the arm a split action entered.
	Arm string
}

// CanEnter applies a workflow's entry rule: active says whether a journey
// of w is running for the customer, everStarted whether one ever started.
func CanEnter(w *Workflow, active, everStarted bool) bool {
	if w.Entry == EntryOnce {
		return !everStarted
	}
	return !active
}

// Start begins a journey of w for a customer, usually on w's trigger event,
// and runs it until it waits or ends.
func Start(w *Workflow, journeyID, customerID string, in Input, now time.Time) (State, []Action, error) {
	if w == nil || len(w.Steps) == 0 {
		return State{}, nil, herald.Errorf(herald.EInvalid, "workflow has no steps")
	}
	if in.Kind != "" && in.Kind != InputStart {
		return State{}, nil, herald.Errorf(herald.EInvalid, "start a journey with a %q input, not %q", InputStart, in.Kind)
	}
	s := State{
		JourneyID:  journeyID,
		WorkflowID: w.ID,
		Version:    w.Version,
		CustomerID: customerID,
		Status:     StatusActive,
		StartedAt:  happened(in, now),
		Data:       maps.Clone(in.Data),
	}
	r := &runner{w: w, s: s, in: in, now: now}
	r.record("", "start", in.Event)
	if err := r.run(0); err != nil {
		return State{}, nil, err
	}
	return r.s, r.actions, nil
}

// happened is when in's event happened, else now. A journey begins when its
// start event happened (StartedAt), and a goal event counts when it
// happened within the goal's window of that, however late it is handled.
func happened(in Input, now time.Time) time.Time {
	if in.At.IsZero() {
		return now
	}
	return in.At
}

// Predates reports whether in is an event that happened before journey s
// began (its start event), though it is handled after the start (two
// events sent close together, a retried task, a backlog). Such an event
// does not end the journey, end its wait or reach its goal: the customer
// completing an earlier checkout does not cancel the reminder for a
// checkout abandoned since. A digest still collects it.
func Predates(s State, in Input) bool {
	return in.Kind == InputEvent && !in.At.IsZero() && in.At.Before(s.StartedAt)
}

// Advance moves a journey on an event or a wake-up.
//
// When it returns no actions the state is unchanged and need not be saved:
// events the journey does not wait for are ignored without merging their
// data, so unrelated activity cannot change what a later branch sees and does
// not cost a write. An early wake-up returns the unchanged state and a
// schedule_wake for the same time, for the shell to re-arm.
func Advance(w *Workflow, s State, in Input, now time.Time) (State, []Action, error) {
	if w == nil {
		return s, nil, herald.Errorf(herald.EInvalid, "no workflow")
	}
	if s.WorkflowID != w.ID || s.Version != w.Version {
		return s, nil, herald.Errorf(herald.EInvalid, "journey %s is on %s@%s, not %s@%s", s.JourneyID, s.WorkflowID, s.Version, w.ID, w.Version)
	}
	r := &runner{w: w, s: s, in: in, now: now}
	r.s.Data = maps.Clone(s.Data)
	r.s.History = slices.Clone(s.History)
	if r.goal() && r.s.Status != StatusActive {
		return r.s, r.actions, nil
	}
	if s.Status != StatusActive {
		return s, nil, nil
	}
	// unchanged is what an input that does nothing returns: the state as
	// it came, unless the goal was reached on the way.
	unchanged := func() (State, []Action, error) {
		if len(r.actions) > 0 {
			return r.s, r.actions, nil
		}
		return s, nil, nil
	}
	idx, ok := w.index[s.Step]
	if !ok {
		return s, nil, herald.Errorf(herald.EInternal, "journey %s is at step %q, which %s@%s does not have", s.JourneyID, s.Step, w.ID, w.Version)
	}
	step := w.Steps[idx]

	switch in.Kind {
	case InputEvent:
		old := Predates(s, in)
		switch {
		case w.IsExit(in.Event) && !old:
			r.merge(in.Data)
			r.cancelWake()
			r.s.Status = StatusExited
			r.record(step.ID, "exit", in.Event)
			r.act(Action{Kind: ActionExit, Reason: in.Event})
			return r.s, r.actions, nil
		case r.s.WaitKind == WaitKindWait && step.Wait != nil && slices.Contains(step.Wait.Until, in.Event) && !old:
			r.merge(in.Data)
			r.cancelWake()
			r.record(step.ID, "event", in.Event+" → "+step.Wait.Then)
			if err := r.run(w.index[step.Wait.Then]); err != nil {
				return s, nil, err
			}
			return r.s, r.actions, nil
		case r.s.WaitKind == WaitKindDigest && step.Digest != nil && in.Event == step.Digest.Event:
			if !r.collect(step) {
				return unchanged()
			}
			if len(r.s.Digest.Events) < step.Digest.Max {
				return r.s, r.actions, nil
			}
			r.cancelWake()
			if err := r.closeDigest(step, idx, "full"); err != nil {
				return s, nil, err
			}
			return r.s, r.actions, nil
		}
		return unchanged()

	case InputWake:
		if s.WakeAt.IsZero() || in.WakeSeq != s.StepSeq {
			return unchanged() // stale: the journey has moved on since it was scheduled
		}
		if now.Before(s.WakeAt) {
			return s, []Action{{Kind: ActionScheduleWake, StepID: s.Step, StepSeq: s.StepSeq, At: s.WakeAt}}, nil
		}
		kind := r.s.WaitKind
		r.s.WakeAt, r.s.WaitKind = time.Time{}, ""
		r.s.UpdatedAt = now
		if kind == WaitKindDigest && step.Digest != nil {
			if err := r.closeDigest(step, idx, "window closed"); err != nil {
				return s, nil, err
			}
			return r.s, r.actions, nil
		}
		if kind == WaitKindDelay && step.Send != nil {
			r.send(step)
		} else {
			r.record(step.ID, "timeout", "")
		}
		if err := r.run(idx + 1); err != nil {
			return s, nil, err
		}
		return r.s, r.actions, nil

	case InputStart:
		return s, nil, herald.Errorf(herald.EInvalid, "journey %s has already started", s.JourneyID)
	}
	return s, nil, herald.Errorf(herald.EInvalid, "unknown input kind %q", in.Kind)
}

// Exit ends an active journey for a reason outside the workflow (the
// customer opted out of its topic, was erased, an operator stopped it), with
// the same actions and history an exit_on event produces. A journey that has
// already ended is returned unchanged with no actions.
func Exit(s State, reason string, now time.Time) (State, []Action) {
	if s.Status != StatusActive {
		return s, nil
	}
	r := &runner{s: s, now: now}
	r.s.Data = maps.Clone(s.Data)
	r.s.History = slices.Clone(s.History)
	r.cancelWake()
	r.s.Status = StatusExited
	r.record(s.Step, "exit", reason)
	r.act(Action{Kind: ActionExit, Reason: reason})
	return r.s, r.actions
}

// runner carries one Start or Advance call.
type runner struct {
	w       *Workflow
	s       State
	in      Input
	now     time.Time
	actions []Action
	// collected is set once the input event went into a digest, so a
	// digest entered again in the same call does not take it twice.
	collected bool
}

func (r *runner) act(a Action) {
	a.StepID, a.StepSeq = r.s.Step, r.s.StepSeq
	r.actions = append(r.actions, a)
}

func (r *runner) record(step, kind, detail string) {
	r.s.UpdatedAt = r.now
	r.s.History = append(r.s.History, HistoryEntry{At: r.now, Step: step, Seq: r.s.StepSeq, Kind: kind, Detail: detail})
	if n := len(r.s.History); n > MaxHistory {
		r.s.History = slices.Delete(r.s.History, 0, n-MaxHistory)
	}
}

func (r *runner) merge(data map[string]any) {
	if len(data) == 0 {
		return
	}
	if r.s.Data == nil {
		r.s.Data = map[string]any{}
	}
	maps.Copy(r.s.Data, data)
}

func (r *runner) cancelWake() {
	if r.s.WakeAt.IsZero() {
		return
	}
	r.act(Action{Kind: ActionCancelWake, At: r.s.WakeAt})
	r.s.WakeAt, r.s.WaitKind = time.Time{}, ""
}

func (r *runner) wake(at time.Time, kind string) {
	r.s.WakeAt, r.s.WaitKind = at, kind
	r.act(Action{Kind: ActionScheduleWake, At: at})
}

func (r *runner) finish(reason string) {
	r.s.Status = StatusFinished
	r.record(r.s.Step, "finish", reason)
	r.act(Action{Kind: ActionFinish, Reason: reason})
}

func (r *runner) send(step *Step) {
	r.record(step.ID, "send", step.Send.Template)
	r.act(Action{Kind: ActionSend, Template: step.Send.Template, Channels: slices.Clone(step.Send.Channels), Mode: step.Send.Mode})
}

// run enters step idx and keeps going until the journey waits or ends.
func (r *runner) run(idx int) error {
	for range maxStepsPerAdvance {
		if idx >= len(r.w.Steps) {
			r.finish(ReasonCompleted)
			return nil
		}
		step := r.w.Steps[idx]
		r.s.Step = step.ID
		r.s.StepSeq++
		switch step.Kind {
		case KindSend:
			if step.DelayUntilLocal != "" {
				at := nextLocal(r.now, r.in.Location, step.delayHour, step.delayMinute).In(r.now.Location())
				if at.After(r.now) {
					r.record(step.ID, "delay", fmt.Sprintf("until %s local, %s", step.DelayUntilLocal, at.UTC().Format(time.RFC3339)))
					r.wake(at, WaitKindDelay)
					return nil
				}
			}
			r.send(step)
			idx++
		case KindWait:
			at := r.now.Add(step.Wait.For)
			detail := cmp.Or(step.Wait.forText, step.Wait.For.String())
			if len(step.Wait.Until) > 0 {
				detail += " until " + strings.Join(step.Wait.Until, " | ")
			}
			r.record(step.ID, "wait", detail)
			r.wake(at, WaitKindWait)
			return nil
		case KindBranch:
			next, detail := r.branch(step)
			r.record(step.ID, "branch", detail)
			if next == "" {
				idx++
			} else {
				idx = r.w.index[next]
			}
		case KindSplit:
			arm := r.w.Assign(r.s.CustomerID, step)
			if r.s.Arms == nil {
				r.s.Arms = map[string]string{}
			}
			r.s.Arms[step.ID] = arm.Then
			r.record(step.ID, "split", fmt.Sprintf("arm %s (%d%%)", arm.Then, arm.Weight))
			r.act(Action{Kind: ActionSplit, Arm: arm.Then})
			idx = r.w.index[arm.Then]
		case KindDigest:
			r.openDigest(step)
			if len(r.s.Digest.Events) >= step.Digest.Max {
				return r.closeDigest(step, idx, "full")
			}
			r.record(step.ID, "digest", fmt.Sprintf("collecting %s for %s (max %d)", step.Digest.Event, cmp.Or(step.Digest.forText, step.Digest.For.String()), step.Digest.Max))
			r.wake(r.now.Add(step.Digest.For), WaitKindDigest)
			return nil
		case KindEnd:
			r.record(step.ID, "end", "")
			r.finish(ReasonEnd)
			return nil
		default:
			return herald.Errorf(herald.EInternal, "step %q of %s has no kind", step.ID, r.w.ID)
		}
	}
	return herald.Errorf(herald.EInternal, "workflow %s@%s ran %d steps without waiting", r.w.ID, r.w.Version, maxStepsPerAdvance)
}

// branch picks the jump target of a branch step: "" means the next step in
// order. A condition that fails to evaluate (a missing attribute compared
// with a number, say) counts as false and is noted in the history, so one
// customer's odd data cannot stall the journey; use ?? for defaults.
func (r *runner) branch(step *Step) (target, detail string) {
	customer, data := r.in.Customer, r.s.Data
	if customer == nil {
		customer = map[string]any{}
	}
	if data == nil {
		data = map[string]any{}
	}
	env := map[string]any{"customer": customer, "data": data}
	var notes []string
	for i, c := range step.Branch.Cases {
		if c.program == nil {
			notes = append(notes, fmt.Sprintf("case %d not compiled", i+1))
			continue
		}
		out, err := expr.Run(c.program, env)
		if err != nil {
			notes = append(notes, fmt.Sprintf("case %d failed: %v", i+1, firstLine(err.Error())))
			continue
		}
		if b, ok := out.(bool); ok && b {
			return c.Then, strings.Join(append(notes, fmt.Sprintf("case %d → %s", i+1, c.Then)), "; ")
		}
	}
	if step.Branch.Default != "" {
		return step.Branch.Default, strings.Join(append(notes, "default → "+step.Branch.Default), "; ")
	}
	return "", strings.Join(append(notes, "no case matched"), "; ")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// goal counts the journey's conversion when the input is its workflow's
// goal event within the goal's window, once per journey, running or ended;
// with exit it ends a running journey. It reports whether it counted.
func (r *runner) goal() bool {
	g := r.w.Goal
	if g == nil || r.in.Kind != InputEvent || r.in.Event != g.Event || !r.s.ConvertedAt.IsZero() ||
		r.s.StartedAt.IsZero() || happened(r.in, r.now).After(r.s.StartedAt.Add(g.Within)) || Predates(r.s, r.in) {
		return false
	}
	r.s.ConvertedAt = r.now
	r.record(r.s.Step, "goal", g.Event)
	r.act(Action{Kind: ActionConvert, Reason: g.Event})
	if g.Exit && r.s.Status == StatusActive {
		r.cancelWake()
		r.s.Status = StatusExited
		r.record(r.s.Step, "exit", "goal "+g.Event)
		r.act(Action{Kind: ActionExit, Reason: "goal " + g.Event})
	}
	return true
}

// openDigest starts a digest window; the event that brought the journey
// to the step, if it is the digest's event, is the first one collected.
func (r *runner) openDigest(step *Step) {
	r.s.Digest = &DigestBuffer{Step: step.ID, Events: []DigestEvent{}}
	if (r.in.Kind == InputStart || r.in.Kind == InputEvent) && r.in.Event == step.Digest.Event && !r.collected {
		r.s.Digest.add(r.digestEvent())
		r.collected = true
	}
}

// collect adds the input event to the open digest; false means it is
// already there (a retried event task).
func (r *runner) collect(step *Step) bool {
	if r.s.Digest == nil || r.s.Digest.Step != step.ID {
		r.s.Digest = &DigestBuffer{Step: step.ID}
	}
	if r.in.EventID != "" && slices.ContainsFunc(r.s.Digest.Events, func(e DigestEvent) bool { return e.ID == r.in.EventID }) {
		return false
	}
	buf := *r.s.Digest
	buf.Events = slices.Clone(buf.Events)
	buf.add(r.digestEvent())
	r.s.Digest = &buf
	r.collected = true
	r.s.UpdatedAt = r.now
	r.act(Action{Kind: ActionDigest})
	return true
}

// closeDigest hands the collected events to the steps that follow as
// data.digest ({count, events} with each event's data, oldest first) and
// jumps to the digest's then, or the next step.
func (r *runner) closeDigest(step *Step, idx int, why string) error {
	var events []DigestEvent
	if r.s.Digest != nil {
		events = r.s.Digest.Events
	}
	list := make([]any, len(events))
	for i, ev := range events {
		d := maps.Clone(ev.Data)
		if d == nil {
			d = map[string]any{}
		}
		list[i] = d
	}
	r.merge(map[string]any{"digest": map[string]any{"count": len(events), "events": list}})
	r.s.Digest = nil
	r.record(step.ID, "digest", fmt.Sprintf("%d × %s (%s)", len(events), step.Digest.Event, why))
	next := idx + 1
	if step.Digest.Then != "" {
		next = r.w.index[step.Digest.Then]
	}
	return r.run(next)
}
