package main

import (
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

// withRateLimits wraps each channel's sender in its configured provider rate
// limit, shared by every worker through rdb. Channels without a limit are
// returned as they are.
func withRateLimits(rdb redis.UniversalClient, rl config.RateLimits, senders map[herald.Channel]herald.Sender) map[herald.Channel]herald.Sender {
	limits := map[herald.Channel]ratelimit.Limit{}
	if n := rl.SMTPPerSecond; n > 0 {
		limits[herald.ChannelEmail] = ratelimit.PerSecond(n)
	}
	if n := rl.SlackPerMinute; n > 0 {
		// Slack allows short bursts only: spread the minute's budget out
		// instead of spending it in the first second.
		limits[herald.ChannelSlack] = ratelimit.Limit{Rate: n, Period: time.Minute, Burst: max(1, n/10)}
	}
	out := make(map[herald.Channel]herald.Sender, len(senders))
	for ch, s := range senders {
		if l, ok := limits[ch]; ok {
			s = ratelimit.Middleware(rdb, string(ch), l, rateLimitWait)(s)
		}
		out[ch] = s
	}
	return out
}
