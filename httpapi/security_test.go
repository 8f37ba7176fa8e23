package httpapi_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const probeQueue = "probe"

// dashboard mounts the real asynqmon, writes allowed, over the bundle's
// Redis, with one task in probeQueue so the queue exists.
func dashboard(t *testing.T) func(*httpapi.Config) {
	return func(c *httpapi.Config) {
		conn := asynq.RedisClientOpt{Addr: c.Engine.Store().Redis().(*redis.Client).Options().Addr}
		mon := asynqmon.New(asynqmon.Options{RootPath: "/monitoring", RedisConnOpt: conn, ReadOnly: false})
		t.Cleanup(func() { _ = mon.Close() })
		c.Monitoring = mon
		client := asynq.NewClient(conn)
		defer client.Close()
		_, err := client.Enqueue(asynq.NewTask("probe:noop", nil), asynq.Queue(probeQueue), asynq.ProcessIn(time.Hour))
		require.NoError(t, err)
	}
}

func (b *bundle) paused(t *testing.T) bool {
	t.Helper()
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	info, err := insp.GetQueueInfo(probeQueue)
	require.NoError(t, err)
	return info.Paused
}

// A user with an empty password, or a password with no user, is not basic
// auth that anyone can pass: nobody gets in, whatever they send.
func TestMonitoringRefusesEmptyCredentials(t *testing.T) {
	t.Parallel()
	configs := []struct {
		name, user, password string
	}{
		{"user without password", "ops", ""},
		{"password without user", "", "s3cret-password"},
	}
	attempts := []struct {
		name, auth string
	}{
		{"none", ""},
		{"empty password", basicAuth("ops", "")},
		{"empty user and password", basicAuth("", "")},
		{"any password", basicAuth("ops", "guess")},
		{"configured password, no user", basicAuth("", "s3cret-password")},
		{"bearer token", "Bearer " + appToken},
	}
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, dashboard(t), func(c *httpapi.Config) { c.MonitoringUser, c.MonitoringPassword = cfg.user, cfg.password })
			for _, a := range attempts {
				for _, r := range []req{
					{path: "/monitoring/"},
					{path: "/monitoring/api/queues"},
					{method: http.MethodPost, path: "/monitoring/api/queues/" + probeQueue + ":pause"},
				} {
					r.header = map[string]string{"Authorization": a.auth}
					got := b.do(t, r)
					require.Equal(t, http.StatusUnauthorized, got.status, "%s %s with %s: %s", r.method, r.path, a.name, got.body)
				}
			}
			require.False(t, b.paused(t), "no attempt paused the queue")
		})
	}
}

// Basic auth, writes allowed: a page on another site must not be able to
// drive the dashboard with the operator's browser credentials.
func TestMonitoringRefusesCrossOriginWrites(t *testing.T) {
	t.Parallel()
	pause := "/monitoring/api/queues/" + probeQueue + ":pause"
	resume := "/monitoring/api/queues/" + probeQueue + ":resume"
	tests := []struct {
		name   string
		method string
		header map[string]string
		status int
	}{
		{"cross-site fetch", http.MethodPost, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"same-site fetch", http.MethodPost, map[string]string{"Origin": "https://sub.herald.example.com", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"foreign origin, older browser", http.MethodPost, map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"opaque origin", http.MethodPost, map[string]string{"Origin": "null"}, http.StatusForbidden},
		{"cross-site delete", http.MethodDelete, map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"the dashboard's own page", http.MethodPost, map[string]string{"Sec-Fetch-Site": "same-origin"}, http.StatusNoContent},
		{"origin is the public URL", http.MethodPost, map[string]string{"Origin": "https://herald.example.com"}, http.StatusNoContent},
		{"not a browser", http.MethodPost, nil, http.StatusNoContent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, dashboard(t), func(c *httpapi.Config) {
				c.MonitoringUser, c.MonitoringPassword = "ops", "s3cret-password"
				c.PublicURL = "https://herald.example.com"
			})
			h := map[string]string{"Authorization": basicAuth("ops", "s3cret-password")}
			for k, v := range tt.header {
				h[k] = v
			}
			path := pause
			if tt.method == http.MethodDelete {
				path = "/monitoring/api/queues/" + probeQueue + "/scheduled_tasks:delete_all"
			}
			r := b.do(t, req{method: tt.method, path: path, header: h})
			require.Equal(t, tt.status, r.status, "%s", r.body)
			if tt.status == http.StatusForbidden {
				code, _ := r.apiError(t)
				require.Equal(t, "cross_origin", code)
				require.False(t, b.paused(t))
				n, err := asynq.NewInspectorFromRedisClient(b.rdb).GetQueueInfo(probeQueue)
				require.NoError(t, err)
				require.Equal(t, 1, n.Scheduled, "the task is still there")
				return
			}
			require.True(t, b.paused(t))
			r = b.do(t, req{method: http.MethodPost, path: resume, header: h})
			require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
		})
	}
	t.Run("origin of the request's own host", func(t *testing.T) {
		t.Parallel()
		b := setup(t, dashboard(t), func(c *httpapi.Config) { c.MonitoringUser, c.MonitoringPassword = "ops", "s3cret-password" })
		r := b.do(t, req{method: http.MethodPost, path: pause, header: map[string]string{"Authorization": basicAuth("ops", "s3cret-password"), "Origin": b.url}})
		require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
		require.True(t, b.paused(t))
	})
}

