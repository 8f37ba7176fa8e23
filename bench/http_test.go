package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func httpClients() int {
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_HTTP_CLIENTS")); err == nil && v > 0 {
		return v
	}
	return 16
}

const (
	httpToken     = "bench-token-0123456789"
	httpCustomers = 1000
)

// BenchmarkHTTPEvents measures POST /v1/events over loopback (4N requests): C concurrent
// keep-alive clients against httptest.NewServer(httpapi.New(...)) with a real
// engine on a fresh redis-server (the request only enqueues; no worker runs).
// It reports requests/s, p50/p99 latency and the rate of the Go client's
// Event from as many goroutines on the same Redis, and the ratio of the two.
// Any answer other than 202 fails the benchmark.
func BenchmarkHTTPEvents(b *testing.B) {
	rs := redistest.Start(b)
	rdb := rs.Client()
	pids := []int{childPID(b, "redis-server", strconv.Itoa(rs.Port())), os.Getpid()}
	e := httpEngine(b, rdb, rs.Addr)
	logger := slog.New(slog.NewJSONHandler(io.Discard, nil)) // formats every request log line, as in production
	ts := httptest.NewUnstartedServer(httpapi.New(httpapi.Config{Engine: e, Tokens: []httpapi.Token{{Name: "app", Value: httpToken}}, Logger: logger}))
	var conns atomic.Int64 // TCP connections accepted: keep-alive holds it at the number of clients
	ts.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	ts.Start()
	b.Cleanup(ts.Close)
	cl, err := client.New(rs.URL())
	require.NoError(b, err)
	b.Cleanup(func() { _ = cl.Close() })
	clients := httpClients()
	count := 4 * n()
	hc := &http.Client{
		Transport: &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute},
		Timeout:   30 * time.Second,
	}
	b.Cleanup(hc.CloseIdleConnections)

	for b.Loop() {
		// The direct Go client first, then HTTP, each on a flushed Redis
		// with the same customers.
		resetCustomers(b, rdb, cl)
		cpu0 := cpuSeconds(pids)
		direct, _ := concurrently(b, clients, count, func(i int) error {
			key, cust, data := eventArgs("direct", i)
			_, err := cl.Event(context.Background(), cust, "order.placed", data, key)
			return err
		})

		cpu1 := cpuSeconds(pids)
		resetCustomers(b, rdb, cl)
		// Warm-up: open the keep-alive connections before measuring.
		concurrently(b, clients, clients*10, func(i int) error { return postEvent(hc, ts.URL, "warm", i) })
		conns.Store(0)
		cpu2 := cpuSeconds(pids)
		rate, lat := concurrently(b, clients, count, func(i int) error { return postEvent(hc, ts.URL, "http", i) })
		cpu3 := cpuSeconds(pids)

		b.ReportMetric(rate, "http-req/s")
		b.ReportMetric(direct, "direct-events/s")
		b.ReportMetric(rate/direct*100, "%-of-direct")
		b.ReportMetric(float64(pct(lat, .5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(pct(lat, .99).Microseconds())/1000, "p99-ms")
		fmt.Printf("\nPOST /v1/events, %d requests, %d concurrent keep-alive clients, loopback, one redis-server:\n"+
			"  HTTP       %8.0f requests/s  p50 %v  p99 %v  errors 0  new connections %d\n"+
			"  Go client  %8.0f events/s (client.Event from %d goroutines)\n"+
			"  HTTP/direct %.2f\n"+
			"  CPU ms per call: HTTP redis-server %.3f, bench process (server+clients) %.3f; direct redis-server %.3f, bench process %.3f (%d CPUs)\n",
			count, clients, rate, pct(lat, .5).Round(10*time.Microsecond), pct(lat, .99).Round(10*time.Microsecond), conns.Load(),
			direct, clients, rate/direct,
			(cpu3[0]-cpu2[0])/float64(count)*1e3, (cpu3[1]-cpu2[1])/float64(count)*1e3,
			(cpu1[0]-cpu0[0])/float64(count)*1e3, (cpu1[1]-cpu0[1])/float64(count)*1e3, runtime.NumCPU())
	}
}

// httpEngine builds an engine as `herald serve` does, with an email sender
// that is never used (nothing is delivered: no worker runs).
func httpEngine(b *testing.B, rdb *redis.Client, addr string) *engine.Engine {
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	b.Cleanup(func() { _ = smtp.Close() })
	e, release := benchEngine(b, rdb, addr, smtp.URL(), nil)
	b.Cleanup(release)
	return e
}

// resetCustomers flushes Redis and creates the customers events are for.
func resetCustomers(b *testing.B, rdb *redis.Client, cl *client.Client) {
	ctx := context.Background()
	require.NoError(b, rdb.FlushAll(ctx).Err())
	enqueue(b, httpCustomers, func(i int) error {
		_, err := cl.UpsertCustomer(ctx, herald.Customer{ID: "c" + strconv.Itoa(i), Email: fmt.Sprintf("c%d@example.com", i),
			Locale: "en", Timezone: "Europe/Warsaw", Attributes: map[string]any{"first_name": "Ada", "plan": "Pro"}})
		return err
	})
}

// eventArgs is event i of a run: an order with a little data and an
// idempotency key, as an app retrying safely would send it.
func eventArgs(run string, i int) (key, customer string, data map[string]any) {
	return fmt.Sprintf("%s-order-%06d", run, i), "c" + strconv.Itoa(i%httpCustomers), map[string]any{
		"order_id": fmt.Sprintf("o-%06d", i), "total": 49.90 + float64(i%7), "currency": "EUR", "items": 1 + i%4,
		"plan": "Pro", "coupon": "SPRING24",
	}
}

// postEvent posts event i and fails unless the answer is 202.
func postEvent(hc *http.Client, base, run string, i int) error {
	key, cust, data := eventArgs(run, i)
	body := fmt.Sprintf(`{"customer_id":%q,"name":"order.placed","data":{"order_id":%q,"total":%.2f,"currency":%q,"items":%d,"plan":%q,"coupon":%q},"idempotency_key":%q}`,
		cust, data["order_id"], data["total"], data["currency"], data["items"], data["plan"], data["coupon"], key)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/events", bytes.NewReader([]byte(body)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+httpToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST /v1/events: %d %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	return nil
}

// concurrently runs f for 0..count-1 from workers goroutines and returns
// calls per second and the sorted latencies; any error fails the benchmark
// once all goroutines have stopped.
func concurrently(b *testing.B, workers, count int, f func(i int) error) (float64, []time.Duration) {
	lat := make([]time.Duration, count)
	var (
		next     atomic.Int64
		errs     atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				t := time.Now()
				if err := f(i); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat[i] = time.Since(t)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if n := errs.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed; first: %v", n, count, firstErr.Load())
	}
	slices.Sort(lat)
	return float64(count) / elapsed.Seconds(), lat
}
