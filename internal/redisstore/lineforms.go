package redisstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
)

// The lines every journey and message writes most (an event, a send, a
// journey that starts and waits) are stored as JSON arrays of the values
// their summary is made of, not as the summary:
//
//	[t, "e", event ID, event, actor, journey, data]        event NAME[ from ACTOR]
//	[t, "n", …]                                            the same, (matched no workflow)
//	[t, "s", message ID, channel, template, locale, workflow, step, data]
//	                                                       sent TEMPLATE by CHANNEL (LOCALE)[, journey WORKFLOW step STEP]
//	[t, "j", journey ID, workflow, version, cause, step, wake]
//	                                                       journey WORKFLOW started (version V) by CAUSE[; step STEP: waiting until WAKE]
//
// Trailing empty values are left out; a send's step is left out when its
// message ID ("<journey>.<step>.<n>") names it; WAKE is minutes after the
// minute of t, shown in UTC. An event's journey is the journey its event
// started, written in the same batch: [ms after t, journey ID, workflow,
// version, step, wake], its cause the event (0 when there is none and data
// follows). Reading gives back the same entries, summaries word for word: a
// line is stored this way only when its summary reads back exactly, and
// every other line (another wording, a reason, a time zone other than UTC)
// keeps the object form.

const (
	formEvent          = "e"
	formEventUnmatched = "n"
	formSent           = "s"
	formJourney        = "j"
	unmatched          = " (matched no workflow)"
	wakeLayout         = "2006-01-02 15:04"
)

var (
	eventSummaryRe   = regexp.MustCompile(`^event (\S+)(?: from (.+?))?( \(matched no workflow\))?$`)
	sentSummaryRe    = regexp.MustCompile(`^sent (\S+) by (\S+) \((\S*)\)(?:, journey (\S+) step (\S+))?$`)
	journeySummaryRe = regexp.MustCompile(`^journey (\S+) started \(version (\S*)\) by (\S+)(?:; step (\S+): waiting until (\d{4}-\d\d-\d\d \d\d:\d\d) UTC)?$`)
)

func eventSummary(name, actor string, matched bool) string {
	s := "event " + name
	if actor != "" {
		s += " from " + actor
	}
	if !matched {
		s += unmatched
	}
	return s
}

func sentSummary(template string, ch herald.Channel, locale, workflow, step string) string {
	s := fmt.Sprintf("sent %s by %s (%s)", template, ch, locale)
	if workflow != "" {
		s += fmt.Sprintf(", journey %s step %s", workflow, step)
	}
	return s
}

// journeySummary is a started journey's line; a step names where it waits
// until wake (unix minutes).
func journeySummary(workflow, version, cause, step string, wake int64) string {
	s := fmt.Sprintf("journey %s started (version %s) by %s", workflow, version, cause)
	if step != "" {
		s += fmt.Sprintf("; step %s: waiting until %s UTC", step, time.Unix(wake*60, 0).UTC().Format(wakeLayout))
	}
	return s
}

// plainLine reports whether e holds nothing but a kind, a time, a ref, a
// summary and data.
func plainLine(e herald.TimelineEntry) bool {
	return e.Ref != "" && e.Channel == "" && e.Outcome == "" && e.Reason == ""
}

// lineData is e's data as a trailing array value (nil when empty).
func lineData(e herald.TimelineEntry) any {
	if len(e.Data) == 0 {
		return nil
	}
	return e.Data
}

// trimLine drops an array's trailing empty values.
func trimLine(a []any) []any {
	for len(a) > 3 {
		switch v := a[len(a)-1].(type) {
		case nil:
		case string:
			if v != "" {
				return a
			}
		case int64:
			if v != 0 {
				return a
			}
		default:
			return a
		}
		a = a[:len(a)-1]
	}
	return a
}

