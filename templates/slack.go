package templates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/yuin/goldmark/ast"
	east "github.com/yuin/goldmark/extension/ast"
)

// Block Kit limits, from Slack's reference. Lengths are counted the way
// slackLen counts them, which is never less than Slack's count.
const (
	slackBlocksMax      = 50    // blocks in a message
	slackTextMax        = 40000 // the message's top-level text (notifications)
	slackSectionMax     = 3000  // a section's text
	slackHeaderMax      = 150   // a header's plain_text
	slackContextMax     = 10    // elements in a context block
	slackContextTextMax = 3000  // one context element's text
	slackActionsMax     = 25    // elements in an actions block
	slackButtonMax      = 75    // a button's text
	slackButtonValueMax = 2000  // a button's value
	slackButtonURLMax   = 3000  // a button's url
	slackActionIDMax    = 255   // a button's action_id
)

type textObject struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

type slackBlock struct {
	Type     string        `json:"type"`
	Text     *textObject   `json:"text,omitempty"`
	Elements []any         `json:"elements,omitempty"`
	BlockID  string        `json:"block_id,omitempty"`
	Fields   []*textObject `json:"fields,omitempty"`
}

type slackButton struct {
	Type     string     `json:"type"`
	Text     textObject `json:"text"`
	ActionID string     `json:"action_id"`
	Value    string     `json:"value,omitempty"`
	URL      string     `json:"url,omitempty"`
	Style    string     `json:"style,omitempty"`
}

// slackNote says what the Slack writer changed so that a message fits
// Block Kit and something the reader would notice is lost; Check reports
// them. Action is the index of the button concerned, or -1.
type slackNote struct {
	action int
	msg    string
}

func (sw *slackWriter) note(action int, format string, args ...any) {
	if sw.notes != nil {
		*sw.notes = append(*sw.notes, slackNote{action: action, msg: fmt.Sprintf(format, args...)})
	}
}

// message renders the Markdown AST as Slack mrkdwn and Block Kit: a header
// block per heading, a section per paragraph, list, quote or code block
// (split at paragraph, line or word boundaries when longer than a section
// takes), a divider per thematic break, then the buttons and a context line
// with the preference link. The result stays within every Block Kit limit:
// past 50 blocks, sections are merged and then the tail is cut with a final
// "…" section, keeping the buttons and the preference link.
func (sw *slackWriter) message(doc ast.Node, src []byte, actions []Action, messageID, prefs string, lab Labels) (string, json.RawMessage, error) {
	sw.src = src
	defer func() { sw.src = nil }()
	sw.mrkdwn.Reset()
	textLen, textFull := 0, false
	addText := func(t string) { // t is never empty
		if textFull {
			return
		}
		n := slackLen(t)
		if textLen > 0 {
			n += 2
		}
		// Keep room for the "\n\n…" that says the text goes on.
		if textLen+n > slackTextMax-3 {
			textFull = true
			if textLen > 0 {
				sw.mrkdwn.WriteString("\n\n")
			}
			sw.mrkdwn.WriteString("…")
			return
		}
		if textLen > 0 {
			sw.mrkdwn.WriteString("\n\n")
		}
		sw.mrkdwn.WriteString(t)
		textLen += n
	}
	var blocks []slackBlock
	for c := doc.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Heading:
			plain := inlineText(c, src)
			head := truncate(plain, slackHeaderMax)
			if head != plain {
				sw.note(-1, "slack: a heading of %d characters is cut to %d", slackLen(plain), slackHeaderMax)
			}
			blocks = append(blocks, slackBlock{Type: "header", Text: &textObject{Type: "plain_text", Text: head, Emoji: true}})
			addText("*" + slackEscape(truncate(plain, slackSectionMax-2)) + "*")
		case *ast.ThematicBreak:
			blocks = append(blocks, slackBlock{Type: "divider"})
		case *ast.HTMLBlock:
		default:
			sw.b.Reset()
			sw.spans = sw.spans[:0]
			sw.block(c, "")
			t := bytes.TrimRight(sw.b.Bytes(), "\n")
			if len(t) == 0 {
				continue
			}
			ts := string(t)
			if len(ts) <= slackSectionMax || slackLen(ts) <= slackSectionMax {
				blocks = append(blocks, slackBlock{Type: "section", Text: &textObject{Type: "mrkdwn", Text: ts}})
				addText(ts)
				continue
			}
			for _, part := range splitMrkdwn(ts, sw.spans, slackSectionMax) {
				blocks = append(blocks, slackBlock{Type: "section", Text: &textObject{Type: "mrkdwn", Text: part}})
				addText(part)
			}
		}
	}
	tail := sw.buttons(actions, messageID)
	// Only a web page makes a preference link: anything else in <…> could
	// be a Slack mention or command.
	if lower := strings.ToLower(prefs); strings.HasPrefix(lower, "https://") || strings.HasPrefix(lower, "http://") {
		link := "<" + slackURL(prefs) + "|" + slackEscape(lab.Preferences) + ">"
		if cb, ok := contextBlock(link); ok {
			tail = append(tail, cb)
		} else {
			sw.note(-1, "slack: the preference link is longer than %d characters and is left out", slackContextTextMax)
		}
	}
	if room := slackBlocksMax - len(tail); len(blocks) > room {
		n := len(blocks)
		var cut bool
		if blocks, cut = fitBlocks(blocks, room); cut {
			sw.note(-1, "slack: the message needs %d blocks, Slack shows %d: the end is cut", n+len(tail), slackBlocksMax)
		}
	}
	blocks = append(blocks, tail...)
	sw.json.Reset()
	enc := json.NewEncoder(&sw.json)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(blocks); err != nil {
		return "", nil, err
	}
	return sw.mrkdwn.String(), json.RawMessage(bytes.Clone(bytes.TrimRight(sw.json.Bytes(), "\n"))), nil
}

