package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
)

// Requests are labelled by the pattern that matched, never by their path,
// with the status the handler wrote.
func TestHTTPMetricsByRoutePattern(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/customers/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("id") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
		}
	})
	mux.HandleFunc("POST /v1/messages", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusAccepted) })
	h := Instrument(reg, mux)
	for _, req := range []*http.Request{
		httptest.NewRequest(http.MethodGet, "/v1/customers/ada", nil),
		httptest.NewRequest(http.MethodGet, "/v1/customers/grace", nil),
		httptest.NewRequest(http.MethodGet, "/v1/customers/missing", nil),
		httptest.NewRequest(http.MethodPost, "/v1/messages", nil),
		httptest.NewRequest(http.MethodGet, "/nowhere/ada", nil),
	} {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
	counts, inFlight := gatherHTTP(t, reg)
	require.Equal(t, map[string]uint64{
		"GET /v1/customers/{id} 200": 2,
		"GET /v1/customers/{id} 404": 1,
		"POST /v1/messages 202":      1,
		"unmatched 404":              1,
	}, counts)
	require.Zero(t, inFlight, "every request is over")
}

// gatherHTTP returns the request counts by "route code" and the in-flight
// gauge.
func gatherHTTP(t *testing.T, reg *prometheus.Registry) (map[string]uint64, float64) {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out, inFlight := map[string]uint64{}, -1.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "herald_http_requests_in_flight":
				inFlight = m.GetGauge().GetValue()
			case "herald_http_request_duration_seconds":
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				out[l["route"]+" "+l["code"]] += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return out, inFlight
}
