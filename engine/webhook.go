package engine

import (
	"context"
	"slices"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/webhooks"
	"github.com/heraldhq/herald/workflows"
)

// AppEvents receives what happened to messages and journeys, for the app's
// webhooks (webhooks.Service). Emit runs on the delivery path: it must
// only enqueue, never wait for an endpoint, and it reports its own
// failures (a message is not held up by its webhook).
type AppEvents interface {
	Emit(ctx context.Context, ev webhooks.Event)
}

func (e *Engine) emit(ctx context.Context, ev webhooks.Event) {
	if e.opt.AppEvents == nil {
		return
	}
	if ev.At.IsZero() {
		ev.At = e.now().UTC()
	}
	e.opt.AppEvents.Emit(ctx, ev)
}

// messageRef builds a webhook's message reference from a delivery's
// timeline data (template, topic, workflow, journey, step).
func messageRef(messageID string, ch herald.Channel, ref map[string]any) (*webhooks.Message, *webhooks.Journey) {
	str := func(k string) string { s, _ := ref[k].(string); return s }
	m := &webhooks.Message{ID: messageID, Channel: string(ch), Template: str("template"), Topic: str("topic")}
	if str("journey") == "" {
		return m, nil
	}
	return m, &webhooks.Journey{ID: str("journey"), Workflow: str("workflow"), Step: str("step")}
}

// Message events, as the delivery code names them.
const (
	eventSent       = webhooks.MessageSent
	eventFailed     = webhooks.MessageFailed
	eventSuppressed = webhooks.MessageSuppressed
)

// emitMessage reports a message sent, failed for good or suppressed.
func (e *Engine) emitMessage(ctx context.Context, typ, customerID, messageID string, ch herald.Channel, reason string, ref map[string]any) {
	if e.opt.AppEvents == nil {
		return
	}
	m, j := messageRef(messageID, ch, ref)
	e.emit(ctx, webhooks.Event{
		ID: webhooks.EventID(typ, messageID, string(ch), reason), Type: typ, CustomerID: customerID,
		Message: m, Journey: j, Reason: reason,
	})
}

// emitFromEvent reports the app events herald raises itself: a click or a
// reply on a message, preferences changed through the Go client.
func (e *Engine) emitFromEvent(ctx context.Context, ev herald.Event) {
	if e.opt.AppEvents == nil {
		return
	}
	str := func(k string) string { s, _ := ev.Data[k].(string); return s }
	switch ev.Name {
	case EventClicked, EventReplied:
		ref := map[string]any{"workflow": str("workflow"), "journey": str("journey"), "step": str("step")}
		m, j := messageRef(str("message"), herald.Channel(str("channel")), ref)
		e.emit(ctx, webhooks.Event{ID: webhooks.EventID(ev.Name, ev.ID), Type: ev.Name, At: ev.At, CustomerID: ev.CustomerID, Message: m, Journey: j})
	case wire.EventPreferencesChanged:
		var changes []string
		if left, ok := ev.Data["topics_left"].([]any); ok {
			for _, t := range left {
				if s, ok := t.(string); ok {
					changes = append(changes, "topics."+s)
				}
			}
		}
		if _, ok := ev.Data["paused"]; ok {
			changes = append(changes, "paused")
		}
		e.emit(ctx, webhooks.Event{ID: webhooks.EventID(ev.Name, ev.ID), Type: ev.Name, At: ev.At, CustomerID: ev.CustomerID, Changes: changes})
	}
}

// emitPreferences reports preferences changed through the engine (the
// API, the preference centre, an opt-out button).
func (e *Engine) emitPreferences(ctx context.Context, customerID string, entries []preferences.ConsentEntry) {
	if e.opt.AppEvents == nil || len(entries) == 0 {
		return
	}
	ids := make([]string, 0, len(entries))
	var changes []string
	for _, c := range entries {
		ids = append(ids, c.ID)
		if !slices.Contains(changes, c.Field) {
			changes = append(changes, c.Field)
		}
	}
	e.emit(ctx, webhooks.Event{
		ID: webhooks.EventID(webhooks.PreferencesChanged, ids...), Type: webhooks.PreferencesChanged,
		CustomerID: customerID, Changes: changes,
	})
}

func (e *Engine) emitJourneyEvent(ctx context.Context, typ, reason, workflowID string, s workflows.State) {
	e.emit(ctx, webhooks.Event{
		ID: webhooks.EventID(typ, s.JourneyID), Type: typ, CustomerID: s.CustomerID, Reason: reason,
		Journey: &webhooks.Journey{ID: s.JourneyID, Workflow: workflowID, Step: s.Step},
	})
}

// emitJourneyStart reports a journey that starts, before its first
// message goes out.
func (e *Engine) emitJourneyStart(ctx context.Context, w *workflows.Workflow, prev, next workflows.State) {
	if e.opt.AppEvents != nil && prev.JourneyID == "" {
		e.emitJourneyEvent(ctx, webhooks.JourneyStarted, "", w.ID, next)
	}
}

// emitJourneyEnd reports a journey that completed or exited, once its
// state is saved.
func (e *Engine) emitJourneyEnd(ctx context.Context, w *workflows.Workflow, next workflows.State, actions []workflows.Action) {
	if e.opt.AppEvents == nil {
		return
	}
	for _, a := range actions {
		switch a.Kind {
		case workflows.ActionFinish:
			e.emitJourneyEvent(ctx, webhooks.JourneyCompleted, a.Reason, w.ID, next)
		case workflows.ActionExit:
			e.emitJourneyEvent(ctx, webhooks.JourneyExited, a.Reason, w.ID, next)
		}
	}
}
