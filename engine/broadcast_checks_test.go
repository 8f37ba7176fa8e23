package engine_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// TestBroadcastRefusesDataItsTemplateCannotUse: a broadcast's data is the
// same for every customer, so data that cannot fill its template (in any
// locale) is refused when the broadcast is created, and in its dry run,
// naming the template, the locale and what is missing. Attributes the
// customers lack are theirs, not the data's: they are no reason to refuse.
func TestBroadcastRefusesDataItsTemplateCannotUse(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/broadcast")
	ctx := context.Background()
	// Neither has the first_name the subject reads.
	b.customer(t, herald.Customer{ID: "c1", Email: "c1@example.com", Attributes: map[string]any{"plan": "trial"}})
	b.customer(t, herald.Customer{ID: "c2", Email: "c2@example.com", Locale: "de", Attributes: map[string]any{"plan": "trial"}})
	req := engine.Broadcast{ID: "bc1", Template: "upgrade-offer", Topic: "product-updates", Audience: engine.Audience{Filter: "true"}}

	for _, tt := range []struct {
		name    string
		data    map[string]any
		want    []string
		notWant string
	}{
		{"no data", map[string]any{}, []string{
			`data: template upgrade-offer (locale en): upgrade-offer/en.md:4: missing key "trial_ends_at" at <.data.trial_ends_at>`,
			`data: template upgrade-offer (locale de): upgrade-offer/de.md:4: missing key "trial_ends_at" at <.data.trial_ends_at>`,
		}, "first_name"},
		{"a key one locale needs", map[string]any{"trial_ends_at": "2027-03-01"}, []string{
			`data: template upgrade-offer (locale de): upgrade-offer/de.md:4: missing key "discount" at <.data.discount>`,
		}, "locale en"},
		{"a value a helper refuses", map[string]any{"trial_ends_at": "soon", "discount": "20%"}, []string{
			`data: template upgrade-offer (locale en): upgrade-offer/en.md:4: at <date .data.trial_ends_at>: error calling date: "soon" is not`,
		}, "first_name"},
	} {
		for _, dry := range []bool{true, false} {
			r := req
			r.Data, r.DryRun = tt.data, dry
			_, _, err := b.e.CreateBroadcast(ctx, r, "test")
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "%s (dry run %v): %v", tt.name, dry, err)
			for _, w := range tt.want {
				require.Contains(t, herald.ErrorMessage(err), w, "%s (dry run %v)", tt.name, dry)
			}
			require.NotContains(t, herald.ErrorMessage(err), tt.notWant, "%s (dry run %v)", tt.name, dry)
		}
	}
	_, err := b.e.Broadcast(ctx, "bc1")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "a refused broadcast is not created")

	req.Data = map[string]any{"trial_ends_at": "2027-03-01", "discount": "20%"}
	_, created, err := b.e.CreateBroadcast(ctx, req, "test")
	require.NoError(t, err, "data that fills the template; the missing first_name is each customer's")
	require.True(t, created)
}

// TestBroadcastAtLocalTimeSaysWhatWaitsAndCancelCountsAtOnce: a broadcast
// at each customer's 09:00 says how many messages wait for their local
// time and when the next and the last go out; cancelling it (twice at once,
// then again) deletes those messages from the queue and counts them as
// cancelled there and then.
func TestBroadcastAtLocalTimeSaysWhatWaitsAndCancelCountsAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	// Six hours from now in Tokyo: 9h15 in Kathmandu, 19 or 20 hours in
	// New York; none comes up during the test.
	at := time.Now().In(tokyo).Add(6 * time.Hour).Format("15:04")
	ids := []string{"tokyo", "tokyo2", "kathmandu", "newyork"}
	for i, z := range []string{"Asia/Tokyo", "Asia/Tokyo", "Asia/Kathmandu", "America/New_York"} {
		b.customer(t, herald.Customer{ID: ids[i], Email: ids[i] + "@example.com", Timezone: z})
	}
	_, created, err := b.e.CreateBroadcast(ctx, engine.Broadcast{
		ID: "morning", Template: "hello", Topic: "product-updates", Data: map[string]any{"plan": "Pro"},
		Audience: engine.Audience{CustomerIDs: ids}, LocalTime: at,
	}, "test")
	require.NoError(t, err)
	require.True(t, created)
	eventually(t, func() bool {
		got, err := b.e.Broadcast(ctx, "morning")
		return err == nil && got.Status == "done" && got.Counts.Queued == 4
	}, "the fan-out queues all four")

	tasks, err := b.insp.ListScheduledTasks("bulk")
	require.NoError(t, err)
	require.Len(t, tasks, 4)
	first, last := tasks[0].NextProcessAt, tasks[0].NextProcessAt
	for _, task := range tasks {
		if task.NextProcessAt.Before(first) {
			first = task.NextProcessAt
		}
		if task.NextProcessAt.After(last) {
			last = task.NextProcessAt
		}
	}
	view, err := b.e.BroadcastView(ctx, "morning")
	require.NoError(t, err)
	require.NotNil(t, view.Waiting, "%+v", view)
	require.Equal(t, int64(4), view.Waiting.Messages)
	require.True(t, view.Waiting.Next.Equal(first), "next %s, first task at %s", view.Waiting.Next, first)
	require.True(t, view.Waiting.Last.Equal(last), "last %s, last task at %s", view.Waiting.Last, last)
	raw, err := json.Marshal(view)
	require.NoError(t, err)
	require.Contains(t, string(raw), `"waiting":{"messages":4,"next_at":"`)

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = b.e.CancelBroadcast(ctx, "morning")
		}()
	}
	wg.Wait()
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	got, err := b.e.CancelBroadcast(ctx, "morning")
	require.NoError(t, err)
	require.Equal(t, "cancelled", got.Status)
	require.Equal(t, int64(4), got.Counts.Cancelled, "counted once each, right after the cancel")
	for _, q := range []string{"critical", "default", "bulk"} {
		tasks, err := b.insp.ListScheduledTasks(q)
		if err != nil {
			require.ErrorIs(t, err, asynq.ErrQueueNotFound)
		}
		require.Empty(t, tasks, "queue %s", q)
	}
	view, err = b.e.BroadcastView(ctx, "morning")
	require.NoError(t, err)
	require.Nil(t, view.Waiting, "nothing waits any more")
	require.Zero(t, b.smtp.Count())
}
