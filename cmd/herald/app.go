package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/ack"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/channels/slack"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/httpapi/centre"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/webhooks"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// Main is the herald process: it builds every part from a Config, runs the
// roles asked for (worker, HTTP server) and closes them in order. End-to-end
// tests reuse it.
type Main struct {
	Config config.Config
	Logger *slog.Logger
	role   string // run, worker or serve, for the shutdown line
	// Worker and HTTP choose the roles.
	Worker, HTTP bool
	// content overrides the configured folders (herald dev runs the
	// embedded examples); nil means the folders of Config.Content.
	content *contentSource
	// WatchInterval is how often --watch looks for changed files. Default 2s.
	WatchInterval time.Duration
	// Tune shortens asynq's polling intervals for prompt follow-ups.
	TaskCheckInterval, DelayedTaskCheckInterval time.Duration
	// MonitoringLogin is the secret of a dashboard login link (herald dev).
	MonitoringLogin string
	// anyChannel skips the check that every send step has a configured
	// channel: a CLI command's engine sends only what it is asked to.
	anyChannel bool
	// reloadRefused is 1 while the last reload was refused: the process
	// runs older content than its folders hold.
	reloadRefused prometheus.Gauge

	RedisConn asynq.RedisConnOpt
	Redis     redis.UniversalClient
	Engine    *engine.Engine
	Registry  *prometheus.Registry
	Handler   http.Handler

	server   *engine.Worker
	webhooks *webhooks.Service
	// stopWaker stops the waker that queues due journey follow-ups.
	stopWaker func()
	httpSrv   *http.Server
	listener  net.Listener
	// metricsSrv serves a worker-only process's metrics.
	metricsSrv      *http.Server
	metricsListener net.Listener
	closers         []func() error
	slack           *slack.Sender // for chat.update after a button press
	mu              sync.Mutex
	loaded          bool
	// stamp is contentStamp as of the content loaded last (or refused).
	stamp string
}

