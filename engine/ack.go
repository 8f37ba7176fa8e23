package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/msgid"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
)

// Acknowledgements: a customer pressing a Slack button, clicking a tracked
// email link or replying to an email. Each becomes a herald:interaction
// task that emits the event(s) journeys wait for, writes an acknowledgement
// to the timeline and, for Slack, shows the choice in the message.

// TypeInteraction is the task type of an acknowledgement.
const TypeInteraction = "herald:interaction"

// Events herald emits on acknowledgements, besides a button's or link's own.
const (
	EventClicked = "message.clicked" // any tracked email link
	EventReplied = "message.replied" // an email reply
)

// Kinds of acknowledgement.
const (
	AckButton = "button" // a Slack button
	AckClick  = "click"  // a tracked email link
	AckReply  = "reply"  // an email reply
)

const (
	// sentTTL is how long a delivered message can be acknowledged: as long
	// as its ledger record lasts.
	sentTTL = redisstore.LedgerTTL
	// ClickTTL is how long a tracked link stays valid: old emails keep
	// working links long after their journey is over.
	ClickTTL = 365 * 24 * time.Hour
	// ackTTL bounds how long an acknowledgement ID is remembered, so a
	// webhook retried or a Slack request replayed counts once.
	ackTTL = 24 * time.Hour
	// maxTracked keeps a tracked link well under the token size limit.
	maxTracked = 1200
	// ackSettle bounds how long a button press or a reply waits for the
	// record of the message it names: a worker sends, then records, and a
	// quick press can come in between. Slack wants its answer within 3 s.
	ackSettle = 1500 * time.Millisecond
)

// MessageUpdater changes a Slack message posted earlier (*slack.Sender).
type MessageUpdater interface {
	Update(ctx context.Context, channel, ts, text string, blocks json.RawMessage) error
}

// Sent is what herald remembers of a delivered message.
type Sent struct {
	MessageID  string
	CustomerID string
	WorkflowID string
	JourneyID  string
	StepID     string
	Topic      string
	Template   string
	Locale     string
	// Providers holds the provider's ID per channel it was sent by.
	Providers map[herald.Channel]string
}

// SentMessage returns the delivered Slack message with this ID, as a
// button press names it (ENotFound when unknown or older than its
// retention).
//
// A press that comes in between the post and its record waits for the
// record, for up to ackSettle; still in progress then, it is a temporary
// error (Slack shows the press failed, and it can be made again).
func (e *Engine) SentMessage(ctx context.Context, messageID string) (Sent, error) {
	return settle(ctx, func() (Sent, pending, error) {
		cust, err := e.st.MessageCustomer(ctx, messageID)
		if herald.ErrorCode(err) == herald.ENotFound {
			return Sent{}, unknown, err // the index is written with the record
		}
		if err != nil {
			return Sent{}, settled, err
		}
		return e.sentOrSending(ctx, cust, messageID)
	})
}

// SentEmail returns the delivered message behind the first of these email
// Message-IDs that herald sent (a reply's In-Reply-To and References).
//
// A Message-ID herald sealed names its customer and message; one from
// before sealing (or with IDs too long to seal) is found through the reply
// index. Either way the message's email ledger record must still exist: an
// erased customer's or an expired message's reply matches nothing.
func (e *Engine) SentEmail(ctx context.Context, rfcIDs ...string) (Sent, error) {
	for _, id := range rfcIDs {
		var cust, msg string
		if msgid.IsSealed(id) {
			var ok bool
			if cust, msg, ok = e.replyIDs.Open(id); !ok {
				continue // altered, or sealed with a key no longer configured
			}
		} else {
			var err error
			cust, msg, err = e.st.EmailMessage(ctx, id)
			if herald.ErrorCode(err) == herald.ENotFound {
				continue
			}
			if err != nil {
				return Sent{}, err
			}
		}
		s, err := settle(ctx, func() (Sent, pending, error) { return e.sentOrSending(ctx, cust, msg) })
		if herald.ErrorCode(err) == herald.ENotFound {
			continue
		}
		if err != nil {
			return Sent{}, err
		}
		if _, ok := s.Providers[herald.ChannelEmail]; !ok {
			continue
		}
		return s, nil
	}
	return Sent{}, herald.Errorf(herald.ENotFound, "no email herald sent matches")
}

