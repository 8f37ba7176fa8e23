package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// timelineSlack is how far a timeline may grow past TimelineCap before the
// hot path trims it: one LTRIM every few dozen sends instead of one a send.
const timelineSlack = 50

// claimPrefix marks a ledger key that holds a claim (a delivery in
// progress) rather than the record of a send, which is JSON (storedSent).
const claimPrefix = "c:"

// LedgerKey is the key of a delivery's ledger record: its claim while the
// delivery is in progress, the record of the send once it is made.
func LedgerKey(customerID, deliveryID string) string { return Key(customerID, "ledger", deliveryID) }

// SendState is what deciding and making a send needs to know about one
// customer, read in one round trip.
type SendState struct {
	Customer herald.Customer
	Prefs    herald.Preferences
	// RecentSends are the customer's sends in the capped class, when asked.
	RecentSends []time.Time
}

// LoadSendState reads the customer and their preferences (prefsKey) with one
// MGET (both keys share the customer's slot) and, when capKey is set, the
// sends recorded there since since, in the same round trip.
func (s *Store) LoadSendState(ctx context.Context, customerID, prefsKey, capKey string, since time.Time) (SendState, error) {
	st, _, err := s.LoadSendStateClaiming(ctx, customerID, prefsKey, capKey, since, ClaimAsk{})
	return st, err
}

// ClaimAsk asks LoadSendStateClaiming to claim a delivery as well.
type ClaimAsk struct {
	// DeliveryID is the delivery to claim ("": claim nothing).
	DeliveryID string
	TTL        time.Duration
	// SuppressKey is the suppression record to check with the claim: the
	// caller's guess of the customer's address before reading the
	// customer ("": none). Claim.SuppressedAt says whether the guess was
	// right.
	SuppressKey string
}

