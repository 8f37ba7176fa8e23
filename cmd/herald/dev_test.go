package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/stretchr/testify/require"
)

// startDevWith is startDev with the config adjusted first.
func startDevWith(t *testing.T, edit func(*config.Config)) *Dev {
	t.Helper()
	c, err := config.Load("")
	require.NoError(t, err)
	c.HTTP.Addr = "127.0.0.1:0"
	edit(&c)
	d, err := OpenDev(context.Background(), c, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.NoError(t, d.Main.Start(context.Background()))
	return d
}

var dashboardLine = regexp.MustCompile(`(?m)^\s+Dashboard\s+(\S+)`)

// The dashboard URL herald dev prints opens the dashboard in a browser,
// which has no way to send a bearer token.
func TestDevDashboardURLOpensInBrowser(t *testing.T) {
	t.Parallel()
	d, _ := startDev(t)
	var out bytes.Buffer
	d.Banner(&out)
	m := dashboardLine.FindStringSubmatch(out.String())
	require.Len(t, m, 2, "the banner names the dashboard:\n%s", out.String())

	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	browser := &http.Client{Jar: jar}
	get := func(u string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, u, nil)
		require.NoError(t, err)
		req.Header.Set("Accept", "text/html,application/xhtml+xml")
		req.Header.Set("Sec-Fetch-Site", "none")
		res, err := browser.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res.StatusCode, string(b)
	}
	status, body := get(m[1])
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Contains(t, body, "Asynq - Monitoring")
	status, body = get("http://" + d.Main.Addr() + "/monitoring/api/queues")
	require.Equal(t, http.StatusOK, status, "the dashboard's own API calls work too: %s", body)
	require.Contains(t, body, `"queues"`)

	// Without the link, a browser is still asked to authenticate.
	res, err := http.Get("http://" + d.Main.Addr() + "/monitoring/")
	require.NoError(t, err)
	res.Body.Close()
	status = res.StatusCode
	require.Equal(t, http.StatusUnauthorized, status)
}

// herald dev prints its own made-up token, never a configured one.
func TestDevBannerNeverPrintsConfiguredTokens(t *testing.T) {
	t.Parallel()
	const prod = "prod-token-0123456789abcdef"
	tests := []struct {
		name     string
		edit     func(*config.Config)
		shows    []string
		hides    []string
		apiToken string // the token the API takes
	}{
		{
			name:     "dev default",
			edit:     func(*config.Config) {},
			shows:    []string{"Authorization: Bearer " + DevToken},
			hides:    []string{"using the configured API tokens"},
			apiToken: DevToken,
		},
		{
			name:     "configured token",
			edit:     func(c *config.Config) { c.API.Tokens = []config.Token{{Name: "prod", Value: prod}} },
			shows:    []string{"using the configured API tokens", "Bearer $HERALD_TOKEN"},
			hides:    []string{prod, DevToken},
			apiToken: prod,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := startDevWith(t, tt.edit)
			var out bytes.Buffer
			d.Banner(&out)
			for _, s := range tt.shows {
				require.Contains(t, out.String(), s)
			}
			for _, s := range tt.hides {
				require.NotContains(t, out.String(), s)
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+d.Main.Addr()+"/v1/customers/demo", nil)
			req.Header.Set("Authorization", "Bearer "+tt.apiToken)
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			res.Body.Close()
			require.Equal(t, http.StatusOK, res.StatusCode)
		})
	}
}

// `herald validate` fails a dashboard user without a password, naming the
// variables to set.
func TestValidateRefusesOpenDashboard(t *testing.T) {
	tests := []struct {
		name, user, password, want string
	}{
		{"user without password", "ops", "", "HERALD_MONITORING_PASSWORD"},
		{"short password", "ops", "short-pw", "at least 12"},
		{"password without user", "", "long-enough-password", "HERALD_MONITORING_USER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HERALD_MONITORING_USER", tt.user)
			t.Setenv("HERALD_MONITORING_PASSWORD", tt.password)
			out, errOut, err := runCLI(t, "validate")
			var code exitError
			require.ErrorAs(t, err, &code)
			require.Equal(t, exitError(1), code)
			require.Contains(t, out, tt.want)
			require.NotContains(t, errOut, "ok:")
		})
	}
}

