package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// contentDir writes template files (path → content) under a temp folder and
// a config naming it, with the extra YAML under content:. It returns the
// config path and the templates folder.
func contentDir(t *testing.T, files map[string]string, content string) (cfg, tdir string) {
	t.Helper()
	dir := t.TempDir()
	tdir = filepath.Join(dir, "templates")
	for name, body := range files {
		p := filepath.Join(tdir, filepath.FromSlash(name))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	cfg = filepath.Join(dir, "herald.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("content:\n  templates: "+tdir+"\n"+content), 0o644))
	return cfg, tdir
}

const plainTemplate = "---\nsubject: s\n---\nHello.\n"

func TestValidateListsMissingLocales(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"welcome/en.md": plainTemplate, "welcome/ja.md": plainTemplate,
		"nudge/en.md": plainTemplate,
	}
	for _, tc := range []struct {
		name    string
		locales string // content.locales YAML, "" for none
		want    []string
	}{
		{"every locale some template has", "", []string{"nudge: template nudge has no ja (falls back to en)"}},
		{"configured", "  locales: [en, ja, pl]\n", []string{
			"nudge: template nudge has no ja (falls back to en)",
			"nudge: template nudge has no pl (falls back to en)",
			"welcome: template welcome has no pl (falls back to en)",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg, tdir := contentDir(t, files, tc.locales)
			out, errOut, err := runCLI(t, "validate", "--config", cfg)
			require.Equal(t, exitError(1), err)
			var want []string
			for _, w := range tc.want {
				want = append(want, filepath.Join(tdir, w))
			}
			require.Equal(t, want, strings.Split(strings.TrimSpace(out), "\n"))
			require.Contains(t, errOut, "problem(s)")
		})
	}

	cfg, _ := contentDir(t, files, "  locales: [en]\n")
	out, _, err := runCLI(t, "validate", "--config", cfg)
	require.NoError(t, err, out)
}

// HERALD_LOCALES is the environment's content.locales.
func TestValidateLocalesFromEnv(t *testing.T) {
	_, tdir := contentDir(t, map[string]string{"welcome/en.md": plainTemplate}, "")
	t.Setenv("HERALD_TEMPLATES", tdir)
	t.Setenv("HERALD_LOCALES", "en, th")
	out, _, err := runCLI(t, "validate")
	require.Equal(t, exitError(1), err)
	require.Equal(t, filepath.Join(tdir, "welcome")+": template welcome has no th (falls back to en)\n", out)

	t.Setenv("HERALD_LOCALES", "en,not a locale")
	out, _, err = runCLI(t, "validate")
	require.Equal(t, exitError(1), err)
	require.Contains(t, out, `content.locales[1] (HERALD_LOCALES): "not a locale" is not a BCP 47 locale`)
}

// The Japanese emphasis that CommonMark does not open is flagged at its
// line, naming template, locale and fragment.
func TestValidateFlagsMarkdownLeftAsText(t *testing.T) {
	t.Parallel()
	ja := "---\nsubject: カート\nsample:\n  data: { total: 348 }\n---\nカートに3点（合計***{{ money .data.total \"USD\" }}***）があります。\n"
	cfg, tdir := contentDir(t, map[string]string{"cart/en.md": plainTemplate, "cart/ja.md": ja}, "")
	out, _, err := runCLI(t, "validate", "--config", cfg)
	require.Equal(t, exitError(1), err)
	require.Equal(t, 1, strings.Count(out, "\n"), out)
	require.True(t, strings.HasPrefix(out, filepath.Join(tdir, "cart", "ja.md")+`:6: template cart (ja): "***" is left as text in email and Slack: "カートに3点（合計***$348.00***）があります。": `), out)

	fixed := strings.Replace(ja, "合計***{{ money .data.total \"USD\" }}***", "合計 **{{ money .data.total \"USD\" }}**", 1)
	cfg, _ = contentDir(t, map[string]string{"cart/en.md": plainTemplate, "cart/ja.md": fixed}, "")
	out, _, err = runCLI(t, "validate", "--config", cfg)
	require.NoError(t, err, out)
}

// preview says on stderr which locale it fell back to; stdout stays the
// rendered message.
func TestPreviewSaysFallbackLocale(t *testing.T) {
	t.Parallel()
	cfg, _ := contentDir(t, map[string]string{"welcome/en.md": plainTemplate, "welcome/zh-Hant.md": plainTemplate}, "")
	for _, tc := range []struct {
		locale, used, note string
	}{
		{"pl", "en", "preview: template welcome has no pl; rendering en\n"},
		{"zh-Hant-TW", "zh-Hant", "preview: template welcome has no zh-Hant-TW; rendering zh-Hant\n"},
		{"zh-Hant", "zh-Hant", ""},
		{"", "en", ""},
	} {
		for _, channel := range []string{"email", "slack"} {
			out, errOut, err := runCLI(t, "preview", "--config", cfg, "--template", "welcome", "--locale", tc.locale, "--channel", channel)
			require.NoError(t, err)
			require.Equal(t, tc.note, errOut, "%s %s", tc.locale, channel)
			require.True(t, strings.HasPrefix(out, "Locale:    "+tc.used+"\n"), out)
			require.NotContains(t, out, "rendering")
		}
	}
}
