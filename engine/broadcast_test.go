package engine_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func workerConfig(b *bundle, concurrency int) asynq.Config {
	return asynq.Config{
		Concurrency: concurrency, Queues: map[string]int{"critical": 3, "default": 2, "bulk": 1}, StrictPriority: true,
		RetryDelayFunc: b.e.RetryDelay, IsFailure: b.e.IsFailure,
		TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 200 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	}
}

// TestBroadcastExactlyOnceThroughAWorkerStop sends a broadcast to 2,000
// customers (30% opted out of its topic, 10% in quiet hours, a few erased
// after the audience was fixed, a few created after), stops the worker
// running the fan-out in the middle of a page and lets another one resume:
// every eligible customer gets exactly one email, the quiet ones after
// their window, the rest none, and the counts agree with the SMTP server.
func TestBroadcastExactlyOnceThroughAWorkerStop(t *testing.T) {
	t.Parallel()
	var offset atomic.Int64 // the engine's clock, ahead of the wall clock by this
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) { o.Now = clock })
	b.srv.Shutdown() // workers are started below, one to be stopped
	ctx := context.Background()
	actor := preferences.Actor{Kind: "api", Name: "test"}

	const n = 2000
	zones := []string{"Asia/Tokyo", "Europe/Warsaw", "America/New_York", "Asia/Kathmandu", ""}
	optedOut, quiet := map[string]bool{}, map[string]time.Time{} // quiet: email → end of the window
	for i := range n + 200 {
		plan := "pro"
		if i >= n {
			plan = "free" // not in the audience
		}
		c := herald.Customer{
			ID: fmt.Sprintf("c%04d", i), Email: fmt.Sprintf("c%04d@example.com", i), Timezone: zones[i%len(zones)],
			Attributes: map[string]any{"first_name": "Ada", "plan": plan},
		}
		c = b.customer(t, c)
		switch {
		case i < n && i%10 < 3:
			_, err := b.e.SetPreferences(ctx, c.ID, preferences.Patch{Topics: map[string]bool{"product-updates": false}}, actor, "api")
			require.NoError(t, err)
			optedOut[c.Email] = true
		case i < n && i%10 == 3:
			local := clock().In(c.Location())
			qh := herald.QuietHours{Start: local.Add(-time.Hour).Format("15:04"), End: local.Add(30 * time.Minute).Format("15:04")}
			_, err := b.e.SetPreferences(ctx, c.ID, preferences.Patch{QuietHours: &qh}, actor, "api")
			require.NoError(t, err)
			in, until := preferences.NextAllowed(qh, c.Location(), clock())
			require.True(t, in)
			quiet[c.Email] = until
		}
	}

	info, created, err := b.e.CreateBroadcast(ctx, engine.Broadcast{
		ID: "spring-launch", Template: "hello", Topic: "product-updates", Data: map[string]any{"plan": "Pro"},
		Audience: engine.Audience{Filter: `customer.plan == "pro"`}, Channels: []herald.Channel{herald.ChannelEmail},
	}, "test")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, int64(n), info.Counts.Matched)
	require.Equal(t, "scheduled", info.Status)

	// The audience is fixed: customers created now are not in it, erased
	// ones are skipped.
	for i := range 10 {
		b.customer(t, herald.Customer{ID: fmt.Sprintf("late%d", i), Email: fmt.Sprintf("late%d@example.com", i), Attributes: map[string]any{"first_name": "Ada", "plan": "pro"}})
	}
	erased := map[string]bool{}
	for _, i := range []int{4, 1005, 1506, 1997, 1999} {
		id := fmt.Sprintf("c%04d", i)
		require.NoError(t, b.e.Erase(ctx, id, actor))
		erased[id+"@example.com"] = true
	}

	// The first worker takes one task at a time: the fan-out, which holds
	// it while it walks. A second worker sends. The first is stopped in the
	// middle of the fan-out's second page, once some of that page's
	// messages have run, and the second resumes the walk.
	var armed atomic.Bool
	armed.Store(true)
	killed := make(chan struct{})
	cfg := workerConfig(b, 1)
	cfg.ShutdownTimeout = time.Millisecond
	srv1 := asynq.NewServerFromRedisClient(b.rdb, cfg)
	b.e.SetFanOutFault(func(ctx context.Context, queued int64) {
		if queued >= 700 && armed.CompareAndSwap(true, false) {
			// Page one has 299 eligible customers outside quiet hours.
			for deadline := time.Now().Add(time.Minute); b.smtp.Count() < 349 && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			go func() { srv1.Shutdown(); close(killed) }()
			<-ctx.Done() // the worker is gone before this page ends
		}
	})
	require.NoError(t, srv1.Start(b.e.Mux()))
	eventually(t, func() bool {
		got, err := b.e.Broadcast(ctx, "spring-launch")
		return err == nil && got.Status == "running"
	}, "the first worker runs the fan-out")
	srv2 := asynq.NewServerFromRedisClient(b.rdb, workerConfig(b, 8))
	require.NoError(t, srv2.Start(b.e.Mux()))
	t.Cleanup(srv2.Shutdown)
	<-killed
	mid, err := b.e.Broadcast(ctx, "spring-launch")
	require.NoError(t, err)
	require.Less(t, mid.Counts.Queued, int64(n), "stopped mid-walk")
	require.GreaterOrEqual(t, b.smtp.Count(), 349, "messages of the interrupted page ran before the walk resumed")

	eligible := 0
	for i := range n {
		email := fmt.Sprintf("c%04d@example.com", i)
		if !optedOut[email] && !erased[email] {
			eligible++
		}
	}
	quietLeft := 0
	for email := range quiet {
		if !erased[email] {
			quietLeft++
		}
	}
	eventually2 := func(cond func() bool, msg string) {
		t.Helper()
		// 2,000 messages under -race on a busy machine: generous, since
		// only a lost message would keep the condition from holding.
		if !assert.Eventually(t, cond, 2*time.Minute, 50*time.Millisecond, msg) {
			got, _ := b.e.Broadcast(ctx, "spring-launch")
			t.Fatalf("smtp %d, eligible %d, quiet %d; %+v", b.smtp.Count(), eligible, quietLeft, got)
		}
	}
	eventually2(func() bool {
		got, err := b.e.Broadcast(ctx, "spring-launch")
		return err == nil && got.Status == "done" && b.smtp.Count() == eligible-quietLeft && got.Counts.Deferred == int64(quietLeft)
	}, "every customer outside quiet hours has the email; the others are deferred")
	if t.Failed() {
		got, _ := b.e.Broadcast(ctx, "spring-launch")
		t.Fatalf("smtp %d want %d; %+v", b.smtp.Count(), eligible-quietLeft, got)
	}
	sched, err := b.insp.ListScheduledTasks("bulk", asynq.PageSize(5000))
	require.NoError(t, err)
	require.Len(t, sched, quietLeft, "one deferred message per customer in quiet hours")

	// Their window ends: the clock moves past it and the deferred
	// messages run.
	offset.Store(int64(45 * time.Minute))
	_, err = b.insp.RunAllScheduledTasks("bulk")
	require.NoError(t, err)
	eventually2(func() bool { return b.smtp.Count() == eligible }, "the deferred customers receive it after their window")

	per := map[string]int{}
	for _, m := range b.smtp.Messages() {
		require.Len(t, m.To, 1)
		per[m.To[0]]++
		if until, ok := quiet[m.To[0]]; ok {
			require.False(t, m.At.Add(time.Duration(offset.Load())).Before(until), "%s received it after quiet hours", m.To[0])
		}
	}
	for i := range n {
		email := fmt.Sprintf("c%04d@example.com", i)
		want := 1
		if optedOut[email] || erased[email] {
			want = 0
		}
		require.Equal(t, want, per[email], "%s", email)
	}
	for i := range 10 {
		require.Zero(t, per[fmt.Sprintf("late%d@example.com", i)], "created after the audience was fixed")
	}

	optedLeft := 0
	for email := range optedOut {
		if !erased[email] {
			optedLeft++
		}
	}
	eventually2(func() bool {
		got, err := b.e.Broadcast(ctx, "spring-launch")
		return err == nil && got.Counts.Sent["email"] == int64(b.smtp.Count())
	}, "sent counts reach the SMTP server's")
	got, err := b.e.Broadcast(ctx, "spring-launch")
	require.NoError(t, err)
	require.Equal(t, int64(n), got.Counts.Matched)
	require.Equal(t, int64(len(erased)), got.Counts.Skipped)
	require.Equal(t, int64(n-len(erased)), got.Counts.Queued)
	require.Equal(t, map[string]int64{"email": int64(eligible)}, got.Counts.Sent)
	require.Equal(t, map[string]int64{"opted_out_topic": int64(optedLeft)}, got.Counts.Suppressed)
	require.Equal(t, int64(quietLeft), got.Counts.Deferred)
	require.Zero(t, got.Counts.Failed)

	// What the finished broadcast keeps in Redis: its counters.
	bytes, err := b.e.Store().BroadcastBytes(ctx, "spring-launch")
	require.NoError(t, err)
	require.Less(t, bytes, int64(2048), "counts, not a record per recipient")
	t.Logf("bookkeeping of a finished 2,000-customer broadcast: %d bytes", bytes)
}