// HERALD_METRICS_TOKEN guards a worker's own metrics address too.
func TestWorkerMetricsToken(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := workerConfig(t, rs)
	c.Content.Templates = "../../examples/templates"
	c.Worker.MetricsAddr = "127.0.0.1:0"
	c.HTTP.MetricsToken = "metrics-token-0123456789"
	m := &Main{Config: c, Worker: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	require.NoError(t, m.Open(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Start(context.Background()))
	for _, tt := range []struct {
		auth   string
		status int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"Bearer metrics-token-0123456789", http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+m.MetricsAddr()+"/metrics", nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, tt.status, res.StatusCode, "%q: %s", tt.auth, b)
		require.Equal(t, tt.status == http.StatusOK, strings.Contains(string(b), "herald_redis_up"))
	}
}

var bannerCurl = regexp.MustCompile(`curl -sS -X POST (\S+) -H "Authorization: Bearer (\S+)" .*\\\n\s+-d '([^']*)'`)

// herald dev says where its content came from, and the commands it prints
// work for that content: the message arrives in the outbox and the event
// starts the journey it names.
func TestDevBannerCommandsWork(t *testing.T) {
	t.Parallel()
	folder := func(t *testing.T) (string, string) {
		tdir, wdir := contentFolders(t, "---\nsubject: Hi\nsample:\n  data: { plan: Team }\n---\nHello, your {{ .data.plan }} plan.\n",
			"id: signup-flow\ntopic: onboarding\ntrigger: account.signed-up\nsteps:\n  - id: s\n    send: { template: hello, channels: [email] }\n")
		return tdir, wdir
	}
	for _, tt := range []struct {
		name    string
		content func(t *testing.T) (tdir, wdir string)
		says    []string // in the banner; TDIR and WDIR are the folders
		journey string
		never   []string
	}{
		{
			name:    "embedded examples",
			content: func(*testing.T) (string, string) { return "", "" },
			says:    []string{"Templates      embedded examples/templates (11 templates)", "Workflows      embedded examples/workflows (5 files)", "Other journeys start on"},
		},
		{
			name:    "folders",
			content: folder,
			says:    []string{"Templates      TDIR (1 templates)", "Workflows      WDIR (1 files)", `"template":"hello"`, `"name":"account.signed-up"`, `"plan":"Team"`},
			journey: "journey signup-flow",
			never:   []string{"welcome", "trial.started", "Other journeys"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tdir, wdir := tt.content(t)
			d := startDevWith(t, func(c *config.Config) { c.Content.Templates, c.Content.Workflows = tdir, wdir })
			var out bytes.Buffer
			d.Banner(&out)
			banner := out.String()
			for _, s := range tt.says {
				require.Contains(t, banner, strings.NewReplacer("TDIR", tdir, "WDIR", wdir).Replace(s))
			}
			for _, s := range tt.never {
				require.NotContains(t, banner, s)
			}
			cmds := bannerCurl.FindAllStringSubmatch(banner, -1)
			require.Len(t, cmds, 2, "a message and an event:\n%s", banner)
			for _, c := range cmds {
				req, err := http.NewRequest(http.MethodPost, c[1], strings.NewReader(c[3]))
				require.NoError(t, err)
				req.Header.Set("Authorization", "Bearer "+c[2])
				req.Header.Set("Content-Type", "application/json")
				res, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				body, _ := io.ReadAll(res.Body)
				res.Body.Close()
				require.Equal(t, http.StatusAccepted, res.StatusCode, "%s: %s", c[1], body)
			}
			require.Eventually(t, func() bool { return d.SMTP.Count() >= 1 }, 10*time.Second, 20*time.Millisecond, "the message is sent")
			if tt.journey == "" {
				return
			}
			require.Eventually(t, func() bool {
				tl, err := d.Main.Engine.Store().Timeline(context.Background(), "demo", 50)
				if err != nil {
					return false
				}
				for _, e := range tl {
					if strings.Contains(e.Summary, tt.journey) {
						return true
					}
				}
				return false
			}, 10*time.Second, 20*time.Millisecond, "the event starts the journey")
		})
	}
}

// herald dev with only a workflows folder refuses rather than run the
// folder's workflows on the examples' templates.
func TestDevRefusesWorkflowsWithoutTemplates(t *testing.T) {
	t.Parallel()
	_, wdir := contentFolders(t, helloTemplate, workflowSrc("a.b", ""))
	c, err := config.Load("")
	require.NoError(t, err)
	c.HTTP.Addr, c.Content.Workflows = "127.0.0.1:0", wdir
	_, err = OpenDev(context.Background(), c, t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.ErrorContains(t, err, "content.workflows (HERALD_WORKFLOWS) is set but content.templates (HERALD_TEMPLATES) is not")
}

// A journey's wait fires in herald dev: the waker's scripts run on the
// embedded Redis.
func TestDevJourneyWaitFires(t *testing.T) {
	t.Parallel()
	tdir, wdir := contentFolders(t, "---\nsubject: Hi\nsample:\n  data: { plan: Team }\n---\nHello, your {{ .data.plan }} plan.\n",
		"id: signup-flow\ntopic: onboarding\ntrigger: account.signed-up\nsteps:\n  - id: first\n    send: { template: hello, channels: [email] }\n"+
			"  - id: pause\n    wait: { for: 1s }\n  - id: second\n    send: { template: hello, channels: [email] }\n")
	d := startDevWith(t, func(c *config.Config) { c.Content.Templates, c.Content.Workflows = tdir, wdir })
	require.NotNil(t, d.Mini, "on the embedded Redis")
	_, err := d.Main.Engine.Event(context.Background(), herald.Event{CustomerID: "demo", Name: "account.signed-up", Data: map[string]any{"plan": "Team"}}, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return d.SMTP.Count() == 1 }, 10*time.Second, 20*time.Millisecond, "the first step is sent")
	require.Eventually(t, func() bool { return d.SMTP.Count() == 2 }, 10*time.Second, 20*time.Millisecond, "the follow-up is sent after the wait")
}

var cliLine = regexp.MustCompile(`(?m)^\s+CLI\s+export HERALD_REDIS_URL=(\S+)`)

// The CLI reaches herald dev with the Redis URL its banner prints and
// nothing else: it reads messages, customers, journeys and workflow
// numbers, cancels a journey, and refuses a template the worker lacks.
func TestDevBannerCLIWorks(t *testing.T) {
	d, _ := startDev(t)
	var out bytes.Buffer
	d.Banner(&out)
	m := cliLine.FindStringSubmatch(out.String())
	require.Len(t, m, 2, "the banner tells the CLI where Redis is:\n%s", out.String())
	t.Setenv("HERALD_REDIS_URL", m[1])
	ctx := context.Background()

	id, err := d.Main.Engine.Service().Send(ctx, wireMessage("demo", "welcome", "onboarding", map[string]any{"plan": "Pro", "trial_days": 14, "dashboard_url": "https://app.lumen.example/dashboard"}))
	require.NoError(t, err)
	// The message is recorded sent just after the server has it.
	require.Eventually(t, func() bool {
		stdout, _, err := runCLI(t, "message", id)
		return err == nil && strings.Contains(stdout, `"sent"`)
	}, 10*time.Second, 20*time.Millisecond, "herald message says sent")
	require.Equal(t, 1, d.SMTP.Count())

	stdout, _, err := runCLI(t, "customer", "demo")
	require.NoError(t, err)
	require.Contains(t, stdout, `"email":"ada@example.com"`)
	_, _, err = runCLI(t, "customer", "typo-id")
	require.ErrorContains(t, err, `customer "typo-id" not found`)
	_, err = d.Main.Engine.Store().Customer(ctx, "typo-id")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "a look-up creates no customer")

	stdout, _, err = runCLI(t, "workflows")
	require.NoError(t, err)
	require.Contains(t, stdout, "trial-onboarding")
	stdout, _, err = runCLI(t, "stats", "trial-onboarding", "--since", "1d")
	require.NoError(t, err)
	require.Contains(t, stdout, `"wait-for-project"`)

	_, _, err = runCLI(t, "event", "demo", "trial.started", "--data", trialData)
	require.NoError(t, err)
	var journey string
	require.Eventually(t, func() bool {
		js, err := d.Main.Engine.CustomerJourneys(ctx, "demo")
		if err != nil || len(js) == 0 {
			return false
		}
		journey = js[0].ID
		return true
	}, 10*time.Second, 20*time.Millisecond, "the event starts a journey")
	stdout, _, err = runCLI(t, "journeys", "demo")
	require.NoError(t, err)
	require.Contains(t, stdout, journey)
	stdout, _, err = runCLI(t, "journeys", "cancel", "demo", journey)
	require.NoError(t, err)
	require.NotContains(t, stdout, `"status": "active"`, "the worker has ended it: %s", stdout)

	_, _, err = runCLI(t, "send", "demo", "no-such-template", "--topic", "onboarding")
	require.ErrorContains(t, err, `unknown template "no-such-template"`)
	_, _, err = runCLI(t, "send", "demo", "cart-reminder", "--topic", "checkout")
	require.ErrorContains(t, err, `data: template "cart-reminder" reads keys "cart_total", "cart_url", "currency", "item_count" in every locale`)
}
