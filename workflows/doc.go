// Package workflows owns herald's workflow language and the journey state
// machine that runs a customer through a workflow.
//
// Load and Parse turn YAML workflow files into validated, versioned
// Workflows, reporting every problem as "file:line: message". Start and
// Advance are pure functions from (journey state, input, now) to (new state,
// actions): they never read the clock, touch Redis or enqueue tasks, so the
// worker shell that carries out the actions stays thin and every path of a
// workflow can be tested with a fake clock.
package workflows
