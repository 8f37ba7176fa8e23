package preferences

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNextAllowed(t *testing.T) {
	t.Parallel()
	night := herald.QuietHours{Start: "22:00", End: "08:00"}
	cases := []struct {
		name  string
		zone  string
		qh    herald.QuietHours
		now   string // UTC
		quiet bool
		until string // UTC
	}{
		// Warsaw springs forward 2026-03-29 02:00 CET -> 03:00 CEST (01:00Z).
		{"warsaw spring, window across the gap", "Europe/Warsaw", night, "2026-03-28T23:30:00Z", true, "2026-03-29T06:00:00Z"},
		{"warsaw spring, end inside the gap", "Europe/Warsaw", herald.QuietHours{Start: "22:00", End: "02:30"}, "2026-03-28T23:30:00Z", true, "2026-03-29T01:00:00Z"},
		{"warsaw spring, after the window", "Europe/Warsaw", night, "2026-03-29T06:00:00Z", false, ""},
		// Warsaw falls back 2026-10-25 03:00 CEST -> 02:00 CET (01:00Z).
		{"warsaw fall, window across the change", "Europe/Warsaw", night, "2026-10-24T22:30:00Z", true, "2026-10-25T07:00:00Z"},
		{"warsaw fall, end in repeated hour, first pass", "Europe/Warsaw", herald.QuietHours{Start: "22:00", End: "02:30"}, "2026-10-24T22:30:00Z", true, "2026-10-25T00:30:00Z"},
		{"warsaw fall, end in repeated hour, second pass", "Europe/Warsaw", herald.QuietHours{Start: "22:00", End: "02:30"}, "2026-10-25T01:10:00Z", true, "2026-10-25T01:30:00Z"},
		// New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
		{"new york spring, window across the gap", "America/New_York", herald.QuietHours{Start: "21:00", End: "07:00"}, "2026-03-08T05:00:00Z", true, "2026-03-08T11:00:00Z"},
		{"new york spring, end inside the gap", "America/New_York", herald.QuietHours{Start: "22:00", End: "02:30"}, "2026-03-08T06:00:00Z", true, "2026-03-08T07:00:00Z"},
		// New York falls back 2026-11-01 02:00 EDT -> 01:00 EST (06:00Z).
		{"new york fall, window across the change", "America/New_York", herald.QuietHours{Start: "21:00", End: "07:00"}, "2026-11-01T04:00:00Z", true, "2026-11-01T12:00:00Z"},
		{"new york fall, end in repeated hour, first pass", "America/New_York", herald.QuietHours{Start: "22:00", End: "01:30"}, "2026-11-01T04:00:00Z", true, "2026-11-01T05:30:00Z"},
		{"new york fall, end in repeated hour, second pass", "America/New_York", herald.QuietHours{Start: "22:00", End: "01:30"}, "2026-11-01T06:10:00Z", true, "2026-11-01T06:30:00Z"},
		// East of UTC: Auckland is UTC+13 in January, its evening is UTC's morning.
		{"auckland before midnight", "Pacific/Auckland", night, "2026-01-15T10:00:00Z", true, "2026-01-15T19:00:00Z"},
		{"auckland after midnight", "Pacific/Auckland", night, "2026-01-15T14:00:00Z", true, "2026-01-15T19:00:00Z"},
		{"auckland afternoon", "Pacific/Auckland", night, "2026-01-15T00:00:00Z", false, ""},
		// West of UTC: a same-day window whose end is on the next UTC day.
		{"los angeles working hours", "America/Los_Angeles", herald.QuietHours{Start: "09:00", End: "17:00"}, "2026-06-01T17:00:00Z", true, "2026-06-02T00:00:00Z"},
		{"los angeles evening", "America/Los_Angeles", herald.QuietHours{Start: "09:00", End: "17:00"}, "2026-06-02T01:00:00Z", false, ""},
		{"los angeles night", "America/Los_Angeles", night, "2026-06-02T07:00:00Z", true, "2026-06-02T15:00:00Z"},
		// Bangkok, UTC+7 without DST, and the edges of the window.
		{"bangkok at start", "Asia/Bangkok", herald.QuietHours{Start: "21:00", End: "08:00"}, "2026-06-01T14:00:00Z", true, "2026-06-02T01:00:00Z"},
		{"bangkok a minute before start", "Asia/Bangkok", herald.QuietHours{Start: "21:00", End: "08:00"}, "2026-06-01T13:59:00Z", false, ""},
		{"bangkok a second before end", "Asia/Bangkok", herald.QuietHours{Start: "21:00", End: "08:00"}, "2026-06-02T00:59:59Z", true, "2026-06-02T01:00:00Z"},
		{"bangkok at end", "Asia/Bangkok", herald.QuietHours{Start: "21:00", End: "08:00"}, "2026-06-02T01:00:00Z", false, ""},
		{"utc midnight window", "UTC", herald.QuietHours{Start: "00:00", End: "06:00"}, "2026-06-02T00:00:00Z", true, "2026-06-02T06:00:00Z"},
		{"empty window", "UTC", herald.QuietHours{Start: "08:00", End: "08:00"}, "2026-06-02T08:00:00Z", false, ""},
		{"malformed window", "UTC", herald.QuietHours{Start: "8pm", End: "08:00"}, "2026-06-02T21:00:00Z", false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			quiet, until := NextAllowed(tc.qh, mustLoc(t, tc.zone), utc(tc.now))
			require.Equal(t, tc.quiet, quiet)
			if !tc.quiet {
				require.True(t, until.IsZero())
				return
			}
			require.Equal(t, utc(tc.until), until.UTC(), "until in %s: %s", tc.zone, until)
			require.True(t, until.After(utc(tc.now)))
			again, _ := NextAllowed(tc.qh, mustLoc(t, tc.zone), until)
			require.False(t, again, "the window must be over at its end")
		})
	}
}

func TestParseHHMM(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"00:00": 0, "08:30": 510, "23:59": 1439} {
		got, err := parseHHMM(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "8:30", "24:00", "12:60", "12-30", "ab:cd", "12:30:00", "+1:00"} {
		_, err := parseHHMM(in)
		require.Error(t, err, in)
	}
}
