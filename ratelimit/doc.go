// Package ratelimit keeps provider rate limits shared by every herald worker.
// The count lives in Redis (GCRA, go-redis/redis_rate), so ten worker
// processes on five machines together send no faster than one would. A
// refused call becomes herald.ERateLimited with the wait the limiter asks
// for: the engine re-schedules the delivery without counting a failure.
package ratelimit
