package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
)

// SendReserve is kept back from a task's deadline when a provider is
// called, so recording the outcome and enqueueing a retry or fallback always
// have time, however long the provider takes.
const SendReserve = 5 * time.Second

// minSendTime is the least time a provider call is started with (half the
// delivery timeout when that is shorter); with less left, the delivery is
// queued (or retried) instead of being cut off.
const minSendTime = time.Second

// slotWait is how long a send waits for a free in-flight slot of its
// channel before the delivery is queued instead.
const slotWait = time.Second

// maxDefers bounds how often one delivery is put off for a provider's rate
// limit before it is given up and archived.
const maxDefers = 1000

// taskBudget bounds a handler that may call a provider: the delivery
// timeout plus the reserve, whatever timeout the task was enqueued with.
func (e *Engine) taskBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, e.opt.DeliveryTimeout+SendReserve)
}

// taskTimeout is asynq's timeout for tasks that may call a provider.
func (e *Engine) taskTimeout() asynq.Option {
	return asynq.Timeout(e.opt.DeliveryTimeout + SendReserve + time.Second)
}

// claimTTL is how long a delivery's claim outlives a worker that died
// holding it: past any handler's budget, so no live copy is overtaken.
func (e *Engine) claimTTL() time.Duration {
	return e.opt.DeliveryTimeout + SendReserve + 10*time.Second
}

// handleDeliver runs a queued delivery: a retry, a fallback, a deferral or
// a delivery put aside while its channel was degraded.
func (e *Engine) handleDeliver(ctx context.Context, t *asynq.Task) error {
	var d wire.Deliver
	if err := wire.Decode(t.Payload(), &d); err != nil {
		return skip(err)
	}
	if err := d.Validate(); err != nil {
		return skip(err)
	}
	if _, ok := e.opt.Senders[d.Channel]; !ok {
		return skip(herald.Errorf(herald.EInvalid, "no sender configured for channel %s", d.Channel))
	}
	if e.broadcastSkip(ctx, d.MessageID, d.CustomerID, &redisstore.MessageTask{Customer: d.CustomerID, Message: d.MessageID, Channel: d.Channel}, false) {
		return nil
	}
	ctx, cancel := e.taskBudget(ctx)
	defer cancel()
	st, pre, err := e.sendState(ctx, d.CustomerID, d.Topic, e.claimAsk(d.CustomerID, d))
	if err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			// Erased while queued: drop it rather than keep the customer's
			// data in the archive.
			e.log.Info("delivery dropped: its customer is gone (erased)", "message", d.MessageID, "customer", d.CustomerID)
			e.tallyOnce(ctx, d.MessageID, "skipped")
			return nil
		}
		return err
	}
	return e.deliver(ctx, st, d, false, "", pre)
}

