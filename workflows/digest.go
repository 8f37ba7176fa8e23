package workflows

import (
	"maps"
	"slices"
)

// digestEvent is the input event as a digest keeps it.
func (r *runner) digestEvent() DigestEvent {
	at := r.in.At
	if at.IsZero() {
		at = r.now
	}
	return DigestEvent{ID: r.in.EventID, At: at, Data: maps.Clone(r.in.Data)}
}

// add puts ev among the collected events by when it happened, after those
// of the same moment: events reach a journey in the order their tasks get
// the customer's lock, which concurrent workers do not keep.
func (b *DigestBuffer) add(ev DigestEvent) {
	i := len(b.Events)
	for i > 0 && b.Events[i-1].At.After(ev.At) {
		i--
	}
	b.Events = slices.Insert(b.Events, i, ev)
}
