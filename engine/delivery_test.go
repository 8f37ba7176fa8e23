package engine_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/webhooks"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// A message is one task on the healthy path: nothing goes through a
// delivery task, and the timeline has one line for it.
func TestHealthyMessageIsOneTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}, Actor: "api-test"})
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), herald.ChannelEmail, herald.OutcomeSent, "") }, "sent")
	// asynq counts a task once its handler has returned: wait for that,
	// then nothing else may have run or be waiting.
	counts := func() (processed, waiting int) {
		for _, q := range wire.Queues {
			if info, err := b.insp.GetQueueInfo(q); err == nil {
				processed += info.ProcessedTotal
				waiting += info.Pending + info.Active + info.Scheduled + info.Retry
			}
		}
		return processed, waiting
	}
	eventually(t, func() bool { p, _ := counts(); return p >= 1 }, "the message task is done")
	processed, waiting := counts()
	require.Equal(t, 1, processed, "one task processed for one message")
	require.Zero(t, waiting, "and none queued")
	tl := b.timeline(t, "c1")
	require.Len(t, tl, 1)
	require.Equal(t, id, tl[0].Ref)
	require.Equal(t, "sent hello by email (en); asked by api-test", tl[0].Summary)
}

// Required topics go before marketing at every stage: with a backlog of
// 5,000 bulk messages being sent, a receipt does not wait for it. The
// critical queue has a lane of its own, so the receipt is taken at once
// while the other lane keeps sending bulk mail beside it.
func TestRequiredTopicOvertakesBulkBacklog(t *testing.T) {
	t.Parallel()
	const concurrency = 4
	b := setupWith(t, concurrency, "testdata/templates")
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	ctx := context.Background()

	var order atomic.Int64
	var receiptAt atomic.Int64
	received := make(chan time.Time, 1)
	b.smtp.OnReceive(func(r smtpserver.Received) {
		n := order.Add(1)
		if strings.Contains(string(r.Data), "R-7") {
			receiptAt.Store(n)
			received <- time.Now()
		}
	})
	// Queue the backlog while the bulk queue is paused, so all of it is
	// waiting when the receipt comes.
	require.NoError(t, b.insp.PauseQueue(wire.QueueBulk))
	for i := range 5000 {
		_, err := b.e.Send(ctx, wire.Message{ID: "bulk" + strconv.Itoa(i), CustomerID: "c1", Template: "hello", Topic: "product-updates",
			Data: map[string]any{"plan": "Pro"}, Channels: []herald.Channel{herald.ChannelEmail}})
		require.NoError(t, err)
	}
	require.NoError(t, b.insp.UnpauseQueue(wire.QueueBulk))
	eventually(t, func() bool { return order.Load() >= 50 }, "the backlog is being sent")

	before := order.Load()
	start := time.Now()
	send(t, b, wire.Message{Template: "receipt", Topic: "billing", Data: map[string]any{"number": "R-7"}, Channels: []herald.Channel{herald.ChannelEmail}})
	var at time.Time
	select {
	case at = <-received:
	case <-time.After(time.Minute):
		t.Fatal("the receipt never arrived")
	}
	behind := receiptAt.Load() - before - 1
	t.Logf("receipt reached SMTP %v after it was queued, behind %d bulk messages", at.Sub(start).Round(time.Millisecond), behind)
	info, err := b.insp.GetQueueInfo(wire.QueueBulk)
	require.NoError(t, err)
	require.Greater(t, info.Pending, 3000, "the receipt went out while most of the backlog still waited")
}

// A follow-up runs at its topic's priority, not above everything.
func TestQueuesFollowTopics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, wire.QueueCritical, b.e.Queue("billing"))
	require.Equal(t, wire.QueueDefault, b.e.Queue("onboarding"))
	require.Equal(t, wire.QueueBulk, b.e.Queue("product-updates"))
}

// A Slack API that hangs: the call is cut off with the reserve left, the
// timeline says so, the retry is queued and delivers once Slack is back.
// Nothing is archived and nothing is sent twice.
func TestHangingSlackIsRetriedAndDelivered(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) { o.DeliveryTimeout = time.Second })
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	held := make(chan struct{}, 10)
	b.slack.OnFault(func(string, slackapi.Fault) { held <- struct{}{} })
	b.slack.SetFault(slackapi.Fault{Hang: true, Method: "chat.postMessage"})
	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelSlack}})
	select {
	case <-held:
	case <-time.After(time.Minute):
		t.Fatal("Slack was never called")
	}
	eventually(t, func() bool {
		return hasEntry(b.timeline(t, "c1"), herald.ChannelSlack, herald.OutcomeFailedTemporary, "slack timeout")
	}, "the timeout is on the timeline")
	b.slack.SetFault(slackapi.Fault{})
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), herald.ChannelSlack, herald.OutcomeSent, "") }, "delivered on retry")
	require.Equal(t, 1, b.slack.Count())
	requireNothingArchived(t, b)
	var failed herald.TimelineEntry
	for _, e := range b.timeline(t, "c1") {
		if e.Outcome == herald.OutcomeFailedTemporary {
			failed = e
		}
	}
	require.Equal(t, id, failed.Ref)
	require.Contains(t, failed.Summary, "retrying in")
}

