package engine

import (
	"context"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
)

// registerJourneys adds the journey task handlers (events, wake-ups,
// watchdog).
func (e *Engine) registerJourneys(mux *asynq.ServeMux) {
	mux.HandleFunc(wire.TypeEvent, e.handleEvent)
}

func (e *Engine) handleEvent(ctx context.Context, t *asynq.Task) error {
	var ev herald.Event
	if err := wire.Decode(t.Payload(), &ev); err != nil {
		return skip(err)
	}
	if err := wire.Check("id", ev.ID, "customer_id", ev.CustomerID, "name", ev.Name); err != nil {
		return skip(err)
	}
	return e.st.Append(ctx, ev.CustomerID, herald.TimelineEntry{Kind: herald.KindEvent, Summary: "event " + ev.Name, Ref: ev.ID, Data: ev.Data})
}

// Journeys returns the customer's journeys (for export).
func (e *Engine) Journeys(ctx context.Context, customerID string) ([]any, error) { return nil, nil }

func (e *Engine) exitTopic(ctx context.Context, customerID, topic string) error { return nil }
