package templates

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/yuin/goldmark/ast"
	"golang.org/x/text/language"
)

// Check renders every template in every locale with its `sample:` data and
// reports, at file:line, what would fail or be refused at send time, or
// reach the reader other than written: a missing key, a helper given the
// wrong kind of value, an empty subject, a button URL that is not absolute,
// text cut to fit Slack's limits, Markdown left as text (an emphasis marker
// that did not pair, a stray backtick, a link that did not form). On a Set
// Load returned with Problems, it checks every file that parsed.
func (s *Set) Check() Problems {
	var probs Problems
	for _, ts := range []map[string]*tmpl{s.templates, s.broken} {
		for _, t := range ts {
			for _, f := range t.files {
				probs = append(probs, s.checkFile(f)...)
			}
		}
	}
	probs.sort()
	return probs
}

func (s *Set) checkFile(f *file) Problems {
	var probs Problems
	var ck renderCheck
	var spotted []found
	ck.markdown = func(field string, doc ast.Node, src []byte) {
		for _, l := range leftovers(doc, src) {
			spotted = append(spotted, found{field: field, leftover: l, line: f.lineOf(field, src, l)})
		}
	}
	c, err := s.renderChecked(f, f.sampleData(), partAll, &ck)
	if err != nil {
		var p Problem
		if !errors.As(err, &p) {
			p = Problem{File: f.path, Message: err.Error()}
		}
		if f.sample == nil && strings.HasPrefix(p.Message, "missing key") {
			p.Message += " (add it under sample: so the template can be checked)"
		}
		probs = append(probs, p)
		// The Markdown is still checked: rendered again with missing keys
		// as no value, up to any other failure. What depends on the
		// values (an empty subject, a URL) is not judged from that.
		spotted, ck = nil, renderCheck{markdown: ck.markdown, lenient: true}
		c, _ = s.renderChecked(f, f.sampleData(), partAll, &ck)
		return append(probs, f.leftoverProblems(c, &ck, spotted)...)
	}
	if c.Subject == "" {
		probs.add(f.path, f.lines[tSubject], "the subject renders empty")
	}
	if !json.Valid(c.SlackBlocks) {
		probs.add(f.path, 0, "slack blocks are not valid JSON")
	}
	probs = append(probs, f.leftoverProblems(c, &ck, spotted)...)

	slackLine := f.lines[tBody]
	if l, ok := f.lines[tSlack]; ok {
		slackLine = l
	}
	for _, n := range ck.slack {
		line := slackLine
		if n.action >= 0 && n.action < len(f.actions) {
			line = f.actions[n.action].line
		}
		probs.add(f.path, line, "%s", n.msg)
	}
	for i, a := range ck.actions {
		if a.URL == "" {
			continue
		}
		if u, err := url.Parse(a.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			probs.add(f.path, f.actions[i].line, "action url %q is not an absolute http(s) URL", a.URL)
		}
	}
	return probs
}

// leftoverProblems reports the Markdown a render left as text: what the
// Markdown fields spotted, and any in the plain ones (subject, preheader,
// button labels).
func (f *file) leftoverProblems(c herald.Content, ck *renderCheck, spotted []found) Problems {
	var probs Problems
	where := f.name + " (" + f.locale + ")"
	for _, fd := range spotted {
		channels := "Slack"
		if fd.field == tBody {
			channels = "email and Slack"
			if _, ok := f.lines[tSlack]; ok {
				channels = "email"
			}
		}
		probs.add(f.path, fd.line, "template %s: %q is left as text in %s: %q: %s", where, fd.marker, channels, fd.fragment(), fd.hint())
	}
	plain := []struct {
		field, what, text string
	}{{tSubject, "the subject", c.Subject}, {tPreheader, "the preheader", c.Preheader}}
	for i, a := range ck.actions {
		plain = append(plain, struct{ field, what, text string }{actionName(i, "label"), fmt.Sprintf("action %d's label", i+1), a.Label})
	}
	for _, p := range plain {
		for _, l := range plainLeftovers(p.text) {
			probs.add(f.path, f.lines[p.field], "template %s: %s is plain text, not Markdown: %q shows as is: %q", where, p.what, l.marker, l.fragment())
		}
	}
	return probs
}

