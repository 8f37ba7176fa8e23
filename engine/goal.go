package engine

import (
	"context"
	"fmt"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
)

// WorkflowCounts returns a workflow's journey numbers: started, converted
// (reached the goal) and, per split arm, entered and converted.
func (e *Engine) WorkflowCounts(ctx context.Context, workflowID string) (redisstore.WorkflowCounts, error) {
	return e.st.WorkflowCounts(ctx, workflowID)
}

// countJourney queues, with the journey's state, what a transition adds to
// its workflow's counters and, for a journey of a workflow with a goal
// that starts, the index a later goal event finds it by. Counting rides on
// the state's own write: a retried task finds the state moved on and
// counts nothing twice.
func (e *Engine) countJourney(ctx context.Context, n *notes, w *workflows.Workflow, prev, next workflows.State, actions []workflows.Action) {
	c := redisstore.JourneyCounts{Started: prev.JourneyID == ""}
	for _, a := range actions {
		switch a.Kind {
		case workflows.ActionSplit:
			if c.Arms == nil {
				c.Arms = map[string]string{}
			}
			c.Arms[a.StepID] = a.Arm
		case workflows.ActionConvert:
			c.Converted, c.ConvertedArms = true, next.Arms
			e.metrics.Journeys.WithLabelValues(w.ID, "converted").Inc()
		}
	}
	goal := prev.JourneyID == "" && w.Goal != nil
	if c.Empty() && !goal {
		return
	}
	n.pipe = append(n.pipe, func(p redis.Pipeliner) {
		redisstore.CountJourneyPipe(ctx, p, w.ID, c)
		if goal {
			redisstore.GoalJourneyPipe(ctx, p, next.CustomerID, w.ID, next.JourneyID)
		}
	})
}

// journeyParts is what the timeline line of a transition says about
// splits, digests and goals.
func journeyParts(prev, next workflows.State, actions []workflows.Action) []string {
	var parts []string
	for _, h := range newHistory(prev, next) {
		switch h.Kind {
		case "split":
			parts = append(parts, fmt.Sprintf("step %s: split, %s", h.Step, h.Detail))
		case "digest":
			parts = append(parts, fmt.Sprintf("step %s: digest %s", h.Step, h.Detail))
		case "goal":
			parts = append(parts, "reached its goal "+h.Detail)
		}
	}
	for _, a := range actions {
		if a.Kind == workflows.ActionDigest && next.Digest != nil {
			parts = append(parts, fmt.Sprintf("step %s: digest holds %d", a.StepID, len(next.Digest.Events)))
		}
	}
	return parts
}

// reachGoals converts the customer's ended journeys whose workflow's goal
// is ev (running journeys see the event in handleEvent's loop). It reports
// whether any converted.
func (e *Engine) reachGoals(ctx context.Context, n *notes, c herald.Customer, set *workflows.Set, ev herald.Event, in workflows.Input, active map[string]string) (bool, error) {
	var ids []string
	for _, w := range set.All() {
		if _, running := active[w.ID]; !running && w.Goal != nil && w.Goal.Event == ev.Name {
			ids = append(ids, w.ID)
		}
	}
	if len(ids) == 0 {
		return false, nil
	}
	latest, err := e.st.GoalJourneys(ctx, c.ID, ids...)
	if err != nil {
		return false, err
	}
	converted := false
	for _, jid := range latest {
		s, w, err := e.loadJourney(ctx, c.ID, jid)
		if err != nil {
			return converted, err
		}
		if w == nil || s.Status == workflows.StatusActive {
			continue
		}
		next, actions, err := workflows.Advance(w, s, in, e.now())
		if err != nil || len(actions) == 0 {
			continue
		}
		converted = true
		if err := e.apply(ctx, n, c, w, s, next, actions, "event "+ev.Name); err != nil {
			return converted, err
		}
	}
	return converted, nil
}
