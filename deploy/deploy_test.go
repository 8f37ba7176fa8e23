package deploy_test

import (
	"bufio"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
)

// httpDrain is how long Main.Close waits for the HTTP server before it
// stops the worker (cmd/herald/app.go).
const httpDrain = 10 * time.Second

// productionEnv is what /etc/herald/env holds in production.
var productionEnv = map[string]string{
	"HERALD_REDIS_URL":            "redis://:secret@10.0.0.5:6379/0",
	"HERALD_SMTP_URL":             "smtp://herald:secret@smtp-relay.example.com:587?tls=starttls&pool=4",
	"HERALD_SLACK_TOKEN":          "xoxb-0000-0000-test",
	"HERALD_SLACK_SIGNING_SECRET": "0123456789abcdef",
	"HERALD_API_TOKENS":           "web:web-token-0123456789abcdef,billing:billing-token-0123456789ab",
	"HERALD_SIGNING_KEY":          "0123456789abcdef0123456789abcdef0123456789abcdef",
	"HERALD_MONITORING_USER":      "ops",
	"HERALD_MONITORING_PASSWORD":  "ops-password-0123",
}

// TestConfig cannot run in parallel: it sets the environment config.Load
// reads.
func TestConfig(t *testing.T) {
	for k, v := range productionEnv {
		t.Setenv(k, v)
	}
	for _, k := range []string{"HERALD_HTTP_ADDR", "HERALD_PUBLIC_URL", "HERALD_MAIL_FROM", "HERALD_TEMPLATES", "HERALD_WORKFLOWS", "HERALD_LOG_LEVEL", "HERALD_LOG_FORMAT", "HERALD_WORKER_CONCURRENCY"} {
		t.Setenv(k, "")
		require.NoError(t, os.Unsetenv(k))
	}
	c, err := config.Load("herald.yaml")
	require.NoError(t, err)
	require.NoError(t, c.Validate())

	require.Len(t, c.API.Tokens, 2)
	require.Equal(t, "web", c.API.Tokens[0].Name)
	require.NotEmpty(t, c.SMTP.From)
	require.Equal(t, "https://notify.lumen.example", c.HTTP.PublicURL)
	require.Positive(t, c.RateLimits.SMTPPerSecond)
	require.Positive(t, c.RateLimits.SlackPerMinute)
	require.True(t, *c.Monitoring.ReadOnly)
	for _, q := range []string{"critical", "default", "bulk", "email", "slack"} {
		require.Positive(t, c.Worker.Queues[q], q)
	}
	require.Greater(t, c.Worker.Queues["critical"], c.Worker.Queues["bulk"], "required topics before marketing")
	topics := map[string]config.Topic{}
	for _, tp := range c.Topics {
		topics[tp.Name] = tp
	}
	for _, name := range []string{"onboarding", "checkout", "product-updates"} {
		require.Contains(t, topics, name, "the example workflows' topics are declared")
	}
	require.True(t, topics["security"].Required)
	require.NotEmpty(t, c.Caps)
	require.NotEmpty(t, c.Content.PostalAddress)

	require.Greater(t, serviceDuration(t, "herald.service", "TimeoutStopSec"), c.Worker.ShutdownTimeout+httpDrain,
		"systemd must wait for the HTTP drain and worker.shutdown_timeout before SIGKILL")
	require.Greater(t, serviceDuration(t, "herald-worker@.service", "TimeoutStopSec"), c.Worker.ShutdownTimeout,
		"systemd must wait for worker.shutdown_timeout before SIGKILL")
	require.Greater(t, serviceDuration(t, "herald-serve.service", "TimeoutStopSec"), httpDrain,
		"systemd must wait for the HTTP drain before SIGKILL")

	// Two workers on one host: the sample fixes no metrics address, the
	// worker unit gives each instance its own.
	require.Empty(t, c.Worker.MetricsAddr, "one metrics_addr for every worker lets only the first start")
	env := unit(t, "herald-worker@.service")["Environment"]
	require.Len(t, env, 1)
	k, v, _ := strings.Cut(env[0], "=")
	require.Equal(t, "HERALD_METRICS_ADDR", k)
	seen := map[string]bool{}
	for _, inst := range []string{"01", "02", "12", "99"} {
		addr := strings.ReplaceAll(v, "%i", inst)
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err, addr)
		n, err := strconv.Atoi(port)
		require.NoError(t, err, addr)
		require.True(t, n > 1024 && n < 65536, "instance %s: port %d", inst, n)
		require.False(t, seen[addr], "instance %s: %s taken", inst, addr)
		seen[addr] = true
	}
}

func TestConfigHoldsNoSecrets(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("herald.yaml")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		require.NotRegexp(t, `(?i)(password|token|secret|signing_key)\s*:`, line, "secrets belong in /etc/herald/env")
		require.NotRegexp(t, `(?i)(redis|smtp)s?://`, line, "connection URLs carry credentials: environment only")
	}
}

