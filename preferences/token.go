package preferences

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

// Token purposes.
const (
	PurposePreferences = "preferences"
	PurposeUnsubscribe = "unsubscribe"
	// PurposeClick is a tracked link in an email: it carries the target URL,
	// the event a click reports and the message it came in.
	PurposeClick = "click"
)

// DefaultTokenTTL is how long links in messages stay valid by default: long
// enough for an old newsletter to still unsubscribe its reader.
const DefaultTokenTTL = 90 * 24 * time.Hour

// maxTokenLen bounds the work an attacker can make Verify do.
const maxTokenLen = 2048

// tokenVersion prefixes every token so the format can change without
// old links being misread.
const tokenVersion = "h1"

// Claims are what a signed link grants: one customer, one purpose and, for
// unsubscribe, one topic (and the channel the message came by).
type Claims struct {
	CustomerID string
	Purpose    string
	Topic      string
	Channel    herald.Channel
	Expires    time.Time
	// Click tokens only: the message, the link's target and its event.
	Message string
	URL     string
	Event   string
	// Epoch is the customer's epoch when the link was signed (EpochOf):
	// erasing the customer changes it, so the link dies with the customer
	// even if the ID is reused. 0 in links signed without one.
	Epoch int64
}

// EpochOf is a customer's link epoch: the profile's creation time, which a
// new customer under an erased customer's ID does not share.
func EpochOf(c herald.Customer) int64 { return c.CreatedAt.UnixMilli() }

// CheckEpoch refuses a link signed for an earlier customer under the same
// ID. Links that carry no epoch pass (they name the customer only).
func CheckEpoch(c Claims, cust herald.Customer) error {
	if c.Epoch != 0 && c.Epoch != EpochOf(cust) {
		return herald.Errorf(herald.EInvalid, "token: signed for an earlier customer %s (erased since)", c.CustomerID)
	}
	return nil
}

type wireClaims struct {
	C  string `json:"c"`
	P  string `json:"p"`
	T  string `json:"t,omitempty"`
	Ch string `json:"ch,omitempty"`
	E  int64  `json:"e"`
	M  string `json:"m,omitempty"`
	U  string `json:"u,omitempty"`
	Ev string `json:"ev,omitempty"`
	Ep int64  `json:"ep,omitempty"`
}

// Strict: a token has exactly one spelling, so it can serve as a key.
var b64 = base64.RawURLEncoding.Strict()

// Sign returns a URL-safe token "h1.<claims>.<mac>" for c, HMAC-SHA256 with
// key. Expires is kept to the second. Sign panics on an empty key, which
// would make every token forgeable.
func Sign(key []byte, c Claims) string {
	if len(key) == 0 {
		panic("preferences.Sign: empty signing key")
	}
	payload, _ := json.Marshal(wireClaims{C: c.CustomerID, P: c.Purpose, T: c.Topic, Ch: string(c.Channel), E: c.Expires.Unix(), M: c.Message, U: c.URL, Ev: c.Event, Ep: c.Epoch})
	body := tokenVersion + "." + b64.EncodeToString(payload)
	return body + "." + b64.EncodeToString(tokenMAC(key, body))
}

func tokenMAC(key []byte, body string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("herald/token\x00"))
	m.Write([]byte(body))
	return m.Sum(nil)
}

// Verify checks token's signature with key (constant time) and its expiry
// against now. Every failure is herald.EInvalid with a message fit for logs;
// pages show customers a generic text instead.
func Verify(key []byte, token string, now time.Time) (Claims, error) {
	if len(key) == 0 {
		return Claims{}, herald.Errorf(herald.EInternal, "token: no signing key configured")
	}
	if token == "" {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: missing")
	}
	if len(token) > maxTokenLen {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: malformed (longer than %d bytes)", maxTokenLen)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[0] != tokenVersion {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: malformed (want %s.<claims>.<signature>)", tokenVersion)
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: malformed signature")
	}
	if !hmac.Equal(sig, tokenMAC(key, parts[0]+"."+parts[1])) {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: bad signature (tampered, or signed with another key)")
	}
	payload, err := b64.DecodeString(parts[1])
	if err != nil {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: malformed claims")
	}
	var w wireClaims
	if err := json.Unmarshal(payload, &w); err != nil {
		return Claims{}, herald.Errorf(herald.EInvalid, "token: malformed claims")
	}
	c := Claims{CustomerID: w.C, Purpose: w.P, Topic: w.T, Channel: herald.Channel(w.Ch), Expires: time.Unix(w.E, 0).UTC(), Message: w.M, URL: w.U, Event: w.Ev, Epoch: w.Ep}
	switch {
	case c.CustomerID == "":
		return Claims{}, herald.Errorf(herald.EInvalid, "token: no customer")
	case c.Purpose != PurposePreferences && c.Purpose != PurposeUnsubscribe && c.Purpose != PurposeClick:
		return Claims{}, herald.Errorf(herald.EInvalid, "token: unknown purpose %q", c.Purpose)
	case c.Purpose == PurposeClick && (c.URL == "" || c.Message == ""):
		return Claims{}, herald.Errorf(herald.EInvalid, "token: click without a target or message")
	case w.E <= 0:
		return Claims{}, herald.Errorf(herald.EInvalid, "token: no expiry")
	case !now.Before(c.Expires):
		return Claims{}, herald.Errorf(herald.EInvalid, "token: expired at %s", c.Expires.Format(time.RFC3339))
	}
	return c, nil
}
