package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/workflows"
)

// workflowSummary is a workflow in a list, with its last week.
type workflowSummary struct {
	ID        string                `json:"id"`
	Version   string                `json:"version"`
	Topic     string                `json:"topic"`
	Trigger   string                `json:"trigger"`
	ExitOn    []string              `json:"exit_on"`
	Entry     string                `json:"entry"`
	Steps     int                   `json:"steps"`
	Journeys  engine.JourneyNumbers `json:"journeys_7d"`
	StatsFrom time.Time             `json:"stats_since"`
}

const week = 7 * 24 * time.Hour

func (s *server) summarise(r *http.Request, w *workflows.Workflow) (workflowSummary, error) {
	st, err := s.e.Stats(r.Context(), w.ID, s.cfg.Now().Add(-week))
	if err != nil {
		return workflowSummary{}, err
	}
	return workflowSummary{ID: w.ID, Version: w.Version, Topic: w.Topic, Trigger: w.Trigger,
		ExitOn: nonNil(w.ExitOn), Entry: string(w.Entry), Steps: len(w.Steps), Journeys: st.Journeys, StatsFrom: st.Since}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func (s *server) listWorkflows(w http.ResponseWriter, r *http.Request, _ string) error {
	out := []workflowSummary{}
	for _, wf := range s.e.WorkflowList() {
		sum, err := s.summarise(r, wf)
		if err != nil {
			return err
		}
		out = append(out, sum)
	}
	writeJSON(w, http.StatusOK, map[string]any{"workflows": out})
	return nil
}

func (s *server) getWorkflow(w http.ResponseWriter, r *http.Request, _ string) error {
	wf, err := s.e.Workflow(r.PathValue("id"))
	if err != nil {
		return err
	}
	type step struct {
		ID   string `json:"id"`
		Kind string `json:"kind"`
		Line int    `json:"line"`
	}
	steps := make([]step, 0, len(wf.Steps))
	for _, st := range wf.Steps {
		steps = append(steps, step{st.ID, st.Kind, st.Line})
	}
	d := wf.Diagram()
	writeJSON(w, http.StatusOK, map[string]any{
		"id": wf.ID, "version": wf.Version, "topic": wf.Topic, "trigger": wf.Trigger, "exit_on": nonNil(wf.ExitOn),
		"entry": wf.Entry, "file": wf.File, "steps": steps, "definition": string(wf.Source),
		"graph": map[string]any{"mermaid": d.Mermaid(), "dot": d.DOT(), "nodes": d.Nodes, "edges": d.Edges},
	})
	return nil
}

// parseSince reads since as an RFC 3339 time or a duration back from now
// (24h, 7d, 30d); empty means the last 24 hours.
func parseSince(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return now.Add(-24 * time.Hour), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := workflows.ParseDuration(v); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, errStatus(http.StatusBadRequest, "invalid_since",
		"since: "+quote(v)+" is neither an RFC 3339 time (2026-11-01T00:00:00Z) nor a duration back from now (24h, 7d, 30d)")
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}

func (s *server) workflowStats(w http.ResponseWriter, r *http.Request, _ string) error {
	wf, err := s.e.Workflow(r.PathValue("id"))
	if err != nil {
		return err
	}
	since, err := parseSince(r.URL.Query().Get("since"), s.cfg.Now())
	if err != nil {
		return err
	}
	st, err := s.e.Stats(r.Context(), wf.ID, since)
	if err != nil {
		return err
	}
	conv, err := s.e.WorkflowCounts(r.Context(), wf.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"version": wf.Version, "stats": st, "conversions": conv})
	return nil
}

func (s *server) customerJourneys(w http.ResponseWriter, r *http.Request, _ string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	js, err := s.e.CustomerJourneys(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"customer_id": id, "journeys": js})
	return nil
}

func (s *server) cancelJourney(w http.ResponseWriter, r *http.Request, actor string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	j, err := s.e.CancelJourney(r.Context(), id, r.PathValue("journey"), "api "+actor)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, j)
	return nil
}

func (s *server) getMessage(w http.ResponseWriter, r *http.Request, _ string) error {
	m, err := s.e.Message(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

type testSendBody struct {
	To       string         `json:"to"`
	Channel  string         `json:"channel"`
	Template string         `json:"template"`
	Locale   string         `json:"locale"`
	Data     map[string]any `json:"data"`
	Customer map[string]any `json:"customer"`
}

func (s *server) postTestSend(w http.ResponseWriter, r *http.Request, actor string) error {
	var b testSendBody
	if _, err := readJSON(w, r, s.cfg.MaxBody, &b); err != nil {
		return err
	}
	var probs []string
	if b.To == "" {
		probs = append(probs, "to: required (an email address or Slack user ID)")
	}
	if b.Template == "" {
		probs = append(probs, "template: required")
	}
	if len(probs) > 0 {
		return herald.Errorf(herald.EInvalid, "%s", strings.Join(probs, "; "))
	}
	if b.Channel == string(herald.ChannelEmail) && !service.ValidEmail(b.To) {
		return herald.Errorf(herald.EInvalid, "to: %s is not an email address (want a bare address such as ada@example.com)", quote(b.To))
	}
	rec, err := s.e.TestSend(r.Context(), engine.TestSendRequest{
		To: b.To, Channel: herald.Channel(b.Channel), Template: b.Template, Locale: b.Locale,
		Data: b.Data, Customer: b.Customer, Actor: actor,
	})
	if err != nil && rec.ID != "" {
		// Rendered and handed to the provider, which refused it.
		return errStatus(http.StatusBadGateway, "provider_refused", "test send "+rec.ID+" was not accepted: "+rec.Error)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, rec)
	return nil
}

func (s *server) listTestSends(w http.ResponseWriter, r *http.Request, _ string) error {
	ts, err := s.e.TestSends(r.Context(), 50)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"test_sends": ts})
	return nil
}
