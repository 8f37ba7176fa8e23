package redisstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// Workflow statistics are counters the engine increments as it works, in
// one hash per workflow and hour (fields: see Count.record), the step
// empty for counters of the workflow as a whole. Hours expire after
// StatsTTL, so the numbers cost a bounded amount of memory and reading a
// range costs one HGETALL an hour. What is true now (journeys running,
// waiting at a step) is a gauge hash per workflow that never expires.
const (
	// StatsTTL is how long an hour of counters is kept: a month and a bit,
	// so a 30-day view is always complete.
	StatsTTL = 35 * 24 * time.Hour
	// StatsBucket is the granularity of the counters.
	StatsBucket = time.Hour
)

// Counter names. Those with a suffix take ":<channel>", ":<reason>" or
// ":<event>".
const (
	CountStarted    = "started"   // workflow: a journey started
	CountCompleted  = "completed" // workflow: a journey finished (end step or past the last)
	CountExited     = "exited"    // workflow: a journey ended early; step: ":<why>"
	CountEntered    = "entered"   // step: a journey reached it
	CountSent       = "sent"      // step: ":<channel>"
	CountSuppressed = "suppressed"
	CountFailed     = "failed"    // step: a delivery failed for good
	CountTimedOut   = "timed_out" // step: a wait ran its full time
	GaugeRunning    = "running"   // workflow: journeys active now
	GaugeWaiting    = "waiting"   // step: journeys parked here now
)

// Count is one increment of a workflow counter (or, with Gauge, a change
// to a gauge).
type Count struct {
	Workflow, Version, Step string
	Name                    string
	// Broadcast, when set, makes this a broadcast's counter: Name (such as
	// "sent:email") in the broadcast's counts, Workflow, Version, Step and
	// Gauge unused. Written with the outcome it counts, it cannot be
	// separated from it by a worker's death.
	Broadcast string
	// N is the amount; 0 means 1.
	N int64
	// Gauge marks a change to what is true now rather than an event.
	Gauge bool
}

// A hash field holds every count of one call (a journey's transition, a
// delivery's outcome) as records "version US step US name US amount" joined
// by RS, and the field's value counts how often that happened: one HINCRBY
// a transition, however many steps it moved through. The set of fields
// stays as small as the number of distinct paths through the workflow.
const (
	unitSep   = "\x1f"
	recordSep = "\x1e"
)

func (c Count) record() string {
	n := c.N
	if n == 0 {
		n = 1
	}
	return c.Version + unitSep + c.Step + unitSep + c.Name + unitSep + strconv.FormatInt(n, 10)
}

func statsKey(workflow string, hour time.Time) string {
	return "herald:stats:{w:" + workflow + "}:" + hour.UTC().Format("2006010215")
}

func gaugeKey(workflow string) string { return "herald:stats:{w:" + workflow + "}:now" }

// CountPipe queues counts, made at at, on a pipeline the caller already
// runs: per workflow one HINCRBY for the counts and one for the gauges, and
// an EXPIRE the first time this process writes a workflow's hour (whoever
// creates the hash sets its expiry; the others only repeat it).
func (s *Store) CountPipe(ctx context.Context, p redis.Pipeliner, at time.Time, counts ...Count) {
	type group struct{ key, workflow string }
	fields := map[group][]string{}
	var order []group
	for _, c := range counts {
		if c.Broadcast != "" && c.Name != "" {
			p.HIncrBy(ctx, broadcastKey(c.Broadcast, "meta"), c.Name, max(c.N, 1))
			continue
		}
		if c.Workflow == "" || c.Name == "" {
			continue
		}
		g := group{statsKey(c.Workflow, at), c.Workflow}
		if c.Gauge {
			g.key = gaugeKey(c.Workflow)
		}
		if _, ok := fields[g]; !ok {
			order = append(order, g)
		}
		fields[g] = append(fields[g], c.record())
	}
	for _, g := range order {
		p.HIncrBy(ctx, g.key, strings.Join(fields[g], recordSep), 1)
		if g.key == gaugeKey(g.workflow) {
			continue
		}
		// Now and then again, so an hour whose first write was lost with
		// its pipeline still gets its expiry.
		if prev, _ := s.expiring.Swap(g.workflow, g.key); prev != g.key || rand.IntN(64) == 0 {
			p.Expire(ctx, g.key, StatsTTL)
		}
	}
}

