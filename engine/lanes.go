package engine

import (
	"maps"
	"slices"

	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// A lane is one asynq server of a worker process with the queues it takes.
//
// The required topics' queue (critical) gets a lane of its own, beside the
// lane that takes every other queue. asynq's dequeue tries a worker's
// queues one by one, one script call each, so a single strict-priority
// server pays for a probe of the (usually empty) critical queue before
// every default or bulk task: three Redis commands a message. With its own
// lane, the critical queue is polled only while it is idle, once per
// TaskCheckInterval, and a password reset never waits for a slot held by
// lifecycle or bulk work: it has slots of its own.
type lane struct {
	queues      map[string]int
	concurrency int
}

// lanes splits queues into lanes: critical alone (with critical slots),
// the rest together (with concurrency slots). Without a critical queue, or
// with nothing else, there is one lane.
func lanes(queues map[string]int, concurrency, critical int) []lane {
	w, ok := queues[wire.QueueCritical]
	if !ok || len(queues) == 1 {
		return []lane{{queues: maps.Clone(queues), concurrency: concurrency}}
	}
	rest := maps.Clone(queues)
	delete(rest, wire.QueueCritical)
	return []lane{
		{queues: map[string]int{wire.QueueCritical: w}, concurrency: critical},
		{queues: rest, concurrency: concurrency},
	}
}

// CriticalConcurrency is the default number of slots of the critical
// lane: a quarter of the worker's concurrency, at least 2.
func CriticalConcurrency(concurrency int) int { return max(2, (concurrency+3)/4) }

// Worker runs the engine's handlers on its lanes' asynq servers.
type Worker struct {
	servers []*asynq.Server
	queues  [][]string
}

// NewWorker builds the servers of a worker process from one asynq
// configuration: cfg.Queues and cfg.Concurrency are split into lanes, the
// critical lane getting critical slots (0: CriticalConcurrency).
func NewWorker(rdb redis.UniversalClient, cfg asynq.Config, critical int) *Worker {
	if critical <= 0 {
		critical = CriticalConcurrency(cfg.Concurrency)
	}
	if cfg.Queues == nil {
		cfg.Queues = map[string]int{wire.QueueDefault: 1}
	}
	w := &Worker{}
	for _, l := range lanes(cfg.Queues, cfg.Concurrency, critical) {
		c := cfg
		c.Queues, c.Concurrency = l.queues, l.concurrency
		w.servers = append(w.servers, asynq.NewServerFromRedisClient(rdb, c))
		w.queues = append(w.queues, slices.Sorted(maps.Keys(l.queues)))
	}
	return w
}

// Lanes lists each lane's queues.
func (w *Worker) Lanes() [][]string { return w.queues }

// Start starts every lane with handler h; if one fails, those started are
// stopped again.
func (w *Worker) Start(h asynq.Handler) error {
	for i, s := range w.servers {
		if err := s.Start(h); err != nil {
			for _, started := range w.servers[:i] {
				started.Shutdown()
			}
			return err
		}
	}
	return nil
}

// Shutdown stops every lane: each stops taking tasks, lets running ones
// finish within its ShutdownTimeout, and puts back the rest. The lanes
// stop together, so the whole takes one ShutdownTimeout.
func (w *Worker) Shutdown() {
	done := make(chan struct{}, len(w.servers))
	for _, s := range w.servers {
		go func() {
			s.Shutdown()
			done <- struct{}{}
		}()
	}
	for range w.servers {
		<-done
	}
}
