package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// A request cut off after it took its idempotency key (Redis failing, a
// crash) leaves the key pending. The client's retry is not refused with
// 409: it gets 503 with Retry-After while the key is held, and succeeds
// once the pending record has run out, within seconds.
func TestRetryAfterAnUnfinishedRequestSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.do(t, req{method: "PUT", path: "/v1/customers/c1", body: `{"email":"ada@example.com"}`})
	body := `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-9"}`

	// What the cut-off request left behind: its pending record.
	_, seen, err := redisstore.New(b.rdb, nil).Remember(context.Background(), "app\x00/v1/messages\x00order-9",
		redisstore.Idempotent{Fingerprint: fingerprint(t, body)}, 3*time.Second)
	require.NoError(t, err)
	require.False(t, seen)

	busy := b.do(t, req{method: "POST", path: "/v1/messages", body: body})
	require.Equal(t, http.StatusServiceUnavailable, busy.status, "%s", busy.body)
	require.Equal(t, "1", busy.header.Get("Retry-After"))

	// The client retries as told until the pending record runs out.
	ok := busy
	for deadline := time.Now().Add(15 * time.Second); ok.status == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		ok = b.do(t, req{method: "POST", path: "/v1/messages", body: body})
	}
	require.Equal(t, http.StatusAccepted, ok.status, "%s", ok.body)

	// A different body under the same key is still a conflict.
	other := b.do(t, req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Team"},"channels":["email"],"idempotency_key":"order-9"}`})
	require.Equal(t, http.StatusConflict, other.status)
}

// fingerprint is the idempotency record's fingerprint of a request body:
// its JSON without the key, re-encoded.
func fingerprint(t *testing.T, body string) string {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	delete(v, "idempotency_key")
	canon, err := json.Marshal(v)
	require.NoError(t, err)
	fp := sha256.Sum256(canon)
	return hex.EncodeToString(fp[:])
}

// stopOnce kills redis-server just before the first command that matches,
// or just after the first pipeline holding one, so a request dies halfway:
// after it took its idempotency key.
type stopOnce struct {
	match func(redis.Cmder) bool
	stop  func()
	done  atomic.Bool
}

func (h *stopOnce) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *stopOnce) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		if slices.ContainsFunc(cmds, h.match) && h.done.CompareAndSwap(false, true) {
			h.stop()
		}
		return err
	}
}
func (h *stopOnce) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.match(cmd) && h.done.CompareAndSwap(false, true) {
			h.stop()
		}
		return next(ctx, cmd)
	}
}

// A real outage in the middle of a request: redis-server dies after the
// request took its idempotency key and before the message was queued. The
// client gets 503 with Retry-After; once Redis is back (its data on disk,
// the pending key with it), the same request succeeds within seconds, and
// the message is queued once.
func TestIdempotencySurvivesRedisRestartMidRequest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.do(t, req{method: "PUT", path: "/v1/customers/c1", body: `{"email":"ada@example.com"}`})
	body := `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-10"}`
	hook := &stopOnce{
		// The customer is read in the round trip that takes the key;
		// Redis goes down right after it.
		match: func(c redis.Cmder) bool {
			return c.Name() == "exists" && strings.HasSuffix(fmt.Sprint(c.Args()[1]), "}:customer")
		},
		stop: b.rs.Stop,
	}
	b.rdb.AddHook(hook)
	cut := b.do(t, req{method: "POST", path: "/v1/messages", body: body})
	require.True(t, hook.done.Load(), "the outage hit mid-request")
	require.Equal(t, http.StatusServiceUnavailable, cut.status, "%s", cut.body)
	require.NotEmpty(t, cut.header.Get("Retry-After"))

	b.rs.Restart()
	ok := cut
	for deadline := time.Now().Add(20 * time.Second); ok.status != http.StatusAccepted && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		ok = b.do(t, req{method: "POST", path: "/v1/messages", body: body})
		require.NotEqual(t, http.StatusConflict, ok.status, "a retry of the same body is never a conflict: %s", ok.body)
		if ok.status == http.StatusServiceUnavailable {
			require.NotEmpty(t, ok.header.Get("Retry-After"))
		}
	}
	require.Equal(t, http.StatusAccepted, ok.status, "%s", ok.body)
	again := b.do(t, req{method: "POST", path: "/v1/messages", body: body})
	require.Equal(t, http.StatusAccepted, again.status)
	require.JSONEq(t, string(ok.body), string(again.body), "the repeat gets the first answer")
}