// deliver hands one message to one channel's provider, at most once: the
// ledger key is claimed before the provider call and records the send right
// after it. inline is true when the task that chose the channel delivers
// itself; it then puts the delivery in a queue rather than wait, retry or
// fall back in place. note is added to the timeline line of the outcome.
// pre, when it is d's, is the claim taken with st (sendState).
func (e *Engine) deliver(ctx context.Context, st redisstore.SendState, d wire.Deliver, inline bool, note string, pre *redisstore.Claim) error {
	cust := st.Customer
	ref := refData(d.WorkflowID, d.JourneyID, d.StepID)
	withVersion(ref, d.Version)
	ref["template"] = d.Template
	ref["topic"] = d.Topic
	h := e.health[d.Channel]
	id := d.DeliveryID()
	cl := pre
	if cl == nil || cl.DeliveryID() != id {
		cl = nil
	}
	if inline {
		if why := h.degraded(e.now()); why != "" {
			cl.Release(ctx)
			return e.queueDelivery(ctx, cust, d, 0, why, note, ref)
		}
	}
	addr := addresses(cust)[d.Channel]
	suppKey := ""
	if addr != "" {
		suppKey = redisstore.SuppressKey(d.Channel, addr)
	}
	e.guesses.put(cust.ID, d.Channel, suppKey)
	if cl == nil {
		var err error
		if cl, err = e.st.ClaimDelivery(ctx, cust.ID, id, e.claimTTL(), suppKey); err != nil {
			return err
		}
	}
	if cl.Sent {
		if n, _ := asynq.GetRetryCount(ctx); n > 0 {
			// A run cut off between the ledger write and the app's event
			// (its worker killed) told the app nothing: tell it now. The
			// webhook outbox drops the event if that run did send it (the
			// same event ID).
			e.emitMessage(ctx, eventSent, cust.ID, d.MessageID, d.Channel, "", ref)
		}
		e.log.Info("delivery already sent; duplicate ignored", "delivery", id, "customer", cust.ID)
		return nil
	}
	if !cl.Held {
		return &waitError{reason: "delivery " + id + " is in progress elsewhere", after: 2 * time.Second}
	}
	defer cl.Release(ctx)
	suppressed, err := cl.SuppressedAt(ctx, suppKey)
	if err != nil {
		return err
	}

	dec := preferences.Decision{}
	if suppressed {
		dec.Reason = "suppressed"
	} else if !inline {
		// Consent once more: an opt-out that landed while this delivery
		// waited in its queue is honoured.
		dec = e.decide(st, d.Topic, []herald.Channel{d.Channel})
	}
	if dec.Reason != "" {
		if !dec.NotBefore.IsZero() && !dec.Drop {
			cl.Release(ctx)
			d.QueuedAt = dec.NotBefore // its latency counts from when it is due
			return e.queueDelivery(ctx, cust, d, dec.NotBefore.Sub(e.now())+time.Second, dec.Reason, note, ref)
		}
		if err := e.suppressed(ctx, cust, d.MessageID, d.Topic, d.WorkflowID, d.Channel, dec, ref); err != nil {
			return err
		}
		if dec.Reason == "opted_out_channel" || dec.Reason == "suppressed" {
			cl.Release(ctx)
			return e.fallback(ctx, cust, d, ref)
		}
		return nil
	}

	data, err := e.svc.Unseal(ctx, cust.ID, d.MessageID, d.Data, d.Sealed)
	if herald.ErrorCode(err) == herald.ENotFound {
		e.recordFailure(ctx, cust, d, herald.OutcomeFailedPermanent, err, ref, "")
		return skip(&logged{err})
	}
	if err != nil {
		cl.Release(ctx)
		return err
	}
	links := e.links(cust, d.Topic)
	content, err := e.Templates().RenderChannel(d.Template, cust.Locale, templates.Data{
		Customer: cust, Data: data, MessageID: d.MessageID, Now: e.now(), Track: e.tracker(cust, d),
		Links: templates.Links{Preferences: links.preferences, Unsubscribe: links.unsubscribe},
	}, d.Channel)
	if err != nil {
		err = herald.Errorf(herald.EInvalid, "render %s: %v", d.Template, err)
		e.recordFailure(ctx, cust, d, herald.OutcomeFailedPermanent, err, ref, "")
		return skip(&logged{err})
	}
	ref["locale"] = content.Locale
	msg := herald.Message{
		ID: id, Channel: d.Channel, Customer: cust, Topic: d.Topic, Template: d.Template,
		Content: content, PreferencesURL: links.preferences, ReplyTo: e.opt.ReplyTo,
	}
	if d.Channel == herald.ChannelEmail {
		// A reply finds the message from its Message-ID alone; IDs too
		// long to seal get the reply index instead (AckIndexes).
		msg.ReplyToken, _ = e.replyIDs.Seal(d.CustomerID, d.MessageID)
	}
	if links.unsubscribe != "" && d.Channel == herald.ChannelEmail {
		msg.Unsubscribe = []string{links.unsubscribe}
		if e.opt.UnsubscribeMailto != "" {
			msg.Unsubscribe = append(msg.Unsubscribe, "mailto:"+e.opt.UnsubscribeMailto+"?subject=unsubscribe")
		}
	}

	// The provider gets the task's deadline minus the reserve, and no more
	// than the delivery timeout; with too little left it is not called.
	budget := func() time.Duration {
		b := e.opt.DeliveryTimeout
		if dl, ok := ctx.Deadline(); ok {
			b = min(b, time.Until(dl)-SendReserve)
		}
		return b
	}
	enough := min(minSendTime, e.opt.DeliveryTimeout/2)
	if gate := e.opt.RateLimits[d.Channel]; gate != nil && budget() >= enough {
		gctx, cancel := context.WithTimeout(ctx, budget())
		err := gate(gctx)
		cancel()
		switch {
		case herald.ErrorCode(err) == herald.ERateLimited:
			// Over the provider's limit for longer than is worth waiting in
			// the worker: put the delivery off until its slot, no failure.
			e.metrics.RateLimitWaits.WithLabelValues(string(d.Channel)).Inc()
			cl.Release(ctx)
			return e.queueDelivery(ctx, cust, d, max(herald.RetryAfter(err), time.Second), "", note, ref)
		case err != nil && ctx.Err() != nil:
			return err // shutting down: asynq puts the task back
		case err != nil:
			cl.Release(ctx)
			return err
		}
	}
	release, busy := h.take(ctx, min(slotWait, max(budget()/4, 0)))
	switch {
	case busy && inline:
		cl.Release(ctx)
		return e.queueDelivery(ctx, cust, d, 0, "every "+string(d.Channel)+" sender is busy", note, ref)
	case busy:
		return &waitError{reason: "every " + string(d.Channel) + " sender is busy", after: time.Second}
	case budget() < enough && inline:
		release()
		cl.Release(ctx)
		return e.queueDelivery(ctx, cust, d, 0, "no time left in this task", note, ref)
	case budget() < enough:
		release()
		return herald.Temporary(context.DeadlineExceeded, "no time left", 0)
	}
	sendCtx, cancel := context.WithTimeout(ctx, budget())
	start := time.Now()
	receipt, err := e.opt.Senders[d.Channel].Send(sendCtx, msg)
	cancel()
	release()
	e.metrics.providerLatency(string(d.Channel), time.Since(start), err)
	if err == nil {
		h.success()
		return e.recordSent(ctx, cl, d, receipt, content.Locale, ref, note)
	}
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return err // shutting down: asynq puts the task back
	}
	if herald.ErrorCode(err) == herald.ERateLimited {
		// Over the provider's limit for longer than is worth waiting in
		// the worker: put the delivery off until its slot, no failure.
		e.metrics.RateLimitWaits.WithLabelValues(string(d.Channel)).Inc()
		cl.Release(ctx)
		return e.queueDelivery(ctx, cust, d, max(herald.RetryAfter(err), time.Second), "", note, ref)
	}
	if herald.IsTemporary(err) || errors.Is(err, context.DeadlineExceeded) {
		if !errors.Is(err, email.ErrPoolWait) { // out of time here, not a provider failure
			h.failure(e.now())
		}
		if inline {
			cl.Release(ctx)
			delay := e.RetryDelay(0, err, nil)
			e.recordFailure(ctx, cust, d, herald.OutcomeFailedTemporary, err, ref, "retrying in "+delay.Round(time.Second).String())
			retry := d
			retry.Tried++
			return e.queueDelivery(ctx, cust, retry, delay, "retry", "", nil)
		}
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		if retried < maxRetry {
			e.recordFailure(ctx, cust, d, herald.OutcomeFailedTemporary, err, ref, "")
			return &logged{err}
		}
		err = herald.Permanent(err, "retries exhausted: "+herald.ErrorReason(err))
	}
	e.recordFailure(ctx, cust, d, herald.OutcomeFailedPermanent, err, ref, "")
	if deadAddress(d.Channel, err) && addr != "" {
		if serr := e.prefs.Suppress(ctx, d.Channel, addr, herald.ErrorReason(err)); serr != nil {
			e.log.Error("suppress address", "customer", cust.ID, "channel", d.Channel, "err", serr)
		}
	}
	cl.Release(ctx)
	if len(d.Fallback) > 0 {
		return e.fallback(ctx, cust, d, ref)
	}
	return skip(&logged{err})
}