var hashRe = regexp.MustCompile(`'sha256-[A-Za-z0-9+/]+={0,2}'`)

func TestMonitoringSecurityHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, dashboard(t), func(c *httpapi.Config) { c.MonitoringUser, c.MonitoringPassword = "ops", "s3cret-password" })
	ok := map[string]string{"Authorization": basicAuth("ops", "s3cret-password")}
	tests := []struct {
		name   string
		r      req
		status int
		hashes int // inline scripts allowed by hash
	}{
		{"index", req{path: "/monitoring/", header: ok}, 200, 2},
		{"a page of the app", req{path: "/monitoring/queues/" + probeQueue, header: ok}, 200, 2},
		{"script", req{path: "/monitoring/static/js/" + mainChunk(t, b, ok), header: ok}, 200, 0},
		{"api", req{path: "/monitoring/api/queues", header: ok}, 200, 0},
		{"refused", req{path: "/monitoring/", header: map[string]string{"Authorization": ""}}, 401, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, tt.r)
			require.Equal(t, tt.status, r.status)
			require.Equal(t, "DENY", r.header.Get("X-Frame-Options"))
			require.Equal(t, "no-store", r.header.Get("Cache-Control"))
			require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"))
			csp := r.header.Get("Content-Security-Policy")
			for _, d := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "connect-src 'self'"} {
				require.Contains(t, csp, d)
			}
			require.NotContains(t, csp, "'unsafe-eval'")
			require.NotRegexp(t, `script-src[^;]*'unsafe-inline'`, csp)
			require.Len(t, hashRe.FindAllString(csp, -1), tt.hashes, csp)
			if tt.hashes > 0 {
				require.Contains(t, string(r.body), "Asynq - Monitoring", "the page itself is unchanged")
			}
		})
	}
}

// mainChunk is the file name of the dashboard's main script.
func mainChunk(t *testing.T, b *bundle, h map[string]string) string {
	t.Helper()
	r := b.do(t, req{path: "/monitoring/", header: h})
	m := regexp.MustCompile(`/static/js/(main\.[0-9a-f]+\.chunk\.js)`).FindSubmatch(r.body)
	require.NotNil(t, m, "%s", r.body)
	return string(m[1])
}

func TestMonitoringLoginLink(t *testing.T) {
	t.Parallel()
	const secret = "login-secret-0123456789abcdef"
	b := setup(t, func(c *httpapi.Config) { c.MonitoringLogin = secret })
	browser := func() *http.Client {
		jar, err := cookiejar.New(nil)
		require.NoError(t, err)
		return &http.Client{Jar: jar}
	}
	get := func(c *http.Client, path string) (*http.Response, string) {
		hr, err := http.NewRequest(http.MethodGet, b.url+path, nil)
		require.NoError(t, err)
		res, err := c.Do(hr)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res, string(body)
	}
	tests := []struct {
		name   string
		link   string
		status int
	}{
		{"valid link", "/monitoring/login?token=" + secret, http.StatusOK},
		{"wrong token", "/monitoring/login?token=" + secret + "x", http.StatusUnauthorized},
		{"no token", "/monitoring/login", http.StatusUnauthorized},
		{"empty token", "/monitoring/login?token=", http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := browser()
			res, body := get(c, tt.link)
			require.Equal(t, tt.status, res.StatusCode, body)
			if tt.status != http.StatusOK {
				res, _ = get(c, "/monitoring/api/queues")
				require.Equal(t, http.StatusUnauthorized, res.StatusCode, "no session")
				return
			}
			require.Equal(t, "dashboard /monitoring/", body)
			res, body = get(c, "/monitoring/api/queues")
			require.Equal(t, http.StatusOK, res.StatusCode, "the session covers the dashboard's API")
			require.Equal(t, "dashboard /monitoring/api/queues", body)
		})
	}
	t.Run("forged cookie", func(t *testing.T) {
		t.Parallel()
		r := b.do(t, req{path: "/monitoring/", header: map[string]string{"Authorization": "", "Cookie": "herald_monitoring=" + secret}})
		require.Equal(t, http.StatusUnauthorized, r.status)
	})
}

