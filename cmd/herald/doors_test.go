package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/preferences"
)

var (
	consentRef   = regexp.MustCompile(`consent entry cns_[0-9a-f]+ at \S+`)
	waitingUntil = regexp.MustCompile(`waiting until \d{4}-\d\d-\d\d \d\d:\d\d UTC`)
	inputRe      = regexp.MustCompile(`<input [^>]*name="([^"]+)"[^>]*>`)
	valueRe      = regexp.MustCompile(`value="([^"]*)"`)
)

// sourceOf folds where a change came from: the door, not the change.
func sourceOf(s string) string {
	if s == preferences.SourcePreferencePage {
		return preferences.SourceAPI
	}
	return s
}

// door is one way into herald: each operation means the same through all.
type door struct {
	name string
	// create makes the customer with an email, a locale and plan=free.
	create func(t *testing.T, id string)
	// merge sets plan=pro and keeps every other field.
	merge func(t *testing.T, id string)
	// optOut leaves product-updates and turns email off.
	optOut func(t *testing.T, id string)
	// dropEmail removes the email address.
	dropEmail func(t *testing.T, id string)
	// event sends trial.started with trialData (what the trial-onboarding
	// journey's welcome reads).
	event func(t *testing.T, id string)
	// actors are how the door's changes are signed on the timeline,
	// longest first.
	actors []string
}

