package engine_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

var trialData = map[string]any{"plan": "Pro", "number": "R-1"}

func event(t *testing.T, b *bundle, name string, data map[string]any) {
	t.Helper()
	_, err := b.e.Event(context.Background(), herald.Event{CustomerID: "c1", Name: name, Data: data}, "test")
	require.NoError(t, err)
}

func subjects(b *bundle) []string {
	var out []string
	for _, m := range b.smtp.Messages() {
		for _, line := range strings.Split(string(m.Data), "\r\n") {
			if strings.HasPrefix(line, "Subject: ") {
				out = append(out, strings.TrimPrefix(line, "Subject: "))
			}
		}
	}
	return out
}

func journeys(t *testing.T, b *bundle) []workflows.State {
	t.Helper()
	js, err := b.e.Journeys(context.Background(), "c1")
	require.NoError(t, err)
	return js
}

// startWaiting starts the onboarding journey for c1 and returns it once it
// waits and its follow-up task is scheduled (just after the state is saved).
func startWaiting(t *testing.T, b *bundle) workflows.State {
	t.Helper()
	event(t, b, "trial.started", trialData)
	eventually(t, func() bool { js := journeys(t, b); return len(js) == 1 && js[0].Waiting() }, "waiting")
	j := journeys(t, b)[0]
	eventually(t, func() bool {
		_, err := b.insp.GetTaskInfo(b.e.Queue("onboarding"), engine.WakeTaskID(j.JourneyID, j.StepSeq))
		return err == nil
	}, "the follow-up is scheduled under its deterministic ID")
	return j
}

func TestJourneyFollowUpFiresAfterWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	start := time.Now()
	event(t, b, "trial.started", trialData)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "welcome sent")
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "the follow-up is sent after the wait")
	require.GreaterOrEqual(t, time.Since(start), 3*time.Second, "not before the wait is over")
	eventually(t, func() bool {
		js := journeys(t, b)
		return len(js) == 1 && js[0].Status == workflows.StatusFinished
	}, "journey finished")
	require.Equal(t, []string{"Hello Ada", "Hello Ada"}, subjects(b))
}

func TestJourneyUntilEventJumps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	startWaiting(t, b)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "welcome sent")
	event(t, b, "project.created", map[string]any{"number": "R-2"})
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "congrats sent at once")
	time.Sleep(4 * time.Second) // past the original wake-up
	require.Equal(t, 2, b.smtp.Count(), "the pending follow-up did nothing")
	require.Equal(t, "Your receipt R-2", subjects(b)[1], "the event's data reaches the template")
}

func TestJourneyExitOnCancelsFollowUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	js := []workflows.State{startWaiting(t, b)}
	event(t, b, "subscription.purchased", nil)
	eventually(t, func() bool { js := journeys(t, b); return len(js) == 1 && js[0].Status == workflows.StatusExited }, "exited")
	_, err := b.insp.GetTaskInfo(b.e.Queue("onboarding"), engine.WakeTaskID(js[0].JourneyID, js[0].StepSeq))
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "the follow-up is deleted")
	time.Sleep(3500 * time.Millisecond)
	require.Equal(t, 1, b.smtp.Count())
}

func TestTopicOptOutLeavesJourney(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	startWaiting(t, b)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "welcome sent")
	_, err := b.e.SetPreferences(context.Background(), "c1", preferences.Patch{Topics: map[string]bool{"onboarding": false}}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	js := journeys(t, b)
	require.Equal(t, workflows.StatusExited, js[0].Status)
	time.Sleep(3500 * time.Millisecond)
	require.Equal(t, 1, b.smtp.Count())
}

func TestEntryOnceActive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	event(t, b, "trial.started", trialData)
	eventually(t, func() bool { return len(journeys(t, b)) == 1 }, "started")
	event(t, b, "trial.started", trialData)
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if strings.Contains(e.Summary, "not started: entry rule") {
				return true
			}
		}
		return false
	}, "second trigger refused while running")
	require.Len(t, journeys(t, b), 1)
}

func TestWatchdogRepairsDeletedWakeUp(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	js := []workflows.State{startWaiting(t, b)}
	require.NoError(t, b.insp.DeleteTask(b.e.Queue("onboarding"), engine.WakeTaskID(js[0].JourneyID, js[0].StepSeq)), "an operator deletes the follow-up by hand")
	// Make it overdue past the watchdog's grace, then run the watchdog.
	require.NoError(t, b.rdb.ZAdd(context.Background(), "herald:journeys:waiting", redisZ(time.Now().Add(-time.Minute), "c1|"+js[0].JourneyID)).Err())
	cl := asynq.NewClientFromRedisClient(b.rdb)
	_, err := cl.Enqueue(asynq.NewTask(wire.TypeWatchdog, nil), asynq.Queue("critical"))
	require.NoError(t, err)
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "the repaired follow-up is sent")
	eventually(t, func() bool { return testutilCounter(b) == 1 }, "the repair is counted")
}

