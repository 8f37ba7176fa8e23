package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/store"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
)

// handleDeliver hands one message to one channel's provider, at most once:
// the ledger is checked before and written right after the provider call.
func (e *Engine) handleDeliver(ctx context.Context, t *asynq.Task) error {
	var d wire.Deliver
	if err := wire.Decode(t.Payload(), &d); err != nil {
		return skip(err)
	}
	if err := d.Validate(); err != nil {
		return skip(err)
	}
	id := d.DeliveryID()
	// Claim the delivery so that copies of this task running at the same
	// time wait instead of racing past the ledger check; read the ledger and
	// the customer in the same round trip.
	dl, claimed, err := e.st.BeginDelivery(ctx, d.CustomerID, id, e.opt.DeliveryTimeout+10*time.Second)
	if err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			return skip(err) // erased while queued
		}
		return err
	}
	defer dl.Release(ctx)
	if dl.Sent {
		e.log.Info("delivery already sent; duplicate task ignored", "delivery", id, "customer", d.CustomerID)
		return nil
	}
	if !claimed {
		return &waitError{reason: "delivery " + id + " is in progress elsewhere", after: 2 * time.Second}
	}
	sender, ok := e.opt.Senders[d.Channel]
	if !ok {
		return skip(herald.Errorf(herald.EInvalid, "no sender configured for channel %s", d.Channel))
	}
	cust := dl.Customer
	ref := refData(d.WorkflowID, d.JourneyID, d.StepID)
	ref["template"] = d.Template
	ref["topic"] = d.Topic

	// Consent once more, just before the provider call: an opt-out that
	// landed while this task waited is honoured.
	dec, err := e.decide(ctx, cust, d.Topic, []herald.Channel{d.Channel})
	if err != nil {
		return err
	}
	if dec.Reason != "" {
		if !dec.NotBefore.IsZero() && !dec.Drop {
			e.metrics.message(string(d.Channel), d.Topic, d.WorkflowID, herald.OutcomeDeferred, dec.Reason)
			return &waitError{reason: dec.Reason, after: dec.NotBefore.Sub(e.now()) + time.Second}
		}
		if err := e.suppressed(ctx, cust, d.MessageID, d.Topic, d.WorkflowID, d.Channel, dec, ref); err != nil {
			return err
		}
		if dec.Reason == "opted_out_channel" || dec.Reason == "suppressed" {
			return e.fallback(ctx, cust, d, ref)
		}
		return nil
	}

	links := e.links(cust, d.Topic)
	content, err := e.Templates().RenderChannel(d.Template, cust.Locale, templates.Data{
		Customer: cust, Data: d.Data, MessageID: d.MessageID, Now: e.now(), Track: e.tracker(cust, d),
		Links: templates.Links{Preferences: links.preferences, Unsubscribe: links.unsubscribe},
	}, d.Channel)
	if err != nil {
		err = herald.Errorf(herald.EInvalid, "render %s: %v", d.Template, err)
		e.recordFailure(ctx, cust, d, herald.OutcomeFailedPermanent, err, ref)
		return skip(err)
	}
	ref["locale"] = content.Locale
	msg := herald.Message{
		ID: id, Channel: d.Channel, Customer: cust, Topic: d.Topic, Template: d.Template,
		Content: content, PreferencesURL: links.preferences, ReplyTo: e.opt.ReplyTo,
	}
	if links.unsubscribe != "" && d.Channel == herald.ChannelEmail {
		msg.Unsubscribe = []string{links.unsubscribe}
		if e.opt.UnsubscribeMailto != "" {
			msg.Unsubscribe = append(msg.Unsubscribe, "mailto:"+e.opt.UnsubscribeMailto+"?subject=unsubscribe")
		}
	}

	sendCtx, cancel := context.WithTimeout(ctx, e.opt.DeliveryTimeout)
	start := time.Now()
	receipt, err := sender.Send(sendCtx, msg)
	cancel()
	e.metrics.providerLatency(string(d.Channel), time.Since(start), err)
	if err == nil {
		return e.recordSent(ctx, dl, d, receipt, content.Locale, ref)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return err // shutting down: asynq puts the task back
	}
	if herald.ErrorCode(err) == herald.ERateLimited {
		e.metrics.RateLimitWaits.WithLabelValues(string(d.Channel)).Inc()
		return err // waits RetryAfter; IsFailure says it is no failure
	}
	if herald.IsTemporary(err) || errors.Is(err, context.DeadlineExceeded) {
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		if retried < maxRetry {
			e.recordFailure(ctx, cust, d, herald.OutcomeFailedTemporary, err, ref)
			return err
		}
		err = herald.Permanent(err, "retries exhausted: "+herald.ErrorReason(err))
	}
	e.recordFailure(ctx, cust, d, herald.OutcomeFailedPermanent, err, ref)
	if deadAddress(d.Channel, err) {
		if addr := addresses(cust)[d.Channel]; addr != "" {
			if serr := e.prefs.Suppress(ctx, d.Channel, addr, herald.ErrorReason(err)); serr != nil {
				e.log.Error("suppress address", "customer", cust.ID, "channel", d.Channel, "err", serr)
			}
		}
	}
	if ferr := e.fallback(ctx, cust, d, ref); ferr != nil {
		return ferr
	}
	return skip(err)
}

// ledgerPatience bounds how long a worker keeps trying to record a send
// the provider accepted; it stays well inside the delivery's claim (the
// delivery timeout plus 10s), so no copy of the task can run meanwhile.
const ledgerPatience = 8 * time.Second

