package templates_test

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/templates"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// fixedNow makes date helpers deterministic in golden files.
var fixedNow = time.Date(2025, 6, 2, 9, 30, 0, 0, time.UTC)

var exampleOpts = templates.Options{
	BrandName:     "Lumen",
	PostalAddress: "Lumen Software, 1 Example Street, Springfield",
}

func loadExamples(t testing.TB) *templates.Set {
	t.Helper()
	s, err := templates.Load(os.DirFS("../examples/templates"), exampleOpts)
	require.NoError(t, err)
	return s
}

func mapFS(files map[string]string) fstest.MapFS {
	m := fstest.MapFS{}
	for name, body := range files {
		m[name] = &fstest.MapFile{Data: []byte(body)}
	}
	return m
}

const welcomeEN = `---
subject: "Welcome aboard, {{ .customer.first_name }}"
preheader: "Your {{ .data.plan }} trial is ready"
actions:
  - { label: "Book a demo", event: demo.requested, style: primary }
  - { label: "Open dashboard", url: "{{ .data.dashboard_url }}" }
sample:
  customer: { first_name: "Ada", id: "c1", email: "ada@example.com", timezone: "Europe/Warsaw" }
  data: { plan: "Pro", dashboard_url: "https://app.example.com" }
---
Hi {{ .customer.first_name }}, your **{{ .data.plan }}** trial has started.
`

func render(t *testing.T, s *templates.Set, name, locale string, d templates.Data) herald.Content {
	t.Helper()
	c, err := s.Render(name, locale, d)
	require.NoError(t, err)
	return c
}

func customer(attrs map[string]any) herald.Customer {
	return herald.Customer{ID: "c1", Email: "ada@example.com", Timezone: "Europe/Warsaw", Attributes: attrs}
}

func TestExamplesCheckClean(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	require.Empty(t, s.Check())
	want := []string{"cart-last-chance", "cart-reminder", "comment-digest", "congrats", "feedback-request", "nudge", "password-reset", "upgrade-offer", "we-miss-you", "welcome", "winback-offer"}
	require.Equal(t, want, s.Names())
	for _, n := range want {
		require.Equal(t, []string{"en", "ja", "ko", "pl", "th", "zh-Hant"}, s.Locales(n), n)
	}
}

func TestLocaleFallback(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	only := mapFS(map[string]string{
		"hi/en.md": "---\nsubject: hi\n---\nHello\n",
		"hi/zh.md": "---\nsubject: hi\n---\n你好\n",
	})
	zh, err := templates.Load(only, templates.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		set            *templates.Set
		locale, custom string
		want           string
	}{
		{s, "", "zh-Hant-TW", "zh-Hant"},
		{s, "", "zh-TW", "zh-Hant"},
		{s, "", "zh-HK", "zh-Hant"},
		{s, "", "ja-JP", "ja"},
		{s, "", "ko-KR", "ko"},
		{s, "", "th-TH", "th"},
		{s, "", "pl-PL", "pl"},
		{s, "", "en-GB", "en"},
		{s, "", "pt-BR", "en"},
		{s, "", "", "en"},
		{s, "", "not a locale", "en"},
		{s, "ja", "pl-PL", "ja"}, // an explicit locale wins over the customer's
		{zh, "", "zh-Hant-TW", "zh"},
		{zh, "", "zh-CN", "zh"},
		{zh, "", "de-DE", "en"},
	} {
		name := "welcome"
		if tc.set == zh {
			name = "hi"
		}
		d, ok := s.Sample("welcome", "en")
		require.True(t, ok)
		d.Customer.Locale = tc.custom
		c := render(t, tc.set, name, tc.locale, d)
		require.Equal(t, tc.want, c.Locale, "%s/%s", tc.locale, tc.custom)
		if tc.set == s {
			require.Contains(t, c.HTML, `<html lang="`+tc.want+`" dir="ltr">`)
		}
	}
}

func TestRenderUnknownTemplate(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	require.False(t, s.Has("nope"))
	require.True(t, s.Has("welcome"))
	_, err := s.Render("nope", "en", templates.Data{})
	var he *herald.Error
	require.ErrorAs(t, err, &he)
	require.Equal(t, herald.ENotFound, he.Code)
}

