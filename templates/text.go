package templates

import (
	"bytes"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/yuin/goldmark/ast"
	east "github.com/yuin/goldmark/extension/ast"
	"github.com/yuin/goldmark/util"
	"golang.org/x/text/width"
)

// wrapWidth is the plain-text column limit, a little under the 78 that
// RFC 5322 recommends, so quoted replies still fit.
const wrapWidth = 76

// plainText renders the email's text part from the same Markdown AST as the
// HTML part, then adds the footer the layout adds to the HTML.
func (tw *textWriter) plainText(doc ast.Node, src []byte, links Links, postal string, lab Labels) string {
	tw.src = src
	defer func() { tw.src = nil }()
	b := &tw.buf
	b.Reset()
	b.Grow(len(src) + 256)
	tw.blocks(doc, "", "")
	out := b.Bytes()
	n := len(out)
	for n > 0 && out[n-1] == '\n' {
		n--
	}
	b.Truncate(n)
	sep := "\n\n-- \n"
	footer := func(parts ...string) {
		b.WriteString(sep)
		for _, p := range parts {
			b.WriteString(p)
		}
		sep = "\n"
	}
	if links.Preferences != "" {
		footer(lab.Preferences, ": ", links.Preferences)
	}
	if links.Unsubscribe != "" {
		footer(lab.Unsubscribe, ": ", links.Unsubscribe)
	}
	if postal != "" {
		footer(postal)
	}
	b.WriteByte('\n')
	return b.String()
}

// textWriter writes the plain text of a Markdown AST. An instance keeps one
// so that its buffers are reused.
type textWriter struct {
	src    []byte
	buf    bytes.Buffer // the text
	inline bytes.Buffer // one paragraph or heading, before wrapping
	pieces []piece
}

// blocks writes the block children of n; first prefixes the first line,
// rest every following line (list markers, quote bars, indentation).
func (tw *textWriter) blocks(n ast.Node, first, rest string) {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		if c != n.FirstChild() {
			tw.buf.WriteString(strings.TrimRight(rest, " "))
			tw.buf.WriteByte('\n')
		}
		tw.block(c, first, rest)
		first = rest
	}
}

func (tw *textWriter) block(n ast.Node, first, rest string) {
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		tw.wrap(tw.inlineText(n), first, rest)
	case *ast.Heading:
		t := tw.inlineText(n)
		tw.wrap(t, first, rest)
		if n.Level <= 2 {
			ch := "="
			if n.Level == 2 {
				ch = "-"
			}
			tw.buf.WriteString(rest)
			tw.buf.WriteString(strings.Repeat(ch, min(displayWidth(t), wrapWidth-len(rest))))
			tw.buf.WriteByte('\n')
		}
	case *ast.List:
		i := n.Start
		if i == 0 {
			i = 1
		}
		for item := n.FirstChild(); item != nil; item = item.NextSibling() {
			marker := "- "
			if n.IsOrdered() {
				marker = strconv.Itoa(i) + ". "
				i++
			}
			if item != n.FirstChild() && !n.IsTight {
				tw.buf.WriteString(strings.TrimRight(rest, " "))
				tw.buf.WriteByte('\n')
			}
			tw.blocks(item, first+marker, rest+strings.Repeat(" ", len(marker)))
			first = rest
		}
	case *ast.Blockquote:
		tw.blocks(n, first+"> ", rest+"> ")
	case *ast.FencedCodeBlock, *ast.CodeBlock:
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			p := rest
			if i == 0 {
				p = first
			}
			tw.buf.WriteString(p)
			tw.buf.WriteString("    ")
			tw.buf.Write(bytes.TrimRight(seg.Value(tw.src), "\n"))
			tw.buf.WriteByte('\n')
		}
	case *ast.ThematicBreak:
		tw.buf.WriteString(first)
		tw.buf.WriteString("----")
		tw.buf.WriteByte('\n')
	case *ast.HTMLBlock:
		// Raw HTML is not rendered in any channel.
	default:
		if n.HasChildren() {
			tw.blocks(n, first, rest)
		}
	}
}

// inlineText flattens inline Markdown to plain text: emphasis is dropped,
// links become "text (url)", hard breaks stay line breaks.
func inlineText(n ast.Node, src []byte) string {
	var b bytes.Buffer
	inlineTextTo(&b, n, src)
	return b.String()
}

// inlineText is the package function with the writer's scratch buffer.
func (tw *textWriter) inlineText(n ast.Node) string {
	tw.inline.Reset()
	inlineTextTo(&tw.inline, n, tw.src)
	return tw.inline.String()
}

