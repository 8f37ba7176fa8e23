package templates

import (
	"bytes"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"time"

	"github.com/heraldhq/herald"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/extension"
	goldmarkhtml "github.com/yuin/goldmark/renderer/html"
	"github.com/yuin/goldmark/text"
	"golang.org/x/text/language"
)

// Options configure a Set. The zero value is usable.
type Options struct {
	DefaultLocale string // default "en"
	BrandName     string // shown in the email header, default "herald"
	PostalAddress string // email footer (CAN-SPAM), may be empty
	// Track rewrites a link for click tracking. Nil turns tracking off:
	// {{ track URL EVENT }} then yields URL unchanged.
	Track func(target, event string) string
}

// Data is what one render sees.
type Data struct {
	Customer herald.Customer
	Data     map[string]any
	Links    Links
	// MessageID goes into Slack button values so that a click maps back to
	// the message it came from.
	MessageID string
	// Now is the reference time for helpers that default to "now"; the zero
	// value means the wall clock.
	Now time.Time
}

// Links are the per-customer links every message may carry.
type Links struct {
	Preferences string
	Unsubscribe string
}

// Action is a button declared in a template's front matter. Event buttons
// report the event back to herald; URL buttons open a link; a button may do
// both.
type Action struct {
	Label string
	Event string
	URL   string
	Style string // "", "primary" or "danger"
}

// Set is a loaded, immutable collection of templates, safe for concurrent use.
type Set struct {
	opts      Options
	defaultLn string
	templates map[string]*tmpl
	layout    *htmltemplate.Template
	md        goldmark.Markdown
	now       func() time.Time
}

// tmpl is one template name with all of its locale files.
type tmpl struct {
	name    string
	files   []*file // files[0] is the default locale
	matcher language.Matcher
}

// Load parses every template under fsys: <template>/<locale>.md files and an
// optional _layout.html at the root. It reports every problem it finds, as
// Problems, rather than stopping at the first.
func Load(fsys fs.FS, opts Options) (*Set, error) {
	if opts.DefaultLocale == "" {
		opts.DefaultLocale = "en"
	}
	if opts.BrandName == "" {
		opts.BrandName = "herald"
	}
	s := &Set{
		opts:      opts,
		templates: map[string]*tmpl{},
		md:        newMarkdown(),
		now:       time.Now,
	}
	var probs Problems
	defTag, err := language.Parse(opts.DefaultLocale)
	if err != nil {
		return nil, fmt.Errorf("templates: default locale %q: %w", opts.DefaultLocale, err)
	}
	s.defaultLn = defTag.String()

	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	s.layout = defaultLayout
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "."):
		case !e.IsDir() && name == layoutFile:
			if l := loadLayout(fsys, &probs); l != nil {
				s.layout = l
			}
		case !e.IsDir():
			// Other root files (a README) are documentation.
		case !validName.MatchString(name):
			probs.add(name, 0, "template folder names use lower-case letters, digits, - and _")
		default:
			if t := s.loadTemplate(fsys, name, &probs); t != nil {
				s.templates[name] = t
			}
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return nil, probs
	}
	return s, nil
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

func (s *Set) loadTemplate(fsys fs.FS, name string, probs *Problems) *tmpl {
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		probs.add(name, 0, "%v", err)
		return nil
	}
	t := &tmpl{name: name}
	sawDefault := false
	for _, e := range entries {
		fn := e.Name()
		p := path.Join(name, fn)
		switch {
		case strings.HasPrefix(fn, "."):
			continue
		case e.IsDir():
			probs.add(p, 0, "unexpected folder: templates are <template>/<locale>.md")
			continue
		case !strings.HasSuffix(fn, ".md"):
			probs.add(p, 0, "unexpected file: templates are <template>/<locale>.md")
			continue
		}
		stem := strings.TrimSuffix(fn, ".md")
		tag, err := language.Parse(stem)
		if err != nil {
			probs.add(p, 0, "unknown locale %q in the file name (want a BCP 47 tag such as en, ja or zh-Hant)", stem)
			continue
		}
		if tag.String() != stem {
			probs.add(p, 0, "locale file name %q should be written %q", stem, tag.String())
			continue
		}
		if tag.String() == s.defaultLn {
			sawDefault = true
		}
		src, err := fs.ReadFile(fsys, p)
		if err != nil {
			probs.add(p, 0, "%v", err)
			continue
		}
		if f := s.parseFile(p, name, tag, src, probs); f != nil {
			t.files = append(t.files, f)
		}
	}
	i := slices.IndexFunc(t.files, func(f *file) bool { return f.locale == s.defaultLn })
	if i < 0 {
		if !sawDefault { // a default file that failed to parse is reported already
			probs.add(name, 0, "no %s.md: every template needs the default locale (%s)", s.defaultLn, s.defaultLn)
		}
		return nil
	}
	// The matcher falls back to its first tag, so the default goes first.
	t.files[0], t.files[i] = t.files[i], t.files[0]
	tags := make([]language.Tag, len(t.files))
	for i, f := range t.files {
		tags[i] = f.tag
	}
	t.matcher = language.NewMatcher(tags)
	return t
}