func TestMissingKeyNamesFileLocaleAndKey(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	for _, tc := range []struct {
		locale, file string
		data         map[string]any
		key          string
	}{
		{"ja-JP", "welcome/ja.md", map[string]any{"plan": "Pro", "dashboard_url": "https://x.example"}, `"trial_days"`},
		{"pl", "welcome/pl.md", map[string]any{"trial_days": 14, "dashboard_url": "https://x.example"}, `"plan"`},
	} {
		_, err := s.Render("welcome", tc.locale, templates.Data{Customer: customer(map[string]any{"first_name": "Ada"}), Data: tc.data})
		require.Error(t, err)
		var he *herald.Error
		require.ErrorAs(t, err, &he)
		require.Equal(t, herald.EInvalid, he.Code)
		var p templates.Problem
		require.True(t, errors.As(err, &p))
		require.Equal(t, tc.file, p.File)
		require.Positive(t, p.Line)
		require.Contains(t, err.Error(), tc.key)
		require.Contains(t, err.Error(), tc.file)
	}
	// A customer attribute is a key like any other.
	_, err := s.Render("welcome", "en", templates.Data{Customer: customer(nil), Data: map[string]any{"plan": "Pro", "trial_days": 14, "dashboard_url": "https://x"}})
	require.ErrorContains(t, err, `missing key "first_name"`)
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	fsys := mapFS(map[string]string{
		"good/en.md":    welcomeEN,
		"typo/en.md":    "---\nsubject: hi\nsubjet: oops\n---\nbody\n",
		"badyaml/en.md": "---\nsubject: hi\nactions: [\n---\nbody\n",
		// The fuzzer's find (testdata/fuzz/FuzzLoad/empty-tag-list): the
		// YAML library panicked on an empty tag where a list belongs.
		"emptytag/en.md":  "---\nsubject: hi\nactions: !\n---\nbody\n",
		"parse/en.md":     "---\nsubject: hi\n---\nline one\n\nline {{ .data.x \n",
		"subj/en.md":      "---\npreheader: x\nsubject: \"{{ .nope }\"\n---\nbody\n",
		"locale/xx.md":    "---\nsubject: hi\n---\nbody\n",
		"locale/en.md":    "---\nsubject: hi\n---\nbody\n",
		"nodefault/ja.md": "---\nsubject: hi\n---\nbody\n",
		"nofm/en.md":      "just text\n",
		"act/en.md":       "---\nsubject: hi\nactions:\n  - { label: x }\n  - { label: y, event: \"bad event\" }\n---\nbody\n",
		"incl/en.md":      "---\nsubject: hi\n---\n{{ template \"x\" }}\n",
		"_layout.html":    "<html>\n<p>{{ .Nope</p>\n",
	})
	_, err := templates.Load(fsys, templates.Options{})
	var probs templates.Problems
	require.ErrorAs(t, err, &probs)
	got := map[string]bool{}
	for _, p := range probs {
		got[p.String()] = true
	}
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, len(probs))
	for _, want := range []string{
		`typo/en.md:3: front matter: unknown field "subjet"`,
		`badyaml/en.md:3:`,
		`emptytag/en.md:1: front matter: malformed YAML`,
		`parse/en.md:7: unclosed action started on line 6`,
		`subj/en.md:3:`,
		`locale/xx.md: unknown locale "xx"`,
		`nodefault: no en.md`,
		`nofm/en.md:1: missing front matter`,
		`act/en.md:4: action "x": give it an event, a url, or both`,
		`act/en.md:5: action "y": event name "bad event"`,
		`incl/en.md:4: {{template "x"}}`,
		`_layout.html:2:`,
	} {
		found := false
		for p := range got {
			if strings.HasPrefix(p, want) {
				found = true
			}
		}
		require.True(t, found, "want a problem starting %q in\n%s", want, err)
	}
	for p := range got {
		require.False(t, strings.HasPrefix(p, "good/"), p)
	}
}

