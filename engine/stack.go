package engine

import (
	"context"

	"github.com/hibiken/asynq"
)

// taskStack is the frame that grows a task's stack up front. It makes the
// runtime give the goroutine a 16 KB stack, enough for the deepest common
// path (decoding the customer under the Redis read, rendering a template,
// writing the MIME message): a profile of the message path shows no growth
// after it. The next size up, 32 KB, comes from the heap rather than the
// per-CPU stack cache: growing to it cost about ten times as much.
const taskStack = 12 << 10

// growStack runs each handler on a stack grown once, at its shallowest.
// asynq runs every task on a new goroutine whose stack starts small; left
// to itself it grows on herald's deep paths a step at a time, copying the
// whole stack at each step. That copying was about 3 % of the message
// path's CPU (runtime.copystack under the handlers); growing the stack here
// copies a few frames once. (CockroachDB's growstack does the same for its
// deep paths.)
func growStack(h asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		grow()
		return h.ProcessTask(ctx, t)
	})
}

// grow has a frame of taskStack bytes: entering it makes the runtime grow
// the goroutine's stack to hold it, and the stack keeps that size after it
// returns.
//
//go:noinline
func grow() {
	var buf [taskStack]byte
	keep(&buf[0])
}

// keep uses its argument, so that grow's frame is not optimised away.
//
//go:noinline
func keep(*byte) {}
