package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const (
	appToken = "app-token-0123456789abcdef"
	opsToken = "ops-token-0123456789abcdef"
	maxBody  = 8 << 10
)

type bundle struct {
	url  string
	e    *engine.Engine
	rdb  *redis.Client
	rs   *redistest.Server
	smtp *smtpserver.Server
	// notReady is what /readyz reports, nil when ready.
	notReady atomic.Pointer[error]
}

func (b *bundle) setReady(err error) {
	if err == nil {
		b.notReady.Store(nil)
		return
	}
	b.notReady.Store(&err)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// setup runs the API over a real engine, Redis, asynq worker and SMTP
// server. mod adjusts the HTTP config before the server starts.
func setup(t *testing.T, mod ...func(*httpapi.Config)) *bundle {
	t.Helper()
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	b := &bundle{rdb: rs.Client(), rs: rs}
	var err error
	b.smtp, err = smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.smtp.Close() })
	ec, err := email.ParseURL(b.smtp.URL())
	require.NoError(t, err)
	ec.From = "Lumen <hello@lumen.example>"
	es, err := email.New(ec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = es.Close() })

	tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	b.e, err = engine.New(engine.Options{
		Redis: b.rdb, RedisConn: asynq.RedisClientOpt{Addr: rs.Addr},
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: es},
		Templates: tset,
		Policy: preferences.Policy{Topics: map[string]herald.Topic{
			"onboarding": {Name: "onboarding", OptIn: true, Class: "lifecycle"},
			"billing":    {Name: "billing", Required: true, OptIn: true, Class: "transactional"},
		}},
		PublicURL: "https://herald.example.com", SigningKey: []byte("0123456789abcdef0123456789abcdef"),
		MaxRetry: 2, RetryBase: time.Second, RetryMax: time.Second,
		Metrics: engine.NewMetrics(reg), Logger: discard(),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.e.Close() })
	srv := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: 2, Queues: map[string]int{"critical": 1, "default": 1, "bulk": 1, "email": 1},
		RetryDelayFunc: b.e.RetryDelay, IsFailure: b.e.IsFailure,
		TaskCheckInterval: 50 * time.Millisecond, LogLevel: asynq.FatalLevel,
	})
	require.NoError(t, srv.Start(b.e.Mux()))
	t.Cleanup(srv.Shutdown)
	t.Cleanup(b.e.StartWaker(context.Background()))

	cfg := httpapi.Config{
		Engine:  b.e,
		Tokens:  []httpapi.Token{{Name: "app", Value: appToken}, {Name: "ops", Value: opsToken}},
		MaxBody: maxBody,
		Monitoring: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "dashboard "+r.URL.Path)
		}),
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
		Ready: func(context.Context) error {
			if p := b.notReady.Load(); p != nil {
				return *p
			}
			return nil
		},
		Logger: discard(),
	}
	for _, f := range mod {
		f(&cfg)
	}
	ts := httptest.NewServer(httpapi.New(cfg))
	t.Cleanup(ts.Close)
	b.url = ts.URL
	return b
}

// req is one HTTP request; the zero value is an authorized JSON GET.
type req struct {
	method, path, body string
	// header overrides; an empty value removes the header.
	header map[string]string
}

type resp struct {
	status int
	header http.Header
	body   []byte
}

