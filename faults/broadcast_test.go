package faults_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBroadcastKill9: three worker processes run a broadcast to 3,000
// customers, 30% of them opted out of its topic; every worker is killed
// with kill -9 while the audience is being walked, and started again. Every other
// customer receives exactly one email, the opted-out none, and the
// broadcast's counts agree with the SMTP server (a copy made in the
// delivery's own kill -9 window, at most 0.1%, is allowed and reported).
func TestBroadcastKill9(t *testing.T) {
	t.Parallel()
	const n = 3000
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "everysec")
	r := newRig(t, "bcast", []string{"HERALD_REDIS_URL=" + rs.URL()}, asynq.RedisClientOpt{Addr: rs.Addr})
	r.addCustomers(customerSpec{n: n})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	optedOut := map[string]bool{}
	for i := 0; i < n; i += 10 {
		for j := i; j < i+3; j++ {
			_, err := r.client.SetPreferences(ctx, custID(j), preferences.Patch{Topics: map[string]bool{"product-updates": false}})
			require.NoError(t, err)
			optedOut[custEmail(j)] = true
		}
	}
	r.startWorkers(3)
	r.start = time.Now()
	info, created, err := r.client.CreateBroadcast(ctx, client.Broadcast{
		ID: "kill9", Template: "note", Topic: "product-updates", Data: map[string]any{"tag": "zq-bcast-all"},
		Audience: client.Audience{Filter: "true"}, Channels: []herald.Channel{herald.ChannelEmail},
	})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, int64(n), info.Counts.Matched)

	// kill -9 every worker while the walk is under way (once emails are
	// going out, or with most of the audience queued),
	// then start them again.
	var mid client.BroadcastInfo
	for {
		mid, err = r.client.Broadcast(ctx, "kill9")
		require.NoError(t, err)
		require.Less(t, mid.Counts.Queued, int64(n), "the walk ended before it could be killed")
		if r.smtp.Count() >= 100 || mid.Counts.Queued >= 2500 {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	for i := range r.workers {
		r.kill(i, syscall.SIGKILL)
	}
	mid, err = r.client.Broadcast(ctx, "kill9")
	require.NoError(t, err)
	// Every worker is dead: what the SMTP server holds now went out before
	// the kill (or was in flight at it).
	// (A message whose last bytes were on the wire is taken moments after
	// its sender died: wait until the count holds still.)
	killedAt := r.smtp.Count()
	for stable := 0; stable < 5; {
		time.Sleep(20 * time.Millisecond)
		if c := r.smtp.Count(); c != killedAt {
			killedAt, stable = c, 0
		} else {
			stable++
		}
	}
	t.Logf("kill -9 of every worker with %d of %d customers queued, %d emails sent", mid.Counts.Queued, n, killedAt)
	for i := range r.workers {
		r.restart(i)
	}

	eligible := n - len(optedOut)
	var got client.BroadcastInfo
	if !assert.Eventually(t, func() bool {
		got, err = r.client.Broadcast(ctx, "kill9")
		return err == nil && got.Status == "done" && r.smtp.Count() >= eligible && r.idle()
	}, 3*time.Minute, 100*time.Millisecond, "the broadcast resumes and reaches everyone") {
		t.Fatalf("emails %d of %d; %+v", r.smtp.Count(), eligible, got)
	}

	per := map[string]int{}
	for _, m := range r.smtp.Messages() {
		per[m.To[0]]++
	}
	before := map[string]bool{}
	for _, m := range r.smtp.Messages()[:killedAt] {
		before[m.To[0]] = true
	}
	dups, missing := 0, 0
	for i := range n {
		want := 1
		if optedOut[custEmail(i)] {
			want = 0
		}
		switch {
		case per[custEmail(i)] > want:
			dups++
			// The one duplicate window of every delivery: a worker killed
			// between the SMTP server's 250 and the ledger write. So a
			// repeated email's first copy went out before the kill; one
			// the resumed walk queued twice would not have.
			assert.True(t, before[custEmail(i)], "%s got %d emails, none before the kill: the resumed fan-out sent it twice", custEmail(i), per[custEmail(i)])
		case per[custEmail(i)] < want:
			missing++
		}
	}
	got, err = r.client.Broadcast(ctx, "kill9")
	require.NoError(t, err)
	fmt.Printf("broadcast-kill9  customers %d, eligible %d, emails %d, duplicates %d, missing %d, counts sent %d suppressed %d queued %d, %.1f s\n",
		n, eligible, r.smtp.Count(), dups, missing, got.Counts.Sent["email"], got.Counts.Suppressed["opted_out_topic"], got.Counts.Queued, time.Since(r.start).Seconds())
	require.Zero(t, missing)
	// kill -9 between the SMTP server's 250 and the ledger write is the
	// one duplicate window of every delivery (README, Delivery guarantee):
	// at most the sends in flight at the kill, one per worker slot (three
	// workers of HERALD_WORKER_CONCURRENCY=10), each checked above to have
	// gone out before the kill. The broadcast itself adds none.
	require.LessOrEqual(t, dups, 3*10, "duplicates beyond the sends that can be in flight at a kill")
	extra := 0
	for _, c := range per {
		extra += max(c-1, 0)
	}
	// A send is counted in the write that records it in the ledger, so no
	// kill leaves the count short of what was recorded, nor over it.
	short := int64(r.smtp.Count()-extra) - got.Counts.Sent["email"]
	require.Zero(t, short, "sent count matches the SMTP server's (less its duplicates)")
	// A message task killed after recording its suppression and before
	// asynq took it as done runs again (at-least-once), finds the record
	// and does not make it again; the count is written with the record.
	require.Equal(t, int64(len(optedOut)), got.Counts.Suppressed["opted_out_topic"], "suppressed count")
	require.Equal(t, int64(n), got.Counts.Queued)
}
