package workflows

import (
	"os"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// The example workflows load cleanly against the templates they are meant
// to use, and together use every step kind.
func TestExampleWorkflows(t *testing.T) {
	t.Parallel()

	templates := []string{
		"welcome", "nudge", "congrats",
		"cart-reminder", "cart-last-chance",
		"we-miss-you", "winback-offer", "feedback-request",
		"upgrade-offer", "comment-digest",
	}
	set, err := Load(os.DirFS("../examples/workflows"), LoadOptions{
		TemplateExists: func(name string) bool { return slices.Contains(templates, name) },
		Topics: func(name string) bool {
			return slices.Contains([]string{"onboarding", "checkout", "product-updates"}, name)
		},
	})
	require.NoError(t, err)

	var ids, used []string
	kinds := map[string]bool{}
	delay := false
	for _, w := range set.All() {
		ids = append(ids, w.ID)
		used = append(used, w.Templates()...)
		for _, s := range w.Steps {
			kinds[s.Kind] = true
			delay = delay || s.DelayUntilLocal != ""
		}
	}
	require.Equal(t, []string{"abandoned-checkout", "comment-digest", "re-engagement", "trial-onboarding", "upgrade-offer"}, ids)
	require.ElementsMatch(t, templates, used)
	require.Equal(t, map[string]bool{KindSend: true, KindWait: true, KindBranch: true, KindEnd: true, KindSplit: true, KindDigest: true}, kinds)
	require.True(t, delay)

	offer, _ := set.Get("upgrade-offer")
	require.NotNil(t, offer.Goal, "the split example has a goal")
	holdout, ok := offer.Step("holdout")
	require.True(t, ok, "and a holdout")
	require.Equal(t, KindEnd, holdout.Kind)

	trial, _ := set.Get("trial-onboarding")
	require.Equal(t, "trial-onboarding.yaml", trial.File, "files are named after their workflow")
}
