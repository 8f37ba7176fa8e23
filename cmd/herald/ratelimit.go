package main

import (
	"context"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/ratelimit"
	"github.com/redis/go-redis/v9"
)

// rateLimitWait is the longest a send waits in the worker for its slot
// under a provider rate limit; a slot further away re-schedules the
// delivery for then.
const rateLimitWait = 3 * time.Second

// rateLimits returns the gate of each channel's configured provider rate
// limit, shared by every worker through rdb. Channels without a limit have
// none.
func rateLimits(rdb redis.UniversalClient, rl config.RateLimits) map[herald.Channel]func(context.Context) error {
	limits := map[herald.Channel]ratelimit.Limit{}
	if n := rl.SMTPPerSecond; n > 0 {
		limits[herald.ChannelEmail] = ratelimit.PerSecond(n)
	}
	if n := rl.SlackPerMinute; n > 0 {
		// Slack allows short bursts only: spread the minute's budget out
		// instead of spending it in the first second.
		limits[herald.ChannelSlack] = ratelimit.Limit{Rate: n, Period: time.Minute, Burst: max(1, n/10)}
	}
	out := map[herald.Channel]func(context.Context) error{}
	for ch, l := range limits {
		out[ch] = ratelimit.GateWith(rdb, string(ch), l, ratelimit.Options{MaxWait: rateLimitWait})
	}
	return out
}