func inlineTextTo(b *bytes.Buffer, n ast.Node, src []byte) {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Text:
			writeText(b, c.Segment.Value(src), c.IsRaw())
			if c.HardLineBreak() {
				b.WriteByte('\n')
			} else if c.SoftLineBreak() {
				softBreak(b, c, src)
			}
		case *ast.String:
			writeText(b, c.Value, c.IsRaw())
		case *ast.CodeSpan:
			for t := c.FirstChild(); t != nil; t = t.NextSibling() {
				if tt, ok := t.(*ast.Text); ok {
					writeReplacingNewlines(b, tt.Segment.Value(src))
				}
			}
		case *ast.Link:
			label := inlineText(c, src)
			url := linkURL(c.Destination)
			b.WriteString(label)
			if url != "" && url != label && "mailto:"+label != url {
				b.WriteString(" (")
				b.WriteString(url)
				b.WriteByte(')')
			}
		case *ast.AutoLink:
			b.Write(c.URL(src))
		case *ast.Image:
			alt := inlineText(c, src)
			b.WriteString(alt)
			if url := linkURL(c.Destination); url != "" {
				if alt != "" {
					b.WriteByte(' ')
				}
				b.WriteString("(" + url + ")")
			}
		case *ast.RawHTML:
		case *east.Strikethrough, *ast.Emphasis:
			inlineTextTo(b, c, src)
		default:
			inlineTextTo(b, c, src)
		}
	}
}

// softBreak writes the space a Markdown soft line break stands for, except
// between two wide (CJK) characters, where a space would be wrong.
func softBreak(b *bytes.Buffer, t *ast.Text, src []byte) {
	v := t.Segment.Value(src)
	next, ok := t.NextSibling().(*ast.Text)
	if ok && len(v) > 0 {
		last, _ := utf8.DecodeLastRune(v)
		first, _ := utf8.DecodeRune(next.Segment.Value(src))
		if isWide(last) && isWide(first) {
			return
		}
	}
	b.WriteByte(' ')
}

// writeReplacingNewlines writes v with each line feed as a space, as code
// spans read.
func writeReplacingNewlines(b *bytes.Buffer, v []byte) {
	for {
		i := bytes.IndexByte(v, '\n')
		if i < 0 {
			b.Write(v)
			return
		}
		b.Write(v[:i])
		b.WriteByte(' ')
		v = v[i+1:]
	}
}

// linkURL resolves escapes and entities in a link destination and
// percent-encodes it the way the HTML renderer does; dangerous schemes
// (javascript:, data: other than images) are dropped.
func linkURL(dest []byte) string {
	u := util.URLEscape(dest, true)
	if isDangerousURL(u) {
		return ""
	}
	return string(u)
}

// isDangerousURL is goldmark's html.IsDangerousURL without its allocations.
// goldmark lower-cases both sides with bytes.ToLower; the prefixes are ASCII,
// and a non-ASCII byte either stays non-ASCII or shortens the text when
// lower-cased, so only ASCII input can match and ASCII folding is the same
// test.
func isDangerousURL(u []byte) bool {
	if hasPrefixFold(u, "data:image/") {
		v := u[len("data:image/"):]
		return !hasPrefixFold(v, "png;") && !hasPrefixFold(v, "gif;") && !hasPrefixFold(v, "jpeg;") && !hasPrefixFold(v, "webp;")
	}
	return hasPrefixFold(u, "javascript:") || hasPrefixFold(u, "vbscript:") || hasPrefixFold(u, "file:") || hasPrefixFold(u, "data:")
}

// hasPrefixFold reports whether s starts with the lower-case ASCII prefix,
// ignoring ASCII case.
func hasPrefixFold(s []byte, prefix string) bool {
	if len(s) < len(prefix) {
		return false
	}
	for i := 0; i < len(prefix); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != prefix[i] {
			return false
		}
	}
	return true
}

// writeText writes a Markdown text segment as plain text: backslash escapes
// and entity references are resolved in one pass, as goldmark's HTML writer
// does, so an escaped "\&amp;" stays literal.
func writeText(b *bytes.Buffer, v []byte, raw bool) {
	if raw {
		b.Write(v)
		return
	}
	n := 0
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '\\' && i+1 < len(v) && util.IsPunct(v[i+1]):
			b.Write(v[n:i])
			b.WriteByte(v[i+1])
			i++
			n = i + 1
		case c == 0:
			b.Write(v[n:i])
			b.WriteRune(utf8.RuneError)
			n = i + 1
		case c == '&':
			if r, size := entity(v[i:]); size > 0 {
				b.Write(v[n:i])
				b.WriteString(r)
				i += size - 1
				n = i + 1
			}
		}
	}
	b.Write(v[n:])
}

