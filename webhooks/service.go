package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// TaskType is the asynq task that delivers a customer's webhook events to
// one endpoint.
const TaskType = "herald:webhook"

// Endpoint is one app URL and the event types it wants.
type Endpoint struct {
	Name   string
	URL    string
	Events []string
	Secret []byte
}

// disabledKey names the endpoint for its disabled mark: a new URL under
// the same name starts enabled.
func (ep Endpoint) disabledKey() string { return ep.Name + ":" + redisstore.Hash(ep.URL)[:12] }

// Options configure a Service. Zero values mean the documented defaults.
type Options struct {
	Endpoints []Endpoint
	Redis     redis.UniversalClient
	RedisConn asynq.RedisConnOpt
	// HTTPClient posts the events; default: a client with Timeout.
	HTTPClient *http.Client
	// Timeout bounds one POST (default 10s).
	Timeout time.Duration
	// RetryBase is the first retry delay, doubling up to RetryMax
	// (defaults 30s and 1h); Window is how long an event is retried
	// (default 24h).
	RetryBase, RetryMax, Window time.Duration
	// MaxInFlight bounds the POSTs this process makes at once (default 4),
	// so endpoints can take only a few workers whatever they do.
	MaxInFlight int
	Registerer  prometheus.Registerer // nil: metrics are not registered
	Logger      *slog.Logger
	Now         func() time.Time
}

// Service emits webhook events (the engine's side) and delivers them (the
// worker's side).
type Service struct {
	opt       Options
	st        *redisstore.Store
	client    *asynq.Client
	endpoints map[string]Endpoint
	slots     chan struct{}
	maxRetry  int

	delivered *prometheus.CounterVec
	disabled  *prometheus.CounterVec
}

// New builds a Service. Close releases its asynq client.
func New(opt Options) (*Service, error) {
	if opt.Redis == nil || opt.RedisConn == nil {
		return nil, errors.New("webhooks: Redis and RedisConn are required")
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 10 * time.Second
	}
	if opt.HTTPClient == nil {
		opt.HTTPClient = &http.Client{Timeout: opt.Timeout}
	}
	if opt.RetryBase <= 0 {
		opt.RetryBase = 30 * time.Second
	}
	if opt.RetryMax <= 0 {
		opt.RetryMax = time.Hour
	}
	if opt.Window <= 0 {
		opt.Window = 24 * time.Hour
	}
	if opt.MaxInFlight <= 0 {
		opt.MaxInFlight = 4
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Service{
		opt:       opt,
		st:        redisstore.New(opt.Redis, opt.Now),
		client:    asynq.NewClient(opt.RedisConn),
		endpoints: map[string]Endpoint{},
		slots:     make(chan struct{}, opt.MaxInFlight),
		maxRetry:  retriesFor(opt.Window, opt.RetryBase, opt.RetryMax),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_deliveries_total",
			Help: "Webhook POSTs by endpoint and result (delivered, failed, expired, dropped).",
		}, []string{"endpoint", "result"}),
		disabled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_webhook_endpoints_disabled_total",
			Help: "Webhook endpoints disabled because they answered 410 Gone.",
		}, []string{"endpoint"}),
	}
	for _, ep := range opt.Endpoints {
		s.endpoints[ep.Name] = ep
	}
	if opt.Registerer != nil {
		opt.Registerer.MustRegister(s.delivered, s.disabled)
	}
	return s, nil
}

// Close releases the asynq client.
func (s *Service) Close() error { return s.client.Close() }

// retriesFor is how many retries of the backoff (base doubling up to max)
// it takes to span window.
func retriesFor(window, base, maxDelay time.Duration) int {
	n, total := 0, time.Duration(0)
	for d := base; total < window; n++ {
		total += d
		d = min(2*d, maxDelay)
	}
	return n
}

// task is a delivery task's payload: the event rides along so the
// dashboard shows what an archived task was about.
type task struct {
	Endpoint string `json:"endpoint"`
	Event    Event  `json:"event"`
}

