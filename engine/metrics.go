package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Metrics are herald's Prometheus series.
type Metrics struct {
	Messages        *prometheus.CounterVec
	ProviderLatency *prometheus.HistogramVec
	Journeys        *prometheus.CounterVec
	WatchdogRepairs prometheus.Counter
	RateLimitWaits  *prometheus.CounterVec
	// DeliveryLatency is the time from a message's queueing (or, for one
	// deferred by the contact policy, from when it became due) to the
	// provider accepting it, by channel and priority queue.
	DeliveryLatency *prometheus.HistogramVec
	Broadcasts      *prometheus.CounterVec
}

// NewMetrics creates the series and registers them on reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_messages_total",
			Help: "Messages by channel, topic, workflow and outcome (sent, suppressed, deferred, failed-temporary, failed-permanent) with the reason.",
		}, []string{"channel", "topic", "workflow", "outcome", "reason"}),
		ProviderLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_provider_latency_seconds",
			Help:    "Time of one real provider call (SMTP transaction, Slack API call); rate-limit waits and local pool waits are not calls.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel", "result"}),
		Journeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_journeys_total",
			Help: "Journeys started, finished and exited, per workflow; exited_first counts journeys not started because an exit event that happened after the trigger reached a worker first.",
		}, []string{"workflow", "event"}),
		WatchdogRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_watchdog_repairs_total",
			Help: "Journey follow-ups the waker re-armed: their wake-up task was lost (or its worker died after claiming it), had failed and was archived, or no worker took them for a lease.",
		}),
		RateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rate_limit_waits_total",
			Help: "Deliveries re-scheduled because a shared provider rate limit was reached.",
		}, []string{"channel"}),
		DeliveryLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_delivery_latency_seconds",
			Help:    "Time from a message being queued (or due, when the contact policy deferred it) to the provider accepting it, by channel and priority queue; retries and rate-limit waits included.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 4 * 3600},
		}, []string{"channel", "queue"}),
		Broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_broadcast_messages_total",
			Help: "Broadcast messages by outcome: queued by the fan-out, sent, suppressed, deferred, failed, cancelled.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.Messages, m.ProviderLatency, m.Journeys, m.WatchdogRepairs, m.RateLimitWaits, m.DeliveryLatency, m.Broadcasts)
	}
	return m
}

func (m *Metrics) message(channel, topic, workflow string, o herald.Outcome, reason string) {
	m.Messages.WithLabelValues(channel, topic, workflow, string(o), reason).Inc()
}

func (m *Metrics) broadcast(outcome string, n int) {
	m.Broadcasts.WithLabelValues(outcome).Add(float64(n))
}

// providerLatency records one provider call. A refusal for the provider's
// rate limit and a send that timed out waiting for a pooled connection never
// reached the provider: they are not calls and are not recorded.
func (m *Metrics) providerLatency(channel string, d time.Duration, err error) {
	if herald.ErrorCode(err) == herald.ERateLimited || errors.Is(err, email.ErrPoolWait) {
		return
	}
	result := "ok"
	if err != nil {
		result = herald.ErrorCode(err)
	}
	m.ProviderLatency.WithLabelValues(channel, result).Observe(d.Seconds())
}

// delivered records the time from queuedAt to the provider's acceptance at
// sentAt. Messages queued without a time (by older producers) are not
// recorded.
func (m *Metrics) delivered(channel herald.Channel, queue string, queuedAt, sentAt time.Time) {
	if queuedAt.IsZero() {
		return
	}
	m.DeliveryLatency.WithLabelValues(string(channel), queue).Observe(max(sentAt.Sub(queuedAt), 0).Seconds())
}

// What a scheduled delivery or message waits for, as the second-to-last
// part of its task ID ("d:<delivery>:retry:2", "m:<message>:defer:1"): the
// backlog gauges tell real failures from waits without reading payloads.
const (
	kindRetry = "retry" // a temporary failure, tried again later
	kindWait  = "wait"  // a provider rate-limit slot further off than a worker waits
	kindDefer = "defer" // the contact policy (quiet hours, caps) or a due time
)

