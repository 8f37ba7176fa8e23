package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
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

const waitingKey = "herald:journeys:waiting"

// startWaiting starts the onboarding journey for c1 and returns it once it
// waits: its follow-up is scheduled in the waiting index, at its wake time,
// and nothing is in asynq for it.
func startWaiting(t *testing.T, b *bundle) workflows.State {
	t.Helper()
	event(t, b, "trial.started", trialData)
	eventually(t, func() bool { js := journeys(t, b); return len(js) == 1 && js[0].Waiting() }, "waiting")
	j := journeys(t, b)[0]
	score, err := b.rdb.ZScore(context.Background(), waitingKey, "c1|"+j.JourneyID).Result()
	require.NoError(t, err)
	require.Equal(t, redisstore.WaitScore(j.WakeAt), score, "scheduled at its wake time")
	_, err = b.insp.GetTaskInfo(b.e.Queue("onboarding"), engine.WakeTaskID(j.JourneyID, j.StepSeq))
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "no task while it waits")
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
	_, err := b.rdb.ZScore(context.Background(), waitingKey, "c1|"+js[0].JourneyID).Result()
	require.ErrorIs(t, err, redis.Nil, "the follow-up is unscheduled")
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

// shortLease makes a claimed follow-up come back two seconds after its
// claim.
func shortLease(o *engine.Options) { o.WatchdogLate = 2 * time.Second }

// A worker that claimed a follow-up and died before queueing its task: the
// follow-up comes back when the claim's lease ends, is sent, and the
// repair is counted and on the timeline.
func TestWakerRearmsFollowUpOfDeadWorker(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", shortLease)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	j := startWaiting(t, b)
	// The dead worker's claim, as its waker made it when the follow-up
	// came due.
	got, err := redisstore.New(b.rdb, nil).ClaimFollowUps(context.Background(), j.WakeAt.Add(time.Millisecond), j.WakeAt.Add(2*time.Second), 10)
	require.NoError(t, err)
	require.Len(t, got, 1)
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "the follow-up is sent after the lease")
	require.False(t, b.smtp.Messages()[1].At.Before(j.WakeAt.Add(2*time.Second)), "not before the lease ended")
	eventually(t, func() bool { return testutilCounter(b) == 1 }, "the repair is counted")
	requireRepairLine(t, b, "was lost")
}

// A follow-up's task deleted by hand before it ran, or archived: the
// waker queues it again (or runs the archived one) once the lease ends.
func TestWakerRepairsDeletedOrArchivedWakeUp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		harm func(insp *asynq.Inspector, q, id string) error
		line string
	}{
		{"deleted", (*asynq.Inspector).DeleteTask, "was lost"},
		{"archived", (*asynq.Inspector).ArchiveTask, "had failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setupWith(t, 4, "testdata/templates", shortLease)
			b.customer(t, herald.Customer{Email: "ada@example.com"})
			j := startWaiting(t, b)
			eventually(t, func() bool { return b.smtp.Count() == 1 }, "welcome sent")
			q, id := b.e.Queue("onboarding"), engine.WakeTaskID(j.JourneyID, j.StepSeq)
			require.NoError(t, b.insp.PauseQueue(q))
			eventually(t, func() bool {
				info, err := b.insp.GetTaskInfo(q, id)
				return err == nil && info.State == asynq.TaskStatePending
			}, "the waker queues the follow-up when due")
			require.NoError(t, tc.harm(b.insp, q, id))
			require.NoError(t, b.insp.UnpauseQueue(q))
			eventually(t, func() bool { return b.smtp.Count() == 2 }, "the repaired follow-up is sent")
			eventually(t, func() bool { return testutilCounter(b) == 1 }, "the repair is counted")
			requireRepairLine(t, b, tc.line)
			time.Sleep(2500 * time.Millisecond) // past another lease
			require.Equal(t, 2, b.smtp.Count(), "sent once")
			require.Equal(t, 1.0, testutilCounter(b), "repaired once")
		})
	}
}

