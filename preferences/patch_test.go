package preferences

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

func TestPatchJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want Patch
		err  string
	}{
		{"absent quiet hours keep", `{"paused":true}`, Patch{Paused: ptr(true)}, ""},
		{"null quiet hours clear", `{"quiet_hours":null}`, Patch{ClearQuietHours: true}, ""},
		{"empty order clears", `{"channel_order":[]}`, Patch{ChannelOrder: []herald.Channel{}}, ""},
		{"set quiet hours", `{"quiet_hours":{"start":"21:00","end":"08:00"}}`, Patch{QuietHours: &herald.QuietHours{Start: "21:00", End: "08:00"}}, ""},
		{"the API's example", `{"channels":{"email":false},"topics":{"product-updates":false},"channel_order":["slack","email"],"quiet_hours":{"start":"21:00","end":"08:00"}}`,
			Patch{Channels: map[herald.Channel]bool{"email": false}, Topics: map[string]bool{"product-updates": false}, ChannelOrder: []herald.Channel{"slack", "email"}, QuietHours: &herald.QuietHours{Start: "21:00", End: "08:00"}}, ""},
		{"unknown field", `{"topic":{"x":false}}`, Patch{}, `unknown field "topic"`},
		{"unknown quiet hours field", `{"quiet_hours":{"from":"21:00"}}`, Patch{}, `quiet_hours: unknown field "from"`},
		{"wrong type", `{"paused":"yes"}`, Patch{}, "paused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p Patch
			err := json.Unmarshal([]byte(tc.body), &p)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, p)
			b, err := json.Marshal(p)
			require.NoError(t, err)
			var back Patch
			require.NoError(t, json.Unmarshal(b, &back))
			require.Equal(t, p, back, "round trip through %s", b)
		})
	}
}

func TestPatchValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		patch Patch
		field string // "" = valid
	}{
		{"empty", Patch{}, ""},
		{"good", Patch{Channels: map[herald.Channel]bool{"email": false}, Topics: map[string]bool{"newsletter": true, "billing": true}, ChannelOrder: []herald.Channel{"slack", "email"}, QuietHours: &herald.QuietHours{Start: "22:00", End: "07:30"}}, ""},
		{"unknown channel", Patch{Channels: map[herald.Channel]bool{"fax": true}}, "channels.fax:"},
		{"unknown topic", Patch{Topics: map[string]bool{"gossip": false}}, "topics.gossip:"},
		{"required topic off", Patch{Topics: map[string]bool{"billing": false}}, "topics.billing:"},
		{"unknown order channel", Patch{ChannelOrder: []herald.Channel{"email", "sms"}}, "channel_order[1]:"},
		{"duplicate order", Patch{ChannelOrder: []herald.Channel{"email", "email"}}, "channel_order[1]:"},
		{"bad start", Patch{QuietHours: &herald.QuietHours{Start: "9pm", End: "07:00"}}, "quiet_hours.start:"},
		{"bad end", Patch{QuietHours: &herald.QuietHours{Start: "21:00", End: "24:00"}}, "quiet_hours.end:"},
		{"empty window", Patch{QuietHours: &herald.QuietHours{Start: "21:00", End: "21:00"}}, "quiet_hours:"},
		{"set and clear", Patch{QuietHours: &herald.QuietHours{Start: "21:00", End: "07:00"}, ClearQuietHours: true}, "quiet_hours:"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.patch.Validate(testTopics)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
			require.Contains(t, herald.ErrorMessage(err), tc.field)
		})
	}
}

func TestPatchMerge(t *testing.T) {
	t.Parallel()
	cur := herald.Preferences{
		Channels:     map[herald.Channel]bool{"email": true},
		Topics:       map[string]bool{"newsletter": true},
		ChannelOrder: []herald.Channel{"email"},
		QuietHours:   &herald.QuietHours{Start: "22:00", End: "07:00"},
	}
	cases := []struct {
		name    string
		patch   Patch
		changed []Change
	}{
		{"nothing", Patch{}, nil},
		{"same values", Patch{Channels: map[herald.Channel]bool{"email": true}, Topics: map[string]bool{"newsletter": true}, ChannelOrder: []herald.Channel{"email"}, QuietHours: &herald.QuietHours{Start: "22:00", End: "07:00"}, Paused: ptr(false)}, nil},
		{"unset to explicit", Patch{Topics: map[string]bool{"onboarding": true}}, []Change{{"topics.onboarding", nil, true}}},
		{"flip", Patch{Channels: map[herald.Channel]bool{"email": false, "slack": false}}, []Change{{"channels.email", true, false}, {"channels.slack", nil, false}}},
		{"order cleared", Patch{ChannelOrder: []herald.Channel{}}, []Change{{"channel_order", []herald.Channel{"email"}, nil}}},
		{"quiet hours cleared", Patch{ClearQuietHours: true}, []Change{{"quiet_hours", herald.QuietHours{Start: "22:00", End: "07:00"}, nil}}},
		{"paused", Patch{Paused: ptr(true)}, []Change{{"paused", false, true}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, changed := tc.patch.Merge(cur)
			require.Equal(t, tc.changed, changed)
		})
	}
	// Merge never writes through to the caller's maps.
	_, _ = Patch{Topics: map[string]bool{"newsletter": false}}.Merge(cur)
	require.True(t, cur.Topics["newsletter"])
}

func ptr[T any](v T) *T { return &v }