// waitPrefix starts the error text of a waitError, which asynq keeps as the
// task's last error.
const waitPrefix = "waiting "

// Backlog states of herald_backlog_tasks. scheduled in asynq splits into
// deferred, rate_limited, retrying and follow_up (a wake-up scheduled by an
// older version: journeys now wait in the waiting index, which
// FollowUpCollector exports); asynq's retry set into retrying (a real
// failure) and waiting (a busy customer, journey or sender, which is no
// failure).
var backlogStates = []string{"ready", "active", "deferred", "rate_limited", "waiting", "retrying", "follow_up", "archived", "unclassified"}

// backlogState says what a scheduled or retry task waits for.
func backlogState(t *asynq.TaskInfo) string {
	if t.State == asynq.TaskStateRetry {
		if strings.HasPrefix(t.LastErr, waitPrefix) {
			return "waiting"
		}
		return "retrying"
	}
	if t.Type == wire.TypeWake {
		return "follow_up"
	}
	id := t.ID
	if i := strings.LastIndexByte(id, ':'); i > 0 {
		id = id[:i]
	}
	switch id[strings.LastIndexByte(id, ':')+1:] {
	case kindRetry:
		return "retrying"
	case kindWait:
		return "rate_limited"
	}
	return "deferred"
}

// DefaultClassifyLimit is how many scheduled and how many retry tasks of
// each queue a scrape reads to classify them, soonest due first; the rest
// count as unclassified.
const DefaultClassifyLimit = 10000

const classifyPage = 500

// QueueCollector exports asynq's queues, read from the Inspector at scrape
// time: sizes by asynq state, herald's backlog by what each task waits for,
// the age of the oldest ready task, pauses and asynq's own processed and
// failed totals. These are cluster-wide figures: register the collector in
// one process per cluster role (herald does it where the HTTP server runs),
// or a sum over scrape targets counts each task once per process.
type QueueCollector struct {
	insp *asynq.Inspector
	// ClassifyLimit bounds the tasks read per set and queue at a scrape
	// (default DefaultClassifyLimit).
	ClassifyLimit int

	size, backlog, latency, paused, processed, failed *prometheus.Desc
}

