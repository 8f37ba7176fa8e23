package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBroadcastCommandRefusesDataTheTemplateCannotUse: `herald broadcast
// create` says, like the API, which template, locale and key the data
// lacks, for a dry run as for the broadcast, and creates nothing.
func TestBroadcastCommandRefusesDataTheTemplateCannotUse(t *testing.T) {
	d, _ := startDev(t)
	t.Setenv("HERALD_REDIS_URL", "redis://"+d.Mini.Addr())
	file := filepath.Join(t.TempDir(), "bc1.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`id: bc1
template: upgrade-offer
topic: product-updates
data: {}
audience: { filter: "true" }
`), 0o600))
	for _, args := range [][]string{{"broadcast", "create", file, "--dry-run"}, {"broadcast", "create", file}} {
		_, _, err := runCLI(t, args...)
		require.ErrorContains(t, err, `data: template upgrade-offer (locale en): upgrade-offer/en.md:2: missing key "trial_ends_at" at <.data.trial_ends_at>`, "%v", args)
		require.ErrorContains(t, err, `data: template upgrade-offer (locale ja): upgrade-offer/ja.md:`, "%v", args)
	}
	_, _, err := runCLI(t, "broadcast", "show", "bc1")
	require.ErrorContains(t, err, `broadcast "bc1" not found`)
}

// TestBroadcastCommandShowsWhatWaitsForLocalTime: show and --watch say how
// many messages wait for their customers' local time and when the next and
// the last go out; cancel deletes them and counts them as cancelled at once.
func TestBroadcastCommandShowsWhatWaitsForLocalTime(t *testing.T) {
	d, _ := startDev(t)
	t.Setenv("HERALD_REDIS_URL", "redis://"+d.Mini.Addr())
	for _, id := range []string{"tokyo1", "tokyo2"} {
		_, stderr, err := runCLI(t, "customer", id, "--email", id+"@example.com", "--timezone", "Asia/Tokyo", "--attr", "first_name=Ada")
		require.NoError(t, err, stderr)
	}
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	local := time.Now().In(tokyo).Add(6 * time.Hour)
	file := filepath.Join(t.TempDir(), "bc7.yaml")
	require.NoError(t, os.WriteFile(file, []byte(fmt.Sprintf(`id: bc7
template: welcome
topic: onboarding
data: { plan: Pro, trial_days: 14, dashboard_url: "https://app.lumen.example/" }
audience: { customer_ids: [tokyo1, tokyo2] }
channels: [email]
local_time: "%s"
`, local.Format("15:04"))), 0o600))
	_, stderr, err := runCLI(t, "broadcast", "create", file)
	require.NoError(t, err, stderr)

	require.Eventually(t, func() bool {
		out, _, err := runCLI(t, "broadcast", "show", "bc7")
		return err == nil && bytes.Contains([]byte(out), []byte(`"messages": 2`))
	}, 15*time.Second, 20*time.Millisecond, "show says two messages wait")
	out, _, err := runCLI(t, "broadcast", "show", "bc7")
	require.NoError(t, err)
	require.Contains(t, out, `"waiting": {`)

	c, err := newClient("")
	require.NoError(t, err)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var line bytes.Buffer
	require.ErrorIs(t, watchBroadcast(ctx, c, "bc7", &line, 50*time.Millisecond), context.DeadlineExceeded)
	next := local.Truncate(time.Minute).Local().Format("Jan 2 15:04 MST")
	require.Contains(t, line.String(), "done [------------------------------]   0% sent 0")
	require.Contains(t, line.String(), "· waiting 2 for local time: next "+next+" (in ")
	require.Contains(t, line.String(), "· ETA "+next)

	out, _, err = runCLI(t, "broadcast", "cancel", "bc7")
	require.NoError(t, err)
	require.Contains(t, out, `"cancelled": 2`, "counted at the cancel")
	out, _, err = runCLI(t, "broadcast", "show", "bc7", "--watch")
	require.NoError(t, err)
	require.NotContains(t, out, "waiting")
}
