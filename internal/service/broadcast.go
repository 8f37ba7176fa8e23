package service

import (
	"context"
	"errors"
	"strings"

	"github.com/hibiken/asynq"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
)

// CancelBroadcast cancels a broadcast and takes its messages still waiting
// in a queue (for a customer's local hour, for quiet hours, for a retry)
// out of it, counting each as cancelled, so the counts say at once what
// the cancel stopped. A message that started meanwhile ends on its own:
// it finds the broadcast cancelled and counts itself.
func (s *Service) CancelBroadcast(ctx context.Context, id string) (wire.BroadcastInfo, error) {
	info, err := s.o.Store.Cancel(ctx, id)
	if err != nil {
		return info, err
	}
	n, err := SweepBroadcast(ctx, asynq.NewInspectorFromRedisClient(s.o.Store.Redis()), s.o.Store, id)
	if err != nil || n == 0 {
		return info, err
	}
	return s.o.Store.BroadcastInfo(ctx, id)
}

// SweepBroadcast deletes the queued tasks of a cancelled broadcast — its
// fan-out and its messages, journey starts and deliveries waiting in any
// queue — and adds the messages deleted to its count "cancelled". Only the
// caller whose delete succeeds counts a task, and a task that runs is not
// deleted, so concurrent sweeps and workers count each task once.
func SweepBroadcast(ctx context.Context, insp *asynq.Inspector, st *redisstore.Store, id string) (int64, error) {
	prefixes := []string{"m:" + "b_" + id + "_", "d:" + "b_" + id + "_"}
	type ref struct{ q, id string }
	var found []ref
	for _, q := range wire.Queues {
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListScheduledTasks, insp.ListPendingTasks, insp.ListRetryTasks} {
			for page := 1; ; page++ {
				if err := ctx.Err(); err != nil {
					return 0, err
				}
				tasks, err := list(q, asynq.PageSize(1000), asynq.Page(page))
				if errors.Is(err, asynq.ErrQueueNotFound) {
					break
				}
				if err != nil {
					return 0, herald.Temporary(err, "redis", 0)
				}
				for _, t := range tasks {
					for _, p := range prefixes {
						if strings.HasPrefix(t.ID, p) {
							found = append(found, ref{q, t.ID})
						}
					}
				}
				if len(tasks) < 1000 {
					break
				}
			}
		}
	}
	// The fan-out of a broadcast that had not started: nothing to count.
	if _, err := deleteIdle(insp, wire.QueueBulk, "b:"+id); err != nil {
		return 0, herald.Temporary(err, "redis", 0)
	}
	// Counted every few hundred deletions, so a sweep that stops midway
	// leaves few deleted and uncounted.
	var n, uncounted int64
	count := func() error {
		if uncounted == 0 {
			return nil
		}
		err := st.CountBroadcastN(context.WithoutCancel(ctx), id, "cancelled", uncounted)
		if err == nil {
			n, uncounted = n+uncounted, 0
		}
		return err
	}
	for i, r := range found {
		deleted, err := deleteIdle(insp, r.q, r.id)
		if err != nil {
			cerr := count()
			return n, errors.Join(herald.Temporary(err, "redis", 0), cerr)
		}
		if deleted {
			uncounted++
		}
		if i%500 == 499 {
			if err := count(); err != nil {
				return n, err
			}
		}
	}
	err := count()
	return n, err
}

// deleteIdle deletes a task unless it is gone or has started since it was
// listed (asynq refuses to delete a running task); deleted says whether
// this call removed it.
func deleteIdle(insp *asynq.Inspector, queue, id string) (deleted bool, err error) {
	err = insp.DeleteTask(queue, id)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return false, nil
	}
	if ti, ierr := insp.GetTaskInfo(queue, id); ierr == nil && ti.State == asynq.TaskStateActive {
		return false, nil
	} else if errors.Is(ierr, asynq.ErrTaskNotFound) {
		return false, nil
	}
	return false, err
}
