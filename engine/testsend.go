package engine

import (
	"context"
	"encoding/json"
	"net/mail"
	"regexp"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/jsonerr"
	"github.com/heraldhq/herald/internal/redisstore"
)

// TestSendRequest asks for a template to be sent to an author's own
// address or Slack user, with the template's sample data or Data.
type TestSendRequest struct {
	To       string
	Channel  herald.Channel // default email, or slack when To is a Slack user ID
	Template string
	Locale   string
	// Data replaces the sample's data when set; Customer fields too.
	Data     map[string]any
	Customer map[string]any
	Actor    string
}

// TestSubjectPrefix marks a test send's subject (and Slack text).
const TestSubjectPrefix = "[test] "

var slackUserRe = regexp.MustCompile(`^[UW][A-Z0-9]{2,20}$`)

// TestSend renders a template and sends it straight to req.To: no customer
// record, no consent check or log, no ledger; the test-send log records it.
// A malformed address, unknown template or channel is an EInvalid error;
// a provider's refusal comes back as its error, after being logged.
func (e *Engine) TestSend(ctx context.Context, req TestSendRequest) (redisstore.TestSend, error) {
	req.To = strings.TrimSpace(req.To)
	if req.Channel == "" {
		req.Channel = herald.ChannelEmail
		if slackUserRe.MatchString(req.To) {
			req.Channel = herald.ChannelSlack
		}
	}
	cust := herald.Customer{ID: "test-send"}
	switch req.Channel {
	case herald.ChannelEmail:
		if !plainAddress(req.To) {
			return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "to: %q is not an email address (want a bare address such as ada@example.com)", req.To)
		}
	case herald.ChannelSlack:
		if !slackUserRe.MatchString(req.To) && !plainAddress(req.To) {
			return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "to: %q is neither a Slack user ID (U024BE7LH) nor an email address of a Slack user", req.To)
		}
	default:
		return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "channel: %q is not a channel (want email or slack)", req.Channel)
	}
	sender, ok := e.opt.Senders[req.Channel]
	if !ok {
		return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "channel: no sender is configured for %s", req.Channel)
	}
	tset := e.Templates()
	if !tset.Has(req.Template) {
		return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "template: unknown template %q", req.Template)
	}
	data, _ := tset.Sample(req.Template, req.Locale)
	if req.Data != nil {
		data.Data = req.Data
	}
	if req.Customer != nil {
		b, _ := json.Marshal(req.Customer)
		var c herald.Customer
		if err := json.Unmarshal(b, &c); err != nil {
			return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "customer: %s", jsonerr.Explain(err, nil))
		}
		c.Attributes = req.Customer
		data.Customer = c
	}
	cust = data.Customer
	cust.ID = "test-send"
	cust.Locale = req.Locale
	cust.Email, cust.SlackUserID = "", ""
	switch {
	case req.Channel == herald.ChannelEmail, !slackUserRe.MatchString(req.To):
		cust.Email = req.To
	default:
		cust.SlackUserID = req.To
	}
	data.Customer = cust
	data.MessageID = redisstore.NewID("t_")
	data.Now = e.now()
	content, err := tset.RenderChannel(req.Template, req.Locale, data, req.Channel)
	if err != nil {
		return redisstore.TestSend{}, herald.Errorf(herald.EInvalid, "render %s (%s): %v", req.Template, req.Locale, err)
	}
	markTest(&content)
	rec := redisstore.TestSend{
		ID: data.MessageID, At: e.now().UTC(), Actor: req.Actor, To: req.To, Channel: req.Channel,
		Template: req.Template, Locale: content.Locale, Subject: content.Subject,
	}
	sctx, cancel := context.WithTimeout(ctx, e.opt.DeliveryTimeout)
	receipt, sendErr := sender.Send(sctx, herald.Message{
		ID: data.MessageID, Channel: req.Channel, Customer: cust, Template: req.Template, Content: content,
		PreferencesURL: data.Links.Preferences, ReplyTo: e.opt.ReplyTo,
	})
	cancel()
	if sendErr != nil {
		rec.Outcome = herald.OutcomeFailedPermanent
		if herald.IsTemporary(sendErr) {
			rec.Outcome = herald.OutcomeFailedTemporary
		}
		rec.Error = herald.ErrorMessage(sendErr)
	} else {
		rec.Outcome, rec.ProviderID = herald.OutcomeSent, receipt.ProviderID
	}
	if err := e.st.LogTestSend(ctx, rec); err != nil {
		e.log.Error("test-send log", "err", err)
	}
	e.log.Info("test send", "id", rec.ID, "template", req.Template, "channel", req.Channel, "outcome", rec.Outcome, "actor", req.Actor)
	return rec, sendErr
}

// markTest prefixes the subject and the Slack message with [test], so a
// test can never be mistaken for the real thing.
func markTest(c *herald.Content) {
	if c.Subject != "" {
		c.Subject = TestSubjectPrefix + c.Subject
	}
	if c.SlackText != "" {
		c.SlackText = TestSubjectPrefix + c.SlackText
	}
	if len(c.SlackBlocks) > 0 {
		var blocks []json.RawMessage
		if json.Unmarshal(c.SlackBlocks, &blocks) == nil {
			note, _ := json.Marshal(map[string]any{"type": "context", "elements": []any{
				map[string]any{"type": "mrkdwn", "text": strings.TrimSpace(TestSubjectPrefix) + " test send"},
			}})
			if b, err := json.Marshal(append([]json.RawMessage{note}, blocks...)); err == nil {
				c.SlackBlocks = b
			}
		}
	}
}

// plainAddress accepts a bare email address (no display name) that
// net/mail reads back as itself.
func plainAddress(v string) bool {
	if v == "" || len(v) > 254 || strings.ContainsAny(v, " \t\r\n<>") {
		return false
	}
	a, err := mail.ParseAddress(v)
	if err != nil || a.Name != "" || a.Address != v {
		return false
	}
	_, domain, _ := strings.Cut(v, "@")
	return strings.Contains(domain, ".")
}

// TestSends returns the newest lines of the test-send log.
func (e *Engine) TestSends(ctx context.Context, limit int) ([]redisstore.TestSend, error) {
	return e.st.TestSends(ctx, limit)
}