// An SMTP server that stops answering: the transaction is cut off by its
// own timeout, the timeline says so, and the retry delivers exactly once
// when the server is back. Nothing is archived.
func TestHangingSMTPIsRetriedAndDelivered(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	b.smtp.SetFault(smtpserver.Fault{Stage: "MAIL", Hang: true})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Waiting() == 1 }, "the server holds the send")
	eventually(t, func() bool {
		return hasEntry(b.timeline(t, "c1"), herald.ChannelEmail, herald.OutcomeFailedTemporary, "smtp timeout")
	}, "the timeout is on the timeline")
	b.smtp.SetFault(smtpserver.Fault{})
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), herald.ChannelEmail, herald.OutcomeSent, "") }, "delivered on retry")
	require.Equal(t, 1, b.smtp.Count())
	requireNothingArchived(t, b)
}

// A Slack API that never answers: once retries run out the message falls
// back to email, and every step is on the timeline.
func TestHangingSlackFallsBackToEmail(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) {
		o.DeliveryTimeout, o.MaxRetry = time.Second, 1
	})
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	b.slack.SetFault(slackapi.Fault{Hang: true, Method: "chat.postMessage"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelSlack, herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "falls back to email")
	// The fallback is queued before its line is written, so the email
	// can arrive first: wait for the lines.
	eventually(t, func() bool {
		tl := b.timeline(t, "c1")
		return hasSummary(tl, "queued for email: falls back from slack") && hasEntry(tl, herald.ChannelEmail, herald.OutcomeSent, "")
	}, "the fallback and the email's send are on the timeline")
	tl := b.timeline(t, "c1")
	require.True(t, hasEntry(tl, herald.ChannelSlack, herald.OutcomeFailedTemporary, "slack timeout"))
	require.True(t, hasEntry(tl, herald.ChannelSlack, herald.OutcomeFailedPermanent, ""), "retries exhausted is recorded")
}

// Three timeouts in a row mark a channel degraded: the next message is
// queued for it rather than tried inline, and says so.
func TestDegradedChannelQueuesInsteadOfSendingInline(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) { o.DeliveryTimeout = time.Second })
	b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	b.slack.SetFault(slackapi.Fault{Hang: true, Method: "chat.postMessage"})
	for i := range 3 {
		send(t, b, wire.Message{ID: "t" + strconv.Itoa(i), Channels: []herald.Channel{herald.ChannelSlack}})
	}
	eventually(t, func() bool {
		n := 0
		for _, e := range b.timeline(t, "c1") {
			if e.Outcome == herald.OutcomeFailedTemporary && strings.Contains(e.Summary, "retrying in") {
				n++
			}
		}
		return n >= 3
	}, "three inline timeouts")
	send(t, b, wire.Message{ID: "after", Channels: []herald.Channel{herald.ChannelSlack}})
	eventually(t, func() bool { return hasSummary(b.timeline(t, "c1"), "queued for slack: the channel is degraded") }, "queued, not tried inline")
	b.slack.SetFault(slackapi.Fault{})
	eventually(t, func() bool {
		n := 0
		for _, e := range b.timeline(t, "c1") {
			if e.Outcome == herald.OutcomeSent {
				n++
			}
		}
		return n == 4
	}, "all four delivered once Slack answers")
	require.Equal(t, 4, b.slack.Count())
}

func hasSummary(tl []herald.TimelineEntry, s string) bool {
	for _, e := range tl {
		if strings.Contains(e.Summary, s) {
			return true
		}
	}
	return false
}

// A failed delivery is logged once, by the engine: the error it returns to
// asynq says so, and still carries its classification and SkipRetry.
func TestFailedDeliveryIsMarkedLogged(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	b.smtp.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.7.1"})
	d := wire.Deliver{MessageID: "m_log", CustomerID: "c1", Channel: herald.ChannelEmail, Template: "hello", Topic: "onboarding", Data: map[string]any{"plan": "Pro"}}
	err := b.e.Mux().ProcessTask(context.Background(), asynq.NewTask(wire.DeliverType(herald.ChannelEmail), wire.Encode(d)))
	require.Error(t, err)
	require.True(t, engine.Logged(err), "%v", err)
	require.ErrorIs(t, err, asynq.SkipRetry)
	require.Equal(t, herald.EPermanent, herald.ErrorCode(err))
	require.Contains(t, err.Error(), "5.7.1")
}

