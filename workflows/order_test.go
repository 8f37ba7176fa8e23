package workflows

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const orderSrc = `id: trial
topic: onboarding
trigger: trial.started
exit_on: [subscription.purchased]
goal: { event: plan.upgraded, within: 1h }
steps:
  - id: welcome
    send: { template: welcome, channels: [email] }
  - id: wait-for-project
    wait: { for: 48h, until: [project.created, project.imported], then: congrats }
  - id: nudge
    send: { template: nudge, channels: [email] }
  - id: congrats
    send: { template: congrats, channels: [email] }
`

// What a later event handled before the trigger does to the journey the
// trigger starts: an exit keeps it from starting, the wait's first event
// moves it on with its data, the goal converts it; events that happened
// before the trigger, or past the goal's window, do nothing.
func TestEventsHandledBeforeTheirTrigger(t *testing.T) {
	w := mustParse(t, orderSrc)
	trigger := Input{Kind: InputStart, Event: "trial.started", EventID: "e0", At: t0}
	start := func() (State, []Action) {
		s, acts, err := Start(w, "j1", "c1", trigger, t0.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, "wait-for-project", s.Step)
		return s, acts
	}
	for _, name := range []string{"subscription.purchased", "plan.upgraded", "project.created", "project.imported", "nudge.clicked"} {
		require.Equal(t, name != "nudge.clicked", w.Watched(name), name)
	}
	require.True(t, w.WaitsFor("project.imported"))
	require.False(t, w.WaitsFor("plan.upgraded"))

	t.Run("exit", func(t *testing.T) {
		x, se, ok := ExitedFirst(w, trigger, map[string]Seen{"subscription.purchased": {ID: "e1", At: t0.Add(time.Millisecond)}})
		require.True(t, ok)
		require.Equal(t, "subscription.purchased", x)
		require.Equal(t, "e1", se.ID)
		_, _, ok = ExitedFirst(w, trigger, map[string]Seen{"subscription.purchased": {ID: "e1", At: t0.Add(-time.Millisecond)}})
		require.False(t, ok, "a purchase before the trial does not end it")
		_, _, ok = ExitedFirst(w, Input{Kind: InputStart, Event: "trial.started"}, map[string]Seen{"subscription.purchased": {At: t0}})
		require.False(t, ok, "a trigger of unknown time is not judged")
	})

	t.Run("wait", func(t *testing.T) {
		s, acts := start()
		seen := map[string]Seen{
			"project.imported": {ID: "e2", At: t0.Add(2 * time.Second), Data: map[string]any{"project": "late"}},
			"project.created":  {ID: "e3", At: t0.Add(time.Second), Data: map[string]any{"project": "first"}},
		}
		next, all, took, err := CatchUp(w, s, acts, trigger, seen, t0.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, []string{"project.created"}, took, "the first to happen")
		require.Equal(t, "first", next.Data["project"])
		require.Equal(t, StatusFinished, next.Status)
		var kinds []string
		for _, a := range all {
			kinds = append(kinds, a.Kind+":"+a.StepID)
		}
		require.Equal(t, []string{"send:welcome", "send:congrats", "finish:congrats"}, kinds, "no wake-up scheduled, none cancelled")
	})

	t.Run("goal", func(t *testing.T) {
		s, acts := start()
		next, all, took, err := CatchUp(w, s, acts, trigger, map[string]Seen{"plan.upgraded": {ID: "e4", At: t0.Add(time.Minute)}}, t0.Add(time.Second))
		require.NoError(t, err)
		require.Equal(t, []string{"plan.upgraded"}, took)
		require.False(t, next.ConvertedAt.IsZero())
		require.True(t, next.Waiting(), "a goal without exit leaves the journey waiting")
		var kinds []string
		for _, a := range all {
			kinds = append(kinds, a.Kind)
		}
		require.Equal(t, []string{ActionSend, ActionScheduleWake, ActionConvert}, kinds, "the wake-up stays")
	})

	t.Run("events from before the trigger, handled after the start", func(t *testing.T) {
		s, _ := start()
		require.Equal(t, t0, s.StartedAt, "a journey begins when its start event happened")
		before := t0.Add(-time.Millisecond)
		for _, name := range []string{"subscription.purchased", "project.created", "plan.upgraded"} {
			in := Input{Kind: InputEvent, Event: name, EventID: "old", At: before}
			require.True(t, Predates(s, in))
			next, acts, err := Advance(w, s, in, t0.Add(time.Minute))
			require.NoError(t, err)
			require.Empty(t, acts, name)
			require.Equal(t, s, next, name)
			// The same event, happened at the start or after, moves it.
			in.At = t0
			require.False(t, Predates(s, in))
			_, acts, err = Advance(w, s, in, t0.Add(time.Minute))
			require.NoError(t, err)
			require.NotEmpty(t, acts, name)
		}
		// A goal event counts when it happened within the window, however
		// late it is handled.
		in := Input{Kind: InputEvent, Event: "plan.upgraded", At: t0.Add(59 * time.Minute)}
		next, _, err := Advance(w, s, in, t0.Add(3*time.Hour))
		require.NoError(t, err)
		require.False(t, next.ConvertedAt.IsZero())
		in.At = t0.Add(61 * time.Minute)
		next, _, err = Advance(w, s, in, t0.Add(61*time.Minute))
		require.NoError(t, err)
		require.True(t, next.ConvertedAt.IsZero(), "past the window")
	})

	t.Run("nothing to catch up", func(t *testing.T) {
		s, acts := start()
		seen := map[string]Seen{
			"project.created": {At: t0.Add(-time.Second)},  // before the trigger
			"plan.upgraded":   {At: t0.Add(2 * time.Hour)}, // past the goal's window
		}
		next, all, took, err := CatchUp(w, s, acts, trigger, seen, t0.Add(time.Second))
		require.NoError(t, err)
		require.Empty(t, took)
		require.Equal(t, s, next)
		require.Equal(t, acts, all)
	})
}