// The customer is read in the round trip that takes the idempotency key.
// A request for a customer that does not exist gets 404 and leaves nothing
// behind: once the customer is created, the same request (same key, same
// body) is accepted, and its repeat gets that answer.
func TestIdempotentRequestForUnknownCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	requests := []struct{ path, body string }{
		{"/v1/messages", `{"customer_id":"c7","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-7"}`},
		{"/v1/events", `{"customer_id":"c8","name":"order.placed","idempotency_key":"order-8"}`},
	}
	for _, tc := range requests {
		missing := b.do(t, req{method: "POST", path: tc.path, body: tc.body})
		require.Equal(t, http.StatusNotFound, missing.status, "%s: %s", tc.path, missing.body)
		again := b.do(t, req{method: "POST", path: tc.path, body: tc.body})
		require.Equal(t, http.StatusNotFound, again.status, "%s: %s", tc.path, again.body)
		require.Empty(t, again.header.Get("Idempotent-Replayed"), "%s: a refusal is not kept as the answer", tc.path)
	}
	b.do(t, req{method: "PUT", path: "/v1/customers/c7", body: `{"email":"c7@example.com"}`})
	b.do(t, req{method: "PUT", path: "/v1/customers/c8", body: `{"email":"c8@example.com"}`})
	for _, tc := range requests {
		ok := b.do(t, req{method: "POST", path: tc.path, body: tc.body})
		require.Equal(t, http.StatusAccepted, ok.status, "%s: %s", tc.path, ok.body)
		again := b.do(t, req{method: "POST", path: tc.path, body: tc.body})
		require.Equal(t, http.StatusAccepted, again.status, "%s: %s", tc.path, again.body)
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
		require.JSONEq(t, string(ok.body), string(again.body))
	}
}

// A message or event request with a key stores its answer when it takes
// the key (the ID comes from the key), before it queues anything. A request
// cut off in between leaves that answer behind: the client's retry must
// queue the message or event rather than replay an answer for something
// that does not exist, and only later repeats replay it. It is acted on
// once.
func TestKnownAnswerReplayedOnlyOnceQueued(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)
	// timelineLines counts the customer's timeline lines about ref.
	timelineLines := func(ref string) int {
		var tl struct {
			Entries []struct{ Ref string } `json:"entries"`
		}
		r := b.do(t, req{path: "/v1/customers/c1/timeline"})
		require.NoError(t, json.Unmarshal(r.body, &tl))
		n := 0
		for _, e := range tl.Entries {
			if e.Ref == ref {
				n++
			}
		}
		return n
	}
	insp := asynq.NewInspectorFromRedisClient(b.rdb)
	for _, tc := range []struct {
		path, key, body, id string
		done                func() int // how many times it was acted on: sent, recorded
	}{
		{"/v1/messages", "order-11", `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-11"}`,
			redisstore.KeyedID("m_", "app", "order-11"), b.smtp.Count},
		{"/v1/events", "evt-11", `{"customer_id":"c1","name":"trial.started","data":{"plan":"Pro"},"idempotency_key":"evt-11"}`,
			redisstore.KeyedID("e_", "c1", "evt-11"), func() int { return timelineLines(redisstore.KeyedID("e_", "c1", "evt-11")) }},
	} {
		// What the cut-off request left behind: the answer it would have given.
		answer, _ := json.Marshal(map[string]string{"id": tc.id, "status": "accepted"})
		_, seen, err := redisstore.New(b.rdb, nil).Remember(context.Background(), "app\x00"+tc.path+"\x00"+tc.key,
			redisstore.Idempotent{Fingerprint: fingerprint(t, tc.body), Status: http.StatusAccepted, Body: answer, Provisional: true}, time.Hour)
		require.NoError(t, err)
		require.False(t, seen)

		retry := b.do(t, req{method: "POST", path: tc.path, body: tc.body})
		require.Equal(t, http.StatusAccepted, retry.status, "%s: %s", tc.path, retry.body)
		require.Empty(t, retry.header.Get("Idempotent-Replayed"), "%s: it was never queued: the request runs", tc.path)
		require.JSONEq(t, string(answer), string(retry.body))
		require.Eventually(t, func() bool { return tc.done() == 1 }, 15*time.Second, 20*time.Millisecond, "%s: acted on", tc.path)

		again := b.do(t, req{method: "POST", path: tc.path, body: tc.body})
		require.Equal(t, http.StatusAccepted, again.status, "%s: %s", tc.path, again.body)
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"), tc.path)
		require.JSONEq(t, string(answer), string(again.body))
		require.Eventually(t, func() bool {
			info, err := insp.GetQueueInfo("default")
			return err == nil && info.Pending == 0 && info.Active == 0 && info.Retry == 0
		}, 15*time.Second, 20*time.Millisecond, "%s: nothing left to run", tc.path)
		require.Equal(t, 1, tc.done(), "%s: acted on once", tc.path)
	}
	require.True(t, redisstore.EventQueued(context.Background(), b.rdb, "c1", redisstore.KeyedID("e_", "c1", "evt-11")))
}

