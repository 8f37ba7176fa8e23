package workflows

import (
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"
	_ "time/tzdata" // the DST tests must not depend on the host's zoneinfo

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

// t0 is the fake clock's start: Friday 27 March 2026, 10:00 UTC, two days
// before Europe's spring DST change.
var t0 = time.Date(2026, 3, 27, 10, 0, 0, 0, time.UTC)

func mustParse(t *testing.T, src string) *Workflow {
	t.Helper()
	w, err := Parse(t.Name()+".yaml", []byte(src), LoadOptions{})
	require.NoError(t, err)
	return w
}

func mustExample(t *testing.T, id string) *Workflow {
	t.Helper()
	src, err := os.ReadFile("../examples/workflows/" + id + ".yaml")
	require.NoError(t, err)
	w, err := Parse(id+".yaml", src, LoadOptions{})
	require.NoError(t, err)
	return w
}

func mustLoc(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func send(step string, seq int, template string, channels ...string) Action {
	return Action{Kind: ActionSend, StepID: step, StepSeq: seq, Template: template, Channels: channels, Mode: ModeFirst}
}

func wake(step string, seq int, at time.Time) Action {
	return Action{Kind: ActionScheduleWake, StepID: step, StepSeq: seq, At: at}
}

func cancel(step string, seq int, at time.Time) Action {
	return Action{Kind: ActionCancelWake, StepID: step, StepSeq: seq, At: at}
}

func finish(step string, seq int, reason string) Action {
	return Action{Kind: ActionFinish, StepID: step, StepSeq: seq, Reason: reason}
}

func historyKinds(s State) []string {
	out := make([]string, len(s.History))
	for i, h := range s.History {
		out[i] = h.Kind + ":" + h.Step
	}
	return out
}

func TestTrialOnboardingTimeoutThenLocalDelay(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "trial-onboarding")
	warsaw := mustLoc(t, "Europe/Warsaw")

	s, acts, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "trial.started", Data: map[string]any{"plan": "pro"}, Location: warsaw}, t0)
	require.NoError(t, err)
	require.Equal(t, []Action{
		send("welcome", 1, "welcome", "slack", "email"),
		wake("wait-for-project", 2, t0.Add(48*time.Hour)),
	}, acts)
	require.Equal(t, StatusActive, s.Status)
	require.Equal(t, "wait-for-project", s.Step)
	require.Equal(t, 2, s.StepSeq)
	require.Equal(t, WaitKindWait, s.WaitKind)
	require.Equal(t, t0, s.StartedAt)
	require.Equal(t, map[string]any{"plan": "pro"}, s.Data)
	require.True(t, s.Waiting())

	// Timeout on Sunday 29 March 10:00 UTC = 12:00 CEST: past 09:00, so
	// the nudge waits for Monday 09:00 CEST = 07:00 UTC.
	now := t0.Add(48 * time.Hour)
	s, acts, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: 2, Location: warsaw}, now)
	require.NoError(t, err)
	monday9 := time.Date(2026, 3, 30, 7, 0, 0, 0, time.UTC)
	require.Equal(t, []Action{wake("nudge", 3, monday9)}, acts)
	require.Equal(t, WaitKindDelay, s.WaitKind)
	require.True(t, s.WakeAt.Equal(monday9))

	s, acts, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: 3, Location: warsaw}, monday9)
	require.NoError(t, err)
	require.Equal(t, []Action{
		send("nudge", 3, "nudge", "email"),
		finish("done", 4, ReasonEnd),
	}, acts)
	require.Equal(t, StatusFinished, s.Status)
	require.False(t, s.Waiting())
	require.Equal(t, []string{
		"start:", "send:welcome", "wait:wait-for-project", "timeout:wait-for-project",
		"delay:nudge", "send:nudge", "end:done", "finish:done",
	}, historyKinds(s))

	// Anything after the end is a no-op.
	for _, in := range []Input{
		{Kind: InputWake, WakeSeq: 4},
		{Kind: InputEvent, Event: "subscription.purchased"},
		{Kind: InputEvent, Event: "project.created"},
	} {
		again, acts, err := Advance(w, s, in, monday9.Add(time.Hour))
		require.NoError(t, err)
		require.Empty(t, acts)
		require.Equal(t, s, again)
	}
}