func requireRepairLine(t *testing.T, b *bundle, why string) {
	t.Helper()
	for _, e := range b.timeline(t, "c1") {
		if strings.Contains(e.Summary, "follow-up due") {
			require.Contains(t, e.Summary, why+" and has been re-armed")
			return
		}
	}
	t.Fatalf("no repair line on the timeline")
}

// Three wakers (three workers' worth) claim the same follow-ups: each is
// sent once.
func TestWakersShareFollowUps(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for range 2 {
		t.Cleanup(b.e.StartWaker(context.Background()))
	}
	const n = 20
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		b.customer(t, herald.Customer{ID: id, Email: id + "@example.com"})
		_, err := b.e.Event(context.Background(), herald.Event{CustomerID: id, Name: "trial.started", Data: trialData}, "test")
		require.NoError(t, err)
	}
	eventually(t, func() bool { return b.smtp.Count() == 2*n }, "every follow-up sent")
	eventually(t, func() bool {
		card, err := b.rdb.ZCard(context.Background(), waitingKey).Result()
		return err == nil && card == 0
	}, "nothing waits")
	time.Sleep(time.Second)
	per := map[string]int{}
	for _, m := range b.smtp.Messages() {
		per[m.To[0]]++
	}
	require.Len(t, per, n)
	for to, k := range per {
		require.Equal(t, 2, k, to)
	}
	require.Zero(t, testutilCounter(b), "nothing to repair")
}

// A wake-up for a visit the journey has left (queued just before an event
// moved it on) does nothing, and leaves the waiting index to the journey.
func TestStaleWakeUpDoesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	j := startWaiting(t, b)
	event(t, b, "project.created", map[string]any{"number": "R-2"})
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "congrats sent at once")
	eventually(t, func() bool { js := journeys(t, b); return js[0].Status == workflows.StatusFinished }, "finished")
	cl := asynq.NewClientFromRedisClient(b.rdb)
	t.Cleanup(func() { _ = cl.Close() })
	_, err := cl.Enqueue(asynq.NewTask(wire.TypeWake, wire.Encode(wire.Wake{JourneyID: j.JourneyID, CustomerID: "c1", WorkflowID: "onboard", Version: j.Version, StepID: j.Step, StepSeq: j.StepSeq})),
		asynq.Queue(b.e.Queue("onboarding")), asynq.TaskID("stale"))
	require.NoError(t, err)
	eventually(t, func() bool {
		_, err := b.insp.GetTaskInfo(b.e.Queue("onboarding"), "stale")
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, "the stale wake-up ran")
	require.Equal(t, 2, b.smtp.Count())
	card, err := b.rdb.ZCard(context.Background(), waitingKey).Result()
	require.NoError(t, err)
	require.Zero(t, card)
}

func TestEarlyWakeUpDoesNotActBeforeDue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	start := time.Now()
	js := []workflows.State{startWaiting(t, b)}
	// A claim whose lease lasts an hour (another worker's clock ran ahead),
	// then a copy of the wake-up that fires right now, long before it is
	// due: the copy puts the follow-up back at its time, so the hour's
	// lease does not hold it up.
	got, err := redisstore.New(b.rdb, nil).ClaimFollowUps(context.Background(), js[0].WakeAt.Add(time.Millisecond), time.Now().Add(time.Hour), 10)
	require.NoError(t, err)
	require.Len(t, got, 1)
	cl := asynq.NewClientFromRedisClient(b.rdb)
	_, err = cl.Enqueue(asynq.NewTask(wire.TypeWake, wire.Encode(wire.Wake{JourneyID: js[0].JourneyID, CustomerID: "c1", WorkflowID: "onboard", Version: js[0].Version, StepID: js[0].Step, StepSeq: js[0].StepSeq})), asynq.Queue("critical"))
	require.NoError(t, err)
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "follow-up sent once due")
	require.False(t, b.smtp.Messages()[1].At.Before(js[0].WakeAt), "not before its due time (%v < %v, started %v)", b.smtp.Messages()[1].At, js[0].WakeAt, start)
	time.Sleep(1500 * time.Millisecond)
	require.Equal(t, 2, b.smtp.Count(), "and only once")
	require.Zero(t, testutilCounter(b), "an early copy is no repair")
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

