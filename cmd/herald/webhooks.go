package main

import (
	"time"

	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/webhooks"
	"github.com/hibiken/asynq"
)

// openWebhooks builds the webhook service from the config; nothing when
// no webhook is configured.
func (m *Main) openWebhooks() error {
	if len(m.Config.Webhooks) == 0 {
		return nil
	}
	eps := make([]webhooks.Endpoint, 0, len(m.Config.Webhooks))
	for _, w := range m.Config.Webhooks {
		eps = append(eps, webhooks.Endpoint{Name: w.Name, URL: w.URL, Events: w.Events, Secret: []byte(w.Secret().Reveal())})
	}
	svc, err := webhooks.New(webhooks.Options{
		Endpoints: eps, Redis: m.Redis, RedisConn: m.RedisConn, Registerer: m.Registry, Logger: m.Logger,
	})
	if err != nil {
		return err
	}
	m.webhooks = svc
	m.closers = append(m.closers, svc.Close)
	return nil
}

// appEvents is where the engine sends app events: the webhook service, or
// none (a nil interface, not a nil *Service).
func (m *Main) appEvents() engine.AppEvents {
	if m.webhooks == nil {
		return nil
	}
	return m.webhooks
}

// workerMux is the engine's task handlers plus webhook delivery.
func (m *Main) workerMux() *asynq.ServeMux {
	mux := m.Engine.Mux()
	if m.webhooks != nil {
		m.webhooks.Register(mux)
	}
	return mux
}

// workerQueues adds the webhooks queue below every other one when webhooks
// are configured and the queue list does not name it: the other weights
// are doubled (same order, same ratios) and webhooks gets 1, so under
// strict priority no message queue ties with it.
func (m *Main) workerQueues(qs map[string]int) map[string]int {
	if m.webhooks == nil {
		return qs
	}
	if _, ok := qs[wire.QueueWebhooks]; ok {
		return qs
	}
	out := make(map[string]int, len(qs)+1)
	for q, w := range qs {
		out[q] = 2 * w
	}
	out[wire.QueueWebhooks] = 1
	return out
}

// retryDelay gives webhook tasks their own backoff.
func (m *Main) retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if m.webhooks != nil {
		if d, ok := m.webhooks.RetryDelay(n, err, t); ok {
			return d
		}
	}
	return m.Engine.RetryDelay(n, err, t)
}

// isFailure: a webhook task put off for a busy outbox is not a failure.
func (m *Main) isFailure(err error) bool {
	return !webhooks.IsBusy(err) && m.Engine.IsFailure(err)
}
