package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/msgid"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Options configure an Engine. Zero values mean the documented defaults.
type Options struct {
	Redis     redis.UniversalClient
	RedisConn asynq.RedisConnOpt
	Senders   map[herald.Channel]herald.Sender
	Templates *templates.Set
	Workflows *workflows.Set
	Policy    preferences.Policy
	// PublicURL is where links in messages point (preference centre, unsubscribe).
	PublicURL string
	// SigningKey signs those links, and seals the customer and message
	// into the Message-ID of each email, so a reply finds its message.
	SigningKey []byte
	TokenTTL   time.Duration // default 90 days
	// PreviousSigningKeys are signing keys used before SigningKey: they
	// still open the Message-IDs of email sent under them, so replies to
	// it match. Links signed with them are refused.
	PreviousSigningKeys [][]byte
	// UnsubscribeMailto adds a mailto: target to List-Unsubscribe.
	UnsubscribeMailto string
	ReplyTo           string
	// ClickTracking sends {{ track }} links in emails of non-required topics
	// through PublicURL/r/{token}.
	ClickTracking bool
	// SlackUpdater shows a pressed button's choice in its Slack message
	// (nil: messages are left as they are).
	SlackUpdater MessageUpdater
	// DeliveryTimeout bounds one provider call (whole seconds; default
	// 30s). A task that may call a provider runs at most this plus
	// SendReserve.
	DeliveryTimeout time.Duration
	// RateLimits holds, per channel, the gate of its provider rate limit:
	// it returns nil once the send may go (having waited for its slot),
	// an ERateLimited error with RetryAfter when the slot is further off
	// than is worth waiting for (the delivery is re-scheduled for then), or
	// another error. A send passes it before taking an in-flight slot, so
	// waiting holds nothing else.
	RateLimits map[herald.Channel]func(context.Context) error
	// ChannelConcurrency is how many sends one channel may have in flight
	// in this process (default 16); past it, deliveries are queued rather
	// than made inline, so a slow provider cannot take every worker.
	ChannelConcurrency int
	MaxRetry           int           // default 12
	RetryBase          time.Duration // first retry delay, doubling; default 10s
	RetryMax           time.Duration // default 1h
	Metrics            *Metrics      // nil: a private registry
	Logger             *slog.Logger
	Now                func() time.Time
	// SecretKeys matches data keys whose values are sealed out of task
	// payloads (nil: service.DefaultSecretKeys).
	SecretKeys *regexp.Regexp
	// AppEvents receives what happened to messages and journeys for the
	// app's webhooks (nil: none).
	AppEvents AppEvents
	// DefaultZone is the time zone of customers without one, for
	// broadcasts at a local hour (nil: UTC).
	DefaultZone *time.Location
	// WatchdogLate is the lease of a journey follow-up the waker claimed:
	// a follow-up whose wake-up task was lost, or whose worker died after
	// the claim, is taken again this long after the claim; default 30s.
	WatchdogLate time.Duration
	// WakerTick is how often the waker looks for due follow-ups (see
	// StartWaker); default 250ms.
	WakerTick time.Duration
}

// Engine runs herald's tasks.
type Engine struct {
	opt       Options
	st        *redisstore.Store
	prefs     *redisstore.Prefs
	client    *asynq.Client
	insp      *asynq.Inspector // shares the Redis client: nothing to close
	templates atomic.Pointer[templates.Set]
	workflows atomic.Pointer[workflows.Set]
	metrics   *Metrics
	log       *slog.Logger
	now       func() time.Time
	// sources remembers workflow versions whose source is stored.
	sources sync.Map
	// health is each channel's in-process state (in-flight sends, recent
	// failures); read-only map after New.
	health map[herald.Channel]*channelHealth
	// guesses are the suppression records sends last checked, per customer
	// and channel (sendState's claim).
	guesses suppressGuesses
	// svc is the write path every door uses.
	svc   *service.Service
	route redisstore.Routing
	// replyIDs seals Message-IDs and opens those of replies.
	replyIDs *msgid.Keys
	// fanOutFault, set by tests, runs after each message a broadcast's
	// fan-out queues (to stop a worker mid-walk).
	fanOutFault func(ctx context.Context, queued int64)
	// recordFault, set by tests, runs when a broadcast's fan-out is queued
	// and its record not yet written.
	recordFault func(id string)
}