// logged marks a failure the engine has already logged (with its delivery,
// customer and classification), so the worker's error handler does not log
// it a second time.
type logged struct{ err error }

func (l *logged) Error() string { return l.err.Error() }
func (l *logged) Unwrap() error { return l.err }

// Logged reports whether err was already logged by the engine.
func Logged(err error) bool {
	var l *logged
	return errors.As(err, &l)
}

// queueDelivery puts a delivery in its topic's queue, to run after `after`
// (0: now). why, when set, goes on the timeline ("" for a retry already
// recorded with its failure, and for a rate-limit wait, which is routine).
func (e *Engine) queueDelivery(ctx context.Context, c herald.Customer, d wire.Deliver, after time.Duration, why, note string, ref map[string]any) error {
	taskID := "d:" + d.DeliveryID()
	if why == "" || after > 0 {
		d.Defers++
		if d.Defers > maxDefers {
			return skip(herald.Errorf(herald.EInternal, "delivery %s put off %d times; giving up", d.DeliveryID(), maxDefers))
		}
		// The kind tells the backlog gauges a retry from a wait.
		kind := kindDefer
		switch why {
		case "retry":
			kind = kindRetry
		case "":
			kind = kindWait
		}
		taskID += ":" + kind + ":" + strconv.Itoa(d.Defers)
	}
	// Secrets in the data (a journey's send carries its event's data) stay
	// out of the payload the dashboard and its archive show.
	data, sealed, err := e.svc.Seal(ctx, d.CustomerID, d.MessageID, d.Data, d.Sealed)
	if err != nil {
		return err
	}
	d.Data, d.Sealed = data, sealed
	opts := []asynq.Option{asynq.TaskID(taskID), asynq.Queue(e.Queue(d.Topic)), e.taskTimeout()}
	if after > 0 {
		opts = append(opts, asynq.ProcessIn(after))
	}
	if err := e.enqueue(ctx, asynq.NewTask(wire.DeliverType(d.Channel), wire.Encode(d)), opts...); err != nil {
		return err
	}
	if why == "" || why == "retry" {
		return nil
	}
	summary := fmt.Sprintf("message %s queued for %s: %s", d.Template, d.Channel, why)
	outcome := herald.Outcome("")
	var counts []redisstore.Count
	if after > 0 {
		outcome = herald.OutcomeDeferred
		until := e.now().Add(after)
		ref["until"], ref["deferral"] = until.UTC().Format(time.RFC3339), d.Defers
		if e.deferralRecorded(ctx, c.ID, d.MessageID, d.Channel, d.Defers) {
			return nil
		}
		summary = fmt.Sprintf("message %s by %s deferred until %s (%s)", d.Template, d.Channel, until.In(c.Location()).Format("2006-01-02 15:04 MST"), why)
		e.metrics.message(string(d.Channel), d.Topic, d.WorkflowID, herald.OutcomeDeferred, why)
		counts = e.outcomeCount(d.MessageID, d.Channel, herald.OutcomeDeferred, why)
	}
	return e.countedBroadcast(counts, e.st.AppendCounted(ctx, c.ID, herald.TimelineEntry{
		Kind: herald.KindMessage, Channel: d.Channel, Outcome: outcome, Ref: d.MessageID, Data: ref,
		Summary: withNote(summary, note),
	}, counts...))
}

