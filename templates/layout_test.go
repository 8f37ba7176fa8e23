package templates_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/templates"
)

// Each locale's own fonts come first, so Han characters take its forms;
// every stack names the other languages' fonts and ends generic.
func TestTextCSS(t *testing.T) {
	t.Parallel()
	cases := []struct {
		locale, first string // first: the first non-Latin family
		wordBreak     bool   // word-break:keep-all
		lineBreak     bool   // line-break:strict
	}{
		{"", "Leelawadee UI", false, false},
		{"en-GB", "Leelawadee UI", false, false},
		{"not a locale", "Leelawadee UI", false, false},
		{"th-TH", "Leelawadee UI", false, false},
		{"ja", "Hiragino Sans", false, true},
		{"ko-KR", "Apple SD Gothic Neo", true, false},
		{"zh-Hant", "PingFang TC", false, true},
		{"zh-TW", "PingFang TC", false, true},
		{"zh-CN", "PingFang SC", false, true},
		{"pl", "Leelawadee UI", false, false},
	}
	for _, tc := range cases {
		css := templates.TextCSS(tc.locale)
		fonts := strings.Split(regexp.MustCompile(`font-family:([^;]+)`).FindStringSubmatch(css)[1], ",")
		require.Equal(t, "-apple-system", fonts[0], tc.locale)
		require.Equal(t, "sans-serif", fonts[len(fonts)-1], tc.locale)
		require.Equal(t, tc.first, fonts[7], "%s: %s", tc.locale, css)
		for _, f := range []string{"Noto Sans Thai", "Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans CJK TC"} {
			require.Contains(t, fonts, f, tc.locale)
		}
		require.Contains(t, css, "overflow-wrap:anywhere", tc.locale)
		require.Equal(t, tc.wordBreak, strings.Contains(css, "word-break:keep-all"), tc.locale)
		require.Equal(t, tc.lineBreak, strings.Contains(css, "line-break:strict"), tc.locale)
		require.NotContains(t, css, `"`, "no quotes to escape in a style attribute")
	}
}

// Every text cell of the email, the footer included, carries the stack and
// line breaking of the message's language; a custom layout can use it too.
func TestLayoutTextStyle(t *testing.T) {
	t.Parallel()
	s := loadExamples(t)
	c := render(t, s, "welcome", "ko-KR", templates.Data{
		Customer: customer(map[string]any{"first_name": "Ada"}),
		Data:     map[string]any{"plan": "Pro", "trial_days": 14, "dashboard_url": "https://app.example.com"},
		Links:    templates.Links{Preferences: "https://p.example", Unsubscribe: "https://u.example"},
	})
	want := templates.TextCSS("ko") + ";"
	require.Equal(t, 3, strings.Count(c.HTML, want), "brand, body and footer")
	require.Contains(t, want, "word-break:keep-all")

	custom, err := templates.Load(mapFS(map[string]string{
		"_layout.html": `<p style="{{.TextStyle}}color:#111">{{.Body}}</p>`,
		"w/en.md":      "---\nsubject: s\n---\nhi\n",
		"w/ja.md":      "---\nsubject: s\n---\nこんにちは\n",
	}), templates.Options{})
	require.NoError(t, err)
	c = render(t, custom, "w", "ja", templates.Data{Customer: customer(nil)})
	require.Contains(t, c.HTML, `<p style="`+templates.TextCSS("ja")+`;color:#111">`)
}