// buttons turns the actions into actions blocks of at most 25 buttons. A
// label is cut to fit; a URL or value that Slack would refuse is left out
// (a link-only button then goes), since a cut one would lead nowhere.
func (sw *slackWriter) buttons(actions []Action, messageID string) []slackBlock {
	if len(actions) == 0 {
		return nil
	}
	els := make([]any, 0, len(actions))
	for i, a := range actions {
		b := slackButton{Type: "button", Text: textObject{Type: "plain_text", Text: truncate(a.Label, slackButtonMax), Emoji: true}, Style: a.Style}
		if b.Text.Text != a.Label {
			sw.note(i, "action label longer than %d characters is cut", slackButtonMax)
		}
		if slackLen(a.URL) <= slackButtonURLMax {
			b.URL = a.URL
		} else {
			sw.note(i, "action url of %d characters: Slack takes at most %d, so the button is sent without it (left out if it has no event)", slackLen(a.URL), slackButtonURLMax)
		}
		// Load keeps event names within an action_id; an Action built
		// otherwise is only a link.
		if a.Event != "" && len(a.Event) <= slackActionIDMax {
			b.ActionID = a.Event
			if slackLen(messageID) <= slackButtonValueMax {
				b.Value = messageID
			}
		} else {
			if b.URL == "" && a.URL != "" {
				continue
			}
			// Slack wants an action_id on every button, unique in the block.
			b.ActionID = "link." + strconv.Itoa(i)
		}
		els = append(els, b)
	}
	var out []slackBlock
	// At most the blocks that leave one for the text and one for the
	// preference link.
	for len(els) > 0 && len(out) < slackBlocksMax-2 {
		n := min(len(els), slackActionsMax)
		out = append(out, slackBlock{Type: "actions", Elements: els[:n:n]})
		els = els[n:]
	}
	if len(els) > 0 {
		sw.note(-1, "slack: %d buttons do not fit in a message and are left out", len(els))
	}
	return out
}

// contextBlock makes a context block of mrkdwn elements, leaving out any
// element longer than Slack takes and any past the tenth. ok is false when
// nothing is left.
func contextBlock(texts ...string) (slackBlock, bool) {
	els := make([]any, 0, min(len(texts), slackContextMax))
	for _, t := range texts {
		if len(els) == slackContextMax {
			break
		}
		if t == "" || slackLen(t) > slackContextTextMax {
			continue
		}
		els = append(els, textObject{Type: "mrkdwn", Text: t})
	}
	return slackBlock{Type: "context", Elements: els}, len(els) > 0
}