// CheckSlackUser refuses a Slack user who is not the customer: a button
// pressed by someone else must not act for them. A customer reached by
// email lookup has no stored Slack ID; the conversation check stands alone.
func (e *Engine) CheckSlackUser(ctx context.Context, customerID, slackUserID string) error {
	c, err := e.st.Customer(ctx, customerID)
	if err != nil {
		return err
	}
	if c.SlackUserID != "" && c.SlackUserID != slackUserID {
		return herald.Errorf(herald.EInvalid, "slack interaction: user %s is not the message's customer", slackUserID)
	}
	return nil
}

// SentTo returns the customer's delivered message with this ID, on every
// channel it went by (ENotFound when none).
func (e *Engine) SentTo(ctx context.Context, customerID, messageID string) (Sent, error) {
	return e.sent(ctx, customerID, messageID)
}

func (e *Engine) sent(ctx context.Context, customerID, messageID string) (Sent, error) {
	s, _, err := e.sentOrSending(ctx, customerID, messageID)
	return s, err
}

// sentOrSending is sent that also says, when the message has no record,
// whether one of its deliveries is in progress: its record may be on the
// way.
func (e *Engine) sentOrSending(ctx context.Context, customerID, messageID string) (Sent, pending, error) {
	recs, inFlight, err := e.st.SentOrSending(ctx, customerID, messageID, herald.Channels)
	if err != nil {
		return Sent{}, settled, err
	}
	s := Sent{MessageID: messageID, CustomerID: customerID, Providers: map[herald.Channel]string{}}
	for _, ch := range herald.Channels {
		r, ok := recs[ch]
		if !ok {
			continue
		}
		s.WorkflowID, s.JourneyID, s.StepID = r.Workflow, r.Journey, r.Step
		s.Topic, s.Template, s.Locale = r.Topic, r.Template, r.Locale
		s.Providers[ch] = r.ProviderID
	}
	if len(s.Providers) == 0 {
		p := settled
		if inFlight {
			p = sending
		}
		return Sent{}, p, herald.Errorf(herald.ENotFound, "no delivered message %q", messageID)
	}
	return s, settled, nil
}

// pending says why a message an acknowledgement names has no record yet.
type pending int

const (
	settled pending = iota // it has one, or it has none and none is on the way
	unknown                // none, and no telling whether one is on the way
	sending                // none, and one of its deliveries is in progress
)