// units are the systemd units deploy/ ships, with the command each runs.
var units = map[string]string{"herald.service": "run", "herald-serve.service": "serve", "herald-worker@.service": "worker"}

// unit parses a unit file: directive → values, in order.
func unit(t *testing.T, name string) map[string][]string {
	t.Helper()
	f, err := os.Open(name)
	require.NoError(t, err)
	defer f.Close()
	out := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, "not a directive: %q", line)
		out[k] = append(out[k], v)
	}
	require.NoError(t, sc.Err())
	return out
}

func serviceDuration(t *testing.T, name, key string) time.Duration {
	t.Helper()
	v := unit(t, name)[key]
	require.Len(t, v, 1, key)
	d, err := time.ParseDuration(v[0])
	require.NoError(t, err, "%s=%s: write it with a unit, e.g. 45s", key, v[0])
	return d
}

func TestServiceUnits(t *testing.T) {
	t.Parallel()
	for name, cmd := range units {
		t.Run(name, func(t *testing.T) { checkUnit(t, name, cmd) })
	}
}

func checkUnit(t *testing.T, name, cmd string) {
	u := unit(t, name)
	want := map[string]string{
		"DynamicUser":     "yes",
		"ProtectSystem":   "strict",
		"NoNewPrivileges": "yes",
		"EnvironmentFile": "/etc/herald/env",
		"ExecReload":      "/bin/kill -HUP $MAINPID",
		"Restart":         "on-failure",
		"ProtectHome":     "yes",
		"PrivateTmp":      "yes",
	}
	for k, v := range want {
		require.Equal(t, []string{v}, u[k], k)
	}
	require.Equal(t, []string{"/usr/local/bin/herald " + cmd + " --config /etc/herald/herald.yaml"}, u["ExecStart"])
	// Checked for what this unit's command needs (a worker needs no API
	// token, a server no channel), not for herald run.
	require.Equal(t, []string{"/usr/local/bin/herald validate --role " + cmd + " --config /etc/herald/herald.yaml"}, u["ExecStartPre"])
	// The same hardening as herald.service, directive for directive.
	base := unit(t, "herald.service")
	for k, v := range base {
		switch k {
		case "Description", "ExecStart", "ExecStartPre", "TimeoutStopSec", "StateDirectory", "WorkingDirectory":
			continue
		}
		require.Equal(t, v, u[k], "%s: %s as in herald.service", name, k)
	}

	bin, err := exec.LookPath("systemd-analyze")
	require.NoError(t, err, "systemd-analyze is needed to verify the unit: apt-get install -y systemd (make test installs it)")
	// verify insists that ExecStart's binary exists: check a copy that
	// runs /bin/true instead.
	// A template is verified as an instance of it.
	b, err := os.ReadFile(name)
	require.NoError(t, err)
	file := strings.Replace(name, "@.", "@01.", 1)
	path := filepath.Join(t.TempDir(), file)
	require.NoError(t, os.WriteFile(path, []byte(strings.ReplaceAll(string(b), "/usr/local/bin/herald", "/bin/true")), 0o644))
	out, err := exec.Command(bin, "verify", path).CombinedOutput()
	require.NoError(t, err, "systemd-analyze verify: %s", out)
	for _, line := range strings.Split(string(out), "\n") {
		require.NotContains(t, line, file, "systemd-analyze verify: %s", out)
	}
}

// knownMetrics returns every series name herald registers (histograms with
// their _bucket, _sum and _count) and every label name, read from a real
// registry over a real Redis.
func knownMetrics(t *testing.T) (names, labels map[string]bool) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := engine.NewMetrics(reg)
	rs := redistest.Start(t)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rs.Addr})
	t.Cleanup(func() { _ = insp.Close() })
	reg.MustRegister(engine.NewQueueCollector(insp), engine.NewRedisCollector(insp), engine.NewFollowUpCollector(rs.Client(), 0))
	cl := asynq.NewClient(asynq.RedisClientOpt{Addr: rs.Addr})
	t.Cleanup(func() { _ = cl.Close() })
	_, err := cl.Enqueue(asynq.NewTask("herald:test", nil), asynq.Queue("email"))
	require.NoError(t, err, "a queue, so the queue collector reports")

	// A vector shows up once it has a child: give each one.
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		switch c := v.Field(i).Interface().(type) {
		case *prometheus.CounterVec:
			touch(t, v.Type().Field(i).Name, func(lv ...string) error { _, err := c.GetMetricWithLabelValues(lv...); return err })
		case *prometheus.HistogramVec:
			touch(t, v.Type().Field(i).Name, func(lv ...string) error { _, err := c.GetMetricWithLabelValues(lv...); return err })
		case *prometheus.GaugeVec:
			touch(t, v.Type().Field(i).Name, func(lv ...string) error { _, err := c.GetMetricWithLabelValues(lv...); return err })
		}
	}
	// The HTTP metrics, with one request.
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/customers/{id}", func(http.ResponseWriter, *http.Request) {})
	httpapi.Instrument(reg, mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1/customers/c1", nil))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	names, labels = map[string]bool{}, map[string]bool{}
	for _, mf := range mfs {
		n := mf.GetName()
		names[n] = true
		if mf.GetType() == dto.MetricType_HISTOGRAM {
			names[n+"_bucket"], names[n+"_sum"], names[n+"_count"] = true, true, true
			labels["le"] = true
		}
		for _, met := range mf.GetMetric() {
			for _, lp := range met.GetLabel() {
				labels[lp.GetName()] = true
			}
		}
	}
	for _, n := range []string{"herald_messages_total", "herald_provider_latency_seconds", "herald_queue_tasks", "herald_redis_up"} {
		require.True(t, names[n], "%s is gathered", n)
	}
	return names, labels
}