// Emit queues ev for every endpoint subscribed to its type. It only
// writes to Redis, never waits for an endpoint, and reports failures in
// the log rather than to the caller: a message is not held up by its
// webhook.
func (s *Service) Emit(ctx context.Context, ev Event) {
	if ev.At.IsZero() {
		ev.At = s.opt.Now().UTC()
	}
	body, err := json.Marshal(ev)
	if err != nil {
		s.opt.Logger.Error("webhook event not encodable", "event", ev.ID, "err", err)
		return
	}
	for _, ep := range s.opt.Endpoints {
		if !slices.Contains(ep.Events, ev.Type) {
			continue
		}
		fresh, err := s.st.PushWebhook(ctx, ev.CustomerID, ep.Name, ev.ID, body)
		if err == nil && fresh {
			_, err = s.client.EnqueueContext(ctx, asynq.NewTask(TaskType, wire.Encode(task{Endpoint: ep.Name, Event: ev})),
				asynq.TaskID("wh:"+ep.Name+":"+ev.ID), asynq.Queue(wire.QueueWebhooks), asynq.MaxRetry(s.maxRetry),
				asynq.Timeout(s.opt.Timeout+30*time.Second))
			if errors.Is(err, asynq.ErrTaskIDConflict) {
				err = nil
			}
		}
		if err != nil {
			s.opt.Logger.Error("webhook event not queued", "endpoint", ep.Name, "event", ev.ID, "type", ev.Type, "customer", ev.CustomerID, "err", err)
		}
	}
}

// Register adds the delivery handler to mux.
func (s *Service) Register(mux *asynq.ServeMux) { mux.HandleFunc(TaskType, s.handle) }

// busyError puts a task off without counting a failure: another worker is
// delivering the customer's outbox, or this process has MaxInFlight POSTs
// out.
type busyError struct{ reason string }

func (b *busyError) Error() string { return "webhook delivery put off: " + b.reason }

// IsBusy reports whether err only puts a webhook task off (asynq's
// IsFailure should return false for it).
func IsBusy(err error) bool {
	var b *busyError
	return errors.As(err, &b)
}

// RetryDelay is the backoff of webhook tasks; ok is false for other
// tasks, which keep their own.
func (s *Service) RetryDelay(n int, err error, t *asynq.Task) (d time.Duration, ok bool) {
	if t == nil || t.Type() != TaskType {
		return 0, false
	}
	if IsBusy(err) {
		return min(time.Second, s.opt.RetryBase), true
	}
	d = s.opt.RetryBase
	for range n {
		d = min(2*d, s.opt.RetryMax)
	}
	return d, true
}

// handle delivers the customer's outbox for one endpoint, oldest first,
// until it is empty; the task's own event is in it or already delivered.
func (s *Service) handle(ctx context.Context, t *asynq.Task) error {
	var p task
	if err := wire.Decode(t.Payload(), &p); err != nil {
		return fmt.Errorf("webhooks: %w: %w", err, asynq.SkipRetry)
	}
	if err := wire.Check("endpoint", p.Endpoint, "event.id", p.Event.ID, "event.customer_id", p.Event.CustomerID); err != nil {
		return fmt.Errorf("webhooks: %w: %w", err, asynq.SkipRetry)
	}
	ep, ok := s.endpoints[p.Endpoint]
	if !ok {
		return fmt.Errorf("webhooks: endpoint %q is no longer configured: %w", p.Endpoint, asynq.SkipRetry)
	}
	cust := p.Event.CustomerID
	if off, why, err := s.st.WebhookDisabled(ctx, ep.disabledKey()); err != nil {
		return err
	} else if off {
		n, err := s.st.DropWebhooks(ctx, cust, ep.Name)
		s.delivered.WithLabelValues(ep.Name, "dropped").Add(float64(n))
		s.opt.Logger.Debug("webhook endpoint disabled; events dropped", "endpoint", ep.Name, "customer", cust, "events", n, "why", why)
		return err
	}
	release, held, err := s.st.ClaimWebhooks(ctx, cust, ep.Name, s.opt.Timeout+time.Minute)
	if err != nil {
		return err
	}
	if !held {
		return &busyError{"customer " + cust + " is being delivered to " + ep.Name + " elsewhere"}
	}
	defer release()
	for {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < s.opt.Timeout+5*time.Second {
			// A long outbox: carry on in a new attempt rather than be cut
			// off in the middle of a POST.
			return &busyError{"the outbox of " + cust + " holds more events than one attempt posts"}
		}
		body, ok, err := s.st.WebhookHead(ctx, cust, ep.Name)
		if err != nil {
			return err
		}
		if !ok {
			return s.expired(ctx, ep, p.Event)
		}
		var head Event
		if err := json.Unmarshal(body, &head); err != nil || s.opt.Now().Sub(head.At) > s.opt.Window {
			// Undecodable, or retried for the whole window: it leaves the
			// outbox so later events can go, and its task fails for good.
			s.delivered.WithLabelValues(ep.Name, "expired").Inc()
			s.opt.Logger.Warn("webhook event given up", "endpoint", ep.Name, "event", head.ID, "type", head.Type, "customer", cust, "at", head.At)
			if err := s.st.ExpireWebhook(ctx, cust, ep.Name, head.ID, body); err != nil {
				return err
			}
			continue
		}
		gone, err := s.post(ctx, ep, head, body)
		if gone {
			return s.disable(ctx, ep, cust)
		}
		if err != nil {
			s.delivered.WithLabelValues(ep.Name, "failed").Inc()
			return err
		}
		s.delivered.WithLabelValues(ep.Name, "delivered").Inc()
		if err := s.st.PopWebhook(ctx, cust, ep.Name, body); err != nil {
			return err
		}
	}
}

