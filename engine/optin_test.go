package engine_test

import (
	"context"
	"testing"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
)

// A message on an opt-in topic to a customer who never joined it is not
// "opted out": the timeline, the message's status and the metrics say the
// customer has not opted in, and name no consent entry. A customer who did
// say no is still opted out, with the entry.
func TestOptInTopicNeverJoinedIsNotAnOptOut(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.customer(t, herald.Customer{ID: "never", Email: "ada@example.com"})
	b.customer(t, herald.Customer{ID: "left", Email: "bo@example.com"})
	_, err := b.e.SetPreferences(ctx, "left", preferences.Patch{Topics: map[string]bool{"newsletter": false}}, preferences.Actor{Kind: "customer"}, "preference_page")
	require.NoError(t, err)

	suppressed := func(customer string) herald.TimelineEntry {
		var entry herald.TimelineEntry
		eventually(t, func() bool {
			for _, e := range b.timeline(t, customer) {
				if e.Outcome == herald.OutcomeSuppressed {
					entry = e
					return true
				}
			}
			return false
		}, customer+": the timeline says why nothing was sent")
		return entry
	}

	id := send(t, b, wire.Message{CustomerID: "never", Topic: "newsletter", Channels: []herald.Channel{herald.ChannelEmail}})
	entry := suppressed("never")
	require.Equal(t, preferences.ReasonNotOptedIn, entry.Reason)
	require.Contains(t, entry.Summary, "the customer has not opted in to this topic")
	require.NotContains(t, entry.Summary, "opted out")
	require.Nil(t, entry.Data["consent_id"], "no consent entry: the customer never chose")
	st := messageReaches(t, b, id, "message", "suppressed")
	require.Equal(t, preferences.ReasonNotOptedIn, st.Channels["message"].Reason)
	require.Empty(t, st.Channels["message"].ConsentEntry)
	require.Equal(t, 1.0, promtest.ToFloat64(b.e.Metrics().Messages.WithLabelValues("", "newsletter", "", string(herald.OutcomeSuppressed), preferences.ReasonNotOptedIn)))

	send(t, b, wire.Message{CustomerID: "left", Topic: "newsletter", Channels: []herald.Channel{herald.ChannelEmail}})
	entry = suppressed("left")
	require.Equal(t, preferences.ReasonOptedOutTopic, entry.Reason)
	require.NotEmpty(t, entry.Data["consent_id"], "the opt-out names its consent entry")
	require.Equal(t, 0, b.smtp.Count())
}
