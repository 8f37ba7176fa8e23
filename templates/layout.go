package templates

import (
	"bytes"
	_ "embed"
	"errors"
	"html/template"
	"io/fs"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/text/language"
)

// layoutFile, at the root of the templates folder, replaces the default
// email layout.
const layoutFile = "_layout.html"

// LayoutData is what the email layout (the default one or _layout.html)
// executes with.
type LayoutData struct {
	Lang          string        // the locale rendered, for <html lang>
	Dir           string        // "ltr" or "rtl"
	Subject       string        // for <title>
	Preheader     string        // inbox preview text, hidden in the body
	Body          template.HTML // the Markdown body as HTML
	BrandName     string
	PostalAddress string
	Links         Links  // preference and unsubscribe links, empty when not set
	Labels        Labels // footer words in the message's language
	Customer      map[string]any
	Data          map[string]any
}

// TextStyle is the inline CSS for the message's text: TextCSS for its
// locale. The default layout puts it on every cell that holds text.
func (d LayoutData) TextStyle() template.CSS {
	return template.CSS(TextCSS(d.Lang) + ";")
}

// Font families with a glyph set per script. Every name is a CSS
// identifier, so a stack needs no quotes and stays readable once inlined
// into a style attribute.
const (
	latinFonts = "-apple-system,BlinkMacSystemFont,Segoe UI,Roboto,Helvetica Neue,Arial,Noto Sans"
	jaFonts    = "Hiragino Sans,Yu Gothic UI,Meiryo,Noto Sans CJK JP,Noto Sans JP"
	koFonts    = "Apple SD Gothic Neo,Malgun Gothic,Noto Sans CJK KR,Noto Sans KR"
	tcFonts    = "PingFang TC,Microsoft JhengHei,Noto Sans CJK TC,Noto Sans TC"
	scFonts    = "PingFang SC,Microsoft YaHei,Noto Sans CJK SC,Noto Sans SC"
	thFonts    = "Leelawadee UI,Thonburi,Noto Sans Thai"
)

// TextCSS is the CSS declarations (no trailing semicolon) for text in a
// locale ("" for the default). Fonts: the locale's own script's fonts right
// after the Latin ones, so Han characters take the Japanese, Korean or
// Chinese forms the locale wants, then the fonts of herald's other
// languages for names and quotes in them. Line breaking: Korean breaks
// between words only, Japanese and Chinese keep closing punctuation off the
// start of a line, and a long URL breaks anywhere rather than widen the
// page.
func TextCSS(locale string) string {
	own, wrap := "", ""
	if tag, err := language.Parse(locale); err == nil {
		base, _ := tag.Base()
		script, _ := tag.Script()
		switch base.String() {
		case "ja":
			own, wrap = jaFonts, ";line-break:strict"
		case "ko":
			own, wrap = koFonts, ";word-break:keep-all"
		case "zh":
			own, wrap = scFonts, ";line-break:strict"
			if script.String() == "Hant" {
				own = tcFonts
			}
		case "th":
			own = thFonts
		}
	}
	fonts := []string{latinFonts}
	if own != "" {
		fonts = append(fonts, own)
	}
	for _, f := range []string{thFonts, jaFonts, koFonts, tcFonts} {
		if f != own {
			fonts = append(fonts, f)
		}
	}
	return "font-family:" + strings.Join(fonts, ",") + ",sans-serif;overflow-wrap:anywhere" + wrap
}

//go:embed layout.html
var defaultLayoutSrc string

var defaultLayout = template.Must(template.New(layoutFile).Parse(defaultLayoutSrc))

var layoutErr = regexp.MustCompile(`^(?:html/)?template: [^:]*:(\d+)(?::\d+)?: (.*)$`)

func loadLayout(fsys fs.FS, probs *Problems) *template.Template {
	src, err := fs.ReadFile(fsys, layoutFile)
	if err == nil {
		var t *template.Template
		if t, err = template.New(layoutFile).Option("missingkey=error").Parse(string(src)); err == nil {
			return t
		}
	}
	line, msg := 0, err.Error()
	if m := layoutErr.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	probs.add(layoutFile, line, "%s", msg)
	return nil
}

// The default layout differs between two messages of one file only in the
// subject, the preheader, the body and the two links. A layoutPlan is that
// layout executed once with marks in place of those values, cut at the marks;
// filling it escapes the values the way html/template does in each place.
// Which parts are present (the preheader, each link) changes the layout's
// branches, so each file has one plan per combination.
type layoutPlan struct {
	text  []string // text[i] comes before holes[i]; one more text than holes
	holes []layoutHole
}

type layoutHole uint8

const (
	holeSubject     layoutHole = iota // inside <title>: escaped text
	holePreheader                     // text
	holeBody                          // trusted HTML
	holePreferences                   // href value: a URL
	holeUnsubscribe                   // href value: a URL
	numHoles
)

// layoutMark is what a hole holds while the plan is cut: letters and digits
// only, so that every escaper leaves it as it is.
const layoutMark = "zHeraldLayoutHole"

func holeMark(h layoutHole) string { return layoutMark + strconv.Itoa(int(h)) + "z" }

const layoutVariants = 8

