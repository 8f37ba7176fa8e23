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
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
)

// ReasonChannelNotConfigured is the reason a message is not sent when
// herald has no provider for any of its channels (Slack without a token,
// email without an SMTP relay).
const ReasonChannelNotConfigured = "channel_not_configured"

// handleMessage runs one message: the contact policy picks the channel, and
// the same task delivers on it (see runMessage).
func (e *Engine) handleMessage(ctx context.Context, t *asynq.Task) error {
	var m wire.Message
	if err := wire.Decode(t.Payload(), &m); err != nil {
		return skip(err)
	}
	if err := m.Validate(); err != nil {
		return skip(err)
	}
	if e.broadcastSkip(ctx, m.ID, m.CustomerID, &redisstore.MessageTask{Customer: m.CustomerID, Message: m.ID, Continued: m.Deferrals > 0}, m.Once) {
		return nil
	}
	ctx, cancel := e.taskBudget(ctx)
	defer cancel()
	return e.runMessage(ctx, m)
}

// runMessage applies the contact policy to m and delivers it on the first
// allowed channel (mode first, the rest kept as fallback) or on every allowed
// channel (mode all). Each delivery is made inline when its channel is
// healthy; a delivery task is queued only for a retry, a fallback, a deferral
// or a degraded channel. A SkipRetry error means the message failed for
// good and the timeline says why.
func (e *Engine) runMessage(ctx context.Context, m wire.Message) error {
	candidates := e.available(m.Channels)
	// The first candidate is the usual choice: claim it while reading the
	// customer, and give the claim back if the policy chooses otherwise.
	ask := redisstore.ClaimAsk{}
	if len(candidates) > 0 && e.health[candidates[0]].degraded(e.now()) == "" {
		ask = e.claimAsk(m.CustomerID, wire.Deliver{MessageID: m.ID, Channel: candidates[0]})
	}
	st, pre, err := e.sendState(ctx, m.CustomerID, m.Topic, ask)
	if err != nil {
		if herald.ErrorCode(err) == herald.ENotFound {
			// Every door checks the customer before queueing, so the
			// customer was erased meanwhile: drop the task rather than keep
			// their data in the archive.
			e.log.Info("message dropped: its customer is gone (erased)", "message", m.ID, "customer", m.CustomerID)
			e.tallyOnce(ctx, m.ID, "skipped")
			return nil
		}
		return err
	}
	defer pre.Release(ctx) // unless a delivery used it
	cust := st.Customer
	ref := refData(m.WorkflowID, m.JourneyID, m.StepID)
	withVersion(ref, m.Version)
	ref["template"] = m.Template
	ref["topic"] = m.Topic
	if len(candidates) == 0 {
		// Not the customer's choice but a gap in herald's set-up: its own
		// reason, apart from opt-outs, and a line for the operator.
		e.log.Warn("message not sent: none of its channels is configured", "message", m.ID, "customer", m.CustomerID,
			"template", m.Template, "channels", m.Channels, "workflow", m.WorkflowID, "reason", ReasonChannelNotConfigured)
		return e.suppressed(ctx, cust, m.ID, m.Topic, m.WorkflowID, "", preferences.Decision{Reason: ReasonChannelNotConfigured}, ref)
	}
	dec := e.decide(st, m.Topic, candidates)
	if pre != nil && (dec.Reason != "" || pre.DeliveryID() != (wire.Deliver{MessageID: m.ID, Channel: dec.Channels[0]}).DeliveryID()) {
		pre.Release(ctx) // the policy chose otherwise: free it before sending elsewhere
	}
	switch {
	case dec.Reason != "" && !dec.NotBefore.IsZero() && !dec.Drop:
		return e.deferMessage(ctx, cust, m, dec, ref)
	case dec.Reason != "":
		return e.suppressed(ctx, cust, m.ID, m.Topic, m.WorkflowID, "", dec, ref)
	}
	chans := dec.Channels
	if m.Mode != "all" {
		chans = chans[:1]
	}
	note := ""
	if m.Actor != "" && m.JourneyID == "" {
		note = "asked by " + m.Actor
	}
	if len(dec.Skipped) > 0 {
		note = joinNote(note, "skipped "+skippedText(dec.Skipped))
	}
	var failed error
	for i, ch := range chans {
		d := wire.Deliver{
			MessageID: m.ID, CustomerID: m.CustomerID, Channel: ch,
			Template: m.Template, Topic: m.Topic, Data: m.Data, Sealed: m.Sealed,
			WorkflowID: m.WorkflowID, JourneyID: m.JourneyID, StepID: m.StepID, Version: m.Version, Actor: m.Actor,
			QueuedAt: m.QueuedAt,
		}
		if m.Mode != "all" {
			d.Fallback = slices.Clone(dec.Channels[i+1:])
		}
		if err := e.deliver(ctx, st, d, true, note, pre); err != nil {
			if !errors.Is(err, asynq.SkipRetry) {
				return err
			}
			failed = err
		}
	}
	return failed
}

