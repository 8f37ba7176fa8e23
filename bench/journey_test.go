package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

type journeyRig struct {
	e    *engine.Engine
	smtp *smtpserver.Server
	srv  *asynq.Server
}

func newJourneyRig(b *testing.B, rdb *redis.Client, addr string) *journeyRig {
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	ec, err := email.ParseURL(smtp.URL())
	require.NoError(b, err)
	ec.From, ec.Pool = "Lumen <hello@lumen.example>", 8
	es, err := email.New(ec)
	require.NoError(b, err)
	tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
	require.NoError(b, err)
	wset, err := workflows.Load(os.DirFS("testdata/workflows"), workflows.LoadOptions{TemplateExists: tset.Has})
	require.NoError(b, err)
	e, err := engine.New(engine.Options{
		Redis: rdb, RedisConn: asynq.RedisClientOpt{Addr: addr},
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: es},
		Templates: tset, Workflows: wset,
		Policy:    preferences.Policy{Topics: map[string]herald.Topic{"onboarding": {Name: "onboarding", OptIn: true}}},
		PublicURL: "https://herald.example.com", SigningKey: []byte("0123456789abcdef0123456789abcdef"),
	})
	require.NoError(b, err)
	b.Cleanup(func() { e.Close(); es.Close(); smtp.Close() })
	return &journeyRig{e: e, smtp: smtp}
}

func (r *journeyRig) start(b *testing.B, rdb *redis.Client) {
	r.srv = asynq.NewServerFromRedisClient(rdb, serverConfig(r.e))
	require.NoError(b, r.srv.Start(r.e.Mux()))
}

func customers(b *testing.B, e *engine.Engine, n int) {
	ctx := context.Background()
	enqueue(b, n, func(i int) error {
		_, _, err := e.Store().UpsertCustomer(ctx, herald.Customer{ID: "c" + strconv.Itoa(i), Email: fmt.Sprintf("c%d@example.com", i), Attributes: map[string]any{"first_name": "Ada"}})
		return err
	})
}

// BenchmarkJourneys runs N customers through a two-step workflow (send, wait
// 1 s, send) and reports messages/s against bare asynq, how late follow-ups
// fire after their due time, and Redis memory per waiting journey.
func BenchmarkJourneys(b *testing.B) {
	rs := redistest.Start(b)
	rdb := rs.Client()
	count := n() / 2 // two messages per journey
	for b.Loop() {
		bare := bareAsynq(b, rdb, n())

		rate, _ := runJourneys(b, rdb, rs.Addr, count, 0)
		// Lateness under a steady load at half the measured capacity; with
		// every journey started at once it would only measure the backlog.
		paced := rate / 2 / 2 // journeys/s: two messages each
		_, late := runJourneys(b, rdb, rs.Addr, min(count, int(paced*10)+1), paced)
		printErrors()

		perJourney := memoryPerWaitingJourney(b, rdb, rs.Addr)

		b.ReportMetric(rate, "herald-msgs/s")
		b.ReportMetric(rate/bare*100, "%-of-asynq")
		b.ReportMetric(float64(pct(late, .5).Milliseconds()), "late-p50-ms")
		b.ReportMetric(float64(pct(late, .99).Milliseconds()), "late-p99-ms")
		b.ReportMetric(perJourney, "bytes/waiting-journey")
		fmt.Printf("\njourneys, %d customers x (send, wait 1s, send), concurrency %d:\n  bare asynq  %8.0f tasks/s\n  herald      %8.0f messages/s (%.0f%% of bare asynq; a journey message here is 3 tasks: event or wake-up, message, delivery)\n  follow-ups fire after their due time at a steady %.0f journeys/s: p50 %v, p99 %v\n  Redis memory per waiting journey: %.0f bytes\n",
			count, concurrency, bare, rate, rate/bare*100, paced, pct(late, .5).Round(time.Millisecond), pct(late, .99).Round(time.Millisecond), perJourney)
	}
}

