package httpapi_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/chromiumtest"
	"github.com/stretchr/testify/require"
)

// browser starts a headless chromium for t, with a fresh profile.
func browser(t *testing.T) context.Context {
	t.Helper()
	return chromiumtest.Start(t, 1280, 900)
}

// The dashboard works under its Content-Security-Policy: asynqmon's UI,
// opened from a login link in a real browser, renders the queues it reads
// from its API, and the browser reports no policy violation.
func TestBrowserDashboardUnderCSP(t *testing.T) {
	t.Parallel()
	const login = "login-secret-0123456789abcdef"
	b := setup(t, dashboard(t), func(c *httpapi.Config) { c.MonitoringLogin = login })
	ctx := browser(t)

	// Collect the console from before the first navigation to the end.
	var mu sync.Mutex
	var console []chromedp.ConsoleMessage
	consoleCtx, stopConsole := context.WithCancel(ctx)
	messages := chromedp.Console(consoleCtx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for m, err := range messages {
			if err != nil {
				return
			}
			mu.Lock()
			console = append(console, m)
			mu.Unlock()
		}
	}()

	_, err := chromedp.Call(ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: []*network.BlockPattern{
		// The sandbox has no Internet: fail the Google Fonts requests at
		// once rather than wait for DNS.
		{URLPattern: "*://fonts.googleapis.com/*", Block: true},
		{URLPattern: "*://fonts.gstatic.com/*", Block: true},
	}})
	require.NoError(t, err)
	_, err = chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`})
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.url+"/monitoring/login?token="+login)))
	_, err = chromedp.Run(ctx, chromedp.Poll[bool](`document.body.innerText.includes('`+probeQueue+`')`, chromedp.WithPollingInterval(50*time.Millisecond)))
	require.NoError(t, err, "the dashboard shows the queue")

	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	require.NoError(t, err)
	location, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname`))
	require.NoError(t, err)
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp`))
	require.NoError(t, err)
	rendered, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('#root *').length`))
	require.NoError(t, err)
	stopConsole()
	<-done

	require.Equal(t, "/monitoring/", location, "the login link lands on the dashboard")
	require.Contains(t, text, "Queues")
	require.Contains(t, text, probeQueue, "the UI read the queues from its API")
	require.Greater(t, rendered, 10, "React rendered the app")
	require.Empty(t, violations, "securitypolicyviolation events")
	mu.Lock()
	defer mu.Unlock()
	for _, m := range console {
		require.NotContains(t, m.Text, "Content Security Policy", "console: %s", m)
		require.NotContains(t, m.Text, "Content-Security-Policy", "console: %s", m)
		require.False(t, m.IsException(), "console: %s", m)
	}
}
