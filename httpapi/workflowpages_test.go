package httpapi_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/heraldhq/herald/httpapi"
	"github.com/stretchr/testify/require"
)

// The workflow pages, in a real browser: the list with each workflow's
// journeys, the diagram with every step's numbers on it, the time-range
// switch, no policy violation; a screenshot is kept with the test's files
// (and written to HERALD_SCREENSHOT when set, which is how
// docs/workflow-page.png is made).
func TestBrowserWorkflowPage(t *testing.T) {
	t.Parallel()
	const login = "login-secret-0123456789abcdef"
	b := setup(t, func(c *httpapi.Config) { c.MonitoringLogin = login })
	withInsightContent(t, b)
	for i := 1; i <= 12; i++ {
		b.putCustomer(t, fmt.Sprintf("c%02d", i), `{"email":"c`+fmt.Sprint(i)+`@example.com","attributes":{"first_name":"Ada"}}`)
	}
	r := b.do(t, req{method: http.MethodPatch, path: "/v1/customers/c06/preferences", body: `{"channels":{"email":false}}`})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	for i := 1; i <= 12; i++ {
		b.waitingJourney(t, fmt.Sprintf("c%02d", i))
	}
	for _, ev := range []struct{ customer, name string }{{"c03", "insight.done"}, {"c04", "insight.done"}, {"c05", "insight.stop"}} {
		r := b.do(t, req{method: http.MethodPost, path: "/v1/events", body: `{"customer_id":"` + ev.customer + `","name":"` + ev.name + `"}`})
		require.Equal(t, http.StatusAccepted, r.status)
	}
	require.Eventually(t, func() bool {
		st := b.stats(t)
		return st.Journeys.Completed == 2 && st.Journeys.Exited == 1 && st.Steps["thanks"].Sent["email"] == 2
	}, 15*time.Second, 20*time.Millisecond)

	ctx := browser(t)
	_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`})
	require.NoError(t, err)
	// The dashboard's login link opens the workflow pages too.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.url+"/monitoring/login?token="+login)))
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(b.url+"/workflows/")))
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('tr[data-workflow="insight"] td')].map(td => td.innerText.trim())`))
	require.NoError(t, err)
	require.Equal(t, "insight", cells[0])
	require.Equal(t, []string{"onboarding", "insight.started", "9", "12", "2", "1"}, cells[2:], "topic, trigger, running now, started, completed, exited")

	follow := func(selector string) {
		t.Helper()
		href, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('`+selector+`').href`))
		require.NoError(t, err)
		require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(href)))
	}
	follow(`tr[data-workflow="insight"] a`)
	node := func(id string) []string {
		lines, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg g[data-node="`+id+`"] text')].map(t => t.textContent)`))
		require.NoError(t, err)
		return lines
	}
	require.Equal(t, []string{"hello", "send step-hello by slack, email", "entered 12", "sent email 11", "suppressed opted_out_channel 1", "failed 0"}, node("hello"))
	require.Equal(t, []string{"wait", "wait 30s or until insight.done", "entered 12", "waiting now 9 · timed out 0", "exited insight.stop 1"}, node("wait"))
	require.Equal(t, []string{"thanks", "send step-thanks by email", "entered 2", "sent email 2", "failed 0"}, node("thanks"))
	require.Equal(t, "started 12 · running now 9", node("(start)")[2])
	require.Equal(t, "exited 1", node("(exit)")[2])
	visible, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const r = document.querySelector('svg.workflow-diagram g[data-node="wait"]').getBoundingClientRect(); return r.width > 100 && r.height > 40; })()`))
	require.NoError(t, err)
	require.True(t, visible, "the diagram is drawn")
	edges, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('svg .label text')].map(t => t.textContent)`))
	require.NoError(t, err)
	require.Contains(t, edges, "insight.done")
	require.Contains(t, edges, "after 30s")
	require.Contains(t, edges, `if customer.tier == "gold"`)
	require.Contains(t, edges, "exit on insight.stop")
	current, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('.ranges a[aria-current="page"]').textContent`))
	require.NoError(t, err)
	require.Equal(t, "24 h", current)

	shot := filepath.Join(t.TempDir(), "workflow-page.png")
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(shot, png, 0o644))
	require.Greater(t, len(png), 10_000, "a screenshot with something in it")
	if dst := os.Getenv("HERALD_SCREENSHOT"); dst != "" {
		require.NoError(t, os.WriteFile(dst, png, 0o644))
	}

	follow(`.ranges a[href="?range=30d"]`)
	current, err = chromedp.Run(ctx, chromedp.Evaluate[string](`location.search + ' ' + document.querySelector('.ranges a[aria-current="page"]').textContent`))
	require.NoError(t, err)
	require.Equal(t, "?range=30d 30 d", current)
	require.Equal(t, "entered 12", node("hello")[2], "the same numbers over 30 days")
	violations, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__csp`))
	require.NoError(t, err)
	require.Empty(t, violations)

	// Without credentials the pages are closed, like the dashboard.
	r = b.do(t, req{path: "/workflows/insight", header: map[string]string{"Authorization": ""}})
	require.Equal(t, http.StatusUnauthorized, r.status)
	r = b.do(t, req{path: "/workflows/nope"})
	require.Equal(t, http.StatusNotFound, r.status)
	require.Contains(t, string(r.body), "nope")
	require.Contains(t, r.header.Get("Content-Security-Policy"), "default-src 'self'")
}
