package engine_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/workflows"
	"github.com/stretchr/testify/require"
)

func setupInsight(t *testing.T, concurrency int, opts ...func(*engine.Options)) *bundle {
	t.Helper()
	wset, err := workflows.Load(os.DirFS("testdata/insight/workflows"), workflows.LoadOptions{})
	require.NoError(t, err)
	opts = append(opts, func(o *engine.Options) { o.Workflows = wset })
	return setupWith(t, concurrency, "testdata/insight/templates", opts...)
}

// queuesIdle reports whether no task is pending, active, scheduled or
// retrying in any queue.
func queuesIdle(t *testing.T, b *bundle) bool {
	t.Helper()
	qs, err := b.insp.Queues()
	require.NoError(t, err)
	for _, q := range qs {
		info, err := b.insp.GetQueueInfo(q)
		require.NoError(t, err)
		if info.Pending+info.Active+info.Scheduled+info.Retry > 0 {
			return false
		}
	}
	return true
}

// Numbers agree: 1,000 journeys through a workflow with every kind of step
// and outcome (Slack sends, Slack failures falling back to email, a
// channel switched off, waits that time out, an until event, an exit event,
// a branch), and the per-step counters equal what the SMTP server and the
// Slack API received and what the customers' timelines and journeys say.
// The engine's clock stands still until every event is handled, so no wait
// times out early however long the machine takes to park 1,000 journeys.
func TestNumbersAgree(t *testing.T) {
	t.Parallel()
	const n = 1000
	clock := newClock()
	b := setupInsight(t, 20, clock.engineOpt)
	ctx := context.Background()
	for i := range n {
		c := herald.Customer{ID: fmt.Sprintf("c%04d", i), Email: fmt.Sprintf("c%04d@example.com", i),
			Attributes: map[string]any{"first_name": "Ada"}}
		if i%4 == 0 {
			c.SlackUserID = fmt.Sprintf("U%05d", i) // others have no Slack user: users_not_found, fall back to email
		}
		if i%3 == 0 {
			c.Attributes["tier"] = "gold"
		}
		b.customer(t, c)
		if i%5 == 1 {
			_, err := b.e.SetPreferences(ctx, c.ID, preferences.Patch{Channels: map[herald.Channel]bool{herald.ChannelEmail: false}},
				preferences.Actor{Kind: "customer"}, "preference_page")
			require.NoError(t, err)
		}
	}
	for i := range n {
		_, err := b.e.Event(ctx, herald.Event{CustomerID: fmt.Sprintf("c%04d", i), Name: "insight.started"}, "test")
		require.NoError(t, err)
	}
	// Every journey parks at the wait (30 s) before any is told to move on.
	require.Eventually(t, func() bool {
		st, err := b.e.Stats(ctx, "insight", time.Now().Add(-time.Hour))
		require.NoError(t, err)
		return st.Steps["wait"].Waiting == n
	}, 2*time.Minute, 50*time.Millisecond, "all journeys wait")
	for i := range n {
		name := ""
		switch i % 10 {
		case 2:
			name = "insight.done"
		case 3:
			name = "insight.stop"
		default:
			continue
		}
		_, err := b.e.Event(ctx, herald.Event{CustomerID: fmt.Sprintf("c%04d", i), Name: name}, "test")
		require.NoError(t, err)
	}
	// Those journeys leave the wait; then the rest time out.
	require.Eventually(t, func() bool {
		st, err := b.e.Stats(ctx, "insight", time.Now().Add(-time.Hour))
		require.NoError(t, err)
		return st.Steps["wait"].Waiting == n-n/5
	}, 2*time.Minute, 50*time.Millisecond, "the until and exit events are handled")
	clock.Add(31 * time.Second)
	require.Eventually(t, func() bool {
		st, err := b.e.Stats(ctx, "insight", time.Now().Add(-time.Hour))
		require.NoError(t, err)
		return st.Journeys.Running == 0 && queuesIdle(t, b)
	}, 120*time.Second, 200*time.Millisecond, "every journey ended and every task ran")

	st, err := b.e.Stats(ctx, "insight", time.Now().Add(-time.Hour))
	require.NoError(t, err)

	// What the providers received, by the step each template belongs to.
	provider := map[string]map[string]int64{}
	add := func(m map[string]map[string]int64, step, what string) {
		if m[step] == nil {
			m[step] = map[string]int64{}
		}
		m[step][what]++
	}
	for _, s := range subjects(b) {
		step, _, ok := strings.Cut(strings.TrimPrefix(s, "step "), " for ")
		require.True(t, ok, "subject %q", s)
		add(provider, step, "sent:email")
	}
	for _, p := range b.slack.Posts() {
		if p.Method == "chat.postMessage" {
			step, _, _ := strings.Cut(strings.TrimPrefix(p.Text, "Step "), ",")
			add(provider, step, "sent:slack")
		}
	}
	// What the timelines and journeys say.
	timeline := map[string]map[string]int64{}
	var journeys engine.JourneyNumbers
	for i := range n {
		id := fmt.Sprintf("c%04d", i)
		for _, e := range b.timeline(t, id) {
			if e.Kind != herald.KindDelivery {
				continue
			}
			wf, _ := e.Data["workflow"].(string)
			step, _ := e.Data["step"].(string)
			if e.Outcome == herald.OutcomeSent { // the line leaves these to the ledger
				sent, err := b.e.SentTo(ctx, id, e.Ref)
				require.NoError(t, err)
				wf, step = sent.WorkflowID, sent.StepID
			}
			if wf != "insight" {
				continue
			}
			switch e.Outcome {
			case herald.OutcomeSent:
				add(timeline, step, "sent:"+string(e.Channel))
				add(timeline, step, "delivery sent")
			case herald.OutcomeSuppressed:
				add(timeline, step, "suppressed:"+e.Reason)
			case herald.OutcomeFailedPermanent:
				add(timeline, step, "failed")
			}
		}
		js, err := b.e.Journeys(ctx, id)
		require.NoError(t, err)
		require.Len(t, js, 1, id)
		j := js[0]
		journeys.Started++
		switch j.Status {
		case workflows.StatusFinished:
			journeys.Completed++
		case workflows.StatusExited:
			journeys.Exited++
		default:
			t.Fatalf("journey of %s is still %s", id, j.Status)
		}
		seen := map[int]bool{}
		for _, h := range j.History {
			switch h.Kind {
			case "send", "wait", "branch", "end":
				if !seen[h.Seq] {
					seen[h.Seq] = true
					add(timeline, h.Step, "entered")
				}
			case "timeout":
				add(timeline, h.Step, "timed_out")
			case "exit":
				add(timeline, h.Step, "exited:"+h.Detail)
			}
		}
	}

	// The counters, in the same shape.
	counted := map[string]map[string]int64{}
	for step, num := range st.Steps {
		m := map[string]int64{}
		put := func(k string, v int64) {
			if v != 0 {
				m[k] = v
			}
		}
		put("entered", num.Entered)
		put("failed", num.Failed)
		put("timed_out", num.TimedOut)
		for ch, v := range num.Sent {
			put("sent:"+ch, v)
		}
		for r, v := range num.Suppressed {
			put("suppressed:"+r, v)
		}
		for e, v := range num.Exited {
			put("exited:"+e, v)
		}
		require.Zero(t, num.Waiting, "nobody waits at %s any more", step)
		if len(m) > 0 {
			counted[step] = m
		}
	}
	for step, m := range timeline {
		delete(m, "delivery sent")
		for k := range m {
			if strings.HasPrefix(k, "sent:") {
				require.Equal(t, m[k], provider[step][k], "%s %s: timeline against provider", step, k)
			}
		}
	}
	for step, m := range provider {
		for k, v := range m {
			require.Equal(t, v, timeline[step][k], "%s %s: provider against timeline", step, k)
		}
	}
	require.Equal(t, timeline, counted, "per-step counters against timelines and journeys")
	require.Equal(t, journeys, st.Journeys, "journey counters against the journeys")

	// And against what the run was built to do.
	require.Equal(t, engine.JourneyNumbers{Started: n, Completed: n - n/10, Exited: n / 10}, st.Journeys)
	require.EqualValues(t, n, st.Steps["hello"].Entered)
	require.EqualValues(t, n/4, st.Steps["hello"].Sent["slack"], "customers with a Slack user")
	require.EqualValues(t, n-n/4, st.Steps["hello"].Failed, "Slack users_not_found for the rest")
	require.EqualValues(t, n/10, st.Steps["wait"].Exited["insight.stop"])
	require.EqualValues(t, n/10, st.Steps["thanks"].Entered)
	require.EqualValues(t, n-n/5, st.Steps["wait"].TimedOut)
	require.EqualValues(t, n/5, st.Steps["nudge"].Suppressed["opted_out_channel"]+st.Steps["gold"].Suppressed["opted_out_channel"]+
		st.Steps["thanks"].Suppressed["opted_out_channel"], "email switched off for one in five")
	sentEmail := int64(0)
	for _, num := range st.Steps {
		sentEmail += num.Sent["email"]
	}
	require.EqualValues(t, b.smtp.Count(), sentEmail, "every email the SMTP server received is counted once")
	t.Logf("journeys %+v; emails %d, Slack posts %d", st.Journeys, b.smtp.Count(), b.slack.Count())
}

