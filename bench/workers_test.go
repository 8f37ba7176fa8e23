package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// workerCounts are the numbers of herald worker processes BenchmarkWorkers
// compares.
var workerCounts = []int{1, 2, 3}

// BenchmarkWorkers runs 1, 2 and 3 `herald worker` processes against one
// fresh redis-server and an in-process SMTP server: N one-off email
// messages are enqueued with the Go client first, then the workers start and
// drain them. It prints messages/s per worker count against one worker and
// against bare asynq in the same run, and the CPU seconds each component
// (redis-server, each worker, this process with the SMTP server) spent
// between the first and the last delivery.
func BenchmarkWorkers(b *testing.B) {
	bin := buildHerald(b)
	rs := redistest.Start(b)
	rdb := rs.Client()
	redisPID := childPID(b, "redis-server", strconv.Itoa(rs.Port()))
	cl, err := client.New(rs.URL())
	require.NoError(b, err)
	b.Cleanup(func() { _ = cl.Close() })
	count := n()
	for b.Loop() {
		bareRun := bareAsynq(b, meter{rdb: rdb, redisPID: redisPID}, count)
		bare := bareRun.rate
		b.ReportMetric(bare, "asynq-tasks/s")
		runs := make([]workersRun, 0, len(workerCounts))
		for _, k := range workerCounts {
			r := runWorkers(b, bin, rs, rdb, cl, redisPID, k, count)
			runs = append(runs, r)
			b.ReportMetric(r.rate, fmt.Sprintf("w%d-msgs/s", k))
		}
		fmt.Printf("\nworker processes, N=%d, concurrency %d per worker, one redis-server, %d CPUs:\n  bare asynq  %8.0f tasks/s (no-op handler, one queue, in process; %.1f Redis commands a task)\n",
			count, concurrency, runtime.NumCPU(), bare, bareRun.cost.perUnit())
		for _, r := range runs {
			fmt.Printf("  workers=%d  %8.0f msgs/s  %4.2fx of 1 worker  %5.1f%% of bare asynq  (first delivery %v after start)\n",
				r.k, r.rate, r.rate/runs[0].rate, r.rate/bare*100, r.startup.Round(time.Millisecond))
		}
		fmt.Printf("  CPU seconds from first to last delivery:\n")
		for _, r := range runs {
			fmt.Printf("  %s\n", r.cpu)
		}
		printErrors()
	}
}

type workersRun struct {
	k       int
	rate    float64       // messages/s from the first to the last delivery
	startup time.Duration // from starting the processes to the first delivery
	cpu     cpuSplit
}

// runWorkers flushes Redis, enqueues count messages, starts k workers and
// waits until the SMTP server has every message.
func runWorkers(b *testing.B, bin string, rs *redistest.Server, rdb *redis.Client, cl *client.Client, redisPID, k, count int) workersRun {
	ctx := context.Background()
	require.NoError(b, rdb.FlushAll(ctx).Err())
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	defer smtp.Close()

	const customers = 100
	for i := range customers {
		_, err := cl.UpsertCustomer(ctx, herald.Customer{ID: fmt.Sprintf("c%d", i), Email: fmt.Sprintf("c%d@example.com", i),
			Locale: "en", Timezone: "UTC", Attributes: map[string]any{"first_name": "Ada"}})
		require.NoError(b, err)
	}
	enqueue(b, count, func(i int) error {
		_, err := cl.Send(ctx, client.Message{CustomerID: fmt.Sprintf("c%d", i%customers), Template: "hello", Topic: "onboarding",
			Data: map[string]any{"plan": "Pro"}, Channels: []herald.Channel{herald.ChannelEmail}})
		return err
	})

	var (
		mu          sync.Mutex
		seen        = make(map[string]bool, count)
		dups        atomic.Int64
		first, last time.Time
		firstOnce   sync.Once
		firstCh     = make(chan struct{})
		finished    = make(chan struct{})
	)
	smtp.OnReceive(func(r smtpserver.Received) {
		now := time.Now()
		firstOnce.Do(func() { first = now; close(firstCh) })
		mu.Lock()
		defer mu.Unlock()
		if seen[r.MessageID] {
			dups.Add(1)
			return
		}
		seen[r.MessageID] = true
		if len(seen) == count {
			last = now
			close(finished)
		}
	})

	cmdsBefore := redisCommands(b, rdb)
	dir := b.TempDir()
	smtpURL := smtp.URL()
	if pool := os.Getenv("HERALD_BENCH_SMTP_POOL"); pool != "" {
		smtpURL += "&pool=" + pool
	}
	env := workerEnv(rs.URL(), smtpURL)
	start := time.Now()
	procs := make([]*workerProc, k)
	for i := range procs {
		procs[i] = startWorker(b, bin, env, filepath.Join(dir, fmt.Sprintf("worker%d.log", i)))
	}
	pids := []int{redisPID, os.Getpid()}
	for _, p := range procs {
		pids = append(pids, p.cmd.Process.Pid)
	}
	var before []float64
	select {
	case <-firstCh:
		before = cpuSeconds(pids)
	case <-time.After(30 * time.Second):
		b.Fatalf("workers=%d: no delivery within 30s\n%s", k, logTails(procs))
	}
	select {
	case <-finished:
	case <-time.After(3 * time.Minute):
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		b.Fatalf("workers=%d: only %d of %d messages arrived\n%s", k, got, count, logTails(procs))
	}
	after := cpuSeconds(pids)
	cmds := commandsPerMessage(cmdsBefore, redisCommands(b, rdb), count)
	for _, p := range procs {
		p.stop(b)
	}
	if d := dups.Load(); d > 0 {
		b.Errorf("workers=%d: %d duplicate deliveries", k, d)
	}
	for _, p := range procs {
		if t := warnings(p.log); t != "" && os.Getenv("HERALD_BENCH_VERBOSE") != "" {
			fmt.Printf("  worker warnings (%s):\n%s\n", filepath.Base(p.log), t)
		}
	}
	used := make([]float64, len(pids))
	for i := range pids {
		used[i] = after[i] - before[i]
	}
	wall := last.Sub(first)
	return workersRun{
		k: k, rate: float64(count-1) / wall.Seconds(), startup: first.Sub(start),
		cpu: cpuSplit{k: k, wall: wall, redis: used[0], bench: used[1], workers: used[2:], count: count, cmds: cmds},
	}
}