// Open connects to Redis, loads and validates content and builds the
// engine and the HTTP handler. It starts nothing.
func (m *Main) Open(ctx context.Context) error {
	if m.Logger == nil {
		m.Logger = slog.Default()
	}
	c := m.Config
	var err error
	if m.RedisConn == nil {
		if m.RedisConn, err = redisConn(c.Redis); err != nil {
			return err
		}
	}
	rdb, ok := m.RedisConn.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("redis: unsupported connection option")
	}
	m.Redis = rdb
	m.closers = append(m.closers, rdb.Close)
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pingCtx).Err(); err != nil {
		return fmt.Errorf("redis: %w (check HERALD_REDIS_URL)", err)
	}

	m.stamp = m.contentStamp() // before reading: --watch sees any later change
	tset, wset, err := m.loadContent()
	if err != nil {
		return err
	}
	m.loaded = true
	src := m.contentSource()
	m.Logger.Info("content loaded", "templates", src.describe("templates"), "workflows", src.describe("workflows"))

	senders, err := m.senders()
	if err != nil {
		return err
	}
	if len(c.SigningKey) == 0 {
		return errors.New("signing_key: HERALD_SIGNING_KEY is required (32+ random characters) to sign preference and unsubscribe links")
	}
	m.Registry = prometheus.NewRegistry()
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reloadRefused = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "herald_content_reload_refused",
		Help: "1 while this process runs older templates and workflows than its folders hold: the last reload (SIGHUP or --watch) found problems and was refused.",
	})
	m.Registry.MustRegister(m.reloadRefused)
	insp := asynq.NewInspectorFromRedisClient(rdb)
	m.Registry.MustRegister(engine.NewRedisCollector(insp))
	if m.HTTP {
		// Queue figures are cluster-wide: only the processes serving HTTP
		// read them from Redis, so workers neither repeat them nor add
		// scrape load (queries take them with max by queue).
		m.Registry.MustRegister(engine.NewQueueCollector(insp), engine.NewFollowUpCollector(rdb, c.Worker.WatchdogInterval))
	}
	if err := m.openWebhooks(); err != nil {
		return err
	}

	m.Engine, err = engine.New(engine.Options{
		Redis: rdb, RedisConn: m.RedisConn, Senders: senders, Templates: tset, Workflows: wset,
		Policy:    policy(c),
		PublicURL: c.HTTP.PublicURL, SigningKey: []byte(c.SigningKey.Reveal()), TokenTTL: c.TokenTTL,
		UnsubscribeMailto: c.SMTP.UnsubscribeMailto, ReplyTo: c.SMTP.ReplyTo, ClickTracking: c.ClickTracking,
		DeliveryTimeout: c.Worker.DeliveryTimeout, MaxRetry: c.Worker.MaxRetry, PreviousSigningKeys: previousKeys(c.PreviousSigningKeys),
		ChannelConcurrency: max(1, c.Worker.Concurrency*3/4), RateLimits: rateLimits(rdb, c.RateLimits),
		RetryBase: c.Worker.RetryBase, RetryMax: c.Worker.RetryMax, WatchdogLate: c.Worker.WatchdogInterval,
		Metrics: engine.NewMetrics(m.Registry), Logger: m.Logger, SlackUpdater: m.slackUpdater(),
		AppEvents: m.appEvents(), SecretKeys: secretKeys(c.Worker.SecretKeys),
		DefaultZone: defaultZone(c.Content.DefaultTimezone),
	})
	if err != nil {
		return err
	}
	m.closers = append(m.closers, m.Engine.Close)

	tokens := make([]httpapi.Token, 0, len(c.API.Tokens))
	for _, t := range c.API.Tokens {
		tokens = append(tokens, httpapi.Token{Name: t.Name, Value: t.Value.Reveal()})
	}
	mon := asynqmon.New(asynqmon.Options{
		RootPath: "/monitoring", RedisConnOpt: m.RedisConn, ReadOnly: *c.Monitoring.ReadOnly,
		PrometheusAddress: "",
	})
	m.closers = append(m.closers, mon.Close)
	m.Handler = httpapi.New(httpapi.Config{
		Engine: m.Engine, Tokens: tokens, MaxBody: c.HTTP.MaxBodyBytes,
		Monitoring: mon, MonitoringUser: c.Monitoring.Username, MonitoringPassword: c.Monitoring.Password.Reveal(),
		MonitoringLogin: m.MonitoringLogin, PublicURL: c.HTTP.PublicURL,
		Metrics:         promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry}),
		MetricsToken:    c.HTTP.MetricsToken.Reveal(),
		PublicRateLimit: publicRateLimit(c.HTTP), TrustedProxies: c.HTTP.TrustedProxyPrefixes(),
		Centre: centre.New(centre.Config{
			Prefs: m.Engine.Service(), Key: []byte(c.SigningKey.Reveal()), Topics: policy(c).Topics, DefaultLocale: c.Content.DefaultLocale,
			Customer: m.Engine.Service().Customer,
			Logger:   m.Logger,
		}),
		Extra: map[string]http.Handler{
			"POST /slack/interactions": &ack.Slack{Engine: m.Engine, SigningSecret: c.Slack.SigningSecret.Reveal(), Logger: m.Logger},
			"GET /r/{token}":           &ack.Click{Engine: m.Engine, Key: []byte(c.SigningKey.Reveal()), Logger: m.Logger},
		},
		Ready:      m.ready,
		Logger:     m.Logger,
		Registerer: m.Registry,
	})
	return nil
}

// publicRateLimit is http.public_rate_limit, its default when unset.
func publicRateLimit(h config.HTTP) int {
	if h.PublicRateLimit == nil {
		return config.DefaultPublicRateLimit
	}
	return *h.PublicRateLimit
}