// match picks the file for a requested locale. Any confidence above No is
// accepted so that zh-Hant-TW reaches a plain zh file when there is no
// zh-Hant one, while pt-BR falls back to the default.
func (t *tmpl) match(locale string) *file {
	if locale == "" {
		return t.files[0]
	}
	tag, err := language.Parse(locale)
	if err != nil {
		return t.files[0]
	}
	_, i, conf := t.matcher.Match(tag)
	if conf == language.No || i < 0 || i >= len(t.files) {
		return t.files[0]
	}
	return t.files[i]
}

// Has reports whether the template exists (it always has the default locale).
func (s *Set) Has(name string) bool {
	_, ok := s.templates[name]
	return ok
}

// Names lists the templates, sorted.
func (s *Set) Names() []string {
	names := make([]string, 0, len(s.templates))
	for n := range s.templates {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Locales lists a template's locales, sorted, or nil for an unknown template.
func (s *Set) Locales(name string) []string {
	t := s.templates[name]
	if t == nil {
		return nil
	}
	out := make([]string, len(t.files))
	for i, f := range t.files {
		out[i] = f.locale
	}
	slices.Sort(out)
	return out
}

// Actions returns the buttons declared by the file that locale falls back
// to ("" = the default locale), as written: labels and URLs are not
// rendered. The engine uses it to know which events a click may carry.
func (s *Set) Actions(name, locale string) []Action {
	t := s.templates[name]
	if t == nil {
		return nil
	}
	f := t.match(locale)
	out := make([]Action, len(f.actions))
	for i, a := range f.actions {
		out[i] = a.Action
	}
	return out
}

// Render renders a template for one customer into every channel. locale ""
// means the customer's locale. Content.Locale is the locale actually used.
// An unknown template is an ENotFound error; a template that fails with this
// data (a missing key, a bad helper argument) is an EInvalid error wrapping a
// Problem that names the file and line.
func (s *Set) Render(name, locale string, d Data) (herald.Content, error) {
	t := s.templates[name]
	if t == nil {
		return herald.Content{}, herald.Errorf(herald.ENotFound, "template %q not found", name)
	}
	if locale == "" {
		locale = d.Customer.Locale
	}
	f := t.match(locale)
	c, err := s.render(f, d)
	if err != nil {
		var p Problem
		if errors.As(err, &p) {
			return herald.Content{}, &herald.Error{Code: herald.EInvalid, Message: fmt.Sprintf("template %s (locale %s): %s", name, f.locale, p), Err: p}
		}
		return herald.Content{}, &herald.Error{Code: herald.EInvalid, Message: fmt.Sprintf("template %s (locale %s): %v", name, f.locale, err), Err: err}
	}
	return c, nil
}

func newMarkdown() goldmark.Markdown {
	return goldmark.New(
		goldmark.WithExtensions(extension.Strikethrough),
		goldmark.WithRendererOptions(goldmarkhtml.WithEastAsianLineBreaks(goldmarkhtml.EastAsianLineBreaksSimple)),
	)
}

func (s *Set) render(f *file, d Data) (herald.Content, error) {
	in := f.get()
	defer f.put(in)
	st := in.st
	st.reset(s, f, d)
	dot := dotFor(d)
	c := herald.Content{Locale: f.locale}

	var err error
	if c.Subject, err = in.execLine(in.subject, dot); err != nil {
		return c, f.problem(err)
	}
	if in.preheader != nil {
		if c.Preheader, err = in.execLine(in.preheader, dot); err != nil {
			return c, f.problem(err)
		}
	}

	in.src.Reset()
	if err := in.body.Execute(&in.src, dot); err != nil {
		return c, f.problem(err)
	}
	src := in.src.Bytes()
	doc := s.md.Parser().Parse(text.NewReader(src))

	in.out.Reset()
	if err := s.md.Renderer().Render(&in.out, src, doc); err != nil {
		return c, err
	}
	lab := labelsFor(f.tag)
	ld := LayoutData{
		Lang:          f.locale,
		Dir:           direction(f.tag),
		Subject:       c.Subject,
		Preheader:     c.Preheader,
		Body:          htmltemplate.HTML(in.out.String()),
		BrandName:     s.opts.BrandName,
		PostalAddress: s.opts.PostalAddress,
		Links:         d.Links,
		Labels:        lab,
		Customer:      dot["customer"].(map[string]any),
		Data:          d.Data,
	}
	in.out.Reset()
	if err := s.layout.Execute(&in.out, &ld); err != nil {
		return c, Problem{File: layoutFile, Message: err.Error()}
	}
	c.HTML = in.out.String()
	c.Text = plainText(doc, src, d.Links, s.opts.PostalAddress, lab)

	slackDoc, slackSrc := doc, src
	if in.slack != nil {
		in.src2.Reset()
		if err := in.slack.Execute(&in.src2, dot); err != nil {
			return c, f.problem(err)
		}
		slackSrc = in.src2.Bytes()
		slackDoc = s.md.Parser().Parse(text.NewReader(slackSrc))
	}
	buttons := make([]Action, len(in.actions))
	for i, a := range f.actions {
		b := a.Action
		if in.actions[i].label != nil {
			if b.Label, err = in.execLine(in.actions[i].label, dot); err != nil {
				return c, f.problem(err)
			}
		}
		if in.actions[i].url != nil {
			if b.URL, err = in.execLine(in.actions[i].url, dot); err != nil {
				return c, f.problem(err)
			}
		}
		buttons[i] = b
	}
	c.SlackText, c.SlackBlocks, err = slackMessage(slackDoc, slackSrc, buttons, d.MessageID, d.Links.Preferences, lab)
	return c, err
}

// dotFor builds the template's view of the data. Core customer fields win
// over attributes of the same name so that `.customer.email` is always the
// address herald sends to.
func dotFor(d Data) map[string]any {
	c := d.Customer
	cm := make(map[string]any, len(c.Attributes)+5)
	for k, v := range c.Attributes {
		cm[k] = v
	}
	cm["id"] = c.ID
	cm["email"] = c.Email
	cm["locale"] = c.Locale
	cm["timezone"] = c.Timezone
	cm["slack_user_id"] = c.SlackUserID
	data := d.Data
	if data == nil {
		data = map[string]any{}
	}
	return map[string]any{
		"customer": cm,
		"data":     data,
		"links":    map[string]any{"preferences": d.Links.Preferences, "unsubscribe": d.Links.Unsubscribe},
	}
}

// instance is one clone of a file's templates with helpers bound to its own
// render state. Instances are pooled so that Render neither re-parses nor
// re-binds functions.
type instance struct {
	st        *renderState
	subject   *template.Template
	preheader *template.Template
	body      *template.Template
	slack     *template.Template
	actions   []actionTemplates
	line      strings.Builder
	src, src2 bytes.Buffer
	out       bytes.Buffer
}

type actionTemplates struct{ label, url *template.Template }

// execLine renders a one-line field: no Markdown, and no CR or LF so that a
// value cannot inject mail headers.
func (in *instance) execLine(t *template.Template, dot any) (string, error) {
	in.line.Reset()
	if err := t.Execute(&in.line, dot); err != nil {
		return "", err
	}
	return oneLine(in.line.String()), nil
}

func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n\t\v\f\u0085\u2028\u2029") {
		return strings.TrimSpace(s)
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		switch r {
		case '\r', '\n', '\t', '\v', '\f', '\u0085', '\u2028', '\u2029', ' ':
			return true
		}
		return false
	}), " ")
}

var startedAt = regexp.MustCompile(`started at [^:\s]+:(\d+)`)

var execErr = regexp.MustCompile(`^template: [^:]*:(\d+)(?::\d+)?: (.*)$`)

// problem turns a text/template error into a Problem at the file's line.
// Templates are parsed with padding so that their line numbers are file lines.
func (f *file) problem(err error) error {
	msg := err.Error()
	line := 0
	if m := execErr.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if i := strings.Index(msg, "executing \""); i == 0 {
		if j := strings.Index(msg, "\" at "); j > 0 {
			msg = msg[j+len("\" "):]
		}
	}
	msg = startedAt.ReplaceAllString(msg, "started on line $1")
	if k := strings.Index(msg, "map has no entry for key "); k >= 0 {
		at := strings.TrimSuffix(msg[:k], ": ")
		msg = "missing key " + msg[k+len("map has no entry for key "):] + " " + at
	}
	return Problem{File: f.path, Line: line, Message: msg}
}