func TestUntilEventJumps(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "trial-onboarding")

	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "trial.started"}, t0)
	require.NoError(t, err)
	now := t0.Add(5 * time.Hour)
	s, acts, err := Advance(w, s, Input{Kind: InputEvent, Event: "project.created", Data: map[string]any{"project": "p1"}}, now)
	require.NoError(t, err)
	require.Equal(t, []Action{
		cancel("wait-for-project", 2, t0.Add(48*time.Hour)),
		send("congrats", 3, "congrats"),
		finish("congrats", 3, ReasonCompleted),
	}, acts)
	require.Equal(t, StatusFinished, s.Status)
	require.Equal(t, map[string]any{"project": "p1"}, s.Data, "data of an awaited event is merged")
	require.Equal(t, now, s.UpdatedAt)

	// The wake-up that was cancelled may still fire: it is stale.
	again, acts, err := Advance(w, s, Input{Kind: InputWake, WakeSeq: 2}, t0.Add(48*time.Hour))
	require.NoError(t, err)
	require.Empty(t, acts)
	require.Equal(t, s, again)
}

func TestUntilEventList(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "abandoned-checkout")

	for _, event := range []string{"checkout.resumed", "outreach.snoozed", "message.clicked", "message.replied"} {
		t.Run(event, func(t *testing.T) {
			t.Parallel()
			s, acts, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "checkout.abandoned"}, t0)
			require.NoError(t, err)
			require.Equal(t, []Action{
				send("slack-reminder", 1, "cart-reminder", "slack"),
				wake("wait-for-acknowledgement", 2, t0.Add(4*time.Hour)),
			}, acts)

			s, acts, err = Advance(w, s, Input{Kind: InputEvent, Event: event}, t0.Add(time.Hour))
			require.NoError(t, err)
			require.Equal(t, []Action{
				cancel("wait-for-acknowledgement", 2, t0.Add(4*time.Hour)),
				finish("acknowledged", 3, ReasonEnd),
			}, acts)
			require.Equal(t, StatusFinished, s.Status)
		})
	}

	t.Run("no acknowledgement escalates to email", func(t *testing.T) {
		t.Parallel()
		s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "checkout.abandoned"}, t0)
		require.NoError(t, err)
		s, acts, err := Advance(w, s, Input{Kind: InputWake, WakeSeq: 2}, t0.Add(4*time.Hour))
		require.NoError(t, err)
		require.Equal(t, []Action{
			send("email-last-chance", 3, "cart-last-chance", "email"),
			finish("done", 4, ReasonEnd),
		}, acts)
		require.Equal(t, StatusFinished, s.Status)
	})
}

func TestExitEvent(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "abandoned-checkout")

	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "checkout.abandoned"}, t0)
	require.NoError(t, err)
	s, acts, err := Advance(w, s, Input{Kind: InputEvent, Event: "checkout.completed", Data: map[string]any{"order": "o1"}}, t0.Add(time.Minute))
	require.NoError(t, err)
	require.Equal(t, []Action{
		cancel("wait-for-acknowledgement", 2, t0.Add(4*time.Hour)),
		{Kind: ActionExit, StepID: "wait-for-acknowledgement", StepSeq: 2, Reason: "checkout.completed"},
	}, acts)
	require.Equal(t, StatusExited, s.Status)
	require.False(t, s.Waiting())
	require.Zero(t, s.WakeAt)
	require.Equal(t, "exit:wait-for-acknowledgement", historyKinds(s)[len(s.History)-1])

	again, acts, err := Advance(w, s, Input{Kind: InputWake, WakeSeq: 2}, t0.Add(4*time.Hour))
	require.NoError(t, err)
	require.Empty(t, acts, "a wake-up after exit does nothing")
	require.Equal(t, s, again)
}