// entity decodes an HTML entity or numeric reference at the start of v.
func entity(v []byte) (string, int) {
	end := bytes.IndexByte(v, ';')
	if end < 2 || end > 40 {
		return "", 0
	}
	body := v[1:end]
	if body[0] == '#' {
		var code uint64
		var err error
		if len(body) > 1 && (body[1] == 'x' || body[1] == 'X') {
			code, err = strconv.ParseUint(string(body[2:]), 16, 32)
		} else {
			code, err = strconv.ParseUint(string(body[1:]), 10, 32)
		}
		if err != nil {
			return "", 0
		}
		return string(util.ToValidRune(rune(code))), end + 1
	}
	for _, c := range body {
		if !util.IsAlphaNumeric(c) {
			return "", 0
		}
	}
	if e, ok := util.LookUpHTML5EntityByName(string(body)); ok {
		return string(e.Characters), end + 1
	}
	return "", 0
}

// isWide reports an East Asian wide or fullwidth rune: two columns in a
// terminal, and a place where lines may break without a space.
func isWide(r rune) bool {
	switch {
	case r < 0x1100:
		return false
	case r >= 0x4E00 && r <= 0x9FFF, r >= 0xAC00 && r <= 0xD7A3, r >= 0x3041 && r <= 0x3096, r >= 0x30A1 && r <= 0x30FA:
		// CJK ideographs, Hangul syllables, kana: the common case, without
		// the table lookup.
		return true
	}
	switch width.LookupRune(r).Kind() {
	case width.EastAsianWide, width.EastAsianFullwidth:
		return true
	}
	return false
}

// nextCluster returns the length in bytes of the user-perceived character
// at the start of s: a base rune plus the combining marks, variation
// selectors, emoji modifiers and zero-width-joined runes that belong to it.
// Thai vowel and tone marks are combining marks, so they stay on their
// consonant.
func nextCluster(s string) int {
	if s[0] < utf8.RuneSelf && (len(s) == 1 || s[1] < utf8.RuneSelf) {
		return 1
	}
	r, n := utf8.DecodeRuneInString(s)
	return clusterRest(s, r, n)
}

// clusterRest is nextCluster given the cluster's first rune, r, n bytes long.
func clusterRest(s string, r rune, n int) int {
	if r >= 0x1F1E6 && r <= 0x1F1FF { // regional indicators pair into a flag
		if r2, n2 := utf8.DecodeRuneInString(s[n:]); r2 >= 0x1F1E6 && r2 <= 0x1F1FF {
			return n + n2
		}
		return n
	}
	for n < len(s) {
		if c := s[n]; c < 0xcc || c >= 0xe4 && c <= 0xe9 {
			// Nothing below U+0300 extends a cluster, nor do U+4000-U+9FFF
			// (CJK ideographs).
			return n
		}
		r, size := utf8.DecodeRuneInString(s[n:])
		switch {
		case r >= 0x3040 && r <= 0x3098, r >= 0x309B && r <= 0x9FFF, r >= 0xAC00 && r <= 0xD7A3:
			// Kana, CJK ideographs and Hangul syllables never extend a cluster.
			return n
		case unicode.In(r, unicode.Mn, unicode.Me, unicode.Mc),
			r >= 0xFE00 && r <= 0xFE0F, r >= 0xE0100 && r <= 0xE01EF,
			r >= 0x1F3FB && r <= 0x1F3FF, r >= 0xE0020 && r <= 0xE007F:
			n += size
		case r == 0x200D: // ZWJ: the next rune joins this cluster
			n += size
			if n < len(s) {
				_, s2 := utf8.DecodeRuneInString(s[n:])
				n += s2
			}
		default:
			return n
		}
	}
	return n
}

// clusterWidth is the display width of one cluster: its base rune decides.
func clusterWidth(c string) int {
	r, _ := utf8.DecodeRuneInString(c)
	switch {
	case r == '\t':
		return 4
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		return 0
	case isWide(r) || r >= 0x1F1E6 && r <= 0x1F1FF:
		return 2
	}
	return 1
}

func displayWidth(s string) int {
	w := 0
	for len(s) > 0 {
		n := nextCluster(s)
		w += clusterWidth(s[:n])
		s = s[n:]
	}
	return w
}

// Kinsoku: characters that must not start a line, and ones that must not
// end it, in Japanese and Chinese typesetting.
const (
	noLineStart = "、。，．,.!?！？：；:;）」』】〕〉》〙〗｝]）…‥ーぁぃぅぇぉっゃゅょゎァィゥェォッャュョヮヵヶ・々〻"
	noLineEnd   = "（「『【〔〈《〘〖｛[("
)

