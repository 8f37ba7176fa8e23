// Command herald runs the herald service and its tools. See `herald help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
)

const usage = `herald — customer communication across email and Slack, on asynq and Redis.

Usage:
  herald dev                 everything in one process with embedded Redis, SMTP and Slack capture
  herald run                 worker and HTTP server in one process
  herald worker [--watch]    the asynq worker
  herald serve               the HTTP server (API, preference centre, dashboard, metrics)
  herald validate [--role run|worker|serve|content] [--connect] [BROADCAST_FILE …]
                             check the config, what the role needs to start, templates and
                             workflows and broadcast files (file:line: message); exit 1 on problems
  herald preview --template T [--locale L] [--channel email|slack] [--data file.json] [--html out.html]
  herald event CUSTOMER NAME [--data JSON] [--key IDEMPOTENCY_KEY]
  herald send CUSTOMER TEMPLATE --topic TOPIC [--data JSON] [--channels email,slack] [--key K]
  herald customer CUSTOMER   show a customer; with --email E, --slack U…, --locale L, --timezone Z,
                             --attr k=v …, --unset FIELD …: create or change it; --erase: erase it
  herald customer prefs CUSTOMER [--set JSON]
  herald send --test-to ADDRESS --template T [--locale L] [--data f.json] [--channel email|slack]
  herald graph WORKFLOW [--format mermaid|dot|svg]
  herald workflows · herald stats WORKFLOW [--since 7d]
  herald journeys CUSTOMER · herald journeys cancel CUSTOMER JOURNEY · herald message ID
  herald broadcast create FILE [--dry-run] · list · show ID [--watch] · cancel ID

Every command reads --config FILE (or HERALD_CONFIG) and HERALD_* variables. event, send,
customer, workflows, stats, journeys, message and broadcast reach herald through its Redis
(HERALD_REDIS_URL) alone; a test send also needs the channel's settings.
`

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		fmt.Fprintln(os.Stderr, "herald:", err)
		os.Exit(1)
	}
}

// exitError exits with a code without printing more.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil // the command printed its flags: asking for help is no failure
	}
	return err
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "dev":
		return cmdDev(ctx, args, stdout, stderr)
	case "run", "worker", "serve":
		return cmdServe(ctx, cmd, args, stderr)
	case "validate":
		return cmdValidate(ctx, args, stdout, stderr)
	case "preview":
		return cmdPreview(args, stdout, stderr)
	case "event":
		return cmdEvent(ctx, args, stdout, stderr)
	case "send":
		return cmdSend(ctx, args, stdout, stderr)
	case "customer":
		return cmdCustomer(ctx, args, stdout, stderr)
	case "graph":
		return cmdGraph(args, stdout, stderr)
	case "workflows":
		return cmdWorkflows(ctx, args, stdout, stderr)
	case "stats":
		return cmdStats(ctx, args, stdout, stderr)
	case "journeys":
		return cmdJourneys(ctx, args, stdout, stderr)
	case "message":
		return cmdMessage(ctx, args, stdout, stderr)
	case "broadcast":
		return cmdBroadcast(ctx, args, stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", cmd)
}

// flags returns a FlagSet with --config.
func flags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("herald "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", os.Getenv("HERALD_CONFIG"), "YAML config file (HERALD_CONFIG)")
	return fs, path
}

// parse parses flags allowing positional arguments before them.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loadConfig loads the config and reports every problem in it at once,
// including what role needs to start ("" for none).
func loadConfig(path string, role config.Role) (config.Config, error) {
	c, err := config.LoadFor(path, role)
	var fe *config.FileError
	if err != nil && !errors.As(err, &fe) {
		return c, fmt.Errorf("config:\n%w", err)
	}
	return c, err
}

func newLogger(c config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func cmdServe(ctx context.Context, role string, args []string, stderr io.Writer) error {
	fs, path := flags(role, stderr)
	watch := fs.Bool("watch", false, "reload workflows and templates when their files change")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*path, config.Role(role))
	if err != nil {
		return err
	}
	log := newLogger(c, stderr)
	slog.SetDefault(log)
	// go-redis logs its pool troubles with its own plain-text logger: route
	// them into the one structured stream.
	redis.SetLogger(redisLogger{log})
	m := &Main{Config: c, Logger: log, Worker: role != "serve", HTTP: role != "worker",
		TaskCheckInterval: 200 * time.Millisecond, DelayedTaskCheckInterval: time.Second}
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		return err
	}
	// Listen before saying "started": a SIGHUP sent on that line must
	// reload, not kill the process.
	sig, stop := notifySignals()
	defer stop()
	if err := m.Start(ctx); err != nil {
		_ = m.Close()
		return err
	}
	started := []any{"role", role}
	if m.HTTP {
		started = append(started, "http", m.Addr(), "metrics", m.Addr()+"/metrics")
	}
	if m.Worker {
		chans := make([]string, 0, len(herald.Channels))
		for _, ch := range herald.Channels {
			if m.Engine.HasSender(ch) {
				chans = append(chans, string(ch))
			}
		}
		started = append(started, "channels", chans, "queues", c.Worker.Queues, "strict_priority", c.Worker.StrictPriority == nil || *c.Worker.StrictPriority,
			"concurrency", c.Worker.Concurrency, "critical_concurrency", c.Worker.CriticalConcurrency)
		if a := m.MetricsAddr(); a != "" {
			started = append(started, "metrics", a+"/metrics")
		}
	}
	log.Info("herald started", started...)
	m.role = role
	return m.wait(ctx, sig, *watch)
}

