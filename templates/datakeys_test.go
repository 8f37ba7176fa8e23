package templates_test

import (
	"maps"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/templates"
)

// Every key DataKeys names for a channel is one the template cannot do
// without: the example templates, rendered from their samples with that
// key taken out, fail on that channel in every locale; with it, they
// render.
func TestDataKeysAreNeeded(t *testing.T) {
	s := loadExamples(t)
	named := 0
	for _, name := range s.Names() {
		for _, ch := range []herald.Channel{herald.ChannelEmail, herald.ChannelSlack} {
			keys := s.DataKeys(name, ch)
			named += len(keys)
			for _, locale := range s.Locales(name) {
				d, ok := s.Sample(name, locale)
				require.True(t, ok, "%s/%s has a sample", name, locale)
				_, err := s.RenderChannel(name, locale, d, ch)
				require.NoError(t, err, "%s/%s on %s renders from its sample", name, locale, ch)
				for _, k := range keys {
					without := templates.Data{Customer: d.Customer, Data: maps.Clone(d.Data), Links: d.Links}
					delete(without.Data, k)
					_, err := s.RenderChannel(name, locale, without, ch)
					require.ErrorContains(t, err, `missing key "`+k+`"`, "%s/%s on %s without %q", name, locale, ch, k)
				}
			}
		}
	}
	require.Greater(t, named, 10, "the examples read data")
}

// A key read only in a branch, through index, after an and/or, or on
// one channel only is not named; one read on both channels is, for both;
// a key one locale does without is not.
func TestDataKeysOnlyWhatEveryRenderReads(t *testing.T) {
	s, err := templates.Load(mapFS(map[string]string{
		"t/en.md": "---\nsubject: \"{{ .data.subject_only }}\"\nslack: \"{{ .data.slack_only }} {{ .data.both }}\"\n---\n" +
			"{{ .data.both }} {{ if .data.cond }}{{ .data.branch }}{{ end }} {{ index .data \"optional\" }} {{ or .data.a .data.b }} {{ $.data.dollar }}\n",
		"t/de.md": "---\nsubject: \"{{ .data.subject_only }}\"\nslack: \"{{ .data.both }}\"\n---\n" +
			"{{ .data.both }} {{ .data.cond }} {{ $.data.dollar }}\n",
	}), templates.Options{})
	require.NoError(t, err)
	require.Equal(t, []string{"both", "cond", "dollar", "subject_only"}, s.DataKeys("t", herald.ChannelEmail))
	require.Equal(t, []string{"both"}, s.DataKeys("t", herald.ChannelSlack), "slack_only: de does without it")
	require.Equal(t, []string{"both"}, s.DataKeys("t"), "on either channel")
	require.Nil(t, s.DataKeys("nope"))
}
