package engine

import (
	"time"

	"github.com/heraldhq/herald"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are herald's Prometheus series.
type Metrics struct {
	Messages        *prometheus.CounterVec
	ProviderLatency *prometheus.HistogramVec
	Journeys        *prometheus.CounterVec
	WatchdogRepairs prometheus.Counter
	RateLimitWaits  *prometheus.CounterVec
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
			Help:    "Time of one provider call (SMTP transaction, Slack API call).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"channel", "result"}),
		Journeys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_journeys_total",
			Help: "Journeys started, finished and exited, per workflow.",
		}, []string{"workflow", "event"}),
		WatchdogRepairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_watchdog_repairs_total",
			Help: "Journeys whose lost or overdue follow-up the watchdog re-scheduled.",
		}),
		RateLimitWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_rate_limit_waits_total",
			Help: "Deliveries re-scheduled because a shared provider rate limit was reached.",
		}, []string{"channel"}),
		Broadcasts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_broadcast_messages_total",
			Help: "Broadcast messages by outcome: queued by the fan-out, sent, suppressed, deferred, failed, cancelled.",
		}, []string{"outcome"}),
	}
	if reg != nil {
		reg.MustRegister(m.Messages, m.ProviderLatency, m.Journeys, m.WatchdogRepairs, m.RateLimitWaits, m.Broadcasts)
	}
	return m
}

func (m *Metrics) message(channel, topic, workflow string, o herald.Outcome, reason string) {
	m.Messages.WithLabelValues(channel, topic, workflow, string(o), reason).Inc()
}

func (m *Metrics) broadcast(outcome string, n int) {
	m.Broadcasts.WithLabelValues(outcome).Add(float64(n))
}

func (m *Metrics) providerLatency(channel string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = herald.ErrorCode(err)
	}
	m.ProviderLatency.WithLabelValues(channel, result).Observe(d.Seconds())
}

// QueueCollector exports asynq's queue sizes by state and latency, read from
// the Inspector at scrape time.
type QueueCollector struct {
	insp    *asynq.Inspector
	size    *prometheus.Desc
	latency *prometheus.Desc
	paused  *prometheus.Desc
	up      *prometheus.Desc
}

// NewQueueCollector returns a collector over insp.
func NewQueueCollector(insp *asynq.Inspector) *QueueCollector {
	return &QueueCollector{
		insp:    insp,
		size:    prometheus.NewDesc("herald_queue_tasks", "Tasks in each asynq queue by state.", []string{"queue", "state"}, nil),
		latency: prometheus.NewDesc("herald_queue_latency_seconds", "Age of the oldest pending task in each queue.", []string{"queue"}, nil),
		paused:  prometheus.NewDesc("herald_queue_paused", "1 when the queue is paused from the dashboard.", []string{"queue"}, nil),
		up:      prometheus.NewDesc("herald_redis_up", "1 when the queue inspector could read Redis.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.latency
	ch <- c.paused
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	queues, err := c.insp.Queues()
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
	for _, q := range queues {
		info, err := c.insp.GetQueueInfo(q)
		if err != nil {
			continue
		}
		for state, n := range map[string]int{
			"pending": info.Pending, "active": info.Active, "scheduled": info.Scheduled,
			"retry": info.Retry, "archived": info.Archived, "completed": info.Completed, "aggregating": info.Aggregating,
		} {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(n), q, state)
		}
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, info.Latency.Seconds(), q)
		p := 0.0
		if info.Paused {
			p = 1
		}
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, p, q)
	}
}
