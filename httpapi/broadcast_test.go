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
	r = b.do(t, req{method: http.MethodPost, path: "/v1/broadcasts", body: `{"id":"nobody","template":"hello","topic":"onboarding","audience":{"filter":"customer.plan == \"gold\""},"send_at":"2020-01-01T09:00:00Z"}`})
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