// New builds an Engine. Call Close when done.
func New(opt Options) (*Engine, error) {
	if opt.Redis == nil || opt.RedisConn == nil {
		return nil, errors.New("engine: Redis and RedisConn are required")
	}
	if opt.Templates == nil {
		return nil, errors.New("engine: Templates are required")
	}
	if len(opt.SigningKey) == 0 {
		return nil, errors.New("engine: a signing key is required for preference and unsubscribe links (HERALD_SIGNING_KEY)")
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.TokenTTL == 0 {
		opt.TokenTTL = preferences.DefaultTokenTTL
	}
	if opt.DeliveryTimeout < time.Second {
		opt.DeliveryTimeout = 30 * time.Second
	}
	if opt.ChannelConcurrency <= 0 {
		opt.ChannelConcurrency = 16
	}
	if opt.MaxRetry == 0 {
		opt.MaxRetry = 12
	}
	if opt.RetryBase == 0 {
		opt.RetryBase = 10 * time.Second
	}
	if opt.RetryMax == 0 {
		opt.RetryMax = time.Hour
	}
	if opt.WatchdogLate <= 0 {
		opt.WatchdogLate = watchdogLate
	}
	if opt.WakerTick <= 0 {
		opt.WakerTick = wakerTick
	}
	if opt.Metrics == nil {
		opt.Metrics = NewMetrics(nil)
	}
	e := &Engine{
		opt:     opt,
		st:      redisstore.New(opt.Redis, opt.Now),
		prefs:   redisstore.NewPrefs(opt.Redis, opt.Now),
		client:  asynq.NewClient(opt.RedisConn),
		insp:    asynq.NewInspectorFromRedisClient(opt.Redis),
		metrics: opt.Metrics,
		log:     opt.Logger,
		now:     opt.Now,
		health:  map[herald.Channel]*channelHealth{},
	}
	e.replyIDs = msgid.NewKeys(append([][]byte{opt.SigningKey}, opt.PreviousSigningKeys...)...)
	for ch := range opt.Senders {
		e.health[ch] = newChannelHealth(opt.ChannelConcurrency)
	}
	e.templates.Store(opt.Templates)
	if opt.Workflows != nil {
		e.workflows.Store(opt.Workflows)
	}
	e.route = e.buildRouting()
	e.svc = service.New(service.Options{
		Store: e.st, Prefs: e.prefs, Tasks: e.client, Catalog: catalog{e}, Journeys: journeys{e}, Templates: templateCheck{e}, Starts: e.startSends,
		TaskTimeout: e.opt.DeliveryTimeout + SendReserve + time.Second, SecretKeys: opt.SecretKeys,
		PreferencesChanged: e.emitPreferences,
	})
	return e, nil
}

// Close releases the asynq client.
func (e *Engine) Close() error { return e.client.Close() }

// HasSender reports whether a sender is configured for channel ch.
func (e *Engine) HasSender(ch herald.Channel) bool {
	_, ok := e.opt.Senders[ch]
	return ok
}

// Metrics returns the engine's Prometheus series.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// Store returns the Redis state store.
func (e *Engine) Store() *redisstore.Store { return e.st }

// Preferences returns the preference store.
func (e *Engine) Preferences() *redisstore.Prefs { return e.prefs }

// Templates returns the template set in use.
func (e *Engine) Templates() *templates.Set { return e.templates.Load() }

// Workflows returns the workflow set in use (nil when none).
func (e *Engine) Workflows() *workflows.Set { return e.workflows.Load() }

// SetContent swaps in a new, already validated set of templates and
// workflows; running tasks finish with what they loaded.
func (e *Engine) SetContent(t *templates.Set, w *workflows.Set) {
	if t != nil {
		e.templates.Store(t)
	}
	if w != nil {
		e.workflows.Store(w)
	}
}

// Mux returns the asynq handler for every herald task type.
func (e *Engine) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(growStack)
	mux.HandleFunc(wire.TypeMessage, e.handleMessage)
	mux.HandleFunc(TypeInteraction, e.handleAck)
	mux.HandleFunc(wire.TypeErase, e.handleErase)
	for ch := range e.opt.Senders {
		mux.HandleFunc(wire.DeliverType(ch), e.handleDeliver)
	}
	e.registerJourneys(mux)
	mux.HandleFunc(TypeBroadcast, e.handleBroadcast)
	mux.HandleFunc(TypeBroadcastJourney, e.handleBroadcastJourney)
	mux.HandleFunc(wire.TypeBroadcastCreate, e.handleBroadcastCreate)
	return mux
}

// RetryDelay is asynq's RetryDelayFunc: the provider's Retry-After when it
// gave one, else exponential backoff with jitter.
func (e *Engine) RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var w *waitError
	if errors.As(err, &w) {
		return max(w.after, time.Second)
	}
	if d := herald.RetryAfter(err); d > 0 {
		return d + time.Duration(mrand.Int64N(int64(time.Second)))
	}
	d := time.Duration(float64(e.opt.RetryBase) * math.Pow(2, float64(n)))
	if d > e.opt.RetryMax || d <= 0 {
		d = e.opt.RetryMax
	}
	return d/2 + time.Duration(mrand.Int64N(int64(d/2)+1))
}

