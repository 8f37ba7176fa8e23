package engine

import (
	"bytes"
	"context"
	"errors"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
)

// Event validates and enqueues an app event (the service's Event). An
// idempotency key makes a repeat within 24 h a no-op that returns the first
// event's ID.
func (e *Engine) Event(ctx context.Context, ev herald.Event, actor string) (string, error) {
	if ev.Actor == "" {
		ev.Actor = actor
	}
	return e.svc.Event(ctx, ev)
}

// SetPreferences is the service's SetPreferences: validate, merge, consent
// and timeline entries, journeys of topics left end at once.
func (e *Engine) SetPreferences(ctx context.Context, customerID string, p preferences.Patch, actor preferences.Actor, source string) (herald.Preferences, error) {
	return e.svc.SetPreferences(ctx, customerID, p, actor, source)
}

func actorText(a preferences.Actor) string { return service.ActorText(a) }

// Erase is the service's Erase: addresses suppressed first, then
// everything else under the journey lock.
func (e *Engine) Erase(ctx context.Context, customerID string, actor preferences.Actor) error {
	return e.svc.Erase(ctx, customerID, actor)
}

// journeys is what the service asks of a worker.
type journeys struct{ e *Engine }

func (j journeys) ExitTopic(ctx context.Context, customerID, topic string) error {
	return j.e.exitTopic(ctx, customerID, topic)
}

func (j journeys) Erase(ctx context.Context, c herald.Customer, actor preferences.Actor) error {
	return j.e.erase(ctx, c, actor)
}

// handleErase finishes an erasure asked for outside a worker (the Go client).
func (e *Engine) handleErase(ctx context.Context, t *asynq.Task) error {
	var x wire.Erase
	if err := wire.Decode(t.Payload(), &x); err != nil {
		return skip(err)
	}
	c, err := e.st.Customer(ctx, x.CustomerID)
	if herald.ErrorCode(err) == herald.ENotFound {
		return nil // already done
	}
	if err != nil {
		return err
	}
	return e.erase(ctx, c, preferences.Actor{Kind: x.Actor, Name: x.ActorName})
}

// erase removes the customer (addresses already suppressed) under the
// journey lock, so no journey step can write the customer's keys again
// halfway: running journeys and their follow-ups, the waiting index, every
// task that carries the customer's data (queued, scheduled, retrying or
// archived), the global message indexes, every key of the customer; the
// consent log keeps one erasure entry without personal data. The profile
// goes last, so a retry after any failure finds the customer and finishes.
// Signed links die with the profile: they carry its creation time, and a
// new customer with the same ID has another.
func (e *Engine) erase(ctx context.Context, c herald.Customer, actor preferences.Actor) error {
	var unlock func()
	var err error
	for i := 0; ; i++ {
		if unlock, err = e.lock(ctx, c.ID); err == nil {
			break
		}
		if i == 50 || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer unlock()
	states, err := e.Journeys(ctx, c.ID)
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	var jids []string
	for _, s := range states {
		e.cancelWake(s)
		jids = append(jids, s.JourneyID)
	}
	if err := e.st.ForgetWaiting(ctx, c.ID, jids); err != nil {
		return err
	}
	if err := e.deleteTasks(ctx, c.ID); err != nil {
		return err
	}
	// The workflow numbers count the running journeys as exited (erased),
	// and the message lookups that point at the customer go.
	if err := e.forgetInsight(ctx, c.ID); err != nil {
		return err
	}
	if err := e.st.ForgetMessageIndexes(ctx, c.ID); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	if _, err := e.st.DeleteCustomer(ctx, c.ID, "customer"); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	if err := e.prefs.Erase(ctx, c.ID, nil, actor); err != nil {
		return err
	}
	if err := e.st.DeleteProfile(ctx, c.ID); err != nil {
		return err
	}
	e.log.Info("customer erased", "customer", c.ID, "by", actorText(actor))
	return nil
}

// deleteTasks deletes every task of the customer that is not running: any
// in a queue's pending, scheduled, retry or archived set whose payload
// names the customer, and those in the task index older versions kept. A
// running task finds the customer gone and ends.
//
// Queueing a task writes no index (it would cost a Redis command and a key
// per message): erasure, which is rare, reads the queues instead, 500
// tasks a call, so its time grows with the number of waiting tasks.
func (e *Engine) deleteTasks(ctx context.Context, customerID string) error {
	insp := e.insp
	refs, err := e.st.CustomerTasks(ctx, customerID)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if err := deleteIdleTask(insp, r.Queue, r.ID); err != nil {
			e.log.Debug("erase: task not deleted", "queue", r.Queue, "task", r.ID, "err", err)
		}
	}
	needle := []byte(`"customer_id":"` + customerID + `"`)
	queues, err := insp.Queues()
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	// Collect first: deleting while paging would shift the pages.
	type ref struct{ q, id string }
	var found []ref
	for _, q := range queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks, insp.ListArchivedTasks} {
			for page := 1; ; page++ {
				tasks, err := list(q, asynq.PageSize(500), asynq.Page(page))
				if err != nil {
					return herald.Temporary(err, "redis", 0)
				}
				for _, t := range tasks {
					if bytes.Contains(t.Payload, needle) {
						found = append(found, ref{q, t.ID})
					}
				}
				if len(tasks) < 500 {
					break
				}
			}
		}
	}
	for _, r := range found {
		if err := deleteIdleTask(insp, r.q, r.id); err != nil {
			return herald.Temporary(err, "redis", 0)
		}
	}
	return nil
}

// deleteIdleTask deletes a task unless it is gone or has started since it
// was listed: asynq refuses to delete a running task, and a running task
// finds the customer gone and ends.
func deleteIdleTask(insp *asynq.Inspector, queue, id string) error {
	err := insp.DeleteTask(queue, id)
	if err == nil || errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	if ti, ierr := insp.GetTaskInfo(queue, id); ierr == nil && ti.State == asynq.TaskStateActive {
		return nil
	} else if errors.Is(ierr, asynq.ErrTaskNotFound) {
		return nil
	}
	return err
}
