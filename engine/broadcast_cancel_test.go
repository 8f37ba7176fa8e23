package engine_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cancelAudience creates n customers in the audience of a broadcast
// "launch" (two pages of the fan-out) and erases a few of them after the
// audience is fixed, in both pages: the broadcast's counts must account
// for every one of them once. No worker may run the bulk queue yet.
func cancelAudience(t *testing.T, b *bundle, n int) {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("c%04d", i)
		b.customer(t, herald.Customer{ID: ids[i], Email: ids[i] + "@example.com"})
	}
	_, created, err := b.e.CreateBroadcast(ctx, engine.Broadcast{
		ID: "launch", Template: "hello", Topic: "product-updates", Data: map[string]any{"plan": "Pro"},
		Audience: engine.Audience{CustomerIDs: ids}, Channels: []herald.Channel{herald.ChannelEmail},
	}, "test")
	require.NoError(t, err)
	require.True(t, created)
	for _, i := range []int{3, 400, 650} {
		require.NoError(t, b.e.Erase(ctx, ids[i], preferences.Actor{Kind: "api", Name: "test"}))
	}
	// The erasures run before the fan-out does: no worker takes the bulk
	// queue yet.
	cfg := workerConfig(b, 2)
	cfg.Queues = map[string]int{"critical": 1}
	eraser := asynq.NewServerFromRedisClient(b.rdb, cfg)
	require.NoError(t, eraser.Start(b.e.Mux()))
	eventually(t, func() bool {
		for _, i := range []int{3, 400, 650} {
			if _, err := b.e.Store().Customer(ctx, ids[i]); herald.ErrorCode(err) != herald.ENotFound {
				return false
			}
		}
		return true
	}, "the three are erased")
	eraser.Shutdown()
}

// requireEveryoneCountedOnce waits until nothing of the broadcast is left
// in any queue, then requires its counts to add up to its audience, each
// customer once: sent (as many as the SMTP server has), skipped (erased,
// as many as the fan-out reached) and cancelled.
func requireEveryoneCountedOnce(t *testing.T, b *bundle, n int, skipped int64) engine.BroadcastInfo {
	t.Helper()
	ctx := context.Background()
	left := func() int {
		total := 0
		for _, q := range []string{"critical", "default", "bulk"} {
			for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){b.insp.ListPendingTasks, b.insp.ListActiveTasks, b.insp.ListScheduledTasks, b.insp.ListRetryTasks} {
				tasks, _ := list(q, asynq.PageSize(1000))
				for _, task := range tasks {
					if strings.Contains(task.ID, "launch") {
						total++
					}
				}
			}
		}
		return total
	}
	eventually(t, func() bool { return left() == 0 }, "nothing of the broadcast is left in a queue")
	time.Sleep(200 * time.Millisecond) // a count written late would show
	got, err := b.e.Broadcast(ctx, "launch")
	require.NoError(t, err)
	c := got.Counts
	require.Equal(t, "cancelled", got.Status)
	require.Equal(t, int64(b.smtp.Count()), c.Sent["email"], "%+v", c)
	require.Equal(t, skipped, c.Skipped, "the erased customers the fan-out reached: %+v", c)
	require.Equal(t, int64(n), c.Sent["email"]+c.Skipped+c.Cancelled, "every customer counted once: %+v", c)
	return got
}

