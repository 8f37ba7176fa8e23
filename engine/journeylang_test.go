package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/webhooks"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// fakeClock is the engine's clock in these tests: frozen unless moved, so
// which window an event falls in does not depend on how busy the machine
// is.
type fakeClock struct{ ns atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time              { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration)         { c.ns.Add(int64(d)) }
func (c *fakeClock) engineOpt(o *engine.Options) { o.Now = c.Now }

// setupJourneyLang runs an engine on the split, goal and digest test
// workflows.
func setupJourneyLang(t *testing.T, opts ...func(*engine.Options)) (*bundle, *workflows.Set) {
	t.Helper()
	tset, err := templates.Load(os.DirFS("testdata/journeylang/templates"), templates.Options{})
	require.NoError(t, err)
	wset, err := workflows.Load(os.DirFS("testdata/journeylang/workflows"), workflows.LoadOptions{TemplateExists: tset.Has})
	require.NoError(t, err)
	opts = append(opts, func(o *engine.Options) { o.Workflows = wset })
	return setupWith(t, 4, "testdata/journeylang/templates", opts...), wset
}

func eventFor(t *testing.T, b *bundle, customerID, name string, data map[string]any) {
	t.Helper()
	_, err := b.e.Event(context.Background(), herald.Event{CustomerID: customerID, Name: name, Data: data}, "test")
	require.NoError(t, err)
}

func latestJourney(t *testing.T, b *bundle, customerID, workflowID string) (workflows.State, bool) {
	t.Helper()
	js, err := b.e.Journeys(context.Background(), customerID)
	require.NoError(t, err)
	var out workflows.State
	found := false
	for _, j := range js {
		if j.WorkflowID == workflowID && (!found || j.StartedAt.After(out.StartedAt)) {
			out, found = j, true
		}
	}
	return out, found
}

// Each customer lands in the arm the pure assignment gives, the arm is on
// the journey and the timeline, the counts per arm add up, and a second
// journey of the same customer takes the same arm.
func TestSplitAssignsCountsAndIsStable(t *testing.T) {
	t.Parallel()
	b, wset := setupJourneyLang(t)
	w, _ := wset.Get("pricing")
	step, _ := w.Step("choose")
	const n = 60
	want := map[string]int64{}
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		b.customer(t, herald.Customer{ID: id, Email: id + "@example.com"})
		want[w.Assign(id, step).Then]++
		eventFor(t, b, id, "trial.started", map[string]any{"variant": "x"})
	}
	finished := func(round int) func() bool {
		return func() bool {
			for i := range n {
				j, ok := latestJourney(t, b, fmt.Sprintf("s%d", i), "pricing")
				if !ok || j.Status != workflows.StatusFinished || j.StartedAt.IsZero() {
					return false
				}
				js, _ := b.e.Journeys(context.Background(), fmt.Sprintf("s%d", i))
				if len(js) < round {
					return false
				}
			}
			return true
		}
	}
	eventually(t, finished(1), "every journey ran through its arm")
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		j, _ := latestJourney(t, b, id, "pricing")
		require.Equal(t, map[string]string{"choose": w.Assign(id, step).Then}, j.Arms, "customer %s", id)
	}
	tl := b.timeline(t, "s0")
	require.True(t, slicesContainsFunc(tl, func(e herald.TimelineEntry) bool {
		return strings.Contains(e.Summary, "step choose: split, arm "+w.Assign("s0", step).Then)
	}), "the arm is on the timeline")

	counts, err := b.e.WorkflowCounts(context.Background(), "pricing")
	require.NoError(t, err)
	require.EqualValues(t, n, counts.Started)
	got := map[string]int64{}
	for _, a := range counts.Arms {
		require.Equal(t, "choose", a.Step)
		got[a.Arm] = a.Entered
	}
	require.Equal(t, want, got)
	require.EqualValues(t, want["variant-a"]+want["variant-b"], int64(b.smtp.Count()), "the holdout gets no message")

	// Re-entry: the journeys ended, the trigger starts new ones, each in
	// the customer's arm again.
	for i := range n {
		eventFor(t, b, fmt.Sprintf("s%d", i), "trial.started", map[string]any{"variant": "x"})
	}
	eventually(t, finished(2), "second journeys ran")
	for i := range n {
		id := fmt.Sprintf("s%d", i)
		js, err := b.e.Journeys(context.Background(), id)
		require.NoError(t, err)
		require.Len(t, js, 2)
		require.Equal(t, js[0].Arms, js[1].Arms, "customer %s changed arm on re-entry", id)
	}
	counts, err = b.e.WorkflowCounts(context.Background(), "pricing")
	require.NoError(t, err)
	for _, a := range counts.Arms {
		require.Equal(t, 2*want[a.Arm], a.Entered)
	}
}

