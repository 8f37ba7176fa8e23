package redisstore_test

import (
	"testing"

	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestWorkflowCounts(t *testing.T) {
	t.Parallel()
	b := setup(t)
	empty, err := b.st.WorkflowCounts(b.ctx, "pricing")
	require.NoError(t, err)
	require.Equal(t, redisstore.WorkflowCounts{}, empty)

	add := func(c redisstore.JourneyCounts) {
		_, err := b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
			redisstore.CountJourneyPipe(b.ctx, p, "pricing", c)
			return nil
		})
		require.NoError(t, err)
	}
	require.True(t, redisstore.JourneyCounts{}.Empty())
	add(redisstore.JourneyCounts{Started: true, Arms: map[string]string{"choose": "variant-a"}})
	add(redisstore.JourneyCounts{Started: true, Arms: map[string]string{"choose": "variant-b"}})
	add(redisstore.JourneyCounts{Started: true, Arms: map[string]string{"choose": "holdout"}})
	add(redisstore.JourneyCounts{Converted: true, ConvertedArms: map[string]string{"choose": "variant-b"}})
	add(redisstore.JourneyCounts{Started: true, Arms: map[string]string{"choose": "variant-b"}})

	got, err := b.st.WorkflowCounts(b.ctx, "pricing")
	require.NoError(t, err)
	require.Equal(t, redisstore.WorkflowCounts{Started: 4, Converted: 1, Arms: []redisstore.ArmCounts{
		{Step: "choose", Arm: "holdout", Entered: 1},
		{Step: "choose", Arm: "variant-a", Entered: 1},
		{Step: "choose", Arm: "variant-b", Entered: 2, Converted: 1},
	}}, got)
	other, err := b.st.WorkflowCounts(b.ctx, "other")
	require.NoError(t, err)
	require.Zero(t, other.Started, "counts are per workflow")
}

func TestGoalJourneys(t *testing.T) {
	t.Parallel()
	b := setup(t)
	none, err := b.st.GoalJourneys(b.ctx, "c1", "w1", "w2")
	require.NoError(t, err)
	require.Empty(t, none)
	_, err = b.rdb.Pipelined(b.ctx, func(p redis.Pipeliner) error {
		redisstore.GoalJourneyPipe(b.ctx, p, "c1", "w1", "j1")
		redisstore.GoalJourneyPipe(b.ctx, p, "c1", "w1", "j2") // the latest journey wins
		redisstore.GoalJourneyPipe(b.ctx, p, "c2", "w2", "j3")
		return nil
	})
	require.NoError(t, err)
	got, err := b.st.GoalJourneys(b.ctx, "c1", "w1", "w2")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"w1": "j2"}, got)
}

func TestWebhookOutbox(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, id := range []string{"e1", "e2", "e1"} {
		fresh, err := b.st.PushWebhook(b.ctx, "c1", "app", id, []byte(id))
		require.NoError(t, err)
		require.Equal(t, i < 2, fresh, "event %s", id)
	}
	head, ok, err := b.st.WebhookHead(b.ctx, "c1", "app")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "e1", string(head))
	require.NoError(t, b.st.PopWebhook(b.ctx, "c1", "app", []byte("e2")), "not the head: nothing happens")
	head, _, _ = b.st.WebhookHead(b.ctx, "c1", "app")
	require.Equal(t, "e1", string(head))
	require.NoError(t, b.st.ExpireWebhook(b.ctx, "c1", "app", "e1", []byte("e1")))
	dead, err := b.st.WebhookExpired(b.ctx, "c1", "app", "e1")
	require.NoError(t, err)
	require.True(t, dead)
	head, _, _ = b.st.WebhookHead(b.ctx, "c1", "app")
	require.Equal(t, "e2", string(head))
	n, err := b.st.DropWebhooks(b.ctx, "c1", "app")
	require.NoError(t, err)
	require.EqualValues(t, 1, n)
	_, ok, err = b.st.WebhookHead(b.ctx, "c1", "app")
	require.NoError(t, err)
	require.False(t, ok)

	off, _, err := b.st.WebhookDisabled(b.ctx, "app:abc")
	require.NoError(t, err)
	require.False(t, off)
	require.NoError(t, b.st.DisableWebhook(b.ctx, "app:abc", "410 Gone"))
	off, why, err := b.st.WebhookDisabled(b.ctx, "app:abc")
	require.NoError(t, err)
	require.True(t, off)
	require.Equal(t, "410 Gone", why)
	require.NoError(t, b.st.EnableWebhook(b.ctx, "app:abc"))
	off, _, _ = b.st.WebhookDisabled(b.ctx, "app:abc")
	require.False(t, off)
}