// Count records counts in a round trip of its own.
func (s *Store) Count(ctx context.Context, at time.Time, counts ...Count) error {
	if len(counts) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.CountPipe(ctx, p, at, counts...)
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// AppendCounted appends a timeline entry about a message (its Ref), indexes
// the message under its customer so its status can be looked up by ID
// alone, and records counts, in one round trip (not a transaction: the
// index and counters live on other Cluster slots).
func (s *Store) AppendCounted(ctx context.Context, customerID string, e herald.TimelineEntry, counts ...Count) error {
	if e.At.IsZero() {
		e.At = s.now().UTC()
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.AppendPipe(ctx, p, customerID, e)
		if e.Ref != "" {
			p.Set(ctx, MessageIndexKey(e.Ref), customerID, LedgerTTL)
		}
		s.CountPipe(ctx, p, e.At, counts...)
		return nil
	})
	return err
}

// MessageIndexKey names the record of which customer a message is for: the
// same key a Slack button's acknowledgement reads (MsgIndexKey), so a Slack
// send writes one index, not two.
func MessageIndexKey(messageID string) string { return MsgIndexKey(messageID) }

// ForgetMessageIndex drops the customer index of the given messages
// (erasure).
func (s *Store) ForgetMessageIndex(ctx context.Context, messageIDs ...string) error {
	if len(messageIDs) == 0 {
		return nil
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range messageIDs {
			p.Del(ctx, MessageIndexKey(id))
		}
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// MessageOwner returns the customer a message was for, from the index its
// timeline lines keep or, for a journey's message ("<journey>.<step>.<n>"),
// from its journey's (runningKey, journeyOwnerKey), in one round trip;
// false when the message is unknown.
func (s *Store) MessageOwner(ctx context.Context, messageID string) (string, bool, error) {
	var gets []*redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		gets = append(gets, p.Get(ctx, MessageIndexKey(messageID)))
		if j, _, ok := journeyOfMessage(messageID); ok {
			gets = append(gets, p.HGet(ctx, runningKey, j), p.Get(ctx, journeyOwnerKey(j)))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", false, herald.Temporary(err, "redis", 0)
	}
	for _, g := range gets {
		if v, err := g.Result(); err == nil {
			return v, true, nil
		}
	}
	return "", false, nil
}

// Counters are a workflow's numbers: version → step ("" for the workflow)
// → counter → value.
type Counters map[string]map[string]map[string]int64

// add adds a field's records, times n, the field's value.
func (c Counters) add(field string, n int64) {
	for _, rec := range strings.Split(field, recordSep) {
		parts := strings.Split(rec, unitSep)
		if len(parts) != 4 {
			continue
		}
		version, step, name := parts[0], parts[1], parts[2]
		amount, err := strconv.ParseInt(parts[3], 10, 64)
		if err != nil {
			continue
		}
		if c[version] == nil {
			c[version] = map[string]map[string]int64{}
		}
		if c[version][step] == nil {
			c[version][step] = map[string]int64{}
		}
		c[version][step][name] += amount * n
	}
}

// Stats sums a workflow's counters over the hours from since to until
// (both included, whole hours) and reads its gauges.
func (s *Store) Stats(ctx context.Context, workflow string, since, until time.Time) (counts, gauges Counters, err error) {
	since, until = since.UTC().Truncate(StatsBucket), until.UTC().Truncate(StatsBucket)
	if until.Sub(since) > StatsTTL {
		since = until.Add(-StatsTTL)
	}
	var hours []*redis.MapStringStringCmd
	var now *redis.MapStringStringCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for h := since; !h.After(until); h = h.Add(StatsBucket) {
			hours = append(hours, p.HGetAll(ctx, statsKey(workflow, h)))
		}
		now = p.HGetAll(ctx, gaugeKey(workflow))
		return nil
	})
	if err != nil {
		return nil, nil, herald.Temporary(err, "redis", 0)
	}
	counts, gauges = Counters{}, Counters{}
	for _, h := range hours {
		for f, v := range h.Val() {
			counts.add(f, parseInt(v))
		}
	}
	for f, v := range now.Val() {
		gauges.add(f, parseInt(v))
	}
	return counts, gauges, nil
}

