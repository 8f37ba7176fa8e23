package engine

import (
	"context"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
)

// Workflow statistics are counted as the engine works: a journey's
// transition adds its counts to the pipeline that saves the journey, a
// send to the one that writes its ledger record, a suppression or failure
// to the one that writes its timeline line. No extra round trip on the way
// of a message.

// withVersion adds the workflow version to a journey message's timeline
// data, which is also where its counters find their step.
func withVersion(ref map[string]any, version string) {
	if version != "" {
		ref["version"] = version
	}
}

// stepCounts is one count of name at the step a message belongs to (none
// for a message outside a journey).
func stepCounts(ref map[string]any, name string) []redisstore.Count {
	wf, _ := ref["workflow"].(string)
	step, _ := ref["step"].(string)
	if wf == "" || step == "" {
		return nil
	}
	version, _ := ref["version"].(string)
	return []redisstore.Count{{Workflow: wf, Version: version, Step: step, Name: name}}
}

// journeyCounts are the counters one transition of a journey moves: the
// steps it entered, waits that timed out, how it ended, and the gauges of
// journeys running and waiting at a step.
func journeyCounts(prev, next workflows.State, actions []workflows.Action) []redisstore.Count {
	wf, v := next.WorkflowID, next.Version
	var out []redisstore.Count
	add := func(step, name string, n int64, gauge bool) {
		out = append(out, redisstore.Count{Workflow: wf, Version: v, Step: step, Name: name, N: n, Gauge: gauge})
	}
	if prev.JourneyID == "" {
		add("", redisstore.CountStarted, 1, false)
		add("", redisstore.GaugeRunning, 1, true)
	}
	// A step is entered once per visit, whatever its kind: every visit
	// takes a new StepSeq and writes its first history entry with it.
	// Later entries of the same visit (a held send sent on wake-up, a
	// digest closing, a wait timing out) carry a seq already seen, and a
	// retried task starts from the saved state, so nothing counts twice.
	seen := prev.StepSeq
	for _, h := range newHistory(prev, next) {
		if h.Step != "" && h.Seq > seen {
			seen = h.Seq
			add(h.Step, redisstore.CountEntered, 1, false)
		}
		if h.Kind == "timeout" {
			add(h.Step, redisstore.CountTimedOut, 1, false)
		}
	}
	for _, a := range actions {
		switch a.Kind {
		case workflows.ActionFinish:
			add("", redisstore.CountCompleted, 1, false)
			add("", redisstore.GaugeRunning, -1, true)
		case workflows.ActionExit:
			add("", redisstore.CountExited, 1, false)
			add(a.StepID, redisstore.CountExited+":"+exitKind(a.Reason), 1, false)
			add("", redisstore.GaugeRunning, -1, true)
		}
	}
	if prev.Waiting() && (!next.Waiting() || next.StepSeq != prev.StepSeq) {
		out = append(out, redisstore.Count{Workflow: wf, Version: prev.Version, Step: prev.Step, Name: redisstore.GaugeWaiting, N: -1, Gauge: true})
	}
	if next.Waiting() && (!prev.Waiting() || next.StepSeq != prev.StepSeq) {
		add(next.Step, redisstore.GaugeWaiting, 1, true)
	}
	return out
}

// exitKind names why a journey left early, for its counter: the exit
// event, or cancelled, opted out, paused.
func exitKind(reason string) string {
	switch {
	case strings.HasPrefix(reason, cancelledPrefix):
		return "cancelled"
	case strings.HasPrefix(reason, "opted out of "):
		return "opted_out"
	case reason == "paused all messages":
		return "paused"
	}
	return reason
}

const cancelledPrefix = "cancelled by "

// The numbers' shapes: the same for the API, the pages, the CLI and the
// Go client.
type (
	StepNumbers    = redisstore.StepNumbers
	JourneyNumbers = redisstore.JourneyNumbers
	WorkflowStats  = redisstore.WorkflowStats
)

// Stats returns a workflow's numbers since a moment (hourly buckets: the
// hour since falls in is included whole).
func (e *Engine) Stats(ctx context.Context, workflowID string, since time.Time) (WorkflowStats, error) {
	var steps []string
	if w, ok := e.workflowByID(workflowID); ok {
		for _, s := range w.Steps {
			steps = append(steps, s.ID)
		}
	}
	return e.st.WorkflowStats(ctx, workflowID, steps, since, e.now())
}

// RunningVersion is how many of a workflow's journeys run now on one of
// its versions, with that version's workflow: the loaded one, or the stored
// file its journeys started from; nil when that is gone or unreadable (the
// journeys then cannot go on either).
type RunningVersion struct {
	Version  string
	Workflow *workflows.Workflow
	Running  int64
}

// RunningVersions returns the versions of a workflow that have journeys
// running now, ordered by version.
func (e *Engine) RunningVersions(ctx context.Context, workflowID string) ([]RunningVersion, error) {
	running, err := e.st.RunningByVersion(ctx, workflowID)
	if err != nil {
		return nil, err
	}
	var out []RunningVersion
	for _, v := range slices.Sorted(maps.Keys(running)) {
		w, err := e.workflowVersion(ctx, workflowID, v)
		if err != nil {
			return nil, err
		}
		out = append(out, RunningVersion{Version: v, Workflow: w, Running: running[v]})
	}
	return out, nil
}

