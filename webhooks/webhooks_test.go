package webhooks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/webhooks"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

var secret = []byte("whsec-0123456789abcdef")

func TestSignVerify(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_790_000_000, 0)
	body := []byte(`{"id":"evt_1"}`)
	h := webhooks.Sign(secret, now, body)
	require.True(t, strings.HasPrefix(h, "t=1790000000,v1="), h)
	require.NoError(t, webhooks.Verify(secret, h, body, now.Add(time.Minute), 5*time.Minute))
	require.Error(t, webhooks.Verify(secret, h, []byte(`{"id":"evt_2"}`), now, 5*time.Minute), "another body")
	require.Error(t, webhooks.Verify([]byte("other-secret-000000"), h, body, now, 5*time.Minute), "another secret")
	require.Error(t, webhooks.Verify(secret, h, body, now.Add(10*time.Minute), 5*time.Minute), "too old: a replay")
	require.Error(t, webhooks.Verify(secret, "v1=abc", body, now, 5*time.Minute), "no timestamp")
	require.Equal(t, webhooks.EventID("message.sent", "m1"), webhooks.EventID("message.sent", "m1"))
	require.NotEqual(t, webhooks.EventID("message.sent", "m1"), webhooks.EventID("message.failed", "m1"))
}

// receiver is an app endpoint: it checks signatures and records the
// events it accepted, per customer, in arrival order.
type receiver struct {
	t       *testing.T
	fail    atomic.Int64 // answer 500 to this many more requests
	status  atomic.Int64 // the answer after that (default 200)
	tries   atomic.Int64
	mu      sync.Mutex
	byID    map[string]int
	order   map[string][]string
	badSigs int
}

func newReceiver(t *testing.T) (*receiver, *httptest.Server) {
	r := &receiver{t: t, byID: map[string]int{}, order: map[string][]string{}}
	r.status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.tries.Add(1)
		body, _ := io.ReadAll(req.Body)
		if r.fail.Add(-1) >= 0 {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		if s := int(r.status.Load()); s != http.StatusOK {
			w.WriteHeader(s)
			return
		}
		var ev webhooks.Event
		r.mu.Lock()
		defer r.mu.Unlock()
		if webhooks.Verify(secret, req.Header.Get(webhooks.SignatureHeader), body, time.Now(), 5*time.Minute) != nil || json.Unmarshal(body, &ev) != nil {
			r.badSigs++
			http.Error(w, "bad signature", http.StatusBadRequest)
			return
		}
		r.byID[ev.ID]++
		r.order[ev.CustomerID] = append(r.order[ev.CustomerID], ev.ID)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return r, srv
}

type rig struct {
	svc  *webhooks.Service
	insp *asynq.Inspector
	reg  *prometheus.Registry
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// start runs a webhook worker on a fresh Redis with retries a few
// milliseconds apart, so a failing endpoint is retried at once.
func start(t *testing.T, url string, events ...string) *rig {
	t.Helper()
	rs := redistest.Start(t)
	rdb := rs.Client()
	conn := asynq.RedisClientOpt{Addr: rs.Addr}
	r := &rig{reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	var err error
	r.svc, err = webhooks.New(webhooks.Options{
		Endpoints: []webhooks.Endpoint{{Name: "app", URL: url, Events: events, Secret: secret}},
		Redis:     rdb, RedisConn: conn, RetryBase: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond,
		Registerer: r.reg, Logger: slog.New(slog.NewTextHandler(r.logs, nil)),
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.svc.Close() })
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{wire.QueueWebhooks: 1},
		RetryDelayFunc: func(n int, err error, task *asynq.Task) time.Duration {
			d, _ := r.svc.RetryDelay(n, err, task)
			return d
		},
		IsFailure:         func(err error) bool { return !webhooks.IsBusy(err) },
		TaskCheckInterval: 10 * time.Millisecond, DelayedTaskCheckInterval: 50 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	})
	mux := asynq.NewServeMux()
	r.svc.Register(mux)
	require.NoError(t, srv.Start(mux))
	t.Cleanup(srv.Shutdown)
	r.insp = asynq.NewInspectorFromRedisClient(rdb)
	return r
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 10*time.Millisecond, msg)
}

// An endpoint that fails for a while, then recovers, gets every event once
// by ID, signed, in the order the events happened for each customer.
func TestDeliveryRetriesInOrderOnce(t *testing.T) {
	t.Parallel()
	rcv, hs := newReceiver(t)
	rcv.fail.Store(40)
	r := start(t, hs.URL, webhooks.MessageSent, webhooks.JourneyStarted)
	ctx := context.Background()

	const customers, per = 4, 8
	want := map[string][]string{}
	for i := range per {
		for c := range customers {
			cust := fmt.Sprintf("c%d", c)
			ev := webhooks.Event{
				ID: webhooks.EventID(webhooks.MessageSent, cust, fmt.Sprint(i)), Type: webhooks.MessageSent,
				CustomerID: cust, Message: &webhooks.Message{ID: fmt.Sprintf("m%d", i), Channel: "email", Template: "welcome"},
			}
			r.svc.Emit(ctx, ev)
			r.svc.Emit(ctx, ev) // a retried producer: the same event again
			want[cust] = append(want[cust], ev.ID)
		}
	}
	// A type the endpoint did not subscribe to is not sent.
	r.svc.Emit(ctx, webhooks.Event{ID: "evt_other", Type: webhooks.MessageFailed, CustomerID: "c0"})

	eventually(t, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return len(rcv.byID) == customers*per
	}, "every event delivered")
	eventually(t, func() bool {
		info, err := r.insp.GetQueueInfo(wire.QueueWebhooks)
		return err == nil && info.Pending+info.Active+info.Retry+info.Scheduled == 0
	}, "every task done")

	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	require.GreaterOrEqual(t, rcv.tries.Load(), int64(40+customers*per), "the endpoint failed first")
	require.Zero(t, rcv.badSigs)
	for id, n := range rcv.byID {
		require.Equal(t, 1, n, "event %s accepted %d times", id, n)
	}
	require.Equal(t, want, rcv.order, "per-customer order")
	info, err := r.insp.GetQueueInfo(wire.QueueWebhooks)
	require.NoError(t, err)
	require.Zero(t, info.Archived)
	require.InDelta(t, float64(customers*per), counter(t, r.reg, "herald_webhook_deliveries_total", "delivered"), 0)
}