// TestEveryDoorWritesTheSame runs each customer and preference operation
// through the HTTP API, the Go client and the CLI (and the preference change
// through the customer's preference page) and compares what each left in
// Redis: profile, preferences, consent log and timeline, with only the
// actor's name and the change's source differing.
func TestEveryDoorWritesTheSame(t *testing.T) {
	rs := redistest.Start(t)
	redisURL := rs.URL() + "/0"
	t.Setenv("HERALD_REDIS_URL", redisURL)
	d := startDevWith(t, func(c *config.Config) {
		c.Redis.URL = config.Secret(redisURL)
	})
	base := "http://" + d.Main.Addr()
	call := func(t *testing.T, method, path, ctype, body string, want int) string {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+DevToken)
		req.Header.Set("Content-Type", ctype)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, want, resp.StatusCode, "%s %s: %s", method, path, b)
		return string(b)
	}
	cl, err := client.New(redisURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close() })
	cl.Actor = "app"
	ctx := context.Background()
	cli := func(t *testing.T, args ...string) {
		t.Helper()
		_, stderr, err := runCLI(t, args...)
		require.NoError(t, err, stderr)
	}

	doors := []door{
		{
			name:   "http",
			actors: []string{"api dev", "dev"},
			create: func(t *testing.T, id string) {
				call(t, "PUT", "/v1/customers/"+id, "application/json", `{"email":"ada@example.com","locale":"en","attributes":{"plan":"free"}}`, http.StatusCreated)
			},
			merge: func(t *testing.T, id string) {
				call(t, "PATCH", "/v1/customers/"+id, "application/merge-patch+json", `{"attributes":{"plan":"pro"}}`, http.StatusOK)
			},
			optOut: func(t *testing.T, id string) {
				call(t, "PATCH", "/v1/customers/"+id+"/preferences", "application/json", `{"topics":{"product-updates":false},"channels":{"email":false}}`, http.StatusOK)
			},
			dropEmail: func(t *testing.T, id string) {
				call(t, "PATCH", "/v1/customers/"+id, "application/merge-patch+json", `{"email":null}`, http.StatusOK)
			},
			event: func(t *testing.T, id string) {
				call(t, "POST", "/v1/events", "application/json", `{"customer_id":"`+id+`","name":"trial.started","data":`+trialData+`}`, http.StatusAccepted)
			},
		},
		{
			name:   "client",
			actors: []string{"client app", "app"},
			create: func(t *testing.T, id string) {
				_, err := cl.UpsertCustomer(ctx, herald.Customer{ID: id, Email: "ada@example.com", Locale: "en", Attributes: map[string]any{"plan": "free"}})
				require.NoError(t, err)
			},
			merge: func(t *testing.T, id string) {
				_, err := cl.PatchCustomer(ctx, id, map[string]any{"attributes": map[string]any{"plan": "pro"}})
				require.NoError(t, err)
			},
			optOut: func(t *testing.T, id string) {
				_, err := cl.SetPreferences(ctx, id, preferences.Patch{Topics: map[string]bool{"product-updates": false}, Channels: map[herald.Channel]bool{herald.ChannelEmail: false}})
				require.NoError(t, err)
			},
			dropEmail: func(t *testing.T, id string) {
				_, err := cl.PatchCustomer(ctx, id, map[string]any{"email": nil})
				require.NoError(t, err)
			},
			event: func(t *testing.T, id string) {
				var data map[string]any
				require.NoError(t, json.Unmarshal([]byte(trialData), &data))
				_, err := cl.Event(ctx, id, "trial.started", data)
				require.NoError(t, err)
			},
		},
		{
			name:   "cli",
			actors: []string{"cli"},
			create: func(t *testing.T, id string) {
				cli(t, "customer", id, "--email", "ada@example.com", "--locale", "en", "--attr", "plan=free")
			},
			merge: func(t *testing.T, id string) {
				cli(t, "customer", id, "--attr", "plan=pro")
			},
			optOut: func(t *testing.T, id string) {
				cli(t, "customer", "prefs", id, "--set", `{"topics":{"product-updates":false},"channels":{"email":false}}`)
			},
			dropEmail: func(t *testing.T, id string) {
				cli(t, "customer", id, "--unset", "email")
			},
			event: func(t *testing.T, id string) {
				cli(t, "event", id, "trial.started", "--data", trialData)
			},
		},
	}

	st := redisstore.New(rs.Client(), nil)
	prefs := redisstore.NewPrefs(rs.Client(), nil)

	// The preference centre changes preferences only: the customer's own
	// page, as a browser posts it (every box, the form's check value).
	centreOptOut := func(t *testing.T, id string) {
		t.Helper()
		c, err := st.Customer(ctx, id)
		require.NoError(t, err)
		token := preferences.Sign([]byte(d.Main.Config.SigningKey.Reveal()), preferences.Claims{
			CustomerID: id, Purpose: preferences.PurposePreferences, Expires: time.Now().Add(time.Hour), Epoch: preferences.EpochOf(c),
		})
		page := base + "/preferences?token=" + url.QueryEscape(token)
		resp, err := http.Get(page)
		require.NoError(t, err)
		html, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", html)
		form := url.Values{"token": {token}}
		for _, m := range inputRe.FindAllStringSubmatch(string(html), -1) {
			tag, name := m[0], m[1]
			switch {
			case strings.Contains(tag, `type="hidden"`):
				form.Set(name, valueRe.FindStringSubmatch(tag)[1])
			case strings.Contains(tag, "checked") && !strings.Contains(tag, "disabled") &&
				name != "topic.product-updates" && name != "channel.email":
				form.Set(name, "on")
			}
		}
		req, _ := http.NewRequest("POST", page, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", base)
		resp, err = http.DefaultClient.Do(req)
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	}
	http0 := doors[0]
	doors = append(doors, door{
		name: "centre", actors: []string{"api dev", "dev"},
		create: http0.create, merge: http0.merge, optOut: centreOptOut, dropEmail: http0.dropEmail, event: http0.event,
	})
	type state struct {
		Customer herald.Customer
		Prefs    herald.Preferences
		Consent  []string
		Timeline []string
	}
	snapshot := func(t *testing.T, id string, actors []string) state {
		t.Helper()
		var s state
		var err error
		s.Customer, err = st.Customer(ctx, id)
		require.NoError(t, err)
		s.Customer.ID, s.Customer.CreatedAt, s.Customer.UpdatedAt = "", time.Time{}, time.Time{}
		s.Prefs, err = prefs.Get(ctx, id)
		require.NoError(t, err)
		s.Prefs.UpdatedAt = time.Time{}
		log, err := prefs.Consent(ctx, id)
		require.NoError(t, err)
		for _, e := range log {
			b, _ := json.Marshal([]any{e.Field, e.From, e.To, sourceOf(e.Source)})
			s.Consent = append(s.Consent, string(b))
		}
		sort.Strings(s.Consent)
		tl, err := st.Timeline(ctx, id, 0)
		require.NoError(t, err)
		for _, e := range tl {
			line := consentRef.ReplaceAllString(e.Summary, "consent entry CONSENT")
			// Doors run one after another: a wait may end a minute apart.
			line = waitingUntil.ReplaceAllString(line, "waiting until TIME")
			line = strings.ReplaceAll(line, "by customer ("+preferences.SourcePreferencePage+")", "by ACTOR (api)")
			line = strings.ReplaceAll(line, id, "ID")
			for _, a := range actors {
				line = strings.ReplaceAll(line, " "+a, " ACTOR")
			}
			s.Timeline = append(s.Timeline, e.Kind+": "+line)
		}
		sort.Strings(s.Timeline)
		return s
	}

	got := map[string]state{}
	for _, dr := range doors {
		id := "door-" + dr.name
		dr.create(t, id)
		dr.merge(t, id)
		c, err := st.Customer(ctx, id)
		require.NoError(t, err)
		require.Equal(t, "ada@example.com", c.Email, "%s: a merge keeps the fields it does not name", dr.name)
		require.Equal(t, "pro", c.Attributes["plan"], dr.name)
		dr.optOut(t, id)
		dr.dropEmail(t, id)
		dr.event(t, id)
		// The event's line is written by the worker.
		require.Eventually(t, func() bool {
			tl, _ := st.Timeline(ctx, id, 0)
			for _, e := range tl {
				if e.Kind == herald.KindEvent && strings.HasPrefix(e.Summary, "event trial.started") {
					return true
				}
			}
			return false
		}, 10*time.Second, 20*time.Millisecond, dr.name)
		got[dr.name] = snapshot(t, id, dr.actors)
	}
	want := got["http"]
	require.Contains(t, want.Timeline, "customer: customer created by ACTOR")
	require.Contains(t, want.Timeline, "customer: profile changed by ACTOR: attributes.plan")
	require.Contains(t, want.Timeline, "customer: no email address any more (removed by ACTOR): email messages cannot reach the customer")
	require.Contains(t, want.Timeline, "consent: topics.product-updates changed from unset to false by ACTOR (api)")
	require.Empty(t, want.Customer.Email)
	require.False(t, want.Prefs.ChannelOn(herald.ChannelEmail))
	for name, s := range got {
		require.Equal(t, want, s, "door %s wrote something else than the HTTP API", name)
	}
	// What each door refuses, it refuses the same way.
	_, err = cl.PatchCustomer(ctx, "door-client", map[string]any{"email": "not an address"})
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
	call(t, "PATCH", "/v1/customers/door-http", "application/merge-patch+json", `{"email":"not an address"}`, http.StatusUnprocessableEntity)
	_, stderr, err := runCLI(t, "customer", "door-cli", "--email", "not an address")
	require.Error(t, err, stderr)
	require.Contains(t, err.Error(), "email: not an email address")
	big := `{"blob":"` + strings.Repeat("x", 40<<10) + `"}`
	call(t, "POST", "/v1/events", "application/json", `{"customer_id":"door-http","name":"trial.started","data":`+big+`}`, http.StatusUnprocessableEntity)
	_, err = cl.Event(ctx, "door-client", "trial.started", map[string]any{"blob": strings.Repeat("x", 40<<10)})
	require.ErrorContains(t, err, "the limit is 32768 bytes")
	// An event whose journey's first send cannot render its data: every
	// door names the workflow, the step and the keys.
	const lacks = `data: workflow "trial-onboarding" starts with step "welcome", whose template "welcome" reads keys "dashboard_url", "trial_days"`
	body := call(t, "POST", "/v1/events", "application/json", `{"customer_id":"door-http","name":"trial.started","data":{"plan":"pro"}}`, http.StatusUnprocessableEntity)
	require.Contains(t, body, strings.ReplaceAll(lacks, `"`, `\"`))
	_, err = cl.Event(ctx, "door-client", "trial.started", map[string]any{"plan": "pro"})
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
	require.ErrorContains(t, err, lacks)
	_, stderr, err = runCLI(t, "event", "door-cli", "trial.started", "--data", `{"plan":"pro"}`)
	require.Error(t, err, stderr)
	require.Contains(t, err.Error()+stderr, lacks)
}

// trialData is what the example trial-onboarding journey's welcome reads.
const trialData = `{"plan":"pro","trial_days":14,"dashboard_url":"https://app.lumen.example/dashboard"}`