func TestExitDuringDelay(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "trial-onboarding")

	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	s, _, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: 2}, t0.Add(48*time.Hour))
	require.NoError(t, err)
	require.Equal(t, WaitKindDelay, s.WaitKind)

	// An until event of an earlier wait does not apply to a delayed send.
	same, acts, err := Advance(w, s, Input{Kind: InputEvent, Event: "project.created"}, t0.Add(49*time.Hour))
	require.NoError(t, err)
	require.Empty(t, acts)
	require.Equal(t, s, same)

	s, acts, err = Advance(w, s, Input{Kind: InputEvent, Event: "subscription.purchased"}, t0.Add(49*time.Hour))
	require.NoError(t, err)
	monday9 := time.Date(2026, 3, 30, 9, 0, 0, 0, time.UTC) // no location: UTC
	require.Equal(t, []Action{
		cancel("nudge", 3, monday9),
		{Kind: ActionExit, StepID: "nudge", StepSeq: 3, Reason: "subscription.purchased"},
	}, acts)
	require.Equal(t, StatusExited, s.Status)
}

func TestUnrelatedEventChangesNothing(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "trial-onboarding")

	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Data: map[string]any{"plan": "pro"}}, t0)
	require.NoError(t, err)
	for _, event := range []string{"page.viewed", "trial.started", "checkout.completed"} {
		got, acts, err := Advance(w, s, Input{Kind: InputEvent, Event: event, Data: map[string]any{"plan": "free"}}, t0.Add(time.Hour))
		require.NoError(t, err)
		require.Empty(t, acts)
		require.Equal(t, s, got, "an event the journey does not wait for leaves its data alone")
	}
}

func TestWakeUps(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "abandoned-checkout")
	start, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	due := t0.Add(4 * time.Hour)

	tests := []struct {
		name    string
		seq     int
		now     time.Time
		want    []Action
		changed bool
	}{
		{name: "stale sequence", seq: 1, now: due},
		{name: "future sequence", seq: 3, now: due},
		{name: "one second early re-arms", seq: 2, now: due.Add(-time.Second), want: []Action{wake("wait-for-acknowledgement", 2, due)}},
		{name: "a nanosecond early re-arms", seq: 2, now: due.Add(-1), want: []Action{wake("wait-for-acknowledgement", 2, due)}},
		{name: "on time", seq: 2, now: due, want: []Action{send("email-last-chance", 3, "cart-last-chance", "email"), finish("done", 4, ReasonEnd)}, changed: true},
		{name: "late", seq: 2, now: due.Add(time.Hour), want: []Action{send("email-last-chance", 3, "cart-last-chance", "email"), finish("done", 4, ReasonEnd)}, changed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, acts, err := Advance(w, start, Input{Kind: InputWake, WakeSeq: tt.seq}, tt.now)
			require.NoError(t, err)
			require.Equal(t, tt.want, acts)
			if tt.changed {
				require.NotEqual(t, start, s)
			} else {
				require.Equal(t, start, s)
			}
		})
	}
}

func TestReEngagementBranch(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "re-engagement")
	require.Equal(t, EntryOnce, w.Entry)

	tests := []struct {
		name     string
		customer map[string]any
		data     map[string]any
		want     string
	}{
		{name: "enterprise", customer: map[string]any{"plan": "enterprise"}, want: "winback-offer"},
		{name: "big spender", customer: map[string]any{"plan": "pro"}, data: map[string]any{"lifetime_value": 1500}, want: "winback-offer"},
		{name: "exactly 1000 as float", data: map[string]any{"lifetime_value": 1000.0}, want: "winback-offer"},
		{name: "small spender", customer: map[string]any{"plan": "pro"}, data: map[string]any{"lifetime_value": 20}, want: "feedback-request"},
		{name: "nothing known", want: "feedback-request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, acts, err := Start(w, "j1", "c1", Input{Kind: InputStart, Event: "customer.inactive", Data: tt.data}, t0)
			require.NoError(t, err)
			require.Equal(t, []Action{
				send("we-miss-you", 1, "we-miss-you", "email", "slack"),
				wake("wait-for-return", 2, t0.Add(7*24*time.Hour)),
			}, acts)

			s, acts, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: 2, Customer: tt.customer}, t0.Add(7*24*time.Hour))
			require.NoError(t, err)
			require.Len(t, acts, 2)
			require.Equal(t, send(tt.want, 4, tt.want, "email"), acts[0])
			require.Equal(t, ActionFinish, acts[1].Kind)
			require.Equal(t, ReasonEnd, acts[1].Reason)
			require.Equal(t, StatusFinished, s.Status)
		})
	}

	t.Run("customer returns", func(t *testing.T) {
		t.Parallel()
		s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
		require.NoError(t, err)
		s, acts, err := Advance(w, s, Input{Kind: InputEvent, Event: "customer.active"}, t0.Add(24*time.Hour))
		require.NoError(t, err)
		require.Equal(t, []Action{
			cancel("wait-for-return", 2, t0.Add(7*24*time.Hour)),
			finish("returned", 3, ReasonEnd),
		}, acts)
		require.Equal(t, StatusFinished, s.Status)
	})
}

