package templates_test

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/templates"
)

const hostileTemplate = `---
subject: "Hi {{ .customer.first_name }}: {{ .data.s }}"
preheader: "{{ .data.s }}"
---
Hello {{ .customer.first_name }}, **{{ .data.s }}** and _{{ .data.t }}_.

[Open]({{ .data.url }}) · {{ .data.s | upper }} · {{ default "x" .data.missing }}

> {{ .data.t }}
`

// FuzzRender renders one template with hostile customer and event data:
// no panic, no line break in the subject, no Slack mention or HTML tag
// formed from data, a javascript: link never made clickable, blocks that
// stay valid JSON.
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
	set, err := templates.Load(fstest.MapFS{"t/en.md": {Data: []byte(hostileTemplate)}}, templates.Options{BrandName: "Lumen"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, s, link string) {
		c, err := set.Render("t", "en", templates.Data{
			Customer: herald.Customer{ID: "c1", Locale: "en", Attributes: map[string]any{"first_name": name}},
			Data:     map[string]any{"s": s, "t": name + s, "url": link},
			Now:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		})
		if err != nil {
			return
		}
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
// template it accepts must render its sample without panicking.
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
			return
		}
		_, _ = set.Render("t", "en", templates.Data{
			Customer: herald.Customer{ID: "c1", Locale: "en"},
			Data:     map[string]any{"x": "<!channel>", "a": 1},
			Now:      time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		})
	})
}
