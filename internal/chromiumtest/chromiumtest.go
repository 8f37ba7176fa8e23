// Package chromiumtest starts a headless Chromium for browser tests: a
// fresh profile per test, no background networking (the machine's network
// is closed), gone when the test ends. A missing browser fails the test
// with a message saying how to install it; it never skips.
package chromiumtest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// Start starts Chromium (HERALD_CHROMIUM, default /usr/bin/chromium) with a
// window of width × height and returns a chromedp context bounded to a
// minute.
func Start(t *testing.T, width, height int) context.Context {
	t.Helper()
	exe := os.Getenv("HERALD_CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := exec.LookPath(exe); err != nil {
		t.Fatalf("chromium not found at %s (%v): install it (Debian: apt-get install -y chromium), run `make deps`, or point HERALD_CHROMIUM at a Chrome or Chromium binary", exe, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "start %s", exe)
	return ctx
}
