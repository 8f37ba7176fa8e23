package service

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
)

// Event validates an app event and queues it for the workers. The customer
// must exist. With an idempotency key, a repeat within 24 h is a no-op that
// returns the first event's ID. Data is limited to MaxEventData bytes of
// JSON.
func (s *Service) Event(ctx context.Context, ev herald.Event) (string, error) {
	if err := CheckData("data", ev.Data); err != nil {
		return "", err
	}
	if err := redisstore.ValidID(ev.CustomerID); err != nil {
		return "", err
	}
	if err := redisstore.ValidEventName(ev.Name); err != nil {
		return "", err
	}
	if err := s.customerExists(ctx, ev.CustomerID); err != nil {
		return "", err
	}
	if err := s.checkStarts(ctx, ev); err != nil {
		return "", err
	}
	ev, fresh, err := redisstore.PrepareEvent(ctx, s.o.Store.Redis(), ev)
	if err != nil || !fresh {
		return ev.ID, err
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	data, sealed, err := s.Seal(ctx, ev.CustomerID, ev.ID, ev.Data, ev.Sealed)
	if err != nil {
		return ev.ID, err
	}
	ev.Data, ev.Sealed = data, sealed
	if err := s.enqueue(ctx, wire.QueueDefault, asynq.NewTask(wire.TypeEvent, wire.Encode(ev)), "e:"+ev.ID); err != nil {
		return ev.ID, err
	}
	redisstore.EventEnqueued(ctx, s.o.Store.Redis(), ev)
	return ev.ID, nil
}

// checkStarts refuses an event whose data a send of the journeys it
// triggers, made with that data alone, cannot render: that send would fail
// for every customer the event starts a journey for.
func (s *Service) checkStarts(ctx context.Context, ev herald.Event) error {
	var starts []redisstore.StartSend
	var r redisstore.Routing
	if s.o.Starts != nil {
		starts = s.o.Starts(ev.Name)
	} else {
		var err error
		if r, err = s.routing(ctx); err != nil {
			return err
		}
		starts = r.Starts[ev.Name]
	}
	for _, st := range starts {
		if err := MissingStartData(st, s.dataKeys(r, st.Template, st.Channels), ev.Data); err != nil {
			return err
		}
	}
	return nil
}

// MissingStartData is an EInvalid error naming the keys of needs (what
// st's template reads on its channels) that the data starting a journey
// lacks, or nil.
func MissingStartData(st redisstore.StartSend, needs []string, data map[string]any) error {
	what := fmt.Sprintf("workflow %q starts with step %q, whose template %q", st.Workflow, st.Step, st.Template)
	if st.After != "" || st.Via != "" {
		how := ""
		if st.Via != "" {
			how += fmt.Sprintf(" in an arm of split %q", st.Via)
		}
		if st.After != "" {
			how += fmt.Sprintf(" after %q", st.After)
		}
		what = fmt.Sprintf("workflow %q reaches step %q%s with the trigger's data alone, and its template %q", st.Workflow, st.Step, how, st.Template)
	}
	return missingData(what, needs, data)
}

// checkedKey carries what a door already read about a customer's
// existence (CustomerChecked).
type checkedKey struct{}

type checked struct {
	id    string
	found bool
}

// CustomerChecked tells Send and Event that the door read whether customer
// id exists (found) a moment ago, in a round trip it made anyway (the HTTP
// API reads it with the request's idempotency key): they do not ask Redis
// again.
func CustomerChecked(ctx context.Context, id string, found bool) context.Context {
	return context.WithValue(ctx, checkedKey{}, checked{id: id, found: found})
}

// customerExists returns ENotFound unless the customer exists, asking
// Redis unless the door already did (CustomerChecked).
func (s *Service) customerExists(ctx context.Context, id string) error {
	if c, ok := ctx.Value(checkedKey{}).(checked); ok && c.id == id {
		if !c.found {
			return redisstore.CustomerNotFound(id)
		}
		return nil
	}
	_, err := s.o.Store.Customer(ctx, id)
	return err
}

// CheckData refuses data bigger than MaxEventData as JSON, naming the limit.
func CheckData(field string, data map[string]any) error {
	if len(data) == 0 {
		return nil
	}
	b, err := json.Marshal(data)
	if err != nil {
		return herald.Errorf(herald.EInvalid, "%s: not JSON: %v", field, err)
	}
	if len(b) > MaxEventData {
		return herald.Errorf(herald.EInvalid, "%s is %d bytes of JSON; the limit is %d bytes (32 KiB): send IDs and facts, not documents", field, len(b), MaxEventData)
	}
	return nil
}

// Send validates a one-off message and queues it on its topic's priority
// queue. A repeated ID while the first task is still queued is the same
// message, not a second one.
func (s *Service) Send(ctx context.Context, m wire.Message) (string, error) {
	if m.ID == "" {
		m.ID = redisstore.NewID("m_")
	}
	if err := m.Validate(); err != nil {
		return "", err
	}
	if m.QueuedAt.IsZero() {
		m.QueuedAt = time.Now().UTC()
	}
	if err := CheckData("data", m.Data); err != nil {
		return "", err
	}
	if err := redisstore.ValidID(m.CustomerID); err != nil {
		return "", err
	}
	r, err := s.routing(ctx)
	if err != nil {
		return "", err
	}
	queue := wire.QueueDefault
	if q, ok := r.Queues[m.Topic]; ok {
		queue = q
	} else if r.Topics != nil {
		return "", herald.Errorf(herald.EInvalid, "unknown topic %q", m.Topic)
	}
	if (s.o.Templates != nil && !s.o.Templates.Has(m.Template)) || (s.o.Templates == nil && !r.HasTemplate(m.Template)) {
		return "", herald.Errorf(herald.EInvalid, "unknown template %q", m.Template)
	}
	// Data the template cannot do without on any channel the message may
	// use would fail every delivery: refuse it here, naming the keys.
	needs := s.dataKeys(r, m.Template, m.Channels)
	if err := missingData("template "+strconv.Quote(m.Template), needs, m.Data); err != nil {
		return "", err
	}
	if err := s.customerExists(ctx, m.CustomerID); err != nil {
		return "", err
	}
	data, sealed, err := s.Seal(ctx, m.CustomerID, m.ID, m.Data, m.Sealed)
	if err != nil {
		return "", err
	}
	m.Data, m.Sealed = data, sealed
	var opts []asynq.Option
	if s.o.TaskTimeout > 0 {
		opts = append(opts, asynq.Timeout(s.o.TaskTimeout))
	}
	return m.ID, s.enqueue(ctx, queue, asynq.NewTask(wire.TypeMessage, wire.Encode(m)), "m:"+m.ID, opts...)
}

// dataKeys names the keys of .data template reads on every one of
// channels: from the loaded templates when this door has them, else as the
// workers published them in r.
func (s *Service) dataKeys(r redisstore.Routing, template string, channels []herald.Channel) []string {
	if s.o.Templates != nil {
		return s.o.Templates.DataKeys(template, channels...)
	}
	return r.DataKeys(template, channels...)
}

// missingData is an EInvalid error naming the keys of needs that data
// lacks, or nil. what is who reads them ("template \"receipt\"").
func missingData(what string, needs []string, data map[string]any) error {
	var missing []string
	for _, k := range needs {
		if _, ok := data[k]; !ok {
			missing = append(missing, strconv.Quote(k))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	keys := "key"
	if len(missing) > 1 {
		keys = "keys"
	}
	return herald.Errorf(herald.EInvalid, "data: %s reads %s %s in every locale, on every channel the message may use, and the data has none (give it, or have the template read it with index)",
		what, keys, strings.Join(missing, ", "))
}

// enqueueErase asks the workers to erase the customer (addresses are
// already suppressed): the task is retried until it is done.
func (s *Service) enqueueErase(ctx context.Context, c herald.Customer, actor preferences.Actor) error {
	t := asynq.NewTask(wire.TypeErase, wire.Encode(wire.Erase{CustomerID: c.ID, Actor: actor.Kind, ActorName: actor.Name}))
	return s.enqueue(ctx, wire.QueueCritical, t, "x:"+c.ID+":"+c.CreatedAt.UTC().Format("20060102T150405.000"))
}
