package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// Client talks to herald through its Redis. It uses the same write path as
// herald's HTTP API, CLI and preference centre, so a change made here is
// validated, logged to the consent log and timeline, and acted on exactly as
// there; what only a worker can do (ending journeys, erasing) is queued for
// the workers.
type Client struct {
	rdb redis.UniversalClient
	aq  *asynq.Client
	svc *service.Service
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
	aq := asynq.NewClientFromRedisClient(rdb)
	// Queue as the workers would: each topic's priority, their retry budget
	// and topic catalogue, as they publish them at start.
	svc := service.New(service.Options{Store: st, Prefs: redisstore.NewPrefs(rdb, nil), Tasks: aq, Catalog: st.RoutingCache(time.Minute)})
	return &Client{rdb: rdb, aq: aq, svc: svc, Actor: "client"}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.rdb.Close() }

func (c *Client) actor() preferences.Actor {
	if c.Actor == "cli" {
		return preferences.Actor{Kind: "cli"}
	}
	return preferences.Actor{Kind: "client", Name: c.Actor}
}

// UpsertCustomer creates or replaces a customer's profile: fields left
// empty are removed, as with PUT /v1/customers/{id}. To change some fields
// and keep the others, use PatchCustomer.
func (c *Client) UpsertCustomer(ctx context.Context, cust herald.Customer) (herald.Customer, error) {
	out, _, err := c.svc.PutCustomer(ctx, cust, c.actor())
	return out, temp(err)
}

// PatchCustomer merges patch into an existing customer's profile, as a
// JSON merge patch (RFC 7396) would: keys present replace, a nil value
// removes the field, attributes merge key by key. Keys: email,
// slack_user_id, locale, timezone, attributes.
func (c *Client) PatchCustomer(ctx context.Context, id string, patch map[string]any) (herald.Customer, error) {
	b, err := json.Marshal(patch)
	if err != nil {
		return herald.Customer{}, herald.Errorf(herald.EInvalid, "merge patch: %v", err)
	}
	out, err := c.svc.PatchCustomer(ctx, id, b, c.actor())
	return out, temp(err)
}

// EraseCustomer forgets a customer: addresses are suppressed at once, and a
// worker removes everything else (journeys, queued tasks, keys) under the
// journey lock.
func (c *Client) EraseCustomer(ctx context.Context, id string) error {
	return temp(c.svc.Erase(ctx, id, c.actor()))
}

// Customer reads a customer's profile.
func (c *Client) Customer(ctx context.Context, id string) (herald.Customer, error) {
	return c.svc.Customer(ctx, id)
}

// Event enqueues an event for a customer, who must exist (the worker would
// archive an event for an unknown customer). With a non-empty idempotency
// key a repeat within 24 h is a no-op that returns the first event's ID.
func (c *Client) Event(ctx context.Context, customerID, name string, data map[string]any, idempotencyKey ...string) (string, error) {
	ev := herald.Event{CustomerID: customerID, Name: name, Data: data, Actor: c.Actor}
	if len(idempotencyKey) > 0 {
		ev.IdempotencyKey = idempotencyKey[0]
	}
	id, err := c.svc.Event(ctx, ev)
	return id, temp(err)
}

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

// Send enqueues a one-off message and returns its ID. Once a worker has
// published its templates, a template it lacks, or data without a key the
// template reads on every channel the message may use, is an EInvalid
// error, as at the API; the worker checks the customer's preferences when
// it runs.
func (c *Client) Send(ctx context.Context, m Message) (string, error) {
	w := wire.Message{
		ID: redisstore.KeyedID("m_", c.Actor, m.IdempotencyKey), CustomerID: m.CustomerID, Template: m.Template, Topic: m.Topic,
		Data: m.Data, Channels: m.Channels, Mode: m.Mode, Actor: c.Actor, QueuedAt: time.Now(),
	}
	id, err := c.svc.Send(ctx, w)
	return id, temp(err)
}

// SetPreferences validates a change against the workers' topics, merges it
// into the customer's preferences and records it in the consent log and
// timeline under the client's Actor name. Journeys of topics the customer
// left end when a worker handles the resulting event.
func (c *Client) SetPreferences(ctx context.Context, customerID string, p preferences.Patch) (herald.Preferences, error) {
	prefs, err := c.svc.SetPreferences(ctx, customerID, p, c.actor(), preferences.SourceAPI)
	return prefs, temp(err)
}

// Preferences reads a customer's preferences.
func (c *Client) Preferences(ctx context.Context, customerID string) (herald.Preferences, error) {
	p, err := c.svc.Preferences(ctx, customerID)
	return p, temp(err)
}

// Timeline reads up to limit timeline entries, newest first.
func (c *Client) Timeline(ctx context.Context, customerID string, limit int) ([]herald.TimelineEntry, error) {
	tl, err := c.svc.Store().Timeline(ctx, customerID, limit)
	return tl, temp(err)
}

func temp(err error) error {
	if err == nil || herald.ErrorCode(err) != herald.EInternal {
		return err
	}
	return herald.Temporary(fmt.Errorf("redis: %w", err), "redis", 0)
}