func (m *Main) ready(ctx context.Context) error {
	if err := m.Redis.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis unreachable: %v", err)
	}
	if !m.loaded {
		return errors.New("templates and workflows not loaded")
	}
	return nil
}

// contentSource is where this process's templates and workflows come from.
func (m *Main) contentSource() contentSource {
	if m.content != nil {
		return *m.content
	}
	return folderContent(m.Config)
}

// loadContent loads templates and workflows and runs on them every check
// herald validate runs (checkContent), for start-up and every reload
// alike, against the channels this process can send on.
func (m *Main) loadContent() (*templates.Set, *workflows.Set, error) {
	src := m.contentSource()
	if src.templates == nil {
		return nil, nil, errors.New("content.templates: set HERALD_TEMPLATES to the templates folder")
	}
	channels := m.Config.Channels()
	if m.anyChannel {
		channels = nil
	}
	tset, wset, probs := checkContent(src, m.Config, channels)
	if len(probs) > 0 {
		return nil, nil, contentError(probs)
	}
	if notes := localeNotes(src, m.Config, tset); len(notes) > 0 {
		m.Logger.Info("some templates lack a translation others have; their messages fall back (set content.locales to require them)", "missing", len(notes), "first", notes[0])
	}
	return tset, wset, nil
}

func templateOptions(c config.Config) templates.Options {
	return templates.Options{DefaultLocale: c.Content.DefaultLocale, BrandName: c.Content.BrandName, PostalAddress: c.Content.PostalAddress}
}

// exampleBrand makes the embedded examples speak for their fictional
// company unless the config names a brand.
func exampleBrand(c *config.Config) {
	if c.Content.BrandName == "herald" {
		c.Content.BrandName = "Lumen"
	}
	if c.Content.PostalAddress == "" {
		c.Content.PostalAddress = "Lumen Software, 1 Example Street, Springfield"
	}
}

func policy(c config.Config) preferences.Policy {
	p := preferences.Policy{Topics: map[string]herald.Topic{}}
	for _, t := range c.Topics {
		optIn := t.OptIn == nil || *t.OptIn
		p.Topics[t.Name] = herald.Topic{Name: t.Name, Required: t.Required, OptIn: optIn, Class: t.Class, BypassQuietHours: t.BypassQuietHours, Labels: t.Labels, Descriptions: t.Descriptions}
	}
	for _, cp := range c.Caps {
		p.Caps = append(p.Caps, preferences.Cap{Class: cp.Class, Max: cp.Max, Per: cp.Per, Action: cp.Action})
	}
	return p
}

func (m *Main) senders() (map[herald.Channel]herald.Sender, error) {
	c := m.Config
	out := map[herald.Channel]herald.Sender{}
	if c.SMTP.URL != "" {
		ec, err := email.ParseURL(c.SMTP.URL.Reveal())
		if err != nil {
			return nil, fmt.Errorf("smtp.url (HERALD_SMTP_URL): %w", err)
		}
		ec.From = c.SMTP.From
		if d := c.SMTP.DKIM; d.Enabled() {
			key, err := d.Key()
			if err != nil {
				return nil, fmt.Errorf("smtp.dkim.key_file (HERALD_DKIM_KEY_FILE): %w", err)
			}
			ec.DKIM = email.DKIM{Domain: d.Domain, Selector: d.Selector, Signer: key}
		}
		// An SMTP transaction, once started, runs to its own timeout (cutting
		// it off could leave a message delivered but reported failed): keep
		// it inside the delivery timeout, so the outcome is still recorded
		// within the task's time.
		if ec.Timeout == 0 || ec.Timeout > c.Worker.DeliveryTimeout {
			ec.Timeout = c.Worker.DeliveryTimeout
		}
		s, err := email.New(ec)
		if err != nil {
			return nil, err
		}
		out[herald.ChannelEmail] = s
		m.closers = append(m.closers, s.Close)
	}
	if c.Slack.Token != "" {
		m.slack = slack.New(slack.Config{Token: c.Slack.Token.Reveal(), APIURL: c.Slack.APIURL}, storeCache{m})
		out[herald.ChannelSlack] = m.slack
	}
	if len(out) == 0 {
		return nil, errors.New("no channel configured: set HERALD_SMTP_URL and/or HERALD_SLACK_TOKEN")
	}
	return out, nil
}

