package httpapi

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// monitoringCookie carries a dashboard session opened with the login link.
const monitoringCookie = "herald_monitoring"

// monitoringLoginPath opens a dashboard session from a login link.
const monitoringLoginPath = "/monitoring/login"

// monitoringCSP is the dashboard's Content-Security-Policy. asynqmon's UI
// loads its scripts, styles, images and API from its own origin, styles its
// components with inline <style> elements (Material-UI) and takes its fonts
// (Roboto, Material Icons) from Google Fonts. %s is the list of hashes of the
// inline scripts of the page being served (its index page has two: settings
// and the webpack runtime), so no other inline script runs.
const monitoringCSP = "default-src 'self'; script-src 'self'%s; " +
	"style-src 'self' 'unsafe-inline' https://fonts.googleapis.com; font-src 'self' data: https://fonts.gstatic.com; " +
	"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// monitoring guards the dashboard: security headers on every answer,
// state-changing requests only from the dashboard's own origin (a
// cross-site form or script cannot pause queues or delete tasks with the
// operator's credentials), then authentication.
func (s *server) monitoring(next http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	if u, err := url.Parse(s.cfg.PublicURL); err == nil && u.Scheme != "" && u.Host != "" {
		if err := cop.AddTrustedOrigin(u.Scheme + "://" + u.Host); err != nil {
			s.log.Warn("monitoring: public URL not usable as a trusted origin", "err", err)
		}
	}
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errStatus(http.StatusForbidden, "cross_origin", "cross-origin request refused: the dashboard changes state only from its own pages"))
	}))
	if (s.cfg.MonitoringUser == "") != (s.cfg.MonitoringPassword == "") {
		s.log.Error("monitoring: basic auth needs both a user and a password (HERALD_MONITORING_USER, HERALD_MONITORING_PASSWORD); the dashboard refuses everyone")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", fmt.Sprintf(monitoringCSP, ""))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if err := cop.Check(r); err != nil {
			writeError(w, errStatus(http.StatusForbidden, "cross_origin", "cross-origin request refused: the dashboard changes state only from its own pages"))
			return
		}
		if r.URL.Path == monitoringLoginPath && s.cfg.MonitoringLogin != "" {
			s.monitoringLogin(w, r)
			return
		}
		if !s.monitoringAuthorized(w, r) {
			return
		}
		cw := &cspWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		cw.finish()
	})
}

// monitoringAuthorized lets in a login-link session, then either basic
// auth (when a monitoring user or password is configured) or an API bearer
// token. It answers 401 itself when it returns false.
func (s *server) monitoringAuthorized(w http.ResponseWriter, r *http.Request) bool {
	if s.session != "" {
		if c, err := r.Cookie(monitoringCookie); err == nil && equalSecret(c.Value, s.session) {
			return true
		}
	}
	if s.cfg.MonitoringUser != "" || s.cfg.MonitoringPassword != "" {
		if s.basicOK(r) {
			return true
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="herald monitoring", charset="UTF-8"`)
		writeError(w, errStatus(http.StatusUnauthorized, "unauthorized", "missing or wrong monitoring user or password"))
		return false
	}
	if _, ok := s.tokenName(r); ok {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="herald monitoring"`)
	writeError(w, errStatus(http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token (Authorization: Bearer <token>)"))
	return false
}

// basicOK checks basic-auth credentials. An empty configured or presented
// user or password never matches: a half-configured dashboard is closed,
// not open.
func (s *server) basicOK(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if !ok || u == "" || p == "" || s.cfg.MonitoringUser == "" || s.cfg.MonitoringPassword == "" {
		return false
	}
	// Both compared every time, so timing tells nothing about which failed.
	uok := equalSecret(u, s.cfg.MonitoringUser)
	pok := equalSecret(p, s.cfg.MonitoringPassword)
	return uok && pok
}

// monitoringLogin turns a valid login link into a session cookie and
// sends the browser on to the dashboard.
func (s *server) monitoringLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, errStatus(http.StatusMethodNotAllowed, "method_not_allowed", "use GET"))
		return
	}
	if !equalSecret(r.URL.Query().Get("token"), s.cfg.MonitoringLogin) {
		writeError(w, errStatus(http.StatusUnauthorized, "unauthorized", "this dashboard login link is not valid"))
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name: monitoringCookie, Value: s.session, Path: "/", // the dashboard and the workflow pages
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: r.TLS != nil || strings.HasPrefix(s.cfg.PublicURL, "https://"),
	})
	http.Redirect(w, r, "/monitoring/", http.StatusSeeOther)
}

// equalSecret compares SHA-256 digests in constant time, so neither the
// content nor the length of want leaks. An empty want matches nothing.
func equalSecret(got, want string) bool {
	if want == "" {
		return false
	}
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// cspWriter holds back an HTML page until it is complete, to allow its
// inline scripts by hash in the Content-Security-Policy; anything else
// passes straight through.
type cspWriter struct {
	http.ResponseWriter
	status  int           // a WriteHeader not yet passed on
	decided bool          // whether the response is known to be HTML or not
	page    *bytes.Buffer // non-nil: an HTML page being held
}

func (w *cspWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *cspWriter) WriteHeader(code int) {
	switch {
	case w.decided && w.page == nil:
		w.ResponseWriter.WriteHeader(code)
	case w.status == 0:
		w.status = code
		if ct := w.Header().Get("Content-Type"); !w.decided && ct != "" {
			w.decide(ct)
		}
	}
}

func (w *cspWriter) Write(p []byte) (int, error) {
	if !w.decided {
		ct := w.Header().Get("Content-Type")
		if ct == "" {
			ct = http.DetectContentType(p)
			w.Header().Set("Content-Type", ct)
		}
		w.decide(ct)
	}
	if w.page != nil {
		return w.page.Write(p)
	}
	return w.ResponseWriter.Write(p)
}

func (w *cspWriter) decide(contentType string) {
	w.decided = true
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "text/html" {
		w.page = &bytes.Buffer{}
		return
	}
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
		w.status = 0
	}
}

// finish sends a held page with its policy.
func (w *cspWriter) finish() {
	if w.page == nil {
		if w.status != 0 {
			w.ResponseWriter.WriteHeader(w.status)
		}
		return
	}
	w.Header().Set("Content-Security-Policy", fmt.Sprintf(monitoringCSP, inlineScriptHashes(w.page.Bytes())))
	w.Header().Del("Content-Length")
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(w.status)
	}
	_, _ = w.ResponseWriter.Write(w.page.Bytes())
}

var scriptRe = regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script\s*>`)
var srcAttrRe = regexp.MustCompile(`(?i)\ssrc\s*=`)

// inlineScriptHashes returns " 'sha256-…'" for each inline script of page.
// The hash is over the script's text as the browser sees it: HTML turns
// CR LF and CR into LF before anything else.
func inlineScriptHashes(page []byte) string {
	var b strings.Builder
	for _, m := range scriptRe.FindAllSubmatch(page, -1) {
		if srcAttrRe.Match(m[1]) {
			continue
		}
		text := bytes.ReplaceAll(m[2], []byte("\r\n"), []byte("\n"))
		text = bytes.ReplaceAll(text, []byte("\r"), []byte("\n"))
		sum := sha256.Sum256(text)
		b.WriteString(" 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'")
	}
	return b.String()
}