// A 410 Gone disables the endpoint: a log line, a metric, and no more
// requests for later events.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	rcv, hs := newReceiver(t)
	rcv.status.Store(http.StatusGone)
	r := start(t, hs.URL, webhooks.JourneyStarted)
	ctx := context.Background()
	r.svc.Emit(ctx, webhooks.Event{ID: "evt_1", Type: webhooks.JourneyStarted, CustomerID: "c1", Journey: &webhooks.Journey{ID: "j1", Workflow: "w"}})
	eventually(t, func() bool { return strings.Contains(r.logs.String(), "answered 410 Gone and is disabled") }, "disabled with a log line")
	require.InDelta(t, 1, counter(t, r.reg, "herald_webhook_endpoints_disabled_total", ""), 0)
	tries := rcv.tries.Load()
	r.svc.Emit(ctx, webhooks.Event{ID: "evt_2", Type: webhooks.JourneyStarted, CustomerID: "c1", Journey: &webhooks.Journey{ID: "j2", Workflow: "w"}})
	r.svc.Emit(ctx, webhooks.Event{ID: "evt_3", Type: webhooks.JourneyStarted, CustomerID: "c2", Journey: &webhooks.Journey{ID: "j3", Workflow: "w"}})
	eventually(t, func() bool {
		info, err := r.insp.GetQueueInfo(wire.QueueWebhooks)
		return err == nil && info.Pending+info.Active+info.Retry+info.Scheduled == 0 && info.Processed >= 3
	}, "later events handled")
	require.Equal(t, tries, rcv.tries.Load(), "a disabled endpoint gets no more requests")
	require.Equal(t, 1, strings.Count(r.logs.String(), "410 Gone and is disabled"), "one log line")
}

// counter reads a counter of the registry by name and, when result is
// set, by its result label.
func counter(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if result == "" || (l.GetName() == "result" && l.GetValue() == result) {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q}", name, result)
	return 0
}

// Retries span the whole day an event is retried for.
func TestRetriesSpanTheWindow(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	svc, err := webhooks.New(webhooks.Options{Redis: rs.Client(), RedisConn: asynq.RedisClientOpt{Addr: rs.Addr}})
	require.NoError(t, err)
	defer svc.Close()
	task := asynq.NewTask(webhooks.TaskType, nil)
	var total time.Duration
	n := 0
	for ; total < 24*time.Hour; n++ {
		d, ok := svc.RetryDelay(n, fmt.Errorf("500"), task)
		require.True(t, ok)
		require.LessOrEqual(t, d, time.Hour)
		total += d
	}
	require.Less(t, n, 40)
	_, ok := svc.RetryDelay(0, nil, asynq.NewTask("herald:message", nil))
	require.False(t, ok, "other tasks keep their backoff")
}

// An event its endpoint refused for the whole retry window is given up:
// its task is archived (the dashboard shows it, with the event), and
// later events of the customer go through.
func TestGivenUpEventIsArchived(t *testing.T) {
	t.Parallel()
	rcv, hs := newReceiver(t)
	rcv.fail.Store(1 << 40) // down until told otherwise
	r := start(t, hs.URL, webhooks.JourneyStarted)
	ctx := context.Background()
	r.svc.Emit(ctx, webhooks.Event{ID: "evt_lost", Type: webhooks.JourneyStarted, CustomerID: "c1", At: time.Now().Add(-24*time.Hour + time.Second)}) // a second of its window left
	eventually(t, func() bool {
		info, err := r.insp.GetQueueInfo(wire.QueueWebhooks)
		return err == nil && info.Archived == 1
	}, "the given-up event's task is archived")
	archived, err := r.insp.ListArchivedTasks(wire.QueueWebhooks)
	require.NoError(t, err)
	require.Contains(t, string(archived[0].Payload), `"id":"evt_lost"`)
	require.Contains(t, archived[0].LastErr, "given up after 24h0m0s of failures")

	rcv.fail.Store(0)
	r.svc.Emit(ctx, webhooks.Event{ID: "evt_next", Type: webhooks.JourneyStarted, CustomerID: "c1"})
	eventually(t, func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		return rcv.byID["evt_next"] == 1
	}, "the next event is delivered")
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	require.Zero(t, rcv.byID["evt_lost"])
}
