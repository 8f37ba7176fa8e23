package preferences

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

var testTopics = map[string]herald.Topic{
	"onboarding":      {Name: "onboarding", OptIn: true, Class: "lifecycle"},
	"product-updates": {Name: "product-updates", OptIn: true, Class: "marketing"},
	"newsletter":      {Name: "newsletter", OptIn: false, Class: "marketing"},
	"billing":         {Name: "billing", Required: true, Class: "marketing"},
	"security":        {Name: "security", Required: true, BypassQuietHours: true},
}

func testPolicy() Policy {
	return Policy{
		Topics: testTopics,
		Caps: []Cap{
			{Class: "marketing", Max: 3, Per: 7 * 24 * time.Hour, Action: CapDefer},
			{Class: "lifecycle", Max: 2, Per: 24 * time.Hour, Action: CapDrop},
		},
	}
}

func TestDecide(t *testing.T) {
	t.Parallel()
	now := utc("2026-06-01T12:00:00Z") // 19:00 in Bangkok
	both := herald.Customer{ID: "c1", Email: "ann@example.com", SlackUserID: "U1", Timezone: "Asia/Bangkok"}
	emailOnly := herald.Customer{ID: "c2", Email: "bo@example.com", Timezone: "Asia/Bangkok"}
	nobody := herald.Customer{ID: "c3"}
	evening := &herald.QuietHours{Start: "18:00", End: "08:00"} // now is inside
	week := 7 * 24 * time.Hour
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	email, slack := herald.ChannelEmail, herald.ChannelSlack

	cases := []struct {
		name string
		in   Input
		want Decision
	}{
		{"unknown topic", Input{Customer: both, Topic: "nope"}, Decision{Reason: ReasonUnknownTopic}},
		{"default channels", Input{Customer: both, Topic: "onboarding"}, Decision{Channels: []herald.Channel{email, slack}}},
		{"customer order first", Input{Customer: both, Topic: "onboarding", Prefs: herald.Preferences{ChannelOrder: []herald.Channel{slack}}}, Decision{Channels: []herald.Channel{slack, email}}},
		{"candidates restrict customer order", Input{Customer: both, Topic: "onboarding", Candidates: []herald.Channel{email}, Prefs: herald.Preferences{ChannelOrder: []herald.Channel{slack, email}}}, Decision{Channels: []herald.Channel{email}}},
		{"candidates order", Input{Customer: both, Topic: "onboarding", Candidates: []herald.Channel{slack, email}}, Decision{Channels: []herald.Channel{slack, email}}},

		{"paused", Input{Customer: both, Topic: "onboarding", Prefs: herald.Preferences{Paused: true}}, Decision{Reason: ReasonPaused}},
		{"paused lets required through", Input{Customer: both, Topic: "billing", Prefs: herald.Preferences{Paused: true}}, Decision{Channels: []herald.Channel{email, slack}}},

		{"opted out of topic", Input{Customer: both, Topic: "product-updates", Prefs: herald.Preferences{Topics: map[string]bool{"product-updates": false}}}, Decision{Reason: ReasonOptedOutTopic}},
		{"opt-in topic never chosen", Input{Customer: both, Topic: "newsletter"}, Decision{Reason: ReasonNotOptedIn}},
		{"opt-in topic left", Input{Customer: both, Topic: "newsletter", Prefs: herald.Preferences{Topics: map[string]bool{"newsletter": false}}}, Decision{Reason: ReasonOptedOutTopic}},
		{"opt-in topic chosen", Input{Customer: both, Topic: "newsletter", Prefs: herald.Preferences{Topics: map[string]bool{"newsletter": true}}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"required ignores topic opt-out", Input{Customer: both, Topic: "billing", Prefs: herald.Preferences{Topics: map[string]bool{"billing": false}}}, Decision{Channels: []herald.Channel{email, slack}}},

		{"channel off", Input{Customer: both, Topic: "onboarding", Candidates: []herald.Channel{email}, Prefs: herald.Preferences{Channels: map[herald.Channel]bool{email: false}}},
			Decision{Reason: ReasonOptedOutChannel, Skipped: map[herald.Channel]string{email: ReasonOptedOutChannel}}},
		{"channel off falls to next", Input{Customer: both, Topic: "onboarding", Prefs: herald.Preferences{Channels: map[herald.Channel]bool{email: false}}},
			Decision{Channels: []herald.Channel{slack}, Skipped: map[herald.Channel]string{email: ReasonOptedOutChannel}}},
		{"required honours channel off", Input{Customer: both, Topic: "billing", Candidates: []herald.Channel{slack}, Prefs: herald.Preferences{Channels: map[herald.Channel]bool{slack: false}}},
			Decision{Reason: ReasonOptedOutChannel, Skipped: map[herald.Channel]string{slack: ReasonOptedOutChannel}}},
		{"suppressed", Input{Customer: both, Topic: "onboarding", Candidates: []herald.Channel{email}, Suppressed: map[herald.Channel]bool{email: true}},
			Decision{Reason: ReasonSuppressed, Skipped: map[herald.Channel]string{email: ReasonSuppressed}}},
		{"required honours suppression", Input{Customer: both, Topic: "security", Candidates: []herald.Channel{email}, Suppressed: map[herald.Channel]bool{email: true}},
			Decision{Reason: ReasonSuppressed, Skipped: map[herald.Channel]string{email: ReasonSuppressed}}},
		{"no address", Input{Customer: nobody, Topic: "onboarding"},
			Decision{Reason: ReasonNoAddress, Skipped: map[herald.Channel]string{email: ReasonNoAddress, slack: ReasonNoAddress}}},
		{"slack by email lookup", Input{Customer: emailOnly, Topic: "onboarding", Candidates: []herald.Channel{slack}}, Decision{Channels: []herald.Channel{slack}}},
		{"opt-out is the most telling reason", Input{Customer: both, Topic: "onboarding", Prefs: herald.Preferences{Channels: map[herald.Channel]bool{slack: false}}, Suppressed: map[herald.Channel]bool{email: true}},
			Decision{Reason: ReasonOptedOutChannel, Skipped: map[herald.Channel]string{email: ReasonSuppressed, slack: ReasonOptedOutChannel}}},
		{"suppression beats missing address", Input{Customer: herald.Customer{Email: "x@example.com"}, Topic: "onboarding", Candidates: []herald.Channel{email, "sms"}, Suppressed: map[herald.Channel]bool{email: true}},
			Decision{Reason: ReasonSuppressed, Skipped: map[herald.Channel]string{email: ReasonSuppressed, "sms": ReasonUnknownChannel}}},

		{"quiet hours", Input{Customer: both, Topic: "onboarding", Now: now, Prefs: herald.Preferences{QuietHours: evening}},
			Decision{Reason: ReasonQuietHours, NotBefore: utc("2026-06-02T01:00:00Z")}},
		{"quiet hours hold required", Input{Customer: both, Topic: "billing", Now: now, Prefs: herald.Preferences{QuietHours: evening}},
			Decision{Reason: ReasonQuietHours, NotBefore: utc("2026-06-02T01:00:00Z")}},
		{"required bypasses quiet hours", Input{Customer: both, Topic: "security", Now: now, Prefs: herald.Preferences{QuietHours: evening}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"outside quiet hours", Input{Customer: both, Topic: "onboarding", Now: utc("2026-06-01T02:00:00Z"), Prefs: herald.Preferences{QuietHours: evening}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"quiet hours in UTC when zone unknown", Input{Customer: herald.Customer{Email: "x@example.com", Timezone: "Mars/Olympus"}, Topic: "onboarding", Candidates: []herald.Channel{email}, Now: now, Prefs: herald.Preferences{QuietHours: &herald.QuietHours{Start: "11:00", End: "13:00"}}},
			Decision{Reason: ReasonQuietHours, NotBefore: utc("2026-06-01T13:00:00Z")}},

		{"cap: max-1 sends", Input{Customer: both, Topic: "product-updates", Now: now, RecentSends: []time.Time{ago(time.Hour), ago(2 * time.Hour)}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"cap: exactly max", Input{Customer: both, Topic: "product-updates", Now: now, RecentSends: []time.Time{ago(time.Hour), ago(3 * 24 * time.Hour), ago(2 * time.Hour)}},
			Decision{Reason: ReasonFrequencyCapped, NotBefore: ago(3 * 24 * time.Hour).Add(week)}},
		{"cap: max+1 waits for two to expire", Input{Customer: both, Topic: "newsletter", Now: now, Prefs: herald.Preferences{Topics: map[string]bool{"newsletter": true}}, RecentSends: []time.Time{ago(6 * 24 * time.Hour), ago(time.Hour), ago(5 * 24 * time.Hour), ago(2 * time.Hour)}},
			Decision{Reason: ReasonFrequencyCapped, NotBefore: ago(5 * 24 * time.Hour).Add(week)}},
		{"cap: a send exactly one window ago no longer counts", Input{Customer: both, Topic: "product-updates", Now: now, RecentSends: []time.Time{ago(week), ago(time.Hour), ago(2 * time.Hour)}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"cap: a send just inside the window counts", Input{Customer: both, Topic: "product-updates", Now: now, RecentSends: []time.Time{ago(week - time.Second), ago(time.Hour), ago(2 * time.Hour)}},
			Decision{Reason: ReasonFrequencyCapped, NotBefore: now.Add(time.Second)}},
		{"cap: drop", Input{Customer: both, Topic: "onboarding", Now: now, RecentSends: []time.Time{ago(time.Hour), ago(2 * time.Hour)}}, Decision{Reason: ReasonFrequencyCapped, Drop: true}},
		{"cap: drop at max-1", Input{Customer: both, Topic: "onboarding", Now: now, RecentSends: []time.Time{ago(time.Hour)}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"cap: required never capped", Input{Customer: both, Topic: "billing", Now: now, RecentSends: []time.Time{ago(1), ago(2), ago(3), ago(4)}}, Decision{Channels: []herald.Channel{email, slack}}},
		{"cap: quiet hours first, caps again at the end", Input{Customer: both, Topic: "onboarding", Now: now, Prefs: herald.Preferences{QuietHours: evening}, RecentSends: []time.Time{ago(time.Hour), ago(2 * time.Hour)}},
			Decision{Reason: ReasonQuietHours, NotBefore: utc("2026-06-02T01:00:00Z")}},
	}
	p := testPolicy()
	require.NoError(t, p.Validate())
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.in.Now.IsZero() {
				tc.in.Now = now
			}
			got := p.Decide(tc.in)
			if !got.NotBefore.IsZero() {
				got.NotBefore = got.NotBefore.UTC()
			}
			require.Equal(t, tc.want, got, got.String())
			require.Equal(t, tc.want.Reason == "", got.Sending())
		})
	}
}

func TestDecideStackedCaps(t *testing.T) {
	t.Parallel()
	now := utc("2026-06-01T12:00:00Z")
	p := Policy{Topics: testTopics, Caps: []Cap{
		{Class: "marketing", Max: 1, Per: time.Hour},
		{Class: "marketing", Max: 2, Per: 24 * time.Hour},
		{Class: "marketing", Max: 0, Per: time.Hour, Action: CapDrop}, // invalid: ignored
	}}
	in := Input{Customer: herald.Customer{Email: "a@example.com"}, Topic: "product-updates", Now: now,
		RecentSends: []time.Time{now.Add(-30 * time.Minute), now.Add(-20 * time.Hour)}}
	d := p.Decide(in)
	require.Equal(t, ReasonFrequencyCapped, d.Reason)
	require.False(t, d.Drop)
	require.Equal(t, now.Add(4*time.Hour), d.NotBefore, "the latest of the hit caps")
	require.Equal(t, 24*time.Hour, p.Window("marketing"))
	require.Zero(t, p.Window("nothing"))
}

func TestCapValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []Cap{{Max: 1, Per: time.Hour}, {Class: "m", Per: time.Hour}, {Class: "m", Max: 1}, {Class: "m", Max: 1, Per: time.Hour, Action: "later"}} {
		require.Equal(t, herald.EInvalid, herald.ErrorCode(c.Validate()), "%+v", c)
	}
	require.NoError(t, Cap{Class: "m", Max: 1, Per: time.Hour}.Validate())
	require.Error(t, Policy{DefaultChannels: []herald.Channel{"pigeon"}}.Validate())
}