// fitBlocks brings blocks down to at most room (≥ 1) blocks: first by
// merging neighbouring sections, then also headings (as bold text) and
// dividers into them, and last by cutting the tail and ending with a "…"
// section; cut says whether it came to that.
func fitBlocks(blocks []slackBlock, room int) (out []slackBlock, cut bool) {
	room = max(room, 1)
	blocks = mergeSections(blocks, false)
	if len(blocks) > room {
		blocks = mergeSections(blocks, true)
	}
	if len(blocks) > room {
		return append(blocks[:room-1], slackBlock{Type: "section", Text: &textObject{Type: "mrkdwn", Text: "…"}}), true
	}
	return blocks, false
}

// mergeSections joins neighbouring sections while the result fits in one
// section. With flatten, headings become bold sections and dividers go, so
// that they merge too.
func mergeSections(blocks []slackBlock, flatten bool) []slackBlock {
	out := blocks[:0]
	for _, b := range blocks {
		if flatten {
			switch b.Type {
			case "divider":
				continue
			case "header":
				b = slackBlock{Type: "section", Text: &textObject{Type: "mrkdwn", Text: "*" + slackEscape(b.Text.Text) + "*"}}
			}
		}
		if n := len(out); n > 0 && b.Type == "section" && out[n-1].Type == "section" {
			prev := out[n-1].Text.Text
			if slackLen(prev)+2+slackLen(b.Text.Text) <= slackSectionMax {
				out[n-1].Text = &textObject{Type: "mrkdwn", Text: prev + "\n\n" + b.Text.Text}
				continue
			}
		}
		out = append(out, b)
	}
	return out
}

// slackLen is the length of s for Slack's limits: UTF-16 code units, which
// is the code point count or more (a character outside the BMP counts two),
// so a text within it is within Slack's count however Slack counts.
func slackLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			n++
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		n += utf16.RuneLen(r)
		i += size
	}
	return n
}

// fitting returns the longest prefix of s, in bytes, within max by slackLen.
func fitting(s string, max int) int {
	n := 0
	for i := 0; i < len(s); {
		size, w := 1, 1
		if s[i] >= utf8.RuneSelf {
			var r rune
			r, size = utf8.DecodeRuneInString(s[i:])
			w = utf16.RuneLen(r)
		}
		if n+w > max {
			return i
		}
		n += w
		i += size
	}
	return len(s)
}

// span marks bytes of the block being written that a section split must not
// cut: a link (hard: never) or a formatted run (soft: only when nothing else
// fits, as each part would show a stray marker).
type span struct {
	start, end int
	hard       bool
}

// Cut ranks, best first. A cut inside a formatted run ranks below every cut
// outside one.
const (
	cutParagraph = 7
	cutLine      = 6
	cutWord      = 5
	cutSentence  = 4 // after 。！？, where CJK text has no spaces
	cutChar      = 3
	cutKinsoku   = 2 // between characters kinsoku keeps together
	cutSoftBreak = 1 // a line or word break inside a formatted run
	cutSoftChar  = 0
	cutRanks     = 8
)