func slicesContainsFunc[T any](s []T, f func(T) bool) bool {
	for _, v := range s {
		if f(v) {
			return true
		}
	}
	return false
}

// A goal reached after a branch, while the journey waits for the same
// event, counts one conversion; the event again counts nothing. A goal
// reached after the journey ended still counts, for the journey's arm.
func TestGoalCountsOnce(t *testing.T) {
	t.Parallel()
	b, wset := setupJourneyLang(t)
	b.customer(t, herald.Customer{ID: "c1", Email: "ada@example.com", Attributes: map[string]any{"plan": "free"}})
	eventFor(t, b, "c1", "project.created", map[string]any{"variant": "x"})
	eventually(t, func() bool { j, ok := latestJourney(t, b, "c1", "upgrade"); return ok && j.Waiting() }, "waits after the branch and the pitch")
	for range 2 {
		eventFor(t, b, "c1", "plan.upgraded", nil)
	}
	eventually(t, func() bool {
		tl := b.timeline(t, "c1")
		n := 0
		for _, e := range tl {
			if e.Kind == herald.KindEvent && strings.HasPrefix(e.Summary, "event plan.upgraded") {
				n++
			}
		}
		return n == 2
	}, "both goal events handled")
	j, _ := latestJourney(t, b, "c1", "upgrade")
	require.Equal(t, workflows.StatusFinished, j.Status)
	require.False(t, j.ConvertedAt.IsZero())
	counts, err := b.e.WorkflowCounts(context.Background(), "upgrade")
	require.NoError(t, err)
	require.Equal(t, redisstore.WorkflowCounts{Started: 1, Converted: 1}, counts)
	require.True(t, slicesContainsFunc(b.timeline(t, "c1"), func(e herald.TimelineEntry) bool {
		return strings.Contains(e.Summary, "reached its goal plan.upgraded")
	}))

	// Ended journey, split arm: the purchase converts it once, for its arm.
	w, _ := wset.Get("pricing")
	step, _ := w.Step("choose")
	id := "p0"
	for i := 0; w.Assign(id, step).Then != "variant-b"; i++ {
		id = fmt.Sprintf("p%d", i)
	}
	b.customer(t, herald.Customer{ID: id, Email: "p@example.com"})
	eventFor(t, b, id, "trial.started", map[string]any{"variant": "b"})
	eventually(t, func() bool {
		j, ok := latestJourney(t, b, id, "pricing")
		return ok && j.Status == workflows.StatusFinished
	}, "pricing journey ended")
	eventFor(t, b, id, "subscription.purchased", nil)
	eventFor(t, b, id, "subscription.purchased", nil)
	eventually(t, func() bool {
		c, err := b.e.WorkflowCounts(context.Background(), "pricing")
		return err == nil && c.Converted == 1
	}, "conversion counted")
	eventually(t, func() bool {
		n := 0
		for _, e := range b.timeline(t, id) {
			if strings.HasPrefix(e.Summary, "event subscription.purchased") {
				n++
			}
		}
		return n == 2
	}, "both purchases handled")
	counts, err = b.e.WorkflowCounts(context.Background(), "pricing")
	require.NoError(t, err)
	require.EqualValues(t, 1, counts.Converted)
	require.Equal(t, []redisstore.ArmCounts{{Step: "choose", Arm: "variant-b", Entered: 1, Converted: 1}}, counts.Arms)
}