// TestBroadcastAtLocalTime schedules each customer's message at 09:00 in
// the customer's zone (the default zone for a customer without one); a
// cancel then stops every one of them.
func TestBroadcastAtLocalTime(t *testing.T) {
	t.Parallel()
	warsaw, err := time.LoadLocation("Europe/Warsaw")
	require.NoError(t, err)
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) { o.DefaultZone = warsaw })
	ctx := context.Background()
	zones := map[string]string{"tokyo": "Asia/Tokyo", "newyork": "America/New_York", "nozone": ""}
	for id, z := range zones {
		b.customer(t, herald.Customer{ID: id, Email: id + "@example.com", Timezone: z})
	}
	before := time.Now()
	info, created, err := b.e.CreateBroadcast(ctx, engine.Broadcast{
		ID: "morning", Template: "hello", Topic: "product-updates", Data: map[string]any{"plan": "Pro"},
		Audience: engine.Audience{CustomerIDs: []string{"tokyo", "newyork", "nozone"}}, LocalTime: "09:00",
	}, "test")
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, int64(3), info.Counts.Matched)
	eventually(t, func() bool {
		got, err := b.e.Broadcast(ctx, "morning")
		return err == nil && got.Status == "done" && got.Counts.Queued == 3
	}, "the fan-out queues all three")
	tasks, err := b.insp.ListScheduledTasks("bulk")
	require.NoError(t, err)
	require.Len(t, tasks, 3)
	for _, task := range tasks {
		id := strings.TrimPrefix(task.ID, "m:b_morning_")
		loc := warsaw
		if zones[id] != "" {
			loc, err = time.LoadLocation(zones[id])
			require.NoError(t, err)
		}
		at := task.NextProcessAt.In(loc)
		require.Equal(t, "09:00", at.Format("15:04"), "%s: %s", id, at)
		require.True(t, at.After(before) && at.Before(before.Add(24*time.Hour)), "%s: the next 09:00, %s", id, at)
	}
	require.Zero(t, b.smtp.Count())

	got, err := b.e.CancelBroadcast(ctx, "morning")
	require.NoError(t, err)
	require.Equal(t, "cancelled", got.Status)
	_, err = b.insp.RunAllScheduledTasks("bulk")
	require.NoError(t, err)
	eventually(t, func() bool {
		got, err := b.e.Broadcast(ctx, "morning")
		return err == nil && got.Counts.Cancelled == 3
	}, "each waiting message stops when it comes up")
	require.Zero(t, b.smtp.Count(), "a cancelled broadcast sends nothing more")
}

