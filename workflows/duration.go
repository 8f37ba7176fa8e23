package workflows

import (
	"fmt"
	"strconv"
	"time"
)

// ParseDuration parses the workflow duration syntax: one or more <int><unit>
// with units w, d, h, m, s, e.g. 48h, 7d, 1h30m, 1w2d. A day is 24 hours: a
// wait is elapsed time, not calendar time (use delay_until_local for
// wall-clock times).
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	rest := s
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad duration %q", s)
		}
		var unit time.Duration
		switch rest[i] {
		case 'w':
			unit = 7 * 24 * time.Hour
		case 'd':
			unit = 24 * time.Hour
		case 'h':
			unit = time.Hour
		case 'm':
			unit = time.Minute
		case 's':
			unit = time.Second
		default:
			return 0, fmt.Errorf("bad duration %q", s)
		}
		// Ten years is far beyond any journey and keeps the sum clear of overflow.
		const limit = 10 * 365 * 24 * time.Hour
		if n > int64(limit/unit) {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		total += time.Duration(n) * unit
		if total > limit {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		rest = rest[i+1:]
	}
	return total, nil
}

// parseClock parses "HH:MM" (24-hour clock).
func parseClock(s string) (hour, minute int, ok bool) {
	if len(s) != 5 || s[2] != ':' {
		return 0, 0, false
	}
	for _, i := range []int{0, 1, 3, 4} {
		if s[i] < '0' || s[i] > '9' {
			return 0, 0, false
		}
	}
	hour = int(s[0]-'0')*10 + int(s[1]-'0')
	minute = int(s[3]-'0')*10 + int(s[4]-'0')
	return hour, minute, hour <= 23 && minute <= 59
}

// nextLocal returns the first instant at or after now at which the wall clock
// in loc reads hour:minute. Building the candidate with time.Date in loc (not
// adding 24h) is what makes it right across DST changes; a wall time that a
// spring-forward skips resolves to the same offset past the gap.
func nextLocal(now time.Time, loc *time.Location, hour, minute int) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	l := now.In(loc)
	for day := 0; ; day++ {
		c := time.Date(l.Year(), l.Month(), l.Day()+day, hour, minute, 0, 0, loc)
		if !c.Before(now) {
			return c
		}
	}
}
