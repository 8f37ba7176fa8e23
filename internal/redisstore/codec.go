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
	"github.com/heraldhq/herald/workflows"
)

// The stored forms of the records every journey and message leaves behind
// (timeline lines, journey states, ledger records) are compact JSON: arrays
// of values by position where a record is written often (a line that
// starts with "[", see lineforms.go; encodeJourney; encodeSent), objects
// with short field names otherwise, times as unix milliseconds, nothing a
// key or another value already says, and < > & as they are (HTML escaping
// is for JSON embedded in a page; these values never are). Each decoder
// also reads the older forms, so data written before stays readable.
// Callers and the API see the domain types.

// compactJSON encodes v without HTML escaping.
func compactJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// unixMS is the time ms unix milliseconds name, in UTC.
func unixMS(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// Timeline lines.

// codes abbreviates the names of a closed set in stored lines; a name not
// listed is stored as it is.
type codes struct{ short, long map[string]string }

func newCodes(nameCode ...string) codes {
	c := codes{short: map[string]string{}, long: map[string]string{}}
	for i := 0; i < len(nameCode); i += 2 {
		c.short[nameCode[i]], c.long[nameCode[i+1]] = nameCode[i+1], nameCode[i]
	}
	return c
}

func (c codes) abbrev(name string) string {
	if v, ok := c.short[name]; ok {
		return v
	}
	return name
}

func (c codes) expand(code string) string {
	if v, ok := c.long[code]; ok {
		return v
	}
	return code
}

var (
	lineKinds = newCodes(herald.KindEvent, "e", herald.KindMessage, "m", herald.KindDelivery, "d", herald.KindJourney, "j",
		herald.KindPreferences, "p", herald.KindConsent, "c", herald.KindAcknowledgement, "a", herald.KindCustomer, "u")
	lineOutcomes = newCodes(string(herald.OutcomeSent), "s", string(herald.OutcomeSuppressed), "x", string(herald.OutcomeDeferred), "d",
		string(herald.OutcomeFailedTemporary), "t", string(herald.OutcomeFailedPermanent), "f")
	lineChannels = newCodes(string(herald.ChannelEmail), "e", string(herald.ChannelSlack), "s")
)

// storedLine is a timeline line's object form; T comes first, so such a
// line starts with linePrefix, an older one with `{"at":` and an array
// form (lineforms.go) with "[".
type storedLine struct {
	T       int64          `json:"t"`
	Kind    string         `json:"k"`
	Summary string         `json:"s"`
	Channel string         `json:"c,omitempty"`
	Outcome string         `json:"o,omitempty"`
	Reason  string         `json:"w,omitempty"` // why
	Ref     string         `json:"r,omitempty"`
	Data    map[string]any `json:"d,omitempty"`
}

const linePrefix = `{"t":`

func encodeLine(e herald.TimelineEntry) ([]byte, error) {
	if a := structuredLine(e); a != nil {
		return compactJSON(a)
	}
	return compactJSON(storedLine{
		T: e.At.UnixMilli(), Kind: lineKinds.abbrev(e.Kind), Summary: e.Summary,
		Channel: lineChannels.abbrev(string(e.Channel)), Outcome: lineOutcomes.abbrev(string(e.Outcome)),
		Reason: e.Reason, Ref: e.Ref, Data: e.Data,
	})
}

// decodeLine reads a stored line of any form: one entry, or two for an
// event line that holds the journey its event started (lineforms.go).
func decodeLine(b []byte) ([]herald.TimelineEntry, error) {
	if bytes.HasPrefix(b, []byte("[")) {
		return decodeArrayLine(b)
	}
	var e herald.TimelineEntry
	if !bytes.HasPrefix(b, []byte(linePrefix)) {
		err := json.Unmarshal(b, &e)
		return []herald.TimelineEntry{e}, err
	}
	var l storedLine
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, err
	}
	return []herald.TimelineEntry{{
		At: unixMS(l.T), Kind: lineKinds.expand(l.Kind), Summary: l.Summary,
		Channel: herald.Channel(lineChannels.expand(l.Channel)), Outcome: herald.Outcome(lineOutcomes.expand(l.Outcome)),
		Reason: l.Reason, Ref: l.Ref, Data: l.Data,
	}}, nil
}

