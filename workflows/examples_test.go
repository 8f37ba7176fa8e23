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
	require.Equal(t, []string{"abandoned-checkout", "re-engagement", "trial-onboarding"}, ids)
	require.ElementsMatch(t, templates, used)
	require.Equal(t, map[string]bool{KindSend: true, KindWait: true, KindBranch: true, KindEnd: true}, kinds)
	require.True(t, delay)

	trial, _ := set.Get("trial-onboarding")
	require.Equal(t, "trial-onboarding.yaml", trial.File, "files are named after their workflow")
}