func withNote(s, note string) string {
	if note == "" {
		return s
	}
	return s + "; " + note
}

// ledgerMargin is how long before its claim runs out a worker stops trying
// to record a send the provider accepted: until then no copy of the task
// can take the claim and send again, however long Redis is away.
const ledgerMargin = 2 * time.Second

// deadAddress reports a permanent failure that means the address no longer
// exists: later messages to it are suppressed. The rule per channel lives
// with the channel.
func deadAddress(ch herald.Channel, err error) bool {
	switch ch {
	case herald.ChannelEmail:
		return email.DeadAddress(err)
	case herald.ChannelSlack:
		return herald.ErrorReason(err) == "slack account_inactive"
	}
	return false
}

// fallback queues the message on the next channel of d's fallback list.
func (e *Engine) fallback(ctx context.Context, c herald.Customer, d wire.Deliver, ref map[string]any) error {
	if len(d.Fallback) == 0 {
		return nil
	}
	next := d
	next.Channel, next.Fallback, next.Defers, next.Tried = d.Fallback[0], slices.Clone(d.Fallback[1:]), 0, 0
	return e.queueDelivery(ctx, c, next, 0, "falls back from "+string(d.Channel), "", ref)
}

func (e *Engine) recordSent(ctx context.Context, cl *redisstore.Claim, d wire.Deliver, r herald.Receipt, locale string, ref map[string]any, note string) error {
	if r.SentAt.IsZero() {
		r.SentAt = e.now()
	}
	ref["provider_id"] = r.ProviderID
	rec := redisstore.SentRecord{
		Channel: d.Channel, ProviderID: r.ProviderID, SentAt: r.SentAt.UTC(),
		Workflow: d.WorkflowID, Journey: d.JourneyID, Step: d.StepID, Topic: d.Topic, Template: d.Template, Locale: locale,
	}
	workflow := d.WorkflowID
	if d.JourneyID == "" {
		workflow = ""
	}
	entry := redisstore.SentLine(d.MessageID, d.Channel, d.Template, locale, workflow, d.StepID, ref)
	entry.Summary = withNote(entry.Summary, note)
	// What an acknowledgement needs to find the message again (a Slack
	// button carries only the message ID, an email reply only its
	// Message-ID), and what GET /v1/messages/{id} needs to find it: a
	// journey's message is found through its journey.
	indexes := redisstore.AckIndexes(d.Channel, d.CustomerID, d.MessageID, r.ProviderID)
	if d.JourneyID == "" {
		indexes[redisstore.MessageIndexKey(d.MessageID)] = d.CustomerID
	}
	cl.Counts = append(stepCounts(ref, redisstore.CountSent+":"+string(d.Channel)), e.outcomeCount(d.MessageID, d.Channel, herald.OutcomeSent, "")...)
	if t, ok := e.opt.Policy.Topics[d.Topic]; ok && t.Class != "" && e.capWindow(t.Class) > 0 {
		cl.CapClass = t.Class // counted for its caps with the ledger record
	}
	// The provider has the message: from here on, failing the task would
	// send it again.
	first, err := cl.Finish(ctx, rec, entry, indexes, sentTTL)
	// Redis restarting or failing over: keep trying while the claim holds
	// (past the task's own deadline: asynq may give up on the task, but
	// a copy that runs finds the claim, then the record), since giving up
	// here makes the retried task send again. A write whose answer was
	// lost is not made twice: the timeline would say the send twice and
	// the counts would move twice.
	retried := false
	for wait, until := 100*time.Millisecond, cl.Expires().Add(-ledgerMargin); err != nil && time.Now().Before(until); wait = min(2*wait, time.Second) {
		time.Sleep(wait)
		retried = true
		landed, lerr := cl.Landed(context.WithoutCancel(ctx), rec)
		if lerr != nil {
			err = lerr
			continue
		}
		if landed {
			first, err = true, nil
			break
		}
		first, err = cl.Finish(context.WithoutCancel(ctx), rec, entry, indexes, sentTTL)
	}
	if err != nil {
		e.log.Error("ledger write failed after a successful send; a retry may send once more", "delivery", d.DeliveryID(), "err", err)
		return herald.Temporary(err, "redis", 0)
	}
	if !first && !retried { // after a retry, the record may be our own lost reply
		e.log.Warn("delivery sent twice: its claim ran out and another worker sent it too", "delivery", d.DeliveryID())
	}
	_ = e.countedBroadcast(cl.Counts, nil)
	e.metrics.message(string(d.Channel), d.Topic, d.WorkflowID, herald.OutcomeSent, "")
	e.metrics.delivered(d.Channel, e.Queue(d.Topic), d.QueuedAt, r.SentAt)
	e.emitMessage(ctx, eventSent, d.CustomerID, d.MessageID, d.Channel, "", ref)
	return nil
}

