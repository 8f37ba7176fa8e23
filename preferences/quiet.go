package preferences

import (
	"fmt"
	"time"

	"github.com/heraldhq/herald"
)

// parseHHMM parses "HH:MM" (24-hour) into minutes after midnight.
func parseHHMM(s string) (int, error) {
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	for i, c := range []byte(s) {
		if i == 2 {
			continue
		}
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not HH:MM", s)
		}
	}
	h := int(s[0]-'0')*10 + int(s[1]-'0')
	m := int(s[3]-'0')*10 + int(s[4]-'0')
	if h > 23 || m > 59 {
		return 0, fmt.Errorf("%q is not a time of day (00:00 to 23:59)", s)
	}
	return h*60 + m, nil
}

// NextAllowed reports whether now falls inside the quiet window qh on the
// wall clock of loc and, if so, the first instant after now at which the
// window is over.
//
// The window follows the customer's wall clock, not a fixed duration, so it
// stays "21:00 to 08:00" across DST changes. An end that falls in a
// spring-forward gap ends the window at the transition (the first instant the
// clock reads past it). In a repeated fall-back hour the clock reads the end
// twice; the window ends at the first such reading after now. A window whose
// Start equals its End, or that does not parse, is empty: it never holds a
// message back (Patch.Validate refuses both).
func NextAllowed(qh herald.QuietHours, loc *time.Location, now time.Time) (inQuiet bool, until time.Time) {
	start, err1 := parseHHMM(qh.Start)
	end, err2 := parseHHMM(qh.End)
	if err1 != nil || err2 != nil || start == end {
		return false, time.Time{}
	}
	if loc == nil {
		loc = time.UTC
	}
	local := now.In(loc)
	t := local.Hour()*60 + local.Minute()
	y, mo, d := local.Date()
	switch {
	case start < end && t >= start && t < end:
		return true, wallAfter(loc, y, mo, d, end, now)
	case start > end && t < end:
		return true, wallAfter(loc, y, mo, d, end, now)
	case start > end && t >= start:
		return true, wallAfter(loc, y, mo, d+1, end, now)
	}
	return false, time.Time{}
}

// wallAfter returns the first instant after now at which loc's wall clock
// reads the date y-mo-d at minute-of-day mins or later on that date.
// time.Date alone is not enough: inside a DST gap or a repeated hour it picks
// one of the readings in a zone-dependent way.
func wallAfter(loc *time.Location, y int, mo time.Month, d, mins int, now time.Time) time.Time {
	naive := time.Date(y, mo, d, mins/60, mins%60, 0, 0, time.UTC)
	target := naive.Unix() / 60
	// want compares t's wall reading in loc with the target reading:
	// negative before it, zero at it, positive past it.
	want := func(t time.Time) int64 {
		l := t.In(loc)
		ly, lm, ld := l.Date()
		reading := time.Date(ly, lm, ld, l.Hour(), l.Minute(), 0, 0, time.UTC).Unix() / 60
		return reading - target
	}
	var offsets []int
	for _, probe := range []time.Duration{-15, -10, -5, 0, 5, 10, 15} {
		_, off := naive.Add(probe * time.Hour).In(loc).Zone()
		dup := false
		for _, o := range offsets {
			dup = dup || o == off
		}
		if !dup {
			offsets = append(offsets, off)
		}
	}
	var best time.Time
	consider := func(t time.Time) {
		if t.After(now) && (best.IsZero() || t.Before(best)) {
			best = t
		}
	}
	exact := false
	for _, off := range offsets {
		t := naive.Add(-time.Duration(off) * time.Second)
		if want(t) == 0 {
			exact = true
			consider(t)
		}
	}
	if !exact {
		// A spring-forward gap swallowed the reading: the window ends when
		// the clock jumps past it, at the start of the later zone.
		for _, off := range offsets {
			t := naive.Add(-time.Duration(off) * time.Second)
			if want(t) > 0 {
				zs, _ := t.In(loc).ZoneBounds()
				if !zs.IsZero() && want(zs) > 0 {
					consider(zs)
				} else {
					consider(t)
				}
			}
		}
	}
	if best.IsZero() {
		// Unreachable for real zones; never return a time in the past.
		return time.Date(y, mo, d, mins/60, mins%60, 0, 0, loc)
	}
	return best.In(loc)
}