// workflowByID returns the current version of a loaded workflow.
func (e *Engine) workflowByID(id string) (*workflows.Workflow, bool) {
	set := e.Workflows()
	if set == nil {
		return nil, false
	}
	return set.Get(id)
}

// Workflow returns the current version of a workflow, or ENotFound.
func (e *Engine) Workflow(id string) (*workflows.Workflow, error) {
	w, ok := e.workflowByID(id)
	if !ok {
		return nil, herald.Errorf(herald.ENotFound, "workflow %q not found", id)
	}
	return w, nil
}

// WorkflowList returns the current workflows, ordered by ID.
func (e *Engine) WorkflowList() []*workflows.Workflow {
	if set := e.Workflows(); set != nil {
		return set.All()
	}
	return nil
}

// JourneyView is a journey as support reads it.
type JourneyView = workflows.JourneyView

// CustomerJourneys returns a customer's journeys, running first, then the
// most recently changed (finished journeys stay readable 90 days).
func (e *Engine) CustomerJourneys(ctx context.Context, customerID string) ([]JourneyView, error) {
	if _, err := e.st.Customer(ctx, customerID); err != nil {
		return nil, err
	}
	states, err := e.Journeys(ctx, customerID)
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	return workflows.Views(states), nil
}

// CancelJourney ends a running journey on behalf of who: its pending
// wake-up is removed and the customer's timeline says who stopped it. A
// journey that has already ended is an EConflict, an unknown one ENotFound.
func (e *Engine) CancelJourney(ctx context.Context, customerID, journeyID, who string) (JourneyView, error) {
	c, err := e.st.Customer(ctx, customerID)
	if err != nil {
		return JourneyView{}, err
	}
	var unlock func()
	for i := 0; ; i++ {
		unlock, err = e.lock(ctx, customerID)
		if err == nil {
			break
		}
		if i == 50 || ctx.Err() != nil {
			return JourneyView{}, err
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer unlock()
	s, w, err := e.loadJourney(ctx, customerID, journeyID)
	if err != nil {
		return JourneyView{}, err
	}
	if s.JourneyID == "" {
		return JourneyView{}, herald.Errorf(herald.ENotFound, "customer %q has no journey %q", customerID, journeyID)
	}
	if s.Status != workflows.StatusActive {
		return s.View(), herald.Errorf(herald.EConflict, "journey %s has already ended (%s)", journeyID, s.Status)
	}
	if w == nil {
		return s.View(), herald.Errorf(herald.EInternal, "journey %s: its workflow version %s is gone", journeyID, s.Version)
	}
	n := &notes{}
	next, actions := workflows.Exit(s, cancelledPrefix+who, e.now())
	if err := e.apply(ctx, n, c, w, s, next, actions, cancelledPrefix+who); err != nil {
		return JourneyView{}, err
	}
	if err := e.flushNotes(ctx, customerID, n); err != nil {
		return JourneyView{}, err
	}
	return next.View(), nil
}

// handleCancelJourney cancels a journey on behalf of a door without an
// engine of its own (the Go client). One that has already ended or is gone
// is no failure: there is nothing left to cancel.
func (e *Engine) handleCancelJourney(ctx context.Context, t *asynq.Task) error {
	var p wire.CancelJourney
	if err := wire.Decode(t.Payload(), &p); err != nil {
		return skip(err)
	}
	if err := wire.Check("customer_id", p.CustomerID, "journey", p.JourneyID, "by", p.By); err != nil {
		return skip(err)
	}
	_, err := e.CancelJourney(ctx, p.CustomerID, p.JourneyID, p.By)
	switch herald.ErrorCode(err) {
	case herald.ENotFound, herald.EConflict:
		e.log.Info("journey not cancelled", "journey", p.JourneyID, "customer", p.CustomerID, "why", herald.ErrorMessage(err))
		return nil
	}
	return err
}

// forgetInsight runs before a customer's keys are erased: their running
// journeys leave the running and waiting numbers (counted as exited,
// erased), and the index that finds the customer of each message on their
// timeline (suppressed, deferred, failed and sent ones) goes.
func (e *Engine) forgetInsight(ctx context.Context, customerID string) error {
	raw, err := e.st.JourneyStates(ctx, customerID)
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	var counts []redisstore.Count
	for _, s := range workflows.DecodeStates(raw) {
		if next, actions := workflows.Exit(s, "erased", e.now()); len(actions) > 0 {
			counts = append(counts, journeyCounts(s, next, actions)...)
		}
	}
	if err := e.st.Count(ctx, e.now(), counts...); err != nil {
		return err
	}
	tl, err := e.st.Timeline(ctx, customerID, 0)
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	var refs []string
	for _, t := range tl {
		if t.Ref != "" && (t.Kind == herald.KindMessage || t.Kind == herald.KindDelivery) {
			refs = append(refs, t.Ref)
		}
	}
	return e.st.ForgetMessageIndex(ctx, refs...)
}
