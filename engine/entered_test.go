package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// everyKind passes through a step of each kind: a split, branches, a
// digest, a send held until a local time, a wait with an until event and
// an end; nap is never reached.
const everyKind = `id: every-kind
topic: onboarding
trigger: kinds.started
goal: { event: kinds.bought, within: 7d }
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
    digest: { event: kinds.note, for: 1h, max: 2 }
  - id: held
    delay_until_local: "09:00"
    send: { template: offer, channels: [email] }
  - id: pause
    wait: { for: 1h, until: kinds.bought, then: done }
  - id: nap
    wait: { for: 1h }
  - id: done
    end: true
`

// Every step a journey reaches counts as entered once per journey,
// whatever its kind, and the count holds when a journey waits there, when
// a held send goes out on wake-up, and when an event or a wake-up task
// runs again. The journey keeps the arm its split gave.
func TestEveryStepKindCountsEntered(t *testing.T) {
	t.Parallel()
	clock := newClock()
	tset, err := templates.Load(os.DirFS("testdata/journeylang/templates"), templates.Options{})
	require.NoError(t, err)
	wset, err := workflows.Load(fstest.MapFS{"every-kind.yaml": {Data: []byte(everyKind)}}, workflows.LoadOptions{TemplateExists: tset.Has})
	require.NoError(t, err)
	b := setupWith(t, 4, "testdata/journeylang/templates", clock.engineOpt, func(o *engine.Options) { o.Workflows = wset })
	w, _ := wset.Get("every-kind")
	choose, _ := w.Step("choose")
	ctx := context.Background()

	const n = 4
	arms := map[string]int64{}
	for i := range n {
		id := fmt.Sprintf("k%d", i)
		b.customer(t, herald.Customer{ID: id, Email: id + "@example.com"})
		arms[w.Assign(id, choose).Then]++
		eventFor(t, b, id, "kinds.started", map[string]any{"variant": "x"})
	}
	allAt := func(step, waitKind string) func() bool {
		return func() bool {
			for i := range n {
				j, ok := latestJourney(t, b, fmt.Sprintf("k%d", i), "every-kind")
				if !ok || j.Step != step || j.WaitKind != waitKind {
					return false
				}
			}
			return true
		}
	}
	entered := func() map[string]int64 {
		st, err := b.e.Stats(ctx, "every-kind", clock.Now().Add(-48*time.Hour))
		require.NoError(t, err)
		out := map[string]int64{}
		for step, num := range st.Steps {
			out[step] = num.Entered
		}
		return out
	}
	eventually(t, allAt("gather", workflows.WaitKindDigest), "every journey collects at the digest")
	want := map[string]int64{"choose": n, "left": arms["left"], "right": arms["right"], "gather": n,
		"held": 0, "pause": 0, "nap": 0, "done": 0}
	require.Equal(t, want, entered(), "a split, its branches and a digest still open are entered")

	js, err := b.e.CustomerJourneys(ctx, "k0")
	require.NoError(t, err)
	require.Len(t, js, 1)
	require.Equal(t, map[string]string{"choose": w.Assign("k0", choose).Then}, js[0].Arms)
	raw, err := json.Marshal(js[0])
	require.NoError(t, err)
	require.Contains(t, string(raw), `"arms":{"choose":"`+w.Assign("k0", choose).Then+`"}`)

	// Two notes fill each digest; the first note of k0 runs again.
	var firstNote herald.Event
	for i := range n {
		for k := range 2 {
			ev := herald.Event{CustomerID: fmt.Sprintf("k%d", i), Name: "kinds.note", Data: map[string]any{"k": k}}
			id, err := b.e.Event(ctx, ev, "test")
			require.NoError(t, err)
			if i == 0 && k == 0 {
				ev.ID = id
				firstNote = ev
			}
		}
	}
	eventually(t, allAt("held", workflows.WaitKindDelay), "every digest closed full and the send is held")
	client := asynq.NewClient(b.conn)
	defer client.Close()
	again := func(task *asynq.Task, id string) {
		t.Helper()
		info, err := client.Enqueue(task, asynq.TaskID(id), asynq.Queue("default"), asynq.Retention(time.Hour))
		require.NoError(t, err)
		eventually(t, func() bool {
			ti, err := b.insp.GetTaskInfo(info.Queue, info.ID)
			return err == nil && ti.State == asynq.TaskStateCompleted
		}, "the repeated task ran")
	}
	again(asynq.NewTask(wire.TypeEvent, wire.Encode(firstNote)), "e:"+firstNote.ID+":again")
	want["gather"], want["held"] = n, n
	require.Equal(t, want, entered(), "a digest closing is the same visit; a held send is entered")

	held, _ := latestJourney(t, b, "k0", "every-kind")
	clock.Add(25 * time.Hour) // past the next 09:00
	eventually(t, allAt("pause", workflows.WaitKindWait), "every held send went out and the journey waits")
	eventually(t, func() bool { return b.smtp.Count() == n }, "one offer each")
	// The wake-up of the held send, run again.
	wake := wire.Wake{JourneyID: held.JourneyID, CustomerID: "k0", WorkflowID: held.WorkflowID, Version: held.Version, StepID: held.Step, StepSeq: held.StepSeq}
	again(asynq.NewTask(wire.TypeWake, wire.Encode(wake)), engine.WakeTaskID(held.JourneyID, held.StepSeq)+":again")
	want["pause"] = n
	require.Equal(t, want, entered(), "the send after the hold is the visit already counted")

	for i := range n {
		eventFor(t, b, fmt.Sprintf("k%d", i), "kinds.bought", nil)
	}
	eventually(t, func() bool {
		for i := range n {
			j, ok := latestJourney(t, b, fmt.Sprintf("k%d", i), "every-kind")
			if !ok || j.Status != workflows.StatusFinished {
				return false
			}
		}
		return true
	}, "every journey ended")
	want["done"] = n
	require.Equal(t, want, entered())
	st, err := b.e.Stats(ctx, "every-kind", clock.Now().Add(-48*time.Hour))
	require.NoError(t, err)
	for step, num := range st.Steps {
		require.Zero(t, num.Waiting, "step %s", step)
	}
	require.Equal(t, n, b.smtp.Count())
}
