package httpapi

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics counts requests by route pattern (the ServeMux pattern that
// matched, such as "GET /v1/customers/{id}": never a path, so no customer
// ID becomes a label) and status code, with their latency.
type httpMetrics struct {
	duration *prometheus.HistogramVec
	inFlight prometheus.Gauge
}

// unmatchedRoute labels requests no route matched (404s and 405s of the mux).
const unmatchedRoute = "unmatched"

// Instrument registers the HTTP request metrics on reg and measures every
// request next serves; next should be (or wrap) the ServeMux whose patterns
// label the requests.
func Instrument(reg prometheus.Registerer, next http.Handler) http.Handler {
	return newHTTPMetrics(reg).instrument(next)
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "herald_http_request_duration_seconds",
			Help:    "HTTP requests by route pattern and status code, with their latency (its _count is the request count).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "code"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_http_requests_in_flight",
			Help: "HTTP requests being served.",
		}),
	}
	reg.MustRegister(m.duration, m.inFlight)
	return m
}

// instrument measures every request next serves. The mux sets the matched
// pattern on the request it is given, which is this one.
func (m *httpMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Inc()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			m.inFlight.Dec()
			route := r.Pattern
			if route == "" {
				route = unmatchedRoute
			}
			m.duration.WithLabelValues(route, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}