// Journey states.

// storedJourney is a journey's state in the object form (stored before the
// array form, encodeJourney), under its key, which names
// the customer and the journey. Times but the start are milliseconds after
// the start; history entries and digest events are tuples. Step and StepSeq
// are left out (both nil) when the last history entry names them, as it
// does while a journey waits at the step it entered last.
type storedJourney struct {
	Workflow string  `json:"w"`
	Version  string  `json:"v,omitempty"`
	Status   *string `json:"s,omitempty"` // nil: active
	Step     *string `json:"p,omitempty"`
	StepSeq  *int    `json:"q,omitempty"`
	Started  int64   `json:"t"`
	Updated  int64   `json:"u,omitempty"`
	Wake     *int64  `json:"wk,omitempty"`
	WaitKind string  `json:"k,omitempty"`
	// Converted is when the goal was reached.
	Converted *int64            `json:"cv,omitempty"`
	Data      map[string]any    `json:"d,omitempty"`
	History   [][]any           `json:"h,omitempty"` // [at, kind, detail, step, seq]
	Arms      map[string]string `json:"a,omitempty"`
	Digest    *storedDigest     `json:"g,omitempty"`
}

type storedDigest struct {
	Step   string  `json:"s"`
	Events [][]any `json:"e"` // [at, id, data]
}

const journeyPrefix = `{"w":`

// journeyRest is the trailing object of a journey state's array form: the
// fields the array holds no place for.
type journeyRest struct {
	Status    *string           `json:"s,omitempty"`
	Step      *string           `json:"p,omitempty"`
	StepSeq   *int              `json:"q,omitempty"`
	Converted *int64            `json:"cv,omitempty"`
	Arms      map[string]string `json:"a,omitempty"`
	Digest    *storedDigest     `json:"g,omitempty"`
}

// trimTuple drops a tuple's trailing zero values.
func trimTuple(t []any) []any {
	for len(t) > 1 {
		switch v := t[len(t)-1].(type) {
		case string:
			if v != "" {
				return t
			}
		case int:
			if v != 0 {
				return t
			}
		case map[string]any:
			if v != nil {
				return t
			}
		default:
			return t
		}
		t = t[:len(t)-1]
	}
	return t
}

// ceilMS is t in unix milliseconds, rounded up: a wake time kept to the
// millisecond is never before the journey is due, and equals its
// waiting-index score (WaitScore).
func ceilMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if time.UnixMilli(ms).Before(t) {
		ms++
	}
	return ms
}

// A journey's state is stored as a JSON array, its most frequent fields by
// position and the rest in a trailing object (storedJourney's fields that
// an array does not hold):
//
//	[workflow, version, started, wake, data, history, updated, wait kind, {rest}]
//
// with trailing empty values left out; wake and updated are milliseconds
// after the start, wake null when none. The wait kind is left out ("")
// when it is the last history entry's kind (a wait step's "wait"), and is
// "-" when there is none but there is such an entry. The history is one
// string when its values allow (historyString), else tuples. The object
// form (journeyPrefix) and the long form (workflows.State) still read.

// historyKinds abbreviates the history kinds a journey writes most.
var historyKinds = newCodes("start", "s", "send", "m", "wait", "w", "event", "e", "timeout", "t", "branch", "b", "split", "p", "goal", "g", "digest", "d")

var (
	historyKindRe  = regexp.MustCompile(`^[a-z_]+$`)
	historyValueRe = regexp.MustCompile(`^[^ ,]*$`)
)

