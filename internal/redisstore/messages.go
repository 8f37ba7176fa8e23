package redisstore

import (
	"context"
	"regexp"
	"slices"
	"time"

	"github.com/heraldhq/herald"
)

// MessageStatus is what became of one message, per channel.
type MessageStatus struct {
	ID         string `json:"id"`
	CustomerID string `json:"customer_id"`
	Template   string `json:"template,omitempty"`
	Topic      string `json:"topic,omitempty"`
	Workflow   string `json:"workflow,omitempty"`
	Journey    string `json:"journey,omitempty"`
	Step       string `json:"step,omitempty"`
	// Task is the message's own task while it waits in a queue to run the
	// first time (a deferral's later task is not looked up: the channel
	// status says until when).
	Task *TaskStatus `json:"task,omitempty"`
	// Channels holds each channel's outcome; "message" is what happened to
	// the message before a channel was chosen (deferred, suppressed).
	Channels map[string]*ChannelStatus `json:"channels"`
}

// TaskStatus is a queued task's state in asynq.
type TaskStatus struct {
	Queue         string    `json:"queue"`
	State         string    `json:"state"` // pending, scheduled, retry, active, archived
	NextProcessAt time.Time `json:"next_process_at,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// ChannelStatus is one channel's outcome, from its latest record.
type ChannelStatus struct {
	// Status is queued, deferred, sent, suppressed, retrying or failed.
	Status        string    `json:"status"`
	At            time.Time `json:"at"`
	DeferredUntil string    `json:"deferred_until,omitempty"`
	ProviderID    string    `json:"provider_id,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	ConsentEntry  string    `json:"consent_entry,omitempty"`
	Error         string    `json:"error,omitempty"`
	Attempts      int       `json:"attempts,omitempty"`
	Summary       string    `json:"summary"`
}

// QueuedTask is a message's own task found in a queue: a message that has
// not run yet is known only there.
type QueuedTask struct {
	TaskStatus
	CustomerID, Template, Topic, Workflow, Journey, Step string
}

var messageIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,255}$`)

// LookUpMessage says what became of a message: its queued task q (nil when
// there is none), its timeline lines and its ledger records. An unknown ID
// is ENotFound, a malformed one EInvalid.
func (s *Store) LookUpMessage(ctx context.Context, id string, q *QueuedTask) (MessageStatus, error) {
	if !messageIDRe.MatchString(id) {
		return MessageStatus{ID: id}, herald.Errorf(herald.EInvalid, "message id %q: want letters, digits and . _ : @ + -", clip(id))
	}
	hint := ""
	if q != nil {
		hint = q.CustomerID
	}
	out, found, err := s.messageStatus(ctx, id, hint)
	if err != nil {
		return out, err
	}
	if q != nil {
		out.Task = &q.TaskStatus
		out.CustomerID = q.CustomerID
		out.Template, out.Topic, out.Workflow, out.Journey, out.Step = q.Template, q.Topic, q.Workflow, q.Journey, q.Step
	}
	if !found && q == nil {
		return out, herald.Errorf(herald.ENotFound, "message %q not found", id)
	}
	return out, nil
}

// messageStatus reads a message's timeline lines and ledger records. The
// customer comes from the message index, or from customerHint (the
// customer of the message's queued task) when the message has not run yet.
// found is false when nothing is known.
func (s *Store) messageStatus(ctx context.Context, id, customerHint string) (out MessageStatus, found bool, err error) {
	out = MessageStatus{ID: id, Channels: map[string]*ChannelStatus{}}
	cust, ok, err := s.MessageOwner(ctx, id)
	if err != nil {
		return out, false, err
	}
	if !ok {
		cust = customerHint
	}
	if cust == "" {
		return out, false, nil
	}
	out.CustomerID = cust
	tl, err := s.Timeline(ctx, cust, 0)
	if err != nil {
		return out, false, herald.Temporary(err, "redis", 0)
	}
	slices.Reverse(tl) // oldest first: the last word wins
	for _, t := range tl {
		if t.Ref != id || (t.Kind != herald.KindMessage && t.Kind != herald.KindDelivery) {
			continue
		}
		str := func(k string) string { v, _ := t.Data[k].(string); return v }
		if out.Template == "" {
			out.Template, out.Topic, out.Workflow, out.Journey, out.Step = str("template"), str("topic"), str("workflow"), str("journey"), str("step")
		}
		key := string(t.Channel)
		if key == "" {
			key = "message"
		}
		cs := &ChannelStatus{At: t.At, Summary: t.Summary, Reason: t.Reason}
		switch t.Outcome {
		case "":
			cs.Status = "queued"
		case herald.OutcomeDeferred:
			cs.Status, cs.DeferredUntil = "deferred", str("until")
		case herald.OutcomeSent:
			cs.Status, cs.ProviderID = "sent", str("provider_id")
		case herald.OutcomeSuppressed:
			cs.Status, cs.ConsentEntry = "suppressed", str("consent_id")
		case herald.OutcomeFailedTemporary, herald.OutcomeFailedPermanent:
			cs.Status, cs.Error = "retrying", str("error")
			if t.Outcome == herald.OutcomeFailedPermanent {
				cs.Status = "failed"
			}
			if n, ok := t.Data["attempt"].(float64); ok {
				cs.Attempts = int(n)
			}
		}
		out.Channels[key] = cs
	}
	// The ledger outlives the timeline's last 500 lines: a send it records
	// is sent, whatever the timeline still shows.
	sent, err := s.Sent(ctx, cust, id, herald.Channels)
	if err != nil {
		return out, false, err
	}
	// A send's line leaves template, topic, journey and the provider's ID
	// to the record.
	for ch, r := range sent {
		if out.Template == "" {
			out.Template, out.Topic, out.Workflow, out.Journey, out.Step = r.Template, r.Topic, r.Workflow, r.Journey, r.Step
		}
		if cs := out.Channels[string(ch)]; cs != nil && cs.Status == "sent" {
			if cs.ProviderID == "" {
				cs.ProviderID = r.ProviderID
			}
			continue
		}
		out.Channels[string(ch)] = &ChannelStatus{Status: "sent", At: r.SentAt, ProviderID: r.ProviderID, Summary: "sent " + r.Template + " by " + string(ch)}
	}
	return out, len(out.Channels) > 0, nil
}