// splitMrkdwn splits mrkdwn text into parts of at most max, each cut at the
// best boundary in the second half of the room left (paragraph, line, word,
// then character), never inside a link or an entity such as &amp;. The
// whitespace a cut falls on is dropped (but for the indent of the next
// line); nothing else is. spans are the links and formatted runs in t.
func splitMrkdwn(t string, spans []span, max int) []string {
	// block[i] > 0 when a cut before byte i falls inside a formatted run (1)
	// or a link or entity (2).
	block := make([]uint8, len(t)+1)
	for _, sp := range spans {
		lvl := uint8(1)
		if sp.hard {
			lvl = 2
		}
		for i := sp.start + 1; i < sp.end && i < len(t); i++ {
			block[i] = max8(block[i], lvl)
		}
	}
	for i := 0; i < len(t); i++ {
		if t[i] != '&' {
			continue
		}
		for _, e := range [...]string{"&amp;", "&lt;", "&gt;"} {
			if strings.HasPrefix(t[i:], e) {
				for j := i + 1; j < i+len(e); j++ {
					block[j] = 2
				}
			}
		}
	}
	var parts []string
	add := func(p string) {
		if strings.TrimSpace(p) != "" {
			parts = append(parts, p)
		}
	}
	off, left := 0, slackLen(t) // left: the length of t[off:]
	for off < len(t) {
		rest := t[off:]
		if left <= max {
			add(rest)
			break
		}
		limit := off + fitting(rest, max)
		var last [cutRanks]int // the furthest cut of each rank, 0 = none
		var skip [cutRanks]int // how much whitespace that cut drops
		prev := rune(-1)
		for i := off; i <= limit; {
			var r rune = -1
			size := 0
			if i < len(t) {
				r, size = utf8.DecodeRuneInString(t[i:])
				size = clusterRest(t[i:], r, size)
			}
			if i > off && block[i] < 2 {
				soft := block[i] == 1
				rank, drop := -1, 0
				switch {
				case r == '\n' && prev == '\n':
					// the second line feed of a paragraph break
				case r == '\n' && i+1 < len(t) && t[i+1] == '\n':
					rank, drop = cutParagraph, 2
				case r == '\n':
					rank, drop = cutLine, 1
				case r == ' ':
					rank, drop = cutWord, 1
				case prev == '。' || prev == '！' || prev == '？':
					rank = cutSentence
				case prev == '\n' || prev == ' ':
					// after a separator that is itself a cut
				case kinsoku(prev, r):
					rank = cutKinsoku
				default:
					rank = cutChar
				}
				if rank >= 0 && soft {
					rank = cutSoftChar
					if drop > 0 {
						rank = cutSoftBreak
					}
				}
				if rank >= 0 && i+drop <= len(t) && (drop == 0 || block[min(i+drop, len(t))] < 2) {
					last[rank], skip[rank] = i, drop
				}
			}
			if i >= len(t) {
				break
			}
			prev = r
			i += size
		}
		cut, drop := 0, 0
		for r := cutRanks - 1; r >= 0 && cut == 0; r-- {
			if last[r] > 0 && last[r]-off >= (limit-off)/2 {
				cut, drop = last[r], skip[r]
			}
		}
		for r := cutRanks - 1; r >= 0 && cut == 0; r-- {
			if last[r] > 0 {
				cut, drop = last[r], skip[r]
			}
		}
		if cut == 0 {
			// Only when a link or entity fills the whole room, which the
			// writer prevents: cut where the room ends.
			cut = limit
			if cut == off {
				_, size := utf8.DecodeRuneInString(rest)
				cut = off + size
			}
		}
		add(strings.TrimRight(t[off:cut], " \n"))
		// Spaces after a line feed indent the next line: they stay.
		word := drop == 1 && t[cut] == ' '
		next := cut + drop
		for next < len(t) && (t[next] == '\n' || word && t[next] == ' ') {
			next++
		}
		left -= slackLen(t[off:next])
		off = next
	}
	return parts
}

func max8(a, b uint8) uint8 {
	if a > b {
		return a
	}
	return b
}

// slackEscape escapes the three characters Slack treats as control
// characters. With them escaped, data cannot form <!channel>, <!here>,
// <@U123> or a link.
func slackEscape(s string) string {
	if !strings.ContainsAny(s, "&<>") {
		return s
	}
	return slackEscaper.Replace(s)
}

var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackURL makes a URL safe inside <url|text>: | and > are percent-encoded
// by linkURL already; & still needs Slack's entity.
func slackURL(u string) string {
	if !strings.ContainsAny(u, "&<>|") {
		return u
	}
	return slackURLEscaper.Replace(u)
}

var slackURLEscaper = strings.NewReplacer("&", "&amp;", "<", "%3C", ">", "%3E", "|", "%7C")

