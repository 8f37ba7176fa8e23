package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// The traffic of TestDashboardAgainstPrometheus: customers by what happens
// to their messages.
const (
	nBilling  = 12 // required topic, critical queue: sent
	nNews     = 12 // marketing topic, bulk queue: sent
	nCapped   = 6  // lifecycle topic, default queue: the first sent, the second deferred by the cap
	nOrders   = 4  // journeys: their first step sent, their follow-up waiting
	nPerm     = 6  // billing to addresses the relay refuses for good
	nTemp     = 5  // billing to addresses the relay refuses for now: retried in an hour
	nOptedOut = 3  // news to customers who left the topic: suppressed

	nSent = nBilling + nNews + nCapped + nOrders

	apiToken   = "prometheus-test-token-0123456789"
	scrapeJob  = "herald"
	smtpPerSec = 3
)

const testConfig = `
http:
  addr: %s
  public_url: http://%s
worker:
  concurrency: 10
  delivery_timeout: 5s
  shutdown_timeout: 12s
  max_retry: 3
  retry_base: 1h
  retry_max: 2h
content:
  default_locale: en
  brand_name: Lumen
  postal_address: "Lumen Inc., 1 Example Street, Springfield"
topics:
  - { name: billing, class: transactional, required: true }
  - { name: news, class: marketing }
  - { name: onboarding, class: lifecycle }
  - { name: orders, class: orders }
caps:
  - { class: lifecycle, max: 1, per: 24h, action: defer }
rate_limits:
  smtp_per_second: %d
log:
  level: info
  format: json
`

const testTemplate = `---
subject: "Notice {{ .data.tag }}"
sample:
  data: { tag: "n-1" }
---
Hello, this is notice {{ .data.tag }}.
`

const testWorkflow = `id: orders
topic: orders
trigger: order.placed
steps:
  - id: confirm
    send: { template: notice, channels: [email] }
  - id: later
    wait: { for: 1h }
  - id: done
    end: true
`

