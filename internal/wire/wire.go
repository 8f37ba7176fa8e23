// Package wire defines what travels through asynq between herald's producers
// (the HTTP API, the Go client, the CLI) and its workers: task type names,
// queue names and payloads. Payloads carry IDs, names and event data, never a
// rendered body or an email address, so the dashboard can show them.
package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/jsonerr"
)

// Task types, as they read in the dashboard.
const (
	TypeMessage     = "herald:message"          // one message: policy, channel choice
	TypeDeliverPref = "herald:deliver:"         // + channel: one provider call
	TypeEvent       = "herald:event"            // an app event: starts, wakes, exits journeys
	TypeWake        = "herald:journey:wake"     // a journey's scheduled follow-up
	TypeWatchdog    = "herald:journey:watchdog" // periodic repair of lost follow-ups (scheduled by older versions)
	TypeErase       = "herald:customer:erase"   // erasure asked for outside a worker
)

// Queues.
const (
	QueueCritical = "critical" // required (transactional) topics
	QueueDefault  = "default"
	QueueBulk     = "bulk" // marketing
	// QueueWebhooks carries app webhooks, below every message queue.
	QueueWebhooks = "webhooks"
)

// DeliverType is the task type delivering on channel ch.
func DeliverType(ch herald.Channel) string { return TypeDeliverPref + string(ch) }

// Queues lists the priority queues, highest first. Workers take them in
// strict order, so a required message (a password reset) never waits behind
// lifecycle or bulk mail, at any stage: orchestration, delivery, retries.
var Queues = []string{QueueCritical, QueueDefault, QueueBulk, QueueWebhooks}

// Message asks for one message to one customer.
type Message struct {
	ID         string           `json:"id"`
	CustomerID string           `json:"customer_id"`
	Template   string           `json:"template"`
	Topic      string           `json:"topic"`
	Channels   []herald.Channel `json:"channels,omitempty"` // candidates in order; empty = all
	Mode       string           `json:"mode,omitempty"`     // first (default) or all
	Data       map[string]any   `json:"data,omitempty"`
	Sealed     []string         `json:"sealed,omitempty"` // data keys kept out of the payload (service.Seal)
	WorkflowID string           `json:"workflow,omitempty"`
	JourneyID  string           `json:"journey,omitempty"`
	StepID     string           `json:"step,omitempty"`
	Version    string           `json:"version,omitempty"` // the workflow's
	Actor      string           `json:"actor,omitempty"`   // API token name, "cli", "journey"
	Deferrals  int              `json:"deferrals,omitempty"`
	// Once is set on a message a resumed broadcast fan-out queued again:
	// it runs only if the customer's timeline shows no earlier run of it.
	Once bool `json:"once,omitempty"`
	// QueuedAt is when the message was queued (or became due, after a
	// deferral): the start of its queued-to-sent latency.
	QueuedAt time.Time `json:"queued_at,omitzero"`
}

// Erase asks a worker to finish erasing a customer whose addresses are
// already suppressed.
type Erase struct {
	CustomerID string `json:"customer_id"`
	Actor      string `json:"actor"`
	ActorName  string `json:"actor_name,omitempty"`
}

// Deliver hands one message to one channel.
type Deliver struct {
	MessageID  string           `json:"message_id"`
	CustomerID string           `json:"customer_id"`
	Channel    herald.Channel   `json:"channel"`
	Template   string           `json:"template"`
	Topic      string           `json:"topic"`
	Data       map[string]any   `json:"data,omitempty"`
	Sealed     []string         `json:"sealed,omitempty"`   // data keys kept out of the payload (service.Seal)
	Fallback   []herald.Channel `json:"fallback,omitempty"` // next channels if this one fails for good
	WorkflowID string           `json:"workflow,omitempty"`
	JourneyID  string           `json:"journey,omitempty"`
	StepID     string           `json:"step,omitempty"`
	Version    string           `json:"version,omitempty"` // the workflow's
	Actor      string           `json:"actor,omitempty"`
	// Defers counts the times the delivery was put off for a provider rate
	// limit; it names the next re-scheduled task.
	Defers int `json:"defers,omitempty"`
	// QueuedAt is its message's, carried through retries and waits.
	QueuedAt time.Time `json:"queued_at,omitzero"`
	// Tried counts the provider attempts on this channel before this task
	// (the message task's own, inline), so attempts are numbered across
	// both.
	Tried int `json:"tried,omitempty"`
}

// DeliveryID is the idempotency key of a message on a channel.
func (d Deliver) DeliveryID() string { return d.MessageID + ":" + string(d.Channel) }

// Event is an app event for a customer.
type Event = herald.Event

// Wake is a journey's scheduled follow-up.
type Wake struct {
	JourneyID  string `json:"journey"`
	CustomerID string `json:"customer_id"`
	WorkflowID string `json:"workflow"`
	Version    string `json:"version"`
	StepID     string `json:"step"`
	StepSeq    int    `json:"seq"`
}

// Encode marshals a payload.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("wire: encode %T: %v", v, err)) // payload types are plain data
	}
	return b
}

// Decode unmarshals a payload strictly: unknown fields and trailing data are
// errors, so a malformed task fails loudly instead of doing half its work.
func Decode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return herald.Errorf(herald.EInvalid, "malformed payload: %s", jsonerr.Explain(err, b))
	}
	if dec.More() {
		return herald.Errorf(herald.EInvalid, "malformed payload: trailing data")
	}
	return nil
}

// Check returns an EInvalid error naming each empty required field.
func Check(fields ...string) error {
	var missing []string
	for i := 0; i+1 < len(fields); i += 2 {
		if strings.TrimSpace(fields[i+1]) == "" {
			missing = append(missing, fields[i])
		}
	}
	if len(missing) > 0 {
		return herald.Errorf(herald.EInvalid, "malformed payload: missing %s", strings.Join(missing, ", "))
	}
	return nil
}

// Validate checks a Message's fields.
func (m Message) Validate() error {
	if err := Check("id", m.ID, "customer_id", m.CustomerID, "template", m.Template, "topic", m.Topic); err != nil {
		return err
	}
	for _, c := range m.Channels {
		if !c.Valid() {
			return herald.Errorf(herald.EInvalid, "unknown channel %q", c)
		}
	}
	if m.Mode != "" && m.Mode != "first" && m.Mode != "all" {
		return herald.Errorf(herald.EInvalid, "mode %q: want first or all", m.Mode)
	}
	return nil
}

// Validate checks a Deliver's fields.
func (d Deliver) Validate() error {
	if err := Check("message_id", d.MessageID, "customer_id", d.CustomerID, "template", d.Template, "topic", d.Topic, "channel", string(d.Channel)); err != nil {
		return err
	}
	if !d.Channel.Valid() {
		return herald.Errorf(herald.EInvalid, "unknown channel %q", d.Channel)
	}
	return nil
}

// EventPreferencesChanged is the event herald emits when a customer's
// preferences change outside a worker (Go client); its data lists the topics
// left, so the worker ends their journeys.
const EventPreferencesChanged = "preferences.changed"

// PreferencesChanged builds that event.
func PreferencesChanged(customerID string, topics map[string]bool, paused *bool) herald.Event {
	var left []any
	for t, on := range topics {
		if !on {
			left = append(left, t)
		}
	}
	data := map[string]any{"topics_left": left}
	if paused != nil {
		data["paused"] = *paused
	}
	return herald.Event{CustomerID: customerID, Name: EventPreferencesChanged, Data: data}
}
