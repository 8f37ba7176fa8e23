package templates

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/yuin/goldmark/ast"
	east "github.com/yuin/goldmark/extension/ast"
)

// Block Kit limits, from Slack's reference.
const (
	slackHeaderMax  = 150
	slackSectionMax = 3000
	slackButtonMax  = 75
	slackBlocksMax  = 50
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

// message renders the Markdown AST as Slack mrkdwn and Block Kit: a header
// block per heading, a section per paragraph, list, quote or code block, a
// divider per thematic break, then the buttons and a context line with the
// preference link.
func (sw *slackWriter) message(doc ast.Node, src []byte, actions []Action, messageID, prefs string, lab Labels) (string, json.RawMessage, error) {
	sw.src = src
	defer func() { sw.src = nil }()
	sw.mrkdwn.Reset()
	addText := func(t string) { // t is never empty
		if sw.mrkdwn.Len() > 0 {
			sw.mrkdwn.WriteString("\n\n")
		}
		sw.mrkdwn.WriteString(t)
	}
	var blocks []slackBlock
	for c := doc.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Heading:
			plain := inlineText(c, src)
			blocks = append(blocks, slackBlock{Type: "header", Text: &textObject{Type: "plain_text", Text: truncate(plain, slackHeaderMax), Emoji: true}})
			addText("*" + slackEscape(plain) + "*")
		case *ast.ThematicBreak:
			blocks = append(blocks, slackBlock{Type: "divider"})
		case *ast.HTMLBlock:
		default:
			sw.b.Reset()
			sw.block(c, "")
			t := bytes.TrimRight(sw.b.Bytes(), "\n")
			if len(t) == 0 {
				continue
			}
			ts := string(t)
			blocks = append(blocks, slackBlock{Type: "section", Text: &textObject{Type: "mrkdwn", Text: ts}})
			addText(ts)
		}
	}
	if len(actions) > 0 {
		els := make([]any, len(actions))
		for i, a := range actions {
			b := slackButton{Type: "button", Text: textObject{Type: "plain_text", Text: truncate(a.Label, slackButtonMax), Emoji: true}, URL: a.URL, Style: a.Style}
			if a.Event != "" {
				b.ActionID, b.Value = a.Event, messageID
			} else {
				// Slack wants an action_id on every button, unique in the block.
				b.ActionID = "link." + strconv.Itoa(i)
			}
			els[i] = b
		}
		blocks = append(blocks, slackBlock{Type: "actions", Elements: els})
	}
	if prefs != "" {
		blocks = append(blocks, slackBlock{Type: "context", Elements: []any{
			textObject{Type: "mrkdwn", Text: "<" + slackURL(prefs) + "|" + slackEscape(lab.Preferences) + ">"},
		}})
	}
	sw.json.Reset()
	enc := json.NewEncoder(&sw.json)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(blocks); err != nil {
		return "", nil, err
	}
	return sw.mrkdwn.String(), json.RawMessage(bytes.Clone(bytes.TrimRight(sw.json.Bytes(), "\n"))), nil
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
		var inner slackWriter
		inner.src = sw.src
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			inner.block(c, "")
		}
		for l := range strings.SplitSeq(strings.TrimRight(inner.b.String(), "\n"), "\n") {
			sw.b.WriteString(indent + ">" + l + "\n")
		}
	case *ast.FencedCodeBlock, *ast.CodeBlock:
		sw.b.WriteString(indent + "```\n")
		lines := n.Lines()
		for i := 0; i < lines.Len(); i++ {
			seg := lines.At(i)
			writeSlackEscaped(&sw.b, seg.Value(sw.src))
		}
		sw.b.WriteString("```\n")
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

func (sw *slackWriter) open(marker string) {
	if r, _ := utf8.DecodeLastRune(sw.b.Bytes()); isWordRune(r) {
		sw.b.WriteString("\u200b")
	}
	sw.boundary = false
	sw.b.WriteString(marker)
}

func (sw *slackWriter) close(marker string) {
	sw.b.WriteString(marker)
	sw.boundary = true
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
			sw.open(m)
			sw.inline(c)
			sw.close(m)
		case *east.Strikethrough:
			sw.open("~")
			sw.inline(c)
			sw.close("~")
		case *ast.CodeSpan:
			sw.open("`")
			for t := c.FirstChild(); t != nil; t = t.NextSibling() {
				if tt, ok := t.(*ast.Text); ok {
					sw.tb.Reset()
					writeReplacingNewlines(&sw.tb, tt.Segment.Value(sw.src))
					writeSlackEscaped(&sw.b, sw.tb.Bytes())
				}
			}
			sw.close("`")
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
// Slack's own schemes would otherwise let a template reach into Slack.
func (sw *slackWriter) link(url, label string) {
	lower := strings.ToLower(url)
	if !strings.HasPrefix(lower, "https://") && !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "mailto:") {
		sw.text(label)
		return
	}
	sw.boundary = false
	sw.b.WriteString("<" + slackURL(url))
	if label != "" && label != url {
		sw.b.WriteString("|" + slackEscape(label))
	}
	sw.b.WriteString(">")
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
