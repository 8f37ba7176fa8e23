package engine_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/stretchr/testify/require"
)

// Quiet hours defer, never drop: the message waits for the end of the
// window in the customer's zone and is then sent.
func TestQuietHoursDeferToEndOfWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	c := b.customer(t, herald.Customer{Email: "ada@example.com", Timezone: "Pacific/Auckland"})
	local := time.Now().In(c.Location())
	qh := herald.QuietHours{Start: local.Add(-time.Hour).Format("15:04"), End: local.Add(3 * time.Hour).Format("15:04")}
	_, err := b.e.SetPreferences(ctx, c.ID, preferences.Patch{QuietHours: &qh}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	_, wantEnd := preferences.NextAllowed(qh, c.Location(), time.Now())

	id := send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
	var deferred herald.TimelineEntry
	eventually(t, func() bool {
		for _, e := range b.timeline(t, c.ID) {
			if e.Outcome == herald.OutcomeDeferred && e.Reason == "quiet_hours" {
				deferred = e
				return true
			}
		}
		return false
	}, "the timeline says the message waits for quiet hours to end")
	require.Equal(t, wantEnd.UTC().Format(time.RFC3339), deferred.Data["until"], "deferred to the end of the window")

	tasks, err := b.insp.ListScheduledTasks("default")
	require.NoError(t, err)
	require.Len(t, tasks, 1)
	require.Contains(t, tasks[0].ID, id)
	at := tasks[0].NextProcessAt
	require.False(t, at.Before(wantEnd), "not before the window ends (%v < %v)", at, wantEnd)
	require.Less(t, at.Sub(wantEnd), 3*time.Second, "and right after it")
	require.Equal(t, 0, b.smtp.Count(), "nothing sent during quiet hours")
}

func TestRequiredTopicBypassesQuietHoursWhenConfigured(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) {
		o.Policy.Topics["billing"] = herald.Topic{Name: "billing", Required: true, OptIn: true, Class: "transactional", BypassQuietHours: true}
	})
	ctx := context.Background()
	c := b.customer(t, herald.Customer{Email: "ada@example.com", Timezone: "America/New_York"})
	local := time.Now().In(c.Location())
	qh := herald.QuietHours{Start: local.Add(-time.Hour).Format("15:04"), End: local.Add(3 * time.Hour).Format("15:04")}
	_, err := b.e.SetPreferences(ctx, c.ID, preferences.Patch{QuietHours: &qh}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)
	send(t, b, wire.Message{Template: "receipt", Topic: "billing", Data: map[string]any{"number": "R-9"}, Channels: []herald.Channel{herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "a receipt is sent during quiet hours")
}

// Frequency caps hold across messages and say on the timeline whether a
// capped message was deferred or dropped.
func TestFrequencyCaps(t *testing.T) {
	t.Parallel()
	for _, action := range []string{"drop", "defer"} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) {
				o.Policy.Caps = []preferences.Cap{{Class: "lifecycle", Max: 2, Per: time.Hour, Action: action}}
			})
			c := b.customer(t, herald.Customer{Email: "ada@example.com"})
			for i := range 2 {
				send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
				eventually(t, func() bool {
					sends, err := b.e.Preferences().RecentSends(context.Background(), c.ID, "lifecycle", time.Now().Add(-time.Hour))
					return err == nil && len(sends) == i+1 && b.smtp.Count() == i+1
				}, "under the cap: sent and counted")
			}
			send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelEmail}})
			want := herald.OutcomeSuppressed
			if action == "defer" {
				want = herald.OutcomeDeferred
			}
			eventually(t, func() bool { return hasEntry(b.timeline(t, c.ID), "", want, "frequency_capped") }, "the third is capped: "+string(want))
			time.Sleep(300 * time.Millisecond)
			require.Equal(t, 2, b.smtp.Count())
		})
	}
}

// A channel herald has no sender for is never chosen: the message goes by
// the next one, or is recorded as undeliverable, instead of waiting in a
// queue nobody serves.
func TestOnlyConfiguredChannelsAreChosen(t *testing.T) {
	t.Parallel()
	logs := &logbuf.Buffer{}
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) {
		o.Senders = map[herald.Channel]herald.Sender{herald.ChannelEmail: o.Senders[herald.ChannelEmail]}
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	c := b.customer(t, herald.Customer{Email: "ada@example.com", SlackUserID: "U0ADA"})
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelSlack, herald.ChannelEmail}})
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "sent by email, the configured channel")
	send(t, b, wire.Message{Channels: []herald.Channel{herald.ChannelSlack}})
	eventually(t, func() bool {
		return hasEntry(b.timeline(t, c.ID), "", herald.OutcomeSuppressed, engine.ReasonChannelNotConfigured)
	}, "a Slack-only message is recorded as undeliverable, apart from opt-outs")
	require.Equal(t, 0, b.slack.Count())
	require.Contains(t, logs.String(), "message not sent: none of its channels is configured", "the operator is told")
}
