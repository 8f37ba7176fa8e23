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

// maxUnsubscribeURL keeps every line of List-Unsubscribe well inside the
// 998-octet limit of RFC 5322: the header is folded between its entries, so
// a line holds at most one URL.
const maxUnsubscribeURL = 400

// maxHeaderLine is the line length RFC 5322 (section 2.1.1) asks header
// fields to keep to where they can.
const maxHeaderLine = 78

// MessageID derives the Message-ID of a delivery from its idempotency key, so
// that every retry of the same delivery carries the same ID and receivers
// that deduplicate on it show the message once.
func MessageID(key, domain string) string {
	sum := sha256.Sum256([]byte(key))
	return "<" + hex.EncodeToString(sum[:])[:32] + "@" + domain + ">"
}

// maxReplyToken bounds the local part a ReplyToken may give a Message-ID.
const maxReplyToken = 200

// messageID is m's Message-ID: its ReplyToken when it has one, else
// derived from its ID.
func messageID(m herald.Message, domain string) (string, error) {
	if m.ReplyToken == "" {
		return MessageID(m.ID, domain), nil
	}
	if len(m.ReplyToken) > maxReplyToken || !dotAtom(m.ReplyToken) {
		return "", herald.Errorf(herald.EInvalid, "email: reply token is not a short dot-atom")
	}
	return "<" + m.ReplyToken + "@" + domain + ">", nil
}

// dotAtom reports whether s is RFC 5322 dot-atom-text made of letters,
// digits, '-', '_' and dots (none first, last or doubled).
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '-' || b == '_' || b == '.') {
			return false
		}
	}
	return true
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
	id, err := messageID(m, s.domain)
	if err != nil {
		return nil, "", err
	}
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
	if s.cfg.DKIM.enabled() {
		if err := s.sign(msg); err != nil {
			return nil, "", err
		}
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
// List-Unsubscribe value, folded (see foldList). go-mail writes it as given,
// so every byte is checked here: nothing outside the URL grammar, hence no
// CR, LF, space or angle bracket that could end the header or the <...>
// list.
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
	return foldList(string(gomail.HeaderListUnsubscribe), parts), oneClick, nil
}

// foldList joins the entries of a list header such as List-Unsubscribe
// ("<a>, <b>") and folds it (RFC 5322 section 2.2.3): where the next entry
// would take its line past maxHeaderLine characters, the comma ends the line
// and the entry starts the next one after a space. Unfolded, the value reads
// "<a>, <b>" again. An entry is never broken, so one longer than a line
// stays whole on a line of its own; the first always shares its line with
// the field name, as mailers commonly write it.
func foldList(name string, entries []string) string {
	var b strings.Builder
	col := len(name) + len(": ")
	for i, e := range entries {
		if i > 0 {
			b.WriteByte(',')
			col++
			// The entry, and the comma after it unless it is the last.
			need := 1 + len(e)
			if i < len(entries)-1 {
				need++
			}
			if col+need > maxHeaderLine {
				b.WriteString("\r\n")
				col = 0
			}
			b.WriteByte(' ')
			col++
		}
		b.WriteString(e)
		col += len(e)
	}
	return b.String()
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