func TestBranchEvaluationErrorCountsAsFalse(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: x
topic: t
trigger: go
steps:
  - id: b
    branch:
      cases:
        - if: 'data.total > 100'
          then: big
        - if: 'customer.vip'
          then: big
  - id: small
    send: {template: small}
  - id: stop
    end: true
  - id: big
    send: {template: big}
`)
	tests := []struct {
		name     string
		data     map[string]any
		customer map[string]any
		want     string
	}{
		{name: "matches", data: map[string]any{"total": 150}, want: "big"},
		{name: "second case", data: map[string]any{"total": 10}, customer: map[string]any{"vip": true}, want: "big"},
		{name: "no case, no default: next step", data: map[string]any{"total": 10}, want: "small"},
		{name: "missing value", want: "small"},
		{name: "wrong type", data: map[string]any{"total": "lots"}, customer: map[string]any{"vip": "yes"}, want: "small"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, acts, err := Start(w, "j1", "c1", Input{Kind: InputStart, Data: tt.data, Customer: tt.customer}, t0)
			require.NoError(t, err)
			require.Equal(t, tt.want, acts[0].Template)
			require.Equal(t, StatusFinished, s.Status)
			require.Equal(t, "branch", s.History[1].Kind)
		})
	}
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	require.Contains(t, s.History[1].Detail, "case 1 failed")
	require.Contains(t, s.History[1].Detail, "no case matched")
}

func TestDelayUntilLocal(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: x
topic: t
trigger: go
steps:
  - id: morning
    delay_until_local: "09:00"
    send: {template: hello}
`)
	utc := func(y int, m time.Month, d, h, min int) time.Time { return time.Date(y, m, d, h, min, 0, 0, time.UTC) }
	tests := []struct {
		name string
		zone string
		now  time.Time
		want time.Time // zero: send at once
	}{
		{name: "UTC later today", zone: "UTC", now: utc(2026, 3, 27, 6, 0), want: utc(2026, 3, 27, 9, 0)},
		{name: "UTC tomorrow", zone: "UTC", now: utc(2026, 3, 27, 9, 1), want: utc(2026, 3, 28, 9, 0)},
		{name: "exactly 09:00 sends now", zone: "UTC", now: utc(2026, 3, 27, 9, 0)},
		// Warsaw springs forward on Sunday 29 March 2026 (CET+1 → CEST+2).
		{name: "Warsaw before the change", zone: "Europe/Warsaw", now: utc(2026, 3, 27, 9, 0), want: utc(2026, 3, 28, 8, 0)},
		{name: "Warsaw across the change", zone: "Europe/Warsaw", now: utc(2026, 3, 28, 9, 0), want: utc(2026, 3, 29, 7, 0)},
		{name: "Warsaw on the change night", zone: "Europe/Warsaw", now: utc(2026, 3, 29, 0, 30), want: utc(2026, 3, 29, 7, 0)},
		// New York falls back on Sunday 1 November 2026 (EDT-4 → EST-5).
		{name: "New York across fall back", zone: "America/New_York", now: utc(2026, 10, 31, 14, 0), want: utc(2026, 11, 1, 14, 0)},
		{name: "New York across spring forward", zone: "America/New_York", now: utc(2026, 3, 7, 15, 0), want: utc(2026, 3, 8, 13, 0)},
		{name: "Tokyo is already tomorrow", zone: "Asia/Tokyo", now: utc(2026, 3, 27, 23, 0), want: utc(2026, 3, 28, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			loc := mustLoc(t, tt.zone)
			s, acts, err := Start(w, "j1", "c1", Input{Kind: InputStart, Location: loc}, tt.now)
			require.NoError(t, err)
			if tt.want.IsZero() {
				require.Equal(t, []Action{send("morning", 1, "hello"), finish("morning", 1, ReasonCompleted)}, acts)
				return
			}
			require.Len(t, acts, 1)
			require.Equal(t, ActionScheduleWake, acts[0].Kind)
			require.True(t, tt.want.Equal(acts[0].At), "want %s, got %s", tt.want, acts[0].At.UTC())
			require.Equal(t, 9, acts[0].At.In(loc).Hour())
			require.Equal(t, WaitKindDelay, s.WaitKind)

			s, acts, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: 1, Location: loc}, acts[0].At)
			require.NoError(t, err)
			require.Equal(t, []Action{send("morning", 1, "hello"), finish("morning", 1, ReasonCompleted)}, acts)
			require.Equal(t, StatusFinished, s.Status)
		})
	}
}