// journeyForm is a started journey's line as values (nil when its summary
// has another wording): workflow, version, cause, step, wake minutes after
// the minute of its time.
func journeyForm(e herald.TimelineEntry) []any {
	if e.Kind != herald.KindJourney || !plainLine(e) || len(e.Data) > 0 {
		return nil
	}
	m := journeySummaryRe.FindStringSubmatch(e.Summary)
	if m == nil {
		return nil
	}
	var wake int64
	if m[4] != "" {
		w, err := time.Parse(wakeLayout, m[5])
		if err != nil {
			return nil
		}
		wake = w.Unix()/60 - minuteOf(e.At)
	}
	if journeySummary(m[1], m[2], m[3], m[4], minuteOf(e.At)+wake) != e.Summary {
		return nil
	}
	return []any{m[1], m[2], m[3], m[4], wake}
}

func minuteOf(t time.Time) int64 { return t.UnixMilli() / 60000 }

// structuredLine is e's array form, nil when e has none.
func structuredLine(e herald.TimelineEntry) []any {
	t := e.At.UnixMilli()
	switch e.Kind {
	case herald.KindEvent:
		m := eventSummaryRe.FindStringSubmatch(e.Summary)
		if !plainLine(e) || m == nil || eventSummary(m[1], m[2], m[3] == "") != e.Summary {
			return nil
		}
		form := formEvent
		if m[3] != "" {
			form = formEventUnmatched
		}
		var journey any
		if data := lineData(e); data != nil {
			journey = int64(0)
		}
		return trimLine([]any{t, form, e.Ref, m[1], m[2], journey, lineData(e)})
	case herald.KindDelivery:
		m := sentSummaryRe.FindStringSubmatch(e.Summary)
		if m == nil || e.Outcome != herald.OutcomeSent || e.Reason != "" || e.Ref == "" || m[2] != string(e.Channel) ||
			sentSummary(m[1], e.Channel, m[3], m[4], m[5]) != e.Summary {
			return nil
		}
		step := m[5]
		if _, s, ok := journeyOfMessage(e.Ref); ok && s == step {
			step = ""
		}
		return trimLine([]any{t, formSent, e.Ref, lineChannels.abbrev(string(e.Channel)), m[1], m[3], m[4], step, lineData(e)})
	case herald.KindJourney:
		if f := journeyForm(e); f != nil {
			return trimLine(append([]any{t, formJourney, e.Ref}, f...))
		}
	}
	return nil
}

// mergeJourney adds journey j, started by event line ev (its array form),
// to it; false when j is not a start by that event.
func mergeJourney(ev []any, j herald.TimelineEntry, evAt time.Time) ([]any, bool) {
	f := journeyForm(j)
	if f == nil || len(ev) < 4 || f[2] != ev[3] || ev[1] == formEventUnmatched {
		return nil, false
	}
	// The wake is counted from the minute of the event's time.
	wake := f[4].(int64) + minuteOf(j.At) - minuteOf(evAt)
	nested := trimLine([]any{j.At.UnixMilli() - evAt.UnixMilli(), j.Ref, f[0], f[1], f[3], wake})
	out := append([]any{}, ev...)
	for len(out) < 5 {
		out = append(out, "")
	}
	var data any
	if len(out) > 6 {
		data = out[6]
	}
	return trimLine(append(out[:5], nested, data)), true
}