func layoutVariant(preheader bool, links Links) int {
	v := 0
	if preheader {
		v |= 1
	}
	if links.Preferences != "" {
		v |= 2
	}
	if links.Unsubscribe != "" {
		v |= 4
	}
	return v
}

// noPlan marks a file whose layout could not be cut (a mark already in the
// brand name, say): it falls back to executing the layout.
var noPlan = &layoutPlan{}

// plan returns the file's default-layout plan for the parts present, or nil
// to execute the layout instead.
func (s *Set) plan(f *file, preheader bool, links Links) *layoutPlan {
	v := layoutVariant(preheader, links)
	p := f.plans[v].Load()
	if p == nil {
		p = s.cutPlan(f, v)
		f.plans[v].Store(p) // two renders may race to cut it; both cut the same
	}
	if p == noPlan {
		return nil
	}
	return p
}

func (s *Set) cutPlan(f *file, variant int) *layoutPlan {
	var links Links
	preheader := ""
	want := 2 // subject and body
	if variant&1 != 0 {
		preheader = holeMark(holePreheader)
		want++
	}
	if variant&2 != 0 {
		links.Preferences = holeMark(holePreferences)
		want++
	}
	if variant&4 != 0 {
		links.Unsubscribe = holeMark(holeUnsubscribe)
		want++
	}
	ld := s.layoutData(f, holeMark(holeSubject), preheader, template.HTML(holeMark(holeBody)), links)
	var b strings.Builder
	if err := defaultLayout.Execute(&b, &ld); err != nil {
		return noPlan
	}
	out := b.String()
	if strings.Count(out, layoutMark) != want {
		return noPlan
	}
	p := &layoutPlan{}
	for {
		i := strings.Index(out, layoutMark)
		if i < 0 {
			break
		}
		rest := out[i+len(layoutMark):]
		j := strings.IndexByte(rest, 'z')
		n, err := strconv.Atoi(rest[:max(j, 0)])
		if j < 0 || err != nil || n < 0 || n >= int(numHoles) {
			return noPlan
		}
		p.text = append(p.text, out[:i])
		p.holes = append(p.holes, layoutHole(n))
		out = rest[j+1:]
	}
	p.text = append(p.text, out)
	return p
}

// fill writes the page for one message.
func (p *layoutPlan) fill(b *bytes.Buffer, subject, preheader string, body []byte, links Links) {
	b.Grow(len(body) + 4096)
	for i, h := range p.holes {
		b.WriteString(p.text[i])
		switch h {
		case holeSubject:
			writeHTMLEscaped(b, subject)
		case holePreheader:
			writeHTMLEscaped(b, preheader)
		case holeBody:
			b.Write(body)
		case holePreferences:
			writeURLAttr(b, links.Preferences)
		case holeUnsubscribe:
			writeURLAttr(b, links.Unsubscribe)
		}
	}
	b.WriteString(p.text[len(p.holes)])
}

// writeHTMLEscaped escapes a string for HTML text, RCDATA or a quoted
// attribute exactly as html/template does (its htmlReplacementTable).
func writeHTMLEscaped(b *bytes.Buffer, s string) {
	written := 0
	for i := 0; i < len(s); i++ {
		var repl string
		switch s[i] {
		case 0:
			repl = "\uFFFD"
		case '"':
			repl = "&#34;"
		case '&':
			repl = "&amp;"
		case '\'':
			repl = "&#39;"
		case '+':
			repl = "&#43;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		default:
			continue
		}
		b.WriteString(s[written:i])
		b.WriteString(repl)
		written = i + 1
	}
	b.WriteString(s[written:])
}

// writeURLAttr writes a URL into a quoted href as html/template does: a
// scheme other than http, https or mailto is replaced by #ZgotmplZ, the URL
// is normalised (bytes outside RFC 3986's sets percent-encoded, valid
// escapes kept), then & and + are escaped for the attribute.
func writeURLAttr(b *bytes.Buffer, s string) {
	if !isSafeURL(s) {
		b.WriteString("#ZgotmplZ")
		return
	}
	const hex = "0123456789abcdef"
	written := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '&':
			b.WriteString(s[written:i])
			b.WriteString("&amp;")
			written = i + 1
			continue
		case c == '+':
			b.WriteString(s[written:i])
			b.WriteString("&#43;")
			written = i + 1
			continue
		case urlKeep(c):
			continue
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			continue
		}
		b.WriteString(s[written:i])
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
		written = i + 1
	}
	b.WriteString(s[written:])
}

// urlKeep reports the bytes html/template's URL normaliser leaves alone,
// other than & and + (escaped for the attribute) and % (kept when it starts
// a valid escape).
func urlKeep(c byte) bool {
	switch c {
	case '!', '#', '$', '*', ',', '/', ':', ';', '=', '?', '@', '[', ']', '-', '.', '_', '~':
		return true
	}
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// isSafeURL is html/template's: a relative URL, or one whose scheme is
// http, https or mailto.
func isSafeURL(s string) bool {
	if protocol, _, ok := strings.Cut(s, ":"); ok && !strings.Contains(protocol, "/") {
		return strings.EqualFold(protocol, "http") || strings.EqualFold(protocol, "https") || strings.EqualFold(protocol, "mailto")
	}
	return true
}
