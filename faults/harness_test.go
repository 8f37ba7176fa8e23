package faults_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"mime"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/msgid"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// heraldBin is the herald binary every scenario runs, built once.
var heraldBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "herald-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	heraldBin = filepath.Join(dir, "herald")
	build := exec.Command(goBin(), "build", "-o", heraldBin, "github.com/heraldhq/herald/cmd/herald")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: build herald: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

func goBin() string {
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

const (
	mailFrom   = "Faults <faults@herald.test>"
	mailDomain = "herald.test"
	signingKey = "faults-signing-key-0123456789abcdef"
	slackToken = "xoxb-faults"
)

// envInt reads a positive whole number from the environment.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

// messages is how many one-off messages a scenario sends.
func messages() int { return envInt("HERALD_FAULTS_MESSAGES", 2000) }

// outage is how long a provider stays broken.
func outage() time.Duration { return envDuration("HERALD_FAULTS_OUTAGE", 10*time.Second) }

// rig is one scenario's world: Redis, the providers, the workers, the
// client, and what the providers received.
type rig struct {
	t     *testing.T
	name  string
	dir   string
	start time.Time

	redisEnv  []string // HERALD_REDIS_URL or HERALD_REDIS_CLUSTER_ADDRS
	conn      asynq.RedisConnOpt
	client    *client.Client
	insp      *asynq.Inspector
	smtp      *smtpserver.Server
	slack     *slackapi.Server
	workers   []*worker
	extraEnv  []string
	customers []herald.Customer

	mu        sync.Mutex
	got       map[string]int      // tag -> receipts (email and Slack together)
	msgIDs    map[string][]string // tag -> Message-ID of each email
	asked     map[string]ask      // tag -> what was asked
	arrivals  []arrival           // every receipt, in order
	delivered atomic.Int64        // tags with at least one receipt
}

// arrival is one receipt at a provider.
type arrival struct {
	tag string
	at  time.Time
}

// ask is one expected delivery.
type ask struct {
	Customer  string
	MessageID string // one-off messages only
	// MayFail marks a delivery the scenario expects to fail for good
	// (bounced address and no Slack): it must then show as failed-permanent
	// or suppressed on the timeline rather than arrive.
	MayFail bool
}

type worker struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

func newRig(t *testing.T, name string, redisEnv []string, conn asynq.RedisConnOpt) *rig {
	t.Helper()
	r := &rig{t: t, name: name, dir: t.TempDir(), redisEnv: redisEnv, conn: conn,
		got: map[string]int{}, msgIDs: map[string][]string{}, asked: map[string]ask{}}
	var err error
	r.smtp, err = smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.smtp.Close() })
	r.smtp.OnReceive(r.onMail)
	r.slack, err = slackapi.Start(slackapi.Options{Token: slackToken})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.slack.Close() })
	r.slack.OnPost(func(p slackapi.Post) { r.receive(p.Text, "") })

	r.client, err = client.NewFromOpt(conn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.client.Close() })
	r.insp = asynq.NewInspector(conn)
	t.Cleanup(func() { _ = r.insp.Close() })
	t.Cleanup(func() {
		if t.Failed() {
			r.dumpLogs()
		}
	})
	return r
}

var tagRe = regexp.MustCompile(`ref (zq-[a-z0-9]+-[a-z0-9]+(?:\.[wn])?)`)

func (r *rig) onMail(m smtpserver.Received) {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		r.receive("", "")
		return
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		subject = msg.Header.Get("Subject")
	}
	r.receive(subject, m.MessageID)
}

func (r *rig) receive(text, messageID string) {
	tag := "unknown"
	if m := tagRe.FindStringSubmatch(text); m != nil {
		tag = m[1]
	}
	r.mu.Lock()
	r.got[tag]++
	r.arrivals = append(r.arrivals, arrival{tag: tag, at: time.Now()})
	if messageID != "" {
		r.msgIDs[tag] = append(r.msgIDs[tag], messageID)
	}
	first := r.got[tag] == 1
	r.mu.Unlock()
	if first {
		r.delivered.Add(1)
	}
}

