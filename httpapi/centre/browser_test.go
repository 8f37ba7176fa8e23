package centre

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/css"
	"github.com/chromedp/chromedp"
	"github.com/heraldhq/herald/internal/chromiumtest"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/preferences"
)

// browser starts a headless chromium for t, with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	return chromiumtest.Start(t, 800, 1200)
}

func TestBrowserPreferenceCentre(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := browser(t)
	shot := filepath.Join(t.TempDir(), "preferences.png")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.prefsURL("cus_en")),
		chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)),
	))
	before, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		// Click the label, as a person would: it must toggle its box.
		chromedp.Click(chromedp.CSS(`label[for="topic-1"]`)),
		chromedp.SetValue(chromedp.ID(`quiet-start`), "22:00"),
		chromedp.SetValue(chromedp.ID(`quiet-end`), "07:30"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[role=status]`)),
	))
	after, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(shot, png, 0o600))
	require.NotEmpty(t, png)

	require.Contains(t, before, "Your message preferences")
	require.Contains(t, before, "Product news")
	require.Contains(t, before, "Always on")
	require.Contains(t, after, "Your preferences are saved.")

	p, err := b.store.Get(context.Background(), "cus_en")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"product-updates": false}, p.Topics)
	require.NotNil(t, p.QuietHours)
	require.Equal(t, "22:00", p.QuietHours.Start)
	require.Equal(t, "07:30", p.QuietHours.End)

	log, err := b.store.Consent(context.Background(), "cus_en")
	require.NoError(t, err)
	require.Len(t, log, 2)
	for _, e := range log {
		require.Equal(t, preferences.SourcePreferencePage, e.Source)
		require.Equal(t, preferences.ActorCustomer, e.Actor.Kind)
	}
	require.Equal(t, []string{"cus_en:product-updates"}, b.OptOuts())

	checked, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#topic-1').checked`))
	require.NoError(t, err)
	require.False(t, checked, "the saved page shows the saved choice")

	// A tampered link shows the refusal and changes nothing.
	tampered := strings.Replace(b.prefsURL("cus_en"), "token=h1.", "token=h1.A", 1)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(tampered), chromedp.WaitVisible(chromedp.CSS(`h1`))))
	refused, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, refused, "This link doesn't work")
	require.NotContains(t, refused, "Product news")
}

func TestBrowserUnsubscribeButton(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := browser(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.unsubURL("cus_ja", "newsletter")),
		chromedp.WaitVisible(chromedp.CSS(`button`)),
	))
	question, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, question, "「Newsletter」の配信を停止しますか？")
	p, err := b.store.Get(context.Background(), "cus_ja")
	require.NoError(t, err)
	require.Empty(t, p.Topics, "opening the link changes nothing")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`button`)),
	))
	done, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, done, "「Newsletter」の配信を停止しました。")
	p, err = b.store.Get(context.Background(), "cus_ja")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"newsletter": false}, p.Topics)
}