func (b *bundle) do(t *testing.T, r req) resp {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	hr, err := http.NewRequest(r.method, b.url+r.path, strings.NewReader(r.body))
	require.NoError(t, err)
	hr.Header.Set("Authorization", "Bearer "+appToken)
	if r.body != "" {
		hr.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
		} else {
			hr.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(hr)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return resp{status: res.StatusCode, header: res.Header, body: body}
}

// json decodes the response body into a generic value.
func (r resp) json(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

// apiError checks herald's error shape, exactly {"error":{"code","message"}},
// and returns code and message.
func (r resp) apiError(t *testing.T) (string, string) {
	t.Helper()
	require.Contains(t, r.header.Get("Content-Type"), "application/json", "error bodies are JSON: %s", r.body)
	var v map[string]map[string]string
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	require.Len(t, v, 1, "body: %s", r.body)
	e, ok := v["error"]
	require.True(t, ok, "body: %s", r.body)
	require.Len(t, e, 2, "body: %s", r.body)
	require.NotEmpty(t, e["code"])
	require.NotEmpty(t, e["message"])
	return e["code"], e["message"]
}

// snapshot returns every herald key with its serialized value, and every
// asynq task, to prove a refused request wrote nothing.
func (b *bundle) snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, pattern := range []string{"herald:*", "asynq:{*}:t:*", "asynq:queues"} {
		keys, err := b.rdb.Keys(ctx, pattern).Result()
		require.NoError(t, err)
		for _, k := range keys {
			v, err := b.rdb.Dump(ctx, k).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			require.NoError(t, err)
			out[k] = v
		}
	}
	return out
}

func (b *bundle) putCustomer(t *testing.T, id, body string) {
	t.Helper()
	r := b.do(t, req{method: http.MethodPut, path: "/v1/customers/" + id, body: body})
	require.Contains(t, []int{http.StatusOK, http.StatusCreated}, r.status, "%s", r.body)
}

func TestErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)

	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	big := `{"email":"ada@example.com","attributes":{"pad":"` + strings.Repeat("x", maxBody) + `"}}`
	tests := []struct {
		name   string
		req    req
		status int
		code   string
		msg    string // a part of the message
	}{
		{"no token", req{path: "/v1/customers/c1", header: map[string]string{"Authorization": ""}}, 401, "unauthorized", "bearer"},
		{"wrong token", req{path: "/v1/customers/c1", header: map[string]string{"Authorization": "Bearer nope-nope-nope-nope"}}, 401, "unauthorized", ""},
		{"not bearer", req{path: "/v1/customers/c1", header: map[string]string{"Authorization": "Basic " + appToken}}, 401, "unauthorized", ""},
		{"empty bearer", req{path: "/v1/customers/c1", header: map[string]string{"Authorization": "Bearer "}}, 401, "unauthorized", ""},
		{"no token on write", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"x@example.com"}`, header: map[string]string{"Authorization": ""}}, 401, "unauthorized", ""},
		{"no token on unknown path", req{path: "/v1/nope", header: map[string]string{"Authorization": ""}}, 401, "unauthorized", ""},
		{"content type", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"x@example.com"}`, header: map[string]string{"Content-Type": "text/plain"}}, 415, "unsupported_media_type", "application/json"},
		{"form content type", req{method: "POST", path: "/v1/events", body: `customer_id=c1`, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type", ""},
		{"too large", req{method: "PUT", path: "/v1/customers/c9", body: big}, 413, "too_large", "larger than"},
		{"malformed", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":`}, 400, "malformed", "the document ends before it is complete"},
		{"not an object", req{method: "PUT", path: "/v1/customers/c9", body: `[1,2]`}, 400, "malformed", "want an object, got an array"},
		{"bad character", req{method: "POST", path: "/v1/events", body: "{\n\"customer_id\": 'c1'\n}"}, 400, "malformed", "at line 2, column 16: invalid character"},
		{"data not an object", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"t","topic":"x","data":5}`}, 400, "malformed", `field "data": want an object, got a number`},
		{"unknown field", req{method: "PUT", path: "/v1/customers/c9", body: `{"emial":"x@example.com"}`}, 400, "malformed", `"emial"`},
		{"unknown field in event", req{method: "POST", path: "/v1/events", body: `{"customer_id":"c1","name":"x","colour":1}`}, 400, "malformed", `"colour"`},
		{"wrong type", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":42}`}, 400, "malformed", `field "email": want a string, got a number`},
		{"invalid utf-8", req{method: "PUT", path: "/v1/customers/c9", body: "{\"email\":\"\xff\xfe@example.com\"}"}, 400, "malformed", "UTF-8"},
		{"deep nesting", req{method: "PUT", path: "/v1/customers/c9", body: `{"attributes":` + deep + `}`}, 400, "malformed", "nested"},
		{"two documents", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"x@example.com"} {}`}, 400, "malformed", "more than one"},
		{"empty body", req{method: "PUT", path: "/v1/customers/c9", header: map[string]string{"Content-Type": "application/json"}}, 400, "malformed", "empty"},
		{"path traversal", req{method: "PUT", path: "/v1/customers/..%2F..%2Fetc", body: `{}`}, 400, "invalid_id", "customer id"},
		{"path traversal read", req{path: "/v1/customers/..%2F.."}, 400, "invalid_id", ""},
		{"id with space", req{path: "/v1/customers/a%20b/timeline"}, 400, "invalid_id", ""},
		{"id with NUL", req{path: "/v1/customers/a%00/preferences"}, 400, "invalid_id", ""},
		{"id too long", req{path: "/v1/customers/" + strings.Repeat("a", 129)}, 400, "invalid_id", ""},
		{"unknown customer", req{path: "/v1/customers/nobody"}, 404, "not_found", ""},
		{"unknown customer export", req{path: "/v1/customers/nobody/export"}, 404, "not_found", ""},
		{"unknown customer preferences", req{path: "/v1/customers/nobody/preferences"}, 404, "not_found", ""},
		{"unknown customer patch", req{method: "PATCH", path: "/v1/customers/nobody/preferences", body: `{"channels":{"email":false}}`}, 404, "not_found", ""},
		{"unknown customer timeline", req{path: "/v1/customers/nobody/timeline"}, 404, "not_found", ""},
		{"unknown customer delete", req{method: "DELETE", path: "/v1/customers/nobody"}, 404, "not_found", ""},
		{"unknown customer message", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"nobody","template":"hello","topic":"onboarding","data":{"plan":"Pro"}}`}, 404, "not_found", ""},
		{"unknown customer event", req{method: "POST", path: "/v1/events", body: `{"customer_id":"nobody","name":"trial.started"}`}, 404, "not_found", "nobody"},
		{"unknown path", req{path: "/v1/nope"}, 404, "not_found", "/v1/nope"},
		{"unknown sub-resource", req{path: "/v1/customers/c1/secrets"}, 404, "not_found", ""},
		{"wrong method", req{method: "DELETE", path: "/v1/events"}, 404, "not_found", "DELETE"},
		{"bad email", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"not-an-address"}`}, 422, "invalid", "email"},
		{"header injection in email", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"a@example.com\r\nBcc: x@evil.example"}`}, 422, "invalid", "email"},
		{"bad timezone", req{method: "PUT", path: "/v1/customers/c9", body: `{"timezone":"Mars/Olympus"}`}, 422, "invalid", "timezone"},
		{"timezone traversal", req{method: "PUT", path: "/v1/customers/c9", body: `{"timezone":"../../etc/passwd"}`}, 422, "invalid", "timezone"},
		{"bad locale", req{method: "PUT", path: "/v1/customers/c9", body: `{"locale":"english please"}`}, 422, "invalid", "locale"},
		{"bad slack id", req{method: "PUT", path: "/v1/customers/c9", body: `{"slack_user_id":"@ada"}`}, 422, "invalid", "slack_user_id"},
		{"email with NUL", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com\u0000"}`}, 422, "invalid", "email"},
		{"email with NUL inside", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob\u0000@example.com"}`}, 422, "invalid", "email"},
		{"email with vertical tab", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com\u000b"}`}, 422, "invalid", "email"},
		{"email with tab", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com\t"}`}, 422, "invalid", "email"},
		{"email with LF", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com\n"}`}, 422, "invalid", "email"},
		{"email with DEL", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com\u007f"}`}, 422, "invalid", "email"},
		{"email with NEL", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com\u0085"}`}, 422, "invalid", "email"},
		{"email with bidi override", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob\u202e@example.com"}`}, 422, "invalid", "email"},
		{"email with display name", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"Bob <bob@example.com>"}`}, 422, "invalid", "email"},
		{"email in angle brackets", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"<bob@example.com>"}`}, 422, "invalid", "email"},
		{"email with comment", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com (Bob)"}`}, 422, "invalid", "email"},
		{"email with two addresses", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com,eve@evil.example"}`}, 422, "invalid", "email"},
		{"email with double dot", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob..x@example.com"}`}, 422, "invalid", "email"},
		{"email with trailing dot", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@example.com."}`}, 422, "invalid", "email"},
		{"email without domain", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"bob@"}`}, 422, "invalid", "email"},
		{"email without local part", req{method: "PUT", path: "/v1/customers/c9", body: `{"email":"@example.com"}`}, 422, "invalid", "email"},
		{"slack id with NUL", req{method: "PUT", path: "/v1/customers/c9", body: `{"slack_user_id":"U024BE7LH\u0000"}`}, 422, "invalid", "slack_user_id"},
		{"slack id lower case", req{method: "PUT", path: "/v1/customers/c9", body: `{"slack_user_id":"u024be7lh"}`}, 422, "invalid", "slack_user_id"},
		{"slack id too short", req{method: "PUT", path: "/v1/customers/c9", body: `{"slack_user_id":"U1"}`}, 422, "invalid", "slack_user_id"},
		{"slack channel id", req{method: "PUT", path: "/v1/customers/c9", body: `{"slack_user_id":"C024BE7LH"}`}, 422, "invalid", "slack_user_id"},
		{"slack id with newline", req{method: "PUT", path: "/v1/customers/c9", body: `{"slack_user_id":"U024BE7LH\n"}`}, 422, "invalid", "slack_user_id"},
		{"bad attribute name", req{method: "PUT", path: "/v1/customers/c9", body: `{"attributes":{"first name":"Ada"}}`}, 422, "invalid", "attributes"},
		{"message missing fields", req{method: "POST", path: "/v1/messages", body: `{}`}, 422, "invalid", "customer_id: required; template: required; topic: required"},
		{"message unknown topic", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"gossip"}`}, 422, "invalid", "gossip"},
		{"message unknown template", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"nope","topic":"onboarding"}`}, 422, "invalid", "nope"},
		{"message unknown channel", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","channels":["fax"]}`}, 422, "invalid", "fax"},
		{"message bad mode", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","mode":"some"}`}, 422, "invalid", "mode"},
		{"message data the template needs", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plna":"Pro"}}`}, 422, "invalid", `data: template "hello" reads key "plan"`},
		{"message with failing key", req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"nope","topic":"onboarding","idempotency_key":"k-bad"}`}, 422, "invalid", "nope"},
		{"event missing name", req{method: "POST", path: "/v1/events", body: `{"customer_id":"c1"}`}, 422, "invalid", "event name"},
		{"event bad name", req{method: "POST", path: "/v1/events", body: `{"customer_id":"c1","name":"Trial Started"}`}, 422, "invalid", "event name"},
		{"event missing customer", req{method: "POST", path: "/v1/events", body: `{"name":"trial.started"}`}, 422, "invalid", "customer id"},
		{"idempotency key too long", req{method: "POST", path: "/v1/events", body: `{"customer_id":"c1","name":"x","idempotency_key":"` + strings.Repeat("k", 256) + `"}`}, 422, "invalid", "idempotency_key"},
		{"preferences unknown topic", req{method: "PATCH", path: "/v1/customers/c1/preferences", body: `{"topics":{"gossip":false}}`}, 422, "invalid", "gossip"},
		{"preferences unknown channel", req{method: "PATCH", path: "/v1/customers/c1/preferences", body: `{"channels":{"fax":false}}`}, 422, "invalid", "fax"},
		{"preferences bad quiet hours", req{method: "PATCH", path: "/v1/customers/c1/preferences", body: `{"quiet_hours":{"start":"25:00","end":"08:00"}}`}, 422, "invalid", "quiet"},
		{"timeline bad limit", req{path: "/v1/customers/c1/timeline?limit=0"}, 422, "invalid", "limit"},
		{"timeline limit not a number", req{path: "/v1/customers/c1/timeline?limit=ten"}, 422, "invalid", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case proves on the shared Redis that it
			// wrote nothing.
			before := b.snapshot(t)
			r := b.do(t, tt.req)
			require.Equal(t, tt.status, r.status, "body: %s", r.body)
			code, msg := r.apiError(t)
			require.Equal(t, tt.code, code)
			require.Contains(t, msg, tt.msg)
			require.NotEmpty(t, r.header.Get("X-Request-ID"))
			if tt.status == http.StatusUnauthorized {
				require.Contains(t, r.header.Get("WWW-Authenticate"), "Bearer")
			}
			require.Equal(t, before, b.snapshot(t), "a refused request writes nothing")
		})
	}
}

func TestCustomerLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)

	r := b.do(t, req{method: "PUT", path: "/v1/customers/c42", body: `{"email":"ada@example.com","locale":"pl-PL","timezone":"Europe/Warsaw","attributes":{"first_name":"Ada","plan":"Pro"}}`})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	c := r.json(t)
	require.Equal(t, "c42", c["id"])
	require.Equal(t, "ada@example.com", c["email"])
	require.Equal(t, "Europe/Warsaw", c["timezone"])

	r = b.do(t, req{method: "PUT", path: "/v1/customers/c42", body: `{"email":"ada@example.org","locale":"pl-PL","attributes":{"first_name":"Ada"}}`})
	require.Equal(t, http.StatusOK, r.status, "an update is 200: %s", r.body)

	r = b.do(t, req{path: "/v1/customers/c42"})
	require.Equal(t, http.StatusOK, r.status)
	c = r.json(t)
	require.Equal(t, "ada@example.org", c["email"])
	require.Equal(t, "pl-PL", c["locale"])

	r = b.do(t, req{method: "PATCH", path: "/v1/customers/c42/preferences", body: `{"channels":{"email":false},"topics":{"onboarding":false},"channel_order":["slack","email"],"quiet_hours":{"start":"21:00","end":"08:00"}}`})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = b.do(t, req{path: "/v1/customers/c42/preferences"})
	require.Equal(t, http.StatusOK, r.status)
	p := r.json(t)
	require.Equal(t, map[string]any{"email": false}, p["channels"])
	require.Equal(t, map[string]any{"onboarding": false}, p["topics"])
	require.Equal(t, []any{"slack", "email"}, p["channel_order"])
	require.Equal(t, map[string]any{"start": "21:00", "end": "08:00"}, p["quiet_hours"])

	// A merge keeps what it does not name.
	r = b.do(t, req{method: "PATCH", path: "/v1/customers/c42/preferences", body: `{"channels":{"email":true}}`})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	p = r.json(t)
	require.Equal(t, map[string]any{"onboarding": false}, p["topics"])

	r = b.do(t, req{path: "/v1/customers/c42/timeline?limit=50"})
	require.Equal(t, http.StatusOK, r.status)
	tl := r.json(t)
	require.Equal(t, "c42", tl["customer_id"])
	entries, _ := tl["entries"].([]any)
	require.NotEmpty(t, entries)
	kinds := map[string]bool{}
	var summaries []string
	for _, e := range entries {
		m := e.(map[string]any)
		kinds[m["kind"].(string)] = true
		summaries = append(summaries, m["summary"].(string))
	}
	require.True(t, kinds[herald.KindConsent], "the preference change is on the timeline: %v", summaries)
	require.Contains(t, strings.Join(summaries, "\n"), "api app", "entries name the API token that acted")

	r = b.do(t, req{path: "/v1/customers/c42/export"})
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.header.Get("Content-Disposition"), "customer-c42.json")
	ex := r.json(t)
	for _, k := range []string{"customer", "preferences", "consent_log", "timeline", "journeys", "exported_at"} {
		require.Contains(t, ex, k)
	}
	require.NotEmpty(t, ex["consent_log"])

	r = b.do(t, req{method: "DELETE", path: "/v1/customers/c42"})
	require.Equal(t, http.StatusNoContent, r.status, "%s", r.body)
	require.Empty(t, r.body)
	r = b.do(t, req{path: "/v1/customers/c42"})
	require.Equal(t, http.StatusNotFound, r.status)
	keys, err := b.rdb.Keys(context.Background(), "herald:{c:c42}:*").Result()
	require.NoError(t, err)
	for _, k := range keys {
		require.NotContains(t, k, ":customer", "the profile is gone")
	}
	ok, err := b.e.Preferences().IsSuppressed(context.Background(), herald.ChannelEmail, "ada@example.org")
	require.NoError(t, err)
	require.True(t, ok, "an erased address keeps a suppression record")
}

// Addresses and Slack IDs that real customers have are accepted as they are.
func TestCustomerContactsAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct{ name, body, field, want string }{
		{"plain", `{"email":"ada@example.com"}`, "email", "ada@example.com"},
		{"plus and subdomain", `{"email":"ada+news@mail.example.co.uk"}`, "email", "ada+news@mail.example.co.uk"},
		{"apostrophe", `{"email":"o'brien@example.ie"}`, "email", "o'brien@example.ie"},
		{"internationalised", `{"email":"józef@przykład.pl"}`, "email", "józef@przykład.pl"},
		{"user id", `{"slack_user_id":"U024BE7LH"}`, "slack_user_id", "U024BE7LH"},
		{"enterprise user id", `{"slack_user_id":"W012A3CDE"}`, "slack_user_id", "W012A3CDE"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := b.do(t, req{method: http.MethodPut, path: "/v1/customers/ok" + strconv.Itoa(i), body: tt.body})
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			require.Equal(t, tt.want, r.json(t)[tt.field])
		})
	}
}

func TestMessageReachesSMTP(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)
	r := b.do(t, req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"]}`})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	v := r.json(t)
	require.Equal(t, "accepted", v["status"])
	require.NotEmpty(t, v["id"])
	require.Eventually(t, func() bool { return b.smtp.Count() == 1 }, 15*time.Second, 20*time.Millisecond, "the email reaches the SMTP server")
	msg := b.smtp.Messages()[0]
	require.Equal(t, []string{"ada@example.com"}, msg.To)
	require.Contains(t, string(msg.Data), "Pro")
}

func TestEventAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"ada@example.com"}`)
	r := b.do(t, req{method: "POST", path: "/v1/events", body: `{"customer_id":"c1","name":"trial.started","data":{"plan":"Pro"}}`})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	require.Equal(t, "accepted", r.json(t)["status"])
	require.Eventually(t, func() bool {
		tl, err := b.e.Store().Timeline(context.Background(), "c1", 0)
		require.NoError(t, err)
		for _, e := range tl {
			if e.Kind == herald.KindEvent && strings.Contains(e.Summary, "trial.started") {
				return true
			}
		}
		return false
	}, 15*time.Second, 20*time.Millisecond, "the worker records the event")
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)
	tests := []struct {
		name, path, body, other string
		header                  map[string]string
	}{
		{
			name: "message key in body", path: "/v1/messages",
			body:  `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-1"}`,
			other: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Team"},"channels":["email"],"idempotency_key":"order-1"}`,
		},
		{
			name: "event key in header", path: "/v1/events",
			body:   `{"customer_id":"c1","name":"trial.started","data":{"plan":"Pro"}}`,
			other:  `{"customer_id":"c1","name":"trial.started","data":{"plan":"Team"}}`,
			header: map[string]string{"Idempotency-Key": "evt-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := b.do(t, req{method: "POST", path: tt.path, body: tt.body, header: tt.header})
			require.Equal(t, http.StatusAccepted, first.status, "%s", first.body)
			require.Empty(t, first.header.Get("Idempotent-Replayed"))

			// The same body, reformatted, replays the first answer.
			var v any
			require.NoError(t, json.Unmarshal([]byte(tt.body), &v))
			again, _ := json.MarshalIndent(v, "", "   ")
			replay := b.do(t, req{method: "POST", path: tt.path, body: string(again), header: tt.header})
			require.Equal(t, first.status, replay.status)
			require.Equal(t, "true", replay.header.Get("Idempotent-Replayed"))
			require.JSONEq(t, string(first.body), string(replay.body))

			conflict := b.do(t, req{method: "POST", path: tt.path, body: tt.other, header: tt.header})
			require.Equal(t, http.StatusConflict, conflict.status, "%s", conflict.body)
			code, msg := conflict.apiError(t)
			require.Equal(t, "conflict", code)
			require.Contains(t, msg, "different request body")

			// Keys are per token: another app's key does not collide.
			h := map[string]string{"Authorization": "Bearer " + opsToken}
			for k, v := range tt.header {
				h[k] = v
			}
			own := b.do(t, req{method: "POST", path: tt.path, body: tt.other, header: h})
			require.Equal(t, http.StatusAccepted, own.status, "%s", own.body)
			require.Empty(t, own.header.Get("Idempotent-Replayed"))
		})
	}
	require.Eventually(t, func() bool { return b.smtp.Count() >= 2 }, 15*time.Second, 20*time.Millisecond, "the first message and the other token's")
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 2, b.smtp.Count(), "one email per token: the replay sent nothing")
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tests := []struct {
		name, sent string
		echoed     bool
	}{
		{"caller's id is echoed", "req-123.abc_X", true},
		{"none sent", "", false},
		{"unsafe id is replaced", "bad id\twith spaces", false},
		{"too long is replaced", strings.Repeat("a", 65), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"/healthz", "/v1/customers/nobody", "/v1/nope"} {
				r := b.do(t, req{path: path, header: map[string]string{"X-Request-ID": tt.sent}})
				got := r.header.Get("X-Request-ID")
				require.NotEmpty(t, got)
				if tt.echoed {
					require.Equal(t, tt.sent, got)
				} else {
					require.NotEqual(t, tt.sent, got)
					require.Regexp(t, `^[0-9a-f]{16}$`, got)
				}
			}
		})
	}
}

func TestHealthReadyMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	noAuth := map[string]string{"Authorization": ""}

	r := b.do(t, req{path: "/healthz", header: noAuth})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "ok", r.json(t)["status"])

	r = b.do(t, req{path: "/readyz", header: noAuth})
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "ready", r.json(t)["status"])

	b.setReady(errors.New("redis unreachable"))
	r = b.do(t, req{path: "/readyz", header: noAuth})
	require.Equal(t, http.StatusServiceUnavailable, r.status)
	require.Equal(t, "redis unreachable", r.json(t)["reason"])
	b.setReady(nil)

	// A delivery makes herald_messages_total appear.
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)
	r = b.do(t, req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"}}`})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	require.Eventually(t, func() bool { return b.smtp.Count() == 1 }, 15*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		r = b.do(t, req{path: "/metrics", header: noAuth})
		return r.status == http.StatusOK && bytes.Contains(r.body, []byte(`herald_messages_total{channel="email"`))
	}, 5*time.Second, 20*time.Millisecond, "metrics: %s", r.body)
	require.Contains(t, string(r.body), "herald_provider_latency_seconds_bucket")
}

func TestMonitoringAuth(t *testing.T) {
	t.Parallel()
	basic := func(c *httpapi.Config) { c.MonitoringUser, c.MonitoringPassword = "ops", "s3cret-pass" }
	modes := []struct {
		name  string
		mod   []func(*httpapi.Config)
		cases []struct {
			auth   string
			status int
		}
	}{
		{"bearer tokens", nil, []struct {
			auth   string
			status int
		}{
			{"", 401},
			{"Bearer nope", 401},
			{"Bearer " + appToken, 200},
			{"Bearer " + opsToken, 200},
			{basicAuth("ops", "s3cret-pass"), 401},
		}},
		{"basic auth", []func(*httpapi.Config){basic}, []struct {
			auth   string
			status int
		}{
			{"", 401},
			{basicAuth("ops", "wrong"), 401},
			{basicAuth("nobody", "s3cret-pass"), 401},
			{"Bearer " + appToken, 401},
			{basicAuth("ops", "s3cret-pass"), 200},
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, m.mod...)
			for _, c := range m.cases {
				for _, path := range []string{"/monitoring/", "/monitoring/api/queues"} {
					r := b.do(t, req{path: path, header: map[string]string{"Authorization": c.auth}})
					require.Equal(t, c.status, r.status, "%s with %q: %s", path, c.auth, r.body)
					if c.status == 200 {
						require.Equal(t, "dashboard "+path, string(r.body))
						continue
					}
					require.NotEmpty(t, r.header.Get("WWW-Authenticate"))
					code, _ := r.apiError(t)
					require.Equal(t, "unauthorized", code)
					require.NotContains(t, string(r.body), "dashboard")
				}
			}
		})
	}
}

func TestNotMountedWithoutHandlers(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *httpapi.Config) { c.Monitoring, c.Metrics = nil, nil })
	for _, path := range []string{"/monitoring/", "/metrics"} {
		r := b.do(t, req{path: path})
		require.Equal(t, http.StatusNotFound, r.status, path)
	}
}

func basicAuth(u, p string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(u, p)
	return r.Header.Get("Authorization")
}
