package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/stretchr/testify/require"
)

func (r resp) broadcast(t *testing.T) engine.BroadcastInfo {
	t.Helper()
	var info engine.BroadcastInfo
	require.NoError(t, json.Unmarshal(r.body, &info), "body: %s", r.body)
	return info
}

func TestBroadcastRefusesBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *httpapi.Config) { c.MaxBody = 4 << 20 })
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada","plan":"pro"}}`)
	ids := make([]string, engine.MaxBroadcastIDs+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("c%d", i)
	}
	tooMany, _ := json.Marshal(map[string]any{"id": "big", "template": "hello", "topic": "onboarding", "audience": map[string]any{"customer_ids": ids}})
	for _, tt := range []struct{ name, body, msg string }{
		{"unknown template", `{"id":"x","template":"nope","topic":"onboarding","audience":{"filter":"true"}}`, `template: unknown template "nope"`},
		{"unknown topic", `{"id":"x","template":"hello","topic":"nope","audience":{"filter":"true"}}`, `topic: unknown topic "nope"`},
		{"unknown workflow", `{"id":"x","workflow":"nope","audience":{"filter":"true"}}`, `workflow: unknown workflow "nope"`},
		{"filter does not compile", `{"id":"x","template":"hello","topic":"onboarding","audience":{"filter":"customer.plan == "}}`, "audience.filter: unexpected token EOF (column"},
		{"filter names what is not there", `{"id":"x","template":"hello","topic":"onboarding","audience":{"filter":"plan == \"pro\""}}`, "unknown name plan (column 1)"},
		{"local_time not HH:MM", `{"id":"x","template":"hello","topic":"onboarding","audience":{"filter":"true"},"local_time":"9am"}`, `local_time "9am": want HH:MM`},
		{"too many IDs", string(tooMany), "audience.customer_ids: 100001 IDs, at most 100000"},
		{"no audience", `{"id":"x","template":"hello","topic":"onboarding"}`, "audience: give a filter, customer_ids or both"},
		{"bad id", `{"id":"a_b","template":"hello","topic":"onboarding","audience":{"filter":"true"}}`, `broadcast id "a_b"`},
		{"template and workflow", `{"id":"x","template":"hello","workflow":"w","topic":"onboarding","audience":{"filter":"true"}}`, "give one, not both"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: each case proves on the shared Redis that it
			// wrote nothing.
			before := b.snapshot(t)
			r := b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: tt.body})
			require.Equal(t, http.StatusUnprocessableEntity, r.status, "body: %s", r.body)
			_, msg := r.apiError(t)
			require.Contains(t, msg, tt.msg)
			require.Equal(t, before, b.snapshot(t), "a refused broadcast writes nothing")
		})
	}
}

func TestBroadcastOverHTTP(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, plan := range []string{"pro", "free", "pro", "pro"} {
		b.putCustomer(t, fmt.Sprintf("c%d", i), fmt.Sprintf(`{"email":"c%d@example.com","locale":"ja-JP","attributes":{"first_name":"Ada","plan":%q}}`, i, plan))
	}
	r := b.do(t, req{method: http.MethodPatch, path: "/v1/customers/c3/preferences", body: `{"topics":{"onboarding":false}}`})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	// Customers page through with the same filter.
	filter := url.QueryEscape(`customer.plan == "pro" && customer.topics.onboarding`)
	r = b.do(t, req{path: "/v1/customers?limit=1&filter=" + filter})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var page engine.CustomerPage
	require.NoError(t, json.Unmarshal(r.body, &page))
	require.Len(t, page.Customers, 1)
	require.Equal(t, "c0", page.Customers[0].ID)
	r = b.do(t, req{path: "/v1/customers?limit=5&filter=" + filter + "&cursor=" + page.Next})
	page = engine.CustomerPage{}
	require.NoError(t, json.Unmarshal(r.body, &page))
	require.Len(t, page.Customers, 1)
	require.Equal(t, "c2", page.Customers[0].ID)
	require.Empty(t, page.Next, "the last page")
	r = b.do(t, req{path: "/v1/customers?filter=" + url.QueryEscape("customer.plan ==")})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	_, msg := r.apiError(t)
	require.Contains(t, msg, "column")

	body := `{"id":"spring-launch","template":"hello","topic":"onboarding","data":{"plan":"Pro"},
		"audience":{"filter":"customer.plan == \"pro\" && customer.locale startsWith \"ja\""},"channels":["email"]}`
	dry := strings.Replace(body, `"channels"`, `"dry_run":true,"channels"`, 1)
	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: dry})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	info := r.broadcast(t)
	require.Equal(t, "dry_run", info.Status)
	require.Equal(t, int64(3), info.Counts.Matched)
	require.Equal(t, []string{"c0", "c2", "c3"}, info.Sample)
	require.Equal(t, http.StatusNotFound, b.do(t, req{path: "/v1/broadcasts/spring-launch"}).status, "a dry run creates nothing")

	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: body})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	require.Equal(t, int64(3), r.broadcast(t).Counts.Matched)
	again := b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: strings.ReplaceAll(body, "\n\t\t", " ")})
	require.Equal(t, http.StatusOK, again.status, "the same broadcast again: %s", again.body)
	other := b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: strings.Replace(body, `"Pro"`, `"Team"`, 1)})
	require.Equal(t, http.StatusConflict, other.status, "%s", other.body)

	require.Eventually(t, func() bool {
		info := b.do(t, req{path: "/v1/broadcasts/spring-launch"}).broadcast(t)
		return info.Status == "done" && info.Counts.Sent["email"] == 2 && info.Counts.Suppressed["opted_out_topic"] == 1
	}, 15*time.Second, 20*time.Millisecond, "two pros receive it, the third opted out")
	require.Equal(t, 2, b.smtp.Count())

	r = b.do(t, req{path: "/v1/broadcasts"})
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, string(r.body), `"id":"spring-launch"`)

	// An empty audience is done at once; a past send_at sends now and says so.
	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: `{"id":"nobody","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"audience":{"filter":"customer.plan == \"gold\""},"send_at":"2020-01-01T09:00:00Z"}`})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	info = r.broadcast(t)
	require.Equal(t, "done", info.Status)
	require.Zero(t, info.Counts.Matched)
	require.Contains(t, strings.Join(info.Notes, "\n"), "send_at 2020-01-01T09:00:00Z is in the past: sending now")

	// Cancelled before its hour: nothing is sent.
	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: `{"id":"later","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"audience":{"customer_ids":["c0","c1","nobody"]},"send_at":"2099-01-01T09:00:00Z"}`})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	info = r.broadcast(t)
	require.Equal(t, "scheduled", info.Status)
	require.Equal(t, int64(2), info.Counts.Matched)
	require.Contains(t, strings.Join(info.Notes, "\n"), "1 of the customer IDs are not customers")
	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts/later/cancel"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	info = r.broadcast(t)
	require.Equal(t, "cancelled", info.Status)
	require.Equal(t, int64(2), info.Counts.Cancelled)
	require.Equal(t, http.StatusNotFound, b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts/nope/cancel"}).status)

	metrics := b.do(t, req{path: "/metrics"})
	require.Contains(t, string(metrics.body), `herald_broadcast_messages_total{outcome="sent"} 2`)
}