// sendStateKey carries the customer and preferences a journey handler read
// under the customer's journey lock (beginJourneys).
type sendStateKey struct{}

// sendState reads the customer, their preferences and, when the topic's
// class is capped, their recent sends, and takes the claim asked for: one
// round trip. Inside a journey handler the customer and preferences were
// read a moment ago under the customer's lock, which every preference
// change's journey exits also take: an uncapped send uses them as they are
// (and claims nothing here).
func (e *Engine) sendState(ctx context.Context, customerID, topic string, ask redisstore.ClaimAsk) (redisstore.SendState, *redisstore.Claim, error) {
	capKey, since := "", time.Time{}
	if t, ok := e.opt.Policy.Topics[topic]; ok && t.Class != "" {
		if per := e.capWindow(t.Class); per > 0 {
			capKey, since = redisstore.SendsKey(customerID, t.Class), e.now().Add(-per)
		}
	}
	if st, ok := ctx.Value(sendStateKey{}).(redisstore.SendState); ok && capKey == "" && st.Customer.ID == customerID {
		return st, nil, nil
	}
	return e.st.LoadSendStateClaiming(ctx, customerID, redisstore.PrefsKey(customerID), capKey, since, ask)
}

// claimAsk asks sendState to claim delivery d, checking the suppression
// record of the address the customer had at their last send here (deliver
// checks again if the address changed).
func (e *Engine) claimAsk(customerID string, d wire.Deliver) redisstore.ClaimAsk {
	return redisstore.ClaimAsk{DeliveryID: d.DeliveryID(), TTL: e.claimTTL(), SuppressKey: e.guesses.get(customerID, d.Channel)}
}

// suppressGuesses remembers, per customer and channel, the suppression
// record the last send checked: the next send to the customer checks it in
// the round trip that reads the customer, before it knows their address.
// Bounded: full, it starts over.
type suppressGuesses struct {
	mu sync.Mutex
	m  map[guessKey]string
}

type guessKey struct {
	customer string
	ch       herald.Channel
}

const maxGuesses = 1 << 14

func (g *suppressGuesses) get(customerID string, ch herald.Channel) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.m[guessKey{customerID, ch}]
}

func (g *suppressGuesses) put(customerID string, ch herald.Channel, key string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil || len(g.m) >= maxGuesses {
		g.m = make(map[guessKey]string)
	}
	g.m[guessKey{customerID, ch}] = key
}

// available keeps the candidates herald has a sender for (all configured
// channels when none are named), so a message never waits for a channel
// that is not set up.
func (e *Engine) available(candidates []herald.Channel) []herald.Channel {
	if len(candidates) == 0 {
		candidates = herald.Channels
	}
	out := make([]herald.Channel, 0, len(candidates))
	for _, ch := range candidates {
		if _, ok := e.opt.Senders[ch]; ok {
			out = append(out, ch)
		}
	}
	return out
}

