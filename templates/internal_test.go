package templates

import (
	"bytes"
	"html/template"
	"strings"
	"testing"
	"testing/fstest"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
	goldmarkhtml "github.com/yuin/goldmark/renderer/html"
	"golang.org/x/text/width"
)

// The shortcuts in isWide, nextCluster and runeSet must agree with what they
// shortcut, for every rune.
func TestWidthShortcuts(t *testing.T) {
	t.Parallel()
	ns, ne := map[rune]bool{}, map[rune]bool{}
	for _, r := range noLineStart {
		ns[r] = true
	}
	for _, r := range noLineEnd {
		ne[r] = true
	}
	for r := rune(0); r <= utf8.MaxRune; r++ {
		k := width.LookupRune(r).Kind()
		want := r >= 0x1100 && (k == width.EastAsianWide || k == width.EastAsianFullwidth)
		if isWide(r) != want {
			t.Fatalf("isWide(%U) = %v, want %v", r, !want, want)
		}
		if noStart.has(r) != ns[r] || noEnd.has(r) != ne[r] {
			t.Fatalf("kinsoku sets disagree at %U", r)
		}
	}
	for r := rune(0x4000); r <= 0x9FFF; r++ {
		s := "a" + string(r)
		require.Equal(t, 1, nextCluster(s), "%U", r)
	}
}

// The default layout filled from a plan is byte for byte the layout
// executed by html/template.
func TestLayoutPlan(t *testing.T) {
	t.Parallel()
	values := []string{
		"", "plain", "<script>alert('x')</script>", `"quoted" & 'single' + plus`, "a\x00b", "bad \xff\xfe utf8 <", "مرحبا שלום 👩🏽‍💻",
		"\u2028\u2029\ufdd0\ufff0", "https://h.example/p?t=1&u=2#f", "javascript:alert(1)", "JavaScript:alert(1)", "HTTPS://X/%41%zz%4",
		"mailto:a@b.example?subject=x y", "data:text/html,<b>", "/rel/path?q=a b&c=<d>", "//host/x", "a/b:c", "ftp://x",
		"http://x/[]!$*,;=@~-._'()\"{}|\\^`", "zHeraldLayoutHole1z", " https://lead.example",
	}
	for _, o := range []Options{{}, {BrandName: "<B&rand> 'x' +", PostalAddress: "1 \"Street\" & <Town>"}, {BrandName: "zHeraldLayoutHole0z"}} {
		s, err := Load(fstest.MapFS{"m/en.md": {Data: []byte("---\nsubject: s\n---\nb\n")}}, o)
		require.NoError(t, err)
		f := s.templates["m"].files[0]
		for _, v := range values {
			for _, links := range []Links{{}, {Preferences: v}, {Unsubscribe: v}, {Preferences: v, Unsubscribe: "https://u.example/?a=1&b=2"}} {
				for _, pre := range []string{"", v, "pre"} {
					subject, body := v, "<p>"+v+"</p>\n"
					ld := s.layoutData(f, subject, pre, template.HTML(body), links)
					var want strings.Builder
					require.NoError(t, defaultLayout.Execute(&want, &ld))
					pl := s.plan(f, pre != "", links)
					if o.BrandName == "zHeraldLayoutHole0z" {
						require.Nil(t, pl)
						continue
					}
					require.NotNil(t, pl)
					var got bytes.Buffer
					pl.fill(&got, subject, pre, []byte(body), links)
					require.Equal(t, want.String(), got.String(), "value %q", v)
				}
			}
		}
	}
}

func FuzzLayoutPlan(f *testing.F) {
	f.Add("subject", "pre", "https://p.example/?a=1&b=2", "mailto:x@y")
	f.Add("<a>", "", "javascript:x", "%zz%41+'\"")
	s, err := Load(fstest.MapFS{"m/en.md": {Data: []byte("---\nsubject: s\n---\nb\n")}}, Options{PostalAddress: "p"})
	require.NoError(f, err)
	file := s.templates["m"].files[0]
	f.Fuzz(func(t *testing.T, subject, pre, prefs, unsub string) {
		links := Links{Preferences: prefs, Unsubscribe: unsub}
		ld := s.layoutData(file, subject, pre, "<p>body</p>", links)
		var want strings.Builder
		require.NoError(t, defaultLayout.Execute(&want, &ld))
		var got bytes.Buffer
		s.plan(file, pre != "", links).fill(&got, subject, pre, []byte("<p>body</p>"), links)
		require.Equal(t, want.String(), got.String())
	})
}

func TestIsDangerousURL(t *testing.T) {
	t.Parallel()
	for _, u := range []string{
		"", "javascript:x", "JavaScript:x", "javascript", "vbscript:x", "VBSCRIPT:", "file:///etc", "FILE:", "data:", "DATA:text/html",
		"data:image/png;base64,x", "data:image/PNG;x", "DATA:IMAGE/GIF;", "data:image/jpeg;", "data:image/webp;", "data:image/svg+xml;x", "data:image/",
		"data:image/pn", "https://x", "mailto:a@b", "java\u212Ascript:", "javascr\u0130pt:", "j\xffvascript:", "\u212Aile:", " javascript:",
	} {
		require.Equal(t, goldmarkhtml.IsDangerousURL([]byte(u)), isDangerousURL([]byte(u)), "%q", u)
	}
}

func FuzzIsDangerousURL(f *testing.F) {
	f.Add("javascript:x")
	f.Add("data:image/png;")
	f.Fuzz(func(t *testing.T, u string) {
		require.Equal(t, goldmarkhtml.IsDangerousURL([]byte(u)), isDangerousURL([]byte(u)), "%q", u)
	})
}