var deadSMTP = regexp.MustCompile(`^smtp 5\d\d 5\.1\.\d+`)

// deadAddress reports a permanent failure that means the address no longer
// exists: later messages to it are suppressed.
func deadAddress(ch herald.Channel, err error) bool {
	r := herald.ErrorReason(err)
	switch ch {
	case herald.ChannelEmail:
		return deadSMTP.MatchString(r)
	case herald.ChannelSlack:
		return r == "slack account_inactive"
	}
	return false
}

// fallback enqueues the message on the next channel of d's fallback list.
func (e *Engine) fallback(ctx context.Context, c herald.Customer, d wire.Deliver, ref map[string]any) error {
	if len(d.Fallback) == 0 {
		return nil
	}
	next := d
	next.Channel, next.Fallback = d.Fallback[0], slices.Clone(d.Fallback[1:])
	if err := e.enqueueDelivery(ctx, next); err != nil {
		return err
	}
	return e.st.Append(ctx, c.ID, herald.TimelineEntry{
		Kind: herald.KindMessage, Channel: next.Channel, Ref: d.MessageID, Data: ref,
		Summary: fmt.Sprintf("message %s falls back from %s to %s", d.Template, d.Channel, next.Channel),
	})
}

func (e *Engine) recordSent(ctx context.Context, dl *store.Delivery, d wire.Deliver, r herald.Receipt, locale string, ref map[string]any) error {
	if r.SentAt.IsZero() {
		r.SentAt = e.now()
	}
	ref["provider_id"] = r.ProviderID
	// The provider has the message: from here on, failing the task would
	// send it again. The ledger and the timeline go in one transaction.
	entry := herald.TimelineEntry{
		Kind: herald.KindDelivery, Channel: d.Channel, Outcome: herald.OutcomeSent, Ref: d.MessageID, Data: ref,
		Summary: fmt.Sprintf("sent %s by %s (%s)", d.Template, d.Channel, locale),
	}
	first, err := dl.Finish(ctx, r, entry)
	// Redis restarting or failing over: keep trying for a while (well inside
	// the claim), since giving up here makes the retried task send again.
	retried := false
	for wait, until := 100*time.Millisecond, time.Now().Add(ledgerPatience); err != nil && time.Now().Before(until); wait = min(2*wait, time.Second) {
		time.Sleep(wait)
		retried = true
		first, err = dl.Finish(context.WithoutCancel(ctx), r, entry)
	}
	if err != nil {
		e.log.Error("ledger write failed after a successful send; a retry may send once more", "delivery", d.DeliveryID(), "err", err)
		return herald.Temporary(err, "redis", 0)
	}
	if !first && !retried { // after a retry, the record may be our own lost reply
		e.log.Warn("delivery sent twice: another worker recorded it first", "delivery", d.DeliveryID())
	}
	e.rememberSent(ctx, d, r, locale)
	if t, ok := e.opt.Policy.Topics[d.Topic]; ok && t.Class != "" && e.capWindow(t.Class) > 0 {
		if err := e.prefs.RecordSend(ctx, d.CustomerID, t.Class, r.SentAt); err != nil {
			e.log.Error("record send for frequency caps", "customer", d.CustomerID, "err", err)
		}
	}
	e.metrics.message(string(d.Channel), d.Topic, d.WorkflowID, herald.OutcomeSent, "")
	return nil
}

func (e *Engine) recordFailure(ctx context.Context, c herald.Customer, d wire.Deliver, o herald.Outcome, err error, ref map[string]any) {
	reason := herald.ErrorReason(err)
	if reason == "" {
		reason = herald.ErrorCode(err)
	}
	attempt, _ := asynq.GetRetryCount(ctx)
	data := map[string]any{"attempt": attempt + 1, "error": herald.ErrorMessage(err)}
	for k, v := range ref {
		data[k] = v
	}
	e.metrics.message(string(d.Channel), d.Topic, d.WorkflowID, o, reason)
	e.log.Warn("delivery failed", "delivery", d.DeliveryID(), "customer", c.ID, "channel", d.Channel, "outcome", o, "reason", reason)
	if aerr := e.st.Append(ctx, c.ID, herald.TimelineEntry{
		Kind: herald.KindDelivery, Channel: d.Channel, Outcome: o, Reason: reason, Ref: d.MessageID, Data: data,
		Summary: fmt.Sprintf("%s by %s failed (%s): %s", d.Template, d.Channel, o, herald.ErrorMessage(err)),
	}); aerr != nil {
		e.log.Error("timeline append", "customer", c.ID, "err", aerr)
	}
}

type links struct{ preferences, unsubscribe string }

// links signs the customer's preference-centre link and, for topics the
// customer may leave, a one-click unsubscribe link.
func (e *Engine) links(c herald.Customer, topic string) links {
	exp := e.now().Add(e.opt.TokenTTL)
	l := links{preferences: e.opt.PublicURL + "/preferences?token=" + preferences.Sign(e.opt.SigningKey, preferences.Claims{
		CustomerID: c.ID, Purpose: "preferences", Expires: exp,
	})}
	if t, ok := e.opt.Policy.Topics[topic]; ok && !t.Required {
		l.unsubscribe = e.opt.PublicURL + "/unsubscribe?token=" + preferences.Sign(e.opt.SigningKey, preferences.Claims{
			CustomerID: c.ID, Purpose: "unsubscribe", Topic: topic, Channel: herald.ChannelEmail, Expires: exp,
		})
	}
	return l
}
