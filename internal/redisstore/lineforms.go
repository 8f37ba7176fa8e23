package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// The lines every journey and message writes most (an event, a send, a
// journey that starts and waits) are written with the constructors below,
// which render the summary from values and keep the values with it
// (TimelineEntry.Line). They are stored as JSON arrays of those values:
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
// follows). Reading renders the same summaries from the values. A line
// keeps the object form, with its summary as text, when it has no values,
// when its summary is no longer what its values render (a note added to
// it), when it has a reason or another outcome, or when its wait is shown
// in a time zone other than UTC.

const (
	formEvent          = "e"
	formEventUnmatched = "n"
	formSent           = "s"
	formJourney        = "j"
	unmatched          = " (matched no workflow)"
	wakeLayout         = "2006-01-02 15:04 MST"
)

// lineValues are what a line's summary is rendered from.
type lineValues struct {
	form string
	// event: name, actor; sent: template, locale, workflow, step;
	// journey: workflow, version, cause, step.
	vals []string
	wake time.Time // journey: when its step's wait ends, in the zone shown; zero for none
}

// summary renders the line's summary; ch is a send's channel.
func (v *lineValues) summary(ch herald.Channel) string {
	switch v.form {
	case formEvent, formEventUnmatched:
		return eventSummary(v.vals[0], v.vals[1], v.form == formEvent)
	case formSent:
		return sentSummary(v.vals[0], ch, v.vals[1], v.vals[2], v.vals[3])
	case formJourney:
		return journeySummary(v.vals[0], v.vals[1], v.vals[2], v.vals[3], v.wake)
	}
	return ""
}

// EventLine is the timeline line of event name (ID id) from actor, with
// what it keeps of the event's data.
func EventLine(id, name, actor string, data map[string]any) herald.TimelineEntry {
	v := &lineValues{form: formEvent, vals: []string{name, actor}}
	return herald.TimelineEntry{Kind: herald.KindEvent, Ref: id, Summary: v.summary(""), Data: data, Line: v}
}

// MarkUnmatched notes on an event's line that it matched no workflow.
func MarkUnmatched(e *herald.TimelineEntry) {
	if v, ok := e.Line.(*lineValues); ok && v.form == formEvent && e.Summary == v.summary("") {
		w := *v
		w.form = formEventUnmatched
		e.Line, e.Summary = &w, w.summary("")
		return
	}
	e.Summary += unmatched
}

// SentLine is the timeline line of message id, sent on ch with template in
// locale; a journey's message names its workflow and step.
func SentLine(id string, ch herald.Channel, template, locale, workflow, step string, data map[string]any) herald.TimelineEntry {
	if workflow == "" {
		step = ""
	}
	v := &lineValues{form: formSent, vals: []string{template, locale, workflow, step}}
	return herald.TimelineEntry{Kind: herald.KindDelivery, Channel: ch, Outcome: herald.OutcomeSent, Ref: id,
		Summary: v.summary(ch), Data: data, Line: v}
}

// JourneyStartLine is the timeline line of journey id of workflow (at
// version) started by cause and now waiting at step until wake (shown in
// wake's time zone), or not waiting when step is empty.
func JourneyStartLine(id, workflow, version, cause, step string, wake time.Time) herald.TimelineEntry {
	if step == "" {
		wake = time.Time{}
	}
	v := &lineValues{form: formJourney, vals: []string{workflow, version, cause, step}, wake: wake}
	return herald.TimelineEntry{Kind: herald.KindJourney, Ref: id, Summary: v.summary(""), Line: v}
}

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
// until wake.
func journeySummary(workflow, version, cause, step string, wake time.Time) string {
	s := fmt.Sprintf("journey %s started (version %s) by %s", workflow, version, cause)
	if step != "" {
		s += fmt.Sprintf("; step %s: waiting until %s", step, wake.Format(wakeLayout))
	}
	return s
}

// wakeAt is the wait's end stored as minutes after the minute of at, read
// back in UTC.
func wakeAt(at time.Time, minutes int64) time.Time {
	return time.Unix((minuteOf(at)+minutes)*60, 0).UTC()
}

// valuesOf returns e's values when its summary is still what they render.
func valuesOf(e herald.TimelineEntry) (*lineValues, bool) {
	v, ok := e.Line.(*lineValues)
	if !ok || v.summary(e.Channel) != e.Summary {
		return nil, false
	}
	return v, true
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

// journeyForm is a started journey's line as values (nil when it has
// none, or waits in a time zone other than UTC): workflow, version, cause,
// step, wake minutes after the minute of its time.
func journeyForm(e herald.TimelineEntry) []any {
	v, ok := valuesOf(e)
	if !ok || v.form != formJourney || e.Kind != herald.KindJourney || !plainLine(e) || len(e.Data) > 0 {
		return nil
	}
	var wake int64
	if v.vals[3] != "" {
		if zone, offset := v.wake.Zone(); zone != "UTC" || offset != 0 {
			return nil
		}
		wake = v.wake.Unix()/60 - minuteOf(e.At)
		if !wakeAt(e.At, wake).Equal(v.wake.Truncate(time.Minute)) {
			return nil // before 1970: not worth a form
		}
	}
	return []any{v.vals[0], v.vals[1], v.vals[2], v.vals[3], wake}
}

func minuteOf(t time.Time) int64 { return t.UnixMilli() / 60000 }

// structuredLine is e's array form, nil when e has none.
func structuredLine(e herald.TimelineEntry) []any {
	t := e.At.UnixMilli()
	switch e.Kind {
	case herald.KindEvent:
		v, ok := valuesOf(e)
		if !ok || !plainLine(e) || (v.form != formEvent && v.form != formEventUnmatched) {
			return nil
		}
		var journey any
		if data := lineData(e); data != nil {
			journey = int64(0)
		}
		return trimLine([]any{t, v.form, e.Ref, v.vals[0], v.vals[1], journey, lineData(e)})
	case herald.KindDelivery:
		v, ok := valuesOf(e)
		if !ok || v.form != formSent || e.Outcome != herald.OutcomeSent || e.Reason != "" || e.Ref == "" {
			return nil
		}
		step := v.vals[3]
		if _, s, ok := journeyOfMessage(e.Ref); ok && s == step {
			step = ""
		}
		return trimLine([]any{t, formSent, e.Ref, lineChannels.abbrev(string(e.Channel)), v.vals[0], v.vals[1], v.vals[2], step, lineData(e)})
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
			{At: jAt, Kind: herald.KindJourney, Ref: jref, Summary: journeySummary(workflow, version, v[0], step, wakeAt(at, wake))},
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
		return []herald.TimelineEntry{{At: at, Kind: herald.KindJourney, Ref: ref, Summary: journeySummary(v[0], v[1], v[2], v[3], wakeAt(at, wake))}}, nil
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

// recentLines reads the customer's newest timeline lines: where a task
// that runs again looks for what its earlier run recorded moments before.
func recentLines(ctx context.Context, c redis.Cmdable, customerID string) *redis.StringSliceCmd {
	return c.LRange(ctx, Key(customerID, "timeline"), 0, 49)
}

// mentions reports whether one of lines is about ref.
func mentions(lines []string, ref string) bool {
	return slices.ContainsFunc(lines, func(line string) bool { return lineHasRef(line, ref) })
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
