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

	// Unset, a translation some templates lack is a note, not a problem:
	// one template can be translated before the others.
	cfg, tdir := contentDir(t, files, "")
	out, errOut, err := runCLI(t, "validate", "--config", cfg)
	require.NoError(t, err, out)
	require.Equal(t, "note: "+filepath.Join(tdir, "nudge")+": template nudge has no ja (falls back to en) (set content.locales to require it)", strings.TrimSpace(out))
	require.Contains(t, errOut, "ok:")
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

// One problem hides no other: a template that does not parse still exists
// for the workflows and broadcasts naming it, the other templates are
// still checked, a workflow's problem leaves broadcasts naming it alone,
// and each broadcast problem is its own file:line line.
func TestValidateOneProblemHidesNoOther(t *testing.T) {
	t.Parallel()
	cfg, tdir := contentDir(t, map[string]string{
		"broken/en.md":        "---\nsubject: \"Hello {{ .customer.first_name }\"\n---\nHi\n",
		"unclosed/en.md":      "---\nsubject: s\nsample:\n  data: { x: true }\n---\n{{ if .data.x }}\nSomething\n\nMore\n",
		"lint/en.md":          "---\nsubject: s\nsample:\n  data: { plan: Pro }\n---\nStart your **Pro trial today.\n\nYour plan: {{ .data.missing }}\n",
		"upgrade-offer/en.md": plainTemplate,
	}, "")
	dir := filepath.Dir(tdir)
	wdir := filepath.Join(dir, "workflows")
	bdir := filepath.Join(dir, "broadcasts")
	for name, body := range map[string]string{
		filepath.Join(wdir, "w.yaml"):      "id: w\ntopic: onboarding\ntrigger: a.b\nsteps:\n  - id: s\n    send: { template: no-such-template }\n",
		filepath.Join(wdir, "w2.yaml"):     "id: w2\ntopic: onboarding\ntrigger: c.d\nsteps:\n  - id: s\n    send: { template: broken }\n  - id: t\n    wait: { for: 2 days }\n",
		filepath.Join(bdir, "spring.yaml"): "id: spring\ntemplate: upgrade-offer\ntopic: onboarding\naudience:\n  filter: \"true\"\n",
		filepath.Join(bdir, "flow.yaml"):   "id: flow\nworkflow: w2\naudience: { filter: \"true\" }\n",
		filepath.Join(bdir, "bad.yaml"):    "id: bad\ntemplate: nope\ntopic: nosuch\nlocal_time: \"25\"\naudience:\n  filter: \"plan ==\"\n",
	} {
		require.NoError(t, os.MkdirAll(filepath.Dir(name), 0o755))
		require.NoError(t, os.WriteFile(name, []byte(body), 0o644))
	}
	require.NoError(t, os.WriteFile(cfg, []byte("content:\n  templates: "+tdir+"\n  workflows: "+wdir+"\n"), 0o644))

	out, errOut, err := runCLI(t, "validate", "--config", cfg, filepath.Join(bdir, "spring.yaml"), filepath.Join(bdir, "flow.yaml"), filepath.Join(bdir, "bad.yaml"))
	require.Equal(t, exitError(1), err)
	t1, w, b := filepath.Join(tdir)+string(filepath.Separator), wdir+string(filepath.Separator), filepath.Join(bdir, "bad.yaml")
	require.Equal(t, []string{
		t1 + `broken/en.md:2: unexpected "}" in operand`,
		t1 + `lint/en.md:6: template lint (en): "**" is left as text in email and Slack: "Start your **Pro trial to…": no closing ** on its line; put ** after the last word to emphasise, or write \*\* for literal ones`,
		t1 + `lint/en.md:8: missing key "missing" at <.data.missing>`,
		t1 + `unclosed/en.md:6: {{ if .data.x }} opened on line 6 has no {{ end }}: add one where its block stops`,
		w + `w.yaml:6: step "s": unknown template "no-such-template"`,
		w + `w2.yaml:8: step "t": bad duration "2 days": use s, m, h, d, w as in 30m, 48h, 7d or 1h30m`,
		b + `:2: template: unknown template "nope"`,
		b + `:3: topic: unknown topic "nosuch"`,
		b + `:4: local_time "25": want HH:MM (such as 09:00) or YYYY-MM-DD HH:MM`,
		b + `:6: audience.filter: unexpected token EOF (column 7)`,
	}, strings.Split(strings.TrimSpace(out), "\n"))
	require.Contains(t, errOut, "10 problem(s)")
}
