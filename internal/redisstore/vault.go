package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldhq/herald"
)

// VaultTTL is how long sealed values wait for the task that uses them:
// longer than any retry schedule and deferral (quiet hours, caps), so only
// a task re-run by hand from the archive after that finds them gone.
const VaultTTL = 8 * 24 * time.Hour

func vaultKey(customerID, ref string) string { return Key(customerID, "vault", ref) }

// PutSealed stores the values taken out of a task's payload under ref (a
// message or event ID). Erasure deletes them with the customer's keys.
func (s *Store) PutSealed(ctx context.Context, customerID, ref string, vals map[string]any) error {
	b, err := json.Marshal(vals)
	if err != nil {
		return herald.Errorf(herald.EInvalid, "sealed data: %v", err)
	}
	if err := s.rdb.Set(ctx, vaultKey(customerID, ref), b, VaultTTL).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// Sealed returns the values stored under ref; ENotFound once they expired
// or the customer was erased.
func (s *Store) Sealed(ctx context.Context, customerID, ref string) (map[string]any, error) {
	b, err := s.rdb.Get(ctx, vaultKey(customerID, ref)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, herald.Errorf(herald.ENotFound, "sealed data of %s is gone (kept %s, or the customer was erased)", ref, VaultTTL)
	}
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	var vals map[string]any
	if err := json.Unmarshal(b, &vals); err != nil {
		return nil, &herald.Error{Code: herald.EInternal, Message: "sealed data of " + ref + " is corrupt", Err: err}
	}
	return vals, nil
}