// TestBroadcastStartsJourneys starts a workflow's journey for each
// customer of the audience, once, except for a customer who left the
// workflow's topic.
func TestBroadcastStartsJourneys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{ID: "c1", Email: "c1@example.com"})
	b.customer(t, herald.Customer{ID: "c2", Email: "c2@example.com"})
	_, err := b.e.SetPreferences(ctx, "c2", preferences.Patch{Topics: map[string]bool{"onboarding": false}}, preferences.Actor{Kind: "api", Name: "test"}, "api")
	require.NoError(t, err)
	req := engine.Broadcast{ID: "onboard-all", Workflow: "onboard", Audience: engine.Audience{Filter: "true"}}
	// The journeys start with the broadcast's data: data their first
	// send cannot render is refused, as an event's would be.
	_, _, err = b.e.CreateBroadcast(ctx, req, "test")
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
	require.ErrorContains(t, err, `data: workflow "onboard" starts with step "welcome", whose template "hello" reads key "plan"`)
	req.Data = map[string]any{"plan": "Pro"}
	_, created, err := b.e.CreateBroadcast(ctx, req, "test")
	require.NoError(t, err)
	require.True(t, created)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "c1's journey sends its first step")
	// The step's send goes out inline, just before the journey is saved.
	eventually(t, func() bool { js, err := b.e.Journeys(ctx, "c1"); return err == nil && len(js) == 1 }, "c1's journey is saved")
	js, err := b.e.Journeys(ctx, "c1")
	require.NoError(t, err)
	require.Len(t, js, 1)
	require.Equal(t, "onboard", js[0].WorkflowID)
	js, err = b.e.Journeys(ctx, "c2")
	require.NoError(t, err)
	require.Empty(t, js, "c2 left the workflow's topic")

	_, created, err = b.e.CreateBroadcast(ctx, req, "test")
	require.NoError(t, err)
	require.False(t, created, "the same broadcast again")
	req.Data = map[string]any{"plan": "Team"}
	_, _, err = b.e.CreateBroadcast(ctx, req, "test")
	require.Equal(t, herald.EConflict, herald.ErrorCode(err))
	js, err = b.e.Journeys(ctx, "c1")
	require.NoError(t, err)
	require.Len(t, js, 1, "one journey per customer")
}