// RunningByVersion reads how many of a workflow's journeys run now on each
// of its versions (the running gauge); versions with none are left out.
func (s *Store) RunningByVersion(ctx context.Context, workflow string) (map[string]int64, error) {
	all, err := s.rdb.HGetAll(ctx, gaugeKey(workflow)).Result()
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	gauges := Counters{}
	for f, v := range all {
		gauges.add(f, parseInt(v))
	}
	out := map[string]int64{}
	for version, steps := range gauges {
		if n := steps[""][GaugeRunning]; n > 0 {
			out[version] = n
		}
	}
	return out, nil
}

func parseInt(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// StepNumbers are one step's counts over a time range, and how many
// journeys wait there now.
type StepNumbers struct {
	Entered    int64            `json:"entered"`
	Sent       map[string]int64 `json:"sent"`       // by channel
	Suppressed map[string]int64 `json:"suppressed"` // by reason
	Failed     int64            `json:"failed"`
	TimedOut   int64            `json:"timed_out"`
	Exited     map[string]int64 `json:"exited"` // by event (or cancelled, opted_out, paused)
	Waiting    int64            `json:"waiting"`
}

func newStepNumbers() *StepNumbers {
	return &StepNumbers{Sent: map[string]int64{}, Suppressed: map[string]int64{}, Exited: map[string]int64{}}
}

func (n *StepNumbers) add(name string, v int64) {
	kind, sub, _ := strings.Cut(name, ":")
	switch kind {
	case CountEntered:
		n.Entered += v
	case CountSent:
		n.Sent[sub] += v
	case CountSuppressed:
		n.Suppressed[sub] += v
	case CountFailed:
		n.Failed += v
	case CountTimedOut:
		n.TimedOut += v
	case CountExited:
		n.Exited[sub] += v
	case GaugeWaiting:
		n.Waiting += v
	}
}

// JourneyNumbers are a workflow's journeys over a time range, and how many
// run now.
type JourneyNumbers struct {
	Started   int64 `json:"started"`
	Completed int64 `json:"completed"`
	Exited    int64 `json:"exited"`
	Running   int64 `json:"running"`
}

func (j *JourneyNumbers) add(name string, v int64) {
	switch name {
	case CountStarted:
		j.Started += v
	case CountCompleted:
		j.Completed += v
	case CountExited:
		j.Exited += v
	case GaugeRunning:
		j.Running += v
	}
}

// WorkflowStats are a workflow's numbers from Since to Until, for all its
// versions together (Steps) and per version.
type WorkflowStats struct {
	Workflow string                             `json:"workflow"`
	Since    time.Time                          `json:"since"`
	Until    time.Time                          `json:"until"`
	Journeys JourneyNumbers                     `json:"journeys"`
	Steps    map[string]*StepNumbers            `json:"steps"`
	Versions map[string]map[string]*StepNumbers `json:"versions"`
}

// WorkflowStats sums a workflow's counters from since to until (whole
// hours) with its gauges, for all versions together and per version. steps
// lists the steps to show even when nothing reached them yet.
func (s *Store) WorkflowStats(ctx context.Context, workflowID string, steps []string, since, until time.Time) (WorkflowStats, error) {
	out := WorkflowStats{Workflow: workflowID, Since: since.UTC().Truncate(StatsBucket), Until: until.UTC(),
		Steps: map[string]*StepNumbers{}, Versions: map[string]map[string]*StepNumbers{}}
	for _, id := range steps {
		out.Steps[id] = newStepNumbers()
	}
	counts, gauges, err := s.Stats(ctx, workflowID, since, until)
	if err != nil {
		return out, err
	}
	for _, c := range []Counters{counts, gauges} {
		for version, steps := range c {
			for step, names := range steps {
				for name, v := range names {
					if step == "" {
						out.Journeys.add(name, v)
						continue
					}
					if out.Steps[step] == nil {
						out.Steps[step] = newStepNumbers()
					}
					out.Steps[step].add(name, v)
					if out.Versions[version] == nil {
						out.Versions[version] = map[string]*StepNumbers{}
					}
					if out.Versions[version][step] == nil {
						out.Versions[version][step] = newStepNumbers()
					}
					out.Versions[version][step].add(name, v)
				}
			}
		}
	}
	return out, nil
}