// TestDashboardAgainstPrometheus runs herald serve and two herald workers
// against redis-server and an SMTP server, has a real Prometheus scrape
// them, sends traffic that is rate-limited, refused for good, refused for
// now, deferred, suppressed and journeyed, then runs every panel of the
// Grafana dashboard through Prometheus and checks it against what the test
// itself counted. The alert rules are loaded by the same Prometheus and
// must evaluate cleanly.
func TestDashboardAgainstPrometheus(t *testing.T) {
	t.Parallel()
	began := time.Now()
	promBin, err := exec.LookPath("prometheus")
	require.NoError(t, err, "prometheus is needed to check the dashboard: apt-get install -y prometheus (make deps installs it)")
	dir := t.TempDir()
	bin := filepath.Join(dir, "herald")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/heraldhq/herald/cmd/herald").CombinedOutput()
	require.NoError(t, err, "build herald: %s", out)

	rs := redistest.Start(t)
	mail, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mail.Close() })

	// Content and config.
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "templates", "notice"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "workflows"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "templates", "notice", "en.md"), []byte(testTemplate), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "workflows", "orders.yaml"), []byte(testWorkflow), 0o644))
	free := freeAddrs(t, 4)
	httpAddr, m1, m2, promAddr := free[0], free[1], free[2], free[3]
	cfgPath := filepath.Join(dir, "herald.yaml")
	require.NoError(t, os.WriteFile(cfgPath, fmt.Appendf(nil, testConfig, httpAddr, httpAddr, smtpPerSec), 0o644))
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"HERALD_CONFIG="+cfgPath,
		"HERALD_REDIS_URL="+rs.URL(),
		"HERALD_SMTP_URL="+mail.URL()+"&pool=4",
		"HERALD_MAIL_FROM=Lumen <hello@lumen.test>",
		"HERALD_SIGNING_KEY=prometheus-test-signing-key-0123456789abcdef",
		"HERALD_API_TOKENS=test:"+apiToken,
		"HERALD_TEMPLATES="+filepath.Join(dir, "templates"),
		"HERALD_WORKFLOWS="+filepath.Join(dir, "workflows"),
	)

	// One HTTP server and two workers, each worker with its own metrics
	// address as herald-worker@.service gives them.
	serve := startHerald(t, bin, dir, "serve", env)
	w1 := startHerald(t, bin, dir, "worker", append(env, "HERALD_METRICS_ADDR="+m1))
	w2 := startHerald(t, bin, dir, "worker", append(env, "HERALD_METRICS_ADDR="+m2))
	for _, p := range []*heraldProc{serve, w1, w2} {
		p.waitStarted(t)
	}
	checkStartLine(t, serve.started, "serve", httpAddr+"/metrics", false)
	checkStartLine(t, w1.started, "worker", m1+"/metrics", true)
	checkStartLine(t, w2.started, "worker", m2+"/metrics", true)

	// Prometheus scraping the three, with the alert rules loaded.
	rules, err := filepath.Abs("herald-alerts.yaml")
	require.NoError(t, err)
	promCfg := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(promCfg, fmt.Appendf(nil, `global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q, %q, %q]
`, rules, scrapeJob, httpAddr, m1, m2), 0o644))
	prom := startPrometheus(t, promBin, dir, promCfg, promAddr)
	prom.waitFor(t, "every herald process is scraped", 20*time.Second, func() (bool, string) {
		v, err := prom.scalar(`count(up{job="herald"} == 1)`)
		return err == nil && v == 3, fmt.Sprintf("targets up: %v (%v)", v, err)
	})

	api := &apiClient{base: "http://" + httpAddr, token: apiToken, counts: map[string]int{}}

	// Customers.
	var billing, news, capped, orders, perm, temp, optedOut []string
	add := func(list *[]string, kind string, n int) {
		for i := range n {
			id := fmt.Sprintf("%s%02d", kind, i)
			api.do(t, "PUT /v1/customers/{id}", "/v1/customers/"+id, map[string]any{"email": id + "@example.com", "locale": "en"}, http.StatusCreated)
			*list = append(*list, id)
		}
	}
	add(&billing, "bill", nBilling)
	add(&news, "news", nNews)
	add(&capped, "capd", nCapped)
	add(&orders, "ordr", nOrders)
	add(&perm, "perm", nPerm)
	add(&temp, "temp", nTemp)
	add(&optedOut, "left", nOptedOut)
	for _, id := range optedOut {
		api.do(t, "PATCH /v1/customers/{id}/preferences", "/v1/customers/"+id+"/preferences", map[string]any{"topics": map[string]bool{"news": false}}, http.StatusOK)
	}
	// Requests the API refuses are counted by route too.
	api.do(t, "/v1/", "/v1/no-such-thing", nil, http.StatusNotFound)
	api.token = ""
	api.do(t, "GET /v1/customers/{id}", "/v1/customers/bill00", nil, http.StatusUnauthorized)
	api.token = apiToken

	send := func(id, topic string) {
		api.do(t, "POST /v1/messages", "/v1/messages", map[string]any{
			"customer_id": id, "template": "notice", "topic": topic, "channels": []string{"email"}, "data": map[string]any{"tag": id},
		}, http.StatusAccepted)
	}

	// Phase 1: more than the rate limit lets through at once, and
	// addresses the relay refuses for good.
	permAddrs := addrs(perm)
	mail.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Rcpts: permAddrs})
	firstSend := time.Now()
	for i := range max(nBilling, nNews) {
		if i < nBilling {
			send(billing[i], "billing")
		}
		if i < nNews {
			send(news[i], "news")
		}
	}
	for _, id := range capped {
		send(id, "onboarding")
	}
	for _, id := range perm {
		send(id, "billing")
	}
	for _, id := range orders {
		api.do(t, "POST /v1/events", "/v1/events", map[string]any{"customer_id": id, "name": "order.placed", "data": map[string]any{"tag": id}}, http.StatusAccepted)
	}
	waitUntil(t, "every deliverable message reaches the relay", 60*time.Second, func() (bool, string) {
		return mail.Count() == nSent, fmt.Sprintf("%d of %d received", mail.Count(), nSent)
	})
	lastSent := time.Now()
	for _, id := range perm {
		api.waitTimeline(t, id, "failed-permanent")
	}
	// asynq's failure count (the dashboard's error rate) holds the
	// refused messages and nothing for the rate-limit waits.
	prom.waitFor(t, "asynq counts the permanent failures, not the rate-limit waits", 20*time.Second, func() (bool, string) {
		failed, err1 := prom.scalar(`sum(max by (queue) (herald_queue_failed_total))`)
		waits, err2 := prom.scalar(`sum(herald_rate_limit_waits_total)`)
		return err1 == nil && err2 == nil && failed == nPerm && waits > 0,
			fmt.Sprintf("asynq failed %v (want %d), rate-limit waits %v (want > 0)", failed, nPerm, waits)
	})

	// Phase 2: a second lifecycle message inside the cap's window is
	// deferred; news to customers who left it is suppressed.
	for _, id := range capped {
		send(id, "onboarding")
	}
	for _, id := range optedOut {
		send(id, "news")
	}
	for _, id := range capped {
		api.waitTimeline(t, id, "deferred")
	}
	for _, id := range optedOut {
		api.waitTimeline(t, id, "suppressed")
	}

	// Phase 3: addresses the relay refuses for now.
	mail.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 451, Enhanced: "4.2.0", Rcpts: addrs(temp)})
	for _, id := range temp {
		send(id, "billing")
	}
	for _, id := range temp {
		api.waitTimeline(t, id, "failed-temporary")
	}
	require.Equal(t, nSent, mail.Count(), "nothing more reached the relay")

	// What asynq itself holds, to hold the queue panels against.
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rs.Addr})
	defer insp.Close()

	// Wait until Prometheus has scraped the final figures.
	prom.waitFor(t, "Prometheus has the final figures", 30*time.Second, func() (bool, string) {
		var got []string
		ok := true
		for expr, want := range map[string]float64{
			`sum(herald_messages_total{outcome="sent"})`:                                               nSent,
			`sum(herald_messages_total{outcome="failed-temporary"})`:                                   nTemp,
			`sum(max by (queue) (herald_backlog_tasks{state="retrying"}))`:                             nTemp,
			`sum(max by (queue) (herald_backlog_tasks{state="deferred"}))`:                             nCapped,
			`sum(max by (queue) (herald_backlog_tasks{state="rate_limited"}))`:                         0,
			`max(herald_journeys_waiting)`:                                                             nOrders,
			`sum(herald_http_request_duration_seconds_count{route="GET /v1/customers/{id}/timeline"})`: float64(api.count("GET /v1/customers/{id}/timeline")),
		} {
			v, err := prom.scalar(expr)
			if err != nil || v != want {
				ok = false
				got = append(got, fmt.Sprintf("%s = %v, want %v (%v)", expr, v, want, err))
			}
		}
		return ok, strings.Join(got, "; ")
	})
	elapsed := time.Since(firstSend)

	// Queue figures come from serve alone; Redis reachability from each.
	for expr, want := range map[string]float64{
		`max(count by (queue, state) (herald_backlog_tasks))`:     1,
		`count(herald_queue_tasks{instance!="` + httpAddr + `"})`: 0,
		`count(herald_redis_up)`:                                  3,
	} {
		res, err := prom.query(expr)
		require.NoError(t, err, expr)
		got := 0.0
		if len(res) > 0 {
			got = res[0].Value
		}
		require.Equal(t, want, got, expr)
	}

	// Every panel, through Prometheus, against the counts.
	want := expectations{elapsed: elapsed, api: api, insp: insp}
	checked := 0
	for _, p := range dashboardPanels(t) {
		check, ok := panelChecks[p.Title]
		require.True(t, ok, "panel %q has no check in this test: add one", p.Title)
		var raw, counters [][]sample
		for _, tg := range p.Targets {
			expr := strings.ReplaceAll(tg.Expr, "$__rate_interval", "2m")
			res, err := prom.query(expr)
			require.NoError(t, err, "%s: %s", p.Title, expr)
			require.NotEmpty(t, res, "%s: %s returns no data", p.Title, expr)
			raw = append(raw, res)
			cexpr := counterForm(expr)
			if cexpr == expr {
				counters = append(counters, res)
				continue
			}
			cres, err := prom.query(cexpr)
			require.NoError(t, err, "%s: %s", p.Title, cexpr)
			counters = append(counters, cres)
		}
		t.Run(p.Title, func(t *testing.T) { check(t, want, raw, counters) })
		checked++
	}
	require.Equal(t, 28, checked, "every panel of the dashboard was checked")

	// The alert rules load and evaluate without error.
	prom.checkRules(t)
	waits, _ := prom.scalar(`sum(herald_rate_limit_waits_total)`)
	failed, _ := prom.scalar(`sum(max by (queue) (herald_queue_failed_total))`)
	t.Logf("checked %d panels and the alert rules; %d sent, %d refused for good, %d retrying, %d deferred, %d suppressed, %v rate-limit waits, %v asynq failures, %d API requests; first to last send %s; test took %s",
		checked, nSent, nPerm, nTemp, nCapped, nOptedOut, waits, failed, api.total(), lastSent.Sub(firstSend).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// expectations is what the panel checks compare with.
type expectations struct {
	elapsed time.Duration // first send to the final check
	api     *apiClient
	insp    *asynq.Inspector
}

type panelCheck func(t *testing.T, w expectations, raw, counters [][]sample)

// counterRe turns a panel's rate or increase into the counter (or gauge)
// it reads, keeping the panel's selectors and aggregation: the totals the
// panel shows over time, comparable with the test's counts exactly.
var counterRe = regexp.MustCompile(`(?:rate|increase)\(([^()\[]+)\[[^\]]+\]\)`)

func counterForm(expr string) string {
	if strings.HasPrefix(expr, "histogram_quantile") {
		return expr
	}
	return counterRe.ReplaceAllString(expr, "$1")
}

var panelChecks = map[string]panelCheck{
	"Sent / s": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Positive(t, raw[0][0].Value)
		require.Equal(t, float64(nSent), c[0][0].Value)
	},
	"Permanent failures (1h)": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Positive(t, raw[0][0].Value)
		require.Equal(t, float64(nPerm), c[0][0].Value)
	},
	"Queued → sent p99": func(t *testing.T, w expectations, raw, c [][]sample) {
		requireLatency(t, raw[0], w.elapsed)
	},
	"Ready backlog": func(t *testing.T, w expectations, raw, c [][]sample) {
		pending := 0
		for _, q := range queues(t, w.insp) {
			pending += q.Pending
		}
		require.InDelta(t, float64(pending), raw[0][0].Value, 1, "ready tasks, against asynq")
	},
	"Redis reachable": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, 1.0, raw[0][0].Value)
	},
	"HTTP 5xx / s": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Zero(t, w.api.count5xx(), "the test saw no 5xx")
		require.Zero(t, raw[0][0].Value)
	},
	"Messages sent per channel": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, map[string]float64{"email": nSent}, byLabels(c[0], "channel"))
	},
	"Suppressed by reason": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, map[string]float64{"opted_out_topic": nOptedOut}, byLabels(c[0], "reason"))
		require.Equal(t, float64(nCapped), total(c[1]), "deferred by the cap")
	},
	"Failed temporarily (retried)": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, float64(nTemp), total(c[0]))
		require.Equal(t, []string{"email"}, keys(byLabels(c[0], "channel")))
	},
	"Failed permanently": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, float64(nPerm), total(c[0]))
		require.Equal(t, []string{"email"}, keys(byLabels(c[0], "channel")))
	},
	"Messages by topic": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, map[string]float64{
			"billing sent": nBilling, "billing failed-permanent": nPerm, "billing failed-temporary": nTemp,
			"news sent": nNews, "news suppressed": nOptedOut,
			"onboarding sent": nCapped, "onboarding deferred": nCapped,
			"orders sent": nOrders,
		}, byLabels(c[0], "topic", "outcome"))
	},
	"Rate-limit waits": func(t *testing.T, w expectations, raw, c [][]sample) {
		// More sends than the limit lets through in the few seconds a
		// worker waits: some were put off.
		require.Positive(t, total(c[0]))
		require.Equal(t, []string{"email"}, keys(byLabels(c[0], "channel")))
	},
	"Queued → sent p50 / p99 by channel and queue": func(t *testing.T, w expectations, raw, c [][]sample) {
		for _, r := range raw {
			require.ElementsMatch(t, []string{"email critical", "email bulk", "email default"}, keys(byLabels(r, "channel", "queue")))
			requireLatency(t, r, w.elapsed)
		}
	},
	"Deliveries by channel and queue": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, map[string]float64{"email critical": nBilling, "email bulk": nNews, "email default": nCapped + nOrders}, byLabels(c[0], "channel", "queue"))
	},
	"Provider latency p50 / p99": func(t *testing.T, w expectations, raw, c [][]sample) {
		for _, r := range raw {
			requireLatency(t, r, 5*time.Second) // delivery_timeout
		}
	},
	"Provider calls by result": func(t *testing.T, w expectations, raw, c [][]sample) {
		// Real calls only: every send, every refusal, no rate-limit wait.
		got := byLabels(c[0], "result")
		require.Equal(t, float64(nSent), got["ok"], "%v", got)
		require.Equal(t, float64(nSent+nPerm+nTemp), total(c[0]), "%v", got)
	},
	"Backlog by queue and state": func(t *testing.T, w expectations, raw, c [][]sample) {
		got := byLabels(c[0], "queue", "state")
		for k, v := range map[string]float64{
			"critical retrying": nTemp, "critical archived": nPerm, "default deferred": nCapped,
			"critical rate_limited": 0, "bulk rate_limited": 0, "default rate_limited": 0, "critical unclassified": 0,
		} {
			require.Equal(t, v, got[k], "%s in %v", k, got)
		}
		// Each state sums to what asynq holds: counted once, not once per process.
		var asynqTotal float64
		for _, q := range queues(t, w.insp) {
			asynqTotal += float64(q.Pending + q.Active + q.Scheduled + q.Retry + q.Archived)
		}
		require.InDelta(t, asynqTotal, total(c[0]), 1, "backlog against asynq (waiting journeys are no tasks)")
	},
	"Tasks by queue and state (asynq)": func(t *testing.T, w expectations, raw, c [][]sample) {
		got := byLabels(c[0], "queue", "state")
		for _, q := range queues(t, w.insp) {
			require.InDelta(t, float64(q.Scheduled), got[q.Queue+" scheduled"], 0, q.Queue)
			require.InDelta(t, float64(q.Retry), got[q.Queue+" retry"], 0, q.Queue)
			require.InDelta(t, float64(q.Archived), got[q.Queue+" archived"], 0, q.Queue)
			require.InDelta(t, float64(q.Pending), got[q.Queue+" pending"], 1, q.Queue)
		}
	},
	"Queue latency (oldest ready task)": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.GreaterOrEqual(t, len(raw[0]), 3, "one series per queue")
		for _, s := range raw[0] {
			require.Less(t, s.Value, 30.0, "nothing ready waits: %v", s.Labels)
		}
	},
	"Journey follow-ups scheduled": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, float64(nOrders), total(raw[0]))
		require.Zero(t, total(raw[1]), "nothing overdue")
	},
	"Paused queues": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Zero(t, total(raw[0]))
	},
	"Archived tasks": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, float64(nPerm), byLabels(raw[0], "queue")["critical"])
		require.Equal(t, float64(nPerm), total(raw[0]))
	},
	"asynq failed tasks / s by queue": func(t *testing.T, w expectations, raw, c [][]sample) {
		// The permanent failures, and the temporary ones that a delivery
		// task (not the message's first attempt) returned to asynq.
		failed := total(c[0])
		require.GreaterOrEqual(t, failed, float64(nPerm))
		require.LessOrEqual(t, failed, float64(nPerm+nTemp))
		require.Greater(t, total(c[1]), float64(nSent), "processed tasks include every message")
	},
	"HTTP requests by route and status": func(t *testing.T, w expectations, raw, c [][]sample) {
		got := byLabels(c[0], "route", "code")
		for k, n := range w.api.snapshot() {
			require.Equal(t, float64(n), got[k], "%s in %v", k, got)
		}
		for k := range got {
			require.NotContains(t, k, "bill00", "no customer ID in a label")
		}
		require.Positive(t, got["GET /metrics 200"], "Prometheus's scrapes of serve")
	},
	"HTTP latency p99 by route": func(t *testing.T, w expectations, raw, c [][]sample) {
		r := byLabels(raw[0], "route")
		require.Contains(t, r, "POST /v1/messages")
		require.Greater(t, r["POST /v1/messages"], 0.0)
		require.LessOrEqual(t, r["POST /v1/messages"], 10.0)
	},
	"Journeys started / finished / exited": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, float64(nOrders), byLabels(c[0], "event")["started"])
	},
	"Journeys by workflow": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Equal(t, float64(nOrders), byLabels(c[0], "workflow", "event")["orders started"])
	},
	"Watchdog repairs": func(t *testing.T, w expectations, raw, c [][]sample) {
		require.Zero(t, c[0][0].Value, "no follow-up was lost")
	},
}

