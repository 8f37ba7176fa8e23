package email

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	gomail "github.com/wneessen/go-mail"
)

// Headers herald adds to every email. They name the topic and template so a
// mailbox provider's feedback loop or a support agent can tell messages
// apart; they never carry personal data.
const (
	HeaderTopic    = "X-Herald-Topic"
	HeaderTemplate = "X-Herald-Template"
)

// maxUnsubscribeURL keeps List-Unsubscribe well inside the 998-octet line
// limit of RFC 5322 even with two URLs.
const maxUnsubscribeURL = 400

// MessageID derives the Message-ID of a delivery from its idempotency key, so
// that every retry of the same delivery carries the same ID and receivers
// that deduplicate on it show the message once.
func MessageID(key, domain string) string {
	sum := sha256.Sum256([]byte(key))
	return "<" + hex.EncodeToString(sum[:])[:32] + "@" + domain + ">"
}

// build turns m into a go-mail message, or an EInvalid error naming the bad
// field (never its value: it may be personal data).
func (s *Sender) build(m herald.Message, now time.Time) (*gomail.Msg, string, error) {
	to, err := recipient(m.Customer.Email)
	if err != nil {
		return nil, "", err
	}
	if m.ID == "" {
		return nil, "", herald.Errorf(herald.EInvalid, "email: message has no ID")
	}
	// Subject, topic and template come from templates and workflow files that
	// may embed customer data. A line break there is refused rather than
	// stripped: a silently rewritten header hides the template bug, and
	// EInvalid keeps the message visible in the archived set.
	for _, f := range []struct{ name, value string }{
		{"subject", m.Content.Subject},
		{"topic", m.Topic},
		{"template", m.Template},
		{"reply-to", m.ReplyTo},
	} {
		if strings.ContainsAny(f.value, "\r\n") {
			return nil, "", herald.Errorf(herald.EInvalid, "email: %s contains a line break", f.name)
		}
	}
	if m.Content.Text == "" && m.Content.HTML == "" {
		return nil, "", herald.Errorf(herald.EInvalid, "email: message has no body")
	}
	unsub, oneClick, err := unsubscribeHeader(m.Unsubscribe)
	if err != nil {
		return nil, "", err
	}

	msg := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
	msg.FromMailAddress(s.from)
	msg.ToMailAddress(to)
	if m.ReplyTo != "" {
		rt, err := mail.ParseAddress(m.ReplyTo)
		if err != nil {
			return nil, "", herald.Errorf(herald.EInvalid, "email: reply-to is not an address")
		}
		msg.ReplyToMailAddress(rt)
	}
	msg.Subject(m.Content.Subject)
	id := MessageID(m.ID, s.domain)
	msg.SetMessageIDWithValue(strings.Trim(id, "<>"))
	msg.SetDateWithValue(now)
	if m.Topic != "" {
		msg.SetGenHeader(HeaderTopic, m.Topic)
	}
	if m.Template != "" {
		msg.SetGenHeader(HeaderTemplate, m.Template)
	}
	if unsub != "" {
		msg.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribe, unsub)
		if oneClick {
			msg.SetGenHeaderPreformatted(gomail.HeaderListUnsubscribePost, "List-Unsubscribe=One-Click")
		}
	}

	switch {
	case m.Content.HTML == "":
		msg.SetBodyString(gomail.TypeTextPlain, m.Content.Text)
	case m.Content.Text == "":
		msg.SetBodyString(gomail.TypeTextHTML, m.Content.HTML)
	default:
		msg.SetBodyString(gomail.TypeTextPlain, m.Content.Text)
		msg.AddAlternativeString(gomail.TypeTextHTML, m.Content.HTML)
	}
	return msg, id, nil
}

// recipient validates the customer's address. Only a bare address is
// accepted: a display name would come from customer data and end up in a
// header.
func recipient(addr string) (*mail.Address, error) {
	if addr == "" {
		return nil, herald.Errorf(herald.EInvalid, "email: customer has no email address")
	}
	if strings.ContainsAny(addr, "\r\n<>\" ") {
		return nil, herald.Errorf(herald.EInvalid, "email: customer email address is malformed")
	}
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Address != addr || a.Name != "" {
		return nil, herald.Errorf(herald.EInvalid, "email: customer email address is malformed")
	}
	return a, nil
}

// unsubscribeHeader validates the unsubscribe targets and formats the
// List-Unsubscribe value. go-mail writes it as given, so every byte is
// checked here: nothing outside the URL grammar, hence no CR, LF, space or
// angle bracket that could end the header or the <...> list.
func unsubscribeHeader(urls []string) (value string, oneClick bool, err error) {
	parts := make([]string, 0, len(urls))
	for _, raw := range urls {
		if raw == "" {
			continue
		}
		if len(raw) > maxUnsubscribeURL {
			return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe URL longer than %d bytes", maxUnsubscribeURL)
		}
		for i := 0; i < len(raw); i++ {
			if !urlByte(raw[i]) {
				return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe URL has a character outside the URL grammar at byte %d", i)
			}
		}
		u, err := url.Parse(raw)
		if err != nil {
			return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe URL does not parse")
		}
		switch u.Scheme {
		case "https":
			if u.Host == "" {
				return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe URL has no host")
			}
			oneClick = true
		case "http":
			// Only for `herald dev`, whose HTTP server has no certificate.
			if !loopbackHost(u.Hostname()) {
				return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe URL must be https (http only for localhost)")
			}
		case "mailto":
			if u.Opaque == "" || !strings.Contains(u.Opaque, "@") {
				return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe mailto URL has no address")
			}
		default:
			return "", false, herald.Errorf(herald.EInvalid, "email: unsubscribe URL scheme %q: want https or mailto", u.Scheme)
		}
		parts = append(parts, "<"+raw+">")
	}
	return strings.Join(parts, ", "), oneClick, nil
}

// urlByte reports whether b may appear in a URI (RFC 3986: unreserved,
// reserved and '%').
func urlByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("-._~:/?#[]@!$&'()*+,;=%", b) >= 0
}

func loopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