// The lines a journey writes most are stored as their values (an event's
// line holding the journey it started, the send's), and read back in the
// words the engine wrote them in, in the order things happened: the event,
// its send, the journey's line (the event's line is written last, with the
// journey's state).
func TestJourneyLinesStoredAsValues(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	j := startWaiting(t, b)
	eventually(t, func() bool { return len(b.timeline(t, "c1")) == 3 }, "three lines")

	raw, err := b.rdb.LRange(context.Background(), redisstore.Key("c1", "timeline"), 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, raw, 2, "the event's line holds the journey it started")
	for _, l := range raw {
		require.True(t, strings.HasPrefix(l, "["), "stored as values: %s", l)
		require.NotContains(t, l, "journey onboard", "no prose: %s", l)
	}
	var summaries []string
	for _, e := range b.timeline(t, "c1") {
		summaries = append(summaries, e.Summary)
	}
	require.Equal(t, []string{
		"journey onboard started (version " + j.Version + ") by trial.started; step wait-for-project: waiting until " + j.WakeAt.UTC().Format("2006-01-02 15:04 MST"),
		"sent hello by email (en), journey onboard step welcome",
		"event trial.started from test",
	}, summaries)
}

// A customer who never joined an opt-in topic starts none of its journeys,
// and the timeline says so, not that they opted out.
func TestNeverJoinedOptInTopicStartsNoJourney(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	useWorkflow(t, b, "id: news\ntopic: newsletter\ntrigger: trial.started\nsteps:\n  - id: s\n    send: { template: hello }\n")
	event(t, b, "trial.started", trialData)
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if e.Kind == herald.KindJourney && e.Reason == preferences.ReasonNotOptedIn &&
				strings.Contains(e.Summary, "journey news not started by trial.started: the customer has not opted in to topic newsletter (an opt-in topic)") {
				return true
			}
		}
		return false
	}, "the timeline says the customer never opted in")
	require.Empty(t, journeys(t, b))
}

// useWorkflow makes the workflow src the only one loaded.
func useWorkflow(t *testing.T, b *bundle, src string) {
	t.Helper()
	w, err := workflows.Parse("test.yaml", []byte(src), workflows.LoadOptions{})
	require.NoError(t, err)
	b.e.SetContent(nil, workflows.NewSet(w))
}

// eventAt sends an event for customer that happened at at.
func eventAt(t *testing.T, b *bundle, customer, name string, at time.Time, data map[string]any) {
	t.Helper()
	_, err := b.e.Event(context.Background(), herald.Event{CustomerID: customer, Name: name, At: at, Data: data}, "test")
	require.NoError(t, err)
}

// handled waits until customer's timeline holds n lines of the event name.
func handled(t *testing.T, b *bundle, customer, name string, n int) {
	t.Helper()
	eventually(t, func() bool {
		got := 0
		for _, e := range b.timeline(t, customer) {
			if e.Kind == herald.KindEvent && strings.Contains(e.Summary, name) {
				got++
			}
		}
		return got == n
	}, fmt.Sprintf("%s: %d %s handled", customer, n, name))
}

