package main

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

const (
	helloTemplate  = "---\nsubject: Hi\n---\nHello.\n"
	brokenTemplate = "---\nsubject: Hi\n---\nHello {{ .data.missing }}.\n"
	testSigningKey = "0123456789abcdef0123456789abcdef"
)

// workflowSrc is a one-step workflow sending hello with the given trigger
// and channels ("" for none listed); its send step is on line 6.
func workflowSrc(trigger, channels string) string {
	send := "{ template: hello }"
	if channels != "" {
		send = "{ template: hello, channels: " + channels + " }"
	}
	return "id: w\ntopic: onboarding\ntrigger: " + trigger + "\nsteps:\n  - id: s\n    send: " + send + "\n"
}

// contentFolders writes a templates folder holding hello/en.md and, unless
// workflow is "", a workflows folder holding w.yaml.
func contentFolders(t *testing.T, template, workflow string) (tdir, wdir string) {
	t.Helper()
	dir := t.TempDir()
	tdir = filepath.Join(dir, "templates")
	require.NoError(t, os.MkdirAll(filepath.Join(tdir, "hello"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tdir, "hello", "en.md"), []byte(template), 0o644))
	if workflow != "" {
		wdir = filepath.Join(dir, "workflows")
		require.NoError(t, os.MkdirAll(wdir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(wdir, "w.yaml"), []byte(workflow), 0o644))
	}
	return tdir, wdir
}

// deploymentVars are the variables the validate tests set; each test sets
// every one (empty when unused), so the environment running the tests
// cannot leak in.
var deploymentVars = []string{
	"HERALD_CONFIG", "HERALD_REDIS_URL", "HERALD_SMTP_URL", "HERALD_MAIL_FROM", "HERALD_SLACK_TOKEN",
	"HERALD_SIGNING_KEY", "HERALD_API_TOKENS", "HERALD_TEMPLATES", "HERALD_WORKFLOWS",
}

func setVars(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, k := range deploymentVars {
		t.Setenv(k, vars[k])
	}
}

