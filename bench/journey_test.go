package bench

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

type journeyRig struct {
	e         *engine.Engine
	smtp      *smtpserver.Server
	srv       *engine.Worker
	stopWaker func()
	release   func()
}

// newJourneyRig builds an engine with bench/testdata/workflows and an
// in-process SMTP server; close releases both.
func newJourneyRig(b *testing.B, rdb *redis.Client, addr string) *journeyRig {
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
	require.NoError(b, err)
	wset, err := workflows.Load(os.DirFS("testdata/workflows"), workflows.LoadOptions{TemplateExists: tset.Has})
	require.NoError(b, err)
	e, release := benchEngine(b, rdb, addr, smtp.URL(), wset)
	return &journeyRig{e: e, smtp: smtp, release: release}
}

// start runs a worker: the asynq server and the waker.
func (r *journeyRig) start(b *testing.B, rdb *redis.Client) {
	r.srv = engine.NewWorker(rdb, serverConfig(r.e), 0)
	require.NoError(b, r.srv.Start(r.e.Mux()))
	r.stopWaker = r.e.StartWaker(context.Background())
}

// stop ends the worker started by start.
func (r *journeyRig) stop() {
	r.stopWaker()
	r.srv.Shutdown()
}

func (r *journeyRig) close() {
	r.release()
	_ = r.smtp.Close()
}

// fillPool makes rdb open every connection its pool may hold.
func fillPool(b *testing.B, rdb *redis.Client) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for range rdb.Options().PoolSize {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rdb.Do(ctx, "BLPOP", "bench:nothing", "0.2").Err(); err != nil && err != redis.Nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
}

func customers(b *testing.B, e *engine.Engine, n int) {
	ctx := context.Background()
	enqueue(b, n, func(i int) error {
		_, _, err := e.Store().UpsertCustomer(ctx, herald.Customer{ID: "c" + strconv.Itoa(i), Email: fmt.Sprintf("c%d@example.com", i), Attributes: map[string]any{"first_name": "Ada"}})
		return err
	})
}

// BenchmarkJourneys runs N/2 customers through a two-step workflow (send,
// wait 1 s, send) and reports journey messages/s against bare asynq (a
// journey message is one task: the event or the wake-up applies the step
// and delivers inline), how late follow-ups fire after their due time, and
// the Redis memory a journey holds while it waits after its first send.
func BenchmarkJourneys(b *testing.B) {
	rs := redistest.Start(b)
	m := meter{rdb: rs.Client(), redisPID: childPID(b, "redis-server", strconv.Itoa(rs.Port()))}
	count := n() / 2 // two messages per journey
	for b.Loop() {
		bare := bareAsynq(b, m, n())

		run := runJourneys(b, m, rs.Addr, count, 0)
		ratio := run.rate / bare.rate
		// Lateness under a steady load at half the measured capacity; with
		// every journey started at once it would only measure the backlog.
		paced := run.rate / 2 / 2 // journeys/s: two messages each
		late := runJourneys(b, m, rs.Addr, min(count, int(paced*10)+1), paced).late
		printErrors()

		parked := parkedJourneys(b, m.rdb, rs.Addr)

		b.ReportMetric(run.rate, "herald-msgs/s")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(run.cost.perUnit(), "cmds/msg")
		b.ReportMetric(run.cost.readsPerUnit(), "trips/msg")
		b.ReportMetric(float64(pct(late, .5).Milliseconds()), "late-p50-ms")
		b.ReportMetric(float64(pct(late, .99).Milliseconds()), "late-p99-ms")
		b.ReportMetric(parked.perJourney, "bytes/parked-journey")
		hs, hr := run.cost.cpuMs()
		fmt.Printf("\njourneys, %d customers x (send, wait 1s, send), concurrency %d, one redis-server:\n"+
			"  bare asynq  %8.0f tasks/s (no-op handler, one queue)\n"+
			"  herald      %8.0f messages/s (one task a message: the event or the wake-up sends inline)\n"+
			"              over the run less the last follow-up's 1 s wait; %.0f/s with it\n"+
			"  ratio       %8.2f   target ≥ %.2f: %s\n"+
			"  per message: %s; %.1f Redis round trips; CPU %.2f ms (bench process %.2f, redis-server %.2f)\n"+
			"  follow-ups fire after their due time at a steady %.0f journeys/s: p50 %v, p99 %v\n",
			count, concurrency, bare.rate, run.rate, run.overall,
			ratio, targetJourneyRatio, verdict(ratio >= targetJourneyRatio, fmt.Sprintf("%.0f%% short", (1-ratio/targetJourneyRatio)*100)),
			run.cost.commands(6), run.cost.readsPerUnit(), hs+hr, hs, hr,
			paced, pct(late, .5).Round(time.Millisecond), pct(late, .99).Round(time.Millisecond))
		parked.print()
	}
}

// followUpWait is the wait of testdata/workflows/two-step.yaml.
const followUpWait = time.Second

