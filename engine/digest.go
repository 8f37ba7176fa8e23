package engine

import "github.com/heraldhq/herald/workflows"

// Digests are journey state, not asynq task groups.
//
// A digest step (workflows.Digest) keeps the events it collects in the
// journey's state, written with the rest of the state under the
// customer's journey lock; the window's end is the journey's ordinary
// follow-up, whose wake-up task's ID is fixed by (journey, step visit), and
// the digest message's ID is fixed by (journey, step, visit) too. So a
// worker killed at any point of the window loses nothing and sends nothing
// twice: a retried event task finds its event ID already collected, a lost
// wake-up comes back when its claim's lease ends, and a retried wake-up
// re-sends a message the delivery ledger already holds. Events after the window find the
// journey past the digest (or ended) and start the next window.
//
// asynq's task aggregation (Group, GroupAggregator) was considered and
// does not give these guarantees:
//   - Its windows are server-wide (Config.GroupGracePeriod, GroupMaxDelay,
//     GroupMaxSize), not per step: one workflow's 1h/50 and another's
//     10m/5 cannot both hold, and the grace period slides with every
//     event instead of closing a fixed window.
//   - Groups are keyed per queue by an opaque string; the aggregated task
//     is a new task with a random ID, outside the journey, so the journey
//     could not jump on it without a second, racing state change.
//   - A worker that dies after enqueuing the aggregated task and before
//     deleting its aggregation set leaves the set to be reclaimed into the
//     group after two minutes (rdb.ReclaimStaleAggregationSets) and
//     aggregated again: a second digest of the same events.

// collecting reports whether journey s has a digest window open for event:
// the event belongs to that journey even when it is a repeat the digest
// already holds, so it does not also try to start the workflow.
func collecting(w *workflows.Workflow, s workflows.State, event string) bool {
	step, ok := w.Step(s.Step)
	return ok && s.Digest != nil && step.Digest != nil && step.Digest.Event == event
}
