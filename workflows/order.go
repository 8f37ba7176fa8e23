package workflows

import (
	"slices"
	"time"
)

// A customer's events are handled in parallel, so an event can reach the
// journeys after one that happened later. The functions here judge a
// journey's trigger by when it happened (Input.At): what a later event,
// handled first, would have done to the journey had the two come in
// order, it does when the journey starts.

// Seen is the latest event of one name a customer did, as the shell kept it
// (see Watched).
type Seen struct {
	ID   string
	At   time.Time
	Data map[string]any
}

// Watched reports whether w exits on, waits for or has as its goal the
// event named name: the events a shell keeps for ExitedFirst and CatchUp.
func (w *Workflow) Watched(name string) bool {
	return w.IsExit(name) || (w.Goal != nil && w.Goal.Event == name) || w.WaitsFor(name)
}

// WaitsFor reports whether a wait step of w ends on the event named name.
func (w *Workflow) WaitsFor(name string) bool {
	for _, st := range w.Steps {
		if st.Wait != nil && slices.Contains(st.Wait.Until, name) {
			return true
		}
	}
	return false
}

// ExitedFirst returns the exit event of w, among seen, that happened after
// trigger: such a journey is not started, as the exit would have ended it.
func ExitedFirst(w *Workflow, trigger Input, seen map[string]Seen) (string, Seen, bool) {
	if trigger.At.IsZero() {
		return "", Seen{}, false
	}
	for _, x := range w.ExitOn {
		if se, ok := seen[x]; ok && se.At.After(trigger.At) {
			return x, se, true
		}
	}
	return "", Seen{}, false
}

// CatchUp moves journey s, just started by trigger with actions, on with
// the events among seen that happened after trigger and that it would have
// taken had they come in order: the event its wait waits for (the first to
// happen), then its goal event (within the goal's window). It returns the
// state, the start's actions joined with the moves' (a wake-up the start
// scheduled and a move cancelled is neither scheduled nor cancelled), and
// the names of the events taken, in order.
func CatchUp(w *Workflow, s State, actions []Action, trigger Input, seen map[string]Seen, now time.Time) (State, []Action, []string, error) {
	if trigger.At.IsZero() || len(seen) == 0 {
		return s, actions, nil, nil
	}
	var took []string
	take := func(name string, se Seen) error {
		in := Input{Kind: InputEvent, Event: name, EventID: se.ID, At: se.At, Data: se.Data,
			Customer: trigger.Customer, Location: trigger.Location}
		next, more, err := Advance(w, s, in, now)
		if err != nil || len(more) == 0 {
			return err
		}
		if !next.Waiting() || next.StepSeq != s.StepSeq {
			actions = slices.DeleteFunc(actions, func(a Action) bool {
				return a.Kind == ActionScheduleWake && a.StepID == s.Step
			})
		}
		actions = append(actions, slices.DeleteFunc(more, func(a Action) bool { return a.Kind == ActionCancelWake })...)
		s, took = next, append(took, name)
		return nil
	}
	if st, ok := w.Step(s.Step); ok && st.Wait != nil && s.WaitKind == WaitKindWait {
		var name string
		var first Seen
		for _, u := range st.Wait.Until {
			if se, ok := seen[u]; ok && se.At.After(trigger.At) && (name == "" || se.At.Before(first.At)) {
				name, first = u, se
			}
		}
		if name != "" {
			if err := take(name, first); err != nil {
				return s, actions, took, err
			}
		}
	}
	if g := w.Goal; g != nil {
		if se, ok := seen[g.Event]; ok && se.At.After(trigger.At) && !se.At.After(trigger.At.Add(g.Within)) {
			if err := take(g.Event, se); err != nil {
				return s, actions, took, err
			}
		}
	}
	return s, actions, took, nil
}