// TestValidateChecksWhatRunNeeds: with a deployment's settings, validate
// names every setting the role lacks and every workflow that can only use
// an unconfigured channel; it checks the folders the worker would load and
// says which.
func TestValidateChecksWhatRunNeeds(t *testing.T) {
	ready := func(tdir, wdir string) map[string]string {
		return map[string]string{
			"HERALD_REDIS_URL": "redis://127.0.0.1:6379/0", "HERALD_SMTP_URL": "smtp://127.0.0.1:25?tls=none",
			"HERALD_MAIL_FROM": "Lumen <hello@lumen.example>", "HERALD_SIGNING_KEY": testSigningKey,
			"HERALD_API_TOKENS": "web:web-token-0123456789", "HERALD_TEMPLATES": tdir, "HERALD_WORKFLOWS": wdir,
		}
	}
	tests := []struct {
		name     string
		workflow string // "" for no workflows folder
		args     []string
		vars     func(tdir, wdir string) map[string]string
		ok       bool
		stdout   []string // lines (after replacing TDIR and WDIR) stdout must hold
		stderr   []string
		never    string // what neither output may mention
	}{
		{
			name: "ready to run", workflow: workflowSrc("a.b", "[email]"), vars: ready, ok: true,
			stderr: []string{"checked for herald run (channels configured: email)", "templates: TDIR (1 templates)", "workflows: WDIR (1 files)", "ok:"},
		},
		{
			name: "missing what run needs", workflow: workflowSrc("a.b", ""), ok: false,
			vars: func(tdir, wdir string) map[string]string {
				return map[string]string{"HERALD_SMTP_URL": "smtp://127.0.0.1:25?tls=none", "HERALD_MAIL_FROM": "hello@lumen.example", "HERALD_TEMPLATES": tdir, "HERALD_WORKFLOWS": wdir}
			},
			stdout: []string{
				"config: redis.url (HERALD_REDIS_URL): required by herald run",
				"config: signing_key (HERALD_SIGNING_KEY): required by herald run",
				"config: api.tokens (HERALD_API_TOKENS): required by herald run",
			},
			stderr: []string{"3 problem(s)"},
		},
		{
			name: "a worker needs no API token", workflow: workflowSrc("a.b", ""), args: []string{"--role", "worker"}, ok: true,
			vars: func(tdir, wdir string) map[string]string {
				v := ready(tdir, wdir)
				delete(v, "HERALD_API_TOKENS")
				return v
			},
			stderr: []string{"checked for herald worker"},
		},
		{
			name: "sender address that does not parse", ok: false,
			vars: func(tdir, wdir string) map[string]string {
				v := ready(tdir, wdir)
				v["HERALD_MAIL_FROM"] = "Lumen <hello@"
				return v
			},
			stdout: []string{`config: smtp.from (HERALD_MAIL_FROM): "Lumen <hello@" is not an address`},
		},
		{
			name: "workflow only for an unconfigured channel", workflow: workflowSrc("a.b", "[slack]"), vars: ready, ok: false,
			stdout: []string{`WDIR/w.yaml:6: step "s": sends only by slack, which is not configured (configured: email)`},
		},
		{
			name: "content only: channels are not judged", workflow: workflowSrc("a.b", "[slack]"), ok: true,
			vars: func(tdir, wdir string) map[string]string {
				return map[string]string{"HERALD_TEMPLATES": tdir, "HERALD_WORKFLOWS": wdir}
			},
			stderr: []string{"checked for content only", "templates: TDIR (1 templates)", "workflows: WDIR (1 files)"},
		},
		{
			name: "--role content skips a deployment's needs", workflow: workflowSrc("a.b", "[slack]"), args: []string{"--role", "content"}, ok: true,
			vars: func(tdir, wdir string) map[string]string {
				return map[string]string{"HERALD_SMTP_URL": "smtp://127.0.0.1:25?tls=none", "HERALD_MAIL_FROM": "a@b.example", "HERALD_TEMPLATES": tdir, "HERALD_WORKFLOWS": wdir}
			},
		},
		{
			name: "event names the API refuses", workflow: workflowSrc("Payment.Failed", ""), vars: ready, ok: false,
			stdout: []string{`WDIR/w.yaml:3: trigger: event name "Payment.Failed": use lower-case letters`},
		},
		{
			name: "only the workflows folder set: the examples are not checked instead", workflow: workflowSrc("a.b", ""), ok: false,
			vars:   func(_, wdir string) map[string]string { return map[string]string{"HERALD_WORKFLOWS": wdir} },
			stdout: []string{"config: content.templates (HERALD_TEMPLATES): not set, so herald run, worker and serve refuse to start"},
			stderr: []string{"templates: none (content.templates / HERALD_TEMPLATES not set)", "workflows: WDIR (1 files)"},
			never:  "examples",
		},
		{
			name: "a folder that is not there", ok: false,
			vars: func(tdir, _ string) map[string]string {
				return map[string]string{"HERALD_TEMPLATES": tdir, "HERALD_WORKFLOWS": filepath.Join(tdir, "no-such")}
			},
			stdout: []string{"content.workflows (HERALD_WORKFLOWS): TDIR/no-such is not a folder"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tdir, wdir := contentFolders(t, helloTemplate, tt.workflow)
			setVars(t, tt.vars(tdir, wdir))
			out, errOut, err := runCLI(t, append([]string{"validate"}, tt.args...)...)
			if tt.ok {
				require.NoError(t, err, "stdout:\n%s\nstderr:\n%s", out, errOut)
			} else {
				require.Equal(t, exitError(1), err, "stdout:\n%s\nstderr:\n%s", out, errOut)
			}
			expand := strings.NewReplacer("TDIR", tdir, "WDIR", wdir).Replace
			for _, want := range tt.stdout {
				require.Contains(t, out, expand(want))
			}
			for _, want := range tt.stderr {
				require.Contains(t, errOut, expand(want))
			}
			if tt.never != "" {
				require.NotContains(t, out+errOut, tt.never)
			}
		})
	}

	t.Run("unknown role", func(t *testing.T) {
		setVars(t, nil)
		_, _, err := runCLI(t, "validate", "--role", "dev")
		require.ErrorContains(t, err, `--role "dev": want run, worker or serve, or content`)
	})
}

