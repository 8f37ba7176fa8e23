package preferences

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// Snapshot is what the contact policy needs to know about one customer at
// send time, read in one round trip.
type Snapshot struct {
	Prefs       herald.Preferences
	Suppressed  map[herald.Channel]bool
	RecentSends []time.Time
}

// Snapshot reads the customer's preferences, the suppression state of each
// address and (when class is set) the sends in class since since, with one
// pipeline: the policy check sits on every delivery's hot path.
func (s *Store) Snapshot(ctx context.Context, customerID string, addresses map[herald.Channel]string, class string, since time.Time) (Snapshot, error) {
	out := Snapshot{Suppressed: map[herald.Channel]bool{}}
	if err := checkID(customerID); err != nil {
		return out, err
	}
	pipe := s.rdb.Pipeline()
	prefs := pipe.Get(ctx, prefsKey(customerID))
	supp := map[herald.Channel]*redis.IntCmd{}
	for ch, addr := range addresses {
		if strings.TrimSpace(addr) != "" {
			supp[ch] = pipe.Exists(ctx, suppressKey(ch, addr))
		}
	}
	var sends *redis.StringSliceCmd
	if class != "" {
		sends = pipe.ZRangeByScore(ctx, sendsKey(customerID, class), &redis.ZRangeBy{Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf"})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, herald.Temporary(err, "redis", 0)
	}
	if b, err := prefs.Bytes(); err == nil {
		if err := json.Unmarshal(b, &out.Prefs); err != nil {
			return out, &herald.Error{Code: herald.EInternal, Message: "preferences of " + customerID + " are corrupt", Err: err}
		}
	}
	for ch, cmd := range supp {
		out.Suppressed[ch] = cmd.Val() > 0
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
	return out, nil
}
