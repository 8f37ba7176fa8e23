package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

// The insight commands on the embedded examples, against a real Redis and
// SMTP server: a test send arrives marked [test], the graph and the lists
// print, bad input is named.
func TestInsightCommands(t *testing.T) {
	rs := redistest.Start(t)
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = smtp.Close() })
	t.Setenv("HERALD_REDIS_URL", rs.URL())
	t.Setenv("HERALD_SMTP_URL", smtp.URL())
	t.Setenv("HERALD_MAIL_FROM", "Lumen <hello@lumen.example>")
	t.Setenv("HERALD_SIGNING_KEY", "0123456789abcdef0123456789abcdef")
	// The embedded examples send by Slack too: a worker refuses content
	// whose steps it could never send.
	sl, err := slackapi.Start(slackapi.Options{Token: "xoxb-test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sl.Close() })
	t.Setenv("HERALD_SLACK_TOKEN", "xoxb-test")
	t.Setenv("HERALD_SLACK_API_URL", sl.URL())

	out, _, err := runCLI(t, "send", "--test-to", "ada@example.com", "--template", "welcome", "--locale", "ja")
	require.NoError(t, err)
	require.Contains(t, out, "welcome sent to ada@example.com by email (ja)")
	require.Equal(t, 1, smtp.Count())
	require.Contains(t, string(smtp.Messages()[0].Data), "=?UTF-8?q?[test]_") // the Japanese subject, encoded, marked
	require.Contains(t, out, `"[test] `)

	_, _, err = runCLI(t, "send", "--test-to", "ada@", "--template", "welcome")
	require.ErrorContains(t, err, `"ada@" is not an email address`)
	require.Equal(t, 1, smtp.Count(), "nothing sent")

	out, _, err = runCLI(t, "graph", "trial-onboarding", "--format", "dot")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(out, `digraph "trial-onboarding"`))
	_, _, err = runCLI(t, "graph", "trial-onboarding", "--format", "png")
	require.ErrorContains(t, err, `--format "png"`)

	out, _, err = runCLI(t, "workflows")
	require.NoError(t, err)
	require.Contains(t, out, "trial-onboarding")
	require.Contains(t, out, "RUNNING")

	out, _, err = runCLI(t, "stats", "trial-onboarding", "--since", "7d")
	require.NoError(t, err)
	require.Contains(t, out, `"wait-for-project"`)
	_, _, err = runCLI(t, "stats", "trial-onboarding", "--since", "last week")
	require.ErrorContains(t, err, `--since "last week"`)
	_, _, err = runCLI(t, "stats", "nope")
	require.ErrorContains(t, err, `workflow "nope" not found`)
	_, _, err = runCLI(t, "journeys", "nobody")
	require.ErrorContains(t, err, `customer "nobody" not found`)
	_, _, err = runCLI(t, "message", "m_nothing")
	require.ErrorContains(t, err, `message "m_nothing" not found`)
}

// --help on the insight commands prints their flags and is no failure.
func TestInsightHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"graph", "--help"}, {"workflows", "--help"}, {"stats", "--help"}, {"journeys", "--help"}, {"message", "--help"}, {"send", "--test-to", "x", "--help"}} {
		_, errOut, err := runCLI(t, args...)
		require.NoError(t, err, args)
		require.Contains(t, errOut, "-config", args)
	}
}

// The journeys table shows the arm each split sent the journey down.
func TestJourneysTableShowsArms(t *testing.T) {
	t.Parallel()
	started := time.Date(2026, 3, 27, 10, 0, 0, 0, time.UTC)
	var out bytes.Buffer
	require.NoError(t, printJourneys(&out, []client.Journey{
		{ID: "j_1", Workflow: "reengage", Version: "v1", Status: "active", Step: "wait", StartedAt: started,
			Arms: map[string]string{"test-offer": "offer-a", "b-split": "holdout"}},
		{ID: "j_2", Workflow: "trial-onboarding", Version: "v2", Status: "finished", Ended: "completed", Step: "done", StartedAt: started},
	}))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	require.Len(t, lines, 3)
	require.Equal(t, []string{"JOURNEY", "WORKFLOW", "VERSION", "STATUS", "STEP", "ARMS", "NEXT", "WAKE-UP", "STARTED"}, strings.Fields(lines[0]))
	require.Equal(t, []string{"j_1", "reengage", "v1", "active", "wait", "b-split=holdout,test-offer=offer-a", "-", "2026-03-27T10:00:00Z"}, strings.Fields(lines[1]))
	require.Equal(t, []string{"j_2", "trial-onboarding", "v2", "finished", "(completed)", "done", "-", "-", "2026-03-27T10:00:00Z"}, strings.Fields(lines[2]))
}
