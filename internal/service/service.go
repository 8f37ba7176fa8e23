// Package service is the one write path for herald's nouns: customers,
// preferences, events and messages. Every door calls it — the HTTP API, the
// Go client, the CLI and the preference centre — so an operation means the
// same thing, is validated the same way and leaves the same Redis state,
// timeline and consent log whichever door it came through.
//
// The service needs no worker configuration: what it must know about the
// workers (each topic's queue, the retry budget, the topic catalogue) comes
// from a Catalog, which inside a worker is its own config and in an app is
// what the workers published in Redis. What only a worker can do (end
// journeys now, erase under the journey lock) goes through Journeys; a
// service without one asks the workers through the queue.
package service

import (
	"context"
	"errors"
	"regexp"
	"time"

	"github.com/hibiken/asynq"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/preferences"
)

// DefaultMaxRetry is the retry budget used until the workers publish theirs.
const DefaultMaxRetry = 12

// MaxEventData is the largest event data, as JSON, any door accepts. Events
// carry facts for branches and templates, not documents; a bigger payload is
// refused with this limit named.
const MaxEventData = 32 << 10

// Catalog says how the workers queue messages and which topics exist.
type Catalog interface {
	// Routing returns the routing; ok is false when none is known yet.
	Routing(ctx context.Context) (r redisstore.Routing, ok bool, err error)
}

// Journeys is what only a worker can do at once. Without it the service
// enqueues the same work for the workers.
type Journeys interface {
	// ExitTopic ends the customer's running journeys of topic ("" = all).
	ExitTopic(ctx context.Context, customerID, topic string) error
	// Erase removes the customer under the journey lock: journeys, waiting
	// follow-ups, queued tasks, keys. Addresses are already suppressed.
	Erase(ctx context.Context, c herald.Customer, actor preferences.Actor) error
}

// Templates reports whether a template exists (workers only; an app's
// client checks against the names the workers published with their
// routing).
type Templates interface {
	Has(name string) bool
	// DataKeys names the keys of .data the template reads whatever the
	// data holds, in every locale, on every one of channels (none: all).
	DataKeys(name string, channels ...herald.Channel) []string
}

// Options configure a Service.
type Options struct {
	Store     *redisstore.Store
	Prefs     *redisstore.Prefs
	Tasks     *asynq.Client
	Catalog   Catalog
	Journeys  Journeys  // nil: ask the workers through the queue
	Templates Templates // nil: the published routing's names, if any
	// Starts lists the sends the journeys an event triggers make as they
	// start (workers: their loaded workflows; nil: the published
	// routing's).
	Starts func(event string) []redisstore.StartSend
	// TaskTimeout bounds a message task (0: asynq's default).
	TaskTimeout time.Duration
	// PreferencesChanged hears every change a door made, after it is
	// stored (the worker's app webhooks). Optional.
	PreferencesChanged func(ctx context.Context, customerID string, entries []preferences.ConsentEntry)
	// SecretKeys matches data keys whose values are sealed out of task
	// payloads (nil: DefaultSecretKeys).
	SecretKeys *regexp.Regexp
}

// Service is the write path.
type Service struct {
	o Options
}

// New returns a Service.
func New(o Options) *Service { return &Service{o: o} }

// Store is the Redis adapter the service writes through.
func (s *Service) Store() *redisstore.Store { return s.o.Store }

// Prefs is the preference store.
func (s *Service) Prefs() *redisstore.Prefs { return s.o.Prefs }

func (s *Service) routing(ctx context.Context) (redisstore.Routing, error) {
	r, ok, err := s.o.Catalog.Routing(ctx)
	if err != nil {
		return r, herald.Temporary(err, "redis", 0)
	}
	if !ok {
		r = redisstore.Routing{}
	}
	if r.MaxRetry <= 0 {
		r.MaxRetry = DefaultMaxRetry
	}
	return r, nil
}

// enqueue adds a task with ID id to queue. A repeat of a task still queued
// (same task ID) is not an error: it is the same work.
func (s *Service) enqueue(ctx context.Context, queue string, t *asynq.Task, id string, opts ...asynq.Option) error {
	r, err := s.routing(ctx)
	if err != nil {
		return err
	}
	opts = append(opts, asynq.TaskID(id), asynq.Queue(queue), asynq.MaxRetry(r.MaxRetry))
	_, err = s.o.Tasks.EnqueueContext(ctx, t, opts...)
	if errors.Is(err, asynq.ErrTaskIDConflict) || errors.Is(err, asynq.ErrDuplicateTask) {
		err = nil
	}
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// Actor is a door's identity in timeline lines ("api token ci", "cli").
func actorText(a preferences.Actor) string {
	if a.Name != "" {
		return a.Kind + " " + a.Name
	}
	return a.Kind
}

// ActorText names an actor the way timeline lines do.
func ActorText(a preferences.Actor) string { return actorText(a) }