// requireNothingArchived fails when any priority queue has archived tasks.
func requireNothingArchived(t *testing.T, b *bundle) {
	t.Helper()
	for _, q := range wire.Queues {
		a, _ := b.insp.ListArchivedTasks(q)
		require.Empty(t, a, "nothing archived in %s", q)
	}
}

// A send claims its delivery and checks the suppression record of the
// address the customer had at their last send in the same round trip that
// reads the customer. When the address has changed meanwhile, the new one
// is checked before sending: a customer who moved to a suppressed address
// gets nothing there, and falls back to Slack.
func TestChangedAddressIsCheckedForSuppression(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the first email is sent")

	require.NoError(t, b.e.Preferences().Suppress(ctx, herald.ChannelEmail, "ada@old.example", "smtp 550 5.1.1"))
	b.customer(t, herald.Customer{Email: "ada@old.example", SlackUserID: "U0ADA"})
	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}})
	eventually(t, func() bool { return b.slack.Count() == 1 }, "the message falls back to Slack")
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if e.Ref == id && e.Channel == herald.ChannelEmail && e.Outcome == herald.OutcomeSuppressed && e.Reason == "suppressed" {
				return true
			}
		}
		return false
	}, "the suppressed address is on the timeline")
	require.Equal(t, 1, b.smtp.Count(), "nothing sent to the suppressed address")

	// A customer opted out of email: the claim taken on email while reading
	// the customer is given back, and the message goes by Slack.
	_, err := b.e.SetPreferences(ctx, "c1", preferences.Patch{Channels: map[herald.Channel]bool{herald.ChannelEmail: false}}, preferences.Actor{Kind: "api", Name: "test"}, "api")
	require.NoError(t, err)
	id = send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}})
	eventually(t, func() bool { return b.slack.Count() == 2 }, "the message goes by Slack")
	require.Zero(t, b.rdb.Exists(ctx, redisstore.LedgerKey("c1", id+":email")).Val(), "no claim left on email")
}

// Attempts are numbered across the message's own task, which tries the
// provider first, and the delivery task that retries: the timeline and
// GET /v1/messages/{id} say the third attempt is the third.
func TestAttemptsNumberedAcrossTasks(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	b.smtp.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 451, Enhanced: "4.3.0"})
	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	attempts := func() []float64 {
		var out []float64
		for _, e := range b.timeline(t, "c1") {
			if e.Outcome == herald.OutcomeFailedTemporary {
				n, _ := e.Data["attempt"].(float64)
				out = append([]float64{n}, out...) // oldest first
			}
		}
		return out
	}
	eventually(t, func() bool { return len(attempts()) >= 3 }, "three temporary failures")
	require.Equal(t, []float64{1, 2, 3}, attempts()[:3])
	st, err := b.e.Message(context.Background(), id)
	require.NoError(t, err)
	require.GreaterOrEqual(t, st.Channels["email"].Attempts, 3, "the status counts them the same way")
	b.smtp.SetFault(smtpserver.Fault{})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the next retry delivers")
}

// A ledger write whose answer is lost (Redis made it, the connection was
// cut before the reply) is retried, and the retry finds the write made:
// the timeline says the send once, and the message is not sent again.
func TestLostLedgerAnswerIsNotWrittenTwice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	// The first ledger write (SET … GET without NX, replacing the claim).
	lose := &pipelineFault{lose: true, match: func(c redis.Cmder) bool {
		return c.Name() == "set" && strings.Contains(argString(c, 1), ":ledger:") && slices.Contains(c.Args(), any("get")) && !slices.Contains(c.Args(), any("NX"))
	}}
	b.rdb.AddHook(lose)
	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return hasEntry(b.timeline(t, "c1"), herald.ChannelEmail, herald.OutcomeSent, "") }, "sent")
	require.True(t, lose.hit.Load(), "the first ledger write's answer was lost")
	// Once asynq counts the task done, its handler has made every write.
	eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo(wire.QueueDefault)
		return err == nil && info.ProcessedTotal >= 1
	}, "the message task is done")
	require.Equal(t, 1, outcomeLines(b.timeline(t, "c1"), id, herald.OutcomeSent), "one timeline line for one send")
	require.Equal(t, 1, b.smtp.Count())
}

// A run cut off after recording a suppression (here its answer is lost,
// as when its worker dies before asynq takes the task as done) is run
// again, and the retry does not record, count or announce it twice.
func TestSuppressionIsRecordedOnceWhenItsTaskRunsAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	_, err := b.e.SetPreferences(context.Background(), "c1", preferences.Patch{Topics: map[string]bool{"product-updates": false}}, preferences.Actor{Kind: "api", Name: "test"}, "api")
	require.NoError(t, err)
	id := sendLosingTheFirstLine(t, b)
	require.Equal(t, 1, outcomeLines(b.timeline(t, "c1"), id, herald.OutcomeSuppressed), "one suppression line for one message")
	require.Zero(t, b.smtp.Count())
}