// Bearer tokens never match an empty or blank token, even one configured
// empty by mistake.
func TestBlankBearerRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *httpapi.Config) { c.Tokens = append(c.Tokens, httpapi.Token{Name: "blank", Value: ""}) })
	for _, auth := range []string{"Bearer ", "Bearer  ", "Bearer \t", "bearer   "} {
		for _, path := range []string{"/v1/customers/c1", "/monitoring/"} {
			r := b.do(t, req{path: path, header: map[string]string{"Authorization": auth}})
			require.Equal(t, http.StatusUnauthorized, r.status, "%s with %q", path, auth)
		}
	}
}

func TestMetricsToken(t *testing.T) {
	t.Parallel()
	const token = "metrics-token-0123456789"
	tests := []struct {
		name, configured, auth string
		status                 int
	}{
		{"open by default", "", "", 200},
		{"no token", token, "", 401},
		{"wrong token", token, "Bearer " + appToken, 401},
		{"basic", token, basicAuth("prometheus", token), 401},
		{"right token", token, "Bearer " + token, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, func(c *httpapi.Config) { c.MetricsToken = tt.configured })
			r := b.do(t, req{path: "/metrics", header: map[string]string{"Authorization": tt.auth}})
			require.Equal(t, tt.status, r.status, "%s", r.body)
			if tt.status == 200 {
				require.Contains(t, string(r.body), "# TYPE")
			} else {
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
				require.NotContains(t, string(r.body), "# TYPE")
			}
		})
	}
}

// clock is a settable time for the rate limit.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestPublicRateLimit(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "public") })
	limited := func(trusted []netip.Prefix, clk *clock) func(*httpapi.Config) {
		return func(c *httpapi.Config) {
			c.PublicRateLimit = 3
			c.TrustedProxies = trusted
			c.Now = clk.now
			c.Centre = ok
			c.Extra = map[string]http.Handler{"GET /r/{token}": ok, "POST /slack/interactions": ok}
		}
	}
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	from := func(xff string) map[string]string {
		return map[string]string{"X-Forwarded-For": xff, "Authorization": ""}
	}

	routes := []req{
		{path: "/r/h1.abc.def"},
		{path: "/preferences?token=x"},
		{method: http.MethodPost, path: "/unsubscribe?token=x"},
		{method: http.MethodPost, path: "/slack/interactions"},
	}
	for _, route := range routes {
		t.Run("burst on "+route.path, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			b := setup(t, limited(loopback, clk))
			at := func(xff string) resp {
				r := route
				r.header = from(xff)
				return b.do(t, r)
			}
			for i := range 3 {
				require.Equal(t, http.StatusOK, at("203.0.113.7").status, "request %d is within the burst", i+1)
			}
			r := at("203.0.113.7")
			require.Equal(t, http.StatusTooManyRequests, r.status)
			require.Equal(t, "20", r.header.Get("Retry-After"), "3 a minute: the next in 20 s")
			code, msg := r.apiError(t)
			require.Equal(t, "rate_limited", code)
			require.Contains(t, msg, "20s")

			require.Equal(t, http.StatusOK, at("203.0.113.8").status, "another client is unaffected")
			require.Equal(t, http.StatusOK, at("2001:db8::1").status)

			clk.advance(19 * time.Second)
			r = at("203.0.113.7")
			require.Equal(t, http.StatusTooManyRequests, r.status)
			require.Equal(t, "1", r.header.Get("Retry-After"))
			clk.advance(time.Second)
			require.Equal(t, http.StatusOK, at("203.0.113.7").status, "a token is back after Retry-After")
		})
	}

	t.Run("forwarded-for is not believed from an untrusted peer", func(t *testing.T) {
		t.Parallel()
		b := setup(t, limited(nil, newClock()))
		for i := range 3 {
			r := b.do(t, req{path: "/r/x", header: from("198.51.100." + strconv.Itoa(i))})
			require.Equal(t, http.StatusOK, r.status)
		}
		r := b.do(t, req{path: "/r/x", header: from("198.51.100.99")})
		require.Equal(t, http.StatusTooManyRequests, r.status, "a made-up X-Forwarded-For does not make a new client")
	})

	t.Run("hops to the left of the client are the client's own claims", func(t *testing.T) {
		t.Parallel()
		b := setup(t, limited(loopback, newClock()))
		for i := range 3 {
			r := b.do(t, req{path: "/r/x", header: from("10.9.9." + strconv.Itoa(i) + ", 203.0.113.7")})
			require.Equal(t, http.StatusOK, r.status)
		}
		r := b.do(t, req{path: "/r/x", header: from("10.9.9.99, 203.0.113.7")})
		require.Equal(t, http.StatusTooManyRequests, r.status)
	})

	t.Run("an IPv6 client is counted by its /64", func(t *testing.T) {
		t.Parallel()
		b := setup(t, limited(loopback, newClock()))
		for i := range 3 {
			r := b.do(t, req{path: "/r/x", header: from("2001:db8:1:2::" + strconv.Itoa(i+1))})
			require.Equal(t, http.StatusOK, r.status)
		}
		require.Equal(t, http.StatusTooManyRequests, b.do(t, req{path: "/r/x", header: from("2001:db8:1:2:ffff::9")}).status)
		require.Equal(t, http.StatusOK, b.do(t, req{path: "/r/x", header: from("2001:db8:1:3::1")}).status)
	})

	t.Run("the authenticated API is not limited", func(t *testing.T) {
		t.Parallel()
		b := setup(t, limited(loopback, newClock()))
		for range 10 {
			require.Equal(t, http.StatusOK, b.do(t, req{path: "/healthz"}).status)
			require.Equal(t, http.StatusNotFound, b.do(t, req{path: "/v1/customers/nobody"}).status)
		}
	})

	t.Run("0 turns it off", func(t *testing.T) {
		t.Parallel()
		b := setup(t, limited(loopback, newClock()), func(c *httpapi.Config) { c.PublicRateLimit = 0 })
		for range 10 {
			require.Equal(t, http.StatusOK, b.do(t, req{path: "/r/x", header: from("203.0.113.7")}).status)
		}
	})
}

