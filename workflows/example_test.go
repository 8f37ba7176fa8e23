package workflows_test

import (
	"fmt"
	"time"

	"github.com/heraldhq/herald/workflows"
)

func Example() {
	src := `
id: trial-onboarding
topic: onboarding
trigger: trial.started
exit_on: [subscription.purchased]
steps:
  - id: welcome
    send: { template: welcome, channels: [slack, email] }
  - id: wait-for-project
    wait: { for: 48h, until: project.created, then: congrats }
  - id: nudge
    send: { template: nudge, channels: [email] }
  - id: done
    end: true
  - id: congrats
    send: { template: congrats }
`
	w, err := workflows.Parse("trial-onboarding.yaml", []byte(src), workflows.LoadOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	show := func(acts []workflows.Action) {
		for _, a := range acts {
			switch a.Kind {
			case workflows.ActionSend:
				fmt.Printf("  send %s via %v\n", a.Template, a.Channels)
			case workflows.ActionScheduleWake, workflows.ActionCancelWake:
				fmt.Printf("  %s %s #%d at %s\n", a.Kind, a.StepID, a.StepSeq, a.At.Format(time.DateTime))
			default:
				fmt.Printf("  %s (%s)\n", a.Kind, a.Reason)
			}
		}
	}

	// The clock is an argument: the caller owns time.
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	fmt.Println("trial.started:")
	s, acts, _ := workflows.Start(w, "journey-1", "customer-1", workflows.Input{Kind: workflows.InputStart, Event: "trial.started"}, now)
	show(acts)

	fmt.Println("project.created, 5 hours later:")
	s, acts, _ = workflows.Advance(w, s, workflows.Input{Kind: workflows.InputEvent, Event: "project.created"}, now.Add(5*time.Hour))
	show(acts)
	fmt.Println("status:", s.Status)

	// Output:
	// trial.started:
	//   send welcome via [slack email]
	//   schedule_wake wait-for-project #2 at 2026-03-04 09:00:00
	// project.created, 5 hours later:
	//   cancel_wake wait-for-project #2 at 2026-03-04 09:00:00
	//   send congrats via []
	//   finish (completed)
	// status: finished
}

func ExampleLoad() {
	src := []byte(`id: broken
topic: onboarding
steps:
  - id: hello
    send: { template: hello, channels: [fax] }
  - id: wait
    wait: { for: 2 days }
`)
	_, err := workflows.Parse("broken.yaml", src, workflows.LoadOptions{})
	fmt.Println(err)
	// Output:
	// broken.yaml:1: missing trigger
	// broken.yaml:5: step "hello": unknown channel "fax" (known: email, slack)
	// broken.yaml:7: step "wait": bad duration "2 days": use s, m, h, d, w as in 30m, 48h, 7d or 1h30m
}

// A split sends each customer down one arm, the same one every time; a
// digest collects an event for a window and hands the next send what it
// collected.
func Example_splitAndDigest() {
	src := `
id: comment-digest
topic: product-updates
trigger: comment.created
steps:
  - id: test
    split: [{ weight: 90, then: collect }, { weight: 10, then: holdout }]
  - id: collect
    digest: { event: comment.created, for: 1h, max: 20, then: send-digest }
  - id: holdout
    end: true
  - id: send-digest
    send: { template: comment-digest }
`
	w, err := workflows.Parse("comment-digest.yaml", []byte(src), workflows.LoadOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	step, _ := w.Step("test")
	fmt.Println("customer-1 is in arm", w.Assign("customer-1", step).Then)

	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	comment := func(id, author string) workflows.Input {
		return workflows.Input{Kind: workflows.InputEvent, Event: "comment.created", EventID: id, Data: map[string]any{"author": author}}
	}
	first := comment("e1", "Grace")
	first.Kind = workflows.InputStart
	s, _, _ := workflows.Start(w, "journey-1", "customer-1", first, now)
	s, _, _ = workflows.Advance(w, s, comment("e2", "Linus"), now.Add(10*time.Minute))
	s, _, _ = workflows.Advance(w, s, comment("e2", "Linus"), now.Add(11*time.Minute)) // a retried task: collected once
	fmt.Println("collected:", len(s.Digest.Events))

	s, acts, _ := workflows.Advance(w, s, workflows.Input{Kind: workflows.InputWake, WakeSeq: s.StepSeq}, s.WakeAt)
	fmt.Println(acts[0].Kind, acts[0].Template, s.Data["digest"])
	// Output:
	// customer-1 is in arm collect
	// collected: 2
	// send comment-digest map[count:2 events:[map[author:Grace] map[author:Linus]]]
}
