package centre

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/text/language"

	"github.com/heraldhq/herald"
)

// Labels fall back as templates do: zh-Hant-TW → zh-Hant → zh → the default
// locale's label → the name humanised.
func TestTopicLabelFallback(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		labels     map[string]string
		def        string // Config.DefaultLocale
		customer   string // the customer's locale
		page       string // the page language pick chose
		want       string
		wantIgnore bool // a key is logged as ignored
	}{
		{"exact", map[string]string{"en": "Product news", "ja": "製品のお知らせ"}, "", "ja-JP", "ja", "製品のお知らせ", false},
		{"region first", map[string]string{"zh-Hant": "產品消息", "zh-Hant-TW": "產品資訊", "zh": "产品消息"}, "", "zh-Hant-TW", "zh-Hant", "產品資訊", false},
		{"then script", map[string]string{"en": "Product news", "zh-Hant": "產品消息", "zh": "产品消息"}, "", "zh-Hant-TW", "zh-Hant", "產品消息", false},
		{"then language", map[string]string{"en": "Product news", "zh": "产品消息"}, "", "zh-Hant-TW", "zh-Hant", "产品消息", false},
		{"zh-TW is Traditional", map[string]string{"en": "Product news", "zh-Hant": "產品消息"}, "", "zh-TW", "zh-Hant", "產品消息", false},
		{"key written in another case", map[string]string{"en": "Product news", "zh-hant": "產品消息"}, "", "zh-HK", "zh-Hant", "產品消息", false},
		{"en-GB keeps its region", map[string]string{"en": "Product updates", "en-GB": "Product news"}, "", "en-GB", "en", "Product news", false},
		{"then the default locale", map[string]string{"en": "Product news", "ja": "製品のお知らせ"}, "", "ko-KR", "ko", "Product news", false},
		{"a configured default locale", map[string]string{"en": "Product news", "ja": "製品のお知らせ"}, "ja", "ko-KR", "ko", "製品のお知らせ", false},
		{"then the name", map[string]string{"ja": "製品のお知らせ"}, "", "ko-KR", "ko", "Product updates", false},
		{"no labels", nil, "", "th-TH", "th", "Product updates", false},
		// The page is English for a German customer (no German page): a
		// German label would mix two languages on it.
		{"the page's language wins", map[string]string{"en": "Product news", "de": "Produktneuigkeiten"}, "", "de-DE", "en", "Product news", false},
		{"browser language", map[string]string{"en": "Product news", "pl": "Nowości w produkcie"}, "", "", "pl", "Nowości w produkcie", false},
		{"bad key ignored", map[string]string{"en": "Product news", "english": "Product stuff"}, "", "en", "en", "Product news", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			h := New(Config{
				Topics:        map[string]herald.Topic{"product-updates": {Name: "product-updates", Labels: tc.labels}},
				DefaultLocale: tc.def,
				Logger:        slog.New(slog.NewTextHandler(&logs, nil)),
			}).(*handler)
			s := session{locale: textLocale(tc.customer, language.Make(tc.page))}
			require.Equal(t, tc.want, h.label(s, "product-updates"))
			require.Equal(t, "Newsletter", h.label(s, "newsletter"), "a topic no longer configured")
			if tc.wantIgnore {
				require.Contains(t, logs.String(), "topic texts ignored")
			} else {
				require.Empty(t, logs.String())
			}
		})
	}
}

func TestHumanize(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"product-updates":   "Product updates",
		"billing":           "Billing",
		"app.release_notes": "App release notes",
		"":                  "",
	} {
		require.Equal(t, want, humanize(in), in)
	}
}
