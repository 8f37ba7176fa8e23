package engine

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
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
	// Task is the message's own task while it is still in a queue.
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

// ChannelStatus is one channel's outcome, the latest first-hand record.
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

var messageIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,255}$`)

// Message looks a message up by ID: its queued task if it has not run yet,
// then its timeline lines and ledger records. An unknown ID is ENotFound.
func (e *Engine) Message(ctx context.Context, id string) (MessageStatus, error) {
	out := MessageStatus{ID: id, Channels: map[string]*ChannelStatus{}}
	if !messageIDRe.MatchString(id) {
		return out, herald.Errorf(herald.EInvalid, "message id %q: want letters, digits and . _ : @ + -", clipID(id))
	}
	cust, found, err := e.st.MessageCustomer(ctx, id)
	if err != nil {
		return out, err
	}
	if task, m, ok := e.messageTask(id); ok {
		out.Task = task
		cust, found = m.CustomerID, true
		out.Template, out.Topic, out.Workflow, out.Journey, out.Step = m.Template, m.Topic, m.WorkflowID, m.JourneyID, m.StepID
	}
	if !found {
		return out, herald.Errorf(herald.ENotFound, "message %q not found", id)
	}
	out.CustomerID = cust
	tl, err := e.st.Timeline(ctx, cust, 0)
	if err != nil {
		return out, herald.Temporary(err, "redis", 0)
	}
	slices.Reverse(tl) // oldest first: the last word wins
	for _, t := range tl {
		if t.Ref != id || (t.Kind != herald.KindMessage && t.Kind != herald.KindDelivery) {
			continue
		}
		str := func(k string) string { s, _ := t.Data[k].(string); return s }
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
	sent, err := e.st.Sent(ctx, cust, id, herald.Channels)
	if err != nil {
		return out, err
	}
	for ch, r := range sent {
		if cs := out.Channels[string(ch)]; cs != nil && cs.Status == "sent" {
			continue
		}
		out.Channels[string(ch)] = &ChannelStatus{Status: "sent", At: r.SentAt, ProviderID: r.ProviderID, Summary: "sent " + r.Template + " by " + string(ch)}
		if out.Template == "" {
			out.Template, out.Topic, out.Workflow, out.Journey, out.Step = r.Template, r.Topic, r.Workflow, r.Journey, r.Step
		}
	}
	if out.Task == nil && len(out.Channels) == 0 {
		return out, herald.Errorf(herald.ENotFound, "message %q not found", id)
	}
	return out, nil
}

// messageTask finds a message's own task ("m:<id>") in the queues.
func (e *Engine) messageTask(id string) (*TaskStatus, wire.Message, bool) {
	insp := asynq.NewInspectorFromRedisClient(e.opt.Redis)
	for _, q := range wire.Queues {
		info, err := insp.GetTaskInfo(q, "m:"+id)
		if err != nil {
			if !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
				e.log.Debug("message task lookup", "queue", q, "err", err)
			}
			continue
		}
		var m wire.Message
		if json.Unmarshal(info.Payload, &m) != nil {
			continue
		}
		return &TaskStatus{Queue: q, State: info.State.String(), NextProcessAt: info.NextProcessAt, LastError: info.LastErr}, m, true
	}
	return nil, wire.Message{}, false
}

func clipID(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
