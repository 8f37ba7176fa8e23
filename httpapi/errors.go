package httpapi

import (
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald"
)

type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.message }

func errStatus(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg}
}

// writeError answers with herald's JSON error shape, mapping domain codes to
// HTTP statuses, and returns the status.
func writeError(w http.ResponseWriter, err error) int {
	var ae *apiError
	if !errors.As(err, &ae) {
		switch herald.ErrorCode(err) {
		case herald.EInvalid:
			ae = errStatus(http.StatusUnprocessableEntity, "invalid", herald.ErrorMessage(err))
		case herald.ENotFound:
			ae = errStatus(http.StatusNotFound, "not_found", herald.ErrorMessage(err))
		case herald.EConflict:
			ae = errStatus(http.StatusConflict, "conflict", herald.ErrorMessage(err))
		case herald.ETemporary, herald.ERateLimited:
			ae = errStatus(http.StatusServiceUnavailable, "unavailable", "a dependency is unavailable; retry later")
		default:
			ae = errStatus(http.StatusInternalServerError, "internal", "internal error")
		}
	}
	if (ae.status == http.StatusServiceUnavailable || ae.status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		// A client following the docs retries; say when.
		secs := 1
		if d := herald.RetryAfter(err); d > 0 {
			secs = int(math.Ceil(d.Seconds()))
		}
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	writeJSON(w, ae.status, map[string]any{"error": map[string]string{"code": ae.code, "message": ae.message}})
	return ae.status
}

// fail answers err and logs what a 5xx answer keeps from the client: its
// cause, under the request's ID (an error for a 500, a warning for a
// dependency that is unavailable).
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := writeError(w, err)
	if status < 500 {
		return
	}
	level := slog.LevelError
	if status == http.StatusServiceUnavailable {
		level = slog.LevelWarn
	}
	s.log.Log(r.Context(), level, "request failed", "request_id", w.Header().Get("X-Request-ID"),
		"method", r.Method, "path", logTarget(r.URL), "status", status, "err", err)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(true)
	_ = enc.Encode(v)
}
