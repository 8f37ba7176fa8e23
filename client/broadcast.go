package client

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
)

// A broadcast, its audience, and what herald reports of it (see the
// HTTP API's /v1/broadcasts).
type (
	Broadcast     = wire.Broadcast
	Audience      = wire.Audience
	BroadcastInfo = wire.BroadcastInfo
	// BroadcastView is a broadcast's info and, while messages wait for
	// their customers' local time, how many and until when.
	BroadcastView = redisstore.BroadcastView
	// LocalWait is what a broadcast has queued for a later local time.
	LocalWait = redisstore.LocalWait
)

// CreateBroadcast asks the workers to create a broadcast and waits for
// their answer (until ctx ends; a minute when ctx has no deadline): the
// workers check it against their templates, workflows and topics, fix the
// audience and queue the fan-out. created is false for a dry run and for
// the same broadcast asked for again; another request under the same ID is
// an EConflict error, bad input an EInvalid one naming the problem.
func (c *Client) CreateBroadcast(ctx context.Context, b Broadcast) (BroadcastInfo, bool, error) {
	if err := redisstore.ValidBroadcastID(b.ID); err != nil {
		return BroadcastInfo{}, false, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Minute)
		defer cancel()
	}
	req := redisstore.NewID("br_")
	task := asynq.NewTask(wire.TypeBroadcastCreate, wire.Encode(wire.CreateBroadcast{Request: req, Actor: c.Actor, Broadcast: b}))
	if _, err := c.aq.EnqueueContext(ctx, task, asynq.TaskID("bc:"+req), asynq.Queue(wire.QueueCritical), asynq.MaxRetry(3)); err != nil {
		return BroadcastInfo{}, false, temp(err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		raw, ok, err := c.svc.Store().BroadcastAnswer(ctx, req)
		if err != nil {
			return BroadcastInfo{}, false, err
		}
		if ok {
			var ans wire.BroadcastAnswer
			if err := json.Unmarshal(raw, &ans); err != nil {
				return BroadcastInfo{}, false, herald.Errorf(herald.EInternal, "unreadable answer from the workers: %v", err)
			}
			if ans.Code != "" {
				return BroadcastInfo{}, false, herald.Errorf(ans.Code, "%s", ans.Message)
			}
			if ans.Info == nil {
				return BroadcastInfo{}, false, herald.Errorf(herald.EInternal, "empty answer from the workers")
			}
			return *ans.Info, ans.Created, nil
		}
		select {
		case <-ctx.Done():
			return BroadcastInfo{}, false, herald.Temporary(errors.New("no answer from herald's workers (are any running?)"), "no worker", 0)
		case <-tick.C:
		}
	}
}

// Broadcast reads a broadcast's status and counts.
func (c *Client) Broadcast(ctx context.Context, id string) (BroadcastInfo, error) {
	return c.svc.Store().BroadcastInfo(ctx, id)
}

// BroadcastView reads a broadcast's status, counts and what waits for a
// later local time.
func (c *Client) BroadcastView(ctx context.Context, id string) (BroadcastView, error) {
	return c.svc.Store().BroadcastView(ctx, id)
}

// Broadcasts lists up to limit broadcasts, newest first.
func (c *Client) Broadcasts(ctx context.Context, limit int) ([]BroadcastInfo, error) {
	return c.svc.Store().BroadcastInfos(ctx, 0, limit)
}

// CancelBroadcast stops every send of the broadcast not yet made: messages
// waiting in a queue are deleted and counted as cancelled at once.
func (c *Client) CancelBroadcast(ctx context.Context, id string) (BroadcastInfo, error) {
	return c.svc.CancelBroadcast(ctx, id)
}
