package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/channels/slack"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

type bundle struct {
	e     *engine.Engine
	rdb   *redis.Client
	conn  asynq.RedisClientOpt
	smtp  *smtpserver.Server
	slack *slackapi.Server
	insp  *asynq.Inspector
	srv   *engine.Worker
}

func topics() map[string]herald.Topic {
	return map[string]herald.Topic{
		"onboarding":      {Name: "onboarding", OptIn: true, Class: "lifecycle"},
		"billing":         {Name: "billing", Required: true, OptIn: true, Class: "transactional"},
		"product-updates": {Name: "product-updates", OptIn: true, Class: "marketing"},
		"newsletter":      {Name: "newsletter", OptIn: false, Class: "marketing"},
	}
}

func setup(t *testing.T) *bundle {
	t.Helper()
	return setupWith(t, 4, "testdata/templates")
}

func setupWith(t *testing.T, concurrency int, templateDir string, opts ...func(*engine.Options)) *bundle {
	t.Helper()
	rs := redistest.Start(t)
	b := &bundle{rdb: rs.Client(), conn: asynq.RedisClientOpt{Addr: rs.Addr}}
	// A failed test shows the engine's warnings and the tasks that failed:
	// what a worker's log and the dashboard would tell an operator.
	logs := &logbuf.Buffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("engine warnings and errors:\n%s%s", logs.String(), failedTasks(b.insp))
		}
	})
	var err error
	b.smtp, err = smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.smtp.Close() })
	b.slack, err = slackapi.Start(slackapi.Options{Token: "xoxb-test", Users: map[string]string{"ada@example.com": "U0ADA"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.slack.Close() })

	ec, err := email.ParseURL(b.smtp.URL())
	require.NoError(t, err)
	ec.From = "Lumen <hello@lumen.example>"
	ec.Timeout = 5 * time.Second // a hung server is cut off in tests' time
	es, err := email.New(ec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = es.Close() })
	ss := slack.New(slack.Config{Token: "xoxb-test", APIURL: b.slack.URL()}, nil)

	tset, err := templates.Load(os.DirFS(templateDir), templates.Options{})
	require.NoError(t, err)
	var wset *workflows.Set
	if templateDir == "testdata/templates" { // the journeys' templates
		wset, err = workflows.Load(os.DirFS("testdata/workflows"), workflows.LoadOptions{TemplateExists: tset.Has})
		require.NoError(t, err)
	}
	eo := engine.Options{
		Redis: b.rdb, RedisConn: b.conn,
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: es, herald.ChannelSlack: ss},
		Templates: tset, Workflows: wset,
		Policy:    preferences.Policy{Topics: topics()},
		PublicURL: "https://herald.example.com", SigningKey: []byte("0123456789abcdef0123456789abcdef"),
		MaxRetry: 3, RetryBase: time.Second, RetryMax: time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(&eo)
	}
	b.e, err = engine.New(eo)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.e.Close() })

	srv := engine.NewWorker(b.rdb, asynq.Config{
		Concurrency: concurrency, Queues: map[string]int{"critical": 3, "default": 2, "bulk": 1}, StrictPriority: true,
		RetryDelayFunc: b.e.RetryDelay, IsFailure: b.e.IsFailure,
		TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 200 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	}, 2)
	require.NoError(t, srv.Start(b.e.Mux()))
	t.Cleanup(srv.Shutdown)
	t.Cleanup(b.e.StartWaker(context.Background()))
	b.srv = srv
	b.insp = asynq.NewInspectorFromRedisClient(b.rdb)
	return b
}

// failedTasks lists the tasks waiting for a retry or archived, with their
// last error.
func failedTasks(insp *asynq.Inspector) string {
	if insp == nil {
		return ""
	}
	var out strings.Builder
	queues, _ := insp.Queues()
	for _, q := range queues {
		retry, _ := insp.ListRetryTasks(q)
		archived, _ := insp.ListArchivedTasks(q)
		for _, ti := range append(retry, archived...) {
			fmt.Fprintf(&out, "task %s %s (%s, %s, retried %d): %s\n", q, ti.ID, ti.Type, ti.State, ti.Retried, ti.LastErr)
		}
	}
	return out.String()
}

func (b *bundle) customer(t *testing.T, c herald.Customer) herald.Customer {
	t.Helper()
	if c.ID == "" {
		c.ID = "c1"
	}
	if c.Attributes == nil {
		c.Attributes = map[string]any{"first_name": "Ada"}
	}
	c, _, err := b.e.Store().UpsertCustomer(context.Background(), c)
	require.NoError(t, err)
	return c
}

func (b *bundle) timeline(t *testing.T, id string) []herald.TimelineEntry {
	t.Helper()
	tl, err := b.e.Store().Timeline(context.Background(), id, 0)
	require.NoError(t, err)
	return tl
}

func hasEntry(tl []herald.TimelineEntry, ch herald.Channel, o herald.Outcome, reason string) bool {
	for _, e := range tl {
		if (ch == "" || e.Channel == ch) && e.Outcome == o && (reason == "" || e.Reason == reason) {
			return true
		}
	}
	return false
}