// Seven comments in one window make one digest listing all seven, though
// the worker is stopped in the middle of the window and another takes
// over; a comment after the window starts the next digest, which sends
// with one comment.
func TestDigestSurvivesWorkerStop(t *testing.T) {
	t.Parallel()
	clock := newClock()
	b, _ := setupJourneyLang(t, clock.engineOpt)
	b.srv.Shutdown()
	worker := func() *asynq.Server {
		srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
			Concurrency: 4, Queues: map[string]int{"critical": 3, "default": 2, "bulk": 1}, StrictPriority: true,
			RetryDelayFunc: b.e.RetryDelay, IsFailure: b.e.IsFailure,
			TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 100 * time.Millisecond,
			ShutdownTimeout: time.Millisecond, LogLevel: asynq.FatalLevel,
		})
		require.NoError(t, srv.Start(b.e.Mux()))
		return srv
	}
	b.customer(t, herald.Customer{ID: "c1", Email: "ada@example.com"})
	sent := map[int]herald.Event{}
	comment := func(i int) {
		ev := herald.Event{CustomerID: "c1", Name: "comment.created", Data: map[string]any{"author": fmt.Sprintf("author-%d", i)}}
		id, err := b.e.Event(context.Background(), ev, "test")
		require.NoError(t, err)
		ev.ID = id
		sent[i] = ev
	}
	collected := func(n int) func() bool {
		return func() bool {
			j, ok := latestJourney(t, b, "c1", "comments")
			return ok && j.Digest != nil && len(j.Digest.Events) == n
		}
	}

	first := worker()
	for i := 1; i <= 3; i++ {
		comment(i)
	}
	eventually(t, collected(3), "three comments collected")
	// Two more while the worker is stopped abruptly: their tasks may be
	// mid-flight, put back or not yet taken.
	comment(4)
	comment(5)
	first.Shutdown()

	second := worker()
	t.Cleanup(second.Shutdown)
	comment(6)
	comment(7)
	eventually(t, collected(7), "seven comments collected")
	// A worker that died after saving the journey but before acknowledging
	// the task: asynq runs the same event again.
	client := asynq.NewClient(b.conn)
	defer client.Close()
	_, err := client.Enqueue(asynq.NewTask(wire.TypeEvent, wire.Encode(sent[3])), asynq.TaskID("e:"+sent[3].ID+":again"))
	require.NoError(t, err)
	eventually(t, func() bool {
		n := 0
		for _, e := range b.timeline(t, "c1") {
			if e.Ref == sent[3].ID && e.Kind == herald.KindEvent {
				n++
			}
		}
		return n == 2
	}, "the repeated event was handled")
	require.True(t, collected(7)(), "a repeated event is collected once")
	require.Equal(t, 0, b.smtp.Count(), "nothing is sent while the window is open")

	clock.Add(3 * time.Second) // the 2s window closes
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the digest is sent")
	body := string(b.smtp.Messages()[0].Data)
	require.Contains(t, body, "Subject: 7 new comments")
	for i := 1; i <= 7; i++ {
		require.Contains(t, body, fmt.Sprintf("comment by author-%d", i))
	}
	require.Less(t, strings.Index(body, "author-1"), strings.Index(body, "author-7"), "oldest first")

	// The next comment opens the next window: a digest of one still sends.
	comment(8)
	eventually(t, collected(1), "a new window")
	clock.Add(3 * time.Second)
	eventually(t, func() bool { return b.smtp.Count() == 2 }, "the second digest is sent")
	require.Contains(t, string(b.smtp.Messages()[1].Data), "Subject: 1 new comments")
	eventually(t, func() bool {
		js, err := b.e.Journeys(context.Background(), "c1")
		return err == nil && len(js) == 2 && js[0].Status == workflows.StatusFinished && js[1].Status == workflows.StatusFinished
	}, "both journeys finished")
	// Nothing is left that could send a third digest. The task that
	// finished the second journey may still be completing (asynq marks it
	// done after its handler returns): wait for every queue to empty.
	eventually(t, func() bool { return queuesIdle(t, b) }, "no task is left in any queue")
	require.Equal(t, 2, b.smtp.Count(), "exactly one digest per window")
	for _, e := range b.timeline(t, "c1") {
		require.NotContains(t, e.Summary, "not started", "a collected comment is not a refused start")
		require.NotContains(t, e.Summary, "matched no workflow")
	}
}

