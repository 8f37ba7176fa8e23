package redisstore_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/stretchr/testify/require"
)

// The lines a journey and its messages write most are stored as the values
// their summary is made of; they read back word for word as written (the
// summaries below are the engine's: journey.go, deliver.go).
func TestTimelineArrayForms(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time {
		return time.Date(2026, 11, 30, 5, 58, 48, 438_000_000, time.UTC).Add(time.Duration(ms) * time.Millisecond)
	}
	event := herald.TimelineEntry{At: at(0), Kind: herald.KindEvent, Summary: "event bench.parked from bench", Ref: "e_e561311dcd499084c544a053", Data: map[string]any{"plan": "Pro"}}
	started := herald.TimelineEntry{At: at(9), Kind: herald.KindJourney, Ref: "j_7452649cfc7d70154b18",
		Summary: "journey parked started (version 207a59098735) by bench.parked; step pause: waiting until 2026-11-30 06:58 UTC"}
	sent := herald.TimelineEntry{At: at(8), Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent,
		Summary: "sent hello by email (en), journey parked step welcome", Ref: "j_7452649cfc7d70154b18.welcome.1"}
	for _, tc := range []struct {
		name    string
		batches [][]herald.TimelineEntry // each written in one call
		stored  []string                 // newest first
	}{
		{"an event that starts a journey, its send: two lines", [][]herald.TimelineEntry{{sent}, {event, started}}, []string{
			`[1796018328438,"e","e_e561311dcd499084c544a053","bench.parked","bench",[9,"j_7452649cfc7d70154b18","parked","207a59098735","pause",60],{"plan":"Pro"}]`,
			`[1796018328446,"s","j_7452649cfc7d70154b18.welcome.1","e","hello","en","parked"]`,
		}},
		{"an event and a journey written apart", [][]herald.TimelineEntry{{event}, {started}}, []string{
			`[1796018328447,"j","j_7452649cfc7d70154b18","parked","207a59098735","bench.parked","pause",60]`,
			`[1796018328438,"e","e_e561311dcd499084c544a053","bench.parked","bench",0,{"plan":"Pro"}]`,
		}},
		{"an event without actor or data, a journey that starts and does not wait", [][]herald.TimelineEntry{{
			{At: at(0), Kind: herald.KindEvent, Summary: "event signup", Ref: "e_1"},
			{At: at(-3), Kind: herald.KindJourney, Summary: "journey welcome started (version v1) by signup", Ref: "j_1"},
		}}, []string{`[1796018328438,"e","e_1","signup","",[-3,"j_1","welcome","v1"]]`}},
		{"an event no workflow matched; a one-off send on Slack", [][]herald.TimelineEntry{{
			{At: at(0), Kind: herald.KindEvent, Summary: "event order.paid (matched no workflow)", Ref: "e_2"},
			{At: at(0), Kind: herald.KindDelivery, Channel: herald.ChannelSlack, Outcome: herald.OutcomeSent, Summary: "sent receipt by slack (de)", Ref: "m_1", Data: map[string]any{"n": 2.0}},
		}}, []string{
			`[1796018328438,"s","m_1","s","receipt","de","","",{"n":2}]`,
			`[1796018328438,"n","e_2","order.paid"]`,
		}},
		{"a journey's send at a step its message ID does not name", [][]herald.TimelineEntry{{
			{At: at(0), Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent, Summary: "sent hello by email (), journey parked step other", Ref: "j_1.welcome.1"},
		}}, []string{`[1796018328438,"s","j_1.welcome.1","e","hello","","parked","other"]`}},
		{"other wordings keep the object form", [][]herald.TimelineEntry{{
			{At: at(0), Kind: herald.KindJourney, Ref: "j_2", Summary: "journey parked started (version v1) by go; step pause: waiting until 2026-11-30 07:58 CET"},
			{At: at(0), Kind: herald.KindJourney, Ref: "j_2", Summary: "journey parked finished (done)", Data: map[string]any{"cause": "wake"}},
			{At: at(0), Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent, Summary: "sent hello by email (en) after 2 attempts", Ref: "m_2"},
			{At: at(0), Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeFailedTemporary, Summary: "sent hello by email (en)", Ref: "m_3", Reason: "timeout"},
			{At: at(0), Kind: herald.KindEvent, Summary: "event x", Ref: "e_3", Reason: "replayed"},
		}}, []string{
			`{"t":1796018328438,"k":"e","s":"event x","w":"replayed","r":"e_3"}`,
			`{"t":1796018328438,"k":"d","s":"sent hello by email (en)","c":"e","o":"t","w":"timeout","r":"m_3"}`,
			`{"t":1796018328438,"k":"d","s":"sent hello by email (en) after 2 attempts","c":"e","o":"s","r":"m_2"}`,
			`{"t":1796018328438,"k":"j","s":"journey parked finished (done)","r":"j_2","d":{"cause":"wake"}}`,
			`{"t":1796018328438,"k":"j","s":"journey parked started (version v1) by go; step pause: waiting until 2026-11-30 07:58 CET","r":"j_2"}`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			var want []herald.TimelineEntry
			for _, batch := range tc.batches {
				require.NoError(t, b.st.AppendEntries(b.ctx, "c1", batch...))
				for _, e := range batch {
					want = append([]herald.TimelineEntry{e}, want...)
				}
			}
			raw, err := b.rdb.LRange(b.ctx, redisstore.Key("c1", "timeline"), 0, -1).Result()
			require.NoError(t, err)
			require.Equal(t, tc.stored, raw)
			got, err := b.st.Timeline(b.ctx, "c1", 0)
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

// A broadcast's gate finds a message's line in the array form too, and
// only as the line's own ref.
func TestBroadcastGateArrayLines(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.st.AppendEntries(b.ctx, "c1",
		herald.TimelineEntry{Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent, Summary: "sent news by email (en)", Ref: "b1.c1"},
		herald.TimelineEntry{Kind: herald.KindEvent, Summary: "event b2.c1", Ref: "e_1"}))
	for msg, want := range map[string]bool{"b1.c1": true, "b1": false, "b2.c1": false, "e_1": true} {
		_, ran, err := b.st.BroadcastGate(b.ctx, "b", "c1", msg, true)
		require.NoError(t, err)
		require.Equal(t, want, ran, msg)
	}
}
