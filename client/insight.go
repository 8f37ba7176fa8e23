package client

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
)

// The numbers and records support and marketing read, in the shapes the
// HTTP API answers with.
type (
	// WorkflowStats are a workflow's per-step numbers over a time range.
	WorkflowStats = redisstore.WorkflowStats
	// StepNumbers are one step's numbers.
	StepNumbers = redisstore.StepNumbers
	// JourneyNumbers are a workflow's journeys started, completed, exited
	// and running now.
	JourneyNumbers = redisstore.JourneyNumbers
	// MessageStatus is what became of a message, per channel.
	MessageStatus = redisstore.MessageStatus
	// Journey is a journey as support reads it.
	Journey = workflows.JourneyView
	// TestSend is a line of the test-send log.
	TestSend = redisstore.TestSend
)

// WorkflowStats returns a workflow's numbers per step since a moment
// (hourly buckets, kept 35 days). Steps nothing has reached yet are absent:
// the client does not read workflow files.
func (c *Client) WorkflowStats(ctx context.Context, workflowID string, since time.Time) (WorkflowStats, error) {
	return c.svc.Store().WorkflowStats(ctx, workflowID, nil, since, time.Now())
}

// WorkflowStepStats is WorkflowStats for a workflow the caller has loaded:
// every one of its steps is listed, reached or not.
func (c *Client) WorkflowStepStats(ctx context.Context, w *workflows.Workflow, since time.Time) (WorkflowStats, error) {
	steps := make([]string, 0, len(w.Steps))
	for _, s := range w.Steps {
		steps = append(steps, s.ID)
	}
	return c.svc.Store().WorkflowStats(ctx, w.ID, steps, since, time.Now())
}

// Journeys returns a customer's journeys, running first, then finished
// ones (kept 90 days), each with its current step and next wake-up.
func (c *Client) Journeys(ctx context.Context, customerID string) ([]Journey, error) {
	if _, err := c.svc.Store().Customer(ctx, customerID); err != nil {
		return nil, err
	}
	raw, err := c.svc.Store().JourneyStates(ctx, customerID)
	if err != nil {
		return nil, temp(err)
	}
	return workflows.Views(workflows.DecodeStates(raw)), nil
}

// CancelJourney asks the workers to cancel a running journey: its pending
// wake-up is removed and the customer's timeline says the client's Actor
// cancelled it, moments later. An unknown journey is an ENotFound error,
// one that has already ended an EConflict.
func (c *Client) CancelJourney(ctx context.Context, customerID, journeyID string) error {
	if err := redisstore.ValidID(customerID); err != nil {
		return err
	}
	b, err := c.svc.Store().JourneyState(ctx, customerID, journeyID)
	if err != nil {
		return err
	}
	var s workflows.State
	if b == nil || json.Unmarshal(b, &s) != nil {
		return herald.Errorf(herald.ENotFound, "customer %q has no journey %q", customerID, journeyID)
	}
	if s.Status != workflows.StatusActive {
		return herald.Errorf(herald.EConflict, "journey %s has already ended (%s)", journeyID, s.Status)
	}
	p := wire.CancelJourney{CustomerID: customerID, JourneyID: journeyID, By: c.Actor}
	_, err = c.aq.EnqueueContext(ctx, asynq.NewTask(wire.TypeCancelJourney, wire.Encode(p)),
		asynq.TaskID("cancel:"+journeyID), asynq.Queue(wire.QueueCritical))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		err = nil
	}
	return temp(err)
}

// Message says what became of a message: queued, deferred until, sent with
// the provider's ID, suppressed with the reason and consent entry, failed
// with the error and attempt count, per channel.
func (c *Client) Message(ctx context.Context, id string) (MessageStatus, error) {
	return c.svc.Store().LookUpMessage(ctx, id, service.FindMessage(asynq.NewInspectorFromRedisClient(c.rdb), id))
}

// TestSends returns the newest lines of the test-send log (test sends are
// made through the API or `herald send --test-to`, which hold the senders).
func (c *Client) TestSends(ctx context.Context, limit int) ([]TestSend, error) {
	return c.svc.Store().TestSends(ctx, limit)
}