type slackWriter struct {
	src    []byte
	b      bytes.Buffer // the block being written
	spans  []span       // links and formatted runs in b
	notes  *[]slackNote // nil unless a check collects them
	tb     bytes.Buffer // one text node, before escaping
	mrkdwn bytes.Buffer // the message text, blocks apart
	json   bytes.Buffer
	// boundary is set after a closing format marker: Slack only honours
	// markers at word boundaries, so a letter right after one gets a
	// zero-width space (common in CJK text, which has no spaces).
	boundary bool
}

func (sw *slackWriter) block(n ast.Node, indent string) {
	sw.boundary = false // a new line is a word boundary
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		sw.b.WriteString(indent)
		sw.inline(n)
		sw.b.WriteByte('\n')
	case *ast.Heading:
		sw.b.WriteString(indent + "*")
		sw.inline(n)
		sw.b.WriteString("*\n")
	case *ast.List:
		i := n.Start
		if i == 0 {
			i = 1
		}
		for item := n.FirstChild(); item != nil; item = item.NextSibling() {
			marker := "• "
			if n.IsOrdered() {
				marker = strconv.Itoa(i) + ". "
				i++
			} else if indent != "" {
				marker = "◦ "
			}
			first := true
			for c := item.FirstChild(); c != nil; c = c.NextSibling() {
				if _, nested := c.(*ast.List); nested {
					sw.block(c, indent+"    ")
					continue
				}
				if first {
					sw.boundary = false
					sw.b.WriteString(indent + marker)
					sw.inline(c)
					sw.b.WriteByte('\n')
					first = false
				} else {
					sw.block(c, indent+"    ")
				}
			}
		}
	case *ast.Blockquote:
		inner := slackWriter{src: sw.src, notes: sw.notes}
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			inner.block(c, "")
		}
		body := strings.TrimRight(inner.b.String(), "\n")
		base, prefix := sw.b.Len(), indent+">"
		var starts []int // where each line of body starts
		for i := 0; i <= len(body); {
			starts = append(starts, i)
			j := strings.IndexByte(body[i:], '\n')
			if j < 0 {
				break
			}
			i += j + 1
		}
		for l := range strings.SplitSeq(body, "\n") {
			sw.b.WriteString(prefix + l + "\n")
		}
		// Each line of body gained the prefix in front of it.
		at := func(p int) int {
			k, _ := slices.BinarySearch(starts, p+1)
			return base + p + k*len(prefix)
		}
		for _, sp := range inner.spans {
			sw.spans = append(sw.spans, span{start: at(sp.start), end: at(sp.end), hard: sp.hard})
		}
	case *ast.FencedCodeBlock, *ast.CodeBlock:
		start := sw.b.Len()
		sw.b.WriteString(indent + "```\n")
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			writeSlackEscaped(&sw.b, seg.Value(sw.src))
		}
		sw.b.WriteString("```\n")
		sw.spans = append(sw.spans, span{start: start, end: sw.b.Len() - 1})
	case *ast.HTMLBlock, *ast.ThematicBreak:
	default:
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			sw.block(c, indent)
		}
	}
}

func (sw *slackWriter) text(s string) {
	sw.textBytes([]byte(s))
}

func (sw *slackWriter) textBytes(s []byte) {
	if len(s) == 0 {
		return
	}
	if sw.boundary {
		if r, _ := utf8.DecodeRune(s); isWordRune(r) {
			sw.b.WriteString("\u200b")
		}
		sw.boundary = false
	}
	writeSlackEscaped(&sw.b, s)
}

// writeSlackEscaped is slackEscape writing to b.
func writeSlackEscaped(b *bytes.Buffer, s []byte) {
	written := 0
	for i, c := range s {
		var repl string
		switch c {
		case '&':
			repl = "&amp;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		default:
			continue
		}
		b.Write(s[written:i])
		b.WriteString(repl)
		written = i + 1
	}
	b.Write(s[written:])
}

// open writes an opening format marker and returns where it starts.
func (sw *slackWriter) open(marker string) int {
	if r, _ := utf8.DecodeLastRune(sw.b.Bytes()); isWordRune(r) {
		sw.b.WriteString("\u200b")
	}
	sw.boundary = false
	start := sw.b.Len()
	sw.b.WriteString(marker)
	return start
}