// decodeArrayLine reads a line's array form: one entry, or two (the
// journey an event started, then the event) for a merged event line.
func decodeArrayLine(b []byte) ([]herald.TimelineEntry, error) {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if len(a) < 3 {
		return nil, fmt.Errorf("timeline line of %d values", len(a))
	}
	var t int64
	var form, ref string
	if err := unmarshalAll(a[:3], &t, &form, &ref); err != nil {
		return nil, err
	}
	at := unixMS(t)
	str := func(i int) (string, error) {
		var s string
		if i >= len(a) {
			return "", nil
		}
		err := json.Unmarshal(a[i], &s)
		return s, err
	}
	strs := func(from, to int) ([]string, error) {
		var out []string
		for i := from; i < to; i++ {
			s, err := str(i)
			if err != nil {
				return nil, fmt.Errorf("timeline line value %d: %w", i, err)
			}
			out = append(out, s)
		}
		return out, nil
	}
	data := func(i int) (map[string]any, error) {
		if i >= len(a) {
			return nil, nil
		}
		var d map[string]any
		err := json.Unmarshal(a[i], &d)
		return d, err
	}
	switch form {
	case formEvent, formEventUnmatched:
		v, err := strs(3, 5)
		if err != nil {
			return nil, err
		}
		d, err := data(6)
		if err != nil {
			return nil, err
		}
		ev := herald.TimelineEntry{At: at, Kind: herald.KindEvent, Ref: ref, Summary: eventSummary(v[0], v[1], form == formEvent), Data: d}
		if len(a) < 6 || !bytes.HasPrefix(a[5], []byte("[")) {
			return []herald.TimelineEntry{ev}, nil
		}
		var j []json.RawMessage
		if err := json.Unmarshal(a[5], &j); err != nil {
			return nil, err
		}
		j = append(j, make([]json.RawMessage, 6-min(len(j), 6))...)
		var dt, wake int64
		var jref, workflow, version, step string
		if err := unmarshalAll(j[:6], &dt, &jref, &workflow, &version, &step, &wake); err != nil {
			return nil, fmt.Errorf("started journey: %w", err)
		}
		jAt := unixMS(t + dt)
		return []herald.TimelineEntry{
			{At: jAt, Kind: herald.KindJourney, Ref: jref, Summary: journeySummary(workflow, version, v[0], step, minuteOf(at)+wake)},
			ev,
		}, nil
	case formSent:
		v, err := strs(3, 8)
		if err != nil {
			return nil, err
		}
		d, err := data(8)
		if err != nil {
			return nil, err
		}
		ch := herald.Channel(lineChannels.expand(v[0]))
		if _, s, ok := journeyOfMessage(ref); ok && v[4] == "" {
			v[4] = s
		}
		return []herald.TimelineEntry{{At: at, Kind: herald.KindDelivery, Channel: ch, Outcome: herald.OutcomeSent, Ref: ref,
			Summary: sentSummary(v[1], ch, v[2], v[3], v[4]), Data: d}}, nil
	case formJourney:
		v, err := strs(3, 7)
		if err != nil {
			return nil, err
		}
		var wake int64
		if len(a) > 7 {
			if err := json.Unmarshal(a[7], &wake); err != nil {
				return nil, err
			}
		}
		return []herald.TimelineEntry{{At: at, Kind: herald.KindJourney, Ref: ref, Summary: journeySummary(v[0], v[1], v[2], v[3], minuteOf(at)+wake)}}, nil
	}
	return nil, fmt.Errorf("timeline line form %q", form)
}

// unmarshalAll reads values into dst, one each; a missing (nil) value
// leaves its destination as it is.
func unmarshalAll(vals []json.RawMessage, dst ...any) error {
	for i, v := range vals {
		if v == nil {
			continue
		}
		if err := json.Unmarshal(v, dst[i]); err != nil {
			return fmt.Errorf("value %d: %w", i, err)
		}
	}
	return nil
}

// lineHasRef reports whether a stored line (any form) is about ref.
func lineHasRef(line, ref string) bool {
	q := strconv.Quote(ref)
	if !strings.HasPrefix(line, "[") {
		return strings.Contains(line, `"r":`+q) || strings.Contains(line, `"ref":`+q)
	}
	// [t,"form",ref…: the ref follows the second comma.
	i := strings.IndexByte(line, ',')
	if i < 0 {
		return false
	}
	j := strings.IndexByte(line[i+1:], ',')
	if j < 0 {
		return false
	}
	rest := line[i+1+j+1:]
	return strings.HasPrefix(rest, q) && len(rest) > len(q) && (rest[len(q)] == ',' || rest[len(q)] == ']')
}