// TestBroadcastRefusesDataItsTemplateCannotUse: data that cannot fill the
// template is a 422 naming the template, the locale and the key, for the
// dry run as for the broadcast, and nothing is written.
func TestBroadcastRefusesDataItsTemplateCannotUse(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)
	// The customer index is built the first time anything lists customers.
	require.Equal(t, http.StatusOK, b.do(t, req{path: "/v1/customers"}).status)
	for _, body := range []string{
		`{"id":"bc1","template":"hello","topic":"onboarding","data":{},"audience":{"filter":"true"},"dry_run":true}`,
		`{"id":"bc1","template":"hello","topic":"onboarding","data":{},"audience":{"filter":"true"}}`,
	} {
		before := b.snapshot(t)
		r := b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: body})
		require.Equal(t, http.StatusUnprocessableEntity, r.status, "body: %s", r.body)
		code, msg := r.apiError(t)
		require.Equal(t, "invalid", code)
		require.Contains(t, msg, `data: template hello (locale en): hello/en.md:7: missing key "plan" at <.data.plan>`)
		require.Contains(t, msg, `data: template hello (locale pl): hello/pl.md:7: missing key "plan" at <.data.plan>`)
		require.Equal(t, before, b.snapshot(t), "a refused broadcast writes nothing")
	}
}

// TestBroadcastViewSaysWhatWaitsForLocalTime: GET /v1/broadcasts/{id} says
// how many messages wait for their customer's local time and until when;
// a cancel deletes them and counts them as cancelled in its answer.
func TestBroadcastViewSaysWhatWaitsForLocalTime(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.putCustomer(t, "c1", `{"email":"c1@example.com","timezone":"Asia/Tokyo","attributes":{"first_name":"Ada"}}`)
	b.putCustomer(t, "c2", `{"email":"c2@example.com","timezone":"Asia/Tokyo","attributes":{"first_name":"Bo"}}`)
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	local := time.Now().In(tokyo).Add(6 * time.Hour).Truncate(time.Minute)
	body := fmt.Sprintf(`{"id":"morning","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"audience":{"filter":"true"},"local_time":%q}`, local.Format("15:04"))
	r := b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: body})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)

	var view struct {
		Status  string `json:"status"`
		Waiting *struct {
			Messages int64     `json:"messages"`
			Next     time.Time `json:"next_at"`
			Last     time.Time `json:"last_at"`
		} `json:"waiting"`
	}
	require.Eventually(t, func() bool {
		r := b.do(t, req{path: "/v1/broadcasts/morning"})
		return json.Unmarshal(r.body, &view) == nil && view.Status == "done" && view.Waiting != nil
	}, 15*time.Second, 20*time.Millisecond, "the fan-out queues both for 09:00 in Tokyo")
	require.Equal(t, int64(2), view.Waiting.Messages)
	require.True(t, view.Waiting.Next.Equal(local), "next %s, want %s", view.Waiting.Next, local)
	require.True(t, view.Waiting.Last.Equal(local))

	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts/morning/cancel"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, int64(2), r.broadcast(t).Counts.Cancelled, "counted at the cancel, not at 09:00")
	r = b.do(t, req{path: "/v1/broadcasts/morning"})
	require.NotContains(t, string(r.body), `"waiting"`)
}
