package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// EventKeyTTL is how long an event's idempotency key is remembered.
const EventKeyTTL = 24 * time.Hour

// ValidEventName reports whether name can name an event (herald.ValidEventName).
func ValidEventName(name string) error { return herald.ValidEventName(name) }

// NewID returns a random ID with a prefix.
func NewID(prefix string) string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// KeyedID derives a stable ID from an idempotency key, scoped by owner, or
// a random one when key is empty.
func KeyedID(prefix, owner, key string) string {
	if key == "" {
		return NewID(prefix)
	}
	return prefix + Hash(owner + "\x00" + key)[:24]
}

// PrepareEvent validates an event, gives it an ID and a time, and claims
// its idempotency key: fresh is false for a repeat within EventKeyTTL of an
// event already enqueued, which callers must not enqueue again. The claim
// stays pending until EventEnqueued, so a repeat after a failed enqueue
// (Redis restarting, a lost reply) is fresh and enqueues the event: the
// task ID keeps a copy still in the queue from being added twice.
func PrepareEvent(ctx context.Context, rdb redis.UniversalClient, ev herald.Event) (herald.Event, bool, error) {
	if err := ValidID(ev.CustomerID); err != nil {
		return ev, false, err
	}
	if err := ValidEventName(ev.Name); err != nil {
		return ev, false, err
	}
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	ev.ID = KeyedID("e_", ev.CustomerID, ev.IdempotencyKey)
	if ev.IdempotencyKey == "" {
		return ev, true, nil
	}
	key := Key(ev.CustomerID, "event-key", ev.ID)
	fresh, err := rdb.SetNX(ctx, key, eventPending, EventKeyTTL).Result()
	if err != nil {
		return ev, false, herald.Temporary(err, "redis", 0)
	}
	if fresh {
		return ev, true, nil
	}
	state, err := rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return ev, true, nil // expired in between
	}
	if err != nil {
		return ev, false, herald.Temporary(err, "redis", 0)
	}
	return ev, state == eventPending, nil
}

// eventPending marks an idempotency key whose event may not be enqueued yet.
const eventPending = "pending"

// EventEnqueued settles an event's idempotency key once the event is in the
// queue: repeats from then on are no-ops. Failing is harmless; a repeat
// then meets the queued task's ID.
func EventEnqueued(ctx context.Context, rdb redis.UniversalClient, ev herald.Event) {
	if ev.IdempotencyKey == "" {
		return
	}
	_ = rdb.SetXX(ctx, Key(ev.CustomerID, "event-key", ev.ID), "enqueued", redis.KeepTTL).Err()
}

// EventQueued reports whether event id of customerID, sent with an
// idempotency key, is known to be in the queue (its key settled by
// EventEnqueued). A failed read counts as not queued: the caller asks
// again, which the key makes harmless.
func EventQueued(ctx context.Context, rdb redis.UniversalClient, customerID, id string) bool {
	if ValidID(customerID) != nil {
		return false
	}
	state, err := rdb.Get(ctx, Key(customerID, "event-key", id)).Result()
	return err == nil && state != eventPending
}
