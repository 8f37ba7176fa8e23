package templates_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/templates"
	"github.com/stretchr/testify/require"
)

func TestDataTrackWinsOverOptionsTrack(t *testing.T) {
	t.Parallel()
	fsys := mapFS(map[string]string{"offer/en.md": "---\nsubject: Offer\n---\n[Pricing]({{ track \"https://shop.example/p?a=1&b=2\" \"pricing.viewed\" }})\n"})
	s, err := templates.Load(fsys, templates.Options{Track: func(target, event string) string { return "https://set.example/" + event }})
	require.NoError(t, err)
	render := func(d templates.Data) herald.Content {
		c, err := s.Render("offer", "en", d)
		require.NoError(t, err)
		return c
	}
	c := render(templates.Data{})
	require.Contains(t, c.HTML, `href="https://set.example/pricing.viewed"`, "Options.Track without a per-render one")

	var got []string
	c = render(templates.Data{Track: func(target, event string) string {
		got = append(got, target+" "+event)
		return "https://herald.example/r/h1.abc_-.sig"
	}})
	require.Equal(t, []string{"https://shop.example/p?a=1&b=2 pricing.viewed"}, got[:1])
	require.Contains(t, c.HTML, `href="https://herald.example/r/h1.abc_-.sig"`)
	require.Contains(t, c.Text, "https://herald.example/r/h1.abc_-.sig")
	require.NotContains(t, c.HTML, "set.example")
}

func TestOptOutButtonNeedsAnEvent(t *testing.T) {
	t.Parallel()
	_, err := templates.Load(mapFS(map[string]string{"x/en.md": "---\nsubject: X\nactions:\n  - { label: Stop, url: \"https://x.example/\", opt_out: true }\n---\nBody\n"}), templates.Options{})
	require.Error(t, err)
	require.Contains(t, err.Error(), "opt_out button needs an event")

	s, err := templates.Load(mapFS(map[string]string{"x/en.md": "---\nsubject: X\nactions:\n  - { label: Stop, event: x.opted_out, opt_out: true }\n  - { label: Later, event: x.snoozed }\n---\nBody\n"}), templates.Options{})
	require.NoError(t, err)
	acts := s.Actions("x", "")
	require.True(t, acts[0].OptOut)
	require.False(t, acts[1].OptOut)
	require.True(t, strings.HasPrefix(acts[0].Event, "x."))
}