// requireLatency checks quantiles: finite, positive, and no more than the
// bucket bound at or above most.
func requireLatency(t *testing.T, ss []sample, most time.Duration) {
	t.Helper()
	bound := most.Seconds()
	for _, b := range []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300} {
		if b >= bound {
			bound = b
			break
		}
	}
	for _, s := range ss {
		require.False(t, math.IsNaN(s.Value) || math.IsInf(s.Value, 0), "%v: %v", s.Labels, s.Value)
		require.Positive(t, s.Value, "%v", s.Labels)
		require.LessOrEqual(t, s.Value, bound, "%v", s.Labels)
	}
}

func queues(t *testing.T, insp *asynq.Inspector) []*asynq.QueueInfo {
	t.Helper()
	names, err := insp.Queues()
	require.NoError(t, err)
	var out []*asynq.QueueInfo
	for _, q := range names {
		info, err := insp.GetQueueInfo(q)
		require.NoError(t, err)
		out = append(out, info)
	}
	return out
}

// sample is one element of an instant vector.
type sample struct {
	Labels map[string]string
	Value  float64
}

func byLabels(ss []sample, names ...string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range ss {
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = s.Labels[n]
		}
		out[strings.Join(parts, " ")] += s.Value
	}
	return out
}

func total(ss []sample) float64 {
	var n float64
	for _, s := range ss {
		n += s.Value
	}
	return n
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func addrs(ids []string) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id + "@example.com"
	}
	return out
}

