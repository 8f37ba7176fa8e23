package preferences

import (
	"fmt"
	"slices"
	"time"

	"github.com/heraldhq/herald"
)

// Reasons a Decision gives for sending nothing now, and reasons a channel
// was left out. They are the words the timeline and metrics use.
const (
	ReasonOptedOutChannel = "opted_out_channel"
	ReasonOptedOutTopic   = "opted_out_topic"
	ReasonNotOptedIn      = "not_opted_in"
	ReasonPaused          = "paused"
	ReasonSuppressed      = "suppressed"
	ReasonNoAddress       = "no_address"
	ReasonUnknownChannel  = "unknown_channel"
	ReasonQuietHours      = "quiet_hours"
	ReasonFrequencyCapped = "frequency_capped"
	ReasonUnknownTopic    = "unknown_topic"
)

// Cap actions.
const (
	CapDefer = "defer"
	CapDrop  = "drop"
)

// Cap limits how many messages of one topic class a customer receives in a
// sliding window, e.g. at most 3 "marketing" messages per 7 days.
type Cap struct {
	Class  string        `json:"class" yaml:"class"`
	Max    int           `json:"max" yaml:"max"`
	Per    time.Duration `json:"per" yaml:"per"`
	Action string        `json:"action" yaml:"action"` // CapDefer (default) or CapDrop
}

// Validate says what is wrong with c.
func (c Cap) Validate() error {
	switch {
	case c.Class == "":
		return herald.Errorf(herald.EInvalid, "cap: class is empty")
	case c.Max < 1:
		return herald.Errorf(herald.EInvalid, "cap %s: max must be at least 1, got %d", c.Class, c.Max)
	case c.Per <= 0:
		return herald.Errorf(herald.EInvalid, "cap %s: per must be a positive duration, got %s", c.Class, c.Per)
	case c.Action != "" && c.Action != CapDefer && c.Action != CapDrop:
		return herald.Errorf(herald.EInvalid, "cap %s: action must be %q or %q, got %q", c.Class, CapDefer, CapDrop, c.Action)
	}
	return nil
}

// Policy is the contact policy: the known topics, the frequency caps and the
// channels tried when a workflow or message names none.
type Policy struct {
	Topics map[string]herald.Topic
	Caps   []Cap
	// DefaultChannels is used when Input.Candidates is empty; when it is
	// empty too, every channel in herald.Channels is a candidate.
	DefaultChannels []herald.Channel
}

// Validate checks the caps; Decide ignores a cap that would not pass.
func (p Policy) Validate() error {
	for _, c := range p.Caps {
		if err := c.Validate(); err != nil {
			return err
		}
	}
	for _, ch := range p.DefaultChannels {
		if !ch.Valid() {
			return herald.Errorf(herald.EInvalid, "policy: unknown default channel %q", ch)
		}
	}
	return nil
}

// Window is the longest cap window for class: the span of sends the caller
// must load into Input.RecentSends. Zero when no cap applies to class.
func (p Policy) Window(class string) time.Duration {
	var w time.Duration
	for _, c := range p.Caps {
		if c.Class == class && c.Validate() == nil && c.Per > w {
			w = c.Per
		}
	}
	return w
}

// Input is everything Decide needs to know, gathered by the caller.
type Input struct {
	Customer herald.Customer
	Prefs    herald.Preferences
	Topic    string
	// Candidates are the workflow's or message's channels in its order;
	// empty means the policy's default channels.
	Candidates []herald.Channel
	Now        time.Time
	// RecentSends are the sends to this customer in the topic's cap class
	// within the longest window (Policy.Window).
	RecentSends []time.Time
	// Suppressed marks channels whose address for this customer is on the
	// suppression list.
	Suppressed map[herald.Channel]bool
}

// Decision says whether, where and when a message may go.
type Decision struct {
	// Channels are the channels allowed now, best first: the customer's
	// channel_order, then the candidates' order. Empty when Reason is set.
	Channels []herald.Channel
	// Reason is empty when Channels may be used now.
	Reason string
	// NotBefore is when to decide again (quiet_hours, frequency_capped
	// with defer).
	NotBefore time.Time
	// Drop is true when a cap with action drop was hit: do not retry.
	Drop bool
	// Skipped are the candidates left out, with why: opted_out_channel,
	// suppressed, no_address or unknown_channel.
	Skipped map[herald.Channel]string
}

// Sending reports whether the decision lets the message go now.
func (d Decision) Sending() bool { return d.Reason == "" && len(d.Channels) > 0 }

