package bench

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const concurrency = 20

func n() int {
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_N")); err == nil && v > 0 {
		return v
	}
	return 5000
}

func serverConfig(e *engine.Engine) asynq.Config {
	c := asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{"critical": 6, "email": 4, "slack": 4, "default": 3, "bulk": 1},
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: 200 * time.Millisecond,
		LogLevel:                 asynq.FatalLevel,
	}
	if e != nil {
		c.RetryDelayFunc, c.IsFailure = e.RetryDelay, e.IsFailure
	}
	c.ErrorHandler = asynq.ErrorHandlerFunc(func(_ context.Context, t *asynq.Task, err error) {
		key := strings.Map(func(r rune) rune {
			if r >= '0' && r <= '9' {
				return '#'
			}
			return r
		}, t.Type()+": "+err.Error())
		key = key[:min(len(key), 100)]
		v, _ := taskErrors.LoadOrStore(key, new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	})
	return c
}

// taskErrors counts task errors by message, printed with HERALD_BENCH_VERBOSE.
var taskErrors sync.Map

func printErrors() {
	if os.Getenv("HERALD_BENCH_VERBOSE") == "" {
		return
	}
	taskErrors.Range(func(k, v any) bool {
		fmt.Printf("  task errors: %6d  %s\n", v.(*atomic.Int64).Load(), k)
		return true
	})
}

// bareAsynq enqueues count no-op tasks and processes them, both at once, and
// returns tasks per second.
func bareAsynq(b *testing.B, rdb *redis.Client, count int) float64 {
	require.NoError(b, rdb.FlushAll(context.Background()).Err())
	var done atomic.Int64
	finished := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(count) {
			close(finished)
		}
		return nil
	})
	srv := asynq.NewServerFromRedisClient(rdb, serverConfig(nil))
	cl := asynq.NewClientFromRedisClient(rdb)
	start := time.Now()
	require.NoError(b, srv.Start(mux))
	enqueue(b, count, func(i int) error {
		_, err := cl.Enqueue(asynq.NewTask("noop", []byte(`{"i":`+strconv.Itoa(i)+`}`)), asynq.Queue("default"))
		return err
	})
	<-finished
	elapsed := time.Since(start)
	srv.Shutdown()
	return float64(count) / elapsed.Seconds()
}