// CheckLocales reports, per template, each locale of want that neither its
// own file nor a parent's (zh-Hant-TW → zh-Hant → zh) serves, with the
// locale it falls back to, so that a missing translation is not sent
// unnoticed in another language. Empty want means every locale some
// template has.
func (s *Set) CheckLocales(want []string) Problems {
	var probs Problems
	if len(want) == 0 {
		seen := map[string]bool{}
		for _, t := range s.templates {
			for _, f := range t.files {
				if !seen[f.locale] {
					seen[f.locale] = true
					want = append(want, f.locale)
				}
			}
		}
		slices.Sort(want)
	}
	tags := make([]string, 0, len(want))
	for _, l := range want {
		tag, err := language.Parse(l)
		if err != nil {
			probs.add("", 0, "content.locales: %q is not a BCP 47 locale such as en, ja or zh-Hant", l)
			continue
		}
		tags = append(tags, tag.String())
	}
	for _, name := range s.Names() {
		t := s.templates[name]
		for _, l := range tags {
			used := t.match(l).locale
			if !inChain(l, used) {
				probs.add(name, 0, "template %s has no %s (falls back to %s)", name, l, used)
			}
		}
	}
	return probs
}

// inChain reports whether used is locale or one of its parents, cutting
// subtags from the end: zh-Hant-TW, zh-Hant, zh.
func inChain(locale, used string) bool {
	for {
		if strings.EqualFold(locale, used) {
			return true
		}
		i := strings.LastIndexByte(locale, '-')
		if i < 0 {
			return false
		}
		locale = locale[:i]
	}
}

// found is a leftover located in a file.
type found struct {
	leftover
	field string
	line  int
}

// leftover is Markdown syntax that reaches the reader as text.
type leftover struct {
	pos           int // where it starts in the executed field
	marker        string
	shown         string // the marker, or the marker to its partner
	paired        bool   // a partner on its line is shown with it
	before, after string // the text around it, on its line
}

func (l leftover) fragment() string {
	const n = 12 // characters each side
	b, a := []rune(l.before), []rune(l.after)
	before, after := string(b[max(len(b)-n, 0):]), string(a[:min(len(a), n)])
	if len(b) > n {
		before = "…" + before
	}
	if len(a) > n {
		after += "…"
	}
	return before + l.shown + after
}