// notifySignals delivers SIGINT, SIGTERM and SIGHUP to the channel it
// returns until stop is called.
func notifySignals() (sig <-chan os.Signal, stop func()) {
	c := make(chan os.Signal, 4)
	signal.Notify(c, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return c, func() { signal.Stop(c) }
}

// redisLogger routes go-redis's log lines into slog.
type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// wait blocks until SIGINT/SIGTERM, reloading content on SIGHUP (and on
// file changes with watch), then shuts down gracefully.
func (m *Main) wait(ctx context.Context, sig <-chan os.Signal, watch bool) error {
	var tick <-chan time.Time
	if watch {
		every := m.WatchInterval
		if every <= 0 {
			every = 2 * time.Second
		}
		t := time.NewTicker(every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return m.Close()
		case s := <-sig:
			if s == syscall.SIGHUP {
				m.Reload()
				continue
			}
			what := "finishing in-flight tasks"
			switch m.role {
			case "serve":
				what = "draining HTTP requests"
			case "run":
				what = "draining HTTP requests and finishing in-flight tasks"
			}
			m.Logger.Info("shutting down: "+what, "signal", s.String())
			return m.Close()
		case <-tick:
			if m.contentStamp() != m.stamp {
				m.Reload()
			}
		}
	}
}

// Reload loads and validates content again; an invalid change is refused
// and the running set stays.
func (m *Main) Reload() bool {
	// Stamped before reading: a change made while loading is seen next time.
	m.stamp = m.contentStamp()
	t, w, err := m.loadContent()
	if err == nil {
		err = m.templatesStillSent(t, w)
	}
	if err != nil {
		// The metric first: whoever reads the log line finds it set.
		m.reloadRefused.Set(1)
		m.Logger.Error("reload refused: content is invalid; the running workflows and templates stay", "err", err.Error())
		return false
	}
	m.Engine.SetContent(t, w)
	m.reloadRefused.Set(0)
	// Producers without content of their own check template names
	// against what the workers published.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Engine.PublishRouting(ctx); err != nil {
		m.Logger.Warn("reload: the template list for the Go client and CLI was not published", "err", err.Error())
	}
	m.Logger.Info("reloaded workflows and templates")
	return true
}

// templatesStillSent refuses new content that removes a template a
// running journey may still send. Journeys finish on the workflow version
// they started with, which names its templates: every version of a
// workflow that has journeys running now (the running gauge, per version),
// other than the new content's current one, must still find each template
// it sends. A version this process never loaded is read from the file
// stored when its first journey started. The workflows looked at are those
// the old and the new content know.
func (m *Main) templatesStillSent(t *templates.Set, w *workflows.Set) error {
	old := m.Engine.Workflows()
	if old == nil || t == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ids := map[string]bool{}
	for _, v := range old.Versions() {
		ids[v.ID] = true
	}
	if w != nil {
		for _, v := range w.All() {
			ids[v.ID] = true
		}
	}
	var probs []string
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		running, err := m.Engine.RunningVersions(ctx, id)
		if err != nil {
			return err
		}
		for _, rv := range running {
			if w != nil {
				if cur, ok := w.Get(id); ok && cur.Version == rv.Version {
					continue // checked with the new content
				}
			}
			if rv.Workflow == nil {
				continue // its file is gone: those journeys cannot go on, whatever the templates
			}
			var gone []string
			for _, name := range rv.Workflow.Templates() {
				if !t.Has(name) {
					gone = append(gone, name)
				}
			}
			if len(gone) > 0 {
				probs = append(probs, fmt.Sprintf("workflow %s: %d running journeys on version %s send template %s: keep it until they end (or cancel them)", id, rv.Running, rv.Version, strings.Join(gone, ", ")))
			}
		}
	}
	if len(probs) > 0 {
		return contentError(probs)
	}
	return nil
}

// contentStamp changes when a content file changes.
func (m *Main) contentStamp() string {
	var b strings.Builder
	for _, dir := range []string{m.Config.Content.Templates, m.Config.Content.Workflows} {
		if dir == "" {
			continue
		}
		_ = walkStamp(dir, &b)
	}
	return b.String()
}
