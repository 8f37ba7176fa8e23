package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// CustomersKey indexes every customer ID: a sorted set with all scores 0,
// so members are in ID order and a page starts after the last ID seen
// (ZRANGE BYLEX), stable while customers come and go. In Redis Cluster it
// lives in one slot: one node holds the whole index (about 60 B a customer).
const CustomersKey = "herald:customers"

// customersIndexed marks the index as complete: customers stored before it
// existed were added by one SCAN.
const customersIndexed = "herald:customers:indexed"

// indexCustomer adds id to the index (a no-op when present).
func (s *Store) indexCustomer(ctx context.Context, id string) error {
	return s.rdb.ZAddNX(ctx, CustomersKey, redis.Z{Member: id}).Err()
}

// EnsureCustomerIndex adds customers stored before the index existed, once:
// one SCAN over customer profiles, then a marker. Safe to run concurrently.
func (s *Store) EnsureCustomerIndex(ctx context.Context) error {
	n, err := s.rdb.Exists(ctx, customersIndexed).Result()
	if err != nil || n == 1 {
		return tempErr(err)
	}
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, "herald:{c:*}:customer", 1000).Iterator()
		var batch []redis.Z
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			err := s.rdb.ZAddNX(ctx, CustomersKey, batch...).Err()
			batch = batch[:0]
			return err
		}
		for it.Next(ctx) {
			k := it.Val()
			id := strings.TrimSuffix(strings.TrimPrefix(k, "herald:{c:"), "}:customer")
			if id == k || ValidID(id) != nil {
				continue
			}
			if batch = append(batch, redis.Z{Member: id}); len(batch) == 1000 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := it.Err(); err != nil {
			return err
		}
		return flush()
	}
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, scan)
	case *redis.Client:
		err = scan(ctx, c)
	}
	if err != nil {
		return tempErr(err)
	}
	return tempErr(s.rdb.Set(ctx, customersIndexed, "1", 0).Err())
}

func tempErr(err error) error {
	if err == nil {
		return nil
	}
	return herald.Temporary(err, "redis", 0)
}

// CustomerIDs returns up to n customer IDs after the ID `after` ("" = from
// the start), in ID order.
func (s *Store) CustomerIDs(ctx context.Context, after string, n int) ([]string, error) {
	lo := "-"
	if after != "" {
		lo = "(" + after
	}
	ids, err := s.rdb.ZRangeByLex(ctx, CustomersKey, &redis.ZRangeBy{Min: lo, Max: "+", Count: int64(n)}).Result()
	return ids, tempErr(err)
}

// CustomerCount is the number of indexed customers.
func (s *Store) CustomerCount(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, CustomersKey).Result()
	return n, tempErr(err)
}

// Profile is a customer with their preferences, as an audience filter sees
// them.
type Profile struct {
	Customer herald.Customer
	Prefs    herald.Preferences
}

// Profiles reads the customers ids and their preferences in one pipelined
// round trip. Customers erased meanwhile are left out; the second result
// lists them.
func (s *Store) Profiles(ctx context.Context, ids []string) ([]Profile, []string, error) {
	if len(ids) == 0 {
		return nil, nil, nil
	}
	type pair struct{ c, p *redis.StringCmd }
	cmds := make([]pair, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pair{p.Get(ctx, Key(id, "customer")), p.Get(ctx, PrefsKey(id))}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, tempErr(err)
	}
	out := make([]Profile, 0, len(ids))
	var gone []string
	for i, c := range cmds {
		b, err := c.c.Bytes()
		if err != nil {
			gone = append(gone, ids[i])
			continue
		}
		var pr Profile
		if json.Unmarshal(b, &pr.Customer) != nil {
			gone = append(gone, ids[i])
			continue
		}
		if pb, err := c.p.Bytes(); err == nil {
			_ = json.Unmarshal(pb, &pr.Prefs) // unreadable preferences: the defaults, as the policy reads them
		}
		out = append(out, pr)
	}
	return out, gone, nil
}
