package ratelimit

import (
	"context"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// KeyPrefix is prepended to a limit's name to form its Redis key (redis_rate
// adds its own "rate:" in front).
const KeyPrefix = "herald:"

// Middleware returns a herald.Middleware that lets a message through to the
// provider only while the limit named name, shared through rdb by every
// process using the same name, has room. Otherwise it returns
// herald.RateLimited(name, wait) and does not call the provider. A zero
// limit lets everything through.
//
// Every attempt counts, including ones the provider then refuses: a
// provider's own limit counts them too.
func Middleware(rdb redis.UniversalClient, name string, limit redis_rate.Limit) herald.Middleware {
	return func(next herald.Sender) herald.Sender {
		if limit.IsZero() || limit.Rate <= 0 {
			return next
		}
		if limit.Burst <= 0 {
			limit.Burst = 1
		}
		l := redis_rate.NewLimiter(rdb)
		key := KeyPrefix + name
		return herald.SenderFunc(func(ctx context.Context, m herald.Message) (herald.Receipt, error) {
			res, err := l.Allow(ctx, key, limit)
			if err != nil {
				if ctx.Err() != nil {
					return herald.Receipt{}, ctx.Err()
				}
				return herald.Receipt{}, herald.Temporary(err, "redis", 0)
			}
			if res.Allowed == 0 {
				return herald.Receipt{}, herald.RateLimited(name, max(res.RetryAfter, minWait))
			}
			return next.Send(ctx, m)
		})
	}
}

// minWait keeps a refusal's wait positive even when the limiter rounds it
// to zero.
const minWait = time.Millisecond
