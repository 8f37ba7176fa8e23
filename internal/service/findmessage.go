package service

import (
	"context"
	"encoding/json"

	"github.com/hibiken/asynq"

	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
)

// FindMessage looks for a message's own task ("m:<id>") in the queues; nil
// when it is in none.
func FindMessage(insp *asynq.Inspector, id string) *redisstore.QueuedTask {
	for _, q := range wire.Queues {
		info, err := insp.GetTaskInfo(q, "m:"+id)
		if err != nil {
			continue // not in this queue (or the queue does not exist yet)
		}
		var m wire.Message
		if json.Unmarshal(info.Payload, &m) != nil {
			continue
		}
		return &redisstore.QueuedTask{
			TaskStatus: redisstore.TaskStatus{Queue: q, State: info.State.String(), NextProcessAt: info.NextProcessAt, LastError: info.LastErr},
			CustomerID: m.CustomerID, Template: m.Template, Topic: m.Topic, Workflow: m.WorkflowID, Journey: m.JourneyID, Step: m.StepID,
		}
	}
	return nil
}

// MessageQueued reports whether one-off message id was queued: its task
// waits or runs in a queue, or the message has run (the message index names
// its customer). A failed read counts as not queued: the caller asks again
// for the message, which its ID makes harmless.
func (s *Service) MessageQueued(ctx context.Context, id string) bool {
	if _, ok, err := s.o.Store.MessageOwner(ctx, id); err == nil && ok {
		return true
	}
	return FindMessage(asynq.NewInspectorFromRedisClient(s.o.Store.Redis()), id) != nil
}

// EventQueued reports whether event id of customerID, sent with an
// idempotency key, was queued (see redisstore.EventQueued).
func (s *Service) EventQueued(ctx context.Context, customerID, id string) bool {
	return redisstore.EventQueued(ctx, s.o.Store.Redis(), customerID, id)
}