// expired fails the task of an event that was given up on (by this task
// or another), so asynq archives it and the dashboard shows it.
func (s *Service) expired(ctx context.Context, ep Endpoint, ev Event) error {
	dead, err := s.st.WebhookExpired(ctx, ev.CustomerID, ep.Name, ev.ID)
	if err != nil || !dead {
		return err
	}
	return fmt.Errorf("webhooks: %s event %s to %s given up after %s of failures: %w", ev.Type, ev.ID, ep.Name, s.opt.Window, asynq.SkipRetry)
}

// post sends one event; gone reports a 410.
func (s *Service) post(ctx context.Context, ep Endpoint, ev Event, body []byte) (gone bool, err error) {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return false, &busyError{"every webhook slot of this worker is in use"}
	}
	ctx, cancel := context.WithTimeout(ctx, s.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("webhooks: %v: %w", err, asynq.SkipRetry)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "herald-webhooks")
	req.Header.Set("Herald-Event-Id", ev.ID)
	req.Header.Set("Herald-Event-Type", ev.Type)
	req.Header.Set(SignatureHeader, Sign(ep.Secret, s.opt.Now(), body))
	resp, err := s.opt.HTTPClient.Do(req)
	if err != nil {
		return false, herald.Temporary(err, "webhook "+ep.Name, 0)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return false, nil
	case resp.StatusCode == http.StatusGone:
		return true, nil
	}
	return false, herald.Temporary(fmt.Errorf("webhook %s answered %d", ep.Name, resp.StatusCode), "webhook "+ep.Name+" status "+strconv.Itoa(resp.StatusCode), 0)
}

// disable marks an endpoint that answered 410 Gone: its events are no
// longer queued for delivery, the metric and the log say so once.
func (s *Service) disable(ctx context.Context, ep Endpoint, cust string) error {
	off, _, err := s.st.WebhookDisabled(ctx, ep.disabledKey())
	if err != nil {
		return err
	}
	if !off {
		if err := s.st.DisableWebhook(ctx, ep.disabledKey(), "410 Gone at "+s.opt.Now().UTC().Format(time.RFC3339)); err != nil {
			return err
		}
		s.disabled.WithLabelValues(ep.Name).Inc()
		s.opt.Logger.Warn("webhook endpoint answered 410 Gone and is disabled; point it at a new URL (or delete the mark) to enable it again",
			"endpoint", ep.Name, "url", ep.URL)
	}
	n, err := s.st.DropWebhooks(ctx, cust, ep.Name)
	s.delivered.WithLabelValues(ep.Name, "dropped").Add(float64(n))
	return err
}