func (e *Engine) recordFailure(ctx context.Context, c herald.Customer, d wire.Deliver, o herald.Outcome, err error, ref map[string]any, next string) {
	reason := herald.ErrorReason(err)
	if reason == "" {
		reason = herald.ErrorCode(err)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	data := map[string]any{"attempt": d.Tried + retried + 1, "error": herald.ErrorMessage(err)}
	for k, v := range ref {
		data[k] = v
	}
	e.metrics.message(string(d.Channel), d.Topic, d.WorkflowID, o, reason)
	if o == herald.OutcomeFailedPermanent {
		e.emitMessage(ctx, eventFailed, c.ID, d.MessageID, d.Channel, reason, ref)
	}
	e.log.Warn("delivery failed", "delivery", d.DeliveryID(), "customer", c.ID, "channel", d.Channel, "outcome", o, "reason", reason)
	counts := e.outcomeCount(d.MessageID, d.Channel, o, reason)
	if o == herald.OutcomeFailedPermanent {
		counts = append(counts, stepCounts(ref, redisstore.CountFailed)...)
	}
	if aerr := e.countedBroadcast(counts, e.st.AppendCounted(ctx, c.ID, herald.TimelineEntry{
		Kind: herald.KindDelivery, Channel: d.Channel, Outcome: o, Reason: reason, Ref: d.MessageID, Data: data,
		Summary: withNote(fmt.Sprintf("%s by %s failed (%s): %s", d.Template, d.Channel, o, herald.ErrorMessage(err)), next),
	}, counts...)); aerr != nil {
		e.log.Error("timeline append", "customer", c.ID, "err", aerr)
	}
}

type links struct{ preferences, unsubscribe string }

// links signs the customer's preference-centre link and, for topics the
// customer may leave, a one-click unsubscribe link.
func (e *Engine) links(c herald.Customer, topic string) links {
	exp := e.now().Add(e.opt.TokenTTL)
	l := links{preferences: e.opt.PublicURL + "/preferences?token=" + preferences.Sign(e.opt.SigningKey, preferences.Claims{
		CustomerID: c.ID, Purpose: "preferences", Expires: exp, Epoch: preferences.EpochOf(c),
	})}
	if t, ok := e.opt.Policy.Topics[topic]; ok && !t.Required {
		l.unsubscribe = e.opt.PublicURL + "/unsubscribe?token=" + preferences.Sign(e.opt.SigningKey, preferences.Claims{
			CustomerID: c.ID, Purpose: "unsubscribe", Topic: topic, Channel: herald.ChannelEmail, Expires: exp, Epoch: preferences.EpochOf(c),
		})
	}
	return l
}

// Channel health: how many sends a channel may have in flight in this
// process, and whether recent temporary failures mark it degraded. A
// degraded or full channel gets its deliveries queued instead of sent
// inline, so a slow or failing provider never holds up orchestration or the
// other channel.
const (
	degradeAfter = 3                // consecutive temporary failures
	degradeFor   = 10 * time.Second // after the last of them
)

type channelHealth struct {
	slots chan struct{}
	mu    sync.Mutex
	fails int
	last  time.Time
}

func newChannelHealth(concurrency int) *channelHealth {
	return &channelHealth{slots: make(chan struct{}, max(1, concurrency))}
}

// degraded says why inline sends should not be tried now ("" when they may).
func (h *channelHealth) degraded(now time.Time) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fails >= degradeAfter && now.Sub(h.last) < degradeFor {
		return fmt.Sprintf("the channel is degraded (%d temporary failures in a row)", h.fails)
	}
	return ""
}

// take reserves an in-flight slot, waiting up to wait for one (a busy
// channel frees slots in milliseconds; a slow one does not); busy when none
// came free.
func (h *channelHealth) take(ctx context.Context, wait time.Duration) (release func(), busy bool) {
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, false
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, false
	case <-t.C:
	case <-ctx.Done():
	}
	return func() {}, true
}

func (h *channelHealth) success() {
	h.mu.Lock()
	h.fails = 0
	h.mu.Unlock()
}

func (h *channelHealth) failure(now time.Time) {
	h.mu.Lock()
	h.fails++
	h.last = now
	h.mu.Unlock()
}
