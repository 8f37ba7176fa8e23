package redisstore_test

import (
	"slices"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/stretchr/testify/require"
)

// The lines a journey and its messages write most are stored as the values
// their summary is made of, and read back word for word as written, newest
// first by when each happened (lines a moment apart are read in that
// order whatever order they were written in: an event's line is written
// after the send it caused).
func TestTimelineArrayForms(t *testing.T) {
	t.Parallel()
	at := func(ms int) time.Time {
		return time.Date(2026, 11, 30, 5, 58, 48, 438_000_000, time.UTC).Add(time.Duration(ms) * time.Millisecond)
	}
	line := func(e herald.TimelineEntry, ms int) herald.TimelineEntry {
		e.At = at(ms)
		return e
	}
	wake := time.Date(2026, 11, 30, 6, 58, 48, 0, time.UTC)
	event := line(redisstore.EventLine("e_e561311dcd499084c544a053", "bench.parked", "bench", map[string]any{"plan": "Pro"}), 0)
	started := line(redisstore.JourneyStartLine("j_7452649cfc7d70154b18", "parked", "207a59098735", "bench.parked", "pause", wake), 9)
	sent := line(redisstore.SentLine("j_7452649cfc7d70154b18.welcome.1", herald.ChannelEmail, "hello", "en", "parked", "welcome", nil), 8)
	unmatched := line(redisstore.EventLine("e_2", "order.paid", "", nil), 0)
	redisstore.MarkUnmatched(&unmatched)
	noted := line(redisstore.SentLine("m_2", herald.ChannelEmail, "hello", "en", "", "", nil), 0)
	noted.Summary += " after 2 attempts"
	replayed := line(redisstore.EventLine("e_3", "x", "", nil), 0)
	replayed.Reason = "replayed"
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
			line(redisstore.EventLine("e_1", "signup", "", nil), 0),
			line(redisstore.JourneyStartLine("j_1", "welcome", "v1", "signup", "", time.Time{}), -3),
		}}, []string{`[1796018328438,"e","e_1","signup","",[-3,"j_1","welcome","v1"]]`}},
		{"an event no workflow matched; a one-off send on Slack", [][]herald.TimelineEntry{{
			unmatched,
			line(redisstore.SentLine("m_1", herald.ChannelSlack, "receipt", "de", "", "", map[string]any{"n": 2.0}), 0),
		}}, []string{
			`[1796018328438,"s","m_1","s","receipt","de","","",{"n":2}]`,
			`[1796018328438,"n","e_2","order.paid"]`,
		}},
		{"a journey's send at a step its message ID does not name", [][]herald.TimelineEntry{{
			line(redisstore.SentLine("j_1.welcome.1", herald.ChannelEmail, "hello", "", "parked", "other", nil), 0),
		}}, []string{`[1796018328438,"s","j_1.welcome.1","e","hello","","parked","other"]`}},
		{"lines without values, or whose summary is no longer theirs, keep the object form", [][]herald.TimelineEntry{{
			line(redisstore.JourneyStartLine("j_2", "parked", "v1", "go", "pause", wake.In(time.FixedZone("CET", 3600))), 0),
			{At: at(0), Kind: herald.KindJourney, Ref: "j_2", Summary: "journey parked finished (done)", Data: map[string]any{"cause": "wake"}},
			noted,
			{At: at(0), Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeFailedTemporary, Summary: "sent hello by email (en)", Ref: "m_3", Reason: "timeout"},
			replayed,
			{At: at(0), Kind: herald.KindDelivery, Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent, Summary: "sent hello by email (en)", Ref: "m_4"},
		}}, []string{
			`{"t":1796018328438,"k":"d","s":"sent hello by email (en)","c":"e","o":"s","r":"m_4"}`,
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
					e.Line = nil // what a line was written from is not read back
					want = append([]herald.TimelineEntry{e}, want...)
				}
			}
			slices.SortStableFunc(want, func(x, y herald.TimelineEntry) int { return y.At.Compare(x.At) })
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
		redisstore.SentLine("b1.c1", herald.ChannelEmail, "news", "en", "", "", nil),
		redisstore.EventLine("e_1", "b2.c1", "", nil)))
	for msg, want := range map[string]bool{"b1.c1": true, "b1": false, "b2.c1": false, "e_1": true} {
		_, ran, err := b.st.BroadcastGate(b.ctx, "b", "c1", msg, true)
		require.NoError(t, err)
		require.Equal(t, want, ran, msg)
	}
}
