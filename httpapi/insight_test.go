package httpapi_test

import (
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

// withInsightContent loads the insight workflow (send, 30 s wait, branch,
// sends) and its templates into the bundle's engine.
func withInsightContent(t *testing.T, b *bundle) {
	t.Helper()
	tset, err := templates.Load(os.DirFS("../engine/testdata/insight/templates"), templates.Options{})
	require.NoError(t, err)
	wset, err := workflows.Load(os.DirFS("../engine/testdata/insight/workflows"), workflows.LoadOptions{TemplateExists: tset.Has})
	require.NoError(t, err)
	b.e.SetContent(tset, wset)
}

func decode[T any](t *testing.T, r resp) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(r.body, &v), "body: %s", r.body)
	return v
}

type statsBody struct {
	Version string               `json:"version"`
	Stats   engine.WorkflowStats `json:"stats"`
}

func (b *bundle) stats(t *testing.T) engine.WorkflowStats {
	t.Helper()
	r := b.do(t, req{path: "/v1/workflows/insight/stats?since=24h"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	return decode[statsBody](t, r).Stats
}

type journeysBody struct {
	Journeys []engine.JourneyView `json:"journeys"`
}

// waitingJourney starts the insight journey for a customer and returns it
// once it waits at its wait step.
func (b *bundle) waitingJourney(t *testing.T, customer string) engine.JourneyView {
	t.Helper()
	r := b.do(t, req{method: http.MethodPost, path: "/v1/events", body: `{"customer_id":"` + customer + `","name":"insight.started"}`})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	var j engine.JourneyView
	require.Eventually(t, func() bool {
		r := b.do(t, req{path: "/v1/customers/" + customer + "/journeys"})
		js := decode[journeysBody](t, r).Journeys
		if len(js) == 1 && js[0].Step == "wait" {
			j = js[0]
			return true
		}
		return false
	}, 15*time.Second, 20*time.Millisecond, "the journey waits")
	return j
}

func TestWorkflowAPI(t *testing.T) {
	t.Parallel()
	b := setup(t)
	withInsightContent(t, b)

	r := b.do(t, req{path: "/v1/workflows"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	list := decode[struct {
		Workflows []struct {
			ID, Version, Topic, Trigger string
		} `json:"workflows"`
	}](t, r).Workflows
	require.Len(t, list, 1)
	require.Equal(t, "insight", list[0].ID)
	require.Equal(t, "insight.started", list[0].Trigger)
	require.NotEmpty(t, list[0].Version)

	r = b.do(t, req{path: "/v1/workflows/insight"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	wf := r.json(t)
	require.Equal(t, list[0].Version, wf["version"])
	require.Contains(t, wf["definition"], "trigger: insight.started")
	graph := wf["graph"].(map[string]any)
	require.Contains(t, graph["mermaid"], `"after 30s"`)
	require.Contains(t, graph["dot"], `label="insight.done"`)

	r = b.do(t, req{path: "/v1/workflows/nope"})
	code, msg := r.apiError(t)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "not_found", code)
	require.Contains(t, msg, `"nope"`)
	r = b.do(t, req{path: "/v1/workflows/nope/stats"})
	require.Equal(t, http.StatusNotFound, r.status)

	for _, since := range []string{"yesterday", "-3h", "0d", "2026-13-01"} {
		r = b.do(t, req{path: "/v1/workflows/insight/stats?since=" + since})
		code, msg = r.apiError(t)
		require.Equal(t, http.StatusBadRequest, r.status, since)
		require.Equal(t, "invalid_since", code)
		require.Contains(t, msg, since)
	}
	r = b.do(t, req{path: "/v1/workflows/insight/stats?since=2026-01-01T00:00:00Z"})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
}

// Support's view of one customer: the running journey and its next
// wake-up, the fate of its message, cancelling it.
func TestJourneysMessagesAndCancel(t *testing.T) {
	t.Parallel()
	b := setup(t)
	withInsightContent(t, b)
	b.putCustomer(t, "c1", `{"email":"ada@example.com","attributes":{"first_name":"Ada"}}`)
	before := time.Now()
	j := b.waitingJourney(t, "c1")
	require.Equal(t, "active", j.Status)
	require.Equal(t, "insight", j.Workflow)
	require.WithinRange(t, j.NextWakeUp, before.Add(29*time.Second), time.Now().Add(31*time.Second), "the wait's wake-up")

	st := b.stats(t)
	require.EqualValues(t, 1, st.Journeys.Started)
	require.EqualValues(t, 1, st.Journeys.Running)
	require.EqualValues(t, 1, st.Steps["hello"].Entered)
	require.EqualValues(t, 1, st.Steps["hello"].Sent["email"])
	require.EqualValues(t, 1, st.Steps["wait"].Waiting)

	// The journey's message, sent.
	msgID := j.ID + ".hello.1"
	r := b.do(t, req{path: "/v1/messages/" + msgID})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	m := decode[engine.MessageStatus](t, r)
	require.Equal(t, "c1", m.CustomerID)
	require.Equal(t, "hello", m.Step)
	require.Equal(t, "sent", m.Channels["email"].Status)
	require.Len(t, b.smtp.Messages(), 1)
	require.Equal(t, b.smtp.Messages()[0].MessageID, m.Channels["email"].ProviderID)

	// A one-off message suppressed by the customer's own choice, with the
	// consent entry behind it.
	b.putCustomer(t, "c2", `{"email":"bo@example.com","attributes":{"first_name":"Bo"}}`)
	r = b.do(t, req{method: http.MethodPatch, path: "/v1/customers/c2/preferences", body: `{"topics":{"onboarding":false}}`})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	r = b.do(t, req{method: http.MethodPost, path: "/v1/messages", body: `{"customer_id":"c2","template":"step-nudge","topic":"onboarding"}`})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	oneOff := r.json(t)["id"].(string)
	require.Eventually(t, func() bool {
		r := b.do(t, req{path: "/v1/messages/" + oneOff})
		m := decode[engine.MessageStatus](t, r)
		return r.status == http.StatusOK && m.Channels["message"] != nil && m.Channels["message"].Status == "suppressed"
	}, 15*time.Second, 20*time.Millisecond, "the message is suppressed")
	m = decode[engine.MessageStatus](t, b.do(t, req{path: "/v1/messages/" + oneOff}))
	require.Equal(t, "opted_out_topic", m.Channels["message"].Reason)
	require.NotEmpty(t, m.Channels["message"].ConsentEntry)

	r = b.do(t, req{path: "/v1/messages/m_nosuchmessage"})
	code, msg := r.apiError(t)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "not_found", code)
	require.Contains(t, msg, "m_nosuchmessage")

	// Cancel: the wake-up goes, the timeline says who, the numbers move.
	r = b.do(t, req{method: http.MethodDelete, path: "/v1/customers/c1/journeys/" + j.ID})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "exited", decode[engine.JourneyView](t, r).Status)
	_, err := b.rdb.ZScore(t.Context(), "herald:journeys:waiting", "c1|"+j.ID).Result()
	require.ErrorIs(t, err, redis.Nil, "the follow-up is unscheduled")
	tl, err := b.e.Store().Timeline(t.Context(), "c1", 5)
	require.NoError(t, err)
	require.Contains(t, tl[0].Summary, "cancelled by api app")
	st = b.stats(t)
	require.EqualValues(t, 0, st.Journeys.Running)
	require.EqualValues(t, 1, st.Journeys.Exited)
	require.EqualValues(t, 0, st.Steps["wait"].Waiting)
	require.EqualValues(t, 1, st.Steps["wait"].Exited["cancelled"])

	r = b.do(t, req{method: http.MethodDelete, path: "/v1/customers/c1/journeys/" + j.ID})
	code, _ = r.apiError(t)
	require.Equal(t, http.StatusConflict, r.status)
	require.Equal(t, "conflict", code)
	r = b.do(t, req{method: http.MethodDelete, path: "/v1/customers/c1/journeys/j_nope"})
	code, msg = r.apiError(t)
	require.Equal(t, http.StatusNotFound, r.status)
	require.Equal(t, "not_found", code)
	require.Contains(t, msg, "j_nope")
	r = b.do(t, req{path: "/v1/customers/nobody/journeys"})
	require.Equal(t, http.StatusNotFound, r.status)
}

func TestTestSend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	withInsightContent(t, b)
	before := b.snapshot(t)
	for _, body := range []string{
		`{"to":"not an address","template":"step-hello"}`,
		`{"to":"ada@","template":"step-hello"}`,
		`{"to":"Ada <ada@example.com>","template":"step-hello"}`,
		`{"to":"ada@example.com","template":"step-hello","channel":"email","locale":"en","data":{},"customer":{}, "x":1}`,
	} {
		r := b.do(t, req{method: http.MethodPost, path: "/v1/test-sends", body: body})
		require.Contains(t, []int{http.StatusUnprocessableEntity, http.StatusBadRequest}, r.status, "%s: %s", body, r.body)
	}
	r := b.do(t, req{method: http.MethodPost, path: "/v1/test-sends", body: `{"to":"ada@","template":"step-hello"}`})
	code, msg := r.apiError(t)
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, "invalid", code)
	require.Contains(t, msg, "ada@")
	r = b.do(t, req{method: http.MethodPost, path: "/v1/test-sends", body: `{"to":"ada@example.com","template":"nope"}`})
	require.Equal(t, http.StatusUnprocessableEntity, r.status)
	require.Equal(t, before, b.snapshot(t), "a refused test send writes nothing")

	r = b.do(t, req{method: http.MethodPost, path: "/v1/test-sends", body: `{"to":"ada@example.com","template":"step-hello","locale":"en","customer":{"first_name":"Grace"}}`})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	rec := decode[redisstore.TestSend](t, r)
	require.Equal(t, "sent", string(rec.Outcome))
	require.Equal(t, "[test] step hello for Grace", rec.Subject)
	msgs := b.smtp.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"ada@example.com"}, msgs[0].To)
	require.Contains(t, string(msgs[0].Data), "Subject: [test] step hello for Grace")

	// Recorded in the test-send log and nowhere else: no customer, no
	// consent log, no ledger.
	r = b.do(t, req{path: "/v1/test-sends"})
	log := decode[struct {
		TestSends []redisstore.TestSend `json:"test_sends"`
	}](t, r).TestSends
	require.Len(t, log, 1)
	require.Equal(t, rec.ID, log[0].ID)
	require.Equal(t, "app", log[0].Actor)
	for k := range b.snapshot(t) {
		require.False(t, strings.HasPrefix(k, "herald:{c:"), "no customer key: %s", k)
	}
}