// slackUpdater is the Slack sender for chat.update, nil without Slack.
func (m *Main) slackUpdater() engine.MessageUpdater {
	if m.slack == nil {
		return nil
	}
	return m.slack
}

// storeCache defers to the engine's store, which exists only after Open
// builds the engine.
type storeCache struct{ m *Main }

func (s storeCache) Get(ctx context.Context, email string) (string, bool, error) {
	return s.m.Engine.Store().SlackUsers().Get(ctx, email)
}

func (s storeCache) Set(ctx context.Context, email, id string, ttl time.Duration) error {
	return s.m.Engine.Store().SlackUsers().Set(ctx, email, id, ttl)
}

func redisConn(r config.Redis) (asynq.RedisConnOpt, error) {
	switch {
	case len(r.ClusterAddrs) > 0:
		return asynq.RedisClusterClientOpt{Addrs: r.ClusterAddrs, Password: r.Password.Reveal(), DialTimeout: r.DialTimeout}, nil
	case r.SentinelMaster != "":
		return asynq.RedisFailoverClientOpt{
			MasterName: r.SentinelMaster, SentinelAddrs: r.SentinelAddrs, SentinelPassword: r.SentinelPassword.Reveal(),
			Password: r.Password.Reveal(), DB: r.DB, DialTimeout: r.DialTimeout,
		}, nil
	case r.URL != "":
		o, err := asynq.ParseRedisURI(r.URL.Reveal())
		if err != nil {
			return nil, fmt.Errorf("redis.url (HERALD_REDIS_URL): %v", err)
		}
		return o, nil
	}
	return nil, errors.New("redis: set HERALD_REDIS_URL (or HERALD_REDIS_SENTINEL_* / HERALD_REDIS_CLUSTER_ADDRS)")
}

// Start runs the roles in the background.
func (m *Main) Start(ctx context.Context) error {
	c := m.Config
	if err := m.Engine.PublishRouting(ctx); err != nil {
		return fmt.Errorf("publish routing: %w", err)
	}
	if m.Worker && !m.HTTP && c.Worker.MetricsAddr != "" {
		// Listen first: a clashing address stops the process before it
		// takes any task.
		if err := m.serveMetrics(c.Worker.MetricsAddr); err != nil {
			return err
		}
	}
	if m.Worker {
		m.server = engine.NewWorker(m.Redis, asynq.Config{
			Concurrency:              c.Worker.Concurrency,
			Queues:                   m.workerQueues(c.Worker.Queues),
			StrictPriority:           c.Worker.StrictPriority == nil || *c.Worker.StrictPriority,
			RetryDelayFunc:           m.retryDelay,
			IsFailure:                m.isFailure,
			ShutdownTimeout:          c.Worker.ShutdownTimeout,
			TaskCheckInterval:        m.TaskCheckInterval,
			DelayedTaskCheckInterval: m.DelayedTaskCheckInterval,
			Logger:                   asynqLogger{m.Logger},
			ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
				id, _ := asynq.GetTaskID(ctx)
				if !m.isFailure(err) {
					// Waiting for a busy customer or a quiet window: routine.
					m.Logger.Debug("task put off", "type", t.Type(), "task_id", id, "reason", herald.ErrorMessage(err))
					return
				}
				if engine.Logged(err) {
					// The engine logged it, with its delivery and reason.
					m.Logger.Debug("task failed", "type", t.Type(), "task_id", id, "code", herald.ErrorCode(err))
					return
				}
				m.Logger.Warn("task failed", "type", t.Type(), "task_id", id, "code", herald.ErrorCode(err), "err", herald.ErrorMessage(err))
			}),
		}, c.Worker.CriticalConcurrency)
		if err := m.server.Start(m.workerMux()); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		// Journey follow-ups: the waker queues them when they are due.
		m.stopWaker = m.Engine.StartWaker(context.Background())
	}
	if m.HTTP {
		l, err := net.Listen("tcp", c.HTTP.Addr)
		if err != nil {
			return fmt.Errorf("http.addr (HERALD_HTTP_ADDR): %w", err)
		}
		m.listener = l
		m.httpSrv = &http.Server{
			Handler:           m.Handler,
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       30 * time.Second,
			WriteTimeout:      60 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(m.Logger.Handler(), slog.LevelWarn),
		}
		srv := m.httpSrv // Close may clear the field before Serve starts
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.Logger.Error("http server", "err", err)
			}
		}()
	}
	return nil
}

