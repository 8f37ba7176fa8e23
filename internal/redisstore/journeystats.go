package redisstore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// Journey counters: one hash per workflow (all versions together), so a
// statistics page reads a workflow's numbers in one command. Fields:
//
//	started                    journeys started
//	converted                  journeys that reached the workflow's goal
//	arm:<step>:<arm>           journeys that entered an arm of a split step
//	converted:<step>:<arm>     conversions of journeys that entered that arm
//
// Counters are written in the pipeline that saves the journey state, and
// the state says what was counted (its arm, its conversion time), so a
// retried task finds the state moved on and counts nothing twice.
func conversionsKey(workflowID string) string { return "herald:stats:workflow:" + workflowID }

// JourneyCounts is what a journey transition adds to its workflow's
// counters.
type JourneyCounts struct {
	Started bool
	// Arms lists the split arms entered, as step → arm.
	Arms map[string]string
	// Converted counts one conversion, for the workflow and for each arm
	// in ConvertedArms (the journey's arms so far).
	Converted     bool
	ConvertedArms map[string]string
}

// Empty reports whether there is nothing to count.
func (c JourneyCounts) Empty() bool { return !c.Started && len(c.Arms) == 0 && !c.Converted }

// CountJourneyPipe queues the counter increments on a pipeline.
func CountJourneyPipe(ctx context.Context, p redis.Pipeliner, workflowID string, c JourneyCounts) {
	key := conversionsKey(workflowID)
	if c.Started {
		p.HIncrBy(ctx, key, "started", 1)
	}
	for step, arm := range c.Arms {
		p.HIncrBy(ctx, key, "arm:"+step+":"+arm, 1)
	}
	if c.Converted {
		p.HIncrBy(ctx, key, "converted", 1)
		for step, arm := range c.ConvertedArms {
			p.HIncrBy(ctx, key, "converted:"+step+":"+arm, 1)
		}
	}
}

// WorkflowCounts is a workflow's journey numbers.
type WorkflowCounts struct {
	Started   int64 `json:"started"`
	Converted int64 `json:"converted"`
	// Arms lists every arm that journeys entered, by step then arm.
	Arms []ArmCounts `json:"arms"`
}

// ArmCounts is one arm of a split step.
type ArmCounts struct {
	Step      string `json:"step"`
	Arm       string `json:"arm"`
	Entered   int64  `json:"entered"`
	Converted int64  `json:"converted"`
}

// WorkflowCounts reads a workflow's journey numbers: journeys started,
// conversions, and per split arm journeys entered and converted.
func (s *Store) WorkflowCounts(ctx context.Context, workflowID string) (WorkflowCounts, error) {
	h, err := s.rdb.HGetAll(ctx, conversionsKey(workflowID)).Result()
	if err != nil {
		return WorkflowCounts{}, herald.Temporary(err, "redis", 0)
	}
	var out WorkflowCounts
	arms := map[[2]string]*ArmCounts{}
	arm := func(step, name string) *ArmCounts {
		k := [2]string{step, name}
		if a, ok := arms[k]; ok {
			return a
		}
		a := &ArmCounts{Step: step, Arm: name}
		arms[k] = a
		return a
	}
	for field, raw := range h {
		n, _ := strconv.ParseInt(raw, 10, 64)
		kind, rest, _ := strings.Cut(field, ":")
		step, name, isArm := strings.Cut(rest, ":")
		switch {
		case field == "started":
			out.Started = n
		case field == "converted":
			out.Converted = n
		case kind == "arm" && isArm:
			arm(step, name).Entered = n
		case kind == "converted" && isArm:
			arm(step, name).Converted = n
		}
	}
	for _, a := range arms {
		out.Arms = append(out.Arms, *a)
	}
	slices.SortFunc(out.Arms, func(a, b ArmCounts) int {
		return strings.Compare(a.Step+"\x00"+a.Arm, b.Step+"\x00"+b.Arm)
	})
	return out, nil
}

// goalsKey is one hash per customer: workflow → the customer's latest
// journey of it, so a goal event reached after the journey ended still
// finds the journey to convert.
func goalsKey(customerID string) string { return Key(customerID, "goals") }

// GoalJourneyPipe records, on a pipeline, the customer's latest journey of
// a workflow with a goal.
func GoalJourneyPipe(ctx context.Context, p redis.Pipeliner, customerID, workflowID, journeyID string) {
	p.HSet(ctx, goalsKey(customerID), workflowID, journeyID)
}

// GoalJourneys returns the customer's latest journey of each of the
// workflows that has one.
func (s *Store) GoalJourneys(ctx context.Context, customerID string, workflowIDs ...string) (map[string]string, error) {
	out := map[string]string{}
	if len(workflowIDs) == 0 {
		return out, nil
	}
	vals, err := s.rdb.HMGet(ctx, goalsKey(customerID), workflowIDs...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, herald.Temporary(err, "redis", 0)
	}
	for i, v := range vals {
		if jid, ok := v.(string); ok && jid != "" {
			out[workflowIDs[i]] = jid
		}
	}
	return out, nil
}