func touch(t *testing.T, field string, get func(...string) error) {
	t.Helper()
	lv := []string{}
	for range 10 {
		if get(lv...) == nil {
			return
		}
		lv = append(lv, "x")
	}
	t.Fatalf("metric %s: could not find its label count", field)
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var (
	metricRe = regexp.MustCompile(`\b[a-zA-Z_:][a-zA-Z0-9_:]*\b`)
	byRe     = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matchRe  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
)

func TestDashboard(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	var d struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d.UID)
	require.NotEmpty(t, d.Title)
	require.GreaterOrEqual(t, d.SchemaVersion, 36, "Grafana 10+")

	names, labels := knownMetrics(t)
	var all []panel
	var flatten func([]panel)
	flatten = func(ps []panel) {
		for _, p := range ps {
			all = append(all, p)
			flatten(p.Panels)
		}
	}
	flatten(d.Panels)

	ids := map[int]bool{}
	used := map[string]bool{}
	var titles []string
	for _, p := range all {
		require.False(t, ids[p.ID], "panel id %d used twice", p.ID)
		ids[p.ID] = true
		titles = append(titles, strings.ToLower(p.Title))
		if p.Type == "row" {
			continue
		}
		require.NotNil(t, p.Datasource, p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "%s: use the dashboard's datasource variable", p.Title)
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			expr := tg.Expr
			// Label values and range selectors are not names.
			bare := regexp.MustCompile(`"[^"]*"|\[[^\]]*\]`).ReplaceAllString(expr, "")
			found := 0
			for _, w := range metricRe.FindAllString(bare, -1) {
				if strings.HasPrefix(w, "herald_") {
					require.True(t, names[w], "%s: %q names %s, which herald does not register", p.Title, expr, w)
					used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(w, "_bucket"), "_sum"), "_count")] = true
					found++
				}
			}
			require.Positive(t, found, "%s: %q queries no herald metric", p.Title, expr)
			for _, m := range byRe.FindAllStringSubmatch(bare, -1) {
				for _, l := range strings.Split(m[1], ",") {
					l = strings.TrimSpace(l)
					require.True(t, labels[l], "%s: %q groups by %q, which no herald metric carries", p.Title, expr, l)
				}
			}
			for _, m := range matchRe.FindAllStringSubmatch(expr, -1) {
				require.True(t, labels[m[1]], "%s: %q matches on %q, which no herald metric carries", p.Title, expr, m[1])
			}
		}
	}

	joined := strings.Join(titles, "\n")
	for _, want := range []string{"sent per channel", "suppressed by reason", "failed temporarily", "failed permanently", "latency p50 / p99",
		"by queue and state", "queue latency", "journeys started / finished / exited", "watchdog repairs", "rate-limit waits",
		"queued → sent p50 / p99 by channel and queue", "backlog by queue and state", "http requests by route and status", "http latency p99 by route"} {
		require.Contains(t, joined, want, "the dashboard has a %q panel", want)
	}
	var unused []string
	for n := range names {
		if !used[n] && !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			unused = append(unused, n)
		}
	}
	slices.Sort(unused)
	if len(unused) > 0 {
		t.Logf("metrics not on the dashboard: %v", unused)
	}
}

// Every alert rule is in the runbook, with the expression it evaluates.
func TestRunbookCoversAlerts(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("herald-alerts.yaml")
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &rules))
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			require.Contains(t, string(readme), "### "+r.Alert+"\n", "the runbook has a section for %s", r.Alert)
			require.Contains(t, string(readme), "`"+strings.TrimSpace(r.Expr)+"`", "the runbook shows %s's expression", r.Alert)
			n++
		}
	}
	require.GreaterOrEqual(t, n, 5)
}
