package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// JourneyKey is the key of one journey's state.
func JourneyKey(customerID, journeyID string) string { return journeyKey(customerID, journeyID) }

// JourneyIndexKey is the customer's journey index (see journeysKey).
func JourneyIndexKey(customerID string) string { return journeysKey(customerID) }

// JourneyStates returns the stored states of a customer's journeys,
// running and recent (finished ones expire), as JSON (workflows.State's
// form, whatever the stored one).
func (s *Store) JourneyStates(ctx context.Context, customerID string) ([]json.RawMessage, error) {
	var out []json.RawMessage
	if _, ok := s.rdb.(*redis.ClusterClient); ok {
		// One slot holds the customer's keys; the running journeys'
		// index is enough to find them on a cluster.
		idx, err := s.rdb.HGetAll(ctx, JourneyIndexKey(customerID)).Result()
		if err != nil {
			return nil, herald.Temporary(err, "redis", 0)
		}
		for k, jid := range idx {
			if !strings.HasPrefix(k, "a:") || jid == "" {
				continue
			}
			if b, err := s.JourneyState(ctx, customerID, jid); err == nil && b != nil {
				out = append(out, b)
			}
		}
		return out, nil
	}
	prefix := JourneyKey(customerID, "")
	it := s.rdb.Scan(ctx, 0, prefix+"*", 200).Iterator()
	for it.Next(ctx) {
		if b, err := s.rdb.Get(ctx, it.Val()).Bytes(); err == nil {
			if j, err := journeyStateJSON(b, customerID, strings.TrimPrefix(it.Val(), prefix)); err == nil {
				out = append(out, j)
			}
		}
	}
	return out, it.Err()
}

// JourneyState returns one journey's stored state as JSON (workflows.State's
// form), nil when there is none.
func (s *Store) JourneyState(ctx context.Context, customerID, journeyID string) (json.RawMessage, error) {
	b, err := s.rdb.Get(ctx, JourneyKey(customerID, journeyID)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	j, err := journeyStateJSON(b, customerID, journeyID)
	if err != nil {
		return nil, &herald.Error{Code: herald.EInternal, Message: "journey " + journeyID + " is corrupt", Err: err}
	}
	return j, nil
}