func dashboardPanels(t *testing.T) []panel {
	t.Helper()
	b, err := os.ReadFile("grafana-dashboard.json")
	require.NoError(t, err)
	var d struct {
		Panels []panel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if p.Type != "row" {
				out = append(out, p)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

// freeAddrs returns n distinct free loopback addresses: every listener is
// held until all are taken, so the kernel cannot hand one port out twice.
func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		out = append(out, l.Addr().String())
	}
	return out
}

// waitUntil polls cond until it holds or within passes.
func waitUntil(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, within, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// heraldProc is one herald process with its JSON log.
type heraldProc struct {
	cmd     *exec.Cmd
	log     string
	done    chan struct{}
	started map[string]any
}

func startHerald(t *testing.T, bin, dir, role string, env []string) *heraldProc {
	t.Helper()
	f, err := os.CreateTemp(dir, role+"-*.log")
	require.NoError(t, err)
	cmd := exec.Command(bin, role)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	p := &heraldProc{cmd: cmd, log: f.Name(), done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", role, tail(string(b), 40))
		}
	})
	return p
}

// waitStarted waits for the "herald started" line and keeps its fields.
func (p *heraldProc) waitStarted(t *testing.T) {
	t.Helper()
	waitUntil(t, "herald starts ("+p.log+")", 20*time.Second, func() (bool, string) {
		select {
		case <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("herald exited before starting:\n%s", b)
		default:
		}
		f, err := os.Open(p.log)
		if err != nil {
			return false, err.Error()
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == "herald started" {
				p.started = line
				return true, ""
			}
		}
		return false, "no start line yet"
	})
}

