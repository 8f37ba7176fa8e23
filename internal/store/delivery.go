package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// Delivery is one delivery's bookkeeping, opened with BeginDelivery.
type Delivery struct {
	s          *Store
	customerID string
	id         string
	token      string
	claimed    bool
	// Sent is true when the ledger already records the delivery.
	Sent bool
	// Customer is the customer's profile, read in the same round trip.
	Customer herald.Customer
}

// BeginDelivery claims a delivery (so copies of the task running at once
// wait rather than race past the ledger), reads its ledger record and the
// customer, in one round trip. Claimed is false when another worker holds
// the claim; the claim expires after ttl if this worker dies.
func (s *Store) BeginDelivery(ctx context.Context, customerID, deliveryID string, ttl time.Duration) (*Delivery, bool, error) {
	d := &Delivery{s: s, customerID: customerID, id: deliveryID, token: NewID("")}
	var claim *redis.BoolCmd
	var ledger, cust *redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		claim = p.SetNX(ctx, Key(customerID, "claim", deliveryID), d.token, ttl)
		ledger = p.Get(ctx, Key(customerID, "ledger", deliveryID))
		cust = p.Get(ctx, Key(customerID, "customer"))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, herald.Temporary(err, "redis", 0)
	}
	d.claimed = claim.Val()
	d.Sent = ledger.Err() == nil
	switch b, err := cust.Bytes(); {
	case errors.Is(err, redis.Nil):
		d.Release(ctx)
		return d, d.claimed, herald.Errorf(herald.ENotFound, "customer %q not found", customerID)
	case err != nil:
		d.Release(ctx)
		return d, d.claimed, herald.Temporary(err, "redis", 0)
	default:
		if err := json.Unmarshal(b, &d.Customer); err != nil {
			d.Release(ctx)
			return d, d.claimed, fmt.Errorf("decode customer %s: %w", customerID, err)
		}
	}
	return d, d.claimed, nil
}

// Release gives the claim back (only if it is still ours).
func (d *Delivery) Release(ctx context.Context) {
	if !d.claimed {
		return
	}
	d.claimed = false
	_ = releaseScript.Run(context.WithoutCancel(ctx), d.s.rdb, []string{Key(d.customerID, "claim", d.id)}, d.token).Err()
}

// Finish records the send in the ledger, appends the timeline entry and
// drops the claim, in one transaction. first is false when the ledger
// already had the delivery.
func (d *Delivery) Finish(ctx context.Context, r herald.Receipt, e herald.TimelineEntry) (first bool, err error) {
	if e.At.IsZero() {
		e.At = d.s.now().UTC()
	}
	rb, _ := json.Marshal(r)
	eb, _ := json.Marshal(e)
	tl := Key(d.customerID, "timeline")
	var set *redis.BoolCmd
	_, err = d.s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetNX(ctx, Key(d.customerID, "ledger", d.id), rb, LedgerTTL)
		p.LPush(ctx, tl, eb)
		p.LTrim(ctx, tl, 0, TimelineCap-1)
		p.Del(ctx, Key(d.customerID, "claim", d.id))
		return nil
	})
	if err != nil {
		return false, err
	}
	d.claimed = false
	return set.Val(), nil
}
