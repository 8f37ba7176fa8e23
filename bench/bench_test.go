package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/msgid"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

const concurrency = 20

// Targets the project sets itself; each is printed next to its figure.
const (
	targetMessageRatio = 0.30 // herald messages/s over bare asynq tasks/s
	targetCommands     = 30   // Redis commands per message
	targetP99          = 50 * time.Millisecond
	targetJourneyRatio = 0.25
	targetParkedBytes  = 1536 // Redis memory per journey parked after its first send
)

func n() int {
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_N")); err == nil && v > 0 {
		return v
	}
	return 5000
}

// signingKey signs the bench engine's links and seals its Message-IDs.
var signingKey = []byte("0123456789abcdef0123456789abcdef")

// heraldQueues are the queues of `herald worker` with the default
// configuration (config.DefaultQueues), run as `herald worker` runs them
// (engine.NewWorker): critical in a lane of its own, the others in strict
// priority, default before bulk. email and slack only hold deliveries
// queued by older versions.
var heraldQueues = map[string]int{"critical": 6, "default": 4, "bulk": 2, "email": 1, "slack": 1}

// serverConfig is the asynq server configuration of a run: herald's queues
// and retry policy when e is set, one queue for bare asynq when it is nil.
func serverConfig(e *engine.Engine) asynq.Config {
	c := asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{"default": 1},
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: 200 * time.Millisecond,
		LogLevel:                 asynq.FatalLevel,
	}
	if e != nil {
		c.Queues, c.StrictPriority = maps.Clone(heraldQueues), true
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

// benchEngine builds an engine as `herald serve` and `herald worker` do,
// with an email sender for smtpURL (workflows may be nil). release closes
// the engine and the sender (once; later calls do nothing).
func benchEngine(b *testing.B, rdb *redis.Client, addr, smtpURL string, wset *workflows.Set) (e *engine.Engine, release func()) {
	ec, err := email.ParseURL(smtpURL)
	require.NoError(b, err)
	ec.From, ec.Pool = "Lumen <hello@lumen.example>", 8
	es, err := email.New(ec)
	require.NoError(b, err)
	tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
	require.NoError(b, err)
	e, err = engine.New(engine.Options{
		Redis: rdb, RedisConn: asynq.RedisClientOpt{Addr: addr},
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: es},
		Templates: tset, Workflows: wset,
		Policy:    preferences.Policy{Topics: map[string]herald.Topic{"onboarding": {Name: "onboarding", OptIn: true}}},
		PublicURL: "https://herald.example.com", SigningKey: signingKey,
		// As cmd/herald sizes it for the worker's concurrency.
		ChannelConcurrency: max(1, concurrency*3/4),
		Metrics:            engine.NewMetrics(prometheus.NewRegistry()),
		Logger:             slog.New(slog.NewJSONHandler(io.Discard, nil)),
	})
	require.NoError(b, err)
	var once sync.Once
	return e, func() { once.Do(func() { _ = e.Close(); _ = es.Close() }) }
}

// asynqRun is bare asynq's figure of a run.
type asynqRun struct {
	rate float64 // tasks/s, enqueue and process together
	cost cost    // from the server's start to its shutdown
}