// IsFailure is asynq's IsFailure: waiting for a rate limit or a quiet window
// is not a failure.
func (e *Engine) IsFailure(err error) bool {
	var w *waitError
	return !errors.As(err, &w) && herald.ErrorCode(err) != herald.ERateLimited
}

// waitError asks asynq to retry later without counting a failure.
type waitError struct {
	reason string
	after  time.Duration
}

func (w *waitError) Error() string {
	return fmt.Sprintf(waitPrefix+"%s: %s", w.after.Round(time.Millisecond), w.reason)
}

// Queue returns the orchestration queue for a topic.
func (e *Engine) Queue(topic string) string {
	t, ok := e.opt.Policy.Topics[topic]
	switch {
	case ok && t.Required:
		return wire.QueueCritical
	case ok && t.Class == "marketing":
		return wire.QueueBulk
	default:
		return wire.QueueDefault
	}
}

// PublishRouting tells producers without a config of their own (the Go
// client, the CLI) which queue each topic's messages go to, how often they
// are retried and which templates exist, so every door queues a message
// as the engine would and refuses the same ones.
func (e *Engine) PublishRouting(ctx context.Context) error {
	r := e.routing()
	if t := e.Templates(); t != nil {
		r.Templates = t.Names()
		r.TemplateData = map[string]map[herald.Channel][]string{}
		for _, name := range r.Templates {
			per := map[herald.Channel][]string{}
			for _, ch := range []herald.Channel{herald.ChannelEmail, herald.ChannelSlack} {
				if keys := t.DataKeys(name, ch); len(keys) > 0 {
					per[ch] = keys
				}
			}
			r.TemplateData[name] = per
		}
	}
	if set := e.Workflows(); set != nil {
		r.Starts = map[string][]redisstore.StartSend{}
		for _, w := range set.All() {
			if starts := workflowStarts(w); len(starts) > 0 {
				r.Starts[w.Trigger] = append(r.Starts[w.Trigger], starts...)
			}
		}
	}
	return e.st.PublishRouting(ctx, r)
}

// startSends lists the sends the journeys event triggers make with its data
// alone, so that every door refuses an event whose data they cannot
// render.
func (e *Engine) startSends(event string) []redisstore.StartSend {
	set := e.Workflows()
	if set == nil {
		return nil
	}
	var out []redisstore.StartSend
	for _, w := range set.Triggered(event) {
		out = append(out, workflowStarts(w)...)
	}
	return out
}

// workflowStarts lists the sends a journey of w makes with its trigger's
// data alone.
func workflowStarts(w *workflows.Workflow) []redisstore.StartSend {
	var out []redisstore.StartSend
	for _, ts := range w.TriggerSends() {
		st := ts.Step
		ss := redisstore.StartSend{Workflow: w.ID, Step: st.ID, Template: st.Send.Template, After: ts.After, Via: ts.Via}
		for _, ch := range st.Send.Channels {
			ss.Channels = append(ss.Channels, herald.Channel(ch))
		}
		out = append(out, ss)
	}
	return out
}

// routing is how this engine queues messages, with its topic catalogue
// (built once: the policy does not change while the engine runs).
func (e *Engine) routing() redisstore.Routing { return e.route }

func (e *Engine) buildRouting() redisstore.Routing {
	r := redisstore.Routing{Queues: map[string]string{}, MaxRetry: e.opt.MaxRetry, Topics: map[string]herald.Topic{}}
	for name, t := range e.opt.Policy.Topics {
		r.Queues[name] = e.Queue(name)
		r.Topics[name] = t
	}
	return r
}

// Service is the write path every door uses: customers, preferences,
// events, messages.
func (e *Engine) Service() *service.Service { return e.svc }

// catalog serves the engine's own routing to its service.
type catalog struct{ e *Engine }

func (c catalog) Routing(context.Context) (redisstore.Routing, bool, error) {
	return c.e.routing(), true, nil
}

type templateCheck struct{ e *Engine }

func (t templateCheck) Has(name string) bool { return t.e.Templates().Has(name) }

func (t templateCheck) DataKeys(name string, channels ...herald.Channel) []string {
	return t.e.Templates().DataKeys(name, channels...)
}

// Send validates and enqueues a one-off message (the service's Send). A
// repeated ID while the first task is still queued is accepted and not
// enqueued twice.
func (e *Engine) Send(ctx context.Context, m wire.Message) (string, error) {
	return e.svc.Send(ctx, m)
}

func (e *Engine) enqueue(ctx context.Context, t *asynq.Task, opts ...asynq.Option) error {
	opts = append(opts, asynq.MaxRetry(e.opt.MaxRetry))
	_, err := e.client.EnqueueContext(ctx, t, opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		return nil
	}
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// skip marks err as not worth retrying: asynq archives the task at once, so
// it stays visible in the dashboard.
func skip(err error) error { return fmt.Errorf("%w: %w", err, asynq.SkipRetry) }