func send(t *testing.T, b *bundle, m wire.Message) string {
	t.Helper()
	if m.Template == "" {
		m.Template = "hello"
	}
	if m.Topic == "" {
		m.Topic = "onboarding"
	}
	if m.CustomerID == "" {
		m.CustomerID = "c1"
	}
	if m.Data == nil {
		m.Data = map[string]any{"plan": "Pro"}
	}
	id, err := b.e.Send(context.Background(), m)
	require.NoError(t, err)
	return id
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 15*time.Second, 20*time.Millisecond, msg)
}

func TestMessageDeliveredByEmail(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com", Locale: "pl-PL"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the email reaches the SMTP server")
	msg := b.smtp.Messages()[0]
	require.Equal(t, []string{"ada@example.com"}, msg.To)
	body := string(msg.Data)
	require.Contains(t, body, "List-Unsubscribe-Post: List-Unsubscribe=One-Click")
	require.Contains(t, body, "https://herald.example.com/unsubscribe?token=")
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), herald.ChannelEmail, herald.OutcomeSent, "") }, "timeline records the send")
	for _, e := range b.timeline(t, "c1") {
		if e.Outcome == herald.OutcomeSent {
			require.Contains(t, e.Summary, "(pl)", "the line says the locale used")
			sent, err := b.e.SentTo(context.Background(), "c1", e.Ref)
			require.NoError(t, err)
			require.Equal(t, "pl", sent.Locale, "the ledger records it")
		}
	}
}

func TestRequiredTopicHasNoUnsubscribe(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	send(t, b, wire.Message{Template: "receipt", Topic: "billing", Data: map[string]any{"number": "R-7"}, Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "sent")
	require.NotContains(t, string(b.smtp.Messages()[0].Data), "List-Unsubscribe")
}

func TestOptedOutChannelFallsToNext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	_, err := b.e.SetPreferences(ctx, "c1", preferences.Patch{Channels: map[herald.Channel]bool{herald.ChannelEmail: false}}, preferences.Actor{Kind: "api", Name: "test"}, "api")
	require.NoError(t, err)
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}})
	eventually(t, func() bool { return b.slack.Count() == 1 }, "Slack gets the message")
	require.Equal(t, 0, b.smtp.Count(), "no email to a customer who switched email off")
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), herald.ChannelSlack, herald.OutcomeSent, "") }, "sent on slack")
}

func TestOptedOutTopicSendsNothingAndSaysWhy(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	_, err := b.e.SetPreferences(ctx, "c1", preferences.Patch{Topics: map[string]bool{"onboarding": false}}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	send(t, b, wire.Message{})
	var entry herald.TimelineEntry
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if e.Outcome == herald.OutcomeSuppressed && e.Reason == "opted_out_topic" {
				entry = e
				return true
			}
		}
		return false
	}, "timeline explains the suppression")
	require.NotEmpty(t, entry.Data["consent_id"], "the suppression names the consent entry behind it")
	require.Equal(t, 0, b.smtp.Count()+b.slack.Count())
}

func TestPermanentFailureFallsBackSuppressesAndArchives(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	b.smtp.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}})
	eventually(t, func() bool { return b.slack.Count() == 1 }, "falls back to Slack")
	tl := b.timeline(t, "c1")
	require.True(t, hasEntry(tl, herald.ChannelEmail, herald.OutcomeFailedPermanent, ""), "timeline shows the permanent failure")
	ok, err := b.e.Preferences().IsSuppressed(context.Background(), herald.ChannelEmail, "ada@example.com")
	require.NoError(t, err)
	require.True(t, ok, "a 5.1.1 bounce suppresses the address")

	// With no channel left to fall back to, the message itself is
	// archived, visible in the dashboard with the reason.
	b.smtp.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.7.1"})
	b.customer(t, herald.Customer{ID: "c2", Email: "bob@example.com"})
	id := send(t, b, wire.Message{CustomerID: "c2", Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool {
		tasks, _ := b.insp.ListArchivedTasks("default")
		return len(tasks) == 1 && tasks[0].ID == "m:"+id && strings.Contains(tasks[0].LastErr, "5.7.1")
	}, "the failed message stays visible in the archive")
	ok, err = b.e.Preferences().IsSuppressed(context.Background(), herald.ChannelEmail, "bob@example.com")
	require.NoError(t, err)
	require.False(t, ok, "a 5.7.1 refusal is about us, not the address")

	b.smtp.SetFault(smtpserver.Fault{})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), "", herald.OutcomeSuppressed, "suppressed") }, "later email is suppressed")
	require.Equal(t, 0, b.smtp.Count())
}

func TestTemporaryFailureRetriesAndSendsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	b.smtp.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 451, Enhanced: "4.3.0"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool {
		return hasEntry(b.timeline(t, "c1"), herald.ChannelEmail, herald.OutcomeFailedTemporary, "")
	}, "a temporary failure is recorded")
	b.smtp.SetFault(smtpserver.Fault{})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the retry delivers")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 1, b.smtp.Count())
}

func TestDuplicateDeliveryTaskSendsOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	d := wire.Deliver{MessageID: "m_dup", CustomerID: "c1", Channel: herald.ChannelEmail, Template: "hello", Topic: "onboarding", Data: map[string]any{"plan": "Pro"}}
	cl := asynq.NewClientFromRedisClient(b.rdb)
	for i := range 3 { // three copies under different task IDs, as after a crash or a replay
		_, err := cl.Enqueue(asynq.NewTask(wire.DeliverType(herald.ChannelEmail), wire.Encode(d)), asynq.Queue("default"), asynq.TaskID("copy-"+string(rune('a'+i))))
		require.NoError(t, err)
	}
	eventually(t, func() bool { return b.smtp.Count() >= 1 }, "sent")
	eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo("default")
		return err == nil && info.Pending == 0 && info.Active == 0 && info.Retry == 0 && info.ProcessedTotal >= 3
	}, "all copies handled")
	require.Equal(t, 1, b.smtp.Count(), "the ledger stops the copies")
}

// A message queued again under its ID after it was sent (an app's retry
// with the same idempotency key, once the first task is gone) sends
// nothing: the ledger stops it, whichever channel it went out on.
func TestMessageQueuedAgainAfterItWasSentSendsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	m := wire.Message{ID: "m_again", Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}}
	send(t, b, m)
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "sent")
	eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo("default")
		return err == nil && info.Pending == 0 && info.Active == 0 && info.Processed >= 1
	}, "the first task is done and gone")
	send(t, b, m)
	eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo("default")
		return err == nil && info.Pending == 0 && info.Active == 0 && info.Retry == 0 && info.Processed >= 2
	}, "the second task ran")
	require.Equal(t, 1, b.smtp.Count(), "one email")
	require.Zero(t, b.slack.Count(), "and nothing on Slack")
}

func TestMalformedPayloadIsArchivedWithClearError(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cl := asynq.NewClientFromRedisClient(b.rdb)
	_, err := cl.Enqueue(asynq.NewTask(wire.TypeMessage, []byte(`{"id":"x","customer_id":"c1","template":"hello","topic":"onboarding","surprise":1}`)), asynq.Queue("default"))
	require.NoError(t, err)
	_, err = cl.Enqueue(asynq.NewTask(wire.DeliverType(herald.ChannelEmail), []byte(`not json`)), asynq.Queue("bulk"))
	require.NoError(t, err)
	eventually(t, func() bool {
		a, _ := b.insp.ListArchivedTasks("default")
		c, _ := b.insp.ListArchivedTasks("bulk")
		return len(a) == 1 && len(c) == 1 &&
			strings.Contains(a[0].LastErr, `unknown field "surprise"`) && strings.Contains(c[0].LastErr, "malformed payload")
	}, "bad payloads are archived at once with an error naming the problem")
}

func TestSendRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	for _, m := range []wire.Message{
		{CustomerID: "c1", Template: "nope", Topic: "onboarding"},
		{CustomerID: "c1", Template: "hello", Topic: "nope"},
		{CustomerID: "../etc", Template: "hello", Topic: "onboarding"},
		{CustomerID: "c1", Template: "hello", Topic: "onboarding", Channels: []herald.Channel{"fax"}},
	} {
		_, err := b.e.Send(ctx, m)
		require.Error(t, err)
		require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "%v", err)
	}
}

func TestRetryDelayHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	d := b.e.RetryDelay(0, herald.Temporary(nil, "slack rate_limited", 7*time.Second), nil)
	require.GreaterOrEqual(t, d, 7*time.Second)
	require.Less(t, d, 9*time.Second)
	require.True(t, b.e.IsFailure(herald.Temporary(nil, "x", 0)))
}

func TestEraseForgetsEverythingButASuppressionHash(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}, Mode: "all"})
	eventually(t, func() bool { _, err := b.e.SentMessage(ctx, id); return err == nil }, "sent and recorded for acknowledgements")
	eventually(t, func() bool { s, err := b.e.SentTo(ctx, "c1", id); return err == nil && len(s.Providers) == 2 }, "sent on both channels")
	sent, err := b.e.SentTo(ctx, "c1", id)
	require.NoError(t, err)
	_, err = b.e.SentEmail(ctx, sent.Providers[herald.ChannelEmail])
	require.NoError(t, err, "a reply finds the email")

	require.NoError(t, b.e.Erase(ctx, "c1", preferences.Actor{Kind: "api", Name: "test"}))
	_, err = b.e.SentMessage(ctx, id)
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "the message index is gone too")
	_, err = b.e.SentEmail(ctx, sent.Providers[herald.ChannelEmail])
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "the email index is gone too")
	keys, err := b.rdb.Keys(ctx, "*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		require.NotContains(t, k, "c1}:customer")
		require.NotContains(t, k, "herald:msg:")
		v, _ := b.rdb.Dump(ctx, k).Result()
		require.NotContains(t, v, "ada@example.com", "no address left in %s", k)
	}
	ok, err := b.e.Preferences().IsSuppressed(ctx, herald.ChannelEmail, "ada@example.com")
	require.NoError(t, err)
	require.True(t, ok, "an erased address is not written to again")
}