func TestRequestLogRedactsSecrets(t *testing.T) {
	t.Parallel()
	var logs logbuf.Buffer
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "public") })
	b := setup(t, func(c *httpapi.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		c.Centre = ok
		c.Extra = map[string]http.Handler{"GET /r/{token}": ok}
		c.MonitoringLogin = "login-SECRET-0123456789"
	})
	tests := []struct {
		name, path, logged string
	}{
		{"click token", "/r/h1.eyJjIjoiYzEifQ.SECRETsig", "/r/[redacted]"},
		{"click token of another shape", "/r/SECRETopaque", "/r/[redacted]"},
		{"preferences token", "/preferences?token=h1.SECRETclaims.SECRETsig&lang=ja", "/preferences?token=[redacted]&lang=ja"},
		{"unsubscribe token", "/unsubscribe?lang=pl&token=SECRETvalue", "/unsubscribe?lang=pl&token=[redacted]"},
		{"login link", "/monitoring/login?token=login-SECRET-0123456789", "/monitoring/login?token=[redacted]"},
		{"secret-looking names", "/preferences?sig=SECRET1&api_key=SECRET2&Password=SECRET3&access_token=SECRET4&page=2", "/preferences?sig=[redacted]&api_key=[redacted]&Password=[redacted]&access_token=[redacted]&page=2"},
		{"signed token under any name", "/preferences?t=h1.SECRET.SECRET", "/preferences?t=[redacted]"},
		{"escaped name", "/preferences?%74oken=SECRETescaped", "/preferences?%74oken=[redacted]"},
		{"signed token in another path", "/v1/customers/h1.SECRET.SECRET", "/v1/customers/[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "redact-" + strconv.Itoa(len(tt.name)) + "-" + strings.ReplaceAll(tt.name, " ", "-")
			b.do(t, req{path: tt.path, header: map[string]string{"X-Request-ID": id}})
			line := logLine(t, logs.String(), id)
			require.Equal(t, tt.logged, line["path"])
			require.NotContains(t, logs.String(), "SECRET")
		})
	}
}

// logLine finds the request log line with the request ID.
func logLine(t *testing.T, logs, id string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(logs, "\n") {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) == nil && v["msg"] == "http" && v["request_id"] == id {
			return v
		}
	}
	t.Fatalf("no request log line for %s in:\n%s", id, logs)
	return nil
}
