package preferences

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/jsonerr"
)

// Patch is a JSON merge of preferences: only the fields present change, and
// inside Channels and Topics only the keys present.
type Patch struct {
	Channels     map[herald.Channel]bool `json:"channels,omitempty"`
	Topics       map[string]bool         `json:"topics,omitempty"`
	ChannelOrder []herald.Channel        `json:"channel_order,omitzero"` // [] clears the order
	// QuietHours sets the window; to remove it set ClearQuietHours (in
	// JSON: "quiet_hours": null).
	QuietHours      *herald.QuietHours `json:"quiet_hours,omitempty"`
	ClearQuietHours bool               `json:"-"`
	Paused          *bool              `json:"paused,omitempty"`
}

type patchJSON struct {
	Channels     map[herald.Channel]bool `json:"channels"`
	Topics       map[string]bool         `json:"topics"`
	ChannelOrder []herald.Channel        `json:"channel_order"`
	QuietHours   json.RawMessage         `json:"quiet_hours"`
	Paused       *bool                   `json:"paused"`
}

// UnmarshalJSON tells an explicit "quiet_hours": null (clear) from an absent
// key (keep), and refuses unknown keys: a misspelt field silently ignored
// would leave a customer receiving what they asked to stop.
func (p *Patch) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var raw patchJSON
	if err := dec.Decode(&raw); err != nil {
		return herald.Errorf(herald.EInvalid, "preferences patch: %s", jsonerr.Explain(err, b))
	}
	*p = Patch{Channels: raw.Channels, Topics: raw.Topics, ChannelOrder: raw.ChannelOrder, Paused: raw.Paused}
	switch q := bytes.TrimSpace(raw.QuietHours); {
	case len(q) == 0:
	case string(q) == "null":
		p.ClearQuietHours = true
	default:
		var qh herald.QuietHours
		qd := json.NewDecoder(bytes.NewReader(q))
		qd.DisallowUnknownFields()
		if err := qd.Decode(&qh); err != nil {
			return herald.Errorf(herald.EInvalid, "quiet_hours: %s", jsonerr.Explain(err, q))
		}
		p.QuietHours = &qh
	}
	return nil
}

// MarshalJSON writes ClearQuietHours as "quiet_hours": null.
func (p Patch) MarshalJSON() ([]byte, error) {
	type plain Patch
	b, err := json.Marshal(plain(p))
	if err != nil || !p.ClearQuietHours || p.QuietHours != nil {
		return b, err
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["quiet_hours"] = json.RawMessage("null")
	return json.Marshal(m)
}

// Empty reports whether the patch changes nothing.
func (p Patch) Empty() bool {
	return len(p.Channels) == 0 && len(p.Topics) == 0 && p.ChannelOrder == nil &&
		p.QuietHours == nil && !p.ClearQuietHours && p.Paused == nil
}

// Validate checks the patch against the known topics. Errors are
// herald.EInvalid and start with the offending field's path.
func (p Patch) Validate(topics map[string]herald.Topic) error {
	for _, ch := range slices.Sorted(maps.Keys(p.Channels)) {
		if !ch.Valid() {
			return herald.Errorf(herald.EInvalid, "channels.%s: unknown channel (known: %s)", ch, knownChannels())
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Topics)) {
		t, ok := topics[name]
		if !ok {
			return herald.Errorf(herald.EInvalid, "topics.%s: unknown topic", name)
		}
		if t.Required && !p.Topics[name] {
			return herald.Errorf(herald.EInvalid, "topics.%s: required topic, it cannot be switched off (switch channels off instead)", name)
		}
	}
	seen := map[herald.Channel]bool{}
	for i, ch := range p.ChannelOrder {
		if !ch.Valid() {
			return herald.Errorf(herald.EInvalid, "channel_order[%d]: unknown channel %q (known: %s)", i, ch, knownChannels())
		}
		if seen[ch] {
			return herald.Errorf(herald.EInvalid, "channel_order[%d]: %s listed twice", i, ch)
		}
		seen[ch] = true
	}
	if p.QuietHours != nil {
		if p.ClearQuietHours {
			return herald.Errorf(herald.EInvalid, "quiet_hours: set and cleared at once")
		}
		s, err := parseHHMM(p.QuietHours.Start)
		if err != nil {
			return herald.Errorf(herald.EInvalid, "quiet_hours.start: %v", err)
		}
		e, err := parseHHMM(p.QuietHours.End)
		if err != nil {
			return herald.Errorf(herald.EInvalid, "quiet_hours.end: %v", err)
		}
		if s == e {
			return herald.Errorf(herald.EInvalid, "quiet_hours: start and end are both %s; clear quiet hours instead", p.QuietHours.Start)
		}
	}
	return nil
}

func knownChannels() string {
	s := make([]string, len(herald.Channels))
	for i, ch := range herald.Channels {
		s[i] = string(ch)
	}
	return strings.Join(s, ", ")
}

// Change is one field that a patch changed; From/To nil means unset.
type Change struct {
	Field    string
	From, To any
}

// Merge applies p to prefs and lists what changed in stored terms: setting
// a topic to the value its default already gives still counts, because it
// turns an implied choice into an explicit, provable one.
func (p Patch) Merge(prefs herald.Preferences) (herald.Preferences, []Change) {
	out := prefs
	out.Channels = maps.Clone(prefs.Channels)
	out.Topics = maps.Clone(prefs.Topics)
	out.ChannelOrder = slices.Clone(prefs.ChannelOrder)
	var changes []Change

	for _, ch := range slices.Sorted(maps.Keys(p.Channels)) {
		v := p.Channels[ch]
		old, set := out.Channels[ch]
		if set && old == v {
			continue
		}
		if out.Channels == nil {
			out.Channels = map[herald.Channel]bool{}
		}
		out.Channels[ch] = v
		changes = append(changes, Change{ChannelField(ch), optBool(old, set), v})
	}
	for _, name := range slices.Sorted(maps.Keys(p.Topics)) {
		v := p.Topics[name]
		old, set := out.Topics[name]
		if set && old == v {
			continue
		}
		if out.Topics == nil {
			out.Topics = map[string]bool{}
		}
		out.Topics[name] = v
		changes = append(changes, Change{TopicField(name), optBool(old, set), v})
	}
	if p.ChannelOrder != nil && !slices.Equal(p.ChannelOrder, out.ChannelOrder) {
		var from any
		if out.ChannelOrder != nil {
			from = out.ChannelOrder
		}
		var to any
		if len(p.ChannelOrder) > 0 {
			to = slices.Clone(p.ChannelOrder)
			out.ChannelOrder = slices.Clone(p.ChannelOrder)
		} else {
			out.ChannelOrder = nil
		}
		if from != nil || to != nil {
			changes = append(changes, Change{"channel_order", from, to})
		}
	}
	switch {
	case p.QuietHours != nil && (out.QuietHours == nil || *out.QuietHours != *p.QuietHours):
		var from any
		if out.QuietHours != nil {
			from = *out.QuietHours
		}
		qh := *p.QuietHours
		out.QuietHours = &qh
		changes = append(changes, Change{"quiet_hours", from, qh})
	case p.ClearQuietHours && out.QuietHours != nil:
		changes = append(changes, Change{"quiet_hours", *out.QuietHours, nil})
		out.QuietHours = nil
	}
	if p.Paused != nil && *p.Paused != out.Paused {
		changes = append(changes, Change{"paused", out.Paused, *p.Paused})
		out.Paused = *p.Paused
	}
	return out, changes
}

func optBool(v, set bool) any {
	if !set {
		return nil
	}
	return v
}
