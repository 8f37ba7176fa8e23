package templates

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Templates make one context element; the builder still keeps any context
// block within Slack's 10 elements of 3,000 characters.
func TestContextBlockLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		texts []string
		want  int // elements kept; 0 = no block
	}{
		{"one", []string{"<https://x.example|Manage preferences>"}, 1},
		{"twelve", strings.Fields(strings.Repeat("a ", 12)), slackContextMax},
		{"too long left out", []string{strings.Repeat("x", slackContextTextMax+1), "ok"}, 1},
		{"nothing left", []string{strings.Repeat("😀", slackContextTextMax/2+1)}, 0},
		{"empty", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, ok := contextBlock(tc.texts...)
			require.Equal(t, tc.want > 0, ok)
			require.Len(t, b.Elements, tc.want)
			for _, e := range b.Elements {
				require.LessOrEqual(t, slackLen(e.(textObject).Text), slackContextTextMax)
			}
		})
	}
}

// splitMrkdwn always makes progress and keeps each part within max, even
// when nothing but a link or an entity is at hand.
func TestSplitMrkdwnEdges(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		text  string
		spans []span
		max   int
		want  []string
	}{
		{"words", "aaa bbb ccc", nil, 7, []string{"aaa bbb", "ccc"}},
		{"paragraphs", "aaaaa\n\nbb cc", nil, 9, []string{"aaaaa", "bb cc"}},
		{"lines keep their indent", "• a\n    ◦ b", nil, 7, []string{"• a", "    ◦ b"}},
		{"entity kept whole", "ab&amp;cd", nil, 5, []string{"ab", "&amp;", "cd"}},
		{"link kept whole", "x <u|l> y", []span{{start: 2, end: 7, hard: true}}, 6, []string{"x", "<u|l>", "y"}},
		{"link wider than max", "<uuuu>", []span{{start: 0, end: 6, hard: true}}, 4, []string{"<uuu", "u>"}},
		{"bold kept whole", "a *b c* d e", []span{{start: 2, end: 7}}, 8, []string{"a *b c*", "d e"}},
		{"emoji by UTF-16", strings.Repeat("😀", 5), nil, 4, []string{"😀😀", "😀😀", "😀"}},
		{"whitespace only parts go", "a      b", nil, 2, []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := splitMrkdwn(tc.text, tc.spans, tc.max)
			require.Equal(t, tc.want, got)
			for _, p := range got {
				require.LessOrEqual(t, slackLen(p), tc.max)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly ten", 11, "exactly ten"},
		{"a few words here", 8, "a few…"},
		{"abcdefghij", 5, "abcd…"},
		{"👩🏽‍💻👩🏽‍💻", 8, "👩🏽‍💻…"}, // never half an emoji sequence
		{"กิ่กิ่กิ่", 5, "กิ่…"},
	} {
		got := truncate(tc.in, tc.n)
		require.Equal(t, tc.want, got, tc.in)
		require.LessOrEqual(t, slackLen(got), tc.n)
	}
}