// decide applies the contact policy. Suppressed addresses are not known
// here: the delivery checks its own address when it claims the send, in the
// same round trip, and falls back if it is suppressed.
func (e *Engine) decide(st redisstore.SendState, topic string, candidates []herald.Channel) preferences.Decision {
	return e.opt.Policy.Decide(preferences.Input{
		Customer: st.Customer, Prefs: st.Prefs, Topic: topic, Candidates: candidates, Now: e.now(),
		RecentSends: st.RecentSends,
	})
}

func (e *Engine) capWindow(class string) time.Duration {
	var per time.Duration
	for _, c := range e.opt.Policy.Caps {
		if c.Class == class && c.Per > per {
			per = c.Per
		}
	}
	return per
}

// addresses returns the customer's address per channel, the key of its
// suppression record.
func addresses(c herald.Customer) map[herald.Channel]string {
	out := map[herald.Channel]string{}
	if c.Email != "" {
		out[herald.ChannelEmail] = c.Email
	}
	switch {
	case c.SlackUserID != "":
		out[herald.ChannelSlack] = c.SlackUserID
	case c.Email != "":
		out[herald.ChannelSlack] = c.Email
	}
	return out
}

// deferMessage re-enqueues a message for when the policy allows it (quiet
// hours end, frequency cap frees up): deferred, never dropped.
func (e *Engine) deferMessage(ctx context.Context, c herald.Customer, m wire.Message, dec preferences.Decision, ref map[string]any) error {
	m.Deferrals++
	if m.Deferrals > 100 {
		return skip(herald.Errorf(herald.EInternal, "message %s deferred 100 times (%s); giving up", m.ID, dec.Reason))
	}
	at := dec.NotBefore.Add(time.Second) // asynq fires up to 1s early
	data, sealed, err := e.svc.Seal(ctx, m.CustomerID, m.ID, m.Data, m.Sealed)
	if err != nil {
		return err
	}
	m.Data, m.Sealed = data, sealed
	m.QueuedAt = dec.NotBefore // its latency counts from when it is due
	taskID := fmt.Sprintf("m:%s:%s:%d", m.ID, kindDefer, m.Deferrals)
	err = e.enqueue(ctx, asynq.NewTask(wire.TypeMessage, wire.Encode(m)),
		asynq.TaskID(taskID), asynq.Queue(e.Queue(m.Topic)), asynq.ProcessAt(at), e.taskTimeout())
	if err != nil {
		return err
	}
	ref["until"], ref["deferral"] = dec.NotBefore.UTC().Format(time.RFC3339), m.Deferrals
	if e.deferralRecorded(ctx, c.ID, m.ID, "", m.Deferrals) {
		return nil
	}
	e.metrics.message("", m.Topic, m.WorkflowID, herald.OutcomeDeferred, dec.Reason)
	counts := e.outcomeCount(m.ID, "", herald.OutcomeDeferred, dec.Reason)
	return e.countedBroadcast(counts, e.st.AppendCounted(ctx, c.ID, herald.TimelineEntry{
		Kind: herald.KindMessage, Outcome: herald.OutcomeDeferred, Reason: dec.Reason, Ref: m.ID,
		Summary: fmt.Sprintf("message %s deferred until %s (%s)", m.Template, dec.NotBefore.In(c.Location()).Format("2006-01-02 15:04 MST"), dec.Reason),
		Data:    ref,
	}, counts...))
}

// deferralRecorded says whether this task is a run again of one cut off
// after recording deferral n of message ref on channel ch (its worker
// killed before asynq took the task as done): the deferral is queued once
// (its task ID holds n) and must be recorded and counted once too.
func (e *Engine) deferralRecorded(ctx context.Context, customerID, ref string, ch herald.Channel, n int) bool {
	if retried, _ := asynq.GetRetryCount(ctx); retried == 0 {
		return false
	}
	done, err := e.st.HasLine(ctx, customerID, ref, func(l herald.TimelineEntry) bool {
		return l.Outcome == herald.OutcomeDeferred && l.Channel == ch && fmt.Sprint(l.Data["deferral"]) == strconv.Itoa(n)
	})
	return err == nil && done
}

