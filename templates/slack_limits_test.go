package templates_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/templates"
	"github.com/stretchr/testify/require"
)

// kitBlock is a Block Kit block as herald writes it.
type kitBlock struct {
	Type string `json:"type"`
	Text *struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"text"`
	Elements []struct {
		Type string `json:"type"`
		Text json.RawMessage
		// buttons
		ActionID string `json:"action_id"`
		Value    string `json:"value"`
		URL      string `json:"url"`
	} `json:"elements"`
}

// slackChars counts as the strictest reading of Slack's "characters":
// UTF-16 code units.
func slackChars(s string) int { return len(utf16.Encode([]rune(s))) }

// requireBlockKit asserts that c's Slack message is within every Block Kit
// limit herald can reach, that no link or entity is cut, and returns the
// blocks.
func requireBlockKit(t *testing.T, c herald.Content) []kitBlock {
	t.Helper()
	require.LessOrEqual(t, slackChars(c.SlackText), 40000, "top-level text")
	var blocks []kitBlock
	require.NoError(t, json.Unmarshal(c.SlackBlocks, &blocks))
	require.LessOrEqual(t, len(blocks), 50, "blocks")
	for i, b := range blocks {
		switch b.Type {
		case "section":
			require.NotNil(t, b.Text)
			require.NotEmpty(t, strings.TrimSpace(b.Text.Text), "block %d", i)
			require.LessOrEqual(t, slackChars(b.Text.Text), 3000, "section %d", i)
			requireWhole(t, b.Text.Text)
		case "header":
			require.LessOrEqual(t, slackChars(b.Text.Text), 150, "header %d", i)
		case "context":
			require.NotEmpty(t, b.Elements)
			require.LessOrEqual(t, len(b.Elements), 10, "context %d", i)
			for _, e := range b.Elements {
				var s string
				require.NoError(t, json.Unmarshal(e.Text, &s))
				require.LessOrEqual(t, slackChars(s), 3000)
				requireWhole(t, s)
			}
		case "actions":
			require.NotEmpty(t, b.Elements)
			require.LessOrEqual(t, len(b.Elements), 25, "actions %d", i)
			for _, e := range b.Elements {
				var label struct{ Text string }
				require.NoError(t, json.Unmarshal(e.Text, &label))
				require.LessOrEqual(t, slackChars(label.Text), 75)
				require.LessOrEqual(t, slackChars(e.Value), 2000)
				require.LessOrEqual(t, slackChars(e.URL), 3000)
				require.NotEmpty(t, e.ActionID)
				require.LessOrEqual(t, slackChars(e.ActionID), 255)
			}
		case "divider":
		default:
			t.Fatalf("unexpected block type %q", b.Type)
		}
	}
	return blocks
}

// requireWhole asserts that every <link> in a mrkdwn text is closed and
// every & starts a whole entity.
func requireWhole(t *testing.T, s string) {
	t.Helper()
	open := false
	for _, r := range s {
		switch r {
		case '<':
			require.False(t, open, "a link inside a link: %q", s)
			open = true
		case '>':
			open = false
		}
	}
	require.False(t, open, "a link is cut: %q", s)
	for i := strings.IndexByte(s, '&'); i >= 0; i = strings.IndexByte(s, '&') {
		s = s[i:]
		require.True(t, strings.HasPrefix(s, "&amp;") || strings.HasPrefix(s, "&lt;") || strings.HasPrefix(s, "&gt;"), "an entity is cut: %q", s)
		s = s[1:]
	}
}

// sections returns the texts of the section blocks.
func sections(blocks []kitBlock) []string {
	var out []string
	for _, b := range blocks {
		if b.Type == "section" {
			out = append(out, b.Text.Text)
		}
	}
	return out
}

func noSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
}

// prose returns n words of Markdown with bold words, links and an
// ampersand among them, and the mrkdwn Slack should show for it.
func prose(n int) (md, mrkdwn string) {
	var a, b strings.Builder
	for i := range n {
		if i > 0 {
			a.WriteByte(' ')
			b.WriteByte(' ')
		}
		switch {
		case i%50 == 7:
			fmt.Fprintf(&a, "**bold word%d**", i)
			fmt.Fprintf(&b, "*bold word%d*", i)
		case i%70 == 3:
			fmt.Fprintf(&a, "[see page %d](https://lumen.example/p/%d?a=1&b=2)", i, i)
			fmt.Fprintf(&b, "<https://lumen.example/p/%d?a=1&amp;b=2|see page %d>", i, i)
		case i%90 == 5:
			a.WriteString("R&D")
			b.WriteString("R&amp;D")
		default:
			fmt.Fprintf(&a, "word%d", i)
			fmt.Fprintf(&b, "word%d", i)
		}
	}
	return a.String(), b.String()
}

func renderBody(t *testing.T, body string, d templates.Data) herald.Content {
	t.Helper()
	return renderFile(t, "---\nsubject: s\nactions:\n  - { label: Go, event: x.go, url: \"https://lumen.example/go\" }\n---\n"+body+"\n", d)
}

func renderFile(t *testing.T, src string, d templates.Data) herald.Content {
	t.Helper()
	s, err := templates.Load(mapFS(map[string]string{"m/en.md": src}), templates.Options{})
	require.NoError(t, err)
	if d.Links.Preferences == "" {
		d.Links.Preferences = "https://h.example/p?t=1"
	}
	if d.MessageID == "" {
		d.MessageID = "msg-1"
	}
	c, err := s.Render("m", "en", d)
	require.NoError(t, err)
	return c
}

// A section holds at most 3,000 characters: longer text is split into
// several sections at the best boundary, never inside a link, an entity, a
// formatted run or a character, and nothing but the whitespace a split
// falls on is lost.
func TestSlackSectionLimit(t *testing.T) {
	t.Parallel()
	words, wordsMrkdwn := prose(1500)
	thai := strings.Repeat("กิ่", 2500) // consonant + vowel + tone mark: one character
	for _, tc := range []struct {
		name, body, want string
		exact            bool // no whitespace to drop: the parts join back exactly
	}{
		{"words", words, wordsMrkdwn, false},
		{"lines", strings.Repeat("a line of text, then a hard break  \n", 300), strings.TrimSpace(strings.Repeat("a line of text, then a hard break\n", 300)), false},
		{"japanese", strings.Repeat("カートの内容は、まもなく削除されます。", 400), strings.Repeat("カートの内容は、まもなく削除されます。", 400), true},
		{"thai", thai, thai, true},
		{"emoji", strings.Repeat("👩🏽‍💻🇵🇱", 1000), strings.Repeat("👩🏽‍💻🇵🇱", 1000), true},
		{"list", strings.Repeat("- an item with **bold** words in it\n", 200), strings.TrimSpace(strings.Repeat("• an item with *bold* words in it\n", 200)), false},
		{"quote", strings.Repeat("> a quoted line with [a link](https://x.example/q)\n>\n", 200), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := renderBody(t, tc.body, templates.Data{})
			blocks := requireBlockKit(t, c)
			parts := sections(blocks)
			require.Greater(t, len(parts), 1, "split into several sections")
			for _, p := range parts {
				require.Zero(t, strings.Count(p, "*")%2, "a bold run is cut: %q", p)
				r, _ := utf8.DecodeRuneInString(p)
				require.False(t, unicode.Is(unicode.Mn, r), "a character is cut: %q", p[:min(len(p), 20)])
			}
			switch {
			case tc.exact:
				require.Equal(t, tc.want, strings.Join(parts, ""))
			case tc.want != "":
				require.Equal(t, noSpace(tc.want), noSpace(strings.Join(parts, "")))
			default:
				for _, p := range parts {
					for l := range strings.SplitSeq(p, "\n") {
						require.True(t, strings.HasPrefix(l, ">"), "every quoted line keeps its marker: %q", l)
					}
				}
			}
		})
	}
}

// A link longer than a section cannot be sent: its text stands in for it.
func TestSlackLinkLongerThanSection(t *testing.T) {
	t.Parallel()
	long := "https://lumen.example/?q=" + strings.Repeat("a", 3100)
	c := renderBody(t, "Before [the long one]("+long+") after.", templates.Data{})
	parts := sections(requireBlockKit(t, c))
	require.Equal(t, []string{"Before the long one after."}, parts)
}

// A header holds at most 150 characters: a longer heading is cut with "…".
func TestSlackHeaderLimit(t *testing.T) {
	t.Parallel()
	heading := strings.Repeat("Heading words ", 20) + "👩🏽‍💻"
	c := renderBody(t, "# "+heading+"\n\nBody.", templates.Data{})
	blocks := requireBlockKit(t, c)
	require.Equal(t, "header", blocks[0].Type)
	require.True(t, strings.HasSuffix(blocks[0].Text.Text, "…"))
	require.True(t, strings.HasPrefix(heading, strings.TrimSuffix(blocks[0].Text.Text, "…")))
}

// The context block (the preference link) stays within 10 elements of
// 3,000 characters; a link Slack cannot take is left out, not cut.
func TestSlackContextLimit(t *testing.T) {
	t.Parallel()
	c := renderBody(t, "Body.", templates.Data{Links: templates.Links{Preferences: "https://h.example/p?t=" + strings.Repeat("x", 3100)}})
	for _, b := range requireBlockKit(t, c) {
		require.NotEqual(t, "context", b.Type)
	}
	c = renderBody(t, "Body.", templates.Data{Links: templates.Links{Preferences: "https://h.example/p?t=1&u=2"}})
	blocks := requireBlockKit(t, c)
	require.Equal(t, "context", blocks[len(blocks)-1].Type)
}

func actionsFile(actions ...string) string {
	return "---\nsubject: s\nactions:\n" + strings.Join(actions, "\n") + "\n---\nBody.\n"
}

// Buttons: text at most 75, value 2,000, url 3,000, action_id 255, and at
// most 25 to an actions block.
func TestSlackButtonLimits(t *testing.T) {
	t.Parallel()
	longURL := "https://lumen.example/?q=" + strings.Repeat("u", 3100)
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("  - { label: \"Button %d\", event: \"b.%d\" }", i, i))
	}
	buttons := func(blocks []kitBlock) (n int, ids []string) {
		for _, b := range blocks {
			if b.Type == "actions" {
				n++
				for _, e := range b.Elements {
					ids = append(ids, e.ActionID)
				}
			}
		}
		return n, ids
	}
	for _, tc := range []struct {
		name      string
		src       string
		messageID string
		check     func(t *testing.T, blocks []kitBlock)
	}{
		{"text", actionsFile(`  - { label: "` + strings.Repeat("Label ", 20) + `", event: a.b }`), "", func(t *testing.T, blocks []kitBlock) {
			var label struct{ Text string }
			require.NoError(t, json.Unmarshal(blocks[1].Elements[0].Text, &label))
			require.True(t, strings.HasSuffix(label.Text, "…"))
		}},
		{"value", actionsFile(`  - { label: "Yes", event: a.b }`), strings.Repeat("m", 2100), func(t *testing.T, blocks []kitBlock) {
			require.Equal(t, "a.b", blocks[1].Elements[0].ActionID)
			require.Empty(t, blocks[1].Elements[0].Value, "a cut message ID would point nowhere")
		}},
		{"url", actionsFile(`  - { label: "Open", url: "{{ .data.u }}" }`, `  - { label: "Yes", event: a.b, url: "{{ .data.u }}" }`), "", func(t *testing.T, blocks []kitBlock) {
			_, ids := buttons(blocks)
			require.Equal(t, []string{"a.b"}, ids, "the link-only button goes, the event button stays without its link")
			require.Empty(t, blocks[1].Elements[0].URL)
		}},
		{"actions", actionsFile(many...), "", func(t *testing.T, blocks []kitBlock) {
			n, ids := buttons(blocks)
			require.Equal(t, 2, n)
			require.Len(t, ids, 30, "every button is kept")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := renderFile(t, tc.src, templates.Data{MessageID: tc.messageID, Data: map[string]any{"u": longURL}})
			tc.check(t, requireBlockKit(t, c))
		})
	}

	// An action_id is the event name: a longer one than Slack takes is
	// refused when the template loads, since a cut one would report another
	// event.
	_, err := templates.Load(mapFS(map[string]string{"m/en.md": actionsFile(`  - { label: "Yes", event: "` + strings.Repeat("e", 300) + `" }`)}), templates.Options{})
	require.ErrorContains(t, err, "m/en.md:4: ")
	require.ErrorContains(t, err, "at most 255")
}

// A message holds at most 50 blocks: sections are merged first (nothing
// lost), then the tail is cut and ends with "…", keeping the buttons and the
// preference link.
func TestSlackBlocksLimit(t *testing.T) {
	t.Parallel()
	t.Run("merged", func(t *testing.T) {
		t.Parallel()
		var body strings.Builder
		for i := range 80 {
			fmt.Fprintf(&body, "## Part %d\n\nParagraph %d.\n\n---\n\n", i, i)
		}
		c := renderBody(t, body.String(), templates.Data{})
		blocks := requireBlockKit(t, c)
		all := strings.Join(sections(blocks), "\n")
		for i := range 80 {
			require.Contains(t, all, fmt.Sprintf("Paragraph %d.", i))
			require.Contains(t, all, fmt.Sprintf("*Part %d*", i))
		}
		require.Equal(t, "actions", blocks[len(blocks)-2].Type)
		require.Equal(t, "context", blocks[len(blocks)-1].Type)
	})
	t.Run("cut", func(t *testing.T) {
		t.Parallel()
		para, _ := prose(300) // about 2,400 characters: two do not merge
		var body strings.Builder
		for range 60 {
			body.WriteString(para + "\n\n")
		}
		c := renderBody(t, body.String(), templates.Data{})
		blocks := requireBlockKit(t, c)
		require.Len(t, blocks, 50)
		require.Equal(t, "…", blocks[47].Text.Text)
		require.Equal(t, "actions", blocks[48].Type)
		require.Equal(t, "context", blocks[49].Type)
	})
}

// The top-level text, shown in notifications, holds at most 40,000
// characters: it is cut between sections and ends with "…".
func TestSlackTextLimit(t *testing.T) {
	t.Parallel()
	para, paraMrkdwn := prose(300)
	body := strings.Repeat(para+"\n\n", 20)
	full := strings.Repeat(paraMrkdwn, 20)
	c := renderBody(t, body, templates.Data{})
	requireBlockKit(t, c)
	require.True(t, strings.HasSuffix(c.SlackText, "\n\n…"))
	require.Greater(t, slackChars(c.SlackText), 35000, "cut no more than needed")
	require.True(t, strings.HasPrefix(noSpace(full), noSpace(strings.TrimSuffix(c.SlackText, "…"))))
	requireWhole(t, c.SlackText)
}