func TestCheckReportsRenderProblems(t *testing.T) {
	t.Parallel()
	fsys := mapFS(map[string]string{
		"a/en.md": "---\nsubject: hi\nsample:\n  data: { x: 1 }\n---\nok {{ .data.x }}\n\n{{ .data.y }}\n",
		"b/en.md": "---\nsubject: hi\nactions:\n  - { label: Go, url: \"{{ .data.u }}\" }\nsample:\n  data: { u: \"/relative\" }\n---\nbody\n",
		"c/en.md": "---\nsubject: \"{{ .data.s }}\"\nsample:\n  data: { s: \"\" }\n---\nbody {{ date .data.s }}\n",
	})
	s, err := templates.Load(fsys, templates.Options{})
	require.NoError(t, err)
	var got []string
	for _, p := range s.Check() {
		got = append(got, p.String())
	}
	require.Equal(t, []string{
		`a/en.md:8: missing key "y" at <.data.y>`,
		`b/en.md:4: action url "/relative" is not an absolute http(s) URL`,
		`c/en.md:6: at <date .data.s>: error calling date: "" is not an RFC 3339 time or a YYYY-MM-DD date`,
	}, got)
}

func TestHostileData(t *testing.T) {
	t.Parallel()
	s, err := templates.Load(mapFS(map[string]string{"m/en.md": `---
subject: "Hi {{ .customer.first_name }}"
preheader: "{{ .data.note }}"
actions:
  - { label: "Open {{ .data.note }}", url: "{{ .data.url }}", event: open.clicked }
---
Hi {{ .customer.first_name }}, **{{ .data.note }}** [link]({{ .data.url }}) {{ markdown .data.md }}
`}), templates.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name  string
		value string
		check func(t *testing.T, c herald.Content)
	}{
		{"script", "<script>alert(1)</script>", func(t *testing.T, c herald.Content) {
			require.NotContains(t, c.HTML, "<script>")
			require.Contains(t, c.HTML, "Hi &lt;script&gt;alert(1)&lt;/script&gt;,")
			require.Contains(t, c.Text, "Hi <script>alert(1)</script>,")
			require.Contains(t, c.SlackText, "Hi &lt;script&gt;alert(1)&lt;/script&gt;,")
		}},
		{"channel", "<!channel> <!here> <!everyone> <@U123>", func(t *testing.T, c herald.Content) {
			var blocks []struct {
				Text *struct{ Type, Text string } `json:"text"`
			}
			require.NoError(t, json.Unmarshal(c.SlackBlocks, &blocks))
			for _, f := range blocks {
				if f.Text != nil && f.Text.Type == "mrkdwn" {
					require.NotContains(t, f.Text.Text, "<!")
					require.NotContains(t, f.Text.Text, "<@")
				}
			}
			require.NotContains(t, c.SlackText, "<!")
			require.NotContains(t, c.SlackText, "<@")
			require.Contains(t, c.SlackText, "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt; &lt;@U123&gt;")
			require.Contains(t, c.Text, "Hi <!channel> <!here> <!everyone> <@U123>,")
		}},
		{"markdown", "*bold* **x** [a](https://evil.example) # h", func(t *testing.T, c herald.Content) {
			require.Contains(t, c.HTML, "Hi *bold* **x** [a](https://evil.example) # h,")
			require.NotContains(t, c.HTML, "evil.example\"")
			require.Contains(t, c.Text, "Hi *bold* **x** [a](https://evil.example) # h,")
			require.NotContains(t, c.SlackText, "<https://evil.example")
		}},
		{"entities", "&amp; &lt;b&gt; \\*", func(t *testing.T, c herald.Content) {
			require.Contains(t, c.HTML, "Hi &amp;amp; &amp;lt;b&amp;gt; \\*,")
			require.Contains(t, c.Text, "Hi &amp; &lt;b&gt; \\*,")
		}},
		{"crlf", "Ada\r\nBcc: victim@example.com\nX", func(t *testing.T, c herald.Content) {
			require.Equal(t, "Hi Ada Bcc: victim@example.com X", c.Subject)
			require.NotContains(t, c.Preheader, "\n")
			require.NotContains(t, c.Preheader, "\r")
			require.Contains(t, c.Text, "Hi Ada Bcc: victim@example.com X,")
		}},
		{"rtl and emoji", "مرحبا שלום 👩🏽‍💻🇵🇱", func(t *testing.T, c herald.Content) {
			require.Equal(t, "Hi مرحبا שלום 👩🏽‍💻🇵🇱", c.Subject)
			require.Contains(t, c.HTML, "Hi مرحبا שלום 👩🏽‍💻🇵🇱,")
			require.Contains(t, c.Text, "Hi مرحبا שלום 👩🏽‍💻🇵🇱,")
			require.Contains(t, c.SlackText, "Hi مرحبا שלום 👩🏽‍💻🇵🇱,")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := render(t, s, "m", "en", templates.Data{
				Customer:  customer(map[string]any{"first_name": tc.value}),
				Data:      map[string]any{"note": tc.value, "url": "https://ok.example/a_b?x=1&y=2", "md": "_yes_"},
				MessageID: "msg-1",
			})
			tc.check(t, c)
			// Opting in with the markdown helper keeps formatting.
			require.Contains(t, c.HTML, "<em>yes</em>")
			require.Contains(t, c.SlackText, "_yes_")
			require.Contains(t, c.HTML, `href="https://ok.example/a_b?x=1&amp;y=2"`)
			require.Contains(t, c.SlackText, "<https://ok.example/a_b?x=1&amp;y=2|link>")
			require.True(t, json.Valid(c.SlackBlocks))
		})
	}
}