func TestEarlyWakeUpDoesNotActBeforeDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	start := time.Now()
	js := []workflows.State{startWaiting(t, b)}
	// A copy of the wake-up that fires right now, long before it is due.
	cl := asynq.NewClientFromRedisClient(b.rdb)
	_, err := cl.Enqueue(asynq.NewTask(wire.TypeWake, wire.Encode(wire.Wake{JourneyID: js[0].JourneyID, CustomerID: "c1", WorkflowID: "onboard", Version: js[0].Version, StepID: js[0].Step, StepSeq: js[0].StepSeq})), asynq.Queue("critical"))
	require.NoError(t, err)
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "follow-up sent once due")
	require.False(t, b.smtp.Messages()[1].At.Before(js[0].WakeAt), "not before its due time (%v < %v, started %v)", b.smtp.Messages()[1].At, js[0].WakeAt, start)
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, 2, b.smtp.Count(), "and only once")
}

func TestRunningJourneyFinishesOnItsVersion(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	v1 := startWaiting(t, b).Version

	src, err := os.ReadFile("testdata/workflows/onboard.yaml")
	require.NoError(t, err)
	v2src := strings.Replace(string(src), "- id: nudge\n    send: { template: hello", "- id: nudge\n    send: { template: receipt", 1)
	w2, err := workflows.Parse("onboard.yaml", []byte(v2src), workflows.LoadOptions{})
	require.NoError(t, err)
	require.NotEqual(t, v1, w2.Version, "a changed file is a new version")
	b.e.SetContent(nil, workflows.NewSet(w2)) // a reload: v1 is no longer loaded

	eventually(t, func() bool { return b.smtp.Count() == 2 }, "follow-up sent")
	require.Equal(t, "Hello Ada", subjects(b)[1], "the running journey finished on the version it started on")
}

func redisZ(at time.Time, member string) redis.Z {
	return redis.Z{Score: float64(at.Unix()), Member: member}
}

func testutilCounter(b *bundle) float64 {
	return promtest.ToFloat64(b.e.Metrics().WatchdogRepairs)
}

// A customer who opted out of a workflow's topic, or paused everything,
// does not start its journey, and the timeline says why.
func TestOptedOutCustomerStartsNoJourney(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		patch preferences.Patch
		why   string
	}{
		{"topic", preferences.Patch{Topics: map[string]bool{"onboarding": false}}, "opted out of topic onboarding"},
		{"paused", preferences.Patch{Paused: ptr(true)}, "paused all messages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.customer(t, herald.Customer{Email: "ada@example.com"})
			_, err := b.e.SetPreferences(context.Background(), "c1", tc.patch, preferences.Actor{Kind: "customer"}, "preference_page")
			require.NoError(t, err)
			event(t, b, "trial.started", trialData)
			eventually(t, func() bool {
				for _, e := range b.timeline(t, "c1") {
					if e.Kind == herald.KindJourney && strings.Contains(e.Summary, "not started by trial.started: the customer "+tc.why) {
						return true
					}
				}
				return false
			}, "the timeline says why no journey started")
			require.Empty(t, journeys(t, b))
			require.Zero(t, b.smtp.Count()+b.slack.Count())
		})
	}
}

func ptr[T any](v T) *T { return &v }

// The timeline answers "did this event do anything?" and keeps only a
// bounded summary of its data.
func TestEventLineSaysWhenNothingMatchedAndStaysSmall(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	event(t, b, "nothing.happened", map[string]any{
		"big": strings.Repeat("x", 5000), "obj": map[string]any{"a": 1, "b": 2}, "plan": "Pro",
	})
	var line herald.TimelineEntry
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if e.Kind == herald.KindEvent {
				line = e
				return true
			}
		}
		return false
	}, "the event is on the timeline")
	require.Equal(t, "event nothing.happened from test (matched no workflow)", line.Summary)
	require.Equal(t, "(text, 5000 bytes)", line.Data["big"])
	require.Equal(t, "(object, 2 keys)", line.Data["obj"])
	require.Equal(t, "Pro", line.Data["plan"])
}

// A wait that ends by its event says so on the journey's line.
func TestJourneyLineNamesTheEventThatEndedTheWait(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	startWaiting(t, b)
	event(t, b, "project.created", nil)
	eventually(t, func() bool {
		return hasSummary(b.timeline(t, "c1"), "journey onboard step wait-for-project: project.created → congrats")
	}, "the journey line names the event and the jump")
}