// Decide applies the contact policy. It reads no clock and no store, so the
// caller decides again with fresh input right before every provider call.
//
// The checks run in this order, the first that fails gives the reason:
//
//  1. unknown_topic: the topic is not configured; nothing is sent, because a
//     typo must not bypass an opt-out.
//  2. paused: the customer paused everything. Required (transactional)
//     topics still go: a paused customer still gets receipts and security
//     notices.
//  3. opted_out_topic: the customer said no to the topic (a consent entry
//     records it); not_opted_in: the topic is off by default (opt_in:
//     false) and the customer never said yes. Required topics ignore topic
//     choices.
//  4. channels: a channel switched off, with no address (email needs an
//     email; Slack needs a Slack user ID or an email to look one up) or
//     suppressed is skipped, for required topics too. With none left the
//     reason is the most telling skip: opted_out_channel, then suppressed,
//     then no_address, then unknown_channel.
//  5. quiet_hours: in the customer's zone, unless the topic is required and
//     BypassQuietHours. NotBefore is the end of the window; caps are looked
//     at again then, when the message would really go.
//  6. frequency_capped: for each cap on the topic's class, sends after
//     Now-Per are counted; at Max or more the message waits until enough of
//     them leave the window (NotBefore), or is dropped when any hit cap says
//     drop. Required topics are never capped.
func (p Policy) Decide(in Input) Decision {
	topic, ok := p.Topics[in.Topic]
	if !ok {
		return Decision{Reason: ReasonUnknownTopic}
	}
	if !topic.Required {
		if in.Prefs.Paused {
			return Decision{Reason: ReasonPaused}
		}
		if !TopicOn(topic, in.Prefs) {
			if _, chose := in.Prefs.Topics[topic.Name]; !chose {
				return Decision{Reason: ReasonNotOptedIn}
			}
			return Decision{Reason: ReasonOptedOutTopic}
		}
	}

	channels, skipped := p.channels(in)
	if len(channels) == 0 {
		return Decision{Reason: mostTelling(skipped), Skipped: skipped}
	}

	if in.Prefs.QuietHours != nil && !(topic.Required && topic.BypassQuietHours) {
		if quiet, until := NextAllowed(*in.Prefs.QuietHours, in.Customer.Location(), in.Now); quiet {
			return Decision{Reason: ReasonQuietHours, NotBefore: until, Skipped: skipped}
		}
	}

	if !topic.Required && topic.Class != "" {
		if notBefore, drop, capped := p.capped(topic.Class, in.RecentSends, in.Now); capped {
			d := Decision{Reason: ReasonFrequencyCapped, Drop: drop, Skipped: skipped}
			if !drop {
				d.NotBefore = notBefore
			}
			return d
		}
	}
	return Decision{Channels: channels, Skipped: skipped}
}

// TopicOn reports whether prefs let topic through, before channels, quiet
// hours and caps: required topics always, others by the customer's explicit
// choice or else the topic's default.
func TopicOn(topic herald.Topic, prefs herald.Preferences) bool {
	if topic.Required {
		return true
	}
	if on, set := prefs.Topics[topic.Name]; set {
		return on
	}
	return topic.OptIn
}

// channels orders the candidates (customer's order first) and filters them.
func (p Policy) channels(in Input) ([]herald.Channel, map[herald.Channel]string) {
	cands := in.Candidates
	if len(cands) == 0 {
		cands = p.DefaultChannels
	}
	if len(cands) == 0 {
		cands = herald.Channels
	}
	ordered := make([]herald.Channel, 0, len(cands))
	for _, ch := range in.Prefs.ChannelOrder {
		if slices.Contains(cands, ch) && !slices.Contains(ordered, ch) {
			ordered = append(ordered, ch)
		}
	}
	for _, ch := range cands {
		if !slices.Contains(ordered, ch) {
			ordered = append(ordered, ch)
		}
	}

	var allowed []herald.Channel
	skipped := map[herald.Channel]string{}
	for _, ch := range ordered {
		switch {
		case !ch.Valid():
			skipped[ch] = ReasonUnknownChannel
		case !in.Prefs.ChannelOn(ch):
			skipped[ch] = ReasonOptedOutChannel
		case !hasAddress(in.Customer, ch):
			skipped[ch] = ReasonNoAddress
		case in.Suppressed[ch]:
			skipped[ch] = ReasonSuppressed
		default:
			allowed = append(allowed, ch)
		}
	}
	if len(skipped) == 0 {
		skipped = nil
	}
	return allowed, skipped
}

func hasAddress(c herald.Customer, ch herald.Channel) bool {
	switch ch {
	case herald.ChannelEmail:
		return c.Email != ""
	case herald.ChannelSlack:
		return c.SlackUserID != "" || c.Email != ""
	}
	return false
}

func mostTelling(skipped map[herald.Channel]string) string {
	for _, r := range []string{ReasonOptedOutChannel, ReasonSuppressed, ReasonNoAddress, ReasonUnknownChannel} {
		for _, got := range skipped {
			if got == r {
				return r
			}
		}
	}
	// No candidates at all: nothing the customer allowed.
	return ReasonOptedOutChannel
}

// capped checks every valid cap on class. A drop cap that is hit wins;
// otherwise the latest NotBefore among the hit caps.
func (p Policy) capped(class string, sends []time.Time, now time.Time) (notBefore time.Time, drop, capped bool) {
	for _, c := range p.Caps {
		if c.Class != class || c.Validate() != nil {
			continue
		}
		from := now.Add(-c.Per)
		var counted []time.Time
		for _, s := range sends {
			if s.After(from) {
				counted = append(counted, s)
			}
		}
		if len(counted) < c.Max {
			continue
		}
		capped = true
		if c.Action == CapDrop {
			drop = true
			continue
		}
		// The window must shed len-Max+1 sends before one more fits.
		slices.SortFunc(counted, time.Time.Compare)
		nb := counted[len(counted)-c.Max].Add(c.Per)
		if nb.After(notBefore) {
			notBefore = nb
		}
	}
	return notBefore, drop, capped
}

// String renders a decision for logs and test failures.
func (d Decision) String() string {
	if d.Reason == "" {
		return fmt.Sprintf("send via %v", d.Channels)
	}
	s := d.Reason
	if !d.NotBefore.IsZero() {
		s += " until " + d.NotBefore.Format(time.RFC3339)
	}
	if d.Drop {
		s += " (drop)"
	}
	return s
}