// TestBroadcastCancelledWhileAPageIsQueued cancels a broadcast while its
// fan-out queues a page, as workers send the messages it queued: the
// customers the fan-out had not reached, those whose messages the cancel
// took out of the queue, those it queued after the cancel (they stop
// when they run) and those already sent are each counted once.
func TestBroadcastCancelledWhileAPageIsQueued(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Shutdown() // started after the erasures
	const n = 700
	var cancelled atomic.Bool
	b.e.SetFanOutFault(func(ctx context.Context, queued int64) {
		if queued == 150 && cancelled.CompareAndSwap(false, true) {
			for deadline := time.Now().Add(10 * time.Second); b.smtp.Count() < 20 && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			_, err := b.e.CancelBroadcast(context.WithoutCancel(ctx), "launch")
			assert.NoError(t, err)
		}
	})
	cancelAudience(t, b, n)
	srv := asynq.NewServerFromRedisClient(b.rdb, workerConfig(b, 4))
	require.NoError(t, srv.Start(b.e.Mux()))
	t.Cleanup(srv.Shutdown)
	got := requireEveryoneCountedOnce(t, b, n, 2) // the third erased is past the first page
	require.True(t, cancelled.Load())
	require.Greater(t, got.Counts.Sent["email"], int64(0), "some were sent before the cancel")
	require.Less(t, got.Counts.Sent["email"], int64(500), "the cancel stopped the rest of the first page")
}

// TestBroadcastCancelledAfterItsFanOutDied: the worker walking the
// audience dies in the middle of a page; the broadcast is cancelled before
// another worker takes the walk up. The customers of that page whose
// messages were never queued are counted as cancelled: by the cancel's
// sweep or, when the process making the cancel died before it swept, by
// the fan-out when it runs again.
func TestBroadcastCancelledAfterItsFanOutDied(t *testing.T) {
	t.Parallel()
	for _, sweep := range []bool{true, false} {
		name := "the cancel sweeps"
		if !sweep {
			name = "the cancel dies before it sweeps"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cancelAfterTheFanOutDied(t, sweep)
		})
	}
}

// dieInTheFirstPage runs the broadcast of cancelAudience on a worker of
// the given concurrency that dies once the fan-out has queued 150 messages
// of its first page and the SMTP server has sent (at least) sent of them.
func dieInTheFirstPage(t *testing.T, b *bundle, n, concurrency, sent int) {
	t.Helper()
	var armed atomic.Bool
	armed.Store(true)
	killed := make(chan struct{})
	cfg := workerConfig(b, concurrency)
	cfg.ShutdownTimeout = time.Millisecond
	srv := asynq.NewServerFromRedisClient(b.rdb, cfg)
	b.e.SetFanOutFault(func(ctx context.Context, queued int64) {
		if queued >= 150 && armed.CompareAndSwap(true, false) {
			for deadline := time.Now().Add(time.Minute); b.smtp.Count() < sent && time.Now().Before(deadline); {
				time.Sleep(5 * time.Millisecond)
			}
			go func() { srv.Shutdown(); close(killed) }()
			<-ctx.Done() // the worker is gone before this page ends
		}
	})
	cancelAudience(t, b, n)
	require.NoError(t, srv.Start(b.e.Mux()))
	<-killed
}

func cancelAfterTheFanOutDied(t *testing.T, sweep bool) {
	b := setup(t)
	b.srv.Shutdown()
	const n = 700
	dieInTheFirstPage(t, b, n, 1, 0)
	ctx := context.Background()
	mid, err := b.e.Broadcast(ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, int64(0), mid.Counts.Queued, "stopped in the first page")

	if sweep {
		_, err = b.e.CancelBroadcast(ctx, "launch")
	} else {
		_, err = b.e.Store().Cancel(ctx, "launch") // the record only
		info, ierr := b.insp.GetTaskInfo("bulk", "b:launch")
		require.NoError(t, ierr, "the fan-out is still queued, to run again")
		require.NotEqual(t, asynq.TaskStateActive, info.State)
	}
	require.NoError(t, err)
	srv2 := asynq.NewServerFromRedisClient(b.rdb, workerConfig(b, 4))
	require.NoError(t, srv2.Start(b.e.Mux()))
	t.Cleanup(srv2.Shutdown)
	got := requireEveryoneCountedOnce(t, b, n, 2)
	require.Zero(t, got.Counts.Sent["email"], "nothing ran before the cancel")
	if !sweep {
		return
	}

	// A message task that runs again, its worker having died after it
	// counted itself, counts nothing more: one queued before the cancel,
	// one never queued, one to an erased customer.
	for _, c := range []string{"c0001", "c0499", "c0003"} {
		m := wire.Message{ID: engine.BroadcastMessageID("launch", c), CustomerID: c, Template: "hello", Topic: "product-updates",
			Data: map[string]any{"plan": "Pro"}, Channels: []herald.Channel{herald.ChannelEmail}, Actor: "broadcast launch"}
		for range 2 {
			require.NoError(t, b.e.Mux().ProcessTask(ctx, asynq.NewTask(wire.TypeMessage, wire.Encode(m))))
		}
	}
	again, err := b.e.Broadcast(ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, got.Counts, again.Counts)
	require.Zero(t, b.smtp.Count())
}