// run, worker and serve report every config problem at once, each naming
// its field and variable, before connecting to anything.
func TestServeReportsEveryConfigProblemAtOnce(t *testing.T) {
	setVars(t, nil)
	t.Setenv("HERALD_LOG_LEVEL", "loud")
	for _, tt := range []struct {
		role string
		want []string
	}{
		{"worker", []string{"redis.url (HERALD_REDIS_URL): required by herald worker", "HERALD_SLACK_TOKEN): required by herald worker", "signing_key (HERALD_SIGNING_KEY): required", "content.templates (HERALD_TEMPLATES): required", `log.level (HERALD_LOG_LEVEL): "loud"`}},
		{"serve", []string{"api.tokens (HERALD_API_TOKENS): required by herald serve", `log.level (HERALD_LOG_LEVEL): "loud"`}},
	} {
		_, _, err := runCLI(t, tt.role)
		require.Error(t, err)
		for _, w := range tt.want {
			require.ErrorContains(t, err, w, tt.role)
		}
		if tt.role == "worker" {
			require.NotContains(t, err.Error(), "HERALD_API_TOKENS", "a worker serves no API")
		}
	}
}

// validate --connect asks Redis for PING and says when it does not answer.
// Not parallel: it quiets go-redis's process-wide logger.
func TestValidateConnect(t *testing.T) {
	rs := redistest.Start(t)
	tdir, _ := contentFolders(t, helloTemplate, "")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	require.NoError(t, l.Close())
	for _, tt := range []struct {
		redis string
		ok    bool
		want  string
	}{
		{rs.URL(), true, "redis: answered PING"},
		{"redis://" + closed + "/0", false, "config: redis: PING failed: dial tcp " + closed},
	} {
		setVars(t, map[string]string{
			"HERALD_REDIS_URL": tt.redis, "HERALD_SLACK_TOKEN": "xoxb-1", "HERALD_SIGNING_KEY": testSigningKey,
			"HERALD_TEMPLATES": tdir,
		})
		out, errOut, err := runCLI(t, "validate", "--role", "worker", "--connect")
		if tt.ok {
			require.NoError(t, err, out)
		} else {
			require.Equal(t, exitError(1), err)
		}
		require.Contains(t, out+errOut, tt.want)
	}
}

// workerConfig is the config of a worker on rs that sends email (to an
// address it never dials in these tests).
func workerConfig(t *testing.T, rs *redistest.Server) config.Config {
	t.Helper()
	c, err := config.Load("")
	require.NoError(t, err)
	c.Redis.URL = config.Secret(rs.URL())
	c.SMTP.URL, c.SMTP.From = "smtp://127.0.0.1:2525?tls=none", "a@b.example"
	c.SigningKey = testSigningKey
	return c
}

// openWorker opens a worker on the given folders, logging into the
// returned buffer.
func openWorker(t *testing.T, tdir, wdir string) (*Main, *logbuf.Buffer) {
	t.Helper()
	c := workerConfig(t, redistest.Start(t))
	c.Content.Templates, c.Content.Workflows = tdir, wdir
	logs := &logbuf.Buffer{}
	m := &Main{Config: c, Worker: true, Logger: slog.New(slog.NewTextHandler(logs, nil)), WatchInterval: 20 * time.Millisecond}
	t.Cleanup(func() { _ = m.Close() })
	return m, logs
}

