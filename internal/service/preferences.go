package service

import (
	"context"
	"sort"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
)

// Preferences reads the customer's preferences (defaults when never set).
// The customer must exist.
func (s *Service) Preferences(ctx context.Context, customerID string) (herald.Preferences, error) {
	if _, err := s.o.Store.Customer(ctx, customerID); err != nil {
		return herald.Preferences{}, err
	}
	return s.o.Prefs.Get(ctx, customerID)
}

// SetPreferences validates a change against the topic catalogue, merges it,
// and writes one consent entry and one timeline line per changed field in
// the same transaction; then the customer's journeys of every topic left
// (all of them on pause) end. source is where the change came from
// (preferences.Source*).
func (s *Service) SetPreferences(ctx context.Context, customerID string, p preferences.Patch, actor preferences.Actor, source string) (herald.Preferences, error) {
	r, err := s.routing(ctx)
	if err != nil {
		return herald.Preferences{}, err
	}
	// Without a published catalogue (no worker has started yet) the topics
	// cannot be checked here; the policy ignores unknown topics.
	if r.Topics != nil {
		if err := p.Validate(r.Topics); err != nil {
			return herald.Preferences{}, err
		}
	} else if err := p.Validate(topicsOf(p)); err != nil {
		return herald.Preferences{}, err
	}
	if _, err := s.o.Store.Customer(ctx, customerID); err != nil {
		return herald.Preferences{}, err
	}
	prefs, entries, err := s.o.Prefs.Apply(ctx, customerID, p, actor, source)
	if err != nil || len(entries) == 0 {
		return prefs, err
	}
	if s.o.PreferencesChanged != nil {
		s.o.PreferencesChanged(ctx, customerID, entries)
	}
	var left []string
	for t, on := range p.Topics {
		if !on {
			left = append(left, t)
		}
	}
	sort.Strings(left)
	paused := p.Paused != nil && *p.Paused
	if len(left) == 0 && !paused {
		return prefs, nil
	}
	if s.o.Journeys == nil {
		ev := wire.PreferencesChanged(customerID, p.Topics, p.Paused)
		ev.Actor = actorText(actor)
		_, err := s.Event(ctx, ev)
		return prefs, err
	}
	if paused {
		left = []string{""}
	}
	for _, t := range left {
		if err := s.o.Journeys.ExitTopic(ctx, customerID, t); err != nil {
			return prefs, err
		}
	}
	return prefs, nil
}

// topicsOf makes every topic the patch names known, for a syntax-only check.
func topicsOf(p preferences.Patch) map[string]herald.Topic {
	out := map[string]herald.Topic{}
	for t := range p.Topics {
		out[t] = herald.Topic{Name: t}
	}
	return out
}