// checkStartLine: the start line names the role, the metrics address and,
// for a worker, the channels and the queues it takes them from.
func checkStartLine(t *testing.T, line map[string]any, role, metrics string, worker bool) {
	t.Helper()
	require.Equal(t, role, line["role"], "%v", line)
	require.Equal(t, metrics, line["metrics"], "%v", line)
	if worker {
		require.Equal(t, []any{"email"}, line["channels"], "%v", line)
		q, ok := line["queues"].(map[string]any)
		require.True(t, ok, "%v", line)
		for _, name := range []string{"critical", "default", "bulk"} {
			require.Contains(t, q, name)
		}
		return
	}
	require.NotEmpty(t, line["http"], "%v", line)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// apiClient calls herald's API and counts its requests by route pattern and
// status, as herald's HTTP metrics should.
type apiClient struct {
	base, token string
	mu          sync.Mutex
	counts      map[string]int
}

func (a *apiClient) do(t *testing.T, route, path string, body any, want int) []byte {
	t.Helper()
	var rd io.Reader
	method, _, _ := strings.Cut(route, " ")
	if !strings.Contains(route, " ") {
		method = http.MethodGet
	}
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, a.base+path, rd)
	require.NoError(t, err)
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	a.mu.Lock()
	a.counts[route+" "+strconv.Itoa(resp.StatusCode)]++
	a.mu.Unlock()
	require.Equal(t, want, resp.StatusCode, "%s %s: %s", method, path, b)
	return b
}

