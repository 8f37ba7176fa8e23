package templates_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald/templates"
	"github.com/stretchr/testify/require"
)

const sampleFront = `---
subject: "Your cart"
sample:
  customer: { first_name: "陽菜" }
  data: { total: 348, word: "**not markup**" }
---
`

// Check renders each sample and flags Markdown that reached the reader as
// text, naming file, line, template, locale and the fragment.
func TestCheckFlagsMarkdownLeftAsText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		front    string // front matter, sampleFront when empty
		body     string
		want     string // "" = clean
		line     int
		channels string
	}{
		{name: "japanese before $", body: "こんにちは\n\nカートに3点（合計***{{ money .data.total \"USD\" }}***）があります。\n",
			want: `"***" is left as text in email and Slack: "カートに3点（合計***$348.00***）があります。": Markdown did not take it as emphasis: a marker between a letter and punctuation`, line: 9, channels: "email and Slack"},
		{name: "unclosed bold", body: "Start your **Pro trial today.\n", want: `"**" is left as text in email and Slack: "Start your **Pro trial to…": no closing ** on its line; put ** after the last word to emphasise, or write \*\* for literal ones`, line: 7},
		{name: "underscores inside a word", body: "a snake__case__name\n", want: `"__" is left as text in email and Slack: "a snake__case__name"`, line: 7},
		{name: "strikethrough", body: "Was ~~$5 now $3\n", want: `"~~" is left as text in email and Slack: "Was ~~$5 now $3": no closing ~~ on its line`, line: 7},
		{name: "stray backtick", body: "Run `make now\n", want: "\"`\" is left as text", line: 7},
		{name: "link with a space", body: "Hi.\n\n[Open the cart](https://x.example/a b)\n", want: `"[Open the cart](https://x.example/a b)" is left as text`, line: 9},
		{name: "link apart", body: "[Open] (https://x.example/)\n", want: `it did not become a link`, line: 7},
		{name: "slack override", front: "---\nsubject: s\nslack: |\n  Fine.\n\n  合計**{{ money 348 \"USD\" }}**です\n---\n", body: "Fine.\n",
			want: `is left as text in Slack: "合計**$348.00**です"`, line: 6},
		{name: "markdown in the subject", front: "---\nsubject: \"**Sale** today\"\n---\n", body: "Body.\n", want: `the subject is plain text, not Markdown: "**" shows as is`, line: 2},
		{name: "markdown in a label", front: "---\nsubject: s\nactions:\n  - { label: \"**Buy**\", event: a.b }\n---\n", body: "Body.\n", want: `action 1's label is plain text`, line: 4},
		{name: "space before", body: "カートに3点（合計 **{{ money .data.total \"USD\" }}**）があります。\n"},
		{name: "enclosing the phrase", body: "カートに3点（**合計{{ money .data.total \"USD\" }}**）があります。\n"},
		{name: "data is literal", body: "You wrote {{ .data.word }}.\n"},
		{name: "escaped", body: `Literally \*\* and \~~ and \` + "`" + ".\n"},
		{name: "code", body: "Type `**` or\n\n```\n__init__ ~~\n```\n"},
		{name: "single markers", body: "5 * 3 = 15, snake_case.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			front := tc.front
			if front == "" {
				front = sampleFront
			}
			s, err := templates.Load(mapFS(map[string]string{"cart/en.md": "---\nsubject: s\n---\nx\n", "cart/ja.md": front + tc.body}), templates.Options{})
			require.NoError(t, err)
			probs := s.Check()
			if tc.want == "" {
				require.Empty(t, probs)
				return
			}
			require.Len(t, probs, 1, "%v", probs)
			p := probs[0]
			require.Equal(t, "cart/ja.md", p.File)
			require.Equal(t, tc.line, p.Line, p.String())
			require.Contains(t, p.Message, "template cart (ja)")
			require.Contains(t, p.Message, tc.want)
		})
	}
}

// The shipped examples render clean in every locale and channel.
func TestExamplesHaveNoMarkdownLeft(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	require.Empty(t, s.Check())
	for _, name := range s.Names() {
		for _, loc := range s.Locales(name) {
			d, ok := s.Sample(name, loc)
			require.True(t, ok)
			c := render(t, s, name, loc, d)
			require.NotContains(t, c.Text, "**", "%s/%s", name, loc)
			require.NotContains(t, c.HTML, "**", "%s/%s", name, loc)
			require.NotContains(t, c.SlackText, "**", "%s/%s", name, loc)
		}
	}
}

// Check reports what was cut to fit Slack, at the line to change.
func TestCheckReportsSlackCuts(t *testing.T) {
	t.Parallel()
	src := "---\nsubject: s\nactions:\n  - { label: \"" + strings.Repeat("Label ", 20) + "\", event: a.b }\n---\n# " + strings.Repeat("Heading ", 30) + "\n"
	s, err := templates.Load(mapFS(map[string]string{"m/en.md": src}), templates.Options{})
	require.NoError(t, err)
	var got []string
	for _, p := range s.Check() {
		got = append(got, p.String())
	}
	require.Equal(t, []string{
		"m/en.md:4: action label longer than 75 characters is cut",
		"m/en.md:6: slack: a heading of 239 characters is cut to 150",
	}, got)
}

