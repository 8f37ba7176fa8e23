package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/service"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/prometheus/client_golang/prometheus"
)

// Token is one named API bearer token.
type Token struct{ Name, Value string }

// Config wires the HTTP surface.
type Config struct {
	Engine  *engine.Engine
	Tokens  []Token
	MaxBody int64 // default 1 MiB
	// Monitoring serves the dashboard under /monitoring/ (nil: not mounted).
	Monitoring http.Handler
	// MonitoringUser/Password protect it with basic auth; both empty: the
	// API tokens are accepted as bearer tokens instead. Only one of them
	// set: nobody gets in.
	MonitoringUser, MonitoringPassword string
	// MonitoringLogin, when set, is the secret of a dashboard login link,
	// /monitoring/login?token=…, which opens a browser session (a cookie
	// good while this process runs). herald dev prints one.
	MonitoringLogin string
	// PublicURL is where browsers reach herald; its origin may make
	// state-changing dashboard requests besides the request's own host.
	PublicURL string
	Metrics   http.Handler // /metrics (nil: not mounted)
	// MetricsToken, when set, is the bearer token /metrics asks for.
	MetricsToken string
	// Centre serves /preferences and /unsubscribe (nil: not mounted).
	Centre http.Handler
	// Extra routes (e.g. Slack interactivity, click redirects) by pattern.
	// They are public, like the centre, and share its rate limit.
	Extra map[string]http.Handler
	// PublicRateLimit is how many requests a minute one client address may
	// make to the public routes (centre and Extra), with as many at once;
	// beyond it they get 429 with Retry-After. 0: no limit.
	PublicRateLimit int
	// TrustedProxies are the proxies whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// Now is the clock of the rate limit (default time.Now).
	Now func() time.Time
	// Ready reports whether herald can serve (Redis reachable, content loaded).
	Ready  func(ctx context.Context) error
	Logger *slog.Logger
	// Registerer, when set, gets the HTTP request metrics.
	Registerer prometheus.Registerer
}

// apiStore is what the API reads beside the write path: profiles and
// timelines, and the idempotency records of its requests.
type apiStore interface {
	Customer(ctx context.Context, id string) (herald.Customer, error)
	Timeline(ctx context.Context, customerID string, limit int) ([]herald.TimelineEntry, error)
	RememberFor(ctx context.Context, key string, rec redisstore.Idempotent, ttl time.Duration, customerID string) (redisstore.Remembered, error)
	Settle(ctx context.Context, key string, rec redisstore.Idempotent, ttl time.Duration) error
	Forget(ctx context.Context, key string) error
}

type server struct {
	cfg Config
	e   *engine.Engine
	st  apiStore
	svc *service.Service
	log *slog.Logger
	// session is the dashboard session cookie's value (with MonitoringLogin).
	session string
	limiter *limiter
}