// NewQueueCollector returns a collector over insp.
func NewQueueCollector(insp *asynq.Inspector) *QueueCollector {
	return &QueueCollector{
		insp:          insp,
		ClassifyLimit: DefaultClassifyLimit,
		size:          prometheus.NewDesc("herald_queue_tasks", "Tasks in each asynq queue by asynq state.", []string{"queue", "state"}, nil),
		backlog: prometheus.NewDesc("herald_backlog_tasks",
			"Tasks in each queue by what they wait for: ready (pending), active, deferred (contact policy, due time), rate_limited (a provider rate-limit slot), "+
				"waiting (a busy customer, journey or sender), retrying (a real failure), follow_up (a journey's next step scheduled in asynq by an older version; see herald_journeys_waiting), archived, unclassified (beyond the classify limit).",
			[]string{"queue", "state"}, nil),
		latency:   prometheus.NewDesc("herald_queue_latency_seconds", "Age of the oldest ready (pending) task in each queue; scheduled and retrying tasks are not ready.", []string{"queue"}, nil),
		paused:    prometheus.NewDesc("herald_queue_paused", "1 when the queue is paused from the dashboard.", []string{"queue"}, nil),
		processed: prometheus.NewDesc("herald_queue_processed_total", "Tasks asynq processed in each queue (asynq's cumulative count; a rate-limit wait or a re-scheduled delivery ends its task and counts here).", []string{"queue"}, nil),
		failed:    prometheus.NewDesc("herald_queue_failed_total", "Tasks whose handler failed in each queue (asynq's cumulative count, the dashboard's error rate); waits are not failures.", []string{"queue"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.size, c.backlog, c.latency, c.paused, c.processed, c.failed} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.insp.Queues()
	if err != nil {
		return // herald_redis_up says why
	}
	gauge := func(d *prometheus.Desc, v int, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	for _, q := range queues {
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			continue
		}
		for state, n := range map[string]int{
			"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed, "aggregating": info.Aggregating,
		} {
			gauge(c.size, n, q, state)
		}
		b := c.Backlog(q, info)
		for _, state := range backlogStates {
			gauge(c.backlog, b[state], q, state)
		}
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, info.Latency.Seconds(), q)
		p := 0
		if info.Paused {
			p = 1
		}
		gauge(c.paused, p, q)
		ch <- prometheus.MustNewConstMetric(c.processed, prometheus.CounterValue, float64(info.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(c.failed, prometheus.CounterValue, float64(info.FailedTotal), q)
	}
}

// Backlog counts queue q's tasks by backlog state; info is its queue info.
func (c *QueueCollector) Backlog(q string, info *asynq.QueueInfo) map[string]int {
	n := map[string]int{"ready": info.Pending, "active": info.Active, "archived": info.Archived}
	c.classify(n, info.Scheduled, func(opts ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
		return c.insp.ListScheduledTasks(q, opts...)
	})
	c.classify(n, info.Retry, func(opts ...asynq.ListOption) ([]*asynq.TaskInfo, error) {
		return c.insp.ListRetryTasks(q, opts...)
	})
	return n
}

func (c *QueueCollector) classify(n map[string]int, total int, list func(...asynq.ListOption) ([]*asynq.TaskInfo, error)) {
	limit := c.ClassifyLimit
	if limit <= 0 {
		limit = DefaultClassifyLimit
	}
	seen := 0
	for page := 1; seen < total && seen < limit; page++ {
		tasks, err := list(asynq.Page(page), asynq.PageSize(classifyPage))
		if err != nil || len(tasks) == 0 {
			break
		}
		tasks = tasks[:min(len(tasks), limit-seen)]
		for _, t := range tasks {
			n[backlogState(t)]++
		}
		seen += len(tasks)
	}
	if total > seen {
		n["unclassified"] += total - seen
	}
}

// FollowUpCollector exports the journeys waiting for a follow-up, read
// from the waiting index at scrape time: a cluster-wide figure, registered
// where QueueCollector is.
type FollowUpCollector struct {
	st    *redisstore.Store
	lease time.Duration

	waiting, overdue *prometheus.Desc
}

// NewFollowUpCollector returns a collector over rdb's waiting index; lease
// is the workers' Options.WatchdogLate (0: its default).
func NewFollowUpCollector(rdb redis.UniversalClient, lease time.Duration) *FollowUpCollector {
	if lease <= 0 {
		lease = watchdogLate
	}
	return &FollowUpCollector{
		st: redisstore.New(rdb, nil), lease: lease,
		waiting: prometheus.NewDesc("herald_journeys_waiting",
			"Journeys waiting for a follow-up at a due time (a wait step, a wait for an event with a timeout, a digest window): the schedule the workers' wakers take them from.", nil, nil),
		overdue: prometheus.NewDesc("herald_follow_ups_overdue",
			"Journey follow-ups due for longer than a lease (worker.watchdog_interval) that no worker has taken: 0 unless no worker runs or the workers are far behind.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *FollowUpCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.waiting; ch <- c.overdue }

// Collect implements prometheus.Collector.
func (c *FollowUpCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	total, late, err := c.st.WaitingCounts(ctx, time.Now().Add(-c.lease))
	if err != nil {
		return // herald_redis_up says why
	}
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(total))
	ch <- prometheus.MustNewConstMetric(c.overdue, prometheus.GaugeValue, float64(late))
}

// RedisCollector exports herald_redis_up: whether this process can read
// Redis (its queue list) at scrape time. Every process exports it.
type RedisCollector struct {
	insp *asynq.Inspector
	up   *prometheus.Desc
}

// NewRedisCollector returns a collector over insp.
func NewRedisCollector(insp *asynq.Inspector) *RedisCollector {
	return &RedisCollector{insp: insp, up: prometheus.NewDesc("herald_redis_up", "1 when this process could read Redis at the scrape.", nil, nil)}
}

// Describe implements prometheus.Collector.
func (c *RedisCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.up }

// Collect implements prometheus.Collector.
func (c *RedisCollector) Collect(ch chan<- prometheus.Metric) {
	up := 1.0
	if _, err := c.insp.Queues(); err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up)
}