// close writes the closing marker of the run open started.
func (sw *slackWriter) close(marker string, start int) {
	sw.b.WriteString(marker)
	sw.boundary = true
	sw.spans = append(sw.spans, span{start: start, end: sw.b.Len()})
}

func isWordRune(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }

func (sw *slackWriter) inline(n ast.Node) {
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Text:
			sw.tb.Reset()
			writeText(&sw.tb, c.Segment.Value(sw.src), c.IsRaw())
			if c.HardLineBreak() {
				sw.tb.WriteByte('\n')
			} else if c.SoftLineBreak() {
				softBreak(&sw.tb, c, sw.src)
			}
			sw.textBytes(sw.tb.Bytes())
		case *ast.String:
			sw.tb.Reset()
			writeText(&sw.tb, c.Value, c.IsRaw())
			sw.textBytes(sw.tb.Bytes())
		case *ast.Emphasis:
			m := "_"
			if c.Level >= 2 {
				m = "*"
			}
			start := sw.open(m)
			sw.inline(c)
			sw.close(m, start)
		case *east.Strikethrough:
			start := sw.open("~")
			sw.inline(c)
			sw.close("~", start)
		case *ast.CodeSpan:
			start := sw.open("`")
			for t := c.FirstChild(); t != nil; t = t.NextSibling() {
				if tt, ok := t.(*ast.Text); ok {
					sw.tb.Reset()
					writeReplacingNewlines(&sw.tb, tt.Segment.Value(sw.src))
					writeSlackEscaped(&sw.b, sw.tb.Bytes())
				}
			}
			sw.close("`", start)
		case *ast.Link:
			sw.link(linkURL(c.Destination), inlineText(c, sw.src))
		case *ast.Image:
			sw.link(linkURL(c.Destination), inlineText(c, sw.src))
		case *ast.AutoLink:
			u := string(c.URL(sw.src))
			if c.AutoLinkType == ast.AutoLinkEmail && !strings.HasPrefix(u, "mailto:") {
				sw.link("mailto:"+u, u)
			} else {
				sw.link(u, u)
			}
		case *ast.RawHTML:
		default:
			sw.inline(c)
		}
	}
}

// link writes <url|text>. Only web and mail links become Slack links:
// Slack's own schemes would otherwise let a template reach into Slack. A
// link longer than a section takes cannot be sent whole, so its text stands
// in for it.
func (sw *slackWriter) link(url, label string) {
	lower := strings.ToLower(url)
	if !strings.HasPrefix(lower, "https://") && !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "mailto:") {
		sw.text(label)
		return
	}
	u, l := slackURL(url), ""
	if label != "" && label != url {
		l = slackEscape(label)
	}
	if n := len(u) + len(l) + 3; n > slackSectionMax && slackLen(u)+slackLen(l)+3 > slackSectionMax {
		sw.note(-1, "slack: a link of %d characters is longer than a section takes (%d): only its text is shown", slackLen(u)+slackLen(l)+3, slackSectionMax)
		if label == "" {
			label = url
		}
		sw.text(label)
		return
	}
	sw.boundary = false
	start := sw.b.Len()
	sw.b.WriteString("<" + u)
	if l != "" {
		sw.b.WriteString("|" + l)
	}
	sw.b.WriteString(">")
	sw.spans = append(sw.spans, span{start: start, end: sw.b.Len(), hard: true})
}

// truncate cuts s to at most n by slackLen, between characters (never
// inside one, such as an emoji sequence or a Thai vowel on its consonant),
// ending with "…".
func truncate(s string, n int) string {
	if len(s) <= n || slackLen(s) <= n {
		return s
	}
	end, used := 0, 0
	for end < len(s) {
		k := nextCluster(s[end:])
		w := slackLen(s[end : end+k])
		if used+w > n-1 {
			break
		}
		used += w
		end += k
	}
	// Between words when a word boundary is not far back.
	if i := strings.LastIndexByte(s[:end], ' '); i >= end/2 && end < len(s) && s[end] != ' ' {
		end = i
	}
	return strings.TrimRightFunc(s[:end], unicode.IsSpace) + "…"
}