// New returns the HTTP handler.
func New(cfg Config) http.Handler {
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &server{cfg: cfg, e: cfg.Engine, st: cfg.Engine.Store(), svc: cfg.Engine.Service(), log: cfg.Logger}
	if cfg.MonitoringLogin != "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		s.session = hex.EncodeToString(b[:])
	}
	if cfg.PublicRateLimit > 0 {
		s.limiter = newLimiter(cfg.PublicRateLimit, cfg.Now)
	}
	mux := http.NewServeMux()
	api := func(pattern string, h func(http.ResponseWriter, *http.Request, string) error) {
		mux.Handle(pattern, s.auth(h))
	}
	api("PUT /v1/customers/{id}", s.putCustomer)
	api("PATCH /v1/customers/{id}", s.patchCustomer)
	api("GET /v1/customers/{id}", s.getCustomer)
	api("DELETE /v1/customers/{id}", s.deleteCustomer)
	api("GET /v1/customers/{id}/export", s.exportCustomer)
	api("GET /v1/customers/{id}/preferences", s.getPreferences)
	api("PATCH /v1/customers/{id}/preferences", s.patchPreferences)
	api("GET /v1/customers/{id}/timeline", s.getTimeline)
	api("POST /v1/events", s.postEvent)
	api("POST /v1/messages", s.postMessage)
	api("POST /v1/inbound/email", s.inboundEmail)
	api("GET /v1/workflows", s.listWorkflows)
	api("GET /v1/workflows/{id}", s.getWorkflow)
	api("GET /v1/workflows/{id}/stats", s.workflowStats)
	api("GET /v1/customers/{id}/journeys", s.customerJourneys)
	api("DELETE /v1/customers/{id}/journeys/{journey}", s.cancelJourney)
	api("GET /v1/messages/{id}", s.getMessage)
	api("POST /v1/test-sends", s.postTestSend)
	api("GET /v1/test-sends", s.listTestSends)
	api("GET /v1/customers", s.listCustomers)
	api("POST /v1/broadcasts", s.postBroadcast)
	api("GET /v1/broadcasts", s.listBroadcasts)
	api("GET /v1/broadcasts/{id}", s.getBroadcast)
	api("POST /v1/broadcasts/{id}/cancel", s.cancelBroadcast)
	mux.Handle("/v1/", s.auth(func(w http.ResponseWriter, r *http.Request, _ string) error {
		return errStatus(http.StatusNotFound, "not_found", "no such endpoint: "+r.Method+" "+r.URL.Path)
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	if cfg.Metrics != nil {
		mux.Handle("GET /metrics", MetricsAuth(cfg.MetricsToken, cfg.Metrics))
	}
	if cfg.Monitoring != nil {
		mux.Handle("/monitoring/", s.monitoring(cfg.Monitoring))
	}
	mux.Handle("/workflows/", s.monitoring(s.workflowPages()))
	if cfg.Centre != nil {
		mux.Handle("/preferences", s.rateLimited(cfg.Centre))
		mux.Handle("/unsubscribe", s.rateLimited(cfg.Centre))
	}
	for p, h := range cfg.Extra {
		mux.Handle(p, s.rateLimited(h))
	}
	if cfg.Registerer != nil {
		return Instrument(cfg.Registerer, s.requestID(mux))
	}
	return s.requestID(mux)
}

var reqIDRe = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID tags every request with an ID (the caller's X-Request-ID when it
// is sane), echoes it in the response and logs the request with it.
func (s *server) requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !reqIDRe.MatchString(id) {
			var b [8]byte
			_, _ = rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-ID", id)
		sw := &statusWriter{ResponseWriter: w, status: 200}
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic in handler", "request_id", id, "panic", p)
				writeError(sw, errStatus(http.StatusInternalServerError, "internal", "internal error"))
			}
			if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" {
				return
			}
			s.log.Info("http", "request_id", id, "method", r.Method, "path", logTarget(r.URL), "status", sw.status, "ms", time.Since(start).Milliseconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int)        { w.status = code; w.ResponseWriter.WriteHeader(code) }
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// auth checks the bearer token (constant time) and passes the token's name
// on; the name is recorded in consent and timeline entries.
func (s *server) auth(h func(http.ResponseWriter, *http.Request, string) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := s.tokenName(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald"`)
			writeError(w, errStatus(http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)"))
			return
		}
		if err := h(w, r, name); err != nil {
			s.fail(w, r, err)
		}
	})
}

func (s *server) tokenName(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	if tok == "" {
		return "", false
	}
	name, found := "", false
	for _, t := range s.cfg.Tokens {
		if equalSecret(tok, t.Value) {
			name, found = t.Name, true
		}
	}
	return name, found
}

// MetricsAuth asks for "Authorization: Bearer <token>" before next; an
// empty token leaves next open.
func MetricsAuth(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || !equalSecret(strings.TrimSpace(got), token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="herald metrics"`)
			writeError(w, errStatus(http.StatusUnauthorized, "unauthorized", "missing or wrong metrics token (Authorization: Bearer <HERALD_METRICS_TOKEN>)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if s.cfg.Ready != nil {
		if err := s.cfg.Ready(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func pathID(r *http.Request) (string, error) {
	id := r.PathValue("id")
	if err := redisstore.ValidID(id); err != nil {
		return "", errStatus(http.StatusBadRequest, "invalid_id", herald.ErrorMessage(err))
	}
	return id, nil
}

type customerBody struct {
	Email       *string        `json:"email"`
	SlackUserID *string        `json:"slack_user_id"`
	Locale      *string        `json:"locale"`
	Timezone    *string        `json:"timezone"`
	Attributes  map[string]any `json:"attributes"`
}

// putCustomer replaces the profile: fields left out are removed. PATCH
// merges.
func (s *server) putCustomer(w http.ResponseWriter, r *http.Request, actor string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var b customerBody
	if _, err := readJSON(w, r, s.cfg.MaxBody, &b); err != nil {
		return err
	}
	c := herald.Customer{ID: id, Attributes: b.Attributes}
	for dst, src := range map[*string]*string{&c.Email: b.Email, &c.SlackUserID: b.SlackUserID, &c.Locale: b.Locale, &c.Timezone: b.Timezone} {
		if src != nil {
			*dst = *src
		}
	}
	c, created, err := s.svc.PutCustomer(r.Context(), c, apiActor(actor))
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, c)
	return nil
}

// patchCustomer merges a JSON merge patch (RFC 7396) into the profile.
func (s *server) patchCustomer(w http.ResponseWriter, r *http.Request, actor string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/merge-patch+json") && !strings.HasPrefix(ct, "application/json") {
		return errStatus(http.StatusUnsupportedMediaType, "unsupported_media_type", "PATCH takes application/merge-patch+json (RFC 7396)")
	}
	var raw json.RawMessage
	if _, err := readJSON(w, r, s.cfg.MaxBody, &raw); err != nil {
		return err
	}
	c, err := s.svc.PatchCustomer(r.Context(), id, raw, apiActor(actor))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func apiActor(token string) preferences.Actor {
	return preferences.Actor{Kind: preferences.ActorAPI, Name: token}
}

func (s *server) getCustomer(w http.ResponseWriter, r *http.Request, _ string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	c, err := s.svc.Customer(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, c)
	return nil
}

func (s *server) deleteCustomer(w http.ResponseWriter, r *http.Request, actor string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if err := s.svc.Erase(r.Context(), id, apiActor(actor)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) exportCustomer(w http.ResponseWriter, r *http.Request, _ string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	ctx := r.Context()
	c, err := s.st.Customer(ctx, id)
	if err != nil {
		return err
	}
	p, err := s.e.Preferences().Get(ctx, id)
	if err != nil {
		return err
	}
	consent, err := s.e.Preferences().Consent(ctx, id)
	if err != nil {
		return err
	}
	tl, err := s.st.Timeline(ctx, id, 0)
	if err != nil {
		return err
	}
	journeys, err := s.e.Journeys(ctx, id)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", `attachment; filename="customer-`+id+`.json"`)
	writeJSON(w, http.StatusOK, map[string]any{
		"customer": c, "preferences": p, "consent_log": consent, "timeline": tl, "journeys": journeys,
		"exported_at": time.Now().UTC(),
	})
	return nil
}

func (s *server) getPreferences(w http.ResponseWriter, r *http.Request, _ string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	p, err := s.svc.Preferences(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, p)
	return nil
}

func (s *server) patchPreferences(w http.ResponseWriter, r *http.Request, actor string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var p preferences.Patch
	if _, err := readJSON(w, r, s.cfg.MaxBody, &p); err != nil {
		return err
	}
	prefs, err := s.svc.SetPreferences(r.Context(), id, p, apiActor(actor), preferences.SourceAPI)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, prefs)
	return nil
}

func (s *server) getTimeline(w http.ResponseWriter, r *http.Request, _ string) error {
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := s.st.Customer(r.Context(), id); err != nil {
		return err
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > redisstore.TimelineCap {
			return errStatus(http.StatusUnprocessableEntity, "invalid", "limit: a number from 1 to "+strconv.Itoa(redisstore.TimelineCap))
		}
		limit = n
	}
	tl, err := s.st.Timeline(r.Context(), id, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"customer_id": id, "entries": tl})
	return nil
}

type eventBody struct {
	CustomerID     string         `json:"customer_id"`
	Name           string         `json:"name"`
	Data           map[string]any `json:"data"`
	IdempotencyKey string         `json:"idempotency_key"`
}

func (s *server) postEvent(w http.ResponseWriter, r *http.Request, actor string) error {
	var b eventBody
	body, err := readJSON(w, r, s.cfg.MaxBody, &b)
	if err != nil {
		return err
	}
	// With a key, the event's ID comes from it (and its customer): its
	// answer is known beforehand, as a message's is.
	var early *knownAnswer
	if k := idemKey(r, b.IdempotencyKey); k != "" {
		id := redisstore.KeyedID("e_", b.CustomerID, k)
		early = &knownAnswer{status: http.StatusAccepted, body: accepted(id),
			took: func(ctx context.Context) bool { return s.svc.EventQueued(ctx, b.CustomerID, id) }}
	}
	return s.idempotent(w, r, actor, b.IdempotencyKey, b.CustomerID, body, early, func(ctx context.Context) (int, any, error) {
		ev := herald.Event{CustomerID: b.CustomerID, Name: b.Name, Data: b.Data, IdempotencyKey: idemKey(r, b.IdempotencyKey), Actor: actor}
		id, err := s.svc.Event(ctx, ev)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, accepted(id), nil
	})
}

// messageAccepted is POST /v1/messages' answer for message id.
func accepted(id string) map[string]string {
	return map[string]string{"id": id, "status": "accepted"}
}

type messageBody struct {
	CustomerID     string           `json:"customer_id"`
	Template       string           `json:"template"`
	Topic          string           `json:"topic"`
	Data           map[string]any   `json:"data"`
	Channels       []herald.Channel `json:"channels"`
	Mode           string           `json:"mode"`
	IdempotencyKey string           `json:"idempotency_key"`
}

func (s *server) postMessage(w http.ResponseWriter, r *http.Request, actor string) error {
	var b messageBody
	body, err := readJSON(w, r, s.cfg.MaxBody, &b)
	if err != nil {
		return err
	}
	// With a key, the message's ID comes from it, so the answer is known
	// before the message is queued: the idempotency record holds it from
	// the start, and a repeat checks the message was queued.
	var early *knownAnswer
	if k := idemKey(r, b.IdempotencyKey); k != "" {
		id := redisstore.KeyedID("m_", actor, k)
		early = &knownAnswer{status: http.StatusAccepted, body: accepted(id),
			took: func(ctx context.Context) bool { return s.svc.MessageQueued(ctx, id) }}
	}
	return s.idempotent(w, r, actor, b.IdempotencyKey, b.CustomerID, body, early, func(ctx context.Context) (int, any, error) {
		var probs []string
		for f, v := range map[string]string{"customer_id": b.CustomerID, "template": b.Template, "topic": b.Topic} {
			if v == "" {
				probs = append(probs, f+": required")
			}
		}
		if len(probs) > 0 {
			return 0, nil, herald.Errorf(herald.EInvalid, "%s", strings.Join(slices.Sorted(slices.Values(probs)), "; "))
		}
		m := wire.Message{
			CustomerID: b.CustomerID, Template: b.Template, Topic: b.Topic, Data: b.Data,
			Channels: b.Channels, Mode: b.Mode, Actor: actor,
		}
		if k := idemKey(r, b.IdempotencyKey); k != "" {
			m.ID = redisstore.KeyedID("m_", actor, k)
		}
		id, err := s.svc.Send(ctx, m)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusAccepted, map[string]string{"id": id, "status": "accepted"}, nil
	})
}

func idemKey(r *http.Request, body string) string {
	if body != "" {
		return body
	}
	return r.Header.Get("Idempotency-Key")
}

// idempotent runs do once per (token, path, key) within 24 h: a repeat gets
// the first answer, the same key with another body a 409. Whether
// customerID exists ("": no customer) is read in the round trip that takes
// the key, and do's context carries the answer (service.CustomerChecked).
//
// When the answer is known before do runs (early), the record that takes
// the key holds it, and nothing is written after do: one round trip less.
// A repeat replays it once early.took says the first request took effect;
// until then (the first request was cut off, or still runs) it runs do
// again, which is harmless because do is keyed by the idempotency key.
// Otherwise the record is pending until do's answer replaces it.
//
// idemPending is how long an unfinished request holds its idempotency key;
// idemWait how long a repeat of it waits for the answer before 503.
const (
	idemPending = 5 * time.Second
	idemWait    = 2 * time.Second
	idemKeep    = 24 * time.Hour
)

// knownAnswer is a request's answer known before it runs, and how to tell
// whether it took effect.
type knownAnswer struct {
	status int
	body   any
	took   func(context.Context) bool
}

func (s *server) idempotent(w http.ResponseWriter, r *http.Request, actor, bodyKey, customerID string, body []byte, early *knownAnswer, do func(context.Context) (int, any, error)) error {
	key := idemKey(r, bodyKey)
	if key == "" {
		status, v, err := do(r.Context())
		if err != nil {
			return err
		}
		writeJSON(w, status, v)
		return nil
	}
	if len(key) > 255 {
		return errStatus(http.StatusUnprocessableEntity, "invalid", "idempotency_key: at most 255 characters")
	}
	fp := sha256.Sum256(canonical(body))
	scope := actor + "\x00" + r.URL.Path + "\x00" + key
	// A pending record lives a few seconds: a request cut off midway (Redis
	// error, crash) must not lock its key, and taking over a stale one is
	// safe because what the request does is keyed by the same idempotency
	// key. The final answer is kept for 24 h.
	first, ttl := redisstore.Idempotent{Fingerprint: hex.EncodeToString(fp[:])}, idemPending
	if early != nil {
		b, _ := json.Marshal(early.body)
		first, ttl = redisstore.Idempotent{Fingerprint: first.Fingerprint, Status: early.status, Body: b, Provisional: true}, idemKeep
	}
	var got redisstore.Remembered
	for wait := time.Now().Add(idemWait); ; {
		var err error
		got, err = s.st.RememberFor(r.Context(), scope, first, ttl, customerID)
		if err != nil {
			return herald.Temporary(err, "redis", 0)
		}
		if !got.Seen {
			break
		}
		rec := got.Record
		if rec.Fingerprint != first.Fingerprint {
			return errStatus(http.StatusConflict, "conflict", "idempotency key already used with a different request body")
		}
		if rec.Status != 0 && (!rec.Provisional || early == nil || early.took(r.Context())) {
			w.Header().Set("Idempotent-Replayed", "true")
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(rec.Status)
			_, _ = w.Write(rec.Body)
			return nil
		}
		if rec.Status != 0 {
			break // a provisional answer whose request has not taken effect: run it again
		}
		// The same request is in flight: wait for its answer a moment.
		if time.Now().After(wait) || r.Context().Err() != nil {
			return herald.Temporary(errors.New("a request with this idempotency key is still in progress"), "in progress", time.Second)
		}
		time.Sleep(25 * time.Millisecond)
	}
	ctx := r.Context()
	if got.Checked {
		ctx = service.CustomerChecked(ctx, customerID, got.CustomerFound)
	}
	status, v, err := do(ctx)
	if err != nil {
		// Release the key so the client's retry goes ahead at once. If
		// Redis is the problem, a pending record expires anyway, and a
		// provisional one is not replayed until its request took effect.
		if ferr := s.st.Forget(context.WithoutCancel(r.Context()), scope); ferr != nil {
			s.log.Warn("release idempotency key", "err", ferr)
		}
		return err
	}
	b, _ := json.Marshal(v)
	if got.Seen || status != first.Status || !bytes.Equal(b, first.Body) {
		// The answer was not known, or this ran again over a provisional
		// one: keep it as final.
		rec := redisstore.Idempotent{Fingerprint: first.Fingerprint, Status: status, Body: b}
		if err := s.st.Settle(r.Context(), scope, rec, idemKeep); err != nil {
			s.log.Error("store idempotent answer", "err", err)
		}
	}
	writeJSON(w, status, v)
	return nil
}

// canonical re-encodes JSON so whitespace and key order do not make two
// equal bodies differ.
func canonical(b []byte) []byte {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return b
	}
	if m, ok := v.(map[string]any); ok {
		delete(m, "idempotency_key")
	}
	out, _ := json.Marshal(v)
	return out
}