// The Go client reads what the engine did (journeys, message fate,
// numbers) and cancels a journey through the workers.
func TestClientInsight(t *testing.T) {
	t.Parallel()
	b := setupInsight(t, 4)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	c, err := client.New("redis://" + b.conn.Addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.Actor = "support-desk"

	_, err = b.e.Event(ctx, herald.Event{CustomerID: "c1", Name: "insight.started"}, "test")
	require.NoError(t, err)
	var j client.Journey
	eventually(t, func() bool {
		js, err := c.Journeys(ctx, "c1")
		require.NoError(t, err)
		if len(js) == 1 && js[0].Step == "wait" {
			j = js[0]
			return true
		}
		return false
	}, "the journey waits")
	require.False(t, j.NextWakeUp.IsZero())

	m, err := c.Message(ctx, j.ID+".hello.1")
	require.NoError(t, err)
	require.Equal(t, "c1", m.CustomerID)
	require.Equal(t, "sent", m.Channels["slack"].Status, "ada@example.com is a Slack user")
	require.Equal(t, b.slack.Posts()[0].Channel+":"+b.slack.Posts()[0].TS, m.Channels["slack"].ProviderID)

	st, err := c.WorkflowStats(ctx, "insight", time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.EqualValues(t, 1, st.Steps["hello"].Sent["slack"])
	require.EqualValues(t, 1, st.Steps["wait"].Waiting)

	require.NoError(t, c.CancelJourney(ctx, "c1", j.ID))
	eventually(t, func() bool {
		js, err := c.Journeys(ctx, "c1")
		require.NoError(t, err)
		return js[0].Status == workflows.StatusExited
	}, "the workers cancel it")
	tl := b.timeline(t, "c1")
	require.Contains(t, tl[0].Summary, "cancelled by support-desk")
	require.Equal(t, herald.EConflict, herald.ErrorCode(c.CancelJourney(ctx, "c1", j.ID)))
	require.Equal(t, herald.ENotFound, herald.ErrorCode(c.CancelJourney(ctx, "c1", "j_nope")))
	_, err = c.Message(ctx, "m_nope")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err))
}

