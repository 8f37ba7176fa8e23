package engine_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/stretchr/testify/require"
)

// TestNoMessageToAnyoneWhoSaidNo sends 10,000 messages to 1,000 customers
// with random preferences and checks every message the providers received
// against what the customer chose: zero violations, and nothing the policy
// allows is lost or sent twice.
func TestNoMessageToAnyoneWhoSaidNo(t *testing.T) {
	t.Parallel()
	const customers = 1000
	messages := 10000
	if v, err := strconv.Atoi(os.Getenv("HERALD_CONSENT_N")); err == nil && v > 0 {
		messages = v
	}
	b := setupWith(t, 40, "testdata/consent")
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(42, 7))
	now := time.Now()
	actor := preferences.Actor{Kind: "api", Name: "test"}

	type who struct {
		c          herald.Customer
		prefs      herald.Preferences
		suppressed bool
	}
	people := make([]who, customers)
	bySlack := map[string]int{}
	for i := range people {
		c := herald.Customer{ID: fmt.Sprintf("c%d", i), Email: fmt.Sprintf("c%d@example.com", i), Timezone: []string{"Asia/Bangkok", "America/New_York", "Europe/Warsaw", "Pacific/Auckland"}[i%4],
			Attributes: map[string]any{"first_name": "Ada"}}
		if rng.IntN(10) < 8 {
			c.SlackUserID = fmt.Sprintf("U%06d", i)
			b.slack.AddUser(c.Email, c.SlackUserID)
			bySlack[c.SlackUserID] = i
		}
		b.customer(t, c)
		var p preferences.Patch
		if rng.IntN(5) == 0 {
			p.Channels = map[herald.Channel]bool{herald.ChannelEmail: false}
		}
		if rng.IntN(5) == 0 {
			if p.Channels == nil {
				p.Channels = map[herald.Channel]bool{}
			}
			p.Channels[herald.ChannelSlack] = false
		}
		p.Topics = map[string]bool{}
		for _, topic := range []string{"onboarding", "product-updates"} {
			if rng.IntN(4) == 0 {
				p.Topics[topic] = false
			}
		}
		if rng.IntN(5) == 0 {
			p.Topics["newsletter"] = true // opt-in topic
		}
		if rng.IntN(10) == 0 {
			paused := true
			p.Paused = &paused
		}
		if rng.IntN(7) == 0 { // quiet hours around now in the customer's zone
			local := now.In(c.Location())
			p.QuietHours = &herald.QuietHours{Start: local.Add(-time.Hour).Format("15:04"), End: local.Add(2 * time.Hour).Format("15:04")}
		} else if rng.IntN(3) == 0 { // quiet hours elsewhere in the day
			local := now.In(c.Location())
			p.QuietHours = &herald.QuietHours{Start: local.Add(4 * time.Hour).Format("15:04"), End: local.Add(6 * time.Hour).Format("15:04")}
		}
		prefs, err := b.e.SetPreferences(ctx, c.ID, p, actor, "import")
		require.NoError(t, err)
		sup := rng.IntN(20) == 0
		if sup {
			require.NoError(t, b.e.Preferences().Suppress(ctx, herald.ChannelEmail, c.Email, "smtp 550 5.1.1"))
		}
		people[i] = who{c: c, prefs: prefs, suppressed: sup}
	}

	topicNames := []string{"onboarding", "product-updates", "newsletter", "billing"}
	type sent struct {
		customer, topic string
		chans           []herald.Channel
	}
	asked := make([]sent, messages)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for n := range messages {
		i, topic := rng.IntN(customers), topicNames[rng.IntN(len(topicNames))]
		mode := []string{"first", "all"}[rng.IntN(2)]
		chans := [][]herald.Channel{{herald.ChannelEmail, herald.ChannelSlack}, {herald.ChannelSlack, herald.ChannelEmail}, {herald.ChannelEmail}}[rng.IntN(3)]
		asked[n] = sent{people[i].c.ID, topic, chans}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_, err := b.e.Send(ctx, wire.Message{ID: "n" + strconv.Itoa(n), CustomerID: people[i].c.ID, Template: "note", Topic: topic, Mode: mode, Channels: chans,
				Data: map[string]any{"topic": topic, "n": n}})
			require.NoError(t, err)
		}()
	}
	wg.Wait()

	// Wait until nothing is pending, active or retrying (deferred messages
	// stay scheduled for the end of their quiet hours).
	require.Eventually(t, func() bool {
		for _, q := range wire.Queues {
			info, err := b.insp.GetQueueInfo(q)
			if err != nil {
				continue
			}
			if info.Pending+info.Active+info.Retry > 0 {
				return false
			}
		}
		return true
	}, 10*time.Minute, 200*time.Millisecond)

	quiet := func(p herald.Preferences, c herald.Customer) bool {
		if p.QuietHours == nil {
			return false
		}
		in, _ := preferences.NextAllowed(*p.QuietHours, c.Location(), time.Now())
		return in
	}
	topics := topics()
	violation := func(w who, ch herald.Channel, topic string) string {
		t := topics[topic]
		switch {
		case !w.prefs.ChannelOn(ch):
			return "channel " + string(ch) + " is off"
		case ch == herald.ChannelEmail && w.suppressed:
			return "address suppressed"
		case !t.Required && w.prefs.Paused:
			return "paused"
		case !t.Required && !preferences.TopicOn(t, w.prefs):
			return "opted out of " + topic
		case quiet(w.prefs, w.c):
			return "quiet hours"
		}
		return ""
	}
	subjectRe := regexp.MustCompile(`topic=([a-z-]+) n=(\d+)`)
	var violations []string
	received := map[string]int{} // message n -> deliveries
	for _, m := range b.smtp.Messages() {
		sm := subjectRe.FindStringSubmatch(string(m.Data))
		require.Len(t, sm, 3)
		i, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(m.To[0], "c"), "@example.com"))
		if v := violation(people[i], herald.ChannelEmail, sm[1]); v != "" {
			violations = append(violations, fmt.Sprintf("email to c%d, %s: %s", i, sm[1], v))
		}
		received["email:"+sm[2]]++
	}
	for _, p := range b.slack.Posts() {
		sm := subjectRe.FindStringSubmatch(p.Text)
		require.Len(t, sm, 3)
		i := bySlack[p.User]
		if v := violation(people[i], herald.ChannelSlack, sm[1]); v != "" {
			violations = append(violations, fmt.Sprintf("slack to c%d, %s: %s", i, sm[1], v))
		}
		received["slack:"+sm[2]]++
	}
	require.Empty(t, violations, "nobody gets a message they said no to")
	dups := 0
	for k, n := range received {
		if n > 1 {
			dups++
			t.Logf("duplicate %s x%d", k, n)
		}
	}
	require.Zero(t, dups, "nothing is sent twice")

	// Nothing the policy allows is lost: every message with an allowed
	// channel (and not deferred) reached at least one channel.
	policy := preferences.Policy{Topics: topics}
	lost, visible := 0, 0
	failed := map[string]map[string]bool{}
	for n, a := range asked {
		idx, _ := strconv.Atoi(strings.TrimPrefix(a.customer, "c"))
		w := people[idx]
		dec := policy.Decide(preferences.Input{Customer: w.c, Prefs: w.prefs, Topic: a.topic, Candidates: a.chans, Now: time.Now(),
			Suppressed: map[herald.Channel]bool{herald.ChannelEmail: w.suppressed}})
		if dec.Reason != "" {
			continue
		}
		if received["email:"+strconv.Itoa(n)]+received["slack:"+strconv.Itoa(n)] > 0 {
			continue
		}
		// Not delivered: it must have failed for good in plain sight (a
		// customer without a Slack account reached only on Slack).
		if failed[a.customer] == nil {
			failed[a.customer] = map[string]bool{}
			tl, err := b.e.Store().Timeline(ctx, a.customer, 0)
			require.NoError(t, err)
			for _, e := range tl {
				if e.Outcome == herald.OutcomeFailedPermanent {
					failed[a.customer][e.Ref] = true
				}
			}
		}
		if failed[a.customer]["n"+strconv.Itoa(n)] {
			visible++
			continue
		}
		lost++
		t.Logf("lost n%d (%s, %v) to %s: allowed %v", n, a.topic, a.chans, a.customer, dec.Channels)
	}
	require.Zero(t, lost, "every allowed message is delivered or visibly failed")
	total := len(b.smtp.Messages()) + len(b.slack.Posts())
	require.Greater(t, total, messages/4, "a real share of messages is delivered")
	t.Logf("%d messages to %d customers: %d deliveries, %d failed for good (no Slack account), 0 violations, 0 duplicates, 0 lost", messages, customers, total, visible)
}
