package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Event types.
const (
	MessageSent        = "message.sent"
	MessageFailed      = "message.failed"
	MessageSuppressed  = "message.suppressed"
	MessageClicked     = "message.clicked"
	MessageReplied     = "message.replied"
	JourneyStarted     = "journey.started"
	JourneyCompleted   = "journey.completed"
	JourneyExited      = "journey.exited"
	PreferencesChanged = "preferences.changed"
)

// Types lists every event type an endpoint may subscribe to.
var Types = []string{
	MessageSent, MessageFailed, MessageSuppressed, MessageClicked, MessageReplied,
	JourneyStarted, JourneyCompleted, JourneyExited, PreferencesChanged,
}

// ValidType reports whether t is an event type.
func ValidType(t string) bool { return slices.Contains(Types, t) }

// Event is one webhook event, as posted.
type Event struct {
	// ID is unique per event and stable across retries: receivers use it
	// to drop a repeat.
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	At         time.Time `json:"created_at"`
	CustomerID string    `json:"customer_id"`
	Message    *Message  `json:"message,omitempty"`
	Journey    *Journey  `json:"journey,omitempty"`
	// Reason says why a message failed or was suppressed, or how a
	// journey ended.
	Reason string `json:"reason,omitempty"`
	// Changes lists the preference fields that changed
	// (preferences.changed), e.g. "topics.product-updates".
	Changes []string `json:"changes,omitempty"`
}

// Message references a message; the body and the address stay in herald.
type Message struct {
	ID       string `json:"id"`
	Channel  string `json:"channel,omitempty"`
	Template string `json:"template,omitempty"`
	Topic    string `json:"topic,omitempty"`
}

// Journey references a journey.
type Journey struct {
	ID       string `json:"id"`
	Workflow string `json:"workflow"`
	Step     string `json:"step,omitempty"`
}

// EventID derives an event's ID from what makes it unique (its type and
// the IDs of what it is about), so the same happening reported twice (a
// retried task) is one event.
func EventID(typ string, parts ...string) string {
	h := sha256.Sum256([]byte(typ + "\x00" + strings.Join(parts, "\x00")))
	return "evt_" + hex.EncodeToString(h[:12])
}

// SignatureHeader is the header carrying the signature.
const SignatureHeader = "Herald-Signature"

// Sign returns the Herald-Signature value for body sent at t:
// "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by secret>".
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a Herald-Signature header against body, as a receiving app
// does: the signature must match and its time be within tolerance of now.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return fmt.Errorf("webhooks: malformed %s header", SignatureHeader)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("webhooks: signature time %s is outside the tolerance", time.Unix(sec, 0).UTC().Format(time.RFC3339))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return fmt.Errorf("webhooks: signature does not match")
}
