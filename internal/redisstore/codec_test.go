package redisstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/workflows"
	"github.com/stretchr/testify/require"
)

// stored is t as the store keeps it: to the millisecond.
func stored(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

// Lines written before the compact form (long field names, RFC 3339 times)
// still read, merged by time with new ones and the acknowledgements.
func TestTimelineLineForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	key := redisstore.Key("c1", "timeline")
	old := `{"at":"2026-03-14T09:26:52.123456789Z","kind":"delivery","summary":"sent hello by email (en)","channel":"email","outcome":"sent","reason":"r","ref":"m0","data":{"provider_id":"\u003c1@mail\u003e","n":2}}`
	require.NoError(t, b.rdb.LPush(b.ctx, key, old).Err())
	require.NoError(t, b.rdb.LPush(b.ctx, redisstore.Key("c1", "timeline", "acks"),
		`{"at":"2026-03-14T09:26:53.1Z","kind":"acknowledgement","summary":"clicked","ref":"m0"}`).Err())

	line := herald.TimelineEntry{
		Kind: herald.KindDelivery, Summary: "sent hello by email (en) & more", Channel: herald.ChannelEmail,
		Outcome: herald.OutcomeSent, Reason: "why", Ref: "m1", Data: map[string]any{"provider_id": "<2@mail>", "n": 3.0},
	}
	require.NoError(t, b.st.Append(b.ctx, "c1", line))
	// Names without a code are stored as they are.
	other := herald.TimelineEntry{Kind: "audit", Summary: "a kind of its own", Channel: "sms", Outcome: herald.OutcomeFailedPermanent}
	require.NoError(t, b.st.Append(b.ctx, "c1", other))

	raw, err := b.rdb.LRange(b.ctx, key, 0, -1).Result()
	require.NoError(t, err)
	require.Len(t, raw, 3)
	require.Equal(t, `{"t":1773480413589,"k":"audit","s":"a kind of its own","c":"sms","o":"f"}`, raw[0])
	require.Equal(t, `{"t":1773480413589,"k":"d","s":"sent hello by email (en) & more","c":"e","o":"s","w":"why","r":"m1","d":{"n":3,"provider_id":"<2@mail>"}}`, raw[1])

	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	line.At, other.At = stored(start), stored(start)
	require.Equal(t, []herald.TimelineEntry{
		other,
		line,
		{Kind: herald.KindAcknowledgement, Summary: "clicked", Ref: "m0", At: time.Date(2026, 3, 14, 9, 26, 53, 100000000, time.UTC)},
		{Kind: herald.KindDelivery, Summary: "sent hello by email (en)", Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent,
			Reason: "r", Ref: "m0", Data: map[string]any{"provider_id": "<1@mail>", "n": 2.0},
			At: time.Date(2026, 3, 14, 9, 26, 52, 123456789, time.UTC)},
	}, tl)
}

// A broadcast's message runs once: its gate finds an earlier line about it
// in either form.
func TestBroadcastGateLineForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.rdb.LPush(b.ctx, redisstore.Key("c1", "timeline"),
		`{"at":"2026-03-14T09:26:52Z","kind":"message","summary":"queued","ref":"b1.c1"}`).Err())
	require.NoError(t, b.st.Append(b.ctx, "c1", herald.TimelineEntry{Kind: herald.KindMessage, Summary: "queued", Ref: "b2.c1"}))
	for msg, want := range map[string]bool{"b1.c1": true, "b2.c1": true, "b3.c1": false} {
		_, ran, err := b.st.BroadcastGate(b.ctx, "b", "c1", msg, true)
		require.NoError(t, err)
		require.Equal(t, want, ran, msg)
	}
}

func fullJourney() workflows.State {
	at := func(d time.Duration) time.Time { return stored(start.Add(d)) }
	return workflows.State{
		JourneyID: "j_1", WorkflowID: "onboarding", Version: "207a59098735", CustomerID: "c1",
		Status: workflows.StatusActive, Step: "pause", StepSeq: 3,
		WakeAt: at(time.Hour), WaitKind: workflows.WaitKindDigest,
		StartedAt: at(0), UpdatedAt: at(2 * time.Second),
		Data: map[string]any{"plan": "Pro <&>", "n": 2.0, "tags": []any{"a"}},
		History: []workflows.HistoryEntry{
			{At: at(0), Kind: "start", Detail: "trial.started"},
			{At: at(0), Step: "welcome", Seq: 1, Kind: "send", Detail: "hello"},
			{At: at(time.Second), Step: "split", Seq: 2, Kind: "split"},
			{At: at(2 * time.Second), Step: "pause", Seq: 3, Kind: "wait", Detail: "1h"},
		},
		Arms:        map[string]string{"split": "pause"},
		Digest:      &workflows.DigestBuffer{Step: "pause", Events: []workflows.DigestEvent{{ID: "e1", At: at(time.Second), Data: map[string]any{"x": "y"}}, {At: at(2 * time.Second)}}},
		ConvertedAt: at(time.Second),
	}
}