// historyString writes a history as entries joined by ",", each "kind
// detail step" less trailing empty values. The kind is abbreviated and
// followed by "~seq" when seq is not one past the entry before's, and by
// "@ms" when the entry is not at the start. ok is false when a value
// would not read back (a kind not in [a-z_] or one that is another's
// code, a space or comma in a detail or step).
func historyString(h []workflows.HistoryEntry, t0 int64) (string, bool) {
	var b strings.Builder
	prev := -1
	for i, e := range h {
		code := historyKinds.abbrev(e.Kind)
		if !historyKindRe.MatchString(e.Kind) || code == e.Kind && historyKinds.long[code] != "" ||
			!historyValueRe.MatchString(e.Detail) || !historyValueRe.MatchString(e.Step) {
			return "", false
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(code)
		if e.Seq != prev+1 {
			b.WriteString("~" + strconv.Itoa(e.Seq))
		}
		if d := e.At.UnixMilli() - t0; d != 0 {
			b.WriteString("@" + strconv.FormatInt(d, 10))
		}
		prev = e.Seq
		switch {
		case e.Step != "":
			b.WriteString(" " + e.Detail + " " + e.Step)
		case e.Detail != "":
			b.WriteString(" " + e.Detail)
		}
	}
	return b.String(), true
}

func parseHistory(s string, t0 int64) ([]workflows.HistoryEntry, error) {
	if s == "" {
		return nil, nil
	}
	var out []workflows.HistoryEntry
	prev := -1
	for _, entry := range strings.Split(s, ",") {
		f := strings.Split(entry, " ")
		if len(f) > 3 {
			return nil, fmt.Errorf("history entry %q", entry)
		}
		f = append(f, "", "")
		kind, at := f[0], int64(0)
		var err error
		if k, d, ok := strings.Cut(kind, "@"); ok {
			if at, err = strconv.ParseInt(d, 10, 64); err != nil {
				return nil, fmt.Errorf("history entry %q: %w", entry, err)
			}
			kind = k
		}
		seq := prev + 1
		if k, n, ok := strings.Cut(kind, "~"); ok {
			if seq, err = strconv.Atoi(n); err != nil {
				return nil, fmt.Errorf("history entry %q: %w", entry, err)
			}
			kind = k
		}
		prev = seq
		out = append(out, workflows.HistoryEntry{At: unixMS(t0 + at), Kind: historyKinds.expand(kind), Detail: f[1], Step: f[2], Seq: seq})
	}
	return out, nil
}

func encodeJourney(s workflows.State) ([]byte, error) {
	t0 := s.StartedAt.UnixMilli()
	since := func(t time.Time) int64 { return t.UnixMilli() - t0 }
	opt := func(t time.Time) *int64 {
		if t.IsZero() {
			return nil
		}
		d := since(t)
		return &d
	}
	// rest holds what the array has no place for.
	var rest journeyRest
	if s.Status != workflows.StatusActive {
		rest.Status = &s.Status
	}
	if n := len(s.History); n == 0 || s.History[n-1].Step != s.Step || s.History[n-1].Seq != s.StepSeq {
		rest.Step, rest.StepSeq = &s.Step, &s.StepSeq
	}
	rest.Converted, rest.Arms = opt(s.ConvertedAt), s.Arms
	if d := s.Digest; d != nil {
		rest.Digest = &storedDigest{Step: d.Step, Events: [][]any{}}
		for _, ev := range d.Events {
			rest.Digest.Events = append(rest.Digest.Events, trimTuple([]any{since(ev.At), ev.ID, ev.Data}))
		}
	}
	var wake any
	if !s.WakeAt.IsZero() {
		wake = ceilMS(s.WakeAt) - t0
	}
	var data any
	if s.Data != nil {
		data = s.Data
	}
	var history any
	if len(s.History) > 0 {
		if h, ok := historyString(s.History, t0); ok {
			history = h
		} else {
			var tuples [][]any
			for _, h := range s.History {
				tuples = append(tuples, trimTuple([]any{since(h.At), h.Kind, h.Detail, h.Step, h.Seq}))
			}
			history = tuples
		}
	}
	waitKind := s.WaitKind
	switch last := lastHistoryKind(s.History); {
	case waitKind == last:
		waitKind = ""
	case waitKind == "":
		waitKind = "-"
	}
	a := []any{s.WorkflowID, s.Version, t0, wake, data, history, since(s.UpdatedAt), waitKind}
	if rest.Status != nil || rest.Step != nil || rest.Converted != nil || rest.Arms != nil || rest.Digest != nil {
		a = append(a, rest)
	}
	for len(a) > 3 {
		switch v := a[len(a)-1].(type) {
		case nil:
		case string:
			if v != "" {
				return compactJSON(a)
			}
		case int64:
			if v != 0 {
				return compactJSON(a)
			}
		default:
			return compactJSON(a)
		}
		a = a[:len(a)-1]
	}
	return compactJSON(a)
}

// decodeJourney reads a stored state of journeyID, the customer's.
func decodeJourney(b []byte, customerID, journeyID string) (workflows.State, error) {
	var s workflows.State
	var sj storedJourney
	switch {
	case bytes.HasPrefix(b, []byte("[")):
		var a []json.RawMessage
		if err := json.Unmarshal(b, &a); err != nil {
			return s, err
		}
		if len(a) < 3 || len(a) > 9 {
			return s, fmt.Errorf("journey state of %d values", len(a))
		}
		a = append(a, make([]json.RawMessage, 9-len(a))...)
		var history json.RawMessage
		var rest journeyRest
		for i, dst := range []any{&sj.Workflow, &sj.Version, &sj.Started, &sj.Wake, &sj.Data, &history, &sj.Updated, &sj.WaitKind, &rest} {
			if a[i] == nil {
				continue
			}
			if err := json.Unmarshal(a[i], dst); err != nil {
				return s, fmt.Errorf("journey state value %d: %w", i, err)
			}
		}
		sj.Status, sj.Step, sj.StepSeq, sj.Converted, sj.Arms, sj.Digest = rest.Status, rest.Step, rest.StepSeq, rest.Converted, rest.Arms, rest.Digest
		if bytes.HasPrefix(history, []byte(`"`)) {
			var h string
			if err := json.Unmarshal(history, &h); err != nil {
				return s, err
			}
			var err error
			if s.History, err = parseHistory(h, sj.Started); err != nil {
				return s, err
			}
		} else if history != nil {
			if err := json.Unmarshal(history, &sj.History); err != nil {
				return s, fmt.Errorf("history: %w", err)
			}
		}
	case bytes.HasPrefix(b, []byte(journeyPrefix)):
		if err := json.Unmarshal(b, &sj); err != nil {
			return s, err
		}
	default:
		err := json.Unmarshal(b, &s)
		return s, err
	}
	at := func(d int64) time.Time { return unixMS(sj.Started + d) }
	opt := func(d *int64) time.Time {
		if d == nil {
			return time.Time{}
		}
		return at(*d)
	}
	s = workflows.State{
		JourneyID: journeyID, WorkflowID: sj.Workflow, Version: sj.Version, CustomerID: customerID,
		Status: workflows.StatusActive, History: s.History,
		WakeAt: opt(sj.Wake), WaitKind: sj.WaitKind, StartedAt: unixMS(sj.Started), UpdatedAt: at(sj.Updated),
		Data: sj.Data, Arms: sj.Arms, ConvertedAt: opt(sj.Converted),
	}
	if sj.Status != nil {
		s.Status = *sj.Status
	}
	array := bytes.HasPrefix(b, []byte("["))
	for _, t := range sj.History {
		var h workflows.HistoryEntry
		var d int64
		if err := tuple(t, &d, &h.Kind, &h.Detail, &h.Step, &h.Seq); err != nil {
			return s, fmt.Errorf("history: %w", err)
		}
		h.At = at(d)
		s.History = append(s.History, h)
	}
	if array {
		switch s.WaitKind {
		case "":
			s.WaitKind = lastHistoryKind(s.History)
		case "-":
			s.WaitKind = ""
		}
	}
	switch n := len(s.History); {
	case sj.Step != nil || sj.StepSeq != nil:
		if sj.Step != nil {
			s.Step = *sj.Step
		}
		if sj.StepSeq != nil {
			s.StepSeq = *sj.StepSeq
		}
	case n > 0:
		s.Step, s.StepSeq = s.History[n-1].Step, s.History[n-1].Seq
	}
	if g := sj.Digest; g != nil {
		s.Digest = &workflows.DigestBuffer{Step: g.Step, Events: []workflows.DigestEvent{}}
		for _, t := range g.Events {
			var ev workflows.DigestEvent
			var d int64
			if err := tuple(t, &d, &ev.ID, &ev.Data); err != nil {
				return s, fmt.Errorf("digest: %w", err)
			}
			ev.At = at(d)
			s.Digest.Events = append(s.Digest.Events, ev)
		}
	}
	return s, nil
}

// lastHistoryKind is the kind of a history's last entry ("" when empty).
func lastHistoryKind(h []workflows.HistoryEntry) string {
	if len(h) == 0 {
		return ""
	}
	return h[len(h)-1].Kind
}

// tuple reads a decoded JSON array into dst (*int64, *int, *string or
// *map[string]any); missing trailing values stay zero.
func tuple(t []any, dst ...any) error {
	if len(t) == 0 || len(t) > len(dst) {
		return fmt.Errorf("tuple of %d values, want 1 to %d", len(t), len(dst))
	}
	for i, v := range t {
		ok := true
		switch p := dst[i].(type) {
		case *int64:
			var f float64
			f, ok = v.(float64)
			*p = int64(f)
		case *int:
			var f float64
			f, ok = v.(float64)
			*p = int(f)
		case *string:
			*p, ok = v.(string)
		case *map[string]any:
			*p, ok = v.(map[string]any)
			ok = ok || v == nil
		}
		if !ok {
			return fmt.Errorf("tuple value %d: unexpected %T", i, v)
		}
	}
	return nil
}

// journeyStateJSON is a stored state in the API's form (workflows.State).
func journeyStateJSON(b []byte, customerID, journeyID string) (json.RawMessage, error) {
	if !bytes.HasPrefix(b, []byte(journeyPrefix)) && !bytes.HasPrefix(b, []byte("[")) {
		return b, nil
	}
	s, err := decodeJourney(b, customerID, journeyID)
	if err != nil {
		return nil, err
	}
	return json.Marshal(s)
}

// Ledger records.

// storedSent is a ledger record's object form, as stored before the array
// form (encodeSent). Its key ends in
// "<message>:<channel>", so the channel is left out when it is the key's,
// and a journey message's journey and step when the message ID
// ("<journey>.<step>.<n>") says them (FromID). At is the older records'
// time, T the current ones'.
type storedSent struct {
	Channel    herald.Channel `json:"ch,omitempty"`
	ProviderID string         `json:"pid,omitempty"`
	T          int64          `json:"t,omitempty"`
	At         time.Time      `json:"at,omitzero"`
	Workflow   string         `json:"wf,omitempty"`
	Journey    string         `json:"j,omitempty"`
	Step       string         `json:"st,omitempty"`
	FromID     bool           `json:"js,omitempty"`
	Topic      string         `json:"tp,omitempty"`
	Template   string         `json:"tm,omitempty"`
	Locale     string         `json:"lc,omitempty"`
}

// splitDelivery splits a delivery ID into its message and channel
// ("<message>:<channel>"); ok is false for one of another shape.
func splitDelivery(deliveryID string) (messageID string, ch herald.Channel, ok bool) {
	i := strings.LastIndexByte(deliveryID, ':')
	if i < 0 {
		return deliveryID, "", false
	}
	return deliveryID[:i], herald.Channel(deliveryID[i+1:]), true
}

// journeyOfMessage reads "<journey>.<step>.<n>", the ID of a journey's
// message; ok is false for another ID.
func journeyOfMessage(messageID string) (journey, step string, ok bool) {
	journey, rest, ok := strings.Cut(messageID, ".")
	i := strings.LastIndexByte(rest, '.')
	if !ok || i <= 0 || journey == "" {
		return "", "", false
	}
	if _, err := strconv.Atoi(rest[i+1:]); err != nil {
		return "", "", false
	}
	return journey, rest[:i], true
}

// A ledger record is stored as a JSON array:
//
//	[t, provider ID, topic, template, locale, workflow, journey, step, channel]
//
// less trailing empty values; journey is 1 when the message ID names the
// journey and the step (step is then left out), channel is left out when it
// is the key's. The object form (storedSent) still reads.

func encodeSent(deliveryID string, r SentRecord) ([]byte, error) {
	var t int64
	if !r.SentAt.IsZero() {
		t = r.SentAt.UnixMilli()
	}
	ch := string(r.Channel)
	msg, keyCh, ok := splitDelivery(deliveryID)
	if ok && keyCh == r.Channel {
		ch = ""
	}
	var journey any = r.Journey
	step := r.Step
	if j, s, ok := journeyOfMessage(msg); ok && r.Journey != "" && j == r.Journey && s == r.Step {
		journey, step = 1, ""
	}
	a := []any{t, r.ProviderID, r.Topic, r.Template, r.Locale, r.Workflow, journey, step, ch}
	for len(a) > 1 {
		if v, ok := a[len(a)-1].(string); !ok || v != "" {
			break
		}
		a = a[:len(a)-1]
	}
	return compactJSON(a)
}

func decodeSent(deliveryID string, b []byte) (SentRecord, error) {
	msg, ch, ok := splitDelivery(deliveryID)
	if bytes.HasPrefix(b, []byte("[")) {
		var a []json.RawMessage
		if err := json.Unmarshal(b, &a); err != nil {
			return SentRecord{}, err
		}
		if len(a) == 0 || len(a) > 9 {
			return SentRecord{}, fmt.Errorf("ledger record of %d values", len(a))
		}
		a = append(a, make([]json.RawMessage, 9-len(a))...)
		var t int64
		var r SentRecord
		fromID := bytes.Equal(a[6], []byte("1"))
		if fromID {
			a[6] = nil
		}
		if err := unmarshalAll(a, &t, &r.ProviderID, &r.Topic, &r.Template, &r.Locale, &r.Workflow, &r.Journey, &r.Step, &r.Channel); err != nil {
			return SentRecord{}, fmt.Errorf("ledger record: %w", err)
		}
		if t != 0 {
			r.SentAt = unixMS(t)
		}
		if r.Channel == "" && ok {
			r.Channel = ch
		}
		if fromID {
			r.Journey, r.Step, _ = journeyOfMessage(msg)
		}
		return r, nil
	}
	var st storedSent
	if err := json.Unmarshal(b, &st); err != nil {
		return SentRecord{}, err
	}
	r := SentRecord{
		Channel: st.Channel, ProviderID: st.ProviderID, SentAt: st.At, Workflow: st.Workflow,
		Journey: st.Journey, Step: st.Step, Topic: st.Topic, Template: st.Template, Locale: st.Locale,
	}
	if st.T != 0 {
		r.SentAt = unixMS(st.T)
	}
	if r.Channel == "" && ok {
		r.Channel = ch
	}
	if st.FromID {
		r.Journey, r.Step, _ = journeyOfMessage(msg)
	}
	return r, nil
}