// TestBroadcastCancelledAfterItsFanOutResumed: the worker dies in the
// middle of a page after some of its messages were sent (a send it was
// making may have reached the server, its task queued again); the walk
// resumes and queues that page again, copies that run only if their first
// run did not; the broadcast is cancelled while those copies wait. A task
// whose message was sent is deleted without counting it cancelled.
func TestBroadcastCancelledAfterItsFanOutResumed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.srv.Shutdown()
	const n = 700
	dieInTheFirstPage(t, b, n, 4, 50)
	sent := b.smtp.Count()
	require.GreaterOrEqual(t, sent, 50)

	// The walk resumes here, with no worker to send what it queues.
	ctx := context.Background()
	info, err := b.insp.GetTaskInfo("bulk", "b:launch")
	require.NoError(t, err)
	require.NoError(t, b.e.Mux().ProcessTask(ctx, asynq.NewTask(info.Type, info.Payload)))
	got, err := b.e.Broadcast(ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, "done", got.Status)

	_, err = b.e.CancelBroadcast(ctx, "launch")
	require.NoError(t, err)
	srv2 := asynq.NewServerFromRedisClient(b.rdb, workerConfig(b, 4))
	require.NoError(t, srv2.Start(b.e.Mux()))
	t.Cleanup(srv2.Shutdown)
	got = requireEveryoneCountedOnce(t, b, n, 3)
	// Sends the dying worker had under way may land after the count
	// above; none is made after the cancel.
	require.Less(t, got.Counts.Sent["email"], int64(sent+10), "nothing sent after the cancel")
}

// A message deferred for quiet hours and then cancelled counts as
// cancelled: its deferral wrote a timeline line, yet the message did not
// reach its end.
func TestBroadcastCancelCountsADeferredMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c := b.customer(t, herald.Customer{ID: "quiet", Email: "quiet@example.com", Timezone: "Europe/Warsaw"})
	local := time.Now().In(c.Location())
	qh := herald.QuietHours{Start: local.Add(-time.Hour).Format("15:04"), End: local.Add(2 * time.Hour).Format("15:04")}
	_, err := b.e.SetPreferences(ctx, c.ID, preferences.Patch{QuietHours: &qh}, preferences.Actor{Kind: "api", Name: "test"}, "api")
	require.NoError(t, err)
	_, _, err = b.e.CreateBroadcast(ctx, engine.Broadcast{
		ID: "launch", Template: "hello", Topic: "product-updates", Data: map[string]any{"plan": "Pro"},
		Audience: engine.Audience{CustomerIDs: []string{c.ID}}, Channels: []herald.Channel{herald.ChannelEmail},
	}, "test")
	require.NoError(t, err)
	eventually(t, func() bool {
		got, err := b.e.Broadcast(ctx, "launch")
		return err == nil && got.Counts.Deferred == 1
	}, "deferred to the end of quiet hours")
	got, err := b.e.CancelBroadcast(ctx, "launch")
	require.NoError(t, err)
	require.Equal(t, int64(1), got.Counts.Cancelled, "%+v", got.Counts)
	require.Zero(t, b.smtp.Count())
}