// A template missing a locale others have, or one configured, is listed
// with the locale it falls back to; a parent file is no fallback.
func TestCheckLocales(t *testing.T) {
	t.Parallel()
	const f = "---\nsubject: s\n---\nb\n"
	s, err := templates.Load(mapFS(map[string]string{
		"a/en.md": f, "a/ja.md": f,
		"b/en.md": f,
		"c/en.md": f, "c/zh-Hant.md": f,
	}), templates.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		want []string
		out  []string
	}{
		{"union of the templates' locales", nil, []string{
			"a: template a has no zh-Hant (falls back to en)",
			"b: template b has no ja (falls back to en)",
			"b: template b has no zh-Hant (falls back to en)",
			"c: template c has no ja (falls back to en)",
		}},
		{"configured", []string{"en", "zh-hant-TW", "pl"}, []string{
			"a: template a has no zh-Hant-TW (falls back to en)",
			"a: template a has no pl (falls back to en)",
			"b: template b has no zh-Hant-TW (falls back to en)",
			"b: template b has no pl (falls back to en)",
			"c: template c has no pl (falls back to en)",
		}},
		{"all there", []string{"en", "en-GB"}, nil},
		{"not a locale", []string{"en", "not a locale"}, []string{`content.locales: "not a locale" is not a BCP 47 locale such as en, ja or zh-Hant`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, p := range s.CheckLocales(tc.want) {
				got = append(got, p.String())
			}
			require.Equal(t, tc.out, got)
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	const f = "---\nsubject: s\n---\nb\n"
	s, err := templates.Load(mapFS(map[string]string{"a/en.md": f, "a/zh-Hant.md": f}), templates.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		locale, used string
		exact        bool
	}{
		{"", "en", true},
		{"en", "en", true},
		{"EN", "en", true},
		{"zh-Hant", "zh-Hant", true},
		{"zh-Hant-TW", "zh-Hant", false},
		{"pl", "en", false},
	} {
		used, exact, ok := s.Resolve("a", tc.locale)
		require.True(t, ok)
		require.Equal(t, tc.used, used, tc.locale)
		require.Equal(t, tc.exact, exact, tc.locale)
	}
	_, _, ok := s.Resolve("nope", "en")
	require.False(t, ok)
}

// A template that does not parse hides nothing else: Load reports it and
// still returns a set that knows it by name and checks the other
// templates, and a missing sample key hides no Markdown left as text.
func TestLoadProblemsHideNothingElse(t *testing.T) {
	t.Parallel()
	s, err := templates.Load(mapFS(map[string]string{
		"broken/en.md": "---\nsubject: \"Hello {{ .customer.first_name }\"\n---\nHi\n",
		"half/en.md":   "---\nsubject: \"{{ if .data.x }}\"\n---\nHi\n",
		"half/ja.md":   "---\nsubject: s\n---\n**はい\n",
		"lint/en.md":   "---\nsubject: s\nsample:\n  data: { plan: Pro }\n---\nStart your **Pro trial today.\n\nYour plan: {{ .data.missing }}\n",
		"fine/en.md":   "---\nsubject: s\n---\nFine.\n",
	}), templates.Options{})
	var probs templates.Problems
	require.ErrorAs(t, err, &probs)
	require.Len(t, probs, 2, "%v", probs)
	require.Equal(t, "broken/en.md:2: unexpected \"}\" in operand", probs[0].String())
	require.Equal(t, "half/en.md:2: {{ if .data.x }} opened on line 2 has no {{ end }}: add one where its block stops", probs[1].String())
	for _, name := range []string{"broken", "half", "lint", "fine"} {
		require.True(t, s.Has(name), name)
	}
	require.False(t, s.Has("nope"))

	var got []string
	for _, p := range s.Check() {
		got = append(got, p.String())
	}
	require.Equal(t, []string{
		`half/ja.md:4: template half (ja): "**" is left as text in email and Slack: "**はい": no closing ** on its line; put ** after the last word to emphasise, or write \*\* for literal ones`,
		`lint/en.md:6: template lint (en): "**" is left as text in email and Slack: "Start your **Pro trial to…": no closing ** on its line; put ** after the last word to emphasise, or write \*\* for literal ones`,
		`lint/en.md:8: missing key "missing" at <.data.missing>`,
	}, got)
}

// An unclosed {{ if }}, {{ range }} or {{ with }} is reported where it
// opened, not where the field ends.
func TestUnclosedBlockNamedWhereItOpens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ body, want string }{
		{"Hi\n\n{{ if .data.x }}\nSomething\n\nMore\n", "en.md:6: {{ if .data.x }} opened on line 6 has no {{ end }}"},
		{"{{ range .data.items }}\n{{ if .ok }}yes{{ end }}\n{{/* }} */}}\n", "en.md:4: {{ range .data.items }} opened on line 4 has no {{ end }}"},
		{"{{ with .data.x }}{{ else with \"}}\" }}\n{{- if .data.y -}}\n{{ end }}\n", "en.md:4: {{ with .data.x }} opened on line 4 has no {{ end }}"},
	} {
		_, err := templates.Load(mapFS(map[string]string{"u/en.md": "---\nsubject: s\n---\n" + tc.body}), templates.Options{})
		require.ErrorContains(t, err, "u/"+tc.want, tc.body)
	}
}
