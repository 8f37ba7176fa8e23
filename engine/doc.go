// Package engine is herald's imperative shell: the asynq task handlers that
// turn a message request into one delivery per channel, check consent again
// just before each provider call, keep the delivery ledger so a retried task
// never sends twice, fall back to the next channel on a permanent failure,
// run journeys through the pure state machine in workflows, and write every
// step to the customer's timeline.
//
// Orchestration (herald:message, herald:event, herald:journey:*) and delivery
// (herald:deliver:<channel>, one queue per channel) are separate tasks: a
// delivery retry never re-runs orchestration, and a slow provider backs up
// only its own queue.
package engine