// enqueue runs f for 0..count-1 from a few goroutines, as several app
// processes would.
func enqueue(b *testing.B, count int, f func(i int) error) {
	var wg sync.WaitGroup
	var next atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				if err := f(i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// load runs f for 0..count-1: at pace calls per second, or (pace 0) as
// fast as a few goroutines can.
func load(b *testing.B, count int, pace float64, f func(i int) error) {
	if pace <= 0 {
		enqueue(b, count, f)
		return
	}
	tick := time.NewTicker(time.Duration(float64(time.Second) / pace))
	defer tick.Stop()
	for i := range count {
		<-tick.C
		go func() {
			if err := f(i); err != nil {
				b.Error(err)
			}
		}()
	}
}

// heraldMessages sends count one-off messages through herald (message task,
// policy, delivery task, render, SMTP) and returns messages per second and
// the enqueue→DATA latencies.
func heraldMessages(b *testing.B, rdb *redis.Client, addr string, count int, pace float64) (float64, []time.Duration) {
	ctx := context.Background()
	require.NoError(b, rdb.FlushAll(ctx).Err())
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	defer smtp.Close()
	ec, err := email.ParseURL(smtp.URL())
	require.NoError(b, err)
	ec.From, ec.Pool = "Lumen <hello@lumen.example>", 8
	es, err := email.New(ec)
	require.NoError(b, err)
	defer es.Close()
	tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
	require.NoError(b, err)
	e, err := engine.New(engine.Options{
		Redis: rdb, RedisConn: asynq.RedisClientOpt{Addr: addr},
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: es},
		Templates: tset, Policy: preferences.Policy{Topics: map[string]herald.Topic{"onboarding": {Name: "onboarding", OptIn: true}}},
		PublicURL: "https://herald.example.com", SigningKey: []byte("0123456789abcdef0123456789abcdef"),
	})
	require.NoError(b, err)
	defer e.Close()
	const customers = 100
	for i := range customers {
		_, _, err := e.Store().UpsertCustomer(ctx, herald.Customer{ID: fmt.Sprintf("c%d", i), Email: fmt.Sprintf("c%d@example.com", i), Attributes: map[string]any{"first_name": "Ada"}})
		require.NoError(b, err)
	}

	sentAt := make([]atomic.Int64, count)
	recvAt := make([]atomic.Int64, count)
	index := map[string]int{}
	for i := range count {
		index[email.MessageID(fmt.Sprintf("m%d:email", i), "lumen.example")] = i
	}
	var got atomic.Int64
	finished := make(chan struct{})
	smtp.OnReceive(func(r smtpserver.Received) {
		if i, ok := index[r.MessageID]; ok {
			recvAt[i].Store(time.Now().UnixNano())
		}
		if got.Add(1) == int64(count) {
			close(finished)
		}
	})
	srv := asynq.NewServerFromRedisClient(rdb, serverConfig(e))
	start := time.Now()
	require.NoError(b, srv.Start(e.Mux()))
	send := func(i int) error {
		sentAt[i].Store(time.Now().UnixNano())
		_, err := e.Send(ctx, wire.Message{ID: fmt.Sprintf("m%d", i), CustomerID: fmt.Sprintf("c%d", i%customers), Template: "hello", Topic: "onboarding", Data: map[string]any{"plan": "Pro"}, Channels: []herald.Channel{herald.ChannelEmail}})
		return err
	}
	load(b, count, pace, send)
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d messages arrived", got.Load(), count)
	}
	elapsed := time.Since(start)
	srv.Shutdown()
	lat := make([]time.Duration, 0, count)
	for i := range count {
		if r := recvAt[i].Load(); r > 0 {
			lat = append(lat, time.Duration(r-sentAt[i].Load()))
		}
	}
	slices.Sort(lat)
	return float64(count) / elapsed.Seconds(), lat
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// BenchmarkMessagePath compares herald's one-off message path with bare
// asynq on one fresh redis-server. A message is two tasks (orchestration,
// delivery), so 50% of bare asynq's task rate is the ceiling.
func BenchmarkMessagePath(b *testing.B) {
	rs := redistest.Start(b)
	rdb := rs.Client()
	count := n()
	for b.Loop() {
		bare := bareAsynq(b, rdb, count)
		rate, _ := heraldMessages(b, rdb, rs.Addr, count, 0)
		ratio := rate / bare
		// Latency under a steady load at half the measured capacity: with
		// everything enqueued at once it would only measure the backlog.
		paced := rate / 2
		_, lat := heraldMessages(b, rdb, rs.Addr, min(count, int(paced*10)+1), paced)
		b.ReportMetric(bare, "asynq-tasks/s")
		b.ReportMetric(rate, "herald-msgs/s")
		b.ReportMetric(ratio*100, "%-of-asynq")
		b.ReportMetric(float64(pct(lat, .5).Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(pct(lat, .99).Microseconds())/1000, "p99-ms")
		fmt.Printf("\nmessage path, N=%d, concurrency %d, one redis-server:\n  bare asynq  %8.0f tasks/s (no-op handler, enqueue and process together)\n  herald      %8.0f messages/s delivered to SMTP (%.0f%% of bare asynq; ceiling 50%%)\n  latency enqueue→SMTP DATA at a steady %.0f messages/s: p50 %v, p99 %v\n",
			count, concurrency, bare, rate, ratio*100, paced, pct(lat, .5).Round(time.Millisecond), pct(lat, .99).Round(time.Millisecond))
	}
}
