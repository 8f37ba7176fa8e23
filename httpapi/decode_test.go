package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzReadJSON: whatever the body, readJSON answers with a body it checked
// or a client error, never a panic or a 5xx.
func FuzzReadJSON(f *testing.F) {
	for _, s := range []string{
		`{"email":"ada@example.com","attributes":{"a":[1,2,{"b":null}]}}`,
		`{"email":`, `[]`, `{} {}`, "{\"a\":\"\xff\"}", `{"a":"\"{{{{"}`,
		strings.Repeat("[", 40) + strings.Repeat("]", 40), `]]]]{`, ``, `null`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/v1/events", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var v struct {
			Email      *string        `json:"email"`
			Attributes map[string]any `json:"attributes"`
		}
		got, err := readJSON(httptest.NewRecorder(), r, 4096, &v)
		if err != nil {
			ae, ok := err.(*apiError)
			if !ok || ae.status < 400 || ae.status > 499 {
				t.Fatalf("want a 4xx apiError, got %#v", err)
			}
			return
		}
		if !utf8.Valid(got) || !json.Valid(got) {
			t.Fatalf("accepted a body that is not one valid JSON document: %q", got)
		}
		if depth(got) > maxDepth {
			t.Fatalf("accepted a body nested %d deep", depth(got))
		}
	})
}