// bareAsynq enqueues count no-op tasks into one queue and processes them,
// both at once.
func bareAsynq(b *testing.B, m meter, count int) asynqRun {
	require.NoError(b, m.rdb.FlushAll(context.Background()).Err())
	var done atomic.Int64
	finished := make(chan struct{})
	mux := asynq.NewServeMux()
	mux.HandleFunc("noop", func(context.Context, *asynq.Task) error {
		if done.Add(1) == int64(count) {
			close(finished)
		}
		return nil
	})
	srv := asynq.NewServerFromRedisClient(m.rdb, serverConfig(nil))
	cl := asynq.NewClientFromRedisClient(m.rdb)
	before := m.read(b)
	require.NoError(b, srv.Start(mux))
	enqueue(b, count, func(i int) error {
		_, err := cl.Enqueue(asynq.NewTask("noop", []byte(`{"i":`+strconv.Itoa(i)+`}`)), asynq.Queue("default"))
		return err
	})
	<-finished
	elapsed := time.Since(before.at)
	srv.Shutdown()
	return asynqRun{rate: float64(count) / elapsed.Seconds(), cost: m.since(b, before, count)}
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

// drive runs f for 0..count-1 from clients goroutines: as fast as they can
// (pace 0), or at pace calls per second, each call handed to the next free
// client with the time it was due. It returns the number of failed calls
// and the first error.
func drive(clients, count int, pace float64, f func(i int, due time.Time) error) (int64, error) {
	type call struct {
		i   int
		due time.Time
	}
	calls := make(chan call, count)
	if pace <= 0 {
		now := time.Now()
		for i := range count {
			calls <- call{i, now}
		}
		close(calls)
	} else {
		go func() {
			defer close(calls)
			tick := time.NewTicker(time.Duration(float64(time.Second) / pace))
			defer tick.Stop()
			for i := range count {
				due := <-tick.C
				calls <- call{i, due}
			}
		}()
	}
	var (
		wg       sync.WaitGroup
		errs     atomic.Int64
		firstErr atomic.Pointer[error]
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range calls {
				due := c.due
				if pace <= 0 {
					due = time.Now()
				}
				if err := f(c.i, due); err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return errs.Load(), *p
	}
	return 0, nil
}

// messageCustomers is how many customers the one-off messages go to.
const messageCustomers = 100

// messageRun is herald's figure of a run of one-off messages.
type messageRun struct {
	rate float64         // messages/s, from the first request to the last SMTP DATA
	lat  []time.Duration // request due → SMTP DATA, sorted
	cost cost            // from the worker's start to its shutdown
	// Go heap allocations per message in the bench process (HTTP clients
	// and SMTP server included): count and bytes.
	allocs, allocBytes float64
	// With the run split, what the API alone (every request answered
	// before the worker starts) and the worker alone cost.
	apiRate, workerRate float64
	api, worker         cost
}

// A runMode says how heraldMessages runs its messages.
type runMode struct {
	pace    float64 // requests per second; 0 sends as fast as the clients can
	profile string  // where to write a CPU profile of the run, if set
	// split answers every request before the worker starts, so that the
	// API's cost and the worker's can be told apart.
	split bool
	// floor, when set, replaces herald's message handler (see floorMux).
	floor floorKind
	// bareAPI replaces herald's HTTP API with bareAPI.
	bareAPI bool
}

// bareAPI is the least an HTTP door to herald's queue could do for
// POST /v1/messages: decode the body, queue the message task under an ID
// from its idempotency key, answer 202 with the ID. No token, no
// idempotency record, no customer check, no request log.
func bareAPI(rdb *redis.Client) http.Handler {
	cl := asynq.NewClientFromRedisClient(rdb)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			CustomerID     string           `json:"customer_id"`
			Template       string           `json:"template"`
			Topic          string           `json:"topic"`
			Data           map[string]any   `json:"data"`
			Channels       []herald.Channel `json:"channels"`
			IdempotencyKey string           `json:"idempotency_key"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		id := "m_" + body.IdempotencyKey
		t := asynq.NewTask(wire.TypeMessage, wire.Encode(wire.Message{ID: id, CustomerID: body.CustomerID,
			Template: body.Template, Topic: body.Topic, Data: body.Data, Channels: body.Channels}))
		if _, err := cl.EnqueueContext(r.Context(), t, asynq.Queue("default"), asynq.TaskID(id)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(map[string]string{"id": id, "status": "accepted"})
	})
}

// A floorKind is a stand-in for herald's message handler that does a
// fixed part of its work, so that a run measures what the path costs
// before the rest of herald's delivery work.
type floorKind int

const (
	floorNone  floorKind = iota // herald's own handler
	floorNoop                   // the task is taken and done, nothing else
	floorEmail                  // one email, rendered before the run, sent through herald's email sender
)

// floorMux handles the message tasks of a floor run: it decodes each task
// and, for floorEmail, sends the email rendered once before the run
// through a sender like the engine's, to smtpURL; done is called with the
// message ID once the task's work is done (for floorEmail, the SMTP
// server's receipt reports it instead). There is no Redis read or write of
// herald's own, no template rendering, consent check, claim, ledger or
// timeline. The returned func closes the sender.
func floorMux(b *testing.B, e *engine.Engine, kind floorKind, smtpURL string, done func(id string)) (*asynq.ServeMux, func()) {
	ec, err := email.ParseURL(smtpURL)
	require.NoError(b, err)
	ec.From, ec.Pool = "Lumen <hello@lumen.example>", 8
	es, err := email.New(ec)
	require.NoError(b, err)
	cust := herald.Customer{ID: "c0", Email: "c0@example.com", Locale: "en", Timezone: "UTC", Attributes: map[string]any{"first_name": "Ada"}}
	content, err := e.Templates().RenderChannel("hello", "en", templates.Data{Customer: cust, Data: map[string]any{"plan": "Pro"}, Now: time.Now()}, herald.ChannelEmail)
	require.NoError(b, err)
	exp := time.Now().Add(time.Hour)
	prefs := "https://herald.example.com/preferences?token=" + preferences.Sign(signingKey, preferences.Claims{CustomerID: cust.ID, Purpose: "preferences", Expires: exp})
	unsub := "https://herald.example.com/unsubscribe?token=" + preferences.Sign(signingKey, preferences.Claims{CustomerID: cust.ID, Purpose: "unsubscribe", Topic: "onboarding", Channel: herald.ChannelEmail, Expires: exp})
	sealed := msgid.NewKeys(signingKey)
	mux := asynq.NewServeMux()
	mux.HandleFunc(wire.TypeMessage, func(ctx context.Context, t *asynq.Task) error {
		var m wire.Message
		if err := wire.Decode(t.Payload(), &m); err != nil {
			return err
		}
		if kind == floorNoop {
			done(m.ID)
			return nil
		}
		token, _ := sealed.Seal(m.CustomerID, m.ID)
		c := cust
		c.ID, c.Email = m.CustomerID, m.CustomerID+"@example.com"
		_, err := es.Send(ctx, herald.Message{
			ID: m.ID + ":email", Channel: herald.ChannelEmail, Customer: c, Topic: m.Topic, Template: m.Template,
			Content: content, PreferencesURL: prefs, Unsubscribe: []string{unsub}, ReplyToken: token,
		})
		return err
	})
	return mux, func() { _ = es.Close() }
}

// heraldMessages sends count one-off messages through POST /v1/messages
// from httpClients() keep-alive clients while an in-process worker (the
// message task: policy, claim, render, SMTP, ledger, timeline) delivers them
// to an in-process SMTP server, as mode says.
func heraldMessages(b *testing.B, m meter, addr string, count int, mode runMode) messageRun {
	pace, profile := mode.pace, mode.profile
	ctx := context.Background()
	require.NoError(b, m.rdb.FlushAll(ctx).Err())
	smtp, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(b, err)
	defer smtp.Close()
	e, closeEngine := benchEngine(b, m.rdb, addr, smtp.URL(), nil)
	defer closeEngine()
	api := httpapi.New(httpapi.Config{
		Engine: e, Tokens: []httpapi.Token{{Name: "app", Value: httpToken}},
		Logger: slog.New(slog.NewJSONHandler(io.Discard, nil)), // formats every request log line, as in production
	})
	if mode.bareAPI {
		api = bareAPI(m.rdb)
	}
	ts := httptest.NewServer(api)
	defer ts.Close()
	clients := httpClients()
	hc := &http.Client{
		Transport: &http.Transport{MaxIdleConns: clients, MaxIdleConnsPerHost: clients, IdleConnTimeout: time.Minute},
		Timeout:   30 * time.Second,
	}
	defer hc.CloseIdleConnections()
	for i := range messageCustomers {
		_, _, err := e.Store().UpsertCustomer(ctx, herald.Customer{ID: fmt.Sprintf("c%d", i), Email: fmt.Sprintf("c%d@example.com", i),
			Locale: "en", Timezone: "UTC", Attributes: map[string]any{"first_name": "Ada"}})
		require.NoError(b, err)
	}
	// Open the keep-alive connections (GET /healthz touches no Redis).
	_, err = drive(clients, clients*4, 0, func(int, time.Time) error {
		resp, err := hc.Get(ts.URL + "/healthz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		return err
	})
	require.NoError(b, err)

	var (
		mu       sync.Mutex
		received = make(map[string]int64, count) // message ID → unix nanoseconds
		finished = make(chan struct{})
		dups     int
	)
	sealed := msgid.NewKeys(signingKey)
	smtp.OnReceive(func(r smtpserver.Received) {
		now := time.Now().UnixNano()
		mu.Lock()
		defer mu.Unlock()
		_, id, ok := sealed.Open(r.MessageID) // the message behind the Message-ID
		if !ok {
			id = "unsealed " + r.MessageID
		}
		if _, ok := received[id]; ok {
			dups++
			return
		}
		received[id] = now
		if len(received) == count {
			close(finished)
		}
	})
	ids := make([]string, count)
	due := make([]int64, count)
	mux := e.Mux()
	if mode.floor != floorNone {
		var closeFloor func()
		mux, closeFloor = floorMux(b, e, mode.floor, smtp.URL(), func(id string) {
			now := time.Now().UnixNano()
			mu.Lock()
			defer mu.Unlock()
			received[id] = now
			if len(received) == count {
				close(finished)
			}
		})
		defer closeFloor()
	}

	if profile != "" {
		f, err := os.Create(profile)
		require.NoError(b, err)
		defer f.Close()
		require.NoError(b, pprof.StartCPUProfile(f))
	}
	srv := engine.NewWorker(m.rdb, serverConfig(e), 0)
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	before := m.read(b)
	start := func() {
		require.NoError(b, srv.Start(mux))
	}
	if !mode.split {
		start()
	}
	defer e.StartWaker(context.Background())()
	failed, firstErr := drive(clients, count, pace, func(i int, at time.Time) error {
		due[i] = at.UnixNano()
		id, err := postMessage(hc, ts.URL, i)
		ids[i] = id
		return err
	})
	if failed > 0 {
		if !mode.split {
			srv.Shutdown()
		}
		pprof.StopCPUProfile()
		b.Fatalf("%d of %d POST /v1/messages failed; first: %v", failed, count, firstErr)
	}
	var split messageRun
	if mode.split {
		split.api = m.since(b, before, count)
		split.apiRate = float64(count) / split.api.wall.Seconds()
		before = m.read(b)
		start()
	}
	select {
	case <-finished:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		got := len(received)
		mu.Unlock()
		srv.Shutdown()
		pprof.StopCPUProfile()
		b.Fatalf("only %d of %d messages arrived", got, count)
	}
	elapsed := time.Since(before.at)
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	srv.Shutdown()
	c := m.since(b, before, count)
	if profile != "" {
		pprof.StopCPUProfile()
	}
	mu.Lock()
	defer mu.Unlock()
	if dups > 0 {
		b.Errorf("%d duplicate deliveries", dups)
	}
	lat := make([]time.Duration, 0, count)
	for i, id := range ids {
		if r, ok := received[id]; ok {
			lat = append(lat, time.Duration(r-due[i]))
		}
	}
	if len(lat) != count {
		b.Errorf("%d of %d deliveries matched to their request", len(lat), count)
	}
	slices.Sort(lat)
	if mode.split {
		split.worker, split.workerRate = c, float64(count)/elapsed.Seconds()
		return split
	}
	return messageRun{rate: float64(count) / elapsed.Seconds(), lat: lat, cost: c,
		allocs: float64(ms1.Mallocs-ms0.Mallocs) / float64(count), allocBytes: float64(ms1.TotalAlloc-ms0.TotalAlloc) / float64(count)}
}

// postMessage posts one-off message i as an app would (with an idempotency
// key) and returns its ID; any answer other than 202 is an error.
func postMessage(hc *http.Client, base string, i int) (string, error) {
	body := fmt.Sprintf(`{"customer_id":"c%d","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"welcome-%07d"}`,
		i%messageCustomers, i)
	req, err := http.NewRequest(http.MethodPost, base+"/v1/messages", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+httpToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	out, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("POST /v1/messages: %d %s", resp.StatusCode, bytes.TrimSpace(out))
	}
	var v struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.ID == "" {
		return "", fmt.Errorf("POST /v1/messages: no id in %s", out)
	}
	return v.ID, nil
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// verdict says whether a figure meets its target: "ok", or by how much it
// misses.
func verdict(met bool, miss string) string {
	if met {
		return "ok"
	}
	return "NOT MET: " + miss
}

// benchPair is one turn of bare asynq and herald.
type benchPair struct {
	bare asynqRun
	run  messageRun
}

func (p benchPair) ratio() float64 { return p.run.rate / p.bare.rate }

// pairs is how many turns MessagePath takes (HERALD_BENCH_PAIRS, default 3).
func pairs() int {
	if v, err := strconv.Atoi(os.Getenv("HERALD_BENCH_PAIRS")); err == nil && v > 0 {
		return v
	}
	return 3
}

// profilePath is where MessagePath writes its CPU profile when
// HERALD_BENCH_PROFILE is set (`make bench PROFILE=1`).
func profilePath() string {
	if v := os.Getenv("HERALD_BENCH_PROFILE"); v != "" && v != "0" {
		return "cpu.pprof"
	}
	return ""
}

// BenchmarkMessagePath compares herald's one-off message path with bare
// asynq on one fresh redis-server, in the same run. A message is one
// request to POST /v1/messages from one of 16 keep-alive clients and, on the
// healthy path, one asynq task (policy, claim, render, SMTP, ledger,
// timeline) on herald's queues and lanes; bare asynq runs no-op tasks
// on a single queue. It reports both rates and their ratio, Redis commands
// and CPU per message and per bare task, and the latency from the request
// to SMTP DATA at a steady half of the measured capacity.
func BenchmarkMessagePath(b *testing.B) {
	rs := redistest.Start(b)
	m := meter{rdb: rs.Client(), redisPID: childPID(b, "redis-server", strconv.Itoa(rs.Port()))}
	count := n()
	profile := profilePath()
	for b.Loop() {
		// Bare asynq and herald run in turn, pairs() times; the ratio is
		// the median pair's, and the other figures are that pair's: on a
		// shared machine one pair can be off by a third either way.
		var runs []benchPair
		for i := range pairs() {
			bare := bareAsynq(b, m, count)
			prof := ""
			if i == 0 {
				prof = profile
			}
			run := heraldMessages(b, m, rs.Addr, count, runMode{profile: prof})
			runs = append(runs, benchPair{bare, run})
		}
		slices.SortFunc(runs, func(x, y benchPair) int { return cmp.Compare(x.ratio(), y.ratio()) })
		bare, run := runs[len(runs)/2].bare, runs[len(runs)/2].run
		ratio := run.rate / bare.rate
		var ratios []string
		for _, p := range runs {
			ratios = append(ratios, fmt.Sprintf("%.2f (%.0f/%.0f)", p.ratio(), p.run.rate, p.bare.rate))
		}
		// Latency under a steady load at half the measured capacity: with
		// everything sent at once it would only measure the backlog.
		paced := run.rate / 2
		lat := heraldMessages(b, m, rs.Addr, min(count, int(paced*10)+1), runMode{pace: paced}).lat
		// The same messages with the API's part and the worker's apart.
		apart := heraldMessages(b, m, rs.Addr, count, runMode{split: true})
		apiS, apiR := apart.api.cpuMs()
		wkS, wkR := apart.worker.cpuMs()
		p50, p99 := pct(lat, .5), pct(lat, .99)
		hs, hr := run.cost.cpuMs()
		as, ar := bare.cost.cpuMs()

		b.ReportMetric(bare.rate, "asynq-tasks/s")
		b.ReportMetric(run.rate, "herald-msgs/s")
		b.ReportMetric(ratio, "ratio")
		b.ReportMetric(run.cost.perUnit(), "cmds/msg")
		b.ReportMetric(run.cost.readsPerUnit(), "trips/msg")
		b.ReportMetric(bare.cost.perUnit(), "asynq-cmds/task")
		b.ReportMetric(hs+hr, "cpu-ms/msg")
		b.ReportMetric(run.allocs, "allocs/msg")
		b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
		fmt.Printf("\nmessage path, N=%d, %d keep-alive HTTP clients, worker concurrency %d, one redis-server, %d CPUs:\n"+
			"  bare asynq  %8.0f tasks/s (no-op handler, one queue, enqueue and process together)\n"+
			"  herald      %8.0f messages/s POST /v1/messages → SMTP DATA (one task a message; critical in its own lane, the rest in strict priority)\n"+
			"  ratio       %8.2f   target ≥ %.2f: %s\n"+
			"              the median of %d alternating pairs, lowest first: %s\n"+
			"  Redis commands (inside Lua scripts included) per message: %.1f   target ≤ %d: %s\n"+
			"              herald: %s\n"+
			"              bare asynq per task: %.1f (%s)\n"+
			"  Redis round trips (requests read) per message: %.1f; bare asynq per task: %.1f\n"+
			"  CPU per message: %.2f ms (bench process: HTTP clients, API, worker, SMTP server %.2f ms; redis-server %.2f ms)\n"+
			"              Go allocations in the bench process: %.0f per message, %.1f KB\n"+
			"              bare asynq per task: %.2f ms (bench process %.2f ms; redis-server %.2f ms)\n"+
			"  latency POST → SMTP DATA at a steady %.0f messages/s: p50 %v, p99 %v   target p99 ≤ %v: %s\n"+
			"  apart (every request answered before the worker starts):\n"+
			"              API alone     %6.0f requests/s, CPU %.2f ms a request (HTTP clients and server included: bench process %.2f ms, redis-server %.2f ms), %.1f Redis round trips\n"+
			"              worker alone  %6.0f messages/s, CPU %.2f ms a message (SMTP server included: bench process %.2f ms, redis-server %.2f ms), %.1f Redis round trips\n",
			count, httpClients(), concurrency, runtime.NumCPU(),
			bare.rate, run.rate,
			ratio, targetMessageRatio, verdict(ratio >= targetMessageRatio, fmt.Sprintf("%.0f%% short", (1-ratio/targetMessageRatio)*100)),
			len(runs), strings.Join(ratios, ", "),
			run.cost.perUnit(), targetCommands, verdict(run.cost.perUnit() <= targetCommands, fmt.Sprintf("%.1f over", run.cost.perUnit()-targetCommands)),
			run.cost.cmds.top(count, 25),
			bare.cost.perUnit(), bare.cost.cmds.top(count, 6),
			run.cost.readsPerUnit(), bare.cost.readsPerUnit(),
			hs+hr, hs, hr, run.allocs, run.allocBytes/1024, as+ar, as, ar,
			paced, p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), targetP99,
			verdict(p99 <= targetP99, fmt.Sprintf("%v over", (p99-targetP99).Round(100*time.Microsecond))),
			apart.apiRate, apiS+apiR, apiS, apiR, apart.api.readsPerUnit(),
			apart.workerRate, wkS+wkR, wkS, wkR, apart.worker.readsPerUnit())
		printErrors()
		if profile != "" {
			printProfile(profile)
		}
	}
}

// BenchmarkMessageFloor shows how much of bare asynq's rate the one-off
// message path can reach before herald's own delivery work: the same
// requests to POST /v1/messages (idempotency record, customer check,
// enqueue) with the worker's message handler replaced (floorMux) by one
// that does nothing, and by one that sends an email rendered before the
// run through herald's email sender to the in-process SMTP server. Each
// runs in turn with bare asynq and herald's own handler, pairs() times;
// each figure is its median ratio. What herald's handler adds on top
// (consent, claim, rendering, ledger, timeline) is the distance between
// the last two.
func BenchmarkMessageFloor(b *testing.B) {
	rs := redistest.Start(b)
	m := meter{rdb: rs.Client(), redisPID: childPID(b, "redis-server", strconv.Itoa(rs.Port()))}
	count := n()
	kinds := []struct {
		name string
		mode runMode
	}{
		{"bare HTTP door, no-op handler", runMode{bareAPI: true, floor: floorNoop}},
		{"bare HTTP door, pre-rendered email", runMode{bareAPI: true, floor: floorEmail}},
		{"herald's API, no-op handler", runMode{floor: floorNoop}},
		{"herald's API, pre-rendered email", runMode{floor: floorEmail}},
		{"herald's API and message handler", runMode{}},
	}
	for b.Loop() {
		ratios := make([][]float64, len(kinds))
		cpu := make([][]float64, len(kinds))
		var bareCPU []float64
		for range pairs() {
			bare := bareAsynq(b, m, count)
			s, r := bare.cost.cpuMs()
			bareCPU = append(bareCPU, s+r)
			for i, k := range kinds {
				run := heraldMessages(b, m, rs.Addr, count, k.mode)
				s, r := run.cost.cpuMs()
				ratios[i] = append(ratios[i], run.rate/bare.rate)
				cpu[i] = append(cpu[i], s+r)
			}
		}
		median := func(v []float64) float64 {
			v = slices.Clone(v)
			slices.Sort(v)
			return v[len(v)/2]
		}
		fmt.Printf("\nmessage path floor, N=%d, %d keep-alive HTTP clients, worker concurrency %d, %d CPUs; median of %d runs each, bare asynq %.2f ms CPU a task:\n",
			count, httpClients(), concurrency, runtime.NumCPU(), pairs(), median(bareCPU))
		for i, k := range kinds {
			var each []string
			for _, r := range ratios[i] {
				each = append(each, fmt.Sprintf("%.2f", r))
			}
			fmt.Printf("  %-36s ratio %.2f (runs %s), CPU %.2f ms a message (bench process and redis-server)\n",
				k.name, median(ratios[i]), strings.Join(each, ", "), median(cpu[i]))
			b.ReportMetric(median(ratios[i]), fmt.Sprintf("ratio-%d", i))
		}
	}
}

// printProfile prints the top of a CPU profile.
func printProfile(path string) {
	abs, _ := os.Getwd()
	fmt.Printf("\nCPU profile of herald's run (%s/%s), go tool pprof -top -nodecount=25:\n", abs, path)
	out, err := exec.Command(goBin(), "tool", "pprof", "-top", "-nodecount=25", path).CombinedOutput()
	if err != nil {
		fmt.Printf("  go tool pprof: %v\n", err)
	}
	fmt.Printf("%s\n", out)
}

// TestQueuesAsConfigured keeps the benchmark's queues in step with the
// defaults of `herald worker`.
func TestQueuesAsConfigured(t *testing.T) {
	require.Equal(t, config.DefaultQueues, heraldQueues)
}