// waitTimeline polls a customer's timeline until it has an entry with
// outcome.
func (a *apiClient) waitTimeline(t *testing.T, id, outcome string) {
	t.Helper()
	waitUntil(t, id+"'s timeline shows "+outcome, 30*time.Second, func() (bool, string) {
		b := a.do(t, "GET /v1/customers/{id}/timeline", "/v1/customers/"+id+"/timeline", nil, http.StatusOK)
		return bytes.Contains(b, []byte(`"outcome":"`+outcome+`"`)), string(b)
	})
}

func (a *apiClient) count(route string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for k, v := range a.counts {
		if strings.HasPrefix(k, route+" ") {
			n += v
		}
	}
	return n
}

func (a *apiClient) count5xx() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for k, v := range a.counts {
		if strings.HasPrefix(k[strings.LastIndexByte(k, ' ')+1:], "5") {
			n += v
		}
	}
	return n
}

func (a *apiClient) total() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, v := range a.counts {
		n += v
	}
	return n
}

func (a *apiClient) snapshot() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int{}
	for k, v := range a.counts {
		out[k] = v
	}
	return out
}

// promServer is a running Prometheus.
type promServer struct {
	base string
}

func startPrometheus(t *testing.T, bin, dir, cfg, addr string) *promServer {
	t.Helper()
	logPath := filepath.Join(dir, "prometheus.log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("prometheus log:\n%s", tail(string(b), 40))
		}
	})
	p := &promServer{base: "http://" + addr}
	waitUntil(t, "prometheus is ready", 30*time.Second, func() (bool, string) {
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("prometheus exited:\n%s", b)
		default:
		}
		resp, err := http.Get(p.base + "/-/ready")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return p
}

