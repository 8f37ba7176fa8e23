package workflows

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The view keeps the arm taken at each split, and leaves arms out for a
// journey without a split.
func TestViewShowsArms(t *testing.T) {
	t.Parallel()
	w := mustParse(t, splitWorkflow)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "trial.started"}, now)
	require.NoError(t, err)
	v := s.View()
	require.Equal(t, s.Arms, v.Arms)
	require.Len(t, v.Arms, 1)
	raw, err := json.Marshal(v)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"arms":{"choose":"`+s.Arms["choose"]+`"}`)

	v.Arms["choose"] = "changed"
	require.NotEqual(t, "changed", s.Arms["choose"], "the view does not share the state's map")

	s.Arms = nil
	raw, err = json.Marshal(s.View())
	require.NoError(t, err)
	require.NotContains(t, string(raw), `"arms"`)
}

// Every visit of a step, whatever its kind, writes a history entry with
// the visit's StepSeq and the step: the shell counts a step as entered
// from those entries.
func TestEveryStepVisitIsInHistory(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: kinds
topic: onboarding
trigger: go
steps:
  - id: choose
    split:
      - { weight: 50, then: left }
      - { weight: 50, then: right }
  - id: left
    branch: { cases: [ { if: 'true', then: gather } ] }
  - id: right
    branch: { cases: [ { if: 'true', then: gather } ] }
  - id: gather
    digest: { event: note, for: 1h, max: 5 }
  - id: held
    delay_until_local: "09:00"
    send: { template: offer }
  - id: pause
    wait: { for: 1h, until: bought, then: done }
  - id: done
    end: true
`)
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "go"}, now)
	require.NoError(t, err)
	for _, in := range []Input{
		{Kind: InputEvent, Event: "note", EventID: "n1"},
		{Kind: InputWake, WakeSeq: 3},
		{Kind: InputWake, WakeSeq: 4},
		{Kind: InputEvent, Event: "bought"},
	} {
		now = now.Add(24 * time.Hour)
		s, _, err = Advance(w, s, in, now)
		require.NoError(t, err)
	}
	require.Equal(t, StatusFinished, s.Status)
	require.Equal(t, 6, s.StepSeq)
	first := map[int]string{}
	for _, h := range s.History {
		if _, ok := first[h.Seq]; !ok && h.Seq > 0 {
			first[h.Seq] = h.Step
		}
	}
	require.Equal(t, map[int]string{1: "choose", 2: s.Arms["choose"], 3: "gather", 4: "held", 5: "pause", 6: "done"}, first)
}