func TestJourneyStateForms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		s    func() workflows.State
	}{
		{"everything", fullJourney},
		{"finished, nothing optional", func() workflows.State {
			s := fullJourney()
			s.Status, s.WakeAt, s.WaitKind, s.ConvertedAt = workflows.StatusFinished, time.Time{}, "", time.Time{}
			s.Data, s.History, s.Arms, s.Digest = nil, nil, nil, nil
			return s
		}},
		{"a step its history does not end at", func() workflows.State {
			s := fullJourney()
			s.Step, s.StepSeq = "welcome", 1
			return s
		}},
		{"the step of its last history entry, another count", func() workflows.State {
			s := fullJourney()
			s.StepSeq = 4
			return s
		}},
		{"no step", func() workflows.State {
			s := fullJourney()
			s.Step, s.StepSeq = "", 0
			return s
		}},
		{"history values a string cannot hold", func() workflows.State {
			s := fullJourney()
			s.History[1].Detail = "hello, world"
			s.History = append(s.History, workflows.HistoryEntry{At: s.UpdatedAt, Kind: "s", Step: "pause", Seq: 3})
			return s
		}},
		{"history with gaps: empty details, repeated and skipped counts", func() workflows.State {
			s := fullJourney()
			s.History = append(s.History,
				workflows.HistoryEntry{At: s.UpdatedAt, Kind: "timeout", Step: "pause", Seq: 3},
				workflows.HistoryEntry{At: s.UpdatedAt.Add(-time.Second), Kind: "branch", Detail: "plan=Pro", Step: "pick", Seq: 7})
			s.Step, s.StepSeq = "pick", 7
			return s
		}},
		{"the wait kind of its last history entry", func() workflows.State {
			s := fullJourney()
			s.WaitKind = workflows.WaitKindWait
			return s
		}},
		{"no wait kind after a wait entry", func() workflows.State {
			s := fullJourney()
			s.WakeAt, s.WaitKind = time.Time{}, ""
			return s
		}},
		{"an empty digest, a time before the start", func() workflows.State {
			s := fullJourney()
			s.Digest = &workflows.DigestBuffer{Step: "pause", Events: []workflows.DigestEvent{}}
			s.UpdatedAt = s.StartedAt.Add(-time.Millisecond)
			return s
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			s := tc.s()
			require.NoError(t, b.st.SaveJourney(b.ctx, s))
			raw, err := b.rdb.Get(b.ctx, redisstore.JourneyKey("c1", "j_1")).Result()
			require.NoError(t, err)
			long, err := json.Marshal(s)
			require.NoError(t, err)
			require.Less(t, len(raw), len(long)/2, "stored %s", raw)
			require.NotContains(t, raw, "j_1", "the key names the journey")
			require.NotContains(t, raw, `\u003c`)

			got, ok, err := b.st.Journey(b.ctx, "c1", "j_1")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, s, got)
			all, err := b.st.Journeys(b.ctx, "c1")
			require.NoError(t, err)
			require.Equal(t, []workflows.State{s}, all)

			// The raw readers answer in the API's form.
			one, err := b.st.JourneyState(b.ctx, "c1", "j_1")
			require.NoError(t, err)
			require.JSONEq(t, string(long), string(one))
			states, err := b.st.JourneyStates(b.ctx, "c1")
			require.NoError(t, err)
			require.Equal(t, []workflows.State{s}, workflows.DecodeStates(states))
		})
	}
}