// A start event that happened before an exit event of its workflow, but
// reaches a worker after it (sent close together, retried, behind a
// backlog), does not start the journey the exit ended: the customer who
// bought is not nagged to buy. A start event after the exit starts one.
func TestStartHandledAfterALaterExitStartsNoJourney(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	bought := time.Now().UTC().Truncate(time.Millisecond)
	eventAt(t, b, "c1", "subscription.purchased", bought, nil)
	handled(t, b, "c1", "subscription.purchased", 1)
	// An older purchase handled later does not move the time back.
	eventAt(t, b, "c1", "subscription.purchased", bought.Add(-time.Hour), nil)
	handled(t, b, "c1", "subscription.purchased", 2)
	// Kept apart from the journeys, for a week after the last one.
	ttl, err := b.rdb.TTL(context.Background(), "herald:{c:c1}:seen").Result()
	require.NoError(t, err)
	require.Greater(t, ttl, 6*24*time.Hour)

	eventAt(t, b, "c1", "trial.started", bought.Add(-time.Second), trialData)
	var got herald.TimelineEntry
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if e.Reason == engine.ReasonExitedFirst {
				got = e
				return true
			}
		}
		return false
	}, "the timeline says why no journey started")
	require.Equal(t, herald.KindJourney, got.Kind)
	require.Contains(t, got.Summary, "journey onboard not started by trial.started")
	require.Contains(t, got.Summary, "subscription.purchased, which ends it, happened after it (at "+bought.Format(time.RFC3339Nano)+")")
	require.Equal(t, "subscription.purchased", got.Data["exit_event"])
	require.Empty(t, journeys(t, b))
	require.Equal(t, 1.0, promtest.ToFloat64(b.e.Metrics().Journeys.WithLabelValues("onboard", engine.ReasonExitedFirst)))

	eventAt(t, b, "c1", "trial.started", bought.Add(time.Second), trialData)
	eventually(t, func() bool { return len(journeys(t, b)) == 1 }, "a trial started after the purchase starts a journey")
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "and sends its welcome")
}

// A start event handled after the event its journey's wait waits for, which
// happened later, does not leave the journey waiting for what already
// happened: it goes on as if the events had come in order (welcome, then
// congrats with the later event's data), in one save, and says so.
func TestStartHandledAfterALaterUntilEventGoesOn(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	created := time.Now().UTC().Truncate(time.Millisecond)
	eventAt(t, b, "c1", "project.created", created, map[string]any{"number": "R-9"})
	handled(t, b, "c1", "project.created", 1)

	eventAt(t, b, "c1", "trial.started", created.Add(-time.Second), trialData)
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "welcome, then congrats at once")
	require.Equal(t, []string{"Hello Ada", "Your receipt R-9"}, subjects(b), "the later event's data reaches the template")
	// The journey is saved after its inline sends reach the server.
	eventually(t, func() bool {
		js := journeys(t, b)
		return len(js) == 1 && js[0].Status == workflows.StatusFinished
	}, "congrats is the last step: the journey finishes")
	js := journeys(t, b)
	line := journeyLine(t, b, "c1", js[0].JourneyID)
	require.Contains(t, line, "by trial.started (project.created, which ends its wait, happened after it and was handled first)")
	require.Contains(t, line, "step wait-for-project: project.created → congrats")
	noFollowUp(t, b, "c1", js[0]) // so no nudge

	// A project created, and handled, before the trial started does not
	// end its wait.
	b.customer(t, herald.Customer{ID: "c2", Email: "bo@example.com"})
	eventAt(t, b, "c2", "project.created", created, map[string]any{"number": "R-1"})
	handled(t, b, "c2", "project.created", 1)
	eventAt(t, b, "c2", "trial.started", created.Add(time.Second), trialData)
	eventually(t, func() bool {
		js, err := b.e.Journeys(ctx, "c2")
		return err == nil && len(js) == 1 && js[0].Waiting()
	}, "c2's journey waits for a new project")
}