// appEvents records what the engine emits for webhooks.
type appEvents struct {
	mu     sync.Mutex
	events []webhooks.Event
}

func (a *appEvents) Emit(_ context.Context, ev webhooks.Event) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
}

func (a *appEvents) types(customerID string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, ev := range a.events {
		if ev.CustomerID == customerID {
			out = append(out, ev.Type)
		}
	}
	return out
}

// A journey tells the app it started, what happened to its message and
// that it completed; the events carry references, never the address.
func TestJourneyEmitsAppEvents(t *testing.T) {
	t.Parallel()
	rec := &appEvents{}
	b, wset := setupJourneyLang(t, func(o *engine.Options) { o.AppEvents = rec })
	w, _ := wset.Get("pricing")
	step, _ := w.Step("choose")
	id := "e0"
	for i := 0; w.Assign(id, step).Then != "variant-a"; i++ {
		id = fmt.Sprintf("e%d", i)
	}
	b.customer(t, herald.Customer{ID: id, Email: "secret-address@example.com"})
	eventFor(t, b, id, "trial.started", map[string]any{"variant": "a"})
	want := []string{webhooks.JourneyStarted, webhooks.MessageSent, webhooks.JourneyCompleted}
	eventually(t, func() bool { return len(rec.types(id)) == 3 }, "three events")
	require.Equal(t, want, rec.types(id), "in the order they happened")

	_, err := b.e.SetPreferences(context.Background(), id, preferences.Patch{Topics: map[string]bool{"onboarding": false}},
		preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	require.Contains(t, rec.types(id), webhooks.PreferencesChanged)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	require.Equal(t, []string{"topics.onboarding"}, rec.events[len(rec.events)-1].Changes)
	ids := map[string]bool{}
	for _, ev := range rec.events {
		b, err := json.Marshal(ev)
		require.NoError(t, err)
		require.NotContains(t, string(b), "secret-address", "no address in app events")
		require.NotContains(t, string(b), "Offer a", "no message body in app events")
		require.False(t, ids[ev.ID], "event IDs are unique")
		ids[ev.ID] = true
		require.False(t, ev.At.IsZero())
		switch ev.Type {
		case webhooks.MessageSent:
			require.Equal(t, "offer", ev.Message.Template)
			require.Equal(t, "email", ev.Message.Channel)
			require.Equal(t, "pricing", ev.Journey.Workflow)
			require.Equal(t, "variant-a", ev.Journey.Step)
		case webhooks.JourneyCompleted:
			require.Equal(t, workflows.ReasonEnd, ev.Reason)
		}
	}
}

// A digest lists its events in the order they happened, whatever order
// the workers handled them in (one waits for the customer's lock while
// the next goes ahead): here the later comment is handled first.
func TestDigestOrdersEventsByWhenTheyHappened(t *testing.T) {
	t.Parallel()
	b, _ := setupJourneyLang(t)
	b.customer(t, herald.Customer{ID: "c1", Email: "ada@example.com"})
	base := time.Now().UTC()
	comment := func(author string, at time.Duration) {
		_, err := b.e.Event(context.Background(), herald.Event{CustomerID: "c1", Name: "comment.created", At: base.Add(at), Data: map[string]any{"author": author}}, "test")
		require.NoError(t, err)
	}
	authors := func() []string {
		j, ok := latestJourney(t, b, "c1", "comments")
		if !ok || j.Digest == nil {
			return nil
		}
		var out []string
		for _, e := range j.Digest.Events {
			out = append(out, fmt.Sprint(e.Data["author"]))
		}
		return out
	}
	comment("first", 0)
	eventually(t, func() bool { return len(authors()) == 1 }, "the first comment starts the digest")
	comment("third", 300*time.Millisecond)
	eventually(t, func() bool { return len(authors()) == 2 }, "a later comment handled first")
	comment("second", 100*time.Millisecond)
	eventually(t, func() bool { return len(authors()) == 3 }, "all three collected")
	require.Equal(t, []string{"first", "second", "third"}, authors())
}