func TestDangerousLinksFromData(t *testing.T) {
	t.Parallel()
	s, err := templates.Load(mapFS(map[string]string{"m/en.md": "---\nsubject: s\n---\n[click]({{ .data.url }})\n"}), templates.Options{})
	require.NoError(t, err)
	c := render(t, s, "m", "en", templates.Data{Data: map[string]any{"url": "javascript:alert(1)"}})
	require.NotContains(t, c.HTML, "javascript:")
	require.NotContains(t, c.Text, "javascript:")
	require.NotContains(t, c.SlackText, "javascript:")
}

func TestSlackBlocks(t *testing.T) {
	t.Parallel()
	s, err := templates.Load(mapFS(map[string]string{"welcome/en.md": welcomeEN + "\n# Next\n\n- one\n- two\n\n---\n\n```\ncode <x>\n```\n"}), templates.Options{})
	require.NoError(t, err)
	d := templates.Data{
		Customer:  customer(map[string]any{"first_name": "Ada"}),
		Data:      map[string]any{"plan": "Pro", "dashboard_url": "https://app.example.com/d"},
		Links:     templates.Links{Preferences: "https://h.example/p?t=1&u=2"},
		MessageID: "msg-42",
	}
	c := render(t, s, "welcome", "", d)
	var blocks []map[string]any
	require.NoError(t, json.Unmarshal(c.SlackBlocks, &blocks))
	var types []string
	for _, b := range blocks {
		types = append(types, b["type"].(string))
	}
	require.Equal(t, []string{"section", "header", "section", "divider", "section", "actions", "context"}, types)
	require.Equal(t, "Hi Ada, your *Pro* trial has started.", blocks[0]["text"].(map[string]any)["text"])
	require.Equal(t, "• one\n• two", blocks[2]["text"].(map[string]any)["text"])
	require.Equal(t, "```\ncode &lt;x&gt;\n```", blocks[4]["text"].(map[string]any)["text"])
	els := blocks[5]["elements"].([]any)
	demo := els[0].(map[string]any)
	require.Equal(t, "demo.requested", demo["action_id"])
	require.Equal(t, "msg-42", demo["value"])
	require.Equal(t, "primary", demo["style"])
	link := els[1].(map[string]any)
	require.Equal(t, "https://app.example.com/d", link["url"])
	require.NotEmpty(t, link["action_id"])
	ctx := blocks[6]["elements"].([]any)[0].(map[string]any)
	require.Equal(t, "<https://h.example/p?t=1&amp;u=2|Manage preferences>", ctx["text"])

	require.Equal(t, []templates.Action{
		{Label: "Book a demo", Event: "demo.requested", Style: "primary"},
		{Label: "Open dashboard", URL: "{{ .data.dashboard_url }}"},
	}, s.Actions("welcome", ""))
}

func TestSlackOverride(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	d, _ := s.Sample("cart-reminder", "en")
	c := render(t, s, "cart-reminder", "en", d)
	require.True(t, strings.HasPrefix(c.SlackText, "Hi Ada 👋 You still have 3 items"), c.SlackText)
	require.Contains(t, c.Text, "Return to your cart")
	require.NotContains(t, c.SlackText, "Return to your cart")
}

