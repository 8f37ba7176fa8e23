// Package ratelimit keeps provider rate limits shared by every herald worker:
// ten worker processes on five machines together send no faster than one
// would.
//
// Rate limits wait, they do not fail. Each limit is one Redis key
// (KeyPrefix + name) holding a GCRA schedule: the theoretical arrival time
// (TAT) of the next call, in microseconds on Redis's own clock, so workers
// whose clocks disagree still share one schedule. One Lua script, run
// atomically in one round trip, reserves the next slot:
//
//	interval = Period / Rate (rounded up to a microsecond)
//	slot     = max(now, TAT - (Burst-1)*interval)
//	TAT      = max(TAT, now) + interval   (only when the slot is taken)
//
// and the key expires a second after TAT. A caller states how long it is
// prepared to wait: a slot further away than that is not reserved (TAT is
// left alone) and the caller learns how far away it is instead.
//
// Limiter.Reserve is that primitive. Middleware builds the sending rule on
// it: a Send waits in the worker for its slot when it is at most MaxWait
// away (and leaves DeadlineReserve of the Send's deadline for the provider
// call), then calls the provider. A slot further away returns
// herald.ERateLimited with RetryAfter set to the wait, without calling the
// provider: the engine re-schedules the delivery for then without counting
// a failure. Sends thus go out at the limit's pace, in the order they
// reserved, instead of a burst of a whole period's budget followed by
// refusals and retries.
package ratelimit