func (l leftover) hint() string {
	switch l.marker[0] {
	case '`':
		return "a backtick with no partner; close the code span or write \\` for a literal one"
	case '[':
		return "it did not become a link; the (url) must follow the ] directly and hold no spaces (write %20), or write \\[ for a literal bracket"
	}
	if !l.paired {
		return fmt.Sprintf("no closing %[1]s on its line; put %[1]s after the last word to emphasise, or write %[2]s for literal ones", l.marker, strings.Repeat(`\`+l.marker[:1], len(l.marker)))
	}
	return "Markdown did not take it as emphasis: a marker between a letter and punctuation such as $, ￥ or （ neither opens nor closes; put a space outside the marker or move the markers to enclose whole words"
}

// leftovers finds, in the literal text of a parsed Markdown field, the
// syntax that did not take: runs of two or more *, _ or ~, backticks, and
// [text](url) that is not a link. Escaped characters (data is escaped) are
// literal by intent and skipped; single * and _ are too common in prose to
// call.
func leftovers(doc ast.Node, src []byte) []leftover {
	var out []leftover
	start, stop := -1, -1
	flush := func() {
		if start >= 0 {
			out = scanLeftovers(out, src, start, stop)
		}
		start, stop = -1, -1
	}
	_ = ast.Walk(doc, func(n ast.Node, entering bool) (ast.WalkStatus, error) {
		switch n := n.(type) {
		case *ast.Text:
			if !entering {
				return ast.WalkContinue, nil
			}
			if n.IsRaw() {
				flush()
				return ast.WalkContinue, nil
			}
			// Neighbouring text nodes are one run: goldmark splits text
			// at every delimiter it tried.
			if start < 0 || n.Segment.Start != stop {
				flush()
				start = n.Segment.Start
			}
			stop = n.Segment.Stop
			if n.SoftLineBreak() || n.HardLineBreak() {
				flush()
			}
			return ast.WalkContinue, nil
		case *ast.CodeSpan, *ast.RawHTML, *ast.AutoLink, *ast.CodeBlock, *ast.FencedCodeBlock, *ast.HTMLBlock:
			flush()
			return ast.WalkSkipChildren, nil
		}
		flush()
		return ast.WalkContinue, nil
	})
	flush()
	return out
}

func scanLeftovers(out []leftover, src []byte, start, stop int) []leftover {
	v := src[start:stop]
	for i := 0; i < len(v); i++ {
		end := 0
		switch c := v[i]; c {
		case '\\':
			i++ // an escaped character is literal on purpose
			continue
		case '*', '_', '~', '`':
			j := i
			for j < len(v) && v[j] == c {
				j++
			}
			if c != '`' && j-i < 2 {
				continue
			}
			end = j
			// Its partner on the same line, if also left, is reported
			// with it.
			if k := partner(v, i, j); k > 0 {
				out = append(out, leftoverAt(src, start+i, start+j, start+k))
				i = k - 1
				continue
			}
		case '[':
			if end = linkLike(v, i); end == 0 {
				continue
			}
		default:
			continue
		}
		out = append(out, leftoverAt(src, start+i, start+end, start+end))
		i = end - 1
	}
	return out
}

// partner returns the end of the next run of exactly the marker v[i:j] in
// v after j and on the same line, or 0.
func partner(v []byte, i, j int) int {
	m := v[i:j]
	for k := j; k < len(v) && v[k] != '\n'; k++ {
		switch {
		case v[k] == '\\':
			k++
		case v[k] == m[0]:
			e := k
			for e < len(v) && v[e] == m[0] {
				e++
			}
			if e-k == len(m) {
				return e
			}
			k = e - 1
		}
	}
	return 0
}

// linkLike returns the end of "[text](url)" (or "[text] (url)") starting at
// v[i], or 0.
func linkLike(v []byte, i int) int {
	j := i + 1
	for ; j < len(v) && v[j] != ']'; j++ {
		if v[j] == '\\' {
			j++
		}
	}
	if j >= len(v) || j == i+1 {
		return 0
	}
	j++
	if j < len(v) && v[j] == ' ' {
		j++
	}
	if j >= len(v) || v[j] != '(' {
		return 0
	}
	k := bytes.IndexByte(v[j:], ')')
	if k < 0 {
		return 0
	}
	return j + k + 1
}

// leftoverAt describes the marker src[a:b], shown as src[a:end], with the
// text of its line around it as the reader sees it (escapes resolved).
func leftoverAt(src []byte, a, b, end int) leftover {
	ls := bytes.LastIndexByte(src[:a], '\n') + 1
	le := len(src)
	if k := bytes.IndexByte(src[end:], '\n'); k >= 0 {
		le = end + k
	}
	var before, shown, after bytes.Buffer
	writeText(&before, src[ls:a], false)
	writeText(&shown, src[a:end], false)
	writeText(&after, src[end:le], false)
	return leftover{pos: a, marker: string(src[a:b]), shown: shown.String(), paired: end > b, before: before.String(), after: after.String()}
}

// plainLeftovers finds Markdown in a plain-text field (subject, preheader,
// button label), where it always shows as is.
func plainLeftovers(s string) []leftover {
	var out []leftover
	for i := 0; i < len(s); i++ {
		end := 0
		switch c := s[i]; c {
		case '*', '_', '~', '`':
			j := i
			for j < len(s) && s[j] == c {
				j++
			}
			if c != '`' && j-i < 2 {
				continue
			}
			end = j
			if k := partner([]byte(s), i, j); k > 0 {
				out = append(out, leftover{pos: i, marker: s[i:j], shown: s[i:k], paired: true, before: s[:i], after: s[k:]})
				i = k - 1
				continue
			}
		case '[':
			if end = linkLike([]byte(s), i); end == 0 {
				continue
			}
		default:
			continue
		}
		out = append(out, leftover{pos: i, marker: s[i:end], shown: s[i:end], before: s[:i], after: s[end:]})
		i = end - 1
	}
	return out
}

// lineOf finds the file line of a leftover in an executed Markdown field:
// its line in the executed text, unless template actions moved it, then the
// nearest line of the field's source that holds the same text.
func (f *file) lineOf(field string, src []byte, l leftover) int {
	base := f.lines[field]
	est := bytes.Count(src[:l.pos], []byte("\n"))
	raw := strings.Split(f.markdown[field], "\n")
	// The marker with the two characters before it, if they are
	// template text, then the marker alone.
	ls := bytes.LastIndexByte(src[:l.pos], '\n') + 1
	pre := []rune(string(src[ls:l.pos]))
	needles := []string{string(pre[max(len(pre)-2, 0):]) + l.marker, l.marker}
	if l.marker[0] == '[' {
		if k := strings.Index(l.marker, "]"); k > 0 {
			needles[1] = l.marker[:k+1]
		}
	}
	for _, needle := range needles {
		best := -1
		for i, line := range raw {
			if strings.Contains(line, needle) && (best < 0 || abs(i-est) < abs(best-est)) {
				best = i
			}
		}
		if best >= 0 {
			return base + best
		}
	}
	return base + est
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// sampleData turns the file's `sample:` into render data. Links get stand-in
// URLs so that templates using .links render.
func (f *file) sampleData() Data {
	d := Data{
		Customer:  herald.Customer{ID: "sample", Locale: f.locale},
		Links:     Links{Preferences: "https://example.com/preferences?token=sample", Unsubscribe: "https://example.com/unsubscribe?token=sample"},
		MessageID: "sample-message",
	}
	if f.sample == nil {
		return d
	}
	d.Customer = customerFromMap(f.sample.Customer)
	d.Customer.Locale = f.locale
	d.Data = f.sample.Data
	if v, ok := f.sample.Links["preferences"]; ok {
		d.Links.Preferences = v
	}
	if v, ok := f.sample.Links["unsubscribe"]; ok {
		d.Links.Unsubscribe = v
	}
	return d
}

// customerFromMap reads a customer as written in YAML or JSON: the known
// fields by their JSON names, everything else as attributes.
func customerFromMap(m map[string]any) herald.Customer {
	c := herald.Customer{ID: "sample"}
	for k, v := range m {
		s, _ := v.(string)
		switch k {
		case "id":
			c.ID = s
		case "email":
			c.Email = s
		case "slack_user_id":
			c.SlackUserID = s
		case "locale":
			c.Locale = s
		case "timezone":
			c.Timezone = s
		default:
			if c.Attributes == nil {
				c.Attributes = map[string]any{}
			}
			c.Attributes[k] = v
		}
	}
	return c
}

// Sample returns the data a template's `sample:` declares for the file that
// locale falls back to, for `herald preview`. ok is false for an unknown
// template.
func (s *Set) Sample(name, locale string) (d Data, ok bool) {
	t := s.templates[name]
	if t == nil {
		return Data{}, false
	}
	f := t.match(locale)
	return f.sampleData(), true
}

// WritePreview writes rendered content for a person to read: subject,
// preheader, text and HTML for "email"; mrkdwn and indented Block Kit JSON
// for "slack".
func WritePreview(w io.Writer, c herald.Content, channel string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Locale:    %s\n", c.Locale)
	switch herald.Channel(channel) {
	case herald.ChannelEmail:
		fmt.Fprintf(&b, "Subject:   %s\n", c.Subject)
		fmt.Fprintf(&b, "Preheader: %s\n", c.Preheader)
		b.WriteString("\n----- text/plain -----\n")
		b.WriteString(c.Text)
		b.WriteString("\n----- text/html -----\n")
		b.WriteString(c.HTML)
	case herald.ChannelSlack:
		b.WriteString("\n----- mrkdwn -----\n")
		b.WriteString(c.SlackText)
		b.WriteString("\n\n----- blocks -----\n")
		if len(c.SlackBlocks) > 0 {
			var out bytes.Buffer
			if err := json.Indent(&out, c.SlackBlocks, "", "  "); err != nil {
				return fmt.Errorf("preview: slack blocks: %w", err)
			}
			b.Write(out.Bytes())
			b.WriteByte('\n')
		}
	default:
		return fmt.Errorf("preview: unknown channel %q (want email or slack)", channel)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