// runJourneys starts count journeys (all at once, or pace per second) and
// waits for their 2*count messages; it returns messages/s and lateness.
func runJourneys(b *testing.B, rdb *redis.Client, addr string, count int, pace float64) (float64, []time.Duration) {
	ctx := context.Background()
	require.NoError(b, rdb.FlushAll(ctx).Err())
	r := newJourneyRig(b, rdb, addr)
	customers(b, r.e, count)
	var got atomic.Int64
	done := make(chan struct{})
	r.smtp.OnReceive(func(smtpserver.Received) {
		if got.Add(1) == int64(2*count) {
			close(done)
		}
	})
	r.start(b, rdb)
	start := time.Now()
	event := func(i int) error {
		_, err := r.e.Event(ctx, herald.Event{CustomerID: "c" + strconv.Itoa(i), Name: "bench.started", Data: map[string]any{"plan": "Pro"}}, "bench")
		return err
	}
	load(b, count, pace, event)
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d messages arrived", got.Load(), 2*count)
	}
	elapsed := time.Since(start)
	r.srv.Shutdown()
	return float64(2*count) / elapsed.Seconds(), lateness(b, r.e, count)
}

// lateness reads each journey's history: the wait began at "wait" and was
// due one second later; "timeout" is when the wake-up acted.
func lateness(b *testing.B, e *engine.Engine, count int) []time.Duration {
	ctx := context.Background()
	var out []time.Duration
	for i := range count {
		js, err := e.Journeys(ctx, "c"+strconv.Itoa(i))
		require.NoError(b, err)
		for _, j := range js {
			var waited, woke time.Time
			for _, h := range j.History {
				switch h.Kind {
				case "wait":
					waited = h.At
				case "timeout":
					woke = h.At
				}
			}
			if !waited.IsZero() && !woke.IsZero() {
				out = append(out, woke.Sub(waited.Add(time.Second)))
			}
		}
	}
	slices.Sort(out)
	return out
}

var usedMemory = regexp.MustCompile(`(?m)^used_memory:(\d+)`)

func memory(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(b, err)
	m := usedMemory.FindStringSubmatch(info)
	require.Len(b, m, 2)
	v, _ := strconv.ParseInt(m[1], 10, 64)
	return v
}

// memoryPerWaitingJourney parks HERALD_BENCH_JOURNEYS (default 100000)
// journeys in a one-hour wait and divides the growth of Redis's used_memory
// by their number. Customers exist before the first reading: their profile
// is not the journey's cost.
func memoryPerWaitingJourney(b *testing.B, rdb *redis.Client, addr string) float64 {
	ctx := context.Background()
	count := 100000
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_JOURNEYS")); err == nil && v > 0 {
		count = v
	}
	require.NoError(b, rdb.FlushAll(ctx).Err())
	r := newJourneyRig(b, rdb, addr)
	customers(b, r.e, count)
	before := memory(b, rdb)
	r.start(b, rdb)
	enqueue(b, count, func(i int) error {
		_, err := r.e.Event(ctx, herald.Event{CustomerID: "c" + strconv.Itoa(i), Name: "bench.parked"}, "bench")
		return err
	})
	deadline := time.Now().Add(10 * time.Minute)
	for {
		n, err := rdb.ZCard(ctx, "herald:journeys:waiting").Result()
		require.NoError(b, err)
		if n == int64(count) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d journeys waiting", n, count)
		}
		time.Sleep(200 * time.Millisecond)
	}
	r.srv.Shutdown()
	after := memory(b, rdb)
	if os.Getenv("HERALD_BENCH_VERBOSE") != "" {
		breakdown(b, rdb)
	}
	return float64(after-before) / float64(count)
}

// breakdown prints the memory of one customer's keys, to see where a
// journey's bytes go.
func breakdown(b *testing.B, rdb *redis.Client) {
	ctx := context.Background()
	keys, _ := rdb.Keys(ctx, "herald:{c:c1}:*").Result()
	for _, k := range keys {
		n, _ := rdb.MemoryUsage(ctx, k).Result()
		fmt.Printf("  %6d  %s\n", n, k)
	}
	tasks, _ := rdb.Keys(ctx, "asynq:{critical}:t:*").Result()
	if len(tasks) > 0 {
		n, _ := rdb.MemoryUsage(ctx, tasks[0]).Result()
		v, _ := rdb.HGetAll(ctx, tasks[0]).Result()
		raw, _ := json.Marshal(v)
		fmt.Printf("  %6d  %s (%s…)\n", n, tasks[0], strings.ReplaceAll(string(raw[:min(len(raw), 80)]), "\n", " "))
	}
}
