package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// Targets of a broadcast to 100,000 customers on a 2-core machine.
const (
	targetBroadcastTime = 60 * time.Second // filter evaluated and fan-out fully queued
	targetBroadcastRSS  = 150 << 20
)

func broadcastN() int {
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_BROADCAST_N")); err == nil && v > 0 {
		return v
	}
	return 100_000
}

// BenchmarkBroadcast creates a broadcast whose filter selects nine in ten
// of 100,000 customers (HERALD_BENCH_BROADCAST_N) and times it until every
// message is queued: the filter evaluated over every customer and the
// audience fixed (the POST), then the fan-out task walking it. It prints
// the process's peak RSS (API, worker and the customers' creation share
// the process, so it is an upper bound on the worker's) and the bytes the
// finished broadcast keeps in Redis.
func BenchmarkBroadcast(b *testing.B) {
	rs := redistest.Start(b)
	rdb := rs.Client()
	ctx := context.Background()
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	defer smtp.Close()
	e, release := benchEngine(b, rdb, rs.Addr, smtp.URL(), nil)
	defer release()
	count := broadcastN()
	enqueue(b, count, func(i int) error {
		plan := "pro"
		if i%10 == 9 {
			plan = "free"
		}
		_, _, err := e.Store().UpsertCustomer(ctx, herald.Customer{
			ID: "c" + strconv.Itoa(i), Email: fmt.Sprintf("c%d@example.com", i), Timezone: "Asia/Tokyo", Locale: "ja-JP",
			Attributes: map[string]any{"first_name": "Ada", "plan": plan, "seats": i % 50},
		})
		return err
	})
	runtime.GC()
	run := 0
	for b.Loop() {
		run++
		id := "bench-" + strconv.Itoa(run)
		start := time.Now()
		info, created, err := e.CreateBroadcast(ctx, engine.Broadcast{
			ID: id, Template: "hello", Topic: "onboarding", Data: map[string]any{"plan": "Pro"},
			Audience:  engine.Audience{Filter: `customer.plan == "pro" && customer.topics.onboarding && customer.locale startsWith "ja"`},
			LocalTime: "09:00", Channels: []herald.Channel{herald.ChannelEmail},
		}, "bench")
		require.NoError(b, err)
		require.True(b, created)
		evaluated := time.Since(start)
		// One worker slot: the fan-out holds it while it walks, so no
		// message is sent meanwhile (they wait for 09:00 anyway).
		srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
			Concurrency: 1, Queues: heraldQueues, StrictPriority: true, LogLevel: asynq.FatalLevel,
			TaskCheckInterval: 20 * time.Millisecond,
		})
		require.NoError(b, srv.Start(e.Mux()))
		stopWaker := e.StartWaker(ctx)
		var got engine.BroadcastInfo
		for {
			got, err = e.Broadcast(ctx, id)
			require.NoError(b, err)
			if got.Status == "done" {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		total := time.Since(start)
		stopWaker()
		srv.Shutdown()
		require.Equal(b, int64(info.Counts.Matched), got.Counts.Queued)
		bytes, err := e.Store().BroadcastBytes(ctx, id)
		require.NoError(b, err)
		used, _ := memory(b, rdb)
		rss, peak := procRSS()
		fmt.Printf("broadcast to %d of %d customers: filter evaluated and audience fixed in %.1f s, fan-out fully queued after %.1f s (target %.0f s: %s)\n",
			got.Counts.Queued, count, evaluated.Seconds(), total.Seconds(), targetBroadcastTime.Seconds(),
			verdict(total <= targetBroadcastTime, "not met"))
		fmt.Printf("  process RSS %d MB, peak %d MB (target %d MB: %s); Redis used %d MB with the %d messages scheduled\n",
			rss>>20, peak>>20, targetBroadcastRSS>>20, verdict(peak <= targetBroadcastRSS, "not met"), used>>20, got.Counts.Queued)
		fmt.Printf("  bookkeeping of the finished broadcast in Redis: %d bytes (its counters and request; the audience list is dropped)\n", bytes)
		b.ReportMetric(total.Seconds(), "s/broadcast")
		// Leave the next run a clean queue.
		_, err = rdb.Eval(ctx, `return redis.call("DEL", unpack(redis.call("KEYS", "asynq:{bulk}:*")))`, nil).Result()
		if err != nil && !strings.Contains(err.Error(), "wrong number of arguments") {
			require.NoError(b, err)
		}
	}
}

// procRSS reads this process's resident set size and its peak.
func procRSS() (rss, peak int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return rss, peak
}