// messageReaches waits until a message's status on key (a channel or
// "message") is status, and returns the message.
func messageReaches(t *testing.T, b *bundle, id, key, status string) engine.MessageStatus {
	t.Helper()
	var m engine.MessageStatus
	eventually(t, func() bool {
		var err error
		m, err = b.e.Message(context.Background(), id)
		require.NoError(t, err)
		return m.Channels[key] != nil && m.Channels[key].Status == status
	}, id+" "+key+" "+status)
	return m
}

// A message's fate per channel: a Slack failure with its error and attempt
// count next to the email sent on fallback, and a message held back by
// quiet hours with the time it is deferred until.
func TestMessageStatusOutcomes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{ID: "c1", Email: "grace@example.com"}) // not a Slack user
	id := send(t, b, wire.Message{CustomerID: "c1", Channels: []herald.Channel{herald.ChannelSlack, herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "sent by email after Slack failed")
	m := messageReaches(t, b, id, "email", "sent")
	require.Equal(t, "failed", m.Channels["slack"].Status)
	require.Contains(t, m.Channels["slack"].Error, "users_not_found")
	require.Equal(t, 1, m.Channels["slack"].Attempts)
	require.Equal(t, b.smtp.Messages()[0].MessageID, m.Channels["email"].ProviderID)

	b.customer(t, herald.Customer{ID: "c2", Email: "ada@example.com"})
	now := time.Now().UTC()
	_, err := b.e.SetPreferences(ctx, "c2", preferences.Patch{QuietHours: &herald.QuietHours{
		Start: now.Add(-time.Hour).Format("15:04"), End: now.Add(2 * time.Hour).Format("15:04"),
	}}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	id = send(t, b, wire.Message{CustomerID: "c2", Channels: []herald.Channel{herald.ChannelEmail}})
	m = messageReaches(t, b, id, "message", "deferred")
	until, err := time.Parse(time.RFC3339, m.Channels["message"].DeferredUntil)
	require.NoError(t, err)
	require.True(t, until.After(now.Add(time.Hour)), "deferred until the quiet hours end: %v", until)
	require.Equal(t, "quiet_hours", m.Channels["message"].Reason)
	require.Equal(t, "c2", m.CustomerID)
}

// Erasing a customer leaves no message lookup pointing at them, for sent
// and suppressed messages alike.
func TestEraseForgetsMessageLookups(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "ada@example.com"})
	sent := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "sent")
	_, err := b.e.SetPreferences(ctx, "c1", preferences.Patch{Topics: map[string]bool{"onboarding": false}}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	suppressed := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	for _, id := range []string{sent, suppressed} {
		eventually(t, func() bool {
			m, err := b.e.Message(ctx, id)
			return err == nil && m.Task == nil && len(m.Channels) == 1
		}, "the message has run")
	}
	keys, err := b.rdb.Keys(ctx, "herald:msg:*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)

	require.NoError(t, b.e.Erase(ctx, "c1", preferences.Actor{Kind: "api", Name: "test"}))
	for _, id := range []string{sent, suppressed} {
		_, err := b.e.Message(ctx, id)
		require.Equal(t, herald.ENotFound, herald.ErrorCode(err), id)
	}
	keys, err = b.rdb.Keys(ctx, "herald:msg:*").Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}

// An erased customer's running journey leaves the running and waiting
// numbers.
func TestEraseLeavesTheNumbers(t *testing.T) {
	t.Parallel()
	b := setupInsight(t, 4)
	ctx := context.Background()
	b.customer(t, herald.Customer{Email: "grace@example.com", SlackUserID: "U0GRACE"})
	_, err := b.e.Event(ctx, herald.Event{CustomerID: "c1", Name: "insight.started"}, "test")
	require.NoError(t, err)
	eventually(t, func() bool {
		st, err := b.e.Stats(ctx, "insight", time.Now().Add(-time.Hour))
		require.NoError(t, err)
		return st.Steps["wait"].Waiting == 1
	}, "the journey waits")
	require.NoError(t, b.e.Erase(ctx, "c1", preferences.Actor{Kind: "api", Name: "test"}))
	st, err := b.e.Stats(ctx, "insight", time.Now().Add(-time.Hour))
	require.NoError(t, err)
	require.Equal(t, engine.JourneyNumbers{Started: 1, Exited: 1}, st.Journeys)
	require.EqualValues(t, 0, st.Steps["wait"].Waiting)
	require.EqualValues(t, 1, st.Steps["wait"].Exited["erased"])
}
