package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Client talks to herald through its Redis.
type Client struct {
	rdb   redis.UniversalClient
	aq    *asynq.Client
	st    *redisstore.Store
	prefs *redisstore.Prefs
	route *redisstore.RoutingCache
	// Actor names this client in timeline and consent entries.
	Actor string
}

// New connects to herald's Redis by URL (redis://, rediss://).
func New(redisURL string) (*Client, error) {
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return nil, herald.Errorf(herald.EInvalid, "redis URL: %v", err)
	}
	return NewFromOpt(opt)
}

// NewFromOpt connects with an asynq connection option (single node,
// Sentinel or Cluster).
func NewFromOpt(opt asynq.RedisConnOpt) (*Client, error) {
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, errors.New("client: unsupported Redis option")
	}
	st := redisstore.New(rdb, nil)
	return &Client{rdb: rdb, aq: asynq.NewClientFromRedisClient(rdb), st: st, prefs: redisstore.NewPrefs(rdb, nil),
		route: st.RoutingCache(time.Minute), Actor: "client"}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.rdb.Close() }

// UpsertCustomer creates or replaces a customer's profile.
func (c *Client) UpsertCustomer(ctx context.Context, cust herald.Customer) (herald.Customer, error) {
	out, _, err := c.st.UpsertCustomer(ctx, cust)
	return out, temp(err)
}

// Customer reads a customer's profile.
func (c *Client) Customer(ctx context.Context, id string) (herald.Customer, error) {
	return c.st.Customer(ctx, id)
}

// Event enqueues an event for a customer, who must exist (the worker would
// archive an event for an unknown customer). With a non-empty idempotency
// key a repeat within 24 h is a no-op that returns the first event's ID.
func (c *Client) Event(ctx context.Context, customerID, name string, data map[string]any, idempotencyKey ...string) (string, error) {
	ev := herald.Event{CustomerID: customerID, Name: name, Data: data, Actor: c.Actor}
	if len(idempotencyKey) > 0 {
		ev.IdempotencyKey = idempotencyKey[0]
	}
	if err := redisstore.ValidEventName(name); err != nil {
		return "", err
	}
	if _, err := c.st.Customer(ctx, customerID); err != nil {
		return "", err
	}
	return enqueueEvent(ctx, c.rdb, c.aq, ev)
}

// defaultMaxRetry is the engine's default, used until a worker publishes
// its own.
const defaultMaxRetry = 12

// Message is a one-off message.
type Message struct {
	CustomerID string
	Template   string
	Topic      string
	Data       map[string]any
	Channels   []herald.Channel // candidates in order; empty = the customer's order
	Mode       string           // first (default) or all
	// IdempotencyKey makes a repeat (same key) send nothing new.
	IdempotencyKey string
}

// Send enqueues a one-off message and returns its ID. The worker checks the
// template and the customer's preferences when it runs.
func (c *Client) Send(ctx context.Context, m Message) (string, error) {
	w := wire.Message{
		ID: redisstore.KeyedID("m_", c.Actor, m.IdempotencyKey), CustomerID: m.CustomerID, Template: m.Template, Topic: m.Topic,
		Data: m.Data, Channels: m.Channels, Mode: m.Mode, Actor: c.Actor, QueuedAt: time.Now(),
	}
	if err := w.Validate(); err != nil {
		return "", err
	}
	if err := redisstore.ValidID(m.CustomerID); err != nil {
		return "", err
	}
	if _, err := c.st.Customer(ctx, m.CustomerID); err != nil {
		return "", err
	}
	// Queue it as the workers would: the topic's priority, their retry
	// budget (published by the workers at start).
	queue, maxRetry := wire.QueueDefault, defaultMaxRetry
	if r, ok, err := c.route.Get(ctx); err != nil {
		return "", err
	} else if ok {
		if q, found := r.Queues[m.Topic]; found {
			queue = q
		}
		if r.MaxRetry > 0 {
			maxRetry = r.MaxRetry
		}
	}
	_, err := c.aq.EnqueueContext(ctx, asynq.NewTask(wire.TypeMessage, wire.Encode(w)), asynq.TaskID("m:"+w.ID), asynq.Queue(queue), asynq.MaxRetry(maxRetry))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		err = nil
	}
	return w.ID, temp(err)
}

// SetPreferences merges a change into the customer's preferences and records
// it in the consent log under the client's Actor name. Journeys of topics the
// customer left end when the worker handles the resulting event.
func (c *Client) SetPreferences(ctx context.Context, customerID string, p preferences.Patch) (herald.Preferences, error) {
	if _, err := c.st.Customer(ctx, customerID); err != nil {
		return herald.Preferences{}, err
	}
	prefs, entries, err := c.prefs.Apply(ctx, customerID, p, preferences.Actor{Kind: "api", Name: c.Actor}, "api")
	if err != nil {
		return prefs, err
	}
	if len(entries) > 0 {
		_, err = enqueueEvent(ctx, c.rdb, c.aq, wire.PreferencesChanged(customerID, p.Topics, p.Paused))
	}
	return prefs, temp(err)
}

// Preferences reads a customer's preferences.
func (c *Client) Preferences(ctx context.Context, customerID string) (herald.Preferences, error) {
	p, err := c.prefs.Get(ctx, customerID)
	return p, temp(err)
}

// Timeline reads up to limit timeline entries, newest first.
func (c *Client) Timeline(ctx context.Context, customerID string, limit int) ([]herald.TimelineEntry, error) {
	tl, err := c.st.Timeline(ctx, customerID, limit)
	return tl, temp(err)
}

func enqueueEvent(ctx context.Context, rdb redis.UniversalClient, aq *asynq.Client, ev herald.Event) (string, error) {
	ev, fresh, err := redisstore.PrepareEvent(ctx, rdb, ev)
	if err != nil || !fresh {
		return ev.ID, err
	}
	_, err = aq.EnqueueContext(ctx, asynq.NewTask(wire.TypeEvent, wire.Encode(ev)), asynq.TaskID("e:"+ev.ID), asynq.Queue(wire.QueueDefault))
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		err = nil
	}
	if err == nil {
		redisstore.EventEnqueued(ctx, rdb, ev)
	}
	return ev.ID, temp(err)
}

func temp(err error) error {
	if err == nil || herald.ErrorCode(err) != herald.EInternal {
		return err
	}
	return herald.Temporary(fmt.Errorf("redis: %w", err), "redis", 0)
}
