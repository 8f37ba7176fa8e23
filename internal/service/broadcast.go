package service

import (
	"context"
	"encoding/json"
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
// queue — and counts their messages as cancelled. Each message is counted
// before its task is deleted, and once (Store.TallyOnce), so a sweep
// stopped midway, concurrent sweeps and a task that starts meanwhile (it
// finds the broadcast cancelled and counts itself) count it once.
//
// It then settles the page the fan-out was queueing when the broadcast
// was cancelled: a customer of that page whose message has no task and did
// not run is counted as cancelled, one who is gone as skipped. It returns
// how many messages it counted.
func SweepBroadcast(ctx context.Context, insp *asynq.Inspector, st *redisstore.Store, id string) (int64, error) {
	prefixes := []string{"m:" + BroadcastMessageID(id, ""), "d:" + BroadcastMessageID(id, "")}
	type ref struct {
		q, id, msg string
		task       redisstore.MessageTask
		journey    bool // a journey start
		once       bool // a copy a resumed fan-out queued
	}
	var found []ref
	busy := map[string]bool{} // message IDs with a task queued or running
	lists := func(q string) []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
		return []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListScheduledTasks, insp.ListPendingTasks, insp.ListRetryTasks, insp.ListActiveTasks}
	}
	for _, q := range wire.Queues {
		for i, list := range lists(q) {
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
							msg := taskMessage(t)
							busy[msg] = true
							if i < 3 { // not running: deleted below
								var p struct {
									CustomerID string         `json:"customer_id"`
									Channel    herald.Channel `json:"channel"`
									Workflow   string         `json:"workflow"`
									Once       bool           `json:"once"`
									Deferrals  int            `json:"deferrals"`
								}
								_ = json.Unmarshal(t.Payload, &p)
								r := ref{q: q, id: t.ID, msg: msg, journey: p.Workflow != "", once: p.Once,
									task: redisstore.MessageTask{Customer: p.CustomerID, Message: msg, Continued: p.Deferrals > 0}}
								if strings.HasPrefix(t.ID, "d:") {
									r.task.Channel = p.Channel
								}
								found = append(found, r)
							}
						}
					}
				}
				if len(tasks) < 1000 {
					break
				}
			}
		}
	}
	var n int64
	for start := 0; start < len(found); start += 500 {
		chunk := found[start:min(start+500, len(found))]
		// A task whose message got past it (its worker died after, or
		// it is a copy a resumed fan-out queued) counts elsewhere: it is
		// deleted, not counted. A journey start has no index: a copy is
		// checked against the customer's timeline.
		var refs []redisstore.MessageTask
		var customers, copies []string
		for _, r := range chunk {
			if r.journey {
				if r.once {
					customers, copies = append(customers, r.task.Customer), append(copies, r.msg)
				}
				continue
			}
			refs = append(refs, r.task)
		}
		settled, err := st.Settled(ctx, refs)
		if err != nil {
			return n, err
		}
		ran, err := st.MessagesRan(ctx, customers, copies)
		if err != nil {
			return n, err
		}
		done := map[redisstore.MessageTask]bool{}
		for i, r := range refs {
			done[r] = settled[i]
		}
		for i, m := range copies {
			done[redisstore.MessageTask{Customer: customers[i], Message: m}] = ran[i]
		}
		var msgs []string
		for _, r := range chunk {
			if !done[r.task] {
				msgs = append(msgs, r.msg)
			}
		}
		k, err := st.TallyOnce(context.WithoutCancel(ctx), id, "cancelled", msgs...)
		if err != nil {
			return n, err
		}
		n += k
		for _, r := range chunk {
			if _, err := deleteIdle(insp, r.q, r.id); err != nil {
				return n, herald.Temporary(err, "redis", 0)
			}
		}
	}
	k, err := settlePage(ctx, st, id, busy)
	n += k
	if err != nil {
		return n, err
	}
	// The fan-out goes last: while it is queued, a sweep stopped before
	// this point is made again when the fan-out runs and finds the
	// broadcast cancelled. It counts nothing itself: the cancel counted
	// the audience it had not reached.
	if _, err := deleteIdle(insp, wire.QueueBulk, "b:"+id); err != nil {
		return n, herald.Temporary(err, "redis", 0)
	}
	return n, nil
}

// settlePage counts the customers of the page a cancel interrupted whose
// message nothing else will count: no task of it is queued or running and
// it did not run. The fan-out may still be queueing that page; a message it
// queues after this counts itself when it runs, once.
func settlePage(ctx context.Context, st *redisstore.Store, id string, busy map[string]bool) (int64, error) {
	page, err := st.CancelledPage(ctx, id, func(c string) string { return BroadcastMessageID(id, c) })
	if err != nil || len(page) == 0 {
		return 0, err
	}
	var cancelled, skipped []string
	for _, c := range page {
		msg := BroadcastMessageID(id, c.ID)
		switch {
		case busy[msg] || c.Ran:
		case c.Gone:
			skipped = append(skipped, msg)
		default:
			cancelled = append(cancelled, msg)
		}
	}
	ctx = context.WithoutCancel(ctx)
	a, err := st.TallyOnce(ctx, id, "cancelled", cancelled...)
	if err != nil {
		return a, err
	}
	b, err := st.TallyOnce(ctx, id, "skipped", skipped...)
	if err != nil {
		return a + b, err
	}
	return a + b, st.DropCancelledPage(ctx, id)
}

// BroadcastMessageID is the message ID of a broadcast's message to one
// customer: the same on every run of the fan-out, so the delivery ledger
// makes a resumed or repeated fan-out send nothing twice.
func BroadcastMessageID(broadcast, customer string) string {
	return "b_" + broadcast + "_" + customer
}

// taskMessage is the message behind a message task (its ID is
// m:<message>) or a delivery task (its payload names it: customer IDs may
// hold ":", so its ID does not tell).
func taskMessage(t *asynq.TaskInfo) string {
	if strings.HasPrefix(t.ID, "d:") {
		var d wire.Deliver
		if wire.Decode(t.Payload, &d) == nil && d.MessageID != "" {
			return d.MessageID
		}
		return t.ID
	}
	return strings.TrimPrefix(t.ID, "m:")
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
