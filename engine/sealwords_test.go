package engine_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

// The default secret words match whole parts of a key: a comment's author
// stays readable on the timeline, its auth token does not.
func TestTimelineSealsSecretKeysNotWordsThatContainThem(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, herald.Customer{ID: "c1", Email: "ada@example.com"})
	id, err := b.e.Event(context.Background(), herald.Event{CustomerID: "c1", Name: "comment.created",
		Data: map[string]any{"author": "Grace", "authority": "admin", "authToken": "tok-123", "reset_url": "https://app.example/r"}}, "test")
	require.NoError(t, err)
	var line herald.TimelineEntry
	eventually(t, func() bool {
		for _, e := range b.timeline(t, "c1") {
			if e.Ref == id {
				line = e
				return true
			}
		}
		return false
	}, "the event is on the timeline")
	require.Equal(t, "Grace", line.Data["author"])
	require.Equal(t, "admin", line.Data["authority"])
	require.Equal(t, "[sealed]", line.Data["authToken"])
	require.Equal(t, "[sealed]", line.Data["reset_url"])
}
