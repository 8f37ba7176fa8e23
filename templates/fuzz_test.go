package templates_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/templates"
	"github.com/stretchr/testify/require"
)

const hostileTemplate = `---
subject: "Hi {{ .customer.first_name }}: {{ .data.s }}"
preheader: "{{ .data.s }}"
---
Hello {{ .customer.first_name }}, **{{ .data.s }}** and _{{ .data.t }}_.

[Open]({{ .data.url }}) · {{ .data.s | upper }} · {{ default "x" .data.empty }}

> {{ .data.t }}
`

// longTemplate takes hostile data, repeated, past what one Slack section
// holds.
const longTemplate = `---
subject: s
---
{{ .data.long }} **{{ .data.s }}** [x]({{ .data.url }}) {{ .data.long }} _{{ .data.t }}_ {{ .data.long }}

> {{ .data.long }}
`

// FuzzRender renders one template with hostile customer and event data:
// no panic, no line break in the subject, no Slack mention or HTML tag
// formed from data, a javascript: link never made clickable, blocks that
// stay valid JSON and within Block Kit's limits, also when long text is
// split into sections.
func FuzzRender(f *testing.F) {
	for _, s := range [][3]string{
		{"Ada", "<!channel> <!here|here> <@U123> <#C1>", "https://example.com/?a=1&b=2"},
		{"Ada\r\nBcc: x@y", "<script>alert(1)</script>", "javascript:alert(1)"},
		{"*bold* _it_ ~s~ `c`", "[x](javascript:alert(1))", "JaVaScRiPt:alert(1)"},
		{"{{ .customer }}", "&lt;!channel&gt;", "data:text/html,<x>"},
		{"\u2028\u0000\xff", "<<!channel>>", " javascript:x"},
		{"", "<https://evil.example|click>", "mailto:a@b"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	set, err := templates.Load(fstest.MapFS{"t/en.md": {Data: []byte(hostileTemplate)}, "long/en.md": {Data: []byte(longTemplate)}}, templates.Options{BrandName: "Lumen"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, s, link string) {
		d := templates.Data{
			Customer: herald.Customer{ID: "c1", Locale: "en", Attributes: map[string]any{"first_name": name}},
			Data:     map[string]any{"s": s, "t": name + s, "url": link, "empty": ""},
			Links:    templates.Links{Preferences: link},
			Now:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		}
		if s != "" && len(s) < 1100 {
			d.Data["long"] = strings.Repeat(s, 1100/len(s)+1)
			if long, err := set.RenderChannel("long", "en", d, herald.ChannelSlack); err == nil {
				requireBlockKit(t, long)
			}
		}
		c, err := set.Render("t", "en", d)
		if err != nil {
			t.Fatalf("the template renders with any data: %v", err)
		}
		requireBlockKit(t, c)
		if strings.ContainsAny(c.Subject, "\r\n") || strings.ContainsAny(c.Preheader, "\r\n") {
			t.Fatalf("line break in subject or preheader: %q / %q", c.Subject, c.Preheader)
		}
		for _, bad := range []string{"<!channel", "<!here", "<!everyone", "<@", "<#"} {
			if strings.Contains(c.SlackText, bad) {
				t.Fatalf("slack text forms %q from data: %q", bad, c.SlackText)
			}
			if strings.Contains(string(c.SlackBlocks), bad) {
				t.Fatalf("slack blocks form %q from data: %s", bad, c.SlackBlocks)
			}
		}
		html := strings.ToLower(c.HTML)
		for _, bad := range []string{"<script", "href=\"javascript:", "href=\" javascript:", "<iframe"} {
			if strings.Contains(html, bad) {
				t.Fatalf("html holds %q from data", bad)
			}
		}
		if len(c.SlackBlocks) > 0 && !json.Valid(c.SlackBlocks) {
			t.Fatalf("slack blocks are not JSON: %s", c.SlackBlocks)
		}
	})
}

// FuzzLoad parses hostile template files: Load must not panic, and a
// template it accepts must render and Check its sample without panicking;
// one it refuses is still known by name and Check runs on what loaded.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(hostileTemplate))
	f.Add([]byte("---\nsubject: s\nsample:\n  data: { a: 1 }\n---\n{{ .data.a }}\n"))
	f.Add([]byte("---\nsubject: \"{{ .data.x \"\n---\nbody"))
	f.Add([]byte("---\nsubject: s\nactions:\n  - { label: Yes, event: reply.yes }\n---\nb"))
	f.Add([]byte("no front matter"))
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("---\nsubject: &a [*a]\n---\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 4<<10 || strings.Contains(string(src), "range") {
			return // a range over a huge number is slow by design, not a bug
		}
		set, err := templates.Load(fstest.MapFS{"t/en.md": {Data: src}}, templates.Options{})
		if err != nil {
			// What did load is still checked (herald validate goes on).
			_ = set.Check()
			require.True(t, set.Has("t"))
			return
		}
		_, _ = set.Render("t", "en", templates.Data{
			Customer: herald.Customer{ID: "c1", Locale: "en"},
			Data:     map[string]any{"x": "<!channel>", "a": 1},
			Now:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		})
		_ = set.Check()
	})
}

// Inputs under testdata/fuzz/FuzzRender that once broke a FuzzRender
// property, by file name, each with what it broke.
func TestFuzzRenderFindings(t *testing.T) {
	t.Parallel()
	set, err := templates.Load(fstest.MapFS{"t/en.md": {Data: []byte(hostileTemplate)}}, templates.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		file  string
		check func(t *testing.T, c herald.Content)
	}{
		{"preference-link-mention", func(t *testing.T, c herald.Content) {
			// A preference link that is no web URL made <!here|…> in the
			// context block: it is left out.
			require.NotContains(t, string(c.SlackBlocks), "<!")
			require.NotContains(t, string(c.SlackBlocks), `"context"`)
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzRender", tc.file))
			require.NoError(t, err)
			var args []string
			for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
				if v, ok := strings.CutPrefix(l, "string("); ok {
					s, err := strconv.Unquote(strings.TrimSuffix(v, ")"))
					require.NoError(t, err)
					args = append(args, s)
				}
			}
			require.Len(t, args, 3)
			c, err := set.Render("t", "en", templates.Data{
				Customer: herald.Customer{ID: "c1", Locale: "en", Attributes: map[string]any{"first_name": args[0]}},
				Data:     map[string]any{"s": args[1], "t": args[0] + args[1], "url": args[2], "empty": ""},
				Links:    templates.Links{Preferences: args[2]},
			})
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}
