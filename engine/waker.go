package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/hibiken/asynq"
)

// wakerTick is the default of Options.WakerTick.
const wakerTick = 250 * time.Millisecond

// wakerBatch bounds how many follow-ups one claim takes; a full batch is
// followed by the next claim at once.
const wakerBatch = 500

// A waiting journey costs a member of the waiting index and nothing in
// asynq: the waker of each worker process claims the due members every
// tick (leasing them for Options.WatchdogLate, so no two workers take the
// same one) and queues their wake-up tasks for now. A member whose task is
// lost, or whose worker died after the claim, comes back when its lease
// ends; one whose journey has moved on is dropped, and a save writes its
// own score over any lease.

// StartWaker runs the waker until stop is called or ctx ends. Run it in
// every process that runs a worker, alongside the asynq server, and call
// stop before closing Redis; stop returns once the waker is done.
func (e *Engine) StartWaker(ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(e.opt.WakerTick)
		defer tick.Stop()
		failing := false
		for {
			n, err := e.wakeDue(ctx)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && !failing:
				e.log.Warn("waker: claiming due follow-ups failed; retrying every tick", "err", err)
			case err == nil && failing:
				e.log.Info("waker: claiming due follow-ups again")
			}
			failing = err != nil
			if n == wakerBatch && err == nil {
				continue // more may be due
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
}

// wakeDue claims the follow-ups due now and queues their wake-up tasks; it
// returns how many members it claimed.
func (e *Engine) wakeDue(ctx context.Context) (int, error) {
	now := e.now()
	lease := e.opt.WatchdogLate
	claims, err := e.st.ClaimFollowUps(ctx, now, now.Add(lease), wakerBatch)
	if err != nil {
		return 0, err
	}
	var back []redisstore.FollowUp
	for _, c := range claims {
		switch {
		case c.Err != nil:
			e.log.Error("journey state unreadable: its follow-up is dropped", "journey", c.JourneyID, "customer", c.CustomerID, "err", c.Err)
			back = append(back, c)
		case !c.Found || !c.State.Waiting() || c.State.WakeAt.After(now):
			// Gone, moved on, or waiting for later (a save since the
			// claim, or an old whole-second score): not for now.
			back = append(back, c)
		default:
			if err := e.wake(ctx, c, now); err != nil {
				if ctx.Err() != nil {
					return len(claims), ctx.Err()
				}
				// The member comes back when the lease ends.
				e.log.Error("waker: follow-up not queued", "journey", c.JourneyID, "err", err)
			}
		}
	}
	if _, err := e.st.SettleFollowUps(ctx, back); err != nil {
		return len(claims), err
	}
	return len(claims), nil
}

// wake queues the wake-up task of a claimed, due journey. A task already
// there for the visit (queued by another claim, running, retrying, or
// scheduled by an older version) is left alone, unless it is archived:
// that one runs again. Re-running an archived task, or queueing one for a
// member an earlier claim had leased (its task was lost) or that nobody
// claimed for a lease (no worker ran), is a repair.
func (e *Engine) wake(ctx context.Context, c redisstore.FollowUp, now time.Time) error {
	s := c.State
	id, q := WakeTaskID(s.JourneyID, s.StepSeq), e.wakeQueue(s.WorkflowID)
	lease := e.opt.WatchdogLate
	var why string
	_, err := e.client.EnqueueContext(ctx, wakeTask(s), asynq.TaskID(id), asynq.Queue(q), e.taskTimeout(), asynq.MaxRetry(e.opt.MaxRetry))
	switch {
	case err == nil:
		switch {
		case c.Due.Sub(s.WakeAt) >= lease/2: // the score was an earlier claim's lease
			why = "was lost"
		case c.Due.Before(now.Add(-lease)):
			why = "was not taken in time"
		}
	case errors.Is(err, asynq.ErrTaskIDConflict):
		info, err := e.insp.GetTaskInfo(q, id)
		if err != nil || info.State != asynq.TaskStateArchived {
			return nil // alive (or gone since: the lease brings it back)
		}
		if err := e.insp.RunTask(q, id); err != nil {
			return err
		}
		why = "had failed"
	default:
		return herald.Temporary(err, "redis", 0)
	}
	if why == "" {
		return nil
	}
	e.metrics.WatchdogRepairs.Inc()
	e.log.Warn("waker re-armed a follow-up that "+why, "journey", s.JourneyID, "customer", s.CustomerID, "step", s.Step, "due", s.WakeAt)
	line := herald.TimelineEntry{Kind: herald.KindJourney, Ref: s.JourneyID,
		Summary: fmt.Sprintf("journey %s step %s: follow-up due %s %s and has been re-armed", s.WorkflowID, s.Step, s.WakeAt.UTC().Format(time.RFC3339), why)}
	if err := e.st.Append(ctx, s.CustomerID, line); err != nil {
		e.log.Error("timeline append", "customer", s.CustomerID, "journey", s.JourneyID, "err", err)
	}
	return nil
}
