package herald

import (
	"context"
	"encoding/json"
	"time"
)

// Channel is a way to reach a customer.
type Channel string

// The channels herald ships with.
const (
	ChannelEmail Channel = "email"
	ChannelSlack Channel = "slack"
)

// Channels lists every known channel in herald's default order.
var Channels = []Channel{ChannelEmail, ChannelSlack}

// Valid reports whether c names a known channel.
func (c Channel) Valid() bool {
	for _, k := range Channels {
		if c == k {
			return true
		}
	}
	return false
}

// Customer is someone herald talks to.
type Customer struct {
	ID          string         `json:"id"`
	Email       string         `json:"email,omitempty"`
	SlackUserID string         `json:"slack_user_id,omitempty"`
	Locale      string         `json:"locale,omitempty"`   // BCP 47, e.g. ja-JP
	Timezone    string         `json:"timezone,omitempty"` // IANA, e.g. Asia/Bangkok
	Attributes  map[string]any `json:"attributes,omitempty"`
	CreatedAt   time.Time      `json:"created_at,omitzero"`
	UpdatedAt   time.Time      `json:"updated_at,omitzero"`
}

// Location returns the customer's time zone, UTC when unset or unknown.
func (c Customer) Location() *time.Location {
	if c.Timezone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(c.Timezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// Topic is what a message is about. Customers opt in or out per topic unless
// the topic is Required (transactional), where only channel choice applies.
type Topic struct {
	Name     string `json:"name" yaml:"name"`
	Required bool   `json:"required,omitempty" yaml:"required"`
	// OptIn is the default for customers who never chose: true means they
	// receive the topic until they opt out.
	OptIn bool `json:"opt_in" yaml:"opt_in"`
	// Class groups topics for frequency caps (e.g. "marketing").
	Class string `json:"class,omitempty" yaml:"class"`
	// BypassQuietHours lets a required topic through quiet hours.
	BypassQuietHours bool `json:"bypass_quiet_hours,omitempty" yaml:"bypass_quiet_hours"`
	// Labels name the topic to customers and Descriptions say in a line
	// what it brings, each keyed by BCP 47 locale ("en", "ja", "zh-Hant").
	// A locale falls back as templates do (zh-Hant-TW → zh-Hant → zh → the
	// default locale); a topic without a label shows its name humanised.
	Labels       map[string]string `json:"labels,omitempty" yaml:"labels"`
	Descriptions map[string]string `json:"descriptions,omitempty" yaml:"descriptions"`
}

// QuietHours is a daily window, in the customer's time zone, in which
// non-urgent messages are deferred. Start and End are "HH:MM"; a window whose
// End is before its Start spans midnight.
type QuietHours struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

// Preferences are one customer's choices. Nil maps and a nil QuietHours mean
// "never chosen": defaults apply.
type Preferences struct {
	Channels     map[Channel]bool `json:"channels,omitempty"`
	ChannelOrder []Channel        `json:"channel_order,omitempty"`
	Topics       map[string]bool  `json:"topics,omitempty"`
	QuietHours   *QuietHours      `json:"quiet_hours,omitempty"`
	Paused       bool             `json:"paused,omitempty"`
	UpdatedAt    time.Time        `json:"updated_at,omitzero"`
}

// ChannelOn reports whether the customer left channel c switched on.
func (p Preferences) ChannelOn(c Channel) bool {
	on, set := p.Channels[c]
	return !set || on
}

// Event is something that happened to a customer.
type Event struct {
	ID             string         `json:"id"`
	CustomerID     string         `json:"customer_id"`
	Name           string         `json:"name"`
	Data           map[string]any `json:"data,omitempty"`
	IdempotencyKey string         `json:"idempotency_key,omitempty"`
	At             time.Time      `json:"at,omitzero"`
	// Actor names who sent it: an API token's name, "cli", "client".
	Actor string `json:"actor,omitempty"`
	// Sealed names the data keys whose values were kept out of the queued
	// task (secrets, links that act as credentials); the worker reads them
	// back from Redis.
	Sealed []string `json:"sealed,omitempty"`
}

// Content is a template rendered for one customer: the same words for every
// channel.
type Content struct {
	Locale    string `json:"locale"` // the locale actually used after fallback
	Subject   string `json:"subject,omitempty"`
	Preheader string `json:"preheader,omitempty"`
	Text      string `json:"text,omitempty"` // email plain-text part
	HTML      string `json:"html,omitempty"` // email HTML part
	// SlackText is Slack mrkdwn, also the notification fallback text.
	SlackText string `json:"slack_text,omitempty"`
	// SlackBlocks is a Block Kit "blocks" array, or empty for text only.
	SlackBlocks json.RawMessage `json:"slack_blocks,omitempty"`
}

// Message is one rendered piece of content for one customer on one channel,
// ready for a Sender.
type Message struct {
	// ID is the delivery's idempotency key, deterministic for (message or
	// journey step, channel): every retry of the same delivery carries the
	// same ID, and email derives its Message-ID from it.
	ID       string
	Channel  Channel
	Customer Customer
	Topic    string
	Template string
	Content  Content
	// Unsubscribe holds one-click unsubscribe targets (https URL and
	// optionally a mailto: URL); empty for required topics.
	Unsubscribe []string
	// PreferencesURL is the customer's signed preference-centre link.
	PreferencesURL string
	ReplyTo        string
	// ReplyToken, when set, is the local part of an email's Message-ID in
	// place of a digest of ID: a sealed token naming the customer and the
	// message, so that a reply finds its message without an index.
	ReplyToken string
}

// Receipt is what a provider gave back for an accepted message.
type Receipt struct {
	Channel    Channel   `json:"channel"`
	ProviderID string    `json:"provider_id,omitempty"` // SMTP Message-ID, Slack channel:ts
	Recipient  string    `json:"recipient,omitempty"`   // Slack user or DM channel; never an email address
	SentAt     time.Time `json:"sent_at"`
}

// Sender hands a message to a provider. Errors are *Error values whose code
// says whether a retry can help (ETemporary) or not (EPermanent, EInvalid).
type Sender interface {
	Send(ctx context.Context, m Message) (Receipt, error)
}

// SenderFunc adapts a function to Sender.
type SenderFunc func(ctx context.Context, m Message) (Receipt, error)

// Send calls f.
func (f SenderFunc) Send(ctx context.Context, m Message) (Receipt, error) { return f(ctx, m) }

// Middleware wraps a Sender, e.g. for metrics or rate limits.
type Middleware func(Sender) Sender

// Outcome is what happened to a delivery.
type Outcome string

// Delivery outcomes.
const (
	OutcomeSent            Outcome = "sent"
	OutcomeSuppressed      Outcome = "suppressed"
	OutcomeDeferred        Outcome = "deferred"
	OutcomeFailedTemporary Outcome = "failed-temporary"
	OutcomeFailedPermanent Outcome = "failed-permanent"
)

// Delivery is one attempt to hand a message to a provider, and its outcome.
type Delivery struct {
	ID         string    `json:"id"` // the message's idempotency key
	CustomerID string    `json:"customer_id"`
	Channel    Channel   `json:"channel"`
	Topic      string    `json:"topic,omitempty"`
	Template   string    `json:"template,omitempty"`
	Locale     string    `json:"locale,omitempty"`
	Outcome    Outcome   `json:"outcome"`
	Reason     string    `json:"reason,omitempty"` // error code or suppression reason
	Detail     string    `json:"detail,omitempty"`
	Attempt    int       `json:"attempt,omitempty"`
	ProviderID string    `json:"provider_id,omitempty"`
	At         time.Time `json:"at"`
}

// TimelineEntry is one line of a customer's timeline: support staff read it
// to answer "why did (or didn't) I get this?".
type TimelineEntry struct {
	At      time.Time      `json:"at"`
	Kind    string         `json:"kind"` // event, message, delivery, journey, preferences, consent, acknowledgement
	Summary string         `json:"summary"`
	Channel Channel        `json:"channel,omitempty"`
	Outcome Outcome        `json:"outcome,omitempty"`
	Reason  string         `json:"reason,omitempty"`
	Ref     string         `json:"ref,omitempty"` // message ID, journey ID, consent entry ID
	Data    map[string]any `json:"data,omitempty"`
	// Line holds the values Summary was written from, for a store that
	// keeps the values of the most common lines rather than their text
	// (set by internal/redisstore's line constructors). It is nil for
	// other lines and on lines read back, and never in the API's JSON.
	Line any `json:"-"`
}

// Timeline entry kinds.
const (
	KindEvent           = "event"
	KindMessage         = "message"
	KindDelivery        = "delivery"
	KindJourney         = "journey"
	KindPreferences     = "preferences"
	KindConsent         = "consent"
	KindAcknowledgement = "acknowledgement"
	KindCustomer        = "customer" // profile created or changed
)