// A loop through a wait is allowed; each visit of the wait has its own
// StepSeq, so a wake-up from an earlier visit is ignored.
func TestLoopThroughWait(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: x
topic: t
trigger: go
exit_on: [stop]
steps:
  - id: remind
    send: {template: reminder, mode: all}
  - id: pause
    wait: {for: 1d, until: done, then: finished}
  - id: again
    branch:
      cases:
        - if: 'true'
          then: remind
  - id: finished
    end: true
`)
	s, acts, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	require.Equal(t, []Action{
		{Kind: ActionSend, StepID: "remind", StepSeq: 1, Template: "reminder", Mode: ModeAll},
		wake("pause", 2, t0.Add(24*time.Hour)),
	}, acts)

	now := t0
	for day := 1; day <= 40; day++ {
		now = now.Add(24 * time.Hour)
		prev := s
		s, acts, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: s.StepSeq}, now)
		require.NoError(t, err)
		require.Len(t, acts, 2)
		require.Equal(t, ActionSend, acts[0].Kind)
		require.Equal(t, prev.StepSeq+3, s.StepSeq)
		require.Equal(t, wake("pause", s.StepSeq, now.Add(24*time.Hour)), acts[1])

		// The previous visit's wake-up, delivered twice, is stale now.
		same, acts, err := Advance(w, s, Input{Kind: InputWake, WakeSeq: prev.StepSeq}, now.Add(24*time.Hour))
		require.NoError(t, err)
		require.Empty(t, acts)
		require.Equal(t, s, same)
	}
	require.Len(t, s.History, MaxHistory, "history is capped")
	require.Equal(t, "wait", s.History[MaxHistory-1].Kind)

	s, acts, err = Advance(w, s, Input{Kind: InputEvent, Event: "done"}, now.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, []Action{
		cancel("pause", 122, now.Add(24*time.Hour)),
		finish("finished", 123, ReasonEnd),
	}, acts)
}

func TestRuntimeLoopGuard(t *testing.T) {
	t.Parallel()
	// Parse refuses this workflow; build it by hand to reach the guard.
	w := &Workflow{ID: "spin", Version: "1", Steps: []*Step{
		{ID: "a", Kind: KindBranch, Branch: &Branch{Default: "b"}},
		{ID: "b", Kind: KindBranch, Branch: &Branch{Default: "a"}},
	}, index: map[string]int{"a": 0, "b": 1}}
	_, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.ErrorContains(t, err, "ran 1000 steps without waiting")
}

func TestStateSurvivesJSON(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "re-engagement")
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Data: map[string]any{"lifetime_value": 2500}}, t0)
	require.NoError(t, err)

	raw, err := json.Marshal(s)
	require.NoError(t, err)
	var back State
	require.NoError(t, json.Unmarshal(raw, &back))
	require.Equal(t, s.Step, back.Step)
	require.True(t, s.WakeAt.Equal(back.WakeAt))

	// Numbers come back as float64; the branch still compares them.
	_, acts, err := Advance(w, back, Input{Kind: InputWake, WakeSeq: back.StepSeq}, back.WakeAt)
	require.NoError(t, err)
	require.Equal(t, "winback-offer", acts[0].Template)
}

func TestAdvanceDoesNotAliasInput(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "trial-onboarding")
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart, Data: map[string]any{"a": 1}}, t0)
	require.NoError(t, err)
	before, err := json.Marshal(s)
	require.NoError(t, err)
	_, _, err = Advance(w, s, Input{Kind: InputEvent, Event: "project.created", Data: map[string]any{"a": 2}}, t0.Add(time.Hour))
	require.NoError(t, err)
	after, err := json.Marshal(s)
	require.NoError(t, err)
	require.JSONEq(t, string(before), string(after))
}

func TestBadInputs(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "trial-onboarding")
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.NoError(t, err)
	other := mustExample(t, "abandoned-checkout")

	tests := []struct {
		name string
		run  func() error
		want string
	}{
		{name: "start with a wake", run: func() error { _, _, err := Start(w, "j", "c", Input{Kind: InputWake}, t0); return err }, want: "invalid"},
		{name: "start without workflow", run: func() error { _, _, err := Start(nil, "j", "c", Input{}, t0); return err }, want: "invalid"},
		{name: "advance with start", run: func() error { _, _, err := Advance(w, s, Input{Kind: InputStart}, t0); return err }, want: "invalid"},
		{name: "unknown kind", run: func() error { _, _, err := Advance(w, s, Input{Kind: "poke"}, t0); return err }, want: "invalid"},
		{name: "other workflow", run: func() error { _, _, err := Advance(other, s, Input{Kind: InputWake}, t0); return err }, want: "invalid"},
		{name: "step missing in version", run: func() error {
			bad := s
			bad.Step = "gone"
			_, _, err := Advance(w, bad, Input{Kind: InputWake, WakeSeq: bad.StepSeq}, t0)
			return err
		}, want: "internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.run()
			require.Error(t, err)
			require.Equal(t, tt.want, errorCode(err), fmt.Sprint(err))
		})
	}
}

func TestCanEnter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		entry               Entry
		active, everStarted bool
		want                bool
	}{
		{EntryOnceActive, false, false, true},
		{EntryOnceActive, false, true, true},
		{EntryOnceActive, true, true, false},
		{EntryOnce, false, false, true},
		{EntryOnce, false, true, false},
		{EntryOnce, true, true, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, CanEnter(&Workflow{Entry: tt.entry}, tt.active, tt.everStarted), "%+v", tt)
	}
}

func errorCode(err error) string { return herald.ErrorCode(err) }

func TestNextLocalSkippedAndRepeatedHours(t *testing.T) {
	t.Parallel()
	warsaw := mustLoc(t, "Europe/Warsaw")

	// 02:30 does not exist on 29 March 2026 in Warsaw: the send goes out
	// at 03:30 CEST, the same instant 02:30 CET would have been.
	got := nextLocal(time.Date(2026, 3, 29, 0, 0, 0, 0, time.UTC), warsaw, 2, 30)
	require.True(t, got.Equal(time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)), got.UTC().String())

	// 02:30 happens twice on 25 October 2026: one of them, never a day late.
	now := time.Date(2026, 10, 24, 23, 0, 0, 0, time.UTC)
	got = nextLocal(now, warsaw, 2, 30)
	require.False(t, got.Before(now))
	require.Equal(t, 25, got.In(warsaw).Day())
	require.Equal(t, 2, got.In(warsaw).Hour())
}

func TestExitFromOutside(t *testing.T) {
	t.Parallel()
	w := mustExample(t, "abandoned-checkout")
	s, _, err := Start(w, "j1", "c1", Input{Kind: InputStart}, t0)
	require.NoError(t, err)

	now := t0.Add(time.Minute)
	exited, acts := Exit(s, "opted out of checkout", now)
	require.Equal(t, []Action{
		cancel("wait-for-acknowledgement", 2, t0.Add(4*time.Hour)),
		{Kind: ActionExit, StepID: "wait-for-acknowledgement", StepSeq: 2, Reason: "opted out of checkout"},
	}, acts)
	require.Equal(t, StatusExited, exited.Status)
	require.Zero(t, exited.WakeAt)
	require.Equal(t, now, exited.UpdatedAt)
	require.Equal(t, HistoryEntry{At: now, Step: "wait-for-acknowledgement", Seq: 2, Kind: "exit", Detail: "opted out of checkout"}, exited.History[len(exited.History)-1])
	require.Len(t, s.History, len(exited.History)-1, "the input state is not modified")

	again, acts := Exit(exited, "again", now)
	require.Empty(t, acts)
	require.Equal(t, exited, again)
}