// serveMetrics gives a worker-only process its own /metrics, /healthz and
// /readyz: the delivery counters of a worker are only in that worker.
func (m *Main) serveMetrics(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("worker.metrics_addr (HERALD_METRICS_ADDR): %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", httpapi.MetricsAuth(m.Config.HTTP.MetricsToken.Reveal(), promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := m.ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	m.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	m.metricsListener = l
	srv := m.metricsSrv // Close may clear the field before Serve starts
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.Logger.Error("metrics server", "err", err)
		}
	}()
	return nil
}

// MetricsAddr returns the worker metrics listener's address ("" if none).
func (m *Main) MetricsAddr() string {
	if m.metricsListener == nil {
		return ""
	}
	return m.metricsListener.Addr().String()
}

// Addr returns the HTTP listener's address.
func (m *Main) Addr() string {
	if m.listener == nil {
		return ""
	}
	return m.listener.Addr().String()
}

// Close stops pulling tasks, lets in-flight ones finish (or puts them back),
// stops the HTTP server and closes connections, in that order.
func (m *Main) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.httpSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = m.httpSrv.Shutdown(ctx)
		cancel()
		m.httpSrv = nil
	}
	if m.metricsSrv != nil {
		_ = m.metricsSrv.Close()
		m.metricsSrv = nil
	}
	if m.stopWaker != nil {
		m.stopWaker()
		m.stopWaker = nil
	}
	if m.server != nil {
		m.server.Shutdown()
		m.server = nil
	}
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i](); err != nil && !errors.Is(err, redis.ErrClosed) {
			errs = append(errs, err)
		}
	}
	m.closers = nil
	return errors.Join(errs...)
}

// asynqLogger adapts asynq's logger to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any) {
	msg := fmt.Sprint(args...)
	if id, ok := strings.CutPrefix(msg, "Retry exhausted for task id="); ok {
		// asynq says so of every task that ends for good, retried or not
		// (a permanent failure is not retried); herald's own line said
		// why.
		a.l.Info("task archived", "task_id", id, "component", "asynq")
		return
	}
	a.l.Warn(msg, "component", "asynq")
}
func (a asynqLogger) Error(args ...any) {
	msg := fmt.Sprint(args...)
	if strings.Contains(msg, "redis connection is shared") {
		// asynq tries to close the client herald lent it, on every clean
		// shutdown; herald closes it itself.
		a.l.Debug(msg, "component", "asynq")
		return
	}
	a.l.Error(msg, "component", "asynq")
}
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq")
	os.Exit(1)
}

// previousKeys turns the previous signing keys into the engine's form.
func previousKeys(keys []config.Secret) [][]byte {
	var out [][]byte
	for _, k := range keys {
		out = append(out, []byte(k.Reveal()))
	}
	return out
}

// secretKeys builds the matcher of secret data keys from the configured
// words, matched as whole parts of a key as the default list is (nil: the
// engine's default list).
func secretKeys(words []string) *regexp.Regexp {
	if len(words) == 0 {
		return nil
	}
	return service.SecretKeyPattern(words)
}