// suppressed records a message the policy stopped, naming the consent entry
// behind it when there is one.
func (e *Engine) suppressed(ctx context.Context, c herald.Customer, msgID, topic, workflow string, ch herald.Channel, dec preferences.Decision, ref map[string]any) error {
	if n, _ := asynq.GetRetryCount(ctx); n > 0 {
		// A message is suppressed on a channel once: a run cut off after
		// recording it (its worker killed before asynq took the task as
		// done) is not recorded, counted or announced again.
		if done, err := e.st.HasOutcome(ctx, c.ID, msgID, ch, herald.OutcomeSuppressed); err == nil && done {
			return nil
		}
	}
	field := ""
	switch dec.Reason {
	case "opted_out_topic":
		field = "topics." + topic
	case "opted_out_channel":
		if ch != "" {
			field = "channels." + string(ch)
		} else {
			for sk, why := range dec.Skipped {
				if why == "opted_out_channel" {
					field = "channels." + string(sk)
					break
				}
			}
		}
	case "paused":
		field = "paused"
	}
	entry := herald.TimelineEntry{
		Kind: herald.KindDelivery, Outcome: herald.OutcomeSuppressed, Reason: dec.Reason, Channel: ch, Ref: msgID, Data: ref,
		Summary: fmt.Sprintf("not sent: %s", reasonText(dec.Reason)),
	}
	if dec.Drop {
		entry.Summary = "not sent: frequency cap reached (dropped by policy)"
	}
	if len(dec.Skipped) > 0 {
		entry.Summary += " (" + skippedText(dec.Skipped) + ")"
	}
	if field != "" {
		if ce, ok, err := e.prefs.LastConsent(ctx, c.ID, field); err == nil && ok {
			entry.Data["consent_id"] = ce.ID
			entry.Summary += fmt.Sprintf("; consent entry %s at %s", ce.ID, ce.At.UTC().Format(time.RFC3339))
		}
	}
	e.metrics.message(string(ch), topic, workflow, herald.OutcomeSuppressed, dec.Reason)
	e.emitMessage(ctx, eventSuppressed, c.ID, msgID, ch, dec.Reason, ref)
	counts := append(stepCounts(ref, redisstore.CountSuppressed+":"+dec.Reason), e.outcomeCount(msgID, ch, herald.OutcomeSuppressed, dec.Reason)...)
	return e.countedBroadcast(counts, e.st.AppendCounted(ctx, c.ID, entry, counts...))
}

func reasonText(r string) string {
	switch r {
	case "opted_out_channel":
		return "the customer switched this channel off"
	case "opted_out_topic":
		return "the customer opted out of this topic"
	case "not_opted_in":
		return "the customer has not opted in to this topic (an opt-in topic)"
	case "paused":
		return "the customer paused all messages"
	case "suppressed":
		return "the address is suppressed (an earlier hard bounce, or the erasure of a customer who had it)"
	case "frequency_capped":
		return "frequency cap reached"
	case "quiet_hours":
		return "quiet hours"
	case "unknown_topic":
		return "unknown topic"
	case ReasonChannelNotConfigured:
		return "none of the message's channels is configured in herald"
	case "no_address", "unknown_channel":
		return "no channel can reach the customer"
	}
	return r
}

func skippedText(m map[herald.Channel]string) string {
	keys := make([]string, 0, len(m))
	for ch := range m {
		keys = append(keys, string(ch))
	}
	slices.Sort(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += ", "
		}
		s += k + ": " + m[herald.Channel(k)]
	}
	return s
}

func joinNote(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + "; " + b
}

func refData(workflow, journey, step string) map[string]any {
	m := map[string]any{}
	if workflow != "" {
		m["workflow"] = workflow
	}
	if journey != "" {
		m["journey"] = journey
	}
	if step != "" {
		m["step"] = step
	}
	return m
}