// env is what every worker process starts with.
func (r *rig) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HERALD_") {
			env = append(env, kv)
		}
	}
	cfg, err := filepath.Abs("testdata/herald.yaml")
	require.NoError(r.t, err)
	tpl, _ := filepath.Abs("testdata/templates")
	wf, _ := filepath.Abs("testdata/workflows")
	env = append(env, r.redisEnv...)
	env = append(env,
		"HERALD_CONFIG="+cfg,
		"HERALD_SMTP_URL="+r.smtp.URL()+"&pool=4",
		"HERALD_MAIL_FROM="+mailFrom,
		"HERALD_SLACK_TOKEN="+slackToken,
		"HERALD_SLACK_API_URL="+r.slack.URL(),
		"HERALD_SIGNING_KEY="+signingKey,
		"HERALD_TEMPLATES="+tpl,
		"HERALD_WORKFLOWS="+wf,
		"HERALD_LOG_FORMAT=text",
		"HERALD_WORKER_CONCURRENCY=10",
	)
	return append(env, r.extraEnv...)
}

// startWorkers starts n herald worker processes and waits until each says
// it started.
func (r *rig) startWorkers(n int) {
	r.t.Helper()
	for i := 0; i < n; i++ {
		r.workers = append(r.workers, nil)
		r.restart(len(r.workers) - 1)
	}
}

