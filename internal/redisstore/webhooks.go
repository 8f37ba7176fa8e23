package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// Webhook bookkeeping. Each (customer, endpoint) has an outbox: a list of
// event bodies in the order they happened. Every event also has its own
// task, and a task delivers the outbox from its head, so an event is
// never posted before an earlier one of the same customer, and a task
// finishing means its event left the outbox. A seen-marker per event ID
// keeps a retried producer from queueing an event twice.

// WebhookOutboxTTL is how long an outbox nobody drains is kept.
const WebhookOutboxTTL = 72 * time.Hour

func webhookOutboxKey(customerID, endpoint string) string {
	return Key(customerID, "webhook", endpoint)
}

func webhookSeenKey(customerID, endpoint, eventID string) string {
	return Key(customerID, "webhook-seen", endpoint, eventID)
}

func webhookDisabledKey(endpoint string) string { return "herald:webhook:disabled:" + endpoint }

var pushWebhookScript = redis.NewScript(`
if redis.call("SET", KEYS[2], "1", "NX", "EX", ARGV[2]) then
  redis.call("RPUSH", KEYS[1], ARGV[1])
  redis.call("EXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0`)

// PushWebhook appends an event body to the customer's outbox for
// endpoint; false means the event ID was queued before (and nothing was
// added).
func (s *Store) PushWebhook(ctx context.Context, customerID, endpoint, eventID string, body []byte) (bool, error) {
	n, err := pushWebhookScript.Run(ctx, s.rdb,
		[]string{webhookOutboxKey(customerID, endpoint), webhookSeenKey(customerID, endpoint, eventID)},
		body, int(WebhookOutboxTTL/time.Second)).Int()
	if err != nil {
		return false, herald.Temporary(err, "redis", 0)
	}
	return n == 1, nil
}

// WebhookHead returns the oldest undelivered event body of the outbox;
// ok is false when the outbox is empty.
func (s *Store) WebhookHead(ctx context.Context, customerID, endpoint string) (body []byte, ok bool, err error) {
	b, err := s.rdb.LIndex(ctx, webhookOutboxKey(customerID, endpoint), 0).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, herald.Temporary(err, "redis", 0)
	}
	return b, true, nil
}

var popWebhookScript = redis.NewScript(`
if redis.call("LINDEX", KEYS[1], 0) == ARGV[1] then
  redis.call("LPOP", KEYS[1])
  return 1
end
return 0`)

// PopWebhook removes body from the head of the outbox, if it is still
// there.
func (s *Store) PopWebhook(ctx context.Context, customerID, endpoint string, body []byte) error {
	if err := popWebhookScript.Run(ctx, s.rdb, []string{webhookOutboxKey(customerID, endpoint)}, body).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

func webhookDeadKey(customerID, endpoint, eventID string) string {
	return Key(customerID, "webhook-dead", endpoint, eventID)
}

var expireWebhookScript = redis.NewScript(`
if redis.call("LINDEX", KEYS[1], 0) == ARGV[1] then
  redis.call("LPOP", KEYS[1])
  redis.call("SET", KEYS[2], "1", "EX", ARGV[2])
  return 1
end
return 0`)

// ExpireWebhook removes body (event eventID) from the head of the outbox,
// given up on, and remembers that for the event's own task to fail with.
func (s *Store) ExpireWebhook(ctx context.Context, customerID, endpoint, eventID string, body []byte) error {
	err := expireWebhookScript.Run(ctx, s.rdb,
		[]string{webhookOutboxKey(customerID, endpoint), webhookDeadKey(customerID, endpoint, eventID)},
		body, int(WebhookOutboxTTL/time.Second)).Err()
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// WebhookExpired reports whether an event was given up on.
func (s *Store) WebhookExpired(ctx context.Context, customerID, endpoint, eventID string) (bool, error) {
	n, err := s.rdb.Exists(ctx, webhookDeadKey(customerID, endpoint, eventID)).Result()
	if err != nil {
		return false, herald.Temporary(err, "redis", 0)
	}
	return n == 1, nil
}

// DropWebhooks empties the customer's outbox for endpoint and returns how
// many events it held.
func (s *Store) DropWebhooks(ctx context.Context, customerID, endpoint string) (int64, error) {
	key := webhookOutboxKey(customerID, endpoint)
	var n *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.LLen(ctx, key)
		p.Del(ctx, key)
		return nil
	})
	if err != nil {
		return 0, herald.Temporary(err, "redis", 0)
	}
	return n.Val(), nil
}

// ClaimWebhooks takes the customer's outbox for endpoint: one worker
// delivers it at a time, which keeps the customer's events in order.
func (s *Store) ClaimWebhooks(ctx context.Context, customerID, endpoint string, ttl time.Duration) (func(), bool, error) {
	release, ok, err := s.Claim(ctx, customerID, "webhook:"+endpoint, ttl)
	if err != nil {
		return release, false, herald.Temporary(err, "redis", 0)
	}
	return release, ok, nil
}

// DisableWebhook marks an endpoint disabled (it answered 410 Gone); the
// mark is keyed by the endpoint's name and URL, so pointing the name at a
// new URL enables it again.
func (s *Store) DisableWebhook(ctx context.Context, endpoint, reason string) error {
	if err := s.rdb.Set(ctx, webhookDisabledKey(endpoint), reason, 0).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// WebhookDisabled reports whether an endpoint is disabled, and why.
func (s *Store) WebhookDisabled(ctx context.Context, endpoint string) (bool, string, error) {
	v, err := s.rdb.Get(ctx, webhookDisabledKey(endpoint)).Result()
	if errors.Is(err, redis.Nil) {
		return false, "", nil
	}
	if err != nil {
		return false, "", herald.Temporary(err, "redis", 0)
	}
	return true, v, nil
}

// EnableWebhook lifts a disabled mark.
func (s *Store) EnableWebhook(ctx context.Context, endpoint string) error {
	if err := s.rdb.Del(ctx, webhookDisabledKey(endpoint)).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}