// A journey whose goal event happened after its trigger but was handled
// first reaches its goal at the start: the conversion counts and, with
// the goal's exit, the journey ends after the steps the trigger ran.
func TestStartHandledAfterALaterGoalConverts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	useWorkflow(t, b, `id: upsell
topic: onboarding
trigger: trial.started
goal: { event: plan.upgraded, within: 7d, exit: true }
steps:
  - id: welcome
    send: { template: hello, channels: [email] }
  - id: pause
    wait: { for: 3s }
  - id: nudge
    send: { template: hello, channels: [email] }
`)
	upgraded := time.Now().UTC().Truncate(time.Millisecond)
	eventAt(t, b, "c1", "plan.upgraded", upgraded, nil)
	handled(t, b, "c1", "plan.upgraded", 1)

	eventAt(t, b, "c1", "trial.started", upgraded.Add(-time.Second), trialData)
	eventually(t, func() bool { js := journeys(t, b); return len(js) == 1 && js[0].Status == workflows.StatusExited }, "the journey converts and exits")
	j := journeys(t, b)[0]
	require.False(t, j.ConvertedAt.IsZero())
	counts, err := b.e.WorkflowCounts(context.Background(), "upsell")
	require.NoError(t, err)
	require.Equal(t, int64(1), counts.Converted)
	line := journeyLine(t, b, "c1", j.JourneyID)
	require.Contains(t, line, "by trial.started (its goal plan.upgraded happened after it and was handled first)")
	require.Contains(t, line, "reached its goal plan.upgraded")
	noFollowUp(t, b, "c1", j) // so no nudge
	require.Equal(t, 1, b.smtp.Count(), "the welcome")
}

// Events a journey watches that happened before its start event, but are
// handled after the start (sent close together, retried, behind a
// backlog), leave it alone: an earlier purchase does not cancel the
// reminder of a trial started since, nor an earlier project end its wait,
// nor an earlier upgrade count as its goal. The timeline says why.
func TestEventsFromBeforeTheStartLeaveTheJourneyAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	useWorkflow(t, b, `id: trial
topic: onboarding
trigger: trial.started
exit_on: [subscription.purchased]
goal: { event: plan.upgraded, within: 7d }
steps:
  - id: welcome
    send: { template: hello, channels: [email] }
  - id: wait-for-project
    wait: { for: 1h, until: project.created, then: congrats }
  - id: nudge
    send: { template: hello, channels: [email] }
  - id: congrats
    send: { template: receipt, channels: [email] }
`)
	started := time.Now().UTC().Truncate(time.Millisecond)
	eventAt(t, b, "c1", "trial.started", started, trialData)
	eventually(t, func() bool { js := journeys(t, b); return len(js) == 1 && js[0].Waiting() }, "the journey waits for a project")
	j := journeys(t, b)[0]
	require.True(t, started.Equal(j.StartedAt), "it began when its start event happened")

	for i, name := range []string{"subscription.purchased", "project.created", "plan.upgraded"} {
		eventAt(t, b, "c1", name, started.Add(-time.Duration(i+1)*time.Second), map[string]any{"number": "R-1"})
		handled(t, b, "c1", name, 1)
	}
	var lines []string
	for _, e := range b.timeline(t, "c1") {
		if e.Reason == engine.ReasonPredates {
			require.Equal(t, j.JourneyID, e.Ref)
			lines = append(lines, e.Summary)
		}
	}
	require.Len(t, lines, 3, "one line per event left aside")
	require.Contains(t, lines[2], "journey trial not moved by subscription.purchased: it happened (at "+started.Add(-time.Second).Format(time.RFC3339Nano)+
		") before the event that started the journey (at "+started.Format(time.RFC3339Nano)+")")
	now := journeys(t, b)[0]
	require.Equal(t, workflows.StatusActive, now.Status)
	require.Equal(t, "wait-for-project", now.Step)
	require.True(t, now.ConvertedAt.IsZero(), "no conversion")
	require.Equal(t, 1, b.smtp.Count(), "the welcome only")

	// The same events, happened since, move it.
	eventAt(t, b, "c1", "project.created", time.Now().UTC(), map[string]any{"number": "R-2"})
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "congrats")
	require.Equal(t, []string{"Hello Ada", "Your receipt R-2"}, subjects(b))
}

