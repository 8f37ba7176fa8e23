package workflows

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
)

// JourneyView is a journey as support reads it: where it is, when it
// wakes up next, how it ended.
type JourneyView struct {
	ID         string    `json:"id"`
	Workflow   string    `json:"workflow"`
	Version    string    `json:"version"`
	Status     string    `json:"status"` // active, finished, exited
	Step       string    `json:"step"`
	NextWakeUp time.Time `json:"next_wake_up,omitzero"`
	WaitKind   string    `json:"wait_kind,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	// Ended says how a journey that is no longer active ended.
	Ended string `json:"ended,omitempty"`
	// Arms holds the arm taken at each split step the journey passed, as
	// step → the step the arm leads to.
	Arms    map[string]string `json:"arms,omitempty"`
	History []HistoryEntry    `json:"history,omitempty"`
}

// View returns the journey as support reads it.
func (s State) View() JourneyView {
	v := JourneyView{ID: s.JourneyID, Workflow: s.WorkflowID, Version: s.Version, Status: s.Status, Step: s.Step,
		NextWakeUp: s.WakeAt, WaitKind: s.WaitKind, StartedAt: s.StartedAt, UpdatedAt: s.UpdatedAt, History: s.History}
	if len(s.Arms) > 0 {
		v.Arms = maps.Clone(s.Arms)
	}
	if s.Status != StatusActive && len(s.History) > 0 {
		last := s.History[len(s.History)-1]
		v.Ended = strings.TrimSpace(last.Kind + " " + last.Detail)
	}
	return v
}

// Views returns the journeys as support reads them: running first, then
// the most recently changed.
func Views(states []State) []JourneyView {
	out := make([]JourneyView, 0, len(states))
	for _, s := range states {
		out = append(out, s.View())
	}
	slices.SortFunc(out, func(a, b JourneyView) int {
		if (a.Status == StatusActive) != (b.Status == StatusActive) {
			if a.Status == StatusActive {
				return -1
			}
			return 1
		}
		return b.UpdatedAt.Compare(a.UpdatedAt)
	})
	return out
}

// DecodeStates decodes stored journey states, skipping any that do not
// decode (never an empty nil: callers encode it as a list).
func DecodeStates(raw []json.RawMessage) []State {
	out := []State{}
	for _, b := range raw {
		var s State
		if json.Unmarshal(b, &s) == nil && s.JourneyID != "" {
			out = append(out, s)
		}
	}
	return out
}
