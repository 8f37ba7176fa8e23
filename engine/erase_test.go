package engine_test

import (
	"bytes"
	"context"
	"io"
	"mime/quotedprintable"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
)

var prefLink = regexp.MustCompile(`/preferences\?token=([A-Za-z0-9._=%-]+)`)

// TestEraseMidJourneyLeavesNothing erases a customer whose journey waits for
// its follow-up while tasks carrying the customer's data sit pending,
// scheduled and archived, then searches every Redis key and every task for the customer's
// ID, addresses and data. Links mailed before the erasure die, even for a
// new customer under the same ID.
func TestEraseMidJourneyLeavesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA", Attributes: map[string]any{"first_name": "Adelheid"}})
	startWaiting(t, b) // the welcome email is sent; the follow-up waits
	eventually(t, func() bool { return len(b.smtp.Messages()) == 1 }, "welcome sent")
	body, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(b.smtp.Messages()[0].Data)))
	m := prefLink.FindSubmatch(body)
	require.NotNil(t, m, "the email carries a preference link")
	token, err := url.QueryUnescape(string(m[1]))
	require.NoError(t, err)

	// Tasks carrying the customer's data: one scheduled for later, one
	// archived.
	cl := asynq.NewClientFromRedisClient(b.rdb)
	t.Cleanup(func() { _ = cl.Close() })
	later := wire.Message{ID: "m_later", CustomerID: "c1", Template: "hello", Topic: "onboarding", Data: map[string]any{"reset_url": "https://x.example/zz-data-marker"}}
	_, err = cl.Enqueue(asynq.NewTask(wire.TypeMessage, wire.Encode(later)), asynq.Queue(wire.QueueDefault), asynq.ProcessIn(time.Hour), asynq.TaskID("m:m_later"))
	require.NoError(t, err)
	broken := wire.Message{ID: "m_broken", CustomerID: "c1", Template: "no-such-template", Topic: "onboarding", Data: map[string]any{"note": "zz-data-marker"}}
	_, err = cl.Enqueue(asynq.NewTask(wire.TypeMessage, wire.Encode(broken)), asynq.Queue(wire.QueueDefault), asynq.TaskID("m:m_broken"), asynq.MaxRetry(0))
	require.NoError(t, err)
	eventually(t, func() bool { a, _ := b.insp.ListArchivedTasks(wire.QueueDefault); return len(a) == 1 }, "the broken message is archived")
	// And one waiting in a paused queue: pending, not yet taken.
	require.NoError(t, b.insp.PauseQueue(wire.QueueBulk))
	waiting := wire.Message{ID: "m_waiting", CustomerID: "c1", Template: "hello", Topic: "product-updates", Data: map[string]any{"note": "zz-data-marker"}}
	_, err = cl.Enqueue(asynq.NewTask(wire.TypeMessage, wire.Encode(waiting)), asynq.Queue(wire.QueueBulk), asynq.TaskID("m:m_waiting"))
	require.NoError(t, err)

	require.NoError(t, b.e.Erase(ctx, "c1", preferences.Actor{Kind: "api", Name: "test"}))
	require.Equal(t, herald.ENotFound, herald.ErrorCode(b.e.Erase(ctx, "c1", preferences.Actor{Kind: "api", Name: "test"})), "erasing again: nothing left to erase")

	// Every key, every value (asynq's tasks included).
	keys, err := b.rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		if k == "herald:{c:c1}:consent" {
			continue // the erasure entry: who and when, no personal data
		}
		require.NotContains(t, k, "{c:c1}", "a key of the customer is left: %s", k)
		typ, err := b.rdb.Type(ctx, k).Result()
		require.NoError(t, err)
		var vals []string
		switch typ {
		case "string":
			v, _ := b.rdb.Get(ctx, k).Result()
			vals = []string{v}
		case "hash":
			h, _ := b.rdb.HGetAll(ctx, k).Result()
			for f, v := range h {
				vals = append(vals, f, v)
			}
		case "list":
			vals, _ = b.rdb.LRange(ctx, k, 0, -1).Result()
		case "set":
			vals, _ = b.rdb.SMembers(ctx, k).Result()
		case "zset":
			vals, _ = b.rdb.ZRange(ctx, k, 0, -1).Result()
		}
		for _, v := range vals {
			require.NotEqual(t, "c1", v, "%s (%s) still points at the customer", k, typ)
			for _, needle := range []string{"ada@example.com", "U0ADA", "Adelheid", "zz-data-marker", `"c1"`, "c1|"} {
				require.NotContains(t, v, needle, "%s (%s) still holds %q", k, typ, needle)
			}
		}
	}
	require.Empty(t, journeys(t, b))
	log, err := b.e.Preferences().Consent(ctx, "c1")
	require.NoError(t, err)
	require.Len(t, log, 1)
	require.Equal(t, "erasure", log[0].Source)

	// A new customer under the same ID: the old link is not theirs.
	fresh := b.customer(t, herald.Customer{Email: "someone-else@example.com"})
	claims, err := preferences.Verify([]byte("0123456789abcdef0123456789abcdef"), token, time.Now())
	require.NoError(t, err, "the link itself is well signed: %q", token)
	require.Error(t, preferences.CheckEpoch(claims, fresh), "a link mailed to the erased customer must not open the new one's preferences")
	require.True(t, strings.HasPrefix(token, "h1."))
}

// Erasure lists the customer's waiting tasks, then deletes them; a task a
// worker takes in between is running, which asynq refuses to delete. It
// is left to find the customer gone, and the erasure goes on.
func TestEraseSkipsATaskThatStarted(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rdb := rs.Client()
	insp := asynq.NewInspectorFromRedisClient(rdb)
	cl := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { _ = cl.Close() })

	started, release := make(chan struct{}), make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("hold", func(ctx context.Context, _ *asynq.Task) error {
		close(started)
		<-release
		return nil
	})
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 1, TaskCheckInterval: 20 * time.Millisecond, LogLevel: asynq.FatalLevel})
	_, err := cl.Enqueue(asynq.NewTask("hold", nil), asynq.TaskID("running"), asynq.Queue("default"))
	require.NoError(t, err)
	_, err = cl.Enqueue(asynq.NewTask("hold", nil), asynq.TaskID("waiting"), asynq.Queue("later"))
	require.NoError(t, err)
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	t.Cleanup(func() { close(release) })
	<-started

	err = insp.DeleteTask("default", "running")
	require.Error(t, err, "asynq refuses to delete a running task")
	require.NotErrorIs(t, err, asynq.ErrTaskNotFound)
	require.NoError(t, engine.DeleteIdleTask(insp, "default", "running"), "a running task is left to end")
	ti, err := insp.GetTaskInfo("default", "running")
	require.NoError(t, err)
	require.Equal(t, asynq.TaskStateActive, ti.State)

	require.NoError(t, engine.DeleteIdleTask(insp, "later", "waiting"))
	_, err = insp.GetTaskInfo("later", "waiting")
	require.ErrorIs(t, err, asynq.ErrTaskNotFound, "a waiting task is deleted")
	require.NoError(t, engine.DeleteIdleTask(insp, "later", "waiting"), "and deleting it again is no error")
	require.NoError(t, engine.DeleteIdleTask(insp, "nowhere", "x"), "nor is an unknown queue")
}