// journeyRun is herald's figure of a run of journeys.
type journeyRun struct {
	// rate is messages/s over the run less the follow-ups' wait: the
	// last journey's follow-up cannot fire before its wait is over, however
	// fast the workers are, so with it the figure would depend on N.
	// overall keeps the wait in.
	rate, overall float64
	late          []time.Duration // follow-up lateness, sorted
	cost          cost            // per message, from the worker's start to its shutdown
}

// runJourneys starts count journeys (all at once, or pace per second) and
// waits for their 2*count messages.
func runJourneys(b *testing.B, m meter, addr string, count int, pace float64) journeyRun {
	ctx := context.Background()
	require.NoError(b, m.rdb.FlushAll(ctx).Err())
	r := newJourneyRig(b, m.rdb, addr)
	defer r.close()
	customers(b, r.e, count)
	var got atomic.Int64
	done := make(chan struct{})
	r.smtp.OnReceive(func(smtpserver.Received) {
		if got.Add(1) == int64(2*count) {
			close(done)
		}
	})
	before := m.read(b)
	r.start(b, m.rdb)
	event := func(i int) error {
		_, err := r.e.Event(ctx, herald.Event{CustomerID: "c" + strconv.Itoa(i), Name: "bench.started", Data: map[string]any{"plan": "Pro"}}, "bench")
		return err
	}
	load(b, count, pace, event)
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		r.stop()
		b.Fatalf("only %d of %d messages arrived", got.Load(), 2*count)
	}
	elapsed := time.Since(before.at)
	r.stop()
	c := m.since(b, before, 2*count)
	return journeyRun{
		rate:    float64(2*count) / (elapsed - followUpWait).Seconds(),
		overall: float64(2*count) / elapsed.Seconds(),
		late:    lateness(b, r.e, count),
		cost:    c,
	}
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
				out = append(out, woke.Sub(waited.Add(followUpWait)))
			}
		}
	}
	slices.Sort(out)
	return out
}

var (
	usedMemory    = regexp.MustCompile(`(?m)^used_memory:(\d+)`)
	clientsMemory = regexp.MustCompile(`(?m)^mem_clients_normal:(\d+)`)
)

// memory returns Redis's used_memory and the part of it that is client
// connection buffers.
func memory(b *testing.B, rdb *redis.Client) (used, clients int64) {
	info, err := rdb.Info(context.Background(), "memory").Result()
	require.NoError(b, err)
	field := func(re *regexp.Regexp) int64 {
		m := re.FindStringSubmatch(info)
		require.Len(b, m, 2, "INFO memory: %s", re)
		v, _ := strconv.ParseInt(m[1], 10, 64)
		return v
	}
	return field(usedMemory), field(clientsMemory)
}

// parked is the Redis memory of journeys waiting after their first send.
type parked struct {
	count      int
	perJourney float64 // used_memory growth per journey
	clients    float64 // of which client connection buffers, per journey
	keys       []keyClass
}