// cpuSplit is the CPU time each component used over wall.
type cpuSplit struct {
	k            int
	wall         time.Duration
	redis, bench float64
	workers      []float64
	count        int    // messages
	cmds         string // Redis commands per message from the workers' start to the last delivery
}

func (c cpuSplit) String() string {
	var ws []string
	total := c.redis + c.bench
	sum := 0.0
	for _, w := range c.workers {
		ws = append(ws, fmt.Sprintf("%.2f", w))
		sum += w
	}
	total += sum
	perMsg := func(s float64) float64 { return s / float64(c.count) * 1e3 }
	return fmt.Sprintf("workers=%d  wall %5.2fs  redis-server %5.2f  herald workers %5.2f (%s)  bench+SMTP %5.2f  total %5.2f = %3.0f%% of %d CPUs\n"+
		"             per message: redis-server %.2f ms, workers %.2f ms, SMTP %.2f ms CPU;\n             %s",
		c.k, c.wall.Seconds(), c.redis, sum, strings.Join(ws, " + "), c.bench, total,
		total/c.wall.Seconds()/float64(runtime.NumCPU())*100, runtime.NumCPU(),
		perMsg(c.redis), perMsg(sum), perMsg(c.bench), c.cmds)
}

// buildHerald builds the herald binary once into a temp dir.
func buildHerald(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "herald")
	build := exec.Command(goBin(), "build", "-o", bin, "github.com/heraldhq/herald/cmd/herald")
	out, err := build.CombinedOutput()
	require.NoError(b, err, "build herald: %s", out)
	return bin
}

func goBin() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// workerEnv is the environment of every worker: this process's without its
// HERALD_* variables, plus the benchmark's. Queues and strict priority are
// left at their defaults (heraldQueues, taken in strict order).
func workerEnv(redisURL, smtpURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	tpl, _ := filepath.Abs("../engine/testdata/templates")
	return append(env,
		"HERALD_REDIS_URL="+redisURL,
		"HERALD_SMTP_URL="+smtpURL,
		"HERALD_MAIL_FROM=Lumen <hello@lumen.example>",
		"HERALD_SIGNING_KEY=bench-signing-key-0123456789abcdef",
		"HERALD_TEMPLATES="+tpl,
		"HERALD_LOCALES=en", // the test templates are not all translated
		"HERALD_WORKER_CONCURRENCY="+strconv.Itoa(concurrency),
		"HERALD_LOG_LEVEL=warn",
		"HERALD_LOG_FORMAT=text",
	)
}

type workerProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func startWorker(b *testing.B, bin string, env []string, logPath string) *workerProc {
	f, err := os.Create(logPath)
	require.NoError(b, err)
	cmd := exec.Command(bin, "worker")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(b, cmd.Start())
	p := &workerProc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	b.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and waits for the worker to exit.
func (p *workerProc) stop(b *testing.B) {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("worker %d still running 30s after SIGTERM", p.cmd.Process.Pid)
	}
}

func logTails(procs []*workerProc) string {
	var sb strings.Builder
	for _, p := range procs {
		data, _ := os.ReadFile(p.log)
		if len(data) > 4000 {
			data = data[len(data)-4000:]
		}
		fmt.Fprintf(&sb, "--- %s\n%s\n", filepath.Base(p.log), data)
	}
	return sb.String()
}

// warnings returns up to the last 10 lines of a worker's log.
func warnings(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}
