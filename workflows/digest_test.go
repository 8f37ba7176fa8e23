package workflows

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Events reach a journey in the order their tasks get the customer's lock,
// not the order they happened in: the digest lists them as they happened
// (Input.At), those of the same moment as they arrived.
func TestDigestListsEventsAsTheyHappened(t *testing.T) {
	t.Parallel()
	w := mustParse(t, `id: comments
topic: t
trigger: comment.created
steps:
  - id: collect
    digest: { event: comment.created, for: 1h, max: 10 }
  - id: send-digest
    send: { template: digest }
`)
	ev := func(n int, at time.Time) Input {
		return Input{Kind: InputEvent, Event: "comment.created", EventID: fmt.Sprint("e", n), At: at, Data: map[string]any{"n": n}}
	}
	happened := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

	first := ev(1, happened(1))
	first.Kind = InputStart
	s, _, err := Start(w, "j", "c", first, t0.Add(time.Minute))
	require.NoError(t, err)
	// N3 and its twin N3b (same moment) overtake N2; N2 arrives last but
	// for N0, which happened before the journey's start event and is
	// collected too (Predates holds back exits, waits and goals only).
	for i, in := range []Input{ev(3, happened(3)), ev(30, happened(3)), ev(2, happened(2)), ev(0, happened(0))} {
		s, _, err = Advance(w, s, in, t0.Add(time.Duration(2+i)*time.Minute))
		require.NoError(t, err)
	}
	// An input without a time is collected as of now.
	s, _, err = Advance(w, s, ev(4, time.Time{}), t0.Add(5*time.Minute))
	require.NoError(t, err)
	require.Equal(t, []time.Time{happened(0), happened(1), happened(2), happened(3), happened(3), t0.Add(5 * time.Minute)},
		[]time.Time{s.Digest.Events[0].At, s.Digest.Events[1].At, s.Digest.Events[2].At, s.Digest.Events[3].At, s.Digest.Events[4].At, s.Digest.Events[5].At})

	done, _, err := Advance(w, s, Input{Kind: InputWake, WakeSeq: s.StepSeq}, s.WakeAt)
	require.NoError(t, err)
	var order []any
	for _, e := range done.Data["digest"].(map[string]any)["events"].([]any) {
		order = append(order, e.(map[string]any)["n"])
	}
	require.Equal(t, []any{0, 1, 2, 3, 30, 4}, order)
}