func TestHelpers(t *testing.T) {
	t.Parallel()
	body := `{{ money .data.n "EUR" }}|{{ money .data.n "JPY" }}|{{ money .data.neg "USD" }}|{{ number .data.big }}|` +
		`{{ date .data.t }}|{{ datetime .data.t }}|{{ date }}|{{ default "none" .data.empty }}|{{ upper .data.s }}|{{ title .data.s }}|{{ track "https://x.example/a" "ev" }}`
	locales := []string{"en", "pl", "ja", "ko", "th", "zh-Hant"}
	files := map[string]string{}
	for _, l := range locales {
		files["h/"+l+".md"] = "---\nsubject: s\n---\n" + body + "\n"
	}
	s, err := templates.Load(mapFS(files), templates.Options{Track: func(target, event string) string { return target + "?t=" + event }})
	require.NoError(t, err)
	off, err := templates.Load(mapFS(files), templates.Options{})
	require.NoError(t, err)
	want := map[string]string{
		"en":      "€1,234.50|¥1,234|-$5.00|1,234,567.125|Mar 2, 2025|Mar 2, 2025, 10:15 AM|Jun 2, 2025|none|ŁÓDŹ STREET|Łódź Street|https://x.example/a?t=ev",
		"pl":      "1 234,50 €|1 234 JPY|-5,00 USD|1 234 567,125|2 mar 2025|2 mar 2025, 10:15|2 cze 2025|none|ŁÓDŹ STREET|Łódź Street|https://x.example/a?t=ev",
		"ja":      "€1,234.50|￥1,234|-$5.00|1,234,567.125|2025年3月2日|2025年3月2日 10:15|2025年6月2日|none|ŁÓDŹ STREET|Łódź Street|https://x.example/a?t=ev",
		"ko":      "€1,234.50|JP¥1,234|-US$5.00|1,234,567.125|2025년 3월 2일|2025년 3월 2일 오전 10:15|2025년 6월 2일|none|ŁÓDŹ STREET|Łódź Street|https://x.example/a?t=ev",
		"th":      "€1,234.50|¥1,234|-US$5.00|1,234,567.125|2 มี.ค. 2568|2 มี.ค. 2568 เวลา 10:15 น.|2 มิ.ย. 2568|none|ŁÓDŹ STREET|Łódź Street|https://x.example/a?t=ev",
		"zh-Hant": "€1,234.50|¥1,234|-US$5.00|1,234,567.125|2025年3月2日|2025年3月2日 上午10:15|2025年6月2日|none|ŁÓDŹ STREET|Łódź Street|https://x.example/a?t=ev",
	}
	for _, l := range locales {
		d := templates.Data{
			Customer: herald.Customer{Timezone: "Europe/Warsaw"},
			Data:     map[string]any{"n": 1234.5, "neg": -5, "big": 1234567.125, "t": "2025-03-02T09:15:00Z", "empty": "", "s": "łódź street"},
			Now:      fixedNow,
		}
		c := render(t, s, "h", l, d)
		got := strings.ReplaceAll(c.SlackText, "\u00a0", " ")
		require.Equal(t, want[l], got, l)
		c = render(t, off, "h", l, d)
		require.True(t, strings.HasSuffix(c.SlackText, "|https://x.example/a"), "tracking off leaves the URL alone")
	}
}

func TestWrapNeverSplitsCharacters(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ ", 6) + strings.Repeat("日本語の文章には空白がありません。", 8) +
		" " + strings.Repeat("한국어 문장은 띄어쓰기를 합니다 ", 8) + strings.Repeat("👩🏽‍💻", 50)
	s, err := templates.Load(mapFS(map[string]string{"w/en.md": "---\nsubject: s\n---\n{{ .data.t }}\n"}), templates.Options{})
	require.NoError(t, err)
	c := render(t, s, "w", "en", templates.Data{Data: map[string]any{"t": long}})
	body := strings.SplitN(c.Text, "\n\n", 2)[0]
	require.Equal(t, strings.Join(strings.Fields(long), ""), strings.Join(strings.Fields(body), ""), "wrapping only adds line breaks")
	for _, line := range strings.Split(body, "\n") {
		require.True(t, strings.ToValidUTF8(line, "\uFFFD") == line)
		require.LessOrEqual(t, templates.DisplayWidth(line), 76, line)
		require.False(t, strings.HasPrefix(line, "。"), "kinsoku: no line starts with a closing mark")
		for _, mark := range []string{"\u0e31", "\u0e34", "\u0e35", "\u0e48", "\u0e49", "\u200d", "\U0001F3FD"} {
			require.False(t, strings.HasPrefix(line, mark), "a combining mark or joiner starts a line: %q", line)
		}
	}
}

