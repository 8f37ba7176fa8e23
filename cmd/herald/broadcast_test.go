package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBroadcastCommand drives `herald broadcast` against `herald dev`:
// a dry run, the broadcast, its progress to the end, the list, a cancel,
// and files the workers refuse.
func TestBroadcastCommand(t *testing.T) {
	d, outbox := startDev(t)
	t.Setenv("HERALD_REDIS_URL", "redis://"+d.Mini.Addr())
	for _, args := range [][]string{
		{"customer", "pro1", "--email", "pro1@example.com", "--attr", "plan=pro", "--attr", "first_name=Ada"},
		{"customer", "free1", "--email", "free1@example.com", "--attr", "plan=free"},
	} {
		_, stderr, err := runCLI(t, args...)
		require.NoError(t, err, stderr)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "welcome-pros.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`id: welcome-pros
template: welcome
topic: onboarding
data: { plan: Pro, trial_days: 14, dashboard_url: "https://app.lumen.example/" }
audience:
  filter: customer.plan == "pro"
channels: [email]
`), 0o600))

	out, stderr, err := runCLI(t, "broadcast", "create", file, "--dry-run")
	require.NoError(t, err, stderr)
	require.Contains(t, out, `"matched": 2`, "pro1 and the demo customer")
	require.Contains(t, out, `"pro1"`)
	require.NotContains(t, out, `"free1"`)
	emls, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
	require.Empty(t, emls, "a dry run sends nothing")

	out, stderr, err = runCLI(t, "broadcast", "create", file)
	require.NoError(t, err, stderr)
	require.Contains(t, out, `"status": "scheduled"`)
	out, stderr, err = runCLI(t, "broadcast", "show", "welcome-pros", "--watch")
	require.NoError(t, err, stderr)
	require.Contains(t, out, "done [##############################] 100% sent 2")
	emls, _ = filepath.Glob(filepath.Join(outbox, "*.eml"))
	require.Len(t, emls, 2, "each pro customer has the email")

	out, _, err = runCLI(t, "broadcast", "list")
	require.NoError(t, err)
	require.Regexp(t, `welcome-pros\s+done\s+2\s+2\s`, out)
	out, _, err = runCLI(t, "broadcast", "cancel", "welcome-pros")
	require.NoError(t, err)
	require.Contains(t, out, `"status": "cancelled"`)

	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("id: bad\ntemplate: nope\ntopic: onboarding\naudience: { filter: \"true\" }\n"), 0o600))
	_, _, err = runCLI(t, "broadcast", "create", bad)
	require.ErrorContains(t, err, `template: unknown template "nope"`)
	require.NoError(t, os.WriteFile(bad, []byte("id: bad\ntemplat: welcome\n"), 0o600))
	_, _, err = runCLI(t, "broadcast", "create", bad)
	require.ErrorContains(t, err, `unknown field "templat"`)
}

// TestValidateBroadcastFiles: `herald validate FILE…` checks broadcast files
// beside the content.
func TestValidateBroadcastFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(good, []byte("id: spring\nworkflow: re-engagement\ndata: { last_seen: \"2027-01-15T09:00:00Z\" }\naudience: { filter: 'customer.plan == \"pro\"' }\nlocal_time: \"09:00\"\n"), 0o600))
	require.NoError(t, os.WriteFile(bad, []byte("id: spring\ntemplate: nope\ntopic: onboarding\naudience: { filter: 'customer.plan ==' }\nlocal_time: 9am\n"), 0o600))

	_, stderr, err := runCLI(t, "validate", good)
	require.NoError(t, err, stderr)
	out, _, err := runCLI(t, "validate", good, bad)
	require.Error(t, err)
	require.NotContains(t, out, "good.yaml")
	require.Contains(t, out, bad+`:2: template: unknown template "nope"`)
	require.Contains(t, out, bad+":4: audience.filter: unexpected token EOF (column")
	require.Contains(t, out, bad+`:5: local_time "9am": want HH:MM`)

	// The journeys a workflow broadcast starts get its data, as an
	// event's would: data their sends cannot render is refused.
	lacks := filepath.Join(dir, "lacks.yaml")
	require.NoError(t, os.WriteFile(lacks, []byte("id: spring\nworkflow: re-engagement\naudience: { filter: \"true\" }\n"), 0o600))
	out, _, err = runCLI(t, "validate", lacks)
	require.Error(t, err)
	require.Contains(t, out, `data: workflow "re-engagement" starts with step "we-miss-you", whose template "we-miss-you" reads key "last_seen"`)
}