// Start-up refuses what validate reports, with the same lines: both run
// checkContent.
func TestStartRefusesWhatValidateRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, template, workflow, want string
	}{
		{"template using a missing key", brokenTemplate, "", "TDIR/hello/en.md:4: "},
		{"workflow only for an unconfigured channel", helloTemplate, workflowSrc("a.b", "[slack]"), `WDIR/w.yaml:6: step "s": sends only by slack`},
		{"event name the API refuses", helloTemplate, workflowSrc("Sub Cancelled", ""), `WDIR/w.yaml:3: trigger: event name "Sub Cancelled"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tdir, wdir := contentFolders(t, tt.template, tt.workflow)
			want := strings.NewReplacer("TDIR", tdir, "WDIR", wdir).Replace(tt.want)
			m, _ := openWorker(t, tdir, wdir)
			err := m.Open(context.Background())
			_ = m.Close()
			require.ErrorContains(t, err, want)

			setVars(t, map[string]string{
				"HERALD_REDIS_URL": m.Config.Redis.URL.Reveal(), "HERALD_SMTP_URL": m.Config.SMTP.URL.Reveal(), "HERALD_MAIL_FROM": "a@b.example",
				"HERALD_SIGNING_KEY": testSigningKey, "HERALD_TEMPLATES": tdir, "HERALD_WORKFLOWS": wdir,
			})
			out, _, err := runCLI(t, "validate", "--role", "worker")
			require.Equal(t, exitError(1), err)
			require.Contains(t, out, want)
		})
	}
}

// A SIGHUP, or a change seen by --watch, reloads only content that passes
// every check validate runs: a template using a missing key is refused
// with a log line saying why, and the running set stays.
func TestReloadRunsValidateChecks(t *testing.T) {
	t.Parallel()
	for _, watch := range []bool{false, true} {
		name := "SIGHUP"
		if watch {
			name = "--watch"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tdir, _ := contentFolders(t, helloTemplate, "")
			m, logs := openWorker(t, tdir, "")
			require.NoError(t, m.Open(context.Background()))
			before := m.Engine.Templates()

			ctx, cancel := context.WithCancel(context.Background())
			// A real SIGHUP to this process, through the handler herald
			// run, worker and serve install; --watch gets no signal.
			var sig <-chan os.Signal
			if !watch {
				var stop func()
				sig, stop = notifySignals()
				t.Cleanup(stop)
			}
			done := make(chan error, 1)
			go func() { done <- m.wait(ctx, sig, watch) }()
			t.Cleanup(func() {
				cancel()
				require.NoError(t, <-done)
			})
			change := func(body string) {
				require.NoError(t, os.WriteFile(filepath.Join(tdir, "hello", "en.md"), []byte(body), 0o644))
				if !watch {
					require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
				}
			}
			logged := func(s string) func() bool { return func() bool { return strings.Contains(logs.String(), s) } }

			change(brokenTemplate)
			require.Eventually(t, logged("reload refused"), 10*time.Second, 5*time.Millisecond)
			line := logs.String()[strings.Index(logs.String(), "reload refused"):]
			require.Contains(t, line, filepath.Join(tdir, "hello", "en.md")+":4: ", "the log line names the file and line")
			require.Contains(t, line, "missing", "and says what is wrong")
			require.Same(t, before, m.Engine.Templates(), "the running templates stay")
			require.Equal(t, 1.0, testutil.ToFloat64(m.reloadRefused), "a metric says so, for an alert")

			change(helloTemplate + "Welcome.\n")
			require.Eventually(t, logged("reloaded workflows and templates"), 10*time.Second, 5*time.Millisecond)
			require.NotSame(t, before, m.Engine.Templates(), "a valid change is applied")
			require.Equal(t, 0.0, testutil.ToFloat64(m.reloadRefused))
		})
	}
}

// --help on every command in the usage text prints its flags and is no
// failure; the list comes from the usage, so a new command is covered.
func TestHelpOnEveryCommand(t *testing.T) {
	t.Parallel()
	var cmds []string
	for _, line := range strings.Split(usage, "\n") {
		if !strings.HasPrefix(line, "  herald ") {
			continue
		}
		f := strings.Fields(line)
		cmd := []string{f[1]}
		if len(f) > 2 && f[2] == "prefs" {
			cmd = append(cmd, "prefs")
		}
		cmds = append(cmds, strings.Join(cmd, " "))
	}
	require.Subset(t, cmds, []string{"dev", "run", "worker", "serve", "validate", "preview", "event", "send", "customer", "customer prefs"})
	for _, cmd := range cmds {
		var out, errOut bytes.Buffer
		err := run(context.Background(), append(strings.Fields(cmd), "--help"), &out, &errOut)
		require.NoError(t, err, cmd)
		require.Contains(t, errOut.String()+out.String(), "-config", cmd)
	}
}

// validate refuses the settings start-up refuses, with the same message:
// both build the Redis options and the senders from the config.
func TestValidateRefusesWhatStartRefuses(t *testing.T) {
	for _, tt := range []struct {
		name, smtp, want string
	}{
		{"unknown TLS mode", "smtp://127.0.0.1:2525?tls=bogus", `smtp.url (HERALD_SMTP_URL): email: TLS mode "bogus": want none, starttls or tls`},
		{"pool not a number", "smtp://127.0.0.1:2525?tls=none&pool=abc", `smtp.url (HERALD_SMTP_URL): email: SMTP URL pool "abc": want a positive integer`},
		{"misspelt parameter", "smtp://127.0.0.1:2525?tsl=none", `smtp.url (HERALD_SMTP_URL): email: SMTP URL parameter "tsl": want tls, pool, timeout or helo`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tdir, _ := contentFolders(t, helloTemplate, "")
			m, _ := openWorker(t, tdir, "")
			m.Config.SMTP.URL = config.Secret(tt.smtp)
			err := m.Open(context.Background())
			_ = m.Close()
			require.ErrorContains(t, err, tt.want)

			setVars(t, map[string]string{
				"HERALD_REDIS_URL": m.Config.Redis.URL.Reveal(), "HERALD_SMTP_URL": tt.smtp, "HERALD_MAIL_FROM": "a@b.example",
				"HERALD_SIGNING_KEY": testSigningKey, "HERALD_API_TOKENS": "web:web-token-0123456789", "HERALD_TEMPLATES": tdir,
			})
			out, errOut, err := runCLI(t, "validate", "--role", "run")
			require.Equal(t, exitError(1), err, "stdout:\n%s\nstderr:\n%s", out, errOut)
			require.Equal(t, "config: "+tt.want+"\n", out, "one line, once")
		})
	}
}

// A reload that removes a template a running journey's version still sends
// is refused, saying which; once the template is back it goes through. A
// process started after the workflow changed, which never loaded the
// version the journey runs on, refuses it too: it reads that version from
// the file stored for its journeys.
func TestReloadKeepsTemplatesRunningJourneysSend(t *testing.T) {
	t.Parallel()
	parked := "id: w\ntopic: onboarding\ntrigger: a.b\nsteps:\n  - id: pause\n    wait: { for: 1h }\n  - id: s\n    send: { template: bye }\n"
	tdir, wdir := contentFolders(t, helloTemplate, parked)
	require.NoError(t, os.MkdirAll(filepath.Join(tdir, "bye"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tdir, "bye", "en.md"), []byte(helloTemplate), 0o644))
	m, logs := openWorker(t, tdir, wdir)
	ctx := context.Background()
	require.NoError(t, m.Open(ctx))
	require.NoError(t, m.Start(ctx))
	_, _, err := m.Engine.Store().UpsertCustomer(ctx, herald.Customer{ID: "c1", Email: "c1@example.com"})
	require.NoError(t, err)
	_, err = m.Engine.Event(ctx, herald.Event{CustomerID: "c1", Name: "a.b"}, "test")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := m.Engine.Stats(ctx, "w", time.Now())
		return err == nil && st.Journeys.Running == 1
	}, 10*time.Second, 10*time.Millisecond, "a journey waits on the first version")

	// The step now sends hello, and bye is deleted in the same change.
	require.NoError(t, os.WriteFile(filepath.Join(wdir, "w.yaml"), []byte(strings.Replace(parked, "template: bye", "template: hello", 1)), 0o644))
	require.NoError(t, os.RemoveAll(filepath.Join(tdir, "bye")))
	require.False(t, m.Reload())
	require.Contains(t, logs.String(), "reload refused")
	require.Contains(t, logs.String(), "workflow w: 1 running journeys on version ")
	require.Contains(t, logs.String(), " send template bye: keep it until they end")
	require.True(t, m.Engine.Templates().Has("bye"), "the running templates stay")

	require.NoError(t, os.MkdirAll(filepath.Join(tdir, "bye"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tdir, "bye", "en.md"), []byte(helloTemplate), 0o644))
	require.True(t, m.Reload(), "with the template kept, the change goes through")
	require.NoError(t, m.Close())

	// A new process knows only the new version.
	logs2 := &logbuf.Buffer{}
	m2 := &Main{Config: m.Config, Worker: true, Logger: slog.New(slog.NewTextHandler(logs2, nil)), WatchInterval: 20 * time.Millisecond}
	t.Cleanup(func() { _ = m2.Close() })
	require.NoError(t, m2.Open(ctx))
	require.NoError(t, m2.Start(ctx))
	require.NoError(t, os.RemoveAll(filepath.Join(tdir, "bye")))
	require.False(t, m2.Reload(), "the parked journey's version, never loaded here, still sends bye")
	require.Contains(t, logs2.String(), "workflow w: 1 running journeys on version ")
	require.Contains(t, logs2.String(), " send template bye: keep it until they end")
	require.True(t, m2.Engine.Templates().Has("bye"))
}
