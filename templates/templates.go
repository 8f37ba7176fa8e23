package templates

import (
	"bufio"
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
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	"github.com/heraldhq/herald"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
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
	// Track, when set, rewrites {{ track URL EVENT }} links for this render
	// only and wins over Options.Track: a tracked link names its customer and
	// message, which only the caller knows.
	Track func(target, event string) string
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
	// OptOut marks a button that takes the customer out of the message's
	// topic when pressed (`opt_out: true` in front matter; needs an event).
	OptOut bool
}

// Set is a loaded, immutable collection of templates, safe for concurrent use.
type Set struct {
	opts      Options
	defaultLn string
	templates map[string]*tmpl
	// broken are the templates that did not load for lack of a default
	// locale file (missing or with problems), with the files that did:
	// Has knows them and Check checks those files, so that a Set loaded
	// with Problems reports each problem once.
	broken map[string]*tmpl
	layout *htmltemplate.Template
	md     goldmark.Markdown
	now    func() time.Time
}

// tmpl is one template name with all of its locale files.
type tmpl struct {
	name    string
	files   []*file // files[0] is the default locale
	matcher language.Matcher
	// matched caches match for the first maxMatched locale strings asked
	// for; customers use few.
	matched  sync.Map // string → *file
	nMatched atomic.Int32
	// dataKeys caches DataKeys per channel set (the files never change).
	dataKeys sync.Map // string → []string
}

const maxMatched = 64

// Load parses every template under fsys: <template>/<locale>.md files and an
// optional _layout.html at the root. It reports every problem it finds, as
// Problems, rather than stopping at the first.
//
// With Problems it still returns the Set, for checks that go on: Has knows
// every template folder, even one whose files have problems, and Check
// checks every file that parsed, so that `herald validate` reports a
// workflow naming an unknown template, or another template's problems, in
// the same run. Such a Set must not be used to send.
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
		broken:    map[string]*tmpl{},
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
			if t := s.loadTemplate(fsys, name, &probs); t.matcher != nil {
				s.templates[name] = t
			} else {
				s.broken[name] = t
			}
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return s, probs
	}
	return s, nil
}

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// loadTemplate loads the files of one template. Without a default locale
// file that loads, the template it returns has no matcher: it holds the
// files that did load, for Check, and cannot render.
func (s *Set) loadTemplate(fsys fs.FS, name string, probs *Problems) *tmpl {
	t := &tmpl{name: name}
	entries, err := fs.ReadDir(fsys, name)
	if err != nil {
		probs.add(name, 0, "%v", err)
		return t
	}
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
		return t
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
	if f, ok := t.matched.Load(locale); ok {
		return f.(*file)
	}
	f := t.matchTag(locale)
	if t.nMatched.Load() < maxMatched && t.nMatched.Add(1) <= maxMatched {
		t.matched.Store(locale, f)
	}
	return f
}