// journeyLine returns the summary of the customer's newest line about
// journey id.
func journeyLine(t *testing.T, b *bundle, customer, id string) string {
	t.Helper()
	for _, e := range b.timeline(t, customer) {
		if e.Kind == herald.KindJourney && e.Ref == id {
			return e.Summary
		}
	}
	return ""
}

// noFollowUp checks that nothing will move journey j again: it is not in
// the waiting index and no wake-up task of its step is in asynq (pending,
// scheduled, retrying or archived).
func noFollowUp(t *testing.T, b *bundle, customer string, j workflows.State) {
	t.Helper()
	_, err := b.rdb.ZScore(context.Background(), waitingKey, customer+"|"+j.JourneyID).Result()
	require.ErrorIs(t, err, redis.Nil, "no follow-up is scheduled")
	for seq := 1; seq <= j.StepSeq; seq++ {
		_, err = b.insp.GetTaskInfo(b.e.Queue("onboarding"), engine.WakeTaskID(j.JourneyID, seq))
		require.ErrorIs(t, err, asynq.ErrTaskNotFound, "no wake-up task for step visit %d", seq)
	}
}

// An event whose data a send the journey makes later with that data alone
// (after a wait that times out) cannot render is refused at the door, as
// one its first send cannot render is: the send would fail for every
// customer whose journey reaches it, days later.
func TestEventRefusedWhenALaterSendCannotRenderIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	useWorkflow(t, b, `id: drip
topic: onboarding
trigger: trial.started
steps:
  - id: welcome
    send: { template: hello, channels: [email] }
  - id: pause
    wait: { for: 48h, until: project.created, then: thanks }
  - id: reminder
    send: { template: receipt, channels: [email] }
  - id: done
    end: true
  - id: thanks
    send: { template: receipt, channels: [email] }
`)
	_, err := b.e.Event(ctx, herald.Event{CustomerID: "c1", Name: "trial.started", Data: map[string]any{"plan": "Pro"}}, "test")
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
	require.ErrorContains(t, err, `data: workflow "drip" reaches step "reminder" after "pause" with the trigger's data alone, and its template "receipt" reads key "number"`)
	require.Empty(t, journeys(t, b), "nothing started")

	_, err = b.e.Event(ctx, herald.Event{CustomerID: "c1", Name: "trial.started", Data: trialData}, "test")
	require.NoError(t, err)
	eventually(t, func() bool { js := journeys(t, b); return len(js) == 1 && js[0].Waiting() }, "the journey waits")
	require.Equal(t, 1, b.smtp.Count())
}

// An A/B split draws its arms by chance, never by the data: an event whose
// data one arm's template cannot render is refused, since every customer
// drawn into that arm would get a failed send.
func TestEventRefusedWhenASplitArmCannotRenderIt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	useWorkflow(t, b, `id: ab
topic: onboarding
trigger: trial.started
steps:
  - id: pick
    split:
      - { weight: 50, then: plain }
      - { weight: 50, then: with-receipt }
  - id: plain
    send: { template: hello, channels: [email] }
  - id: plain-end
    end: true
  - id: with-receipt
    send: { template: receipt, channels: [email] }
`)
	_, err := b.e.Event(ctx, herald.Event{CustomerID: "c1", Name: "trial.started", Data: map[string]any{"plan": "Pro"}}, "test")
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
	require.ErrorContains(t, err, `data: workflow "ab" reaches step "with-receipt" in an arm of split "pick" with the trigger's data alone, and its template "receipt" reads key "number"`)
	require.Empty(t, journeys(t, b), "nothing started")

	_, err = b.e.Event(ctx, herald.Event{CustomerID: "c1", Name: "trial.started", Data: trialData}, "test")
	require.NoError(t, err)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the arm drawn sends")
}