// A state written before the compact form reads as it did.
func TestJourneyStateOldForm(t *testing.T) {
	t.Parallel()
	b := setup(t)
	old := `{"journey_id":"j_d34f38f799751faab946","workflow_id":"parked","version":"207a59098735","customer_id":"c0","status":"active","step":"pause","step_seq":2,"wake_at":"2026-11-30T04:47:17.177191463Z","wait_kind":"wait","started_at":"2026-11-30T03:47:17.177191463Z","updated_at":"2026-11-30T03:47:17.177191463Z","data":{"plan":"Pro"},"history":[{"at":"2026-11-30T03:47:17.177191463Z","kind":"start","detail":"bench.parked"},{"at":"2026-11-30T03:47:17.177191463Z","step":"welcome","seq":1,"kind":"send","detail":"hello"},{"at":"2026-11-30T03:47:17.177191463Z","step":"pause","seq":2,"kind":"wait","detail":"1h"}]}`
	key := redisstore.JourneyKey("c0", "j_d34f38f799751faab946")
	require.NoError(t, b.rdb.Set(b.ctx, key, old, 0).Err())
	var want workflows.State
	require.NoError(t, json.Unmarshal([]byte(old), &want))

	got, ok, err := b.st.Journey(b.ctx, "c0", "j_d34f38f799751faab946")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, want, got)
	one, err := b.st.JourneyState(b.ctx, "c0", "j_d34f38f799751faab946")
	require.NoError(t, err)
	require.JSONEq(t, old, string(one))

	// Saved again, it takes the compact form: a sixth of the bytes.
	require.NoError(t, b.st.SaveJourney(b.ctx, got))
	raw, err := b.rdb.Get(b.ctx, key).Result()
	require.NoError(t, err)
	require.Equal(t, `["parked","207a59098735",1796010437177,3600001,{"plan":"Pro"},"s bench.parked,m hello welcome,w 1h pause"]`, raw)
	again, _, err := b.st.Journey(b.ctx, "c0", "j_d34f38f799751faab946")
	require.NoError(t, err)
	require.Equal(t, want.History[2].Kind, again.History[2].Kind)
	require.True(t, again.WakeAt.Equal(stored(want.WakeAt).Add(time.Millisecond)), "a wake time is kept rounded up to the millisecond, never before it is due")

	// The object form the array replaced reads the same.
	require.NoError(t, b.rdb.Set(b.ctx, key, `{"w":"parked","v":"207a59098735","t":1796010437177,"wk":3600001,"k":"wait","d":{"plan":"Pro"},`+
		`"h":[[0,"start","bench.parked"],[0,"send","hello","welcome",1],[0,"wait","1h","pause",2]]}`, 0).Err())
	fromObject, _, err := b.st.Journey(b.ctx, "c0", "j_d34f38f799751faab946")
	require.NoError(t, err)
	require.Equal(t, again, fromObject)
	one, err = b.st.JourneyState(b.ctx, "c0", "j_d34f38f799751faab946")
	require.NoError(t, err)
	require.JSONEq(t, string(must(json.Marshal(again))), string(one))
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestLedgerRecordForms(t *testing.T) {
	t.Parallel()
	b := setup(t)
	// Written before the compact form.
	old := `{"ch":"email","pid":"\u003c93f7@lumen.example\u003e","at":"2026-11-30T03:47:17.179684488Z","wf":"parked","j":"j_d34f","st":"welcome","tp":"onboarding","tm":"hello","lc":"en"}`
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.LedgerKey("c1", "j_d34f.welcome.1:email"), old, 0).Err())
	got, err := b.st.Sent(b.ctx, "c1", "j_d34f.welcome.1", []herald.Channel{herald.ChannelEmail})
	require.NoError(t, err)
	require.Equal(t, redisstore.SentRecord{
		Channel: herald.ChannelEmail, ProviderID: "<93f7@lumen.example>", SentAt: time.Date(2026, 11, 30, 3, 47, 17, 179684488, time.UTC),
		Workflow: "parked", Journey: "j_d34f", Step: "welcome", Topic: "onboarding", Template: "hello", Locale: "en",
	}, got[herald.ChannelEmail])
	c, err := b.st.ClaimDelivery(b.ctx, "c1", "j_d34f.welcome.1:email", time.Minute, "")
	require.NoError(t, err)
	require.True(t, c.Sent, "an old record counts as sent")

	// The object form the array replaced.
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.LedgerKey("c1", "j_d34f.welcome.2:email"),
		`{"pid":"<93f7@lumen.example>","t":1773480413589,"wf":"parked","js":true,"tp":"onboarding","tm":"hello","lc":"en"}`, 0).Err())
	got, err = b.st.Sent(b.ctx, "c1", "j_d34f.welcome.2", []herald.Channel{herald.ChannelEmail})
	require.NoError(t, err)
	require.Equal(t, redisstore.SentRecord{
		Channel: herald.ChannelEmail, ProviderID: "<93f7@lumen.example>", SentAt: stored(start),
		Workflow: "parked", Journey: "j_d34f", Step: "welcome", Topic: "onboarding", Template: "hello", Locale: "en",
	}, got[herald.ChannelEmail])

	for _, tc := range []struct {
		name, message string
		rec           redisstore.SentRecord
		stored        string
	}{
		{"a journey's message", "j_d34f.welcome.1", redisstore.SentRecord{
			Channel: herald.ChannelEmail, ProviderID: "<93f7@lumen.example>", SentAt: stored(start),
			Workflow: "parked", Journey: "j_d34f", Step: "welcome", Topic: "onboarding", Template: "hello", Locale: "en",
		}, `[1773480413589,"<93f7@lumen.example>","onboarding","hello","en","parked",1]`},
		{"a step with dots", "j_9.step.two.12", redisstore.SentRecord{Channel: herald.ChannelSlack, Journey: "j_9", Step: "step.two", SentAt: stored(start)},
			`[1773480413589,"","","","","",1]`},
		{"a journey the ID does not name", "m7.a.1", redisstore.SentRecord{Channel: herald.ChannelSlack, Journey: "j_other", Step: "a", SentAt: stored(start)},
			`[1773480413589,"","","","","","j_other","a"]`},
		{"a one-off message", "m8", redisstore.SentRecord{Channel: herald.ChannelEmail, Template: "receipt", SentAt: stored(start)},
			`[1773480413589,"","","receipt"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := string(tc.rec.Channel)
			c := b.claim(t, "c2", tc.message+":"+ch, time.Minute)
			b.finish(t, c, tc.rec)
			raw, err := b.rdb.Get(b.ctx, redisstore.LedgerKey("c2", tc.message+":"+ch)).Result()
			require.NoError(t, err)
			require.Equal(t, tc.stored, raw)
			require.Equal(t, tc.rec, b.ledger(t, "c2", tc.message+":"+ch))
		})
	}

	// A record under a key that is not message:channel keeps its channel.
	c = b.claim(t, "c3", "m1", time.Minute)
	b.finish(t, c, redisstore.SentRecord{Channel: herald.ChannelSlack, SentAt: stored(start)})
	raw, err := b.rdb.Get(b.ctx, redisstore.LedgerKey("c3", "m1")).Result()
	require.NoError(t, err)
	require.Equal(t, `[1773480413589,"","","","","","","","slack"]`, raw)
}

// A send's timeline line keeps of its data what its ledger record does not
// hold; the caller's map is left as it was.
func TestFinishLineData(t *testing.T) {
	t.Parallel()
	b := setup(t)
	rec := redisstore.SentRecord{
		Channel: herald.ChannelEmail, ProviderID: "<p@mail>", SentAt: stored(start),
		Workflow: "parked", Journey: "j_1", Step: "welcome", Topic: "onboarding", Template: "hello", Locale: "en",
	}
	data := map[string]any{
		"workflow": "parked", "journey": "j_1", "step": "welcome", "topic": "onboarding", "template": "hello",
		"locale": "en", "version": "207a59098735", "provider_id": "<p@mail>", "note": "kept",
	}
	before := len(data)
	c := b.claim(t, "c1", "j_1.welcome.1:email", time.Minute)
	first, err := c.Finish(b.ctx, rec, herald.TimelineEntry{Kind: herald.KindDelivery, Summary: "sent hello by email (en)", Channel: herald.ChannelEmail, Outcome: herald.OutcomeSent, Ref: "j_1.welcome.1", Data: data}, nil, 0)
	require.NoError(t, err)
	require.True(t, first)
	require.Len(t, data, before)

	tl, err := b.st.Timeline(b.ctx, "c1", 0)
	require.NoError(t, err)
	require.Len(t, tl, 1)
	require.Equal(t, map[string]any{"note": "kept"}, tl[0].Data)

	// What the line leaves out, the message's status still says.
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.MessageIndexKey("j_1.welcome.1"), "c1", 0).Err())
	st, err := b.st.LookUpMessage(b.ctx, "j_1.welcome.1", nil)
	require.NoError(t, err)
	require.Equal(t, "hello", st.Template)
	require.Equal(t, "onboarding", st.Topic)
	require.Equal(t, "parked", st.Workflow)
	require.Equal(t, "j_1", st.Journey)
	require.Equal(t, "welcome", st.Step)
	require.Equal(t, "sent", st.Channels["email"].Status)
	require.Equal(t, "<p@mail>", st.Channels["email"].ProviderID)
	require.Equal(t, "sent hello by email (en)", st.Channels["email"].Summary, "from the line")
}