func TestWritePreview(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	d, _ := s.Sample("cart-reminder", "ja")
	c := render(t, s, "cart-reminder", "ja", d)
	var email, slack strings.Builder
	require.NoError(t, templates.WritePreview(&email, c, "email"))
	require.NoError(t, templates.WritePreview(&slack, c, "slack"))
	require.Error(t, templates.WritePreview(&slack, c, "fax"))
	require.Contains(t, email.String(), "Subject:   カートに商品が残っています")
	require.Contains(t, email.String(), "----- text/html -----\n<!DOCTYPE html>")
	require.Contains(t, slack.String(), "----- blocks -----\n[\n  {\n    \"type\": \"section\"")
}

func TestCustomLayout(t *testing.T) {
	t.Parallel()
	s, err := templates.Load(mapFS(map[string]string{
		"_layout.html": `<html lang="{{.Lang}}"><b>{{.BrandName}}</b>{{.Body}}<a href="{{.Links.Preferences}}">{{.Labels.Preferences}}</a> {{.Customer.first_name}}</html>`,
		"w/en.md":      "---\nsubject: s\n---\nHi *there*\n",
		"w/ja.md":      "---\nsubject: s\n---\nこんにちは\n",
	}), templates.Options{BrandName: "Acme"})
	require.NoError(t, err)
	d := templates.Data{Customer: customer(map[string]any{"first_name": "<Ada>"}), Links: templates.Links{Preferences: "https://p.example"}}
	c := render(t, s, "w", "ja-JP", d)
	require.Equal(t, `<html lang="ja"><b>Acme</b><p>こんにちは</p>`+"\n"+`<a href="https://p.example">配信設定</a> &lt;Ada&gt;</html>`, c.HTML)
}

func TestConcurrentRender(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	done := make(chan struct{})
	for g := 0; g < 8; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 30; i++ {
				for _, n := range s.Names() {
					for _, l := range s.Locales(n) {
						d, _ := s.Sample(n, l)
						d.Now = fixedNow
						if _, err := s.Render(n, l, d); err != nil {
							t.Error(err)
							return
						}
					}
				}
			}
		}()
	}
	for g := 0; g < 8; g++ {
		<-done
	}
}