// parkedJourneys starts HERALD_BENCH_JOURNEYS (default 2,000) journeys of
// the "parked" workflow, each of which sends its first message and then
// waits an hour, and divides the growth of Redis's used_memory by their
// number: everything counts (journey state and indexes, its follow-up in
// the waiting index, ledger, message indexes, timeline lines). The customers'
// profiles are written before the first reading: they are not the journey's
// cost.
func parkedJourneys(b *testing.B, rdb *redis.Client, addr string) parked {
	ctx := context.Background()
	count := 2000
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_JOURNEYS")); err == nil && v > 0 {
		count = v
	}
	require.NoError(b, rdb.FlushAll(ctx).Err())
	r := newJourneyRig(b, rdb, addr)
	defer r.close()
	customers(b, r.e, count)
	var sent atomic.Int64
	r.smtp.OnReceive(func(smtpserver.Received) { sent.Add(1) })
	// The worker shares rdb: open all of its pool's connections now, so
	// that the connections' own buffers are in both readings.
	fillPool(b, rdb)
	usedBefore, clientsBefore := memory(b, rdb)
	keysBefore := keyUsage(b, rdb)
	r.start(b, rdb)
	enqueue(b, count, func(i int) error {
		_, err := r.e.Event(ctx, herald.Event{CustomerID: "c" + strconv.Itoa(i), Name: "bench.parked", Data: map[string]any{"plan": "Pro"}}, "bench")
		return err
	})
	start, deadline := time.Now(), time.Now().Add(10*time.Minute)
	for {
		n, err := rdb.ZCard(ctx, "herald:journeys:waiting").Result()
		require.NoError(b, err)
		if n == int64(count) && sent.Load() == int64(count) {
			break
		}
		if n == int64(count) && deadline.Sub(start) > time.Minute {
			deadline = time.Now().Add(time.Minute) // every journey waits: its message is late or lost
		}
		if time.Now().After(deadline) {
			r.stop()
			printErrors()
			b.Fatalf("after %v %d of %d journeys wait and %d first messages were sent", time.Since(start).Round(time.Second), n, count, sent.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.stop()    // lets the last handlers save their journeys
	r.release() // closes the engine's own connections, opened during the run
	usedAfter, clientsAfter := memory(b, rdb)
	keys := subtractKeys(keyUsage(b, rdb), keysBefore)
	if os.Getenv("HERALD_BENCH_VERBOSE") != "" {
		for i, k := range keys {
			keys[i].example = describeKey(rdb, k.example)
		}
	}
	return parked{
		count:      count,
		perJourney: float64(usedAfter-usedBefore) / float64(count),
		clients:    float64(clientsAfter-clientsBefore) / float64(count),
		keys:       keys,
	}
}

func (p parked) print() {
	fmt.Printf("  Redis memory per journey parked after its first send (%d journeys, INFO used_memory): %.0f bytes   target ≤ %d: %s\n",
		p.count, p.perJourney, targetParkedBytes,
		verdict(p.perJourney <= targetParkedBytes, fmt.Sprintf("%.0f bytes over", p.perJourney-targetParkedBytes)))
	fmt.Printf("    by key type (MEMORY USAGE growth per journey):\n")
	var inKeys float64
	for _, k := range p.keys {
		per := float64(k.bytes) / float64(p.count)
		inKeys += per
		if per < 0.5 && per > -0.5 {
			continue
		}
		fmt.Printf("    %6.0f B  %5.2f keys  %s\n", per, float64(k.keys)/float64(p.count), k.pattern)
		if os.Getenv("HERALD_BENCH_VERBOSE") != "" && k.example != "" {
			fmt.Printf("                             e.g. %s\n", k.example)
		}
	}
	fmt.Printf("    %6.0f B              outside keys: client buffers %.0f B; the rest keyspace and expiry tables, script cache, allocator\n",
		p.perJourney-inKeys, p.clients)
}

// keyClass is the memory of the keys that share a pattern.
type keyClass struct {
	pattern string
	keys    int
	bytes   int64
	example string // one key of the pattern
}

// customerTag and idSegment find the parts of a key name that vary per
// customer, journey, message or task.
var (
	customerTag = regexp.MustCompile(`\{c:[^}]*\}`)
	idSegment   = regexp.MustCompile(`[0-9]`)
)

// keyPattern turns a key into its type: IDs become *.
func keyPattern(key string) string {
	key = customerTag.ReplaceAllString(key, "{c:*}")
	parts := strings.Split(key, ":")
	for i, p := range parts {
		if idSegment.MatchString(p) && !strings.HasPrefix(p, "{") {
			parts[i] = "*"
		}
	}
	return strings.Join(parts, ":")
}

// keyUsage sums MEMORY USAGE (exact: SAMPLES 0) of every key by pattern.
func keyUsage(b *testing.B, rdb *redis.Client) map[string]keyClass {
	ctx := context.Background()
	var keys []string
	it := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	require.NoError(b, it.Err())
	out := map[string]keyClass{}
	for batch := range slices.Chunk(keys, 500) {
		cmds := make([]*redis.IntCmd, len(batch))
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
				cmds[i] = p.MemoryUsage(ctx, k, 0)
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			require.NoError(b, err)
		}
		for i, k := range batch {
			c := out[keyPattern(k)]
			if c.pattern == "" {
				c.pattern, c.example = keyPattern(k), k
			}
			c.keys++
			c.bytes += cmds[i].Val()
			out[c.pattern] = c
		}
	}
	return out
}

// describeKey names a key with its type, encoding, size and TTL.
func describeKey(rdb *redis.Client, key string) string {
	ctx := context.Background()
	typ := rdb.Type(ctx, key).Val()
	enc := rdb.ObjectEncoding(ctx, key).Val()
	var size string
	switch typ {
	case "string":
		size = fmt.Sprintf("%d bytes", rdb.StrLen(ctx, key).Val())
	case "list":
		size = fmt.Sprintf("%d items", rdb.LLen(ctx, key).Val())
	case "hash":
		size = fmt.Sprintf("%d fields", rdb.HLen(ctx, key).Val())
	case "zset":
		size = fmt.Sprintf("%d members", rdb.ZCard(ctx, key).Val())
	case "set":
		size = fmt.Sprintf("%d members", rdb.SCard(ctx, key).Val())
	}
	ttl := "no TTL"
	if d := rdb.TTL(ctx, key).Val(); d > 0 {
		ttl = "TTL " + d.Round(time.Hour).String()
	}
	return fmt.Sprintf("%s (%s, %s, %s, %s)", key, typ, enc, size, ttl)
}

// subtractKeys returns after minus before by pattern, largest growth first.
func subtractKeys(after, before map[string]keyClass) []keyClass {
	var out []keyClass
	for p, a := range after {
		bf := before[p]
		if d := (keyClass{pattern: p, keys: a.keys - bf.keys, bytes: a.bytes - bf.bytes, example: a.example}); d.keys != 0 || d.bytes != 0 {
			out = append(out, d)
		}
	}
	for p, bf := range before {
		if _, ok := after[p]; !ok {
			out = append(out, keyClass{pattern: p, keys: -bf.keys, bytes: -bf.bytes})
		}
	}
	slices.SortFunc(out, func(x, y keyClass) int {
		if x.bytes != y.bytes {
			if x.bytes > y.bytes {
				return -1
			}
			return 1
		}
		return strings.Compare(x.pattern, y.pattern)
	})
	return out
}