// sendLosingTheFirstLine sends a product-updates email whose task's first
// timeline write is made but its answer lost, as when its worker dies
// before asynq takes the task as done, and waits until the task, run
// again, is done.
func sendLosingTheFirstLine(t *testing.T, b *bundle) string {
	t.Helper()
	lose := &pipelineFault{lose: true, match: func(c redis.Cmder) bool {
		return c.Name() == "lpush" && strings.HasSuffix(argString(c, 1), ":timeline")
	}}
	b.rdb.AddHook(lose)
	id := send(t, b, wire.Message{Topic: "product-updates", Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool {
		info, err := b.insp.GetQueueInfo(b.e.Queue("product-updates"))
		return lose.hit.Load() && err == nil && info.ProcessedTotal >= 2 && info.Retry == 0
	}, "the message task ran again after its lost answer, and is done")
	return id
}

// A run cut off after recording a deferral (quiet hours) is run again, and
// the retry queues, records and counts the deferral once.
func TestDeferralIsRecordedOnceWhenItsTaskRunsAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.customer(t, herald.Customer{Email: "ada@example.com"})
	local := time.Now().In(c.Location())
	qh := herald.QuietHours{Start: local.Add(-time.Hour).Format("15:04"), End: local.Add(2 * time.Hour).Format("15:04")}
	_, err := b.e.SetPreferences(context.Background(), "c1", preferences.Patch{QuietHours: &qh}, preferences.Actor{Kind: "api", Name: "test"}, "api")
	require.NoError(t, err)
	id := sendLosingTheFirstLine(t, b)
	require.Equal(t, 1, outcomeLines(b.timeline(t, "c1"), id, herald.OutcomeDeferred), "one deferral line for one deferral")
	info, err := b.insp.GetQueueInfo(b.e.Queue("product-updates"))
	require.NoError(t, err)
	require.Equal(t, 1, info.Scheduled, "one deferred task")
	require.Zero(t, b.smtp.Count())
}

// A message whose send was recorded by a run that then died, before it
// told the app, tells the app when it runs again: the message.sent event
// is not lost, and the message is not sent again.
func TestRerunAfterTheLedgerTellsTheApp(t *testing.T) {
	t.Parallel()
	rec := &appEvents{}
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) { o.AppEvents = rec })
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	ctx := context.Background()
	// The run that died: it sent and recorded, and emitted nothing.
	cl, err := b.e.Store().ClaimDelivery(ctx, "c1", "m1:email", time.Minute, "")
	require.NoError(t, err)
	_, err = cl.Finish(ctx, redisstore.SentRecord{Channel: herald.ChannelEmail, ProviderID: "<m1@lumen.example>"}, herald.TimelineEntry{Kind: herald.KindDelivery, Ref: "m1"}, nil, 0)
	require.NoError(t, err)
	// Its task runs again, as asynq does once the dead worker's lease ran
	// out: a retry (here the first run's send-state read fails).
	b.rdb.AddHook(&pipelineFault{match: func(c redis.Cmder) bool { // a delivery's claim: SET … NX GET on its ledger key
		return c.Name() == "set" && strings.Contains(argString(c, 1), ":ledger:") && slices.Contains(c.Args(), any("NX"))
	}})
	send(t, b, wire.Message{ID: "m1", Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return slices.Contains(rec.types("c1"), webhooks.MessageSent) }, "the app is told of the send")
	require.Zero(t, b.smtp.Count(), "not sent again")
}

// pipelineFault fails the first pipeline holding a command that match
// accepts: without running it (a connection refused), or, with lose, after
// Redis ran it (a connection cut before the reply).
type pipelineFault struct {
	match func(redis.Cmder) bool
	lose  bool
	hit   atomic.Bool
}

func (*pipelineFault) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (*pipelineFault) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *pipelineFault) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !slices.ContainsFunc(cmds, h.match) || !h.hit.CompareAndSwap(false, true) {
			return next(ctx, cmds)
		}
		if !h.lose {
			return errors.New("dial tcp: connection refused")
		}
		_ = next(ctx, cmds)
		return errors.New("read tcp: connection reset by peer")
	}
}

func argString(c redis.Cmder, i int) string {
	if args := c.Args(); i < len(args) {
		s, _ := args[i].(string)
		return s
	}
	return ""
}

// outcomeLines counts the timeline lines about message id with outcome o.
func outcomeLines(tl []herald.TimelineEntry, id string, o herald.Outcome) int {
	n := 0
	for _, e := range tl {
		if e.Ref == id && e.Outcome == o {
			n++
		}
	}
	return n
}
