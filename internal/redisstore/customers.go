package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/msgid"
)

// writeAttempts bounds optimistic retries when writers race on one profile.
const writeAttempts = 16

// WriteCustomer changes the customer's profile with change, which gets the
// current profile (exists false: none yet) and returns the new one and the
// timeline lines that say what happened. Profile and lines are written in
// one transaction; a concurrent writer makes it read again and retry.
// CreatedAt is kept (set now for a new customer) and UpdatedAt is now. An
// error from change aborts the write and is returned as is.
func (s *Store) WriteCustomer(ctx context.Context, id string, change func(old herald.Customer, exists bool) (herald.Customer, []herald.TimelineEntry, error)) (herald.Customer, bool, error) {
	if err := ValidID(id); err != nil {
		return herald.Customer{}, false, err
	}
	key := Key(id, "customer")
	var (
		out     herald.Customer
		created bool
	)
	txf := func(tx *redis.Tx) error {
		old, err := getJSON[herald.Customer](ctx, tx, key)
		exists := true
		switch {
		case errors.Is(err, redis.Nil):
			exists = false
			old = herald.Customer{ID: id}
		case err != nil:
			return err
		}
		next, lines, err := change(old, exists)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		next.ID = id
		if exists {
			next.CreatedAt = old.CreatedAt
		} else {
			next.CreatedAt = now
		}
		next.UpdatedAt = now
		b, err := json.Marshal(next)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Set(ctx, key, b, 0)
			if len(lines) > 0 {
				s.AppendPipe(ctx, p, id, lines...)
			}
			return nil
		})
		out, created = next, !exists
		return err
	}
	for range writeAttempts {
		err := s.rdb.Watch(ctx, txf, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			var he *herald.Error
			if errors.As(err, &he) {
				return herald.Customer{}, false, err
			}
			return herald.Customer{}, false, herald.Temporary(err, "redis", 0)
		}
		// Outside the transaction: the index is in another Cluster slot.
		// Every write re-adds the ID, so one lost here is back with the next.
		if err := s.indexCustomer(ctx, id); err != nil {
			return out, created, herald.Temporary(err, "redis", 0)
		}
		return out, created, nil
	}
	return herald.Customer{}, false, herald.Errorf(herald.ETemporary, "customer %s: too many concurrent changes, try again", id)
}

// TaskRef is a queued task of a customer.
type TaskRef struct{ Queue, ID string }

// CustomerTasks lists the tasks in the customer's task index, which older
// versions wrote for every task they queued (erasure now finds tasks by
// their payload; the index is read until the last such customer is erased).
func (s *Store) CustomerTasks(ctx context.Context, customerID string) ([]TaskRef, error) {
	members, err := s.rdb.ZRevRange(ctx, Key(customerID, "tasks"), 0, -1).Result()
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	out := make([]TaskRef, 0, len(members))
	for _, m := range members {
		if q, id, ok := strings.Cut(m, "/"); ok {
			out = append(out, TaskRef{Queue: q, ID: id})
		}
	}
	return out, nil
}

// ForgetWaiting removes the customer's journeys from the waiting index.
func (s *Store) ForgetWaiting(ctx context.Context, customerID string, journeyIDs []string) error {
	if len(journeyIDs) == 0 {
		return nil
	}
	members := make([]any, len(journeyIDs))
	for i, j := range journeyIDs {
		members[i] = customerID + "|" + j
	}
	if err := s.rdb.ZRem(ctx, waitingKey, members...).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// customerKeys lists the customer's keys that start with prefix (one of
// Key(customerID, …)): on a cluster, from the master that owns their slot.
func (s *Store) customerKeys(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	collect := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		return it.Err()
	}
	var err error
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		var node *redis.Client
		if node, err = c.MasterForKey(ctx, prefix); err == nil {
			err = collect(ctx, node)
		}
	case *redis.Client:
		err = collect(ctx, c)
	}
	return keys, err
}

// DeleteProfile deletes the customer's profile: the last step of erasure.
func (s *Store) DeleteProfile(ctx context.Context, customerID string) error {
	if err := s.rdb.Del(ctx, Key(customerID, "customer")).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// ForgetMessageIndexes drops the global indexes that map the customer's
// delivered messages (and their email Message-IDs) and journeys back to the
// customer; the ledger records and journey states themselves go with the
// customer's keys.
func (s *Store) ForgetMessageIndexes(ctx context.Context, customerID string) error {
	// A journey's messages are found through it (MessageOwner).
	states, err := s.customerKeys(ctx, journeyKey(customerID, ""))
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	for _, k := range states {
		jid := strings.TrimPrefix(k, journeyKey(customerID, ""))
		if err := s.rdb.HDel(ctx, runningKey, jid).Err(); err != nil {
			return herald.Temporary(err, "redis", 0)
		}
		if err := s.rdb.Del(ctx, journeyOwnerKey(jid)).Err(); err != nil {
			return herald.Temporary(err, "redis", 0)
		}
	}
	prefix := LedgerKey(customerID, "")
	keys, err := s.customerKeys(ctx, prefix)
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	for _, k := range keys {
		delivery := strings.TrimPrefix(k, prefix)
		i := strings.LastIndexByte(delivery, ':')
		if i < 0 {
			continue
		}
		msgID, ch := delivery[:i], herald.Channel(delivery[i+1:])
		recs, err := s.Sent(ctx, customerID, msgID, []herald.Channel{ch})
		if err != nil {
			return herald.Temporary(err, "redis", 0)
		}
		dels := []string{MsgIndexKey(msgID)} // MessageIndexKey is the same key
		if r, ok := recs[herald.ChannelEmail]; ok && r.ProviderID != "" && !msgid.IsSealed(r.ProviderID) {
			dels = append(dels, EmailIndexKey(r.ProviderID))
		}
		for _, d := range dels { // each on its own slot
			if err := s.rdb.Del(ctx, d).Err(); err != nil {
				return herald.Temporary(err, "redis", 0)
			}
		}
	}
	return nil
}