// restart starts worker i (again).
func (r *rig) restart(i int) {
	r.t.Helper()
	logPath := filepath.Join(r.dir, fmt.Sprintf("worker%d-%d.log", i, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	require.NoError(r.t, err)
	cmd := exec.Command(heraldBin, "worker")
	cmd.Env = r.env()
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(r.t, cmd.Start())
	w := &worker{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(w.done)
	}()
	r.t.Cleanup(func() {
		select {
		case <-w.done:
		default:
			_ = cmd.Process.Kill()
			<-w.done
		}
	})
	r.workers[i] = w
	deadline := time.Now().Add(15 * time.Second)
	for {
		b, _ := os.ReadFile(logPath)
		if bytes.Contains(b, []byte("herald started")) {
			return
		}
		select {
		case <-w.done:
			r.t.Fatalf("worker %d exited at start:\n%s", i, b)
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("worker %d did not start within 15s:\n%s", i, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends sig to worker i and waits for it to exit.
func (r *rig) kill(i int, sig syscall.Signal) {
	r.t.Helper()
	w := r.workers[i]
	require.NoError(r.t, w.cmd.Process.Signal(sig))
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		r.t.Fatalf("worker %d still running 30s after %v", i, sig)
	}
}

func (r *rig) dumpLogs() {
	entries, _ := os.ReadDir(r.dir)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".log") {
			continue
		}
		f, err := os.Open(filepath.Join(r.dir, e.Name()))
		if err != nil {
			continue
		}
		var lines []string
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if l := sc.Text(); strings.Contains(l, "level=ERROR") || strings.Contains(l, "level=WARN") {
				lines = append(lines, l)
			}
		}
		_ = f.Close()
		if len(lines) > 40 {
			lines = lines[len(lines)-40:]
		}
		r.t.Logf("%s (last warnings and errors):\n%s", e.Name(), strings.Join(lines, "\n"))
	}
}

// customerSpec says how to make customer i.
type customerSpec struct {
	n     int
	slack func(i int) bool // gets a Slack user ID
	email func(i int) bool // gets an email address (default: all)
}

func custID(i int) string { return fmt.Sprintf("c%05d", i) }

func custEmail(i int) string { return fmt.Sprintf("c%05d@example.com", i) }

func slackID(i int) string { return fmt.Sprintf("U%08d", i) }

func (r *rig) addCustomers(spec customerSpec) {
	r.t.Helper()
	ctx := context.Background()
	for i := 0; i < spec.n; i++ {
		c := herald.Customer{ID: custID(i), Locale: "en", Timezone: "UTC"}
		if spec.email == nil || spec.email(i) {
			c.Email = custEmail(i)
		}
		if spec.slack != nil && spec.slack(i) {
			c.SlackUserID = slackID(i)
		}
		_, err := r.client.UpsertCustomer(ctx, c)
		require.NoError(r.t, err)
		r.customers = append(r.customers, c)
	}
}

func (r *rig) tag(kind string, i int) string { return fmt.Sprintf("zq-%s-%s%d", r.name, kind, i) }

// load describes the work a scenario asks for.
type load struct {
	messages int
	journeys int                          // trial.started events, each two deliveries
	channels func(i int) []herald.Channel // per message; default email then Slack
	mayFail  func(customer int) bool
	workers  int // enqueueing goroutines, default 4
}

// enqueue asks for the load in the background and returns when everything
// is enqueued. Client errors (Redis restarting) are retried with the same
// idempotency key, as an application would.
func (r *rig) enqueue(ctx context.Context, l load) <-chan error {
	nc := len(r.customers)
	type job struct {
		i       int
		journey bool
	}
	jobs := make(chan job)
	out := make(chan error, 1)
	for i := 0; i < l.messages; i++ {
		tag := r.tag("m", i)
		ci := i % nc
		r.asked[tag] = ask{Customer: custID(ci), MayFail: l.mayFail != nil && l.mayFail(ci)}
	}
	for i := 0; i < l.journeys; i++ {
		ci := i % nc
		for _, s := range []string{".w", ".n"} {
			r.asked[r.tag("j", i)+s] = ask{Customer: custID(ci), MayFail: l.mayFail != nil && l.mayFail(ci)}
		}
	}
	var ids sync.Map
	var wg sync.WaitGroup
	var firstErr atomic.Value
	nw := l.workers
	if nw == 0 {
		nw = 4
	}
	for w := 0; w < nw; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				for attempt := 0; ; attempt++ {
					var err error
					ci := j.i % nc
					if j.journey {
						tag := r.tag("j", j.i)
						_, err = r.client.Event(ctx, custID(ci), "trial.started", map[string]any{"tag": tag}, tag)
					} else {
						tag := r.tag("m", j.i)
						chans := []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}
						if l.channels != nil {
							chans = l.channels(j.i)
						}
						var id string
						id, err = r.client.Send(ctx, client.Message{CustomerID: custID(ci), Template: "note", Topic: "billing",
							Data: map[string]any{"tag": tag}, Channels: chans, IdempotencyKey: tag})
						if err == nil {
							ids.Store(tag, id)
						}
					}
					if err == nil {
						break
					}
					if ctx.Err() != nil || attempt > 200 {
						firstErr.CompareAndSwap(nil, err)
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	go func() {
		// Interleave journeys with messages so both run through the fault.
		step := 1
		if l.journeys > 0 {
			step = max(1, l.messages/l.journeys)
		}
		ji := 0
		for i := 0; i < l.messages; i++ {
			jobs <- job{i: i}
			if i%step == 0 && ji < l.journeys {
				jobs <- job{i: ji, journey: true}
				ji++
			}
		}
		for ; ji < l.journeys; ji++ {
			jobs <- job{i: ji, journey: true}
		}
		close(jobs)
		wg.Wait()
		r.mu.Lock()
		ids.Range(func(k, v any) bool {
			a := r.asked[k.(string)]
			a.MessageID = v.(string)
			r.asked[k.(string)] = a
			return true
		})
		r.mu.Unlock()
		if e, ok := firstErr.Load().(error); ok {
			out <- e
		}
		close(out)
	}()
	return out
}

// waitDelivered blocks until at least n tags have arrived.
func (r *rig) waitDelivered(n int, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for r.delivered.Load() < int64(n) {
		if time.Now().After(deadline) {
			r.t.Fatalf("only %d of %d deliveries within %s", r.delivered.Load(), n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idle reports whether no herald task is waiting, running or retrying.
func (r *rig) idle() bool {
	qs, err := r.insp.Queues()
	if err != nil {
		return false
	}
	for _, q := range qs {
		info, err := r.insp.GetQueueInfo(q)
		if err != nil {
			return false
		}
		if info.Pending+info.Active+info.Scheduled+info.Retry+info.Aggregating > 0 {
			return false
		}
	}
	return true
}

// result is one line of the table.
type result struct {
	scenario                                  string
	asked, delivered, failed, lost, duplicate int
	seconds                                   float64
}

func (res result) String() string {
	return fmt.Sprintf("%-18s asked=%5d delivered=%5d failed-permanent=%4d lost=%d duplicates=%d seconds=%.1f",
		res.scenario+",", res.asked, res.delivered, res.failed, res.lost, res.duplicate, res.seconds)
}

// finish waits until every asked delivery arrived (or, for those allowed
// to, failed for good) and the queues are idle, then counts, prints the
// scenario's line and checks the targets.
func (r *rig) finish(enq <-chan error, within time.Duration, maxDupRate float64) result {
	r.t.Helper()
	require.NoError(r.t, <-enq, "enqueue")
	deadline := time.Now().Add(within)
	for {
		if r.allAccounted() && r.idle() {
			break
		}
		if time.Now().After(deadline) {
			r.t.Errorf("%s: not settled within %s", r.name, within)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	// Late copies (a re-delivered task) would arrive now.
	time.Sleep(2 * time.Second)
	res := r.count()
	fmt.Printf("FAULTS %s\n", res)
	r.t.Logf("%s", res)
	require.Zero(r.t, res.lost, "lost deliveries")
	require.Zero(r.t, r.got["unknown"], "messages without a known tag")
	require.LessOrEqual(r.t, float64(res.duplicate), maxDupRate*float64(res.asked), "duplicates")
	r.checkMessageIDs()
	return res
}

// allAccounted reports whether each asked delivery arrived or may fail.
func (r *rig) allAccounted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for tag, a := range r.asked {
		if r.got[tag] == 0 && !a.MayFail {
			return false
		}
	}
	return true
}

func (r *rig) count() result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := result{scenario: r.name, asked: len(r.asked), seconds: time.Since(r.start).Seconds()}
	ctx := context.Background()
	for tag, a := range r.asked {
		n := r.got[tag]
		switch {
		case n > 0:
			res.delivered++
			res.duplicate += n - 1
		case a.MayFail && r.failedForGood(ctx, a):
			res.failed++
		default:
			res.lost++
			if res.lost <= 10 {
				r.t.Logf("lost: %s (customer %s, message %s)", tag, a.Customer, a.MessageID)
				// What the customer's timeline says of it, to tell a stuck
				// message from one never queued.
				if tl, err := r.client.Timeline(ctx, a.Customer, 0); err == nil {
					for _, e := range tl {
						if strings.HasPrefix(e.Ref, a.MessageID) {
							r.t.Logf("  timeline %s %s %s: %s", e.At.Format(time.RFC3339Nano), e.Kind, e.Outcome, e.Summary)
						}
					}
				}
			}
		}
	}
	return res
}

// failedForGood reports whether the customer's timeline shows the message
// as failed-permanent (each such delivery also archived) or suppressed.
func (r *rig) failedForGood(ctx context.Context, a ask) bool {
	if a.MessageID == "" {
		return false
	}
	tl, err := r.client.Timeline(ctx, a.Customer, 0)
	if err != nil {
		return false
	}
	ok := false
	for _, e := range tl {
		if e.Ref != a.MessageID || e.Kind != herald.KindDelivery {
			continue
		}
		switch e.Outcome {
		case herald.OutcomeSuppressed:
			ok = true
		case herald.OutcomeFailedPermanent:
			ok = true
			r.requireArchived(e.Channel, a.MessageID, tl)
		}
	}
	return ok
}

// requireArchived checks that a failed-permanent delivery either fell back
// to another channel (on the timeline) or is in the asynq archive, where
// the dashboard shows it: the message task that tried it inline, or the
// queued delivery (a retry) that failed for good.
func (r *rig) requireArchived(ch herald.Channel, messageID string, tl []herald.TimelineEntry) {
	for _, e := range tl {
		if e.Ref == messageID && strings.Contains(e.Summary, "falls back from "+string(ch)) {
			return
		}
	}
	for _, q := range wire.Queues {
		tasks, err := r.insp.ListArchivedTasks(q, asynq.PageSize(1000))
		if err != nil {
			continue
		}
		for _, ti := range tasks {
			if ti.ID == "m:"+messageID || strings.HasPrefix(ti.ID, "d:"+messageID+":"+string(ch)) {
				return
			}
		}
	}
	r.t.Errorf("failed-permanent delivery %s by %s neither fell back nor is in the archive", messageID, ch)
}

// checkMessageIDs checks that every email of a one-off message carries the
// Message-ID sealed from its customer and message (or, too long to seal,
// derived from its delivery key), copies included.
func (r *rig) checkMessageIDs() {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := msgid.NewKeys([]byte(signingKey))
	bad := 0
	for tag, mids := range r.msgIDs {
		a, ok := r.asked[tag]
		if !ok || a.MessageID == "" {
			continue
		}
		want := email.MessageID(a.MessageID+":email", mailDomain)
		if local, ok := keys.Seal(a.Customer, a.MessageID); ok {
			want = "<" + local + "@" + mailDomain + ">"
		}
		for _, m := range mids {
			if m != want {
				bad++
			}
		}
	}
	require.Zero(r.t, bad, "emails whose Message-ID is not the one of their delivery")
}

// archivedFailures counts failed-permanent timeline entries of customers
// for channel ch, each checked against the archive.
func (r *rig) archivedFailures(ch herald.Channel, customers []string) int {
	r.t.Helper()
	n := 0
	for _, c := range customers {
		tl, err := r.client.Timeline(context.Background(), c, 0)
		require.NoError(r.t, err)
		for _, e := range tl {
			if e.Kind == herald.KindDelivery && e.Channel == ch && e.Outcome == herald.OutcomeFailedPermanent {
				n++
				r.requireArchived(ch, e.Ref, tl)
			}
		}
	}
	return n
}
