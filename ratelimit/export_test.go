package ratelimit

import (
	"context"
	"time"
)

// Reservation is a reservation with its fields exported for the tests:
// Slot and Now are microseconds on Redis's clock.
type Reservation struct {
	OK        bool
	Wait      time.Duration
	Slot, Now int64
}

// ReserveSlot is Reserve reporting the slot and the decision time too.
func ReserveSlot(ctx context.Context, l *Limiter, name string, limit Limit, maxWait time.Duration) (Reservation, error) {
	r, err := l.reserve(ctx, name, limit, maxWait)
	return Reservation{OK: r.ok, Wait: r.wait, Slot: r.slot, Now: r.now}, err
}

// Interval is the limit's slot spacing in microseconds.
func Interval(l Limit) int64 { return l.interval() }
