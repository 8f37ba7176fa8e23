package workflows

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const splitWorkflow = `id: pricing-test
topic: onboarding
trigger: trial.started
goal: { event: subscription.purchased, within: 14d, exit: true }
steps:
  - id: choose
    split:
      - { weight: 45, then: variant-a }
      - { weight: 45, then: variant-b }
      - { weight: 10, then: holdout }
  - id: variant-a
    send: { template: offer-a }
  - id: wait-a
    wait: { for: 3d }
  - id: done-a
    end: true
  - id: variant-b
    send: { template: offer-b }
  - id: done-b
    end: true
  - id: holdout
    end: true
`

// Over 10,000 customers each arm gets its weight within 3 points, and a
// customer lands in the same arm on every journey.
func TestSplitProportionsAndStability(t *testing.T) {
	t.Parallel()
	w := mustParse(t, splitWorkflow)
	step, _ := w.Step("choose")
	counts := map[string]int{}
	const n = 10000
	for i := range n {
		counts[w.Assign(fmt.Sprintf("cust-%d", i), step).Then]++
	}
	for _, a := range step.Split.Arms {
		got := 100 * float64(counts[a.Then]) / n
		require.LessOrEqual(t, math.Abs(got-float64(a.Weight)), 3.0, "arm %s: %.2f%%, want %d%%", a.Then, got, a.Weight)
	}

	// Re-entry: a second journey of the same customer takes the same arm.
	for i := range 200 {
		c := fmt.Sprintf("cust-%d", i)
		first, _, err := Start(w, "j1", c, Input{Kind: InputStart, Event: "trial.started"}, t0)
		require.NoError(t, err)
		again, _, err := Start(w, "j2", c, Input{Kind: InputStart, Event: "trial.started"}, t0.Add(30*24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, first.Arms, again.Arms)
		require.Equal(t, w.Assign(c, step).Then, first.Arms["choose"])
	}
	// Another workflow with the same split shuffles customers independently.
	other := *w
	other.ID = "other-test"
	same := 0
	for i := range 1000 {
		c := fmt.Sprintf("cust-%d", i)
		if other.Assign(c, step).Then == w.Assign(c, step).Then {
			same++
		}
	}
	require.Less(t, same, 600, "arms of two workflows are not independent")
}

func TestSplitRecordsArm(t *testing.T) {
	t.Parallel()
	w := mustParse(t, splitWorkflow)
	step, _ := w.Step("choose")
	// Find one customer per arm, then check the journey of each.
	byArm := map[string]string{}
	for i := 0; len(byArm) < 3; i++ {
		c := fmt.Sprintf("c%d", i)
		if _, ok := byArm[w.Assign(c, step).Then]; !ok {
			byArm[w.Assign(c, step).Then] = c
		}
	}
	s, actions, err := Start(w, "j", byArm["variant-b"], Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	require.Equal(t, map[string]string{"choose": "variant-b"}, s.Arms)
	require.Equal(t, []Action{
		{Kind: ActionSplit, StepID: "choose", StepSeq: 1, Arm: "variant-b"},
		send("variant-b", 2, "offer-b"),
		{Kind: ActionFinish, StepID: "done-b", StepSeq: 3, Reason: ReasonEnd},
	}, actions)
	require.Equal(t, []string{"start:", "split:choose", "send:variant-b", "end:done-b", "finish:done-b"}, historyKinds(s))
	require.Equal(t, "arm variant-b (45%)", s.History[1].Detail)

	h, actions, err := Start(w, "j", byArm["holdout"], Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	require.Equal(t, StatusFinished, h.Status)
	require.Len(t, actions, 2, "a holdout sends nothing")
}

func TestGoalCountsOnceAndExits(t *testing.T) {
	t.Parallel()
	w := mustParse(t, splitWorkflow)
	step, _ := w.Step("choose")
	c := "c0"
	for i := 0; w.Assign(c, step).Then != "variant-a"; i++ {
		c = fmt.Sprintf("c%d", i)
	}
	s, _, err := Start(w, "j", c, Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	require.True(t, s.Waiting())

	purchase := Input{Kind: InputEvent, Event: "subscription.purchased"}
	got, actions, err := Advance(w, s, purchase, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, StatusExited, got.Status)
	require.Equal(t, t0.Add(time.Hour), got.ConvertedAt)
	require.Equal(t, []Action{
		{Kind: ActionConvert, StepID: "wait-a", StepSeq: 3, Reason: "subscription.purchased"},
		cancel("wait-a", 3, s.WakeAt),
		{Kind: ActionExit, StepID: "wait-a", StepSeq: 3, Reason: "goal subscription.purchased"},
	}, actions)

	// A second purchase counts nothing.
	again, actions, err := Advance(w, got, purchase, t0.Add(2*time.Hour))
	require.NoError(t, err)
	require.Empty(t, actions)
	require.Equal(t, got, again)
}

func TestGoalAfterJourneyEndedAndOutsideWindow(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: g
topic: t
trigger: a
goal: { event: bought, within: 7d }
steps:
  - id: hello
    send: { template: hello }
`)
	s, _, err := Start(w, "j", "c", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	require.Equal(t, StatusFinished, s.Status)

	late, actions, err := Advance(w, s, Input{Kind: InputEvent, Event: "bought"}, t0.Add(8*24*time.Hour))
	require.NoError(t, err)
	require.Empty(t, actions, "past the goal's window")
	require.True(t, late.ConvertedAt.IsZero())

	got, actions, err := Advance(w, s, Input{Kind: InputEvent, Event: "bought"}, t0.Add(2*24*time.Hour))
	require.NoError(t, err)
	require.Equal(t, []Action{{Kind: ActionConvert, StepID: "hello", StepSeq: 1, Reason: "bought"}}, actions)
	require.Equal(t, StatusFinished, got.Status, "a finished journey converts and stays finished")
}

// A goal without exit counts and lets the same event move the journey.
func TestGoalWithoutExitKeepsGoing(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: g
topic: t
trigger: a
goal: { event: bought, within: 7d }
steps:
  - id: w
    wait: { for: 1d, until: bought, then: thanks }
  - id: nudge
    send: { template: nudge }
  - id: thanks
    send: { template: thanks }
`)
	s, _, err := Start(w, "j", "c", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	got, actions, err := Advance(w, s, Input{Kind: InputEvent, Event: "bought"}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, ActionConvert, actions[0].Kind)
	require.Equal(t, send("thanks", 2, "thanks"), actions[2])
	require.Equal(t, StatusFinished, got.Status)
}

const digestWorkflow = `id: comments
topic: t
trigger: comment.created
steps:
  - id: collect
    digest: { event: comment.created, for: 1h, max: 3, then: send-digest }
  - id: send-digest
    send: { template: digest }
`

func TestDigestWindow(t *testing.T) {
	t.Parallel()
	w := mustParse(t, digestWorkflow)
	ev := func(id, who string) Input {
		return Input{Kind: InputEvent, Event: "comment.created", EventID: id, Data: map[string]any{"author": who}}
	}
	first := ev("e1", "ada")
	first.Kind = InputStart
	s, actions, err := Start(w, "j", "c", first, t0)
	require.NoError(t, err)
	require.Equal(t, []Action{wake("collect", 1, t0.Add(time.Hour))}, actions)
	require.Len(t, s.Digest.Events, 1, "the trigger is the first event of the window")

	s, actions, err = Advance(w, s, ev("e2", "bob"), t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, []Action{{Kind: ActionDigest, StepID: "collect", StepSeq: 1}}, actions)
	// The same event again (a retried task) is not collected twice.
	again, actions, err := Advance(w, s, ev("e2", "bob"), t0.Add(2*time.Minute))
	require.NoError(t, err)
	require.Empty(t, actions)
	require.Equal(t, s, again)
	// Another event name is ignored.
	_, actions, err = Advance(w, s, Input{Kind: InputEvent, Event: "comment.deleted"}, t0.Add(3*time.Minute))
	require.NoError(t, err)
	require.Empty(t, actions)

	done, actions, err := Advance(w, s, Input{Kind: InputWake, WakeSeq: s.StepSeq}, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, []Action{send("send-digest", 2, "digest"), finish("send-digest", 2, ReasonCompleted)}, actions)
	require.Nil(t, done.Digest)
	require.Equal(t, map[string]any{"count": 2, "events": []any{
		map[string]any{"author": "ada"}, map[string]any{"author": "bob"},
	}}, done.Data["digest"])

	// The state survives JSON in the middle of a window.
	b, err := json.Marshal(s)
	require.NoError(t, err)
	var back State
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, []string{"e1", "e2"}, []string{back.Digest.Events[0].ID, back.Digest.Events[1].ID})
}

func TestDigestFullJumpsEarly(t *testing.T) {
	t.Parallel()
	w := mustParse(t, digestWorkflow)
	s, _, err := Start(w, "j", "c", Input{Kind: InputStart, Event: "comment.created", EventID: "e1"}, t0)
	require.NoError(t, err)
	for i := 2; i <= 3; i++ {
		s, _, err = Advance(w, s, Input{Kind: InputEvent, Event: "comment.created", EventID: fmt.Sprint("e", i)}, t0.Add(time.Duration(i)*time.Minute))
		require.NoError(t, err)
	}
	require.Equal(t, StatusFinished, s.Status, "max 3 reached: no need to wait out the window")
	require.EqualValues(t, 3, s.Data["digest"].(map[string]any)["count"])

	one := mustParse(t, `id: one
topic: t
trigger: a
steps:
  - id: collect
    digest: { event: a, for: 1h, max: 1 }
  - id: out
    send: { template: digest }
`)
	s, actions, err := Start(w, "j", "c", Input{Kind: InputStart, Event: "other"}, t0)
	require.NoError(t, err)
	require.Empty(t, s.Digest.Events, "the trigger is not the digest's event")
	require.Len(t, actions, 1)
	s, actions, err = Start(one, "j", "c", Input{Kind: InputStart, Event: "a"}, t0)
	require.NoError(t, err)
	require.Equal(t, []Action{send("out", 2, "digest"), finish("out", 2, ReasonCompleted)}, actions)
	require.EqualValues(t, 1, s.Data["digest"].(map[string]any)["count"])
}