// A message or event request with a key writes its idempotency record
// once: the answer is in it from the start.
func TestKnownAnswerWrittenOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.do(t, req{method: "PUT", path: "/v1/customers/c1", body: `{"email":"ada@example.com"}`})
	var writes atomic.Int64
	b.rdb.AddHook(countIdemWrites{&writes})
	for _, r := range []req{
		{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-12"}`},
		{method: "POST", path: "/v1/events", body: `{"customer_id":"c1","name":"trial.started","idempotency_key":"evt-12"}`},
	} {
		writes.Store(0)
		first := b.do(t, r)
		require.Equal(t, http.StatusAccepted, first.status, "%s", first.body)
		require.EqualValues(t, 1, writes.Load(), "%s: one write of the idempotency record", r.path)
		// While it is queued or once it has run, a repeat replays.
		again := b.do(t, r)
		require.Equal(t, "true", again.header.Get("Idempotent-Replayed"), r.path)
		require.JSONEq(t, string(first.body), string(again.body))
	}
}

// countIdemWrites counts the commands that write an idempotency record.
type countIdemWrites struct{ n *atomic.Int64 }

func (h countIdemWrites) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countIdemWrites) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h countIdemWrites) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}
func (h countIdemWrites) count(c redis.Cmder) {
	if c.Name() == "set" && strings.HasPrefix(fmt.Sprint(c.Args()[1]), "herald:idem:") {
		h.n.Add(1)
	}
}

// A 5xx answer tells the client only to retry; the log says why, under the
// request's ID.
func TestServerErrorCauseIsLogged(t *testing.T) {
	t.Parallel()
	logs := &logbuf.Buffer{}
	b := setup(t, func(c *httpapi.Config) { c.Logger = slog.New(slog.NewJSONHandler(logs, nil)) })
	b.do(t, req{method: "PUT", path: "/v1/customers/c1", body: `{"email":"ada@example.com"}`})
	b.rs.Stop()
	r := b.do(t, req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"]}`})
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	_, msg := r.apiError(t)
	require.NotContains(t, msg, "127.0.0.1", "the client is not told the cause")
	var found map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var l map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &l), line)
		if l["msg"] == "request failed" {
			found = l
		}
	}
	require.NotNil(t, found, "a log line for the failed request: %s", logs.String())
	require.Equal(t, "WARN", found["level"])
	require.Equal(t, r.header.Get("X-Request-ID"), found["request_id"])
	require.Equal(t, "/v1/messages", found["path"])
	require.EqualValues(t, 503, found["status"])
	require.Contains(t, found["err"], "redis", "the cause: %v", found["err"])
}