// LoadSendStateClaiming is LoadSendState that also takes the claim asked
// for (ClaimDelivery) in the same round trip: what a send needs to know and
// its hold on the ledger, read once. The claim is nil when none was asked
// for or the customer does not exist (nothing claimed then).
func (s *Store) LoadSendStateClaiming(ctx context.Context, customerID, prefsKey, capKey string, since time.Time, ask ClaimAsk) (SendState, *Claim, error) {
	var out SendState
	if err := ValidID(customerID); err != nil {
		return out, nil, err
	}
	var vals *redis.SliceCmd
	var sends *redis.StringSliceCmd
	var cl *Claim
	var claim claimCmds
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		vals = p.MGet(ctx, Key(customerID, "customer"), prefsKey)
		if capKey != "" {
			sends = p.ZRangeByScore(ctx, capKey, &redis.ZRangeBy{Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf"})
		}
		if ask.DeliveryID != "" {
			cl = s.newClaim(customerID, ask.DeliveryID, ask.SuppressKey)
			claim = cl.queue(ctx, p, ask.TTL)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return out, nil, herald.Temporary(err, "redis", 0)
	}
	v := vals.Val()
	cust, _ := v[0].(string)
	if cust == "" {
		// Nothing to send to: give back a claim taken for nobody.
		if cl != nil && claim.read(cl) == nil {
			cl.Release(ctx)
		}
		return out, nil, CustomerNotFound(customerID)
	}
	if cl != nil {
		if err := claim.read(cl); err != nil {
			return out, nil, err
		}
	}
	if err := json.Unmarshal([]byte(cust), &out.Customer); err != nil {
		cl.Release(ctx)
		return out, nil, &herald.Error{Code: herald.EInternal, Message: "customer " + customerID + " is corrupt", Err: err}
	}
	if p, _ := v[1].(string); p != "" {
		if err := json.Unmarshal([]byte(p), &out.Prefs); err != nil {
			cl.Release(ctx)
			return out, nil, &herald.Error{Code: herald.EInternal, Message: "preferences of " + customerID + " are corrupt", Err: err}
		}
	}
	if sends != nil {
		for _, m := range sends.Val() {
			if ns, err := strconv.ParseInt(m, 10, 64); err == nil {
				if t := time.Unix(0, ns).UTC(); !t.Before(since) {
					out.RecentSends = append(out.RecentSends, t)
				}
			}
		}
	}
	return out, cl, nil
}

// SentRecord is what the ledger keeps of a delivery the provider accepted:
// enough to answer "was it sent?" and to match an acknowledgement (a Slack
// button, a click, a reply) back to its message.
type SentRecord struct {
	Channel    herald.Channel `json:"ch"`
	ProviderID string         `json:"pid,omitempty"`
	SentAt     time.Time      `json:"at"`
	Workflow   string         `json:"wf,omitempty"`
	Journey    string         `json:"j,omitempty"`
	Step       string         `json:"st,omitempty"`
	Topic      string         `json:"tp,omitempty"`
	Template   string         `json:"tm,omitempty"`
	Locale     string         `json:"lc,omitempty"`
}

// Claim is one delivery's hold on its ledger key, taken with ClaimDelivery.
type Claim struct {
	s          *Store
	customerID string
	id         string
	token      string
	// suppressKey is the suppression record checked with the claim.
	suppressKey string
	// Held is true when this worker holds the claim and may send.
	Held bool
	// Sent is true when the ledger already records the delivery: it must
	// not be sent again.
	Sent bool
	// Suppressed is true when the address asked about is suppressed.
	Suppressed bool
	// Counts are the workflow and broadcast counters Finish records with
	// the send.
	Counts []Count
	// CapClass, when set, is the frequency-cap class Finish counts the
	// send in (as Prefs.RecordSend does, at the record's SentAt).
	CapClass string
	// expires is when the claim runs out at the latest, by this process's
	// clock: it was asked for before Redis set it.
	expires time.Time
}

// Expires is the time by which a held claim has run out (zero when none
// was asked for). Until then no copy of the delivery can take it, even
// across a Redis restart that keeps its data: an expiry is a moment, not
// a countdown.
func (c *Claim) Expires() time.Time { return c.expires }

// DeliveryID is the delivery the claim is for.
func (c *Claim) DeliveryID() string { return c.id }

// ClaimDelivery takes the delivery's ledger key as a claim that expires after
// ttl (so a worker that dies mid-send frees it), unless the key already holds
// a claim (another copy of the task is sending: Held false) or the record of
// the send (Sent true). suppressKey, when set, is checked in the same round
// trip. One SET NX GET does claim and ledger check at once: no copy of the
// task can slip between a check and a claim.
func (s *Store) ClaimDelivery(ctx context.Context, customerID, deliveryID string, ttl time.Duration, suppressKey string) (*Claim, error) {
	c := s.newClaim(customerID, deliveryID, suppressKey)
	var cmds claimCmds
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds = c.queue(ctx, p, ttl)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, herald.Temporary(err, "redis", 0)
	}
	if err := cmds.read(c); err != nil {
		return nil, err
	}
	return c, nil
}

func (s *Store) newClaim(customerID, deliveryID, suppressKey string) *Claim {
	return &Claim{s: s, customerID: customerID, id: deliveryID, token: NewID(""), suppressKey: suppressKey}
}

// claimCmds are a claim's commands in a pipeline.
type claimCmds struct {
	set  *redis.StatusCmd
	supp *redis.IntCmd
}

// queue adds the claim (SET NX GET) and the suppression check to p.
func (c *Claim) queue(ctx context.Context, p redis.Pipeliner, ttl time.Duration) claimCmds {
	var cmds claimCmds
	c.expires = time.Now().Add(ttl)
	cmds.set = p.SetArgs(ctx, LedgerKey(c.customerID, c.id), claimPrefix+c.token, redis.SetArgs{Mode: "NX", Get: true, TTL: ttl})
	if c.suppressKey != "" {
		cmds.supp = p.Exists(ctx, c.suppressKey)
	}
	return cmds
}

// read fills c from the pipeline's answers.
func (cmds claimCmds) read(c *Claim) error {
	switch old, err := cmds.set.Result(); {
	case errors.Is(err, redis.Nil):
		c.Held = true
	case err != nil:
		return herald.Temporary(err, "redis", 0)
	case !strings.HasPrefix(old, claimPrefix):
		c.Sent = true
	}
	if cmds.supp != nil {
		// Checked on its own: the claim's redis.Nil, the pipeline's first
		// error, would hide its failure.
		n, err := cmds.supp.Result()
		if err != nil {
			return herald.Temporary(err, "redis", 0)
		}
		c.Suppressed = n > 0
	}
	return nil
}

// SuppressedAt says whether the suppression record suppressKey exists
// ("": no address, not suppressed): read with the claim when it is the key
// the claim checked, else now.
func (c *Claim) SuppressedAt(ctx context.Context, suppressKey string) (bool, error) {
	switch suppressKey {
	case "":
		return false, nil
	case c.suppressKey:
		return c.Suppressed, nil
	}
	n, err := c.s.rdb.Exists(ctx, suppressKey).Result()
	if err != nil {
		return false, herald.Temporary(err, "redis", 0)
	}
	c.suppressKey, c.Suppressed = suppressKey, n > 0
	return c.Suppressed, nil
}

// Release gives the claim back (only if it is still ours), so a retry or
// another channel's fallback can go ahead at once.
func (c *Claim) Release(ctx context.Context) {
	if c == nil || !c.Held {
		return
	}
	c.Held = false
	_ = releaseScript.Run(context.WithoutCancel(ctx), c.s.rdb, []string{LedgerKey(c.customerID, c.id)}, claimPrefix+c.token).Err()
}

// Finish records the send in the ledger (replacing the claim), appends the
// timeline entry (its data less what the record holds: sentLineData), sets
// the global indexes (key → value, kept for indexTTL) and counts the send
// for its frequency caps (CapClass), in one round trip. first is false when
// the key no longer held our claim: the claim had run out and another
// worker may have sent too.
func (c *Claim) Finish(ctx context.Context, rec SentRecord, e herald.TimelineEntry, indexes map[string]string, indexTTL time.Duration) (first bool, err error) {
	if e.At.IsZero() {
		e.At = c.s.now().UTC()
	}
	e.Data = sentLineData(e.Data, rec)
	rb, err := encodeSent(c.id, rec)
	if err != nil {
		return false, err
	}
	eb := c.s.encodeEntry(e)
	tl := Key(c.customerID, "timeline")
	var set *redis.StatusCmd
	var push *redis.IntCmd
	// Not a transaction: the indexes live on other Cluster slots, and the
	// ledger, written first, is what keeps a retry from sending again.
	_, err = c.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetArgs(ctx, LedgerKey(c.customerID, c.id), rb, redis.SetArgs{Get: true, TTL: LedgerTTL})
		push = p.LPush(ctx, tl, eb)
		for k, v := range indexes {
			p.Set(ctx, k, v, indexTTL)
		}
		c.s.CountPipe(ctx, p, e.At, c.Counts...)
		if c.CapClass != "" && !rec.SentAt.IsZero() {
			recordSendPipe(ctx, p, c.customerID, c.CapClass, rec.SentAt, c.s.now())
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, err
	}
	c.Held = false
	if push.Val() > TimelineCap+timelineSlack {
		if err := c.s.rdb.LTrim(ctx, tl, 0, TimelineCap-1).Err(); err != nil {
			return false, err
		}
	}
	return set.Val() == claimPrefix+c.token, nil
}

// Landed reports whether the ledger holds rec for the claim's delivery:
// whether a Finish with rec whose answer was lost (Redis restarting, the
// connection cut) did its write. A caller that retries Finish asks first,
// so that the send's timeline line and counts are written once.
func (c *Claim) Landed(ctx context.Context, rec SentRecord) (bool, error) {
	want, err := encodeSent(c.id, rec)
	if err != nil {
		return false, err
	}
	got, err := c.s.rdb.Get(ctx, LedgerKey(c.customerID, c.id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, tempErr(err)
	}
	if !bytes.Equal(got, want) {
		return false, nil
	}
	c.Held = false
	return true, nil
}

// sentLineData is what a send's timeline line keeps of its data: not what
// the ledger record written with it, under the same message ID, holds
// (workflow, journey, step, topic, template, locale, the provider's ID),
// nor the workflow version, which the journey's own line and state name.
// The line's summary says template, channel, locale, workflow and step to a
// reader; GET /v1/messages/{id} reads line and record together. Whatever
// else the caller added stays.
func sentLineData(data map[string]any, r SentRecord) map[string]any {
	held := map[string]string{
		"workflow": r.Workflow, "journey": r.Journey, "step": r.Step, "topic": r.Topic,
		"template": r.Template, "locale": r.Locale, "provider_id": r.ProviderID,
	}
	var out map[string]any
	for k, v := range data {
		if s, ok := v.(string); k == "version" || (ok && held[k] == s) {
			continue
		}
		if out == nil {
			out = map[string]any{}
		}
		out[k] = v
	}
	return out
}

// Sent returns the ledger records of a message's deliveries, per channel.
func (s *Store) Sent(ctx context.Context, customerID, messageID string, channels []herald.Channel) (map[herald.Channel]SentRecord, error) {
	out, _, err := s.SentOrSending(ctx, customerID, messageID, channels)
	return out, err
}

// SentOrSending is Sent that also says whether a delivery of the message
// on one of channels is in progress (a claim holds its ledger key): a
// provider may have it already, and its record is on the way.
func (s *Store) SentOrSending(ctx context.Context, customerID, messageID string, channels []herald.Channel) (out map[herald.Channel]SentRecord, sending bool, err error) {
	out = map[herald.Channel]SentRecord{}
	if len(channels) == 0 {
		return out, false, nil
	}
	keys := make([]string, len(channels))
	for i, ch := range channels {
		keys[i] = LedgerKey(customerID, messageID+":"+string(ch))
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, false, herald.Temporary(err, "redis", 0)
	}
	for i, v := range vals {
		b, _ := v.(string)
		if strings.HasPrefix(b, claimPrefix) {
			sending = true
			continue
		}
		if b == "" {
			continue
		}
		r, err := decodeSent(messageID+":"+string(channels[i]), []byte(b))
		if err != nil {
			return nil, false, fmt.Errorf("decode ledger %s: %w", keys[i], err)
		}
		out[channels[i]] = r
	}
	return out, sending, nil
}