type piece struct {
	text        string
	width       int
	spaceBefore bool
}

// pieces splits a line into unbreakable runs. A line may break at a space
// (which is dropped) or between two clusters when either is wide, unless
// kinsoku forbids it. Thai has no spaces between words and no break
// opportunity without a dictionary, so a long Thai run stays whole unless it
// is wider than a line.
func pieces(out []piece, s string) []piece {
	start, w := -1, 0
	space := false
	var prev rune = -1
	prevWide := false
	for i := 0; i < len(s); {
		r, n := rune(s[i]), 1
		switch {
		case r >= utf8.RuneSelf:
			r, n = utf8.DecodeRuneInString(s[i:])
			n = clusterRest(s[i:], r, n)
		case i+1 < len(s) && s[i+1] >= utf8.RuneSelf:
			n = clusterRest(s[i:], r, n)
		}
		if r == ' ' {
			if start >= 0 {
				out = append(out, piece{text: s[start:i], width: w, spaceBefore: space})
				start, w = -1, 0
			}
			space = len(out) > 0
			prev = -1
			i += n
			continue
		}
		wide := isWide(r)
		if start >= 0 && prev >= 0 && (wide || prevWide) && !kinsoku(prev, r) {
			out = append(out, piece{text: s[start:i], width: w, spaceBefore: space})
			start, w, space = -1, 0, false
		}
		if start < 0 {
			start = i
		}
		switch {
		case wide || r >= 0x1F1E6 && r <= 0x1F1FF:
			w += 2
		case r >= 0x300 && unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf):
		default:
			w++
		}
		prev, prevWide = r, wide
		i += n
	}
	if start >= 0 {
		out = append(out, piece{text: s[start:], width: w, spaceBefore: space})
	}
	return out
}

// kinsoku reports whether a line must not break between a and b.
func kinsoku(a, b rune) bool { return noStart.has(b) || noEnd.has(a) }

var noStart, noEnd = newRuneSet(noLineStart), newRuneSet(noLineEnd)

// runeSet is a set of Basic Multilingual Plane runes, a bit per rune: the
// test runs for every character of CJK text.
type runeSet [0x10000 / 64]uint64

func newRuneSet(s string) *runeSet {
	var rs runeSet
	for _, r := range s {
		if r > 0xFFFF {
			panic("runeSet: " + string(r) + " is outside the BMP")
		}
		rs[r>>6] |= 1 << (r & 63)
	}
	return &rs
}

func (rs *runeSet) has(r rune) bool {
	return r >= 0 && r <= 0xFFFF && rs[r>>6]&(1<<(r&63)) != 0
}

// wrap writes s wrapped at wrapWidth display columns, never inside a
// character. Hard line breaks in s are kept; URLs are never split.
func (tw *textWriter) wrap(s string, first, rest string) {
	prefix := first
	for {
		line, more, found := strings.Cut(s, "\n")
		tw.pieces = wrapLine(&tw.buf, tw.pieces[:0], line, wrapWidth, &prefix, rest)
		if !found {
			return
		}
		s = more
	}
}

// wrapLine wraps one line; ps is scratch space for its pieces, returned for
// reuse.
func wrapLine(b *bytes.Buffer, ps []piece, s string, width int, prefix *string, rest string) []piece {
	avail := max(width-displayWidth(*prefix), 20)
	b.WriteString(*prefix)
	lw := 0
	newline := func() {
		b.WriteByte('\n')
		b.WriteString(rest)
		*prefix = rest
		lw = 0
	}
	ps = pieces(ps, s)
	for _, p := range ps {
		sep := 0
		if p.spaceBefore && lw > 0 {
			sep = 1
		}
		if lw > 0 && lw+sep+p.width > avail {
			newline()
			sep = 0
		}
		if p.width > avail && !looksLikeURL(p.text) {
			// Forced split at cluster boundaries.
			t := p.text
			if sep == 1 {
				b.WriteByte(' ')
				lw++
			}
			for len(t) > 0 {
				n := nextCluster(t)
				cw := clusterWidth(t[:n])
				if lw > 0 && lw+cw > avail {
					newline()
				}
				b.WriteString(t[:n])
				lw += cw
				t = t[n:]
			}
			continue
		}
		if sep == 1 {
			b.WriteByte(' ')
		}
		b.WriteString(p.text)
		lw += sep + p.width
	}
	b.WriteByte('\n')
	*prefix = rest
	return ps
}

func looksLikeURL(s string) bool {
	return strings.Contains(s, "://") || strings.HasPrefix(s, "(http") || strings.HasPrefix(s, "mailto:")
}
