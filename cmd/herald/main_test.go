package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/stretchr/testify/require"
)

func runCLI(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestValidateExamples(t *testing.T) {
	t.Parallel()
	out, errOut, err := runCLI(t, "validate")
	require.NoError(t, err, "examples must validate: %s", out)
	require.Contains(t, errOut, "ok:")
}

func TestValidateReportsFileLine(t *testing.T) {
	dir := t.TempDir()
	tdir, wdir := filepath.Join(dir, "templates"), filepath.Join(dir, "workflows")
	require.NoError(t, os.MkdirAll(filepath.Join(tdir, "hello"), 0o755))
	require.NoError(t, os.MkdirAll(wdir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tdir, "hello", "en.md"), []byte("---\nsubject: \"Hi {{ .customer.first_name }}\"\nsample:\n  customer: { first_name: Ada }\n---\nHello {{ .data.missing }}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(wdir, "w.yaml"), []byte("id: w\ntopic: onboarding\ntrigger: x.y\nsteps:\n  - id: a\n    send: { template: nope }\n  - id: a\n    wait: { for: 2 parsecs }\n"), 0o644))
	t.Setenv("HERALD_TEMPLATES", tdir)
	t.Setenv("HERALD_WORKFLOWS", wdir)
	out, _, err := runCLI(t, "validate")
	var code exitError
	require.ErrorAs(t, err, &code)
	require.Equal(t, exitError(1), code)
	require.Contains(t, out, filepath.Join(tdir, "hello", "en.md")+":6: ", "a template problem names file and line")
	require.Contains(t, out, filepath.Join(wdir, "w.yaml")+":6: ", "a workflow problem names file and line")
	require.Contains(t, out, "nope")
	require.Contains(t, out, "duplicate step id")
}

func TestPreview(t *testing.T) {
	t.Parallel()
	html := filepath.Join(t.TempDir(), "out.html")
	out, _, err := runCLI(t, "preview", "--template", "welcome", "--locale", "ja", "--channel", "email", "--html", html)
	require.NoError(t, err)
	require.Contains(t, out, "Lumen")
	b, err := os.ReadFile(html)
	require.NoError(t, err)
	require.Contains(t, string(b), `lang="ja"`)

	out, _, err = runCLI(t, "preview", "--template", "cart-reminder", "--channel", "slack")
	require.NoError(t, err)
	require.Contains(t, out, `"actions"`)

	_, _, err = runCLI(t, "preview", "--template", "no-such")
	require.ErrorContains(t, err, "no template")
}

// startDev starts what `herald dev` starts, on a free port, with its
// outbox in a temp dir.
func startDev(t *testing.T) (*Dev, string) {
	t.Helper()
	outbox := t.TempDir()
	c, err := config.Load("")
	require.NoError(t, err)
	c.HTTP.Addr = "127.0.0.1:0"
	d, err := OpenDev(context.Background(), c, outbox, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	t.Cleanup(d.Close)
	require.NoError(t, d.Main.Start(context.Background()))
	return d, outbox
}

// TestDevQuickStart runs what `make run` runs and the README's curl line:
// the message arrives as an .eml file in the outbox.
func TestDevQuickStart(t *testing.T) {
	t.Parallel()
	d, outbox := startDev(t)
	base := "http://" + d.Main.Addr()

	body := `{"customer_id":"demo","template":"welcome","topic":"onboarding","channels":["email"],"data":{"plan":"Pro","trial_days":14,"dashboard_url":"https://app.lumen.example/"}}`
	req, _ := http.NewRequest("POST", base+"/v1/messages", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+DevToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Eventually(t, func() bool {
		m, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		return len(m) == 1
	}, 10*time.Second, 20*time.Millisecond, "the curl line produces an .eml file")

	// An event starts the onboarding journey; its first step goes to Slack.
	req, _ = http.NewRequest("POST", base+"/v1/events", strings.NewReader(`{"customer_id":"demo","name":"trial.started","data":{"plan":"Pro","trial_days":14,"dashboard_url":"https://app.lumen.example/"}}`))
	req.Header.Set("Authorization", "Bearer "+DevToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(filepath.Join(outbox, "slack.jsonl"))
		return bytes.Count(b, []byte("\n")) == 1
	}, 10*time.Second, 20*time.Millisecond, "Slack capture gets the welcome")

	// The journey's lines are written once its step (and the send in it)
	// is done: read the timeline until they are there.
	timeline := func() string {
		req, _ := http.NewRequest("GET", base+"/v1/customers/demo/timeline", nil)
		req.Header.Set("Authorization", "Bearer "+DevToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		var tl struct {
			Entries []struct{ Summary string } `json:"entries"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tl); err != nil {
			return err.Error()
		}
		var all []string
		for _, e := range tl.Entries {
			all = append(all, e.Summary)
		}
		return strings.Join(all, "\n")
	}
	var all string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if all = timeline(); strings.Contains(all, "journey trial-onboarding") && strings.Contains(all, "event trial.started") {
			break
		}
	}
	require.Contains(t, all, "journey trial-onboarding")
	require.Contains(t, all, "event trial.started from dev", "the API token's name is on the timeline")
	require.Contains(t, all, "sent welcome by email (en); asked by dev")
}

// TestWorkerRefusesInvalidContent: a worker never runs an invalid workflow.
func TestWorkerRefusesInvalidContent(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.yaml"), []byte("id: bad\ntopic: onboarding\ntrigger: a.b\nsteps:\n  - id: s\n    send: { template: missing-template }\n"), 0o644))
	c := workerConfig(t, rs)
	c.Content.Templates, c.Content.Workflows = "../../examples/templates", dir
	m := &Main{Config: c, Worker: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	err := m.Open(context.Background())
	_ = m.Close()
	require.ErrorContains(t, err, "bad.yaml:6")
	require.ErrorContains(t, err, "missing-template")
}

// The unsubscribe link in a real email works with RFC 8058's one-click POST
// and takes the customer out of that topic.
func TestOneClickUnsubscribeFromRealEmail(t *testing.T) {
	t.Parallel()
	d, _ := startDev(t)
	_, err := d.Main.Engine.Send(context.Background(), wireMessage("demo", "nudge", "onboarding", map[string]any{"dashboard_url": "https://app.lumen.example/"}))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return d.SMTP.Count() == 1 }, 10*time.Second, 20*time.Millisecond)
	raw := string(d.SMTP.Messages()[0].Data)
	m := regexp.MustCompile(`List-Unsubscribe: <(http[^>]+)>`).FindStringSubmatch(strings.ReplaceAll(raw, "\r\n ", ""))
	require.Len(t, m, 2, "the email carries a one-click link")
	// RFC 8058's List-Unsubscribe-Post is only sent with https links; dev
	// links are http on loopback, so its POST is made by hand here.
	u := strings.Replace(m[1], d.Main.Config.HTTP.PublicURL, "http://"+d.Main.Addr(), 1)
	resp, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	p, err := d.Main.Engine.Preferences().Get(context.Background(), "demo")
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"onboarding": false}, p.Topics)
	consent, err := d.Main.Engine.Preferences().Consent(context.Background(), "demo")
	require.NoError(t, err)
	require.Equal(t, "one_click_unsubscribe", consent[len(consent)-1].Source)
}

// SIGHUP (Reload) applies a valid change and refuses an invalid one,
// keeping the running set.
func TestReloadRefusesInvalidContent(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	dir := t.TempDir()
	wf := filepath.Join(dir, "w.yaml")
	good := "id: w\ntopic: onboarding\ntrigger: a.b\nsteps:\n  - id: s\n    send: { template: welcome }\n"
	require.NoError(t, os.WriteFile(wf, []byte(good), 0o644))
	c := workerConfig(t, rs)
	c.Content.Templates, c.Content.Workflows = "../../examples/templates", dir
	m := &Main{Config: c, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	require.NoError(t, m.Open(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	v1, _ := m.Engine.Workflows().Get("w")

	require.NoError(t, os.WriteFile(wf, []byte(strings.Replace(good, "welcome", "no-such-template", 1)), 0o644))
	require.False(t, m.Reload(), "an invalid change is refused")
	w, _ := m.Engine.Workflows().Get("w")
	require.Equal(t, v1.Version, w.Version, "the old set keeps running")

	require.NoError(t, os.WriteFile(wf, []byte(strings.Replace(good, "welcome", "nudge", 1)), 0o644))
	require.True(t, m.Reload())
	w, _ = m.Engine.Workflows().Get("w")
	require.NotEqual(t, v1.Version, w.Version, "a valid change is applied")
}

func wireMessage(customer, template, topic string, data map[string]any) wire.Message {
	return wire.Message{CustomerID: customer, Template: template, Topic: topic, Data: data, Channels: []herald.Channel{herald.ChannelEmail}}
}

// A worker-only process serves its own metrics when asked: its delivery
// counters exist nowhere else.
func TestWorkerServesMetrics(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := workerConfig(t, rs)
	c.Content.Templates = "../../examples/templates"
	c.Worker.MetricsAddr = "127.0.0.1:0"
	m := &Main{Config: c, Worker: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	require.NoError(t, m.Open(context.Background()))
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, m.Start(context.Background()))
	resp, err := http.Get("http://" + m.MetricsAddr() + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(b), "herald_watchdog_repairs_total")
	require.Contains(t, string(b), "herald_redis_up 1")
}

// asynq's "Retry exhausted" for a task that was never retried (a
// permanent failure) becomes an info line that says what happened.
func TestAsynqArchiveLine(t *testing.T) {
	t.Parallel()
	logs := &logbuf.Buffer{}
	l := asynqLogger{slog.New(slog.NewTextHandler(logs, nil))}
	l.Warn("Retry exhausted for task id=m:abc")
	l.Warn("something else")
	out := logs.String()
	require.Contains(t, out, `level=INFO msg="task archived" task_id=m:abc`)
	require.NotContains(t, out, "Retry exhausted")
	require.Contains(t, out, `level=WARN msg="something else"`)
}

// worker.secret_keys words match whole parts of a key, as the default list
// does: "auth" seals x-auth and authToken, not author.
func TestConfiguredSecretKeysMatchWholeParts(t *testing.T) {
	t.Parallel()
	re := secretKeys([]string{"auth", "pin"})
	for key, sealed := range map[string]bool{"x-auth": true, "authToken": true, "AUTH": true, "pin_code": true, "author": false, "shipping": false, "authority": false} {
		require.Equal(t, sealed, re.MatchString(key), key)
	}
	require.Nil(t, secretKeys(nil), "none configured: the default list")
}
