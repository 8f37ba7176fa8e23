package engine

import (
	"context"

	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/service"
	"github.com/hibiken/asynq"
)

// MessageStatus is what became of one message, per channel.
type MessageStatus = redisstore.MessageStatus

// Message looks a message up by ID: its queued task if it has not run yet,
// then its timeline lines and ledger records. An unknown ID is ENotFound.
func (e *Engine) Message(ctx context.Context, id string) (MessageStatus, error) {
	return e.st.LookUpMessage(ctx, id, service.FindMessage(asynq.NewInspectorFromRedisClient(e.opt.Redis), id))
}
