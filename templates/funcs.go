package templates

import (
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"text/template"
	"time"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/currency"
	"golang.org/x/text/number"
)

// renderState is what the helpers of one instance need to know about the
// render in progress.
type renderState struct {
	s *Set
	f *file
	d Data
}

func (st *renderState) reset(s *Set, f *file, d Data) {
	st.s, st.f, st.d = s, f, d
}

func (st *renderState) now() time.Time {
	if !st.d.Now.IsZero() {
		return st.d.Now
	}
	return st.s.now()
}

// escapeFunc is appended to every output action of a Markdown field.
const escapeFunc = "_md"

// markdownSafe is Markdown a template opted in to with the markdown helper;
// the escaper passes it through.
type markdownSafe string

func funcs(st *renderState) template.FuncMap {
	return template.FuncMap{
		escapeFunc: escapeMarkdownValue,
		"markdown": func(v any) markdownSafe { return markdownSafe(toString(v)) },
		"date":     func(v ...any) (string, error) { return st.formatTime(v, false) },
		"datetime": func(v ...any) (string, error) { return st.formatTime(v, true) },
		"number":   st.number,
		"money":    st.money,
		"default":  defaultValue,
		"upper":    func(v any) string { return cases.Upper(st.f.tag).String(toString(v)) },
		"title":    func(v any) string { return cases.Title(st.f.tag).String(toString(v)) },
		"track":    st.track,
	}
}

// escapeMarkdownValue makes a value from customer or event data literal text
// for Markdown: every ASCII punctuation character gets a backslash (CommonMark
// treats backslash + punctuation as that character, literally), and line
// breaks become spaces so a value cannot start a new block.
func escapeMarkdownValue(v any) string {
	if m, ok := v.(markdownSafe); ok {
		return string(m)
	}
	s := toString(v)
	needs := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; isASCIIPunct(c) || c < ' ' || c == 0x7f {
			needs = true
			break
		}
	}
	if !needs {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isASCIIPunct(c):
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\r' || c == '\n' || c == '\t':
			b.WriteByte(' ')
		case c < ' ' || c == 0x7f:
			// Other control characters have no business in a message.
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isASCIIPunct(c byte) bool {
	return c >= '!' && c <= '/' || c >= ':' && c <= '@' || c >= '[' && c <= '`' || c >= '{' && c <= '~'
}

func toString(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case markdownSafe:
		return string(v)
	case fmt.Stringer:
		return v.String()
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

func (st *renderState) track(target, event string) string {
	if st.d.Track != nil {
		return st.d.Track(target, event)
	}
	if st.s.opts.Track == nil {
		return target
	}
	return st.s.opts.Track(target, event)
}

// defaultValue is used as `{{ .data.x | default "y" }}`. A key that is absent
// is still an error (missingkey=error); default covers empty values. For an
// optional key use `{{ default "y" (index .data "x") }}`.
func defaultValue(def, v any) any {
	if isEmpty(v) {
		return def
	}
	return v
}

func isEmpty(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.String, reflect.Slice, reflect.Map, reflect.Array:
		return rv.Len() == 0
	case reflect.Pointer, reflect.Interface:
		return rv.IsNil()
	}
	return rv.IsZero()
}

// toTime accepts what event data carries: a time.Time, or an RFC 3339 or
// YYYY-MM-DD string (JSON has no time type).
func toTime(v any, loc *time.Location) (time.Time, error) {
	switch v := v.(type) {
	case time.Time:
		return v.In(loc), nil
	case *time.Time:
		if v != nil {
			return v.In(loc), nil
		}
	case string:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return t.In(loc), nil
		}
		// A calendar date has no instant: keep the day as written.
		if t, err := time.ParseInLocation(time.DateOnly, v, loc); err == nil {
			return t, nil
		}
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a YYYY-MM-DD date", v)
	}
	return time.Time{}, fmt.Errorf("cannot use %v (%T) as a time", v, v)
}

func (st *renderState) formatTime(args []any, withTime bool) (string, error) {
	loc := st.d.Customer.Location()
	var t time.Time
	switch len(args) {
	case 0:
		t = st.now().In(loc)
	case 1:
		var err error
		if t, err = toTime(args[0], loc); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("date takes one time, got %d arguments", len(args))
	}
	return formatDate(st.f.tag, t, withTime), nil
}

// toNumber keeps integers as integers so that large IDs or counts are not
// rounded through float64.
func toNumber(v any) (any, error) {
	switch v := v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return v, nil
	case float32:
		return float64(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%v is not a number", v)
		}
		return v, nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		return v.Float64()
	case string:
		if i, err := strconv.ParseInt(v, 10, 64); err == nil {
			return i, nil
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%q is not a number", v)
		}
		return f, nil
	}
	return nil, fmt.Errorf("cannot use %v (%T) as a number", v, v)
}

func (st *renderState) number(v any) (string, error) {
	n, err := toNumber(v)
	if err != nil {
		return "", err
	}
	return st.f.printer.Sprint(number.Decimal(n, number.MaxFractionDigits(3))), nil
}

// money formats an amount in an ISO 4217 currency the way the template's
// locale writes it: the currency's own number of decimals, the locale's
// separators (x/text/message) and symbol (x/text/currency), and the symbol
// before or after the amount.
func (st *renderState) money(v any, code string) (string, error) {
	n, err := toNumber(v)
	if err != nil {
		return "", err
	}
	unit, err := currency.ParseISO(code)
	if err != nil {
		return "", fmt.Errorf("money: %q is not an ISO 4217 currency code", code)
	}
	scale, _ := currency.Standard.Rounding(unit)
	p := st.f.printer
	amount := p.Sprint(number.Decimal(n, number.Scale(scale)))
	sym := p.Sprint(currency.Symbol(unit))
	base, _ := st.f.tag.Base()
	if symbolAfter[base.String()] {
		return amount + "\u00a0" + sym, nil
	}
	if strings.HasPrefix(amount, "-") {
		// -€5.00, not €-5.00.
		return "-" + joinSymbol(sym, amount[1:]), nil
	}
	return joinSymbol(sym, amount), nil
}

// joinSymbol puts a no-break space after an alphabetic symbol (USD 5.00, as
// CLDR's currency spacing does) and none after a sign (€5.00).
func joinSymbol(sym, amount string) string {
	r, _ := utf8.DecodeLastRuneInString(sym)
	if r < utf8.RuneSelf && (r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z') {
		return sym + "\u00a0" + amount
	}
	return sym + amount
}

// symbolAfter lists languages that write the currency after the amount
// (CLDR "#,##0.00 ¤"); the others put it first.
var symbolAfter = map[string]bool{
	"pl": true, "cs": true, "sk": true, "de": true, "fr": true, "es": true, "it": true,
	"pt": true, "ru": true, "uk": true, "sv": true, "fi": true, "nb": true, "da": true,
	"hu": true, "ro": true, "bg": true, "hr": true, "lt": true, "lv": true, "et": true, "vi": true,
}