// settle calls find again while the message is pending, every 20 ms for
// up to ackSettle. A message still being sent then is a temporary error:
// its record is late, not missing.
func settle(ctx context.Context, find func() (Sent, pending, error)) (Sent, error) {
	deadline := time.Now().Add(ackSettle)
	for {
		s, p, err := find()
		switch {
		case p == settled:
			return s, err
		case !time.Now().Before(deadline):
			if p == sending {
				return Sent{}, herald.Temporary(err, "message still being sent", 0)
			}
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Ack is one acknowledgement of a message by its customer.
type Ack struct {
	// ID identifies the acknowledgement: the same ID counts once (a retried
	// webhook, a replayed request). Derive it from the provider's own ID.
	ID         string         `json:"id"`
	Kind       string         `json:"kind"` // AckButton, AckClick or AckReply
	CustomerID string         `json:"customer_id"`
	MessageID  string         `json:"message_id"`
	Channel    herald.Channel `json:"channel"`
	// Event is the button's or link's event; for replies, EventReplied.
	Event string `json:"event,omitempty"`
	Label string `json:"label,omitempty"` // the button's text as shown
	URL   string `json:"url,omitempty"`   // a tracked link's target
	// SlackChannel and SlackTS name the message to update after a button.
	SlackChannel string    `json:"slack_channel,omitempty"`
	SlackTS      string    `json:"slack_ts,omitempty"`
	At           time.Time `json:"at,omitzero"`
}

// SlackUpdate is what a Slack message becomes once a button is pressed.
type SlackUpdate struct {
	Text   string          `json:"text"`
	Blocks json.RawMessage `json:"blocks"`
}

// Acknowledge enqueues an acknowledgement. An ID seen within 24 hours is
// accepted and not enqueued again. upd, for Slack buttons, is kept in Redis
// next to the customer's data (task payloads carry no message bodies).
func (e *Engine) Acknowledge(ctx context.Context, a Ack, upd *SlackUpdate) error {
	if err := wire.Check("id", a.ID, "kind", a.Kind, "customer_id", a.CustomerID, "message_id", a.MessageID, "channel", string(a.Channel)); err != nil {
		return err
	}
	if err := redisstore.ValidID(a.CustomerID); err != nil {
		return err
	}
	if a.Event != "" {
		if err := redisstore.ValidEventName(a.Event); err != nil {
			return err
		}
	}
	if a.At.IsZero() {
		a.At = e.now().UTC()
	}
	first, err := e.st.MarkAckSeen(ctx, a.CustomerID, a.ID, ackTTL)
	if err != nil {
		return err
	}
	if !first {
		e.log.Info("acknowledgement already recorded", "customer", a.CustomerID, "message", a.MessageID, "kind", a.Kind)
		return nil
	}
	if upd != nil {
		b, _ := json.Marshal(upd)
		if err := e.st.SaveAckUpdate(ctx, a.CustomerID, a.ID, b, time.Hour); err != nil {
			e.forgetAckSeen(context.WithoutCancel(ctx), a, a.ID)
			return err
		}
	}
	if err := e.enqueue(ctx, asynq.NewTask(TypeInteraction, wire.Encode(a)), asynq.TaskID("a:"+a.ID), asynq.Queue(wire.QueueDefault)); err != nil {
		e.forgetAckSeen(context.WithoutCancel(ctx), a, a.ID)
		return err
	}
	return nil
}

// forgetAckSeen undoes the mark that acknowledgement a (under seen) was
// recorded, after what was to record it failed, so that its retry is not
// taken for a repeat. If that fails too, the retry is ignored until the
// mark expires: say so.
func (e *Engine) forgetAckSeen(ctx context.Context, a Ack, seen string) {
	if err := e.st.ForgetAckSeen(ctx, a.CustomerID, seen); err != nil {
		e.log.Error("acknowledgement not recorded, and its retries will be taken for repeats until the mark expires",
			"customer", a.CustomerID, "message", a.MessageID, "kind", a.Kind, "expires_in", ackTTL, "err", err)
	}
}

// handleAck carries out an acknowledgement. Every step is safe to repeat,
// so a retried task does no harm: events have deterministic IDs, the
// timeline entry is written once, an opt-out is a no-op the second time.
func (e *Engine) handleAck(ctx context.Context, t *asynq.Task) error {
	var a Ack
	if err := wire.Decode(t.Payload(), &a); err != nil {
		return skip(err)
	}
	if err := wire.Check("id", a.ID, "customer_id", a.CustomerID, "message_id", a.MessageID); err != nil {
		return skip(err)
	}
	if _, err := e.st.Customer(ctx, a.CustomerID); err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			return skip(err) // erased since
		}
		return err
	}
	m, p, err := e.sentOrSending(ctx, a.CustomerID, a.MessageID)
	if err != nil && herald.ErrorCode(err) != herald.ENotFound {
		return err
	}
	if p == sending {
		// Acknowledged between its send and its record (a link followed
		// at once): what the message was is on the way.
		return &waitError{reason: "message " + a.MessageID + " is being recorded", after: time.Second}
	}
	if err != nil && a.Kind == AckButton {
		return skip(err) // a button needs its message to know what it means
	}
	optOut := false
	if a.Kind == AckButton {
		act, ok := e.buttonFor(m, a.Event)
		if !ok {
			return skip(herald.Errorf(herald.EInvalid, "button %q is not an action of template %s", a.Event, m.Template))
		}
		optOut = act.OptOut
		if a.Label == "" {
			a.Label = act.Label
		}
	}

	data := map[string]any{"channel": string(a.Channel), "message": a.MessageID}
	for k, v := range map[string]string{"workflow": m.WorkflowID, "journey": m.JourneyID, "step": m.StepID, "url": a.URL} {
		if v != "" {
			data[k] = v
		}
	}
	var names []string
	switch a.Kind {
	case AckClick:
		if a.Event != "" && a.Event != EventClicked {
			names = append(names, a.Event)
		}
		names = append(names, EventClicked)
	case AckReply:
		names = append(names, EventReplied)
	default:
		names = append(names, a.Event)
	}
	for _, name := range names {
		ev := herald.Event{
			ID: redisstore.KeyedID("e_", a.CustomerID, "ack\x00"+a.ID+"\x00"+name), CustomerID: a.CustomerID,
			Name: name, Data: data, At: a.At,
		}
		if err := e.enqueue(ctx, asynq.NewTask(wire.TypeEvent, wire.Encode(ev)), asynq.TaskID("e:"+ev.ID), asynq.Queue(wire.QueueDefault)); err != nil {
			return err
		}
	}

	if first, err := e.st.MarkAckSeen(ctx, a.CustomerID, a.ID+":timeline", ackTTL); err != nil {
		return err
	} else if first {
		entry := herald.TimelineEntry{
			Kind: herald.KindAcknowledgement, Channel: a.Channel, Ref: a.MessageID,
			Summary: ackSummary(a, m),
			Data:    map[string]any{"message": a.MessageID, "action": strings.Join(names, ", "), "kind": a.Kind},
		}
		for k, v := range data {
			if _, ok := entry.Data[k]; !ok && k != "channel" {
				entry.Data[k] = v
			}
		}
		if a.Label != "" {
			entry.Data["label"] = a.Label
		}
		if err := e.st.Append(ctx, a.CustomerID, entry); err != nil {
			e.forgetAckSeen(ctx, a, a.ID+":timeline")
			return herald.Temporary(err, "redis", 0)
		}
	}

	if optOut {
		if t, ok := e.opt.Policy.Topics[m.Topic]; !ok || t.Required {
			e.log.Warn("opt-out button on a required or unknown topic ignored", "topic", m.Topic, "template", m.Template)
		} else if _, err := e.SetPreferences(ctx, a.CustomerID, preferences.Patch{Topics: map[string]bool{m.Topic: false}},
			preferences.Actor{Kind: "customer"}, "slack_button"); err != nil {
			return err
		}
	}
	if a.Kind == AckButton {
		return e.showChoice(ctx, a, m)
	}
	return nil
}

// buttonFor finds the template action a pressed button stands for: only
// events the template declares are accepted.
func (e *Engine) buttonFor(m Sent, event string) (templateAction, bool) {
	for _, act := range e.Templates().Actions(m.Template, m.Locale) {
		if act.Event != "" && act.Event == event {
			return templateAction{Label: act.Label, OptOut: act.OptOut}, true
		}
	}
	return templateAction{}, false
}

type templateAction struct {
	Label  string
	OptOut bool
}

// showChoice replaces the message's buttons with the choice made.
func (e *Engine) showChoice(ctx context.Context, a Ack, m Sent) error {
	if e.opt.SlackUpdater == nil {
		return nil
	}
	b, ok, err := e.st.AckUpdate(ctx, a.CustomerID, a.ID)
	if err != nil {
		return err
	}
	if !ok {
		return nil // nothing to show it in
	}
	var upd SlackUpdate
	if err := json.Unmarshal(b, &upd); err != nil {
		return skip(err)
	}
	ch, ts := a.SlackChannel, a.SlackTS
	if ch == "" || ts == "" {
		ch, ts, _ = strings.Cut(m.Providers[herald.ChannelSlack], ":")
	}
	updCtx, cancel := context.WithTimeout(ctx, e.opt.DeliveryTimeout)
	err = e.opt.SlackUpdater.Update(updCtx, ch, ts, upd.Text, upd.Blocks)
	cancel()
	switch {
	case err == nil:
		_ = e.st.DeleteAckUpdate(ctx, a.CustomerID, a.ID)
		return nil
	case herald.IsTemporary(err):
		return err
	default:
		// The acknowledgement stands; only its display failed.
		e.log.Warn("slack message not updated after a button press", "customer", a.CustomerID, "message", a.MessageID, "err", err)
		return nil
	}
}

func ackSummary(a Ack, m Sent) string {
	what := m.Template
	if what == "" {
		what = "message " + a.MessageID
	}
	switch a.Kind {
	case AckButton:
		return fmt.Sprintf("pressed %q (%s) on %s by slack", a.Label, a.Event, what)
	case AckClick:
		host := ""
		if u, err := url.Parse(a.URL); err == nil {
			host = u.Host
		}
		if a.Event != "" {
			return fmt.Sprintf("clicked a link to %s (%s) in %s by email", host, a.Event, what)
		}
		return fmt.Sprintf("clicked a link to %s in %s by email", host, what)
	case AckReply:
		return fmt.Sprintf("replied to %s by email", what)
	}
	return "acknowledged " + what
}

// tracker returns the {{ track }} function of one render: links in emails
// of non-required topics go through /r/{token} when click tracking is on;
// everything else keeps its URL.
func (e *Engine) tracker(c herald.Customer, d wire.Deliver) func(target, event string) string {
	t, known := e.opt.Policy.Topics[d.Topic]
	if !e.opt.ClickTracking || d.Channel != herald.ChannelEmail || !known || t.Required {
		return func(target, _ string) string { return target }
	}
	exp := e.now().Add(ClickTTL)
	return func(target, event string) string {
		u, err := url.Parse(target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || len(target) > maxTracked {
			return target
		}
		if event != "" && redisstore.ValidEventName(event) != nil {
			return target
		}
		return e.opt.PublicURL + "/r/" + preferences.Sign(e.opt.SigningKey, preferences.Claims{
			CustomerID: c.ID, Purpose: preferences.PurposeClick, Channel: herald.ChannelEmail,
			Message: d.MessageID, URL: target, Event: event, Expires: exp,
		})
	}
}
