package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Event validates and enqueues an app event. An idempotency key makes a
// repeat within 24 h a no-op that returns the first event's ID.
func (e *Engine) Event(ctx context.Context, ev herald.Event, actor string) (string, error) {
	ev, fresh, err := redisstore.PrepareEvent(ctx, e.opt.Redis, ev)
	if err != nil || !fresh {
		return ev.ID, err
	}
	if ev.Data == nil {
		ev.Data = map[string]any{}
	}
	if ev.Actor == "" {
		ev.Actor = actor
	}
	if err := e.enqueue(ctx, asynq.NewTask(wire.TypeEvent, wire.Encode(ev)), asynq.TaskID("e:"+ev.ID), asynq.Queue(wire.QueueDefault)); err != nil {
		return ev.ID, err
	}
	redisstore.EventEnqueued(ctx, e.opt.Redis, ev)
	return ev.ID, nil
}

// SetPreferences merges a preference change, records it in the consent log
// and the timeline, and ends the customer's journeys of any topic the
// customer just left.
func (e *Engine) SetPreferences(ctx context.Context, customerID string, p preferences.Patch, actor preferences.Actor, source string) (herald.Preferences, error) {
	if err := p.Validate(e.opt.Policy.Topics); err != nil {
		return herald.Preferences{}, err
	}
	prefs, entries, err := e.prefs.Apply(ctx, customerID, p, actor, source)
	if err != nil {
		return prefs, err
	}
	for _, c := range entries {
		_ = e.st.Append(ctx, customerID, herald.TimelineEntry{
			Kind: herald.KindConsent, Ref: c.ID,
			Summary: fmt.Sprintf("%s changed from %v to %v by %s (%s)", c.Field, show(c.From), show(c.To), actorText(c.Actor), c.Source),
		})
	}
	for topic, on := range p.Topics {
		if !on {
			e.TopicOptOut(ctx, customerID, topic)
		}
	}
	if p.Paused != nil && *p.Paused {
		e.TopicOptOut(ctx, customerID, "")
	}
	return prefs, nil
}

func show(v any) string {
	if v == nil {
		return "unset"
	}
	return fmt.Sprint(v)
}

func actorText(a preferences.Actor) string {
	if a.Name != "" {
		return a.Kind + " " + a.Name
	}
	return a.Kind
}

// TopicOptOut ends the customer's running journeys of topic ("" = every
// topic): a customer who leaves a topic leaves its journeys at once.
func (e *Engine) TopicOptOut(ctx context.Context, customerID, topic string) {
	if err := e.exitTopic(ctx, customerID, topic); err != nil {
		e.log.Error("exit journeys after opt-out", "customer", customerID, "topic", topic, "err", err)
	}
}

// Erase removes everything stored about the customer except a hash of each
// address in the suppression list and an erasure entry in the consent log.
func (e *Engine) Erase(ctx context.Context, customerID string, actor preferences.Actor) error {
	c, err := e.st.Customer(ctx, customerID)
	if err != nil {
		return err
	}
	if err := e.forgetMessages(ctx, customerID); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	if err := e.forgetInsight(ctx, customerID); err != nil {
		return err
	}
	if _, err := e.st.DeleteCustomer(ctx, customerID); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	if err := e.prefs.Erase(ctx, customerID, addresses(c), actor); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	e.log.Info("customer erased", "customer", customerID, "by", actorText(actor))
	return nil
}

// forgetMessages drops the global indexes that map the customer's delivered
// messages (and their email Message-IDs) back to the customer; the ledger
// records themselves go with the customer's keys.
func (e *Engine) forgetMessages(ctx context.Context, customerID string) error {
	prefix := redisstore.LedgerKey(customerID, "")
	var keys []string
	collect := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		return it.Err()
	}
	var err error
	switch c := e.opt.Redis.(type) {
	case *redis.ClusterClient:
		// One slot holds the customer's keys: scan the master that owns it.
		var node *redis.Client
		if node, err = c.MasterForKey(ctx, prefix); err == nil {
			err = collect(ctx, node)
		}
	case *redis.Client:
		err = collect(ctx, c)
	}
	if err != nil {
		return err
	}
	for _, k := range keys {
		delivery := strings.TrimPrefix(k, prefix)
		i := strings.LastIndexByte(delivery, ':')
		if i < 0 {
			continue
		}
		msgID, ch := delivery[:i], herald.Channel(delivery[i+1:])
		recs, err := e.st.Sent(ctx, customerID, msgID, []herald.Channel{ch})
		if err != nil {
			return err
		}
		if err := e.opt.Redis.Del(ctx, msgIndexKey(msgID), redisstore.MessageIndexKey(msgID)).Err(); err != nil {
			return err
		}
		if r, ok := recs[herald.ChannelEmail]; ok && r.ProviderID != "" {
			if err := e.opt.Redis.Del(ctx, emailIndexKey(r.ProviderID)).Err(); err != nil {
				return err
			}
		}
	}
	return nil
}
