package httpapi_test

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/hibiken/asynq"
)

const fuzzToken = "fuzz-token-0123456789abcdef"

// FuzzBodies sends hostile JSON bodies to every endpoint that reads one.
// Whatever the body, the answer is a 4xx or a 2xx with a JSON body, never a
// 500 (a panic in a handler is answered with a 500 by the API's recovery).
func FuzzBodies(f *testing.F) {
	for _, s := range []string{
		`{"email":"ada@example.com","locale":"pl-PL","timezone":"Europe/Warsaw","attributes":{"first_name":"Ada"}}`,
		`{"channels":{"email":false},"topics":{"onboarding":false},"quiet_hours":{"start":"22:00","end":"07:00"},"paused":true}`,
		`{"customer_id":"c1","name":"trial.started","data":{"plan":"pro"},"idempotency_key":"k1"}`,
		`{"customer_id":"c1","template":"hello","topic":"billing","channels":["email"],"data":{"x":[1,2,{"y":null}]}}`,
		`{"in_reply_to":"<a@b>","references":["<c@d>"],"from":"x@y","text":"yes"}`,
		`{"email":"a\r\nb@example.com"}`,
		`{"data":{"a":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}}`,
		`{"customer_id":"c1","name":"x"}{"more":1}`,
		`{"quiet_hours":{"start":"25:99"}}`,
		`{"attributes":{"n":1e999}}`,
		"\xff\xfe",
		`null`,
		`[]`,
	} {
		f.Add(s)
	}
	rs := redistest.Start(f)
	tset, err := templates.Load(os.DirFS("../engine/testdata/templates"), templates.Options{})
	if err != nil {
		f.Fatal(err)
	}
	e, err := engine.New(engine.Options{
		Redis: rs.Client(), RedisConn: asynq.RedisClientOpt{Addr: rs.Addr},
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: herald.SenderFunc(nil)},
		Templates: tset,
		Policy: preferences.Policy{Topics: map[string]herald.Topic{
			"onboarding": {Name: "onboarding", OptIn: true, Class: "lifecycle"},
			"billing":    {Name: "billing", Required: true, OptIn: true, Class: "transactional"},
		}},
		PublicURL: "https://herald.example.com", SigningKey: []byte("0123456789abcdef0123456789abcdef"),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = e.Close() })
	h := httpapi.New(httpapi.Config{
		Engine: e, Tokens: []httpapi.Token{{Name: "fuzz", Value: fuzzToken}}, MaxBody: 64 << 10,
		Logger: slog.New(slog.DiscardHandler),
	})
	// The customer exists so that bodies get past the lookup.
	put := httptest.NewRequest(http.MethodPut, "/v1/customers/c1", strings.NewReader(`{"email":"ada@example.com"}`))
	put.Header.Set("Authorization", "Bearer "+fuzzToken)
	put.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, put)
	if rec.Code >= 300 {
		f.Fatalf("create customer: %d %s", rec.Code, rec.Body)
	}
	endpoints := []struct{ method, path string }{
		{http.MethodPut, "/v1/customers/c2"},
		{http.MethodPatch, "/v1/customers/c1/preferences"},
		{http.MethodPost, "/v1/events"},
		{http.MethodPost, "/v1/messages"},
		{http.MethodPost, "/v1/inbound/email"},
	}
	f.Fuzz(func(t *testing.T, body string) {
		for _, ep := range endpoints {
			r := httptest.NewRequest(ep.method, ep.path, strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+fuzzToken)
			r.Header.Set("Content-Type", "application/json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code >= 500 {
				t.Fatalf("%s %s answered %d to %q: %s", ep.method, ep.path, w.Code, body, w.Body)
			}
			if w.Code < 300 && w.Code != http.StatusNoContent && !json.Valid(w.Body.Bytes()) {
				t.Fatalf("%s %s answered %d with a body that is not JSON: %s", ep.method, ep.path, w.Code, w.Body)
			}
		}
	})
}