func (p *promServer) get(path string, q url.Values, into any) error {
	resp, err := http.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, b)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, into)
}

// query runs an instant query and returns its vector.
func (p *promServer) query(expr string) ([]sample, error) {
	var data struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := p.get("/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	if data.ResultType != "vector" {
		return nil, fmt.Errorf("%s: result type %s, want vector", expr, data.ResultType)
	}
	out := make([]sample, 0, len(data.Result))
	for _, r := range data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %q", expr, s)
		}
		out = append(out, sample{Labels: r.Metric, Value: v})
	}
	return out, nil
}

// scalar runs a query that returns one sample.
func (p *promServer) scalar(expr string) (float64, error) {
	res, err := p.query(expr)
	if err != nil {
		return 0, err
	}
	if len(res) != 1 {
		return 0, fmt.Errorf("%s: %d samples", expr, len(res))
	}
	return res[0].Value, nil
}

func (p *promServer) waitFor(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	waitUntil(t, what, within, cond)
}

// checkRules waits until Prometheus has evaluated every herald alert rule
// and requires each to be healthy.
func (p *promServer) checkRules(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile("herald-alerts.yaml")
	require.NoError(t, err)
	names := regexp.MustCompile(`(?m)^\s*- alert:\s*(\S+)`).FindAllStringSubmatch(string(b), -1)
	require.NotEmpty(t, names)
	waitUntil(t, "Prometheus evaluates every alert rule", 20*time.Second, func() (bool, string) {
		var data struct {
			Groups []struct {
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := p.get("/api/v1/rules", url.Values{"type": {"alert"}}, &data); err != nil {
			return false, err.Error()
		}
		seen := map[string]bool{}
		var bad []string
		for _, g := range data.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" || r.LastError != "" {
					bad = append(bad, fmt.Sprintf("%s: %s %s", r.Name, r.Health, r.LastError))
					continue
				}
				seen[r.Name] = true
			}
		}
		for _, n := range names {
			if !seen[n[1]] {
				bad = append(bad, n[1]+" not evaluated")
			}
		}
		return len(bad) == 0, strings.Join(bad, "; ")
	})
}