// TriggerSends are the sends a journey makes with its trigger's data
// alone: through sends, held sends and waits that time out, up to the first
// step that may bring other data or lead elsewhere.
func TestTriggerSends(t *testing.T) {
	t.Parallel()
	ids := func(w *Workflow) []string {
		var out []string
		for _, s := range w.TriggerSends() {
			v := s.Step.ID + ":" + s.Step.Send.Template + "<" + s.After
			if s.Via != "" {
				v += " via " + s.Via
			}
			out = append(out, v)
		}
		return out
	}
	require.Equal(t, []string{"welcome:welcome<", "nudge:nudge<wait-for-project", "congrats:congrats<wait-for-project"}, ids(mustParse(t, orderSrc)),
		"without an end, the wait's timeout leads through nudge to congrats too")
	require.Equal(t, []string{"a:one<", "b:two<"}, ids(mustParse(t, `id: two
topic: t
trigger: x.happened
steps:
  - id: a
    send: { template: one }
  - id: b
    send: { template: two, channels: [slack] }
  - id: c
    branch: { cases: [{ if: "data.n > 1", then: d }] }
  - id: d
    send: { template: three }
`)), "a branch may not reach what follows")
	require.Equal(t, []string{"a:one<", "b:two<a", "c:three<w", "e:four<d"}, ids(mustParse(t, `id: drip
topic: t
trigger: x.happened
steps:
  - id: a
    send: { template: one }
    delay_until_local: "09:00"
  - id: b
    send: { template: two }
  - id: w
    wait: { for: 2d }
  - id: c
    send: { template: three }
  - id: d
    wait: { for: 1d, until: y.happened, then: f }
  - id: e
    send: { template: four }
  - id: g
    end: true
  - id: f
    send: { template: five }
`)), "held sends and timed waits bring no data; the wait's event leads to f with its own")
	require.Empty(t, ids(mustParse(t, `id: digest
topic: t
trigger: x.happened
steps:
  - id: d
    digest: { event: x.happened, for: 1h }
  - id: a
    send: { template: one }
`)), "a digest adds its events")
	require.Equal(t, []string{"hello:one<", "a:two< via ab", "a2:three<wa via ab", "b:four<wa via ab", "shared:five<wa via ab"}, ids(mustParse(t, `id: ab
topic: t
trigger: x.happened
steps:
  - id: hello
    send: { template: one }
  - id: ab
    split:
      - { weight: 50, then: a }
      - { weight: 50, then: b }
  - id: a
    send: { template: two }
  - id: wa
    wait: { for: 1d }
  - id: a2
    send: { template: three }
  - id: b
    send: { template: four }
  - id: shared
    send: { template: five }
  - id: pick
    branch: { cases: [{ if: "data.n > 1", then: big }] }
  - id: big
    send: { template: six }
`)), "every arm of a split is drawn by chance: each is walked, a step the arms share once (as the first arm reaches it), and the walk stops at a branch")
}