func (t *tmpl) matchTag(locale string) *file {
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

// Has reports whether the template exists (it always has the default
// locale, unless Load reported Problems with it).
func (s *Set) Has(name string) bool {
	_, ok := s.templates[name]
	if !ok {
		_, ok = s.broken[name]
	}
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

// Resolve returns the locale of the file that renders name for locale ("" =
// the default locale): locale itself, a parent (zh-Hant-TW → zh-Hant → zh)
// or the default locale. exact is false when it is not locale itself. ok is
// false for an unknown template.
func (s *Set) Resolve(name, locale string) (used string, exact, ok bool) {
	t := s.templates[name]
	if t == nil {
		return "", false, false
	}
	used = t.match(locale).locale
	if locale == "" {
		return used, true, true
	}
	want := locale
	if tag, err := language.Parse(locale); err == nil {
		want = tag.String()
	}
	return used, used == want, true
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
	return s.renderNamed(name, locale, d, partAll)
}

// RenderChannel renders only what one channel sends: subject, preheader,
// HTML and text for email; mrkdwn and Block Kit for Slack. Fields that only
// the other channel uses are not executed, so their errors do not surface
// here (Render and Check still execute every field). Errors are as for
// Render; an unknown channel is an EInvalid error.
func (s *Set) RenderChannel(name, locale string, d Data, ch herald.Channel) (herald.Content, error) {
	var p parts
	switch ch {
	case herald.ChannelEmail:
		p = partEmail
	case herald.ChannelSlack:
		p = partSlack
	default:
		return herald.Content{}, herald.Errorf(herald.EInvalid, "template %q: unknown channel %q", name, ch)
	}
	return s.renderNamed(name, locale, d, p)
}

// parts selects the channels a render produces.
type parts uint8

const (
	partEmail parts = 1 << iota
	partSlack
	partAll = partEmail | partSlack
)

func (s *Set) renderNamed(name, locale string, d Data, p parts) (herald.Content, error) {
	t := s.templates[name]
	if t == nil {
		return herald.Content{}, herald.Errorf(herald.ENotFound, "template %q not found", name)
	}
	if locale == "" {
		locale = d.Customer.Locale
	}
	f := t.match(locale)
	c, err := s.render(f, d, p)
	if err != nil {
		var pr Problem
		if errors.As(err, &pr) {
			return herald.Content{}, &herald.Error{Code: herald.EInvalid, Message: fmt.Sprintf("template %s (locale %s): %s", name, f.locale, pr), Err: pr}
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

// render executes the parts p asks for. The body is executed and parsed
// once; its AST feeds the HTML, the plain text and, without a slack:
// override, Slack. Fields run in the order subject, preheader, body, slack,
// actions, and the first error stops the render.
func (s *Set) render(f *file, d Data, p parts) (herald.Content, error) {
	return s.renderChecked(f, d, p, nil)
}

// renderCheck is what Check learns from a render besides its content.
type renderCheck struct {
	// markdown sees each Markdown field (body, slack) as executed and parsed.
	markdown func(field string, doc ast.Node, src []byte)
	// slack collects what the Slack writer changed to fit Block Kit.
	slack []slackNote
	// actions are the buttons with their label and URL rendered.
	actions []Action
	// lenient renders a missing key as no value instead of failing, so
	// that Check still sees the rest of a template whose sample lacks one.
	lenient bool
}

func (s *Set) renderChecked(f *file, d Data, p parts, ck *renderCheck) (herald.Content, error) {
	var in *instance
	if ck != nil && ck.lenient {
		in = f.newInstance("missingkey=zero") // not pooled: senders never see it
	} else {
		in = f.get()
		defer f.put(in)
	}
	if ck != nil {
		in.sw.notes = &ck.slack
		defer func() { in.sw.notes = nil }()
	}
	in.st.reset(s, f, d)
	dot := in.dot(d)
	c := herald.Content{Locale: f.locale}

	var err error
	var doc ast.Node // the body's AST, over in.src
	parseBody := func() error {
		in.src.Reset()
		if err := in.body.Execute(&in.src, dot); err != nil {
			return f.problem(err)
		}
		doc = s.md.Parser().Parse(text.NewReader(in.src.Bytes()))
		if ck != nil && ck.markdown != nil {
			ck.markdown(tBody, doc, in.src.Bytes())
		}
		return nil
	}

	if p&partEmail != 0 {
		if c.Subject, err = in.execLine(in.subject, dot); err != nil {
			return c, f.problem(err)
		}
		if in.preheader != nil {
			if c.Preheader, err = in.execLine(in.preheader, dot); err != nil {
				return c, f.problem(err)
			}
		}
		if err := parseBody(); err != nil {
			return c, err
		}
		src := in.src.Bytes()
		in.out.Reset()
		in.bw.Reset(&in.out)
		if err := s.md.Renderer().Render(&in.bw, src, doc); err != nil {
			return c, err
		}
		if c.HTML, err = s.page(in, f, &c, d); err != nil {
			return c, err
		}
		c.Text = in.tw.plainText(doc, src, d.Links, s.opts.PostalAddress, f.labels)
	}

	if p&partSlack != 0 {
		var slackDoc ast.Node
		var slackSrc []byte
		switch {
		case in.slack != nil:
			in.src2.Reset()
			if err := in.slack.Execute(&in.src2, dot); err != nil {
				return c, f.problem(err)
			}
			slackSrc = in.src2.Bytes()
			slackDoc = s.md.Parser().Parse(text.NewReader(slackSrc))
			if ck != nil && ck.markdown != nil {
				ck.markdown(tSlack, slackDoc, slackSrc)
			}
		case doc == nil:
			if err := parseBody(); err != nil {
				return c, err
			}
			fallthrough
		default:
			slackDoc, slackSrc = doc, in.src.Bytes()
		}
		buttons := in.buttons[:0]
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
			buttons = append(buttons, b)
		}
		in.buttons = buttons
		if ck != nil {
			ck.actions = slices.Clone(buttons)
		}
		c.SlackText, c.SlackBlocks, err = in.sw.message(slackDoc, slackSrc, buttons, d.MessageID, d.Links.Preferences, f.labels)
	}
	return c, err
}

// page wraps the body HTML in in.out in the email layout. The default
// layout is filled from a plan cut once per file; an _layout.html is
// executed.
func (s *Set) page(in *instance, f *file, c *herald.Content, d Data) (string, error) {
	in.page.Reset()
	if s.layout == defaultLayout {
		if pl := s.plan(f, c.Preheader != "", d.Links); pl != nil {
			pl.fill(&in.page, c.Subject, c.Preheader, in.out.Bytes(), d.Links)
			return in.page.String(), nil
		}
	}
	ld := s.layoutData(f, c.Subject, c.Preheader, htmltemplate.HTML(in.out.String()), d.Links)
	ld.Customer = in.dotMaps.customer
	ld.Data = d.Data
	if err := s.layout.Execute(&in.page, &ld); err != nil {
		return "", Problem{File: layoutFile, Message: err.Error()}
	}
	return in.page.String(), nil
}

func (s *Set) layoutData(f *file, subject, preheader string, body htmltemplate.HTML, links Links) LayoutData {
	return LayoutData{
		Lang:          f.locale,
		Dir:           f.dir,
		Subject:       subject,
		Preheader:     preheader,
		Body:          body,
		BrandName:     s.opts.BrandName,
		PostalAddress: s.opts.PostalAddress,
		Links:         links,
		Labels:        f.labels,
	}
}

// dot builds the template's view of the data in maps the instance reuses.
// Core customer fields win over attributes of the same name so that
// `.customer.email` is always the address herald sends to.
func (in *instance) dot(d Data) map[string]any {
	m := &in.dotMaps
	if m.root == nil {
		m.root = make(map[string]any, 3)
		m.customer = make(map[string]any, 8)
		m.links = make(map[string]any, 2)
	}
	c := d.Customer
	clear(m.customer)
	for k, v := range c.Attributes {
		m.customer[k] = v
	}
	m.customer["id"] = c.ID
	m.customer["email"] = c.Email
	m.customer["locale"] = c.Locale
	m.customer["timezone"] = c.Timezone
	m.customer["slack_user_id"] = c.SlackUserID
	data := d.Data
	if data == nil {
		data = noData
	}
	m.links["preferences"] = d.Links.Preferences
	m.links["unsubscribe"] = d.Links.Unsubscribe
	m.root["customer"] = m.customer
	m.root["data"] = data
	m.root["links"] = m.links
	// A digest step's collection reads as .digest (count, events) too.
	if dg, ok := data["digest"]; ok {
		m.root["digest"] = dg
	} else {
		delete(m.root, "digest")
	}
	return m.root
}

// noData stands in for nil Data.Data; templates only read it.
var noData = map[string]any{}

// dotMaps are an instance's maps for the template's view of the data.
type dotMaps struct {
	root, customer, links map[string]any
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
	src, src2 bytes.Buffer // Markdown: body, slack override
	out       bytes.Buffer // the body as HTML
	bw        bufio.Writer // goldmark's buffered writer onto out
	page      bytes.Buffer // the email layout around it
	dotMaps   dotMaps
	tw        textWriter
	sw        slackWriter
	buttons   []Action
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
