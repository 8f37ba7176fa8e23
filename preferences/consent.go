package preferences

import (
	"time"

	"github.com/heraldhq/herald"
)

// Actor kinds: who changed a preference.
const (
	ActorCustomer = "customer"
	ActorAPI      = "api"
	ActorOperator = "operator"
	ActorSystem   = "system"
)

// Sources: where a change came from.
const (
	SourcePreferencePage      = "preference_page"
	SourceOneClickUnsubscribe = "one_click_unsubscribe"
	SourceAPI                 = "api"
	SourceImport              = "import"
	SourceBounce              = "bounce"
	SourceErasure             = "erasure"
)

// Actor is who made a change: the customer, an API token (Name is the
// token's name, never the secret), an operator (Name is who) or herald
// itself.
type Actor struct {
	Kind string `json:"kind"`
	Name string `json:"name,omitempty"`
}

// ConsentEntry is one line of a customer's consent log: one field changed,
// when, by whom, from where, from what to what. The log is append-only; only
// erasure rewrites it, to a single entry without personal data.
type ConsentEntry struct {
	ID         string    `json:"id"`
	At         time.Time `json:"at"`
	CustomerID string    `json:"customer_id"`
	Actor      Actor     `json:"actor"`
	Source     string    `json:"source"`
	// Field is the path of what changed: "channels.email",
	// "topics.product-updates", "channel_order", "quiet_hours", "paused",
	// or "*" for erasure.
	Field string `json:"field"`
	// From and To are the stored values before and after, as JSON decodes
	// them (bool, []any, map[string]any); nil means never set.
	From any `json:"from"`
	To   any `json:"to"`
}

// TopicField is the consent-log field that records a topic choice, the
// one to pass to Store.LastConsent when a send was suppressed for the topic.
func TopicField(topic string) string { return "topics." + topic }

// ChannelField is the consent-log field that records a channel choice.
func ChannelField(ch herald.Channel) string { return "channels." + string(ch) }