// TestGolden renders every example template x locale x channel with its
// sample data; run with -update to rewrite the files after a deliberate change.
func TestGolden(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	seen := map[string]bool{}
	for _, name := range s.Names() {
		for _, loc := range s.Locales(name) {
			d, ok := s.Sample(name, loc)
			require.True(t, ok)
			d.Now = fixedNow
			d.MessageID = "msg-golden"
			d.Links = templates.Links{Preferences: "https://herald.example/preferences?token=tok", Unsubscribe: "https://herald.example/unsubscribe?token=tok"}
			c := render(t, s, name, loc, d)
			require.Equal(t, loc, c.Locale)
			var blocks strings.Builder
			require.NoError(t, templates.WritePreview(&blocks, c, "slack"))
			for channel, got := range map[string]string{
				"html":  c.HTML,
				"text":  "Subject: " + c.Subject + "\nPreheader: " + c.Preheader + "\n\n" + c.Text,
				"slack": blocks.String(),
			} {
				file := filepath.Join("testdata", "golden", name+"."+loc+"."+channel+".golden")
				seen[filepath.Base(file)] = true
				if *update {
					require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
					require.NoError(t, os.WriteFile(file, []byte(got), 0o644))
					continue
				}
				want, err := os.ReadFile(file)
				require.NoError(t, err, "run go test ./templates -update")
				require.Equal(t, string(want), got, file)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "golden"))
	require.NoError(t, err)
	for _, e := range entries {
		require.True(t, seen[e.Name()], "stale golden file %s", e.Name())
	}
	require.Len(t, seen, 11*6*3) // templates × locales × channels
}

func BenchmarkRenderEmail(b *testing.B) {
	s := loadExamples(b)
	d, _ := s.Sample("welcome", "ja")
	d.Now = fixedNow
	d.Links = templates.Links{Preferences: "https://herald.example/p?token=t", Unsubscribe: "https://herald.example/u?token=t"}
	b.ReportAllocs()
	for b.Loop() {
		c, err := s.Render("welcome", "ja-JP", d)
		if err != nil || c.HTML == "" || c.Text == "" {
			b.Fatal(err)
		}
	}
}

// TestRenderChannel checks that a channel's render is the same as that
// channel's part of Render, for every example and both channels.
func TestRenderChannel(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	for _, name := range s.Names() {
		for _, loc := range s.Locales(name) {
			d, _ := s.Sample(name, loc)
			d.Now = fixedNow
			d.MessageID = "msg-1"
			d.Links = templates.Links{Preferences: "https://herald.example/p?token=t", Unsubscribe: "https://herald.example/u?token=t"}
			all := render(t, s, name, loc, d)

			email, err := s.RenderChannel(name, loc, d, herald.ChannelEmail)
			require.NoError(t, err)
			require.Equal(t, herald.Content{Locale: all.Locale, Subject: all.Subject, Preheader: all.Preheader, HTML: all.HTML, Text: all.Text}, email, "%s/%s", name, loc)

			slack, err := s.RenderChannel(name, loc, d, herald.ChannelSlack)
			require.NoError(t, err)
			require.Equal(t, herald.Content{Locale: all.Locale, SlackText: all.SlackText, SlackBlocks: all.SlackBlocks}, slack, "%s/%s", name, loc)
		}
	}
}

func TestRenderChannelErrors(t *testing.T) {
	t.Parallel()
	s, err := templates.Load(mapFS(map[string]string{
		"m/en.md": "---\nsubject: \"{{ .data.subject }}\"\nslack: \"{{ .data.slack }}\"\n---\n{{ .data.body }}\n",
	}), templates.Options{})
	require.NoError(t, err)
	_, err = s.RenderChannel("nope", "", templates.Data{}, herald.ChannelEmail)
	var he *herald.Error
	require.ErrorAs(t, err, &he)
	require.Equal(t, herald.ENotFound, he.Code)
	_, err = s.RenderChannel("m", "", templates.Data{}, "fax")
	require.ErrorAs(t, err, &he)
	require.Equal(t, herald.EInvalid, he.Code)

	// Each channel executes only the fields it sends.
	d := templates.Data{Data: map[string]any{"slack": "s"}}
	_, err = s.RenderChannel("m", "", d, herald.ChannelEmail)
	require.ErrorContains(t, err, `missing key "subject"`)
	c, err := s.RenderChannel("m", "", d, herald.ChannelSlack)
	require.NoError(t, err)
	require.Equal(t, "s", c.SlackText)
	_, err = s.Render("m", "", d)
	require.ErrorContains(t, err, `missing key "subject"`)

	d = templates.Data{Data: map[string]any{"subject": "s", "body": "b"}}
	c, err = s.RenderChannel("m", "", d, herald.ChannelEmail)
	require.NoError(t, err)
	require.Equal(t, "b\n", c.Text)
	_, err = s.RenderChannel("m", "", d, herald.ChannelSlack)
	var p templates.Problem
	require.ErrorAs(t, err, &p)
	require.Equal(t, "m/en.md", p.File)
	require.Contains(t, p.Message, `missing key "slack"`)
}

func benchmarkRenderChannel(b *testing.B, ch herald.Channel) {
	s := loadExamples(b)
	d, _ := s.Sample("welcome", "ja")
	d.Now = fixedNow
	d.MessageID = "msg-1"
	d.Links = templates.Links{Preferences: "https://herald.example/p?token=t", Unsubscribe: "https://herald.example/u?token=t"}
	b.ReportAllocs()
	for b.Loop() {
		c, err := s.RenderChannel("welcome", "ja-JP", d, ch)
		if err != nil || c.HTML == "" && c.SlackText == "" {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderChannelEmail(b *testing.B) { benchmarkRenderChannel(b, herald.ChannelEmail) }

func BenchmarkRenderChannelSlack(b *testing.B) { benchmarkRenderChannel(b, herald.ChannelSlack) }
