package centre

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/preferences"
)

// browser starts a headless chromium for t, with a fresh profile.
func browser(t *testing.T) context.Context {
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
		chromedp.WindowSize(800, 1200),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	require.NoError(t, chromedp.Do(ctx), "start %s", exe)
	return ctx
}

func TestBrowserPreferenceCentre(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := browser(t)
	shot := filepath.Join(t.TempDir(), "preferences.png")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.prefsURL("cus_en")),
		chromedp.WaitVisible(chromedp.CSS(`button[type=submit]`)),
	))
	before, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx,
		// Click the label, as a person would: it must toggle its box.
		chromedp.Click(chromedp.CSS(`label[for="topic-1"]`)),
		chromedp.SetValue(chromedp.ID(`quiet-start`), "22:00"),
		chromedp.SetValue(chromedp.ID(`quiet-end`), "07:30"),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[role=status]`)),
	))
	after, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(shot, png, 0o600))
	require.NotEmpty(t, png)

	require.Contains(t, before, "Your message preferences")
	require.Contains(t, before, "Product updates")
	require.Contains(t, before, "Always on")
	require.Contains(t, after, "Your preferences are saved.")

	p, err := b.store.Get(context.Background(), "cus_en")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"product-updates": false}, p.Topics)
	require.NotNil(t, p.QuietHours)
	require.Equal(t, "22:00", p.QuietHours.Start)
	require.Equal(t, "07:30", p.QuietHours.End)

	log, err := b.store.Consent(context.Background(), "cus_en")
	require.NoError(t, err)
	require.Len(t, log, 2)
	for _, e := range log {
		require.Equal(t, preferences.SourcePreferencePage, e.Source)
		require.Equal(t, preferences.ActorCustomer, e.Actor.Kind)
	}
	require.Equal(t, []string{"cus_en:product-updates"}, b.OptOuts())

	checked, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('#topic-1').checked`))
	require.NoError(t, err)
	require.False(t, checked, "the saved page shows the saved choice")

	// A tampered link shows the refusal and changes nothing.
	tampered := strings.Replace(b.prefsURL("cus_en"), "token=h1.", "token=h1.A", 1)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(tampered), chromedp.WaitVisible(chromedp.CSS(`h1`))))
	refused, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, refused, "This link doesn't work")
	require.NotContains(t, refused, "Product updates")
}

func TestBrowserUnsubscribeButton(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := browser(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.unsubURL("cus_ja", "newsletter")),
		chromedp.WaitVisible(chromedp.CSS(`button`)),
	))
	question, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, question, "「Newsletter」の配信を停止しますか？")
	p, err := b.store.Get(context.Background(), "cus_ja")
	require.NoError(t, err)
	require.Empty(t, p.Topics, "opening the link changes nothing")

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`button`)),
		chromedp.WaitNotPresent(chromedp.CSS(`button`)),
	))
	done, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
	require.NoError(t, err)
	require.Contains(t, done, "「Newsletter」の配信を停止しました。")
	p, err = b.store.Get(context.Background(), "cus_ja")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"newsletter": false}, p.Topics)
}