// screenshots is where browser tests keep their screenshots: the folder
// HERALD_SCREENSHOTS names (testdata/out is ignored by git), else a
// temporary one.
func screenshots(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("HERALD_SCREENSHOTS"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.TempDir()
}

// pageStyle is what the browser computed for a page.
type pageStyle struct {
	Lang         string   `json:"lang"`
	FontFamily   string   `json:"fontFamily"`
	WordBreak    string   `json:"wordBreak"`
	LineBreak    string   `json:"lineBreak"`
	OverflowWrap string   `json:"overflowWrap"`
	Label        string   `json:"label"`       // product-updates' label ("" on the unsubscribe page)
	Description  string   `json:"description"` // and its description
	Split        []string `json:"split"`       // words drawn across two lines
}

const pageStyleJS = `(() => {
  const cs = getComputedStyle(document.querySelector('main p'));
  const box = document.querySelector('input[name="topic.product-updates"]');
  const split = [];
  const walk = document.createTreeWalker(document.querySelector('main'), NodeFilter.SHOW_TEXT);
  for (let n; (n = walk.nextNode()); ) {
    for (const m of n.data.matchAll(/[\p{L}\p{M}]+/gu)) {
      const r = document.createRange();
      r.setStart(n, m.index);
      r.setEnd(n, m.index + m[0].length);
      if (new Set([...r.getClientRects()].map(x => Math.round(x.top))).size > 1) split.push(m[0]);
    }
  }
  return {
    lang: document.documentElement.lang,
    fontFamily: cs.fontFamily, wordBreak: cs.wordBreak, lineBreak: cs.lineBreak, overflowWrap: cs.overflowWrap,
    label: box ? document.querySelector('label[for="' + box.id + '"]').textContent : '',
    description: box ? document.getElementById(box.id + '-desc').textContent : '',
    split,
  };
})()`

// families splits a computed font-family into its names.
func families(fontFamily string) []string {
	var out []string
	for f := range strings.SplitSeq(fontFamily, ",") {
		out = append(out, strings.Trim(strings.TrimSpace(f), `"'`))
	}
	return out
}

// TestBrowserLocales opens the preference and unsubscribe pages in every
// page language on a phone-sized chromium with the Noto CJK and Thai fonts
// installed (`make deps`), keeps a screenshot of each, and checks what the
// stylesheet does rather than pixels: each language's fonts come first and
// draw its heading, Korean never breaks inside a word, long words may wrap,
// and topics are named in the page's language.
func TestBrowserLocales(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := browser(t)
	dir := screenshots(t)
	cases := []struct {
		customer, lang string
		// font must draw the heading; "" for Latin pages, which may take
		// any Latin font the page names.
		font                 string
		wordBreak, lineBreak string
		wordsWhole           bool // words are separated by spaces and never split
	}{
		{"cus_en", "en", "", "normal", "auto", true},
		{"cus_th", "th", "Noto Sans Thai", "normal", "auto", false},
		{"cus_ja", "ja", "Noto Sans CJK JP", "normal", "strict", false},
		{"cus_ko", "ko", "Noto Sans CJK KR", "keep-all", "auto", true},
		{"cus_tw", "zh-Hant", "Noto Sans CJK TC", "normal", "strict", false},
		{"cus_pl", "pl", "", "normal", "auto", true},
	}
	for _, tc := range cases {
		t.Run(tc.lang, func(t *testing.T) {
			t.Parallel()
			tab, cancel := chromedp.NewContext(ctx)
			t.Cleanup(cancel)
			for _, page := range []struct{ name, url string }{
				{"preferences", b.prefsURL(tc.customer)},
				{"unsubscribe", b.unsubURL(tc.customer, "product-updates")},
			} {
				require.NoError(t, chromedp.Do(tab,
					chromedp.EmulateViewport(360, 740),
					chromedp.Navigate(page.url),
					chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)),
				))
				png, err := chromedp.Run(tab, chromedp.FullScreenshot(100))
				require.NoError(t, err)
				require.NoError(t, os.WriteFile(filepath.Join(dir, page.name+"-"+tc.lang+".png"), png, 0o600))

				st, err := chromedp.Run(tab, chromedp.Evaluate[pageStyle](pageStyleJS))
				require.NoError(t, err)
				require.Equal(t, tc.lang, st.Lang)
				fams := families(st.FontFamily)
				for _, f := range []string{"Noto Sans Thai", "Leelawadee UI", "Noto Sans CJK JP", "Hiragino Sans", "Noto Sans CJK KR", "Apple SD Gothic Neo", "Noto Sans CJK TC"} {
					require.Contains(t, fams, f, "%s: font-family %s", page.name, st.FontFamily)
				}
				if tc.font != "" {
					// The page's own script's fonts before the others: Han
					// characters take this language's forms.
					own := slices.Index(fams, tc.font)
					for _, other := range []string{"Noto Sans Thai", "Noto Sans CJK JP", "Noto Sans CJK KR", "Noto Sans CJK TC"} {
						if other != tc.font {
							require.Less(t, own, slices.Index(fams, other), "%s before %s in %s", tc.font, other, st.FontFamily)
						}
					}
				}
				require.Equal(t, tc.wordBreak, st.WordBreak, page.name)
				require.Equal(t, tc.lineBreak, st.LineBreak, page.name)
				require.Equal(t, "anywhere", st.OverflowWrap, page.name)
				if tc.wordsWhole {
					require.Empty(t, st.Split, "%s: words broken across lines", page.name)
				}

				ids, err := chromedp.Run(tab, chromedp.QueryNodeIDs(chromedp.CSS(`h1`)))
				require.NoError(t, err)
				used, err := chromedp.Call(tab, css.GetPlatformFontsForNode, css.GetPlatformFontsForNodeParams{NodeID: ids[0]})
				require.NoError(t, err)
				var names []string
				for _, f := range used.Fonts {
					names = append(names, f.FamilyName)
				}
				const install = "install fonts-noto-cjk and fonts-noto-core (`make deps`)"
				for _, n := range names {
					require.Contains(t, fams, n, "%s: the %s heading is drawn with %v, a font the page does not name: %s", page.name, tc.lang, names, install)
				}
				if tc.font != "" {
					require.Contains(t, names, tc.font, "%s: the %s heading is drawn with %v: %s", page.name, tc.lang, names, install)
				}

				pu := productUpdates[tc.lang]
				question, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(`main`)))
				require.NoError(t, err)
				if page.name == "preferences" {
					require.Equal(t, pu[0], st.Label)
					require.Equal(t, pu[1], st.Description)
				} else {
					require.Contains(t, question, pu[0])
				}
				require.NotContains(t, question, "Product updates")
				require.NotContains(t, question, "product-updates")
			}
		})
	}
}