// A worker can take a broadcast's fan-out between its creation queueing
// it and writing the record. The fan-out waits for the record instead of
// ending as though the creation had stopped, and the broadcast is sent.
func TestBroadcastFanOutTakenBeforeItsRecord(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{ID: "c1", Email: "c1@example.com"})
	b.e.SetRecordFault(func(id string) {
		// The fan-out has run once: it waits in the retry set, or (were it
		// to end) it is gone.
		eventually(t, func() bool {
			ti, err := b.insp.GetTaskInfo("bulk", "b:"+id)
			return errors.Is(err, asynq.ErrTaskNotFound) || (err == nil && ti.State == asynq.TaskStateRetry)
		}, "the fan-out ran before the record was written")
	})
	_, created, err := b.e.CreateBroadcast(ctx, engine.Broadcast{ID: "early", Template: "hello", Topic: "product-updates", Data: map[string]any{"plan": "Pro"}, Audience: engine.Audience{Filter: "true"}, Channels: []herald.Channel{herald.ChannelEmail}}, "test")
	require.NoError(t, err)
	require.True(t, created)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the broadcast is sent once its record exists")
	info, err := b.e.Broadcast(ctx, "early")
	require.NoError(t, err)
	require.NotEqual(t, "scheduled", info.Status)
}
