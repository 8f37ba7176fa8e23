package client_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/stretchr/testify/require"
)

// A first call that claimed the idempotency key but never enqueued (Redis
// restarting, a lost reply) must not swallow the event: the app's retry
// enqueues it. Once enqueued, repeats stay no-ops even after the task ran.
func TestEventRetryAfterFailedEnqueue(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	ctx := context.Background()

	rdb := b.rs.Client()
	ev, fresh, err := redisstore.PrepareEvent(ctx, rdb, herald.Event{CustomerID: "c1", Name: "trial.started", IdempotencyKey: "k1"})
	require.NoError(t, err)
	require.True(t, fresh)
	require.Empty(t, b.pending(t, wire.QueueDefault, wire.TypeEvent), "the first call died before enqueueing")

	id, err := b.c.Event(ctx, "c1", "trial.started", nil, "k1")
	require.NoError(t, err)
	require.Equal(t, ev.ID, id)
	tasks := b.pending(t, wire.QueueDefault, wire.TypeEvent)
	require.Len(t, tasks, 1, "the retry enqueued the event")

	// The worker ran it; a later repeat enqueues nothing.
	require.NoError(t, b.insp.DeleteTask(wire.QueueDefault, tasks[0].ID))
	again, err := b.c.Event(ctx, "c1", "trial.started", nil, "k1")
	require.NoError(t, err)
	require.Equal(t, id, again)
	require.Empty(t, b.pending(t, wire.QueueDefault, wire.TypeEvent))
}
