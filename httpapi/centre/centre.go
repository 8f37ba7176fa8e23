package centre

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/text/language"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/preferences"
)

// maxForm bounds a form body; the page posts a few hundred bytes.
const maxForm = 64 << 10

// Config is what the preference centre needs from the binary.
type Config struct {
	// Prefs reads and changes preferences through herald's one write path
	// (consent log, timeline, journeys of topics left end).
	Prefs Preferences
	// Key signs and verifies the links' tokens (preferences.Sign).
	Key []byte
	// Topics are shown with their Labels and Descriptions in the page's
	// language, falling back to DefaultLocale's, then to the name
	// humanised ("product-updates" → "Product updates").
	Topics        map[string]herald.Topic
	DefaultLocale string // the content's default locale; "en" when empty
	// Customer loads a customer; a missing one is herald.ENotFound. Nil
	// serves every token's customer with defaults (English, UTC).
	Customer func(ctx context.Context, id string) (herald.Customer, error)
	Now      func() time.Time // time.Now when nil
	Logger   *slog.Logger     // slog.Default() when nil
}

// Preferences is the write path the centre uses (service.Service).
type Preferences interface {
	Preferences(ctx context.Context, customerID string) (herald.Preferences, error)
	SetPreferences(ctx context.Context, customerID string, p preferences.Patch, actor preferences.Actor, source string) (herald.Preferences, error)
}

type handler struct {
	cfg    Config
	mux    *http.ServeMux
	csrf   *http.CrossOriginProtection
	topics map[string]topicText
}

// topicText is what a topic says about itself, in every locale configured.
type topicText struct {
	label, description localized
}

// New returns the handler for GET/POST /preferences and GET/POST
// /unsubscribe, each taking the signed link's ?token=.
func New(cfg Config) http.Handler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &handler{cfg: cfg, mux: http.NewServeMux(), csrf: http.NewCrossOriginProtection(), topics: map[string]topicText{}}
	def, err := language.Parse(cfg.DefaultLocale)
	if err != nil {
		def = language.English
	}
	for name, t := range cfg.Topics {
		var tt topicText
		var badLabels, badDescriptions []string
		tt.label, badLabels = newLocalized(t.Labels, def)
		tt.description, badDescriptions = newLocalized(t.Descriptions, def)
		if bad := slices.Concat(badLabels, badDescriptions); len(bad) > 0 {
			cfg.Logger.Warn("preference centre: topic texts ignored: not BCP 47 locales, or a locale twice", "topic", name, "locales", bad)
		}
		h.topics[name] = tt
	}
	h.mux.HandleFunc("GET /preferences", h.getPreferences)
	h.mux.HandleFunc("POST /preferences", h.postPreferences)
	h.mux.HandleFunc("GET /unsubscribe", h.getUnsubscribe)
	h.mux.HandleFunc("POST /unsubscribe", h.postUnsubscribe)
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	// The pages hold personal choices and the URL holds a bearer token:
	// never cache them, never leak the URL to another site, never frame.
	hd.Set("Cache-Control", "no-store")
	hd.Set("Referrer-Policy", "same-origin")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", csp)
	h.mux.ServeHTTP(w, r)
}

// session is a verified request: who, in which language.
type session struct {
	token    string
	claims   preferences.Claims
	customer herald.Customer
	lang     string
	text     text
	// locale picks topic labels and descriptions (textLocale).
	locale language.Tag
}

// open verifies the token for purpose and loads the customer. On failure it
// has already answered.
func (h *handler) open(w http.ResponseWriter, r *http.Request, purpose string, plain bool) (session, bool) {
	s := session{token: r.URL.Query().Get("token")}
	s.lang, s.text = pick("", r.Header.Get("Accept-Language"))
	claims, err := preferences.Verify(h.cfg.Key, s.token, h.cfg.Now())
	if err == nil && claims.Purpose != purpose {
		err = herald.Errorf(herald.EInvalid, "token: purpose %s used for %s", claims.Purpose, purpose)
	}
	if err != nil {
		h.cfg.Logger.InfoContext(r.Context(), "preference centre: refused token", "path", r.URL.Path, "error", err)
		h.fail(w, s, http.StatusForbidden, plain)
		return s, false
	}
	s.claims = claims
	s.customer = herald.Customer{ID: claims.CustomerID}
	if h.cfg.Customer != nil {
		c, err := h.cfg.Customer(r.Context(), claims.CustomerID)
		switch {
		case herald.ErrorCode(err) == herald.ENotFound:
			h.fail(w, s, http.StatusNotFound, plain)
			return s, false
		case err != nil:
			h.cfg.Logger.ErrorContext(r.Context(), "preference centre: load customer", "customer_id", claims.CustomerID, "error", err)
			h.fail(w, s, http.StatusInternalServerError, plain)
			return s, false
		}
		if err := preferences.CheckEpoch(claims, c); err != nil {
			h.cfg.Logger.InfoContext(r.Context(), "preference centre: refused token", "path", r.URL.Path, "error", err)
			h.fail(w, s, http.StatusForbidden, plain)
			return s, false
		}
		s.customer = c
	}
	s.lang, s.text = pick(s.customer.Locale, r.Header.Get("Accept-Language"))
	s.locale = textLocale(s.customer.Locale, language.Make(s.lang))
	return s, true
}

func (h *handler) fail(w http.ResponseWriter, s session, status int, plain bool) {
	var title, body string
	switch status {
	case http.StatusForbidden:
		title, body = s.text.ForbiddenTitle, s.text.ForbiddenBody
	case http.StatusNotFound:
		title = s.text.NotFound
	default:
		title = s.text.ServerError
	}
	if plain {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		fmt.Fprintln(w, strings.TrimSpace(title+"\n"+body))
		return
	}
	render(w, status, messagePage{Lang: s.lang, Title: title, Body: body, Error: true})
}

func (h *handler) getPreferences(w http.ResponseWriter, r *http.Request) {
	s, ok := h.open(w, r, preferences.PurposePreferences, false)
	if !ok {
		return
	}
	prefs, err := h.cfg.Prefs.Preferences(r.Context(), s.customer.ID)
	if err != nil {
		h.storeFailed(w, r, s, err)
		return
	}
	render(w, http.StatusOK, h.formPage(s, prefs))
}

func (h *handler) postPreferences(w http.ResponseWriter, r *http.Request) {
	s, ok := h.open(w, r, preferences.PurposePreferences, false)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		h.fail(w, s, http.StatusForbidden, false)
		return
	}
	if err := h.checkForgery(r, s.token); err != nil {
		h.cfg.Logger.WarnContext(r.Context(), "preference centre: refused post", "customer_id", s.customer.ID, "error", err)
		h.fail(w, s, http.StatusForbidden, false)
		return
	}
	cur, err := h.cfg.Prefs.Preferences(r.Context(), s.customer.ID)
	if err != nil {
		h.storeFailed(w, r, s, err)
		return
	}
	patch, qhOK := h.patchFromForm(r.PostForm, cur)
	if !qhOK {
		page := h.formPage(s, cur)
		page.Problem = s.text.QuietInvalid
		page.QuietStart, page.QuietEnd = r.PostForm.Get("quiet_start"), r.PostForm.Get("quiet_end")
		render(w, http.StatusUnprocessableEntity, page)
		return
	}
	if err := patch.Validate(h.cfg.Topics); err != nil {
		h.cfg.Logger.ErrorContext(r.Context(), "preference centre: form made an invalid patch", "customer_id", s.customer.ID, "error", err)
		h.fail(w, s, http.StatusInternalServerError, false)
		return
	}
	saved, err := h.cfg.Prefs.SetPreferences(r.Context(), s.customer.ID, patch, preferences.Actor{Kind: preferences.ActorCustomer}, preferences.SourcePreferencePage)
	if err != nil {
		h.storeFailed(w, r, s, err)
		return
	}
	page := h.formPage(s, saved)
	page.Saved = true
	render(w, http.StatusOK, page)
}

// checkForgery refuses cross-site posts twice over: the form's value is an
// HMAC only this server can make for this token, and the browser's
// Sec-Fetch-Site / Origin / Referer must name this host when present.
func (h *handler) checkForgery(r *http.Request, token string) error {
	want := csrfValue(h.cfg.Key, preferences.PurposePreferences, token)
	if !hmac.Equal([]byte(r.PostForm.Get("csrf")), []byte(want)) {
		return errors.New("form check value missing or wrong")
	}
	if err := h.csrf.Check(r); err != nil {
		return err
	}
	if r.Header.Get("Origin") == "" {
		if ref := r.Header.Get("Referer"); ref != "" {
			u, err := url.Parse(ref)
			if err != nil || u.Host != r.Host {
				return fmt.Errorf("referer host %q is not %q", hostOf(u), r.Host)
			}
		}
	}
	return nil
}

func hostOf(u *url.URL) string {
	if u == nil {
		return ""
	}
	return u.Host
}

func csrfValue(key []byte, purpose, token string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("herald/centre-form\x00" + purpose + "\x00" + token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// patchFromForm turns the submitted form into a patch holding only what
// differs from the effective preferences, so saving an untouched page writes
// nothing to the consent log. Unchecked boxes are absent from a form, so
// every known channel and optional topic is read as on or off.
func (h *handler) patchFromForm(form url.Values, cur herald.Preferences) (preferences.Patch, bool) {
	var p preferences.Patch
	for _, ch := range herald.Channels {
		on := form.Get("channel."+string(ch)) == "on"
		if on != cur.ChannelOn(ch) {
			if p.Channels == nil {
				p.Channels = map[herald.Channel]bool{}
			}
			p.Channels[ch] = on
		}
	}
	for name, t := range h.cfg.Topics {
		if t.Required {
			continue
		}
		on := form.Get("topic."+name) == "on"
		if on != preferences.TopicOn(t, cur) {
			if p.Topics == nil {
				p.Topics = map[string]bool{}
			}
			p.Topics[name] = on
		}
	}
	if paused := form.Get("paused") == "on"; paused != cur.Paused {
		p.Paused = &paused
	}
	start, end := formTime(form.Get("quiet_start")), formTime(form.Get("quiet_end"))
	switch {
	case start == "" && end == "":
		p.ClearQuietHours = cur.QuietHours != nil
	case start == "" || end == "" || start == end:
		return p, false
	default:
		qh := herald.QuietHours{Start: start, End: end}
		if cur.QuietHours == nil || *cur.QuietHours != qh {
			p.QuietHours = &qh
			if (preferences.Patch{QuietHours: &qh}).Validate(nil) != nil {
				return p, false
			}
		}
	}
	return p, true
}

// formTime accepts what <input type=time> sends: "HH:MM" or "HH:MM:SS".
func formTime(v string) string {
	v = strings.TrimSpace(v)
	if len(v) == 8 && v[5] == ':' {
		v = v[:5]
	}
	return v
}

func (h *handler) getUnsubscribe(w http.ResponseWriter, r *http.Request) {
	s, ok := h.open(w, r, preferences.PurposeUnsubscribe, false)
	if !ok {
		return
	}
	page := unsubscribePage{Lang: s.lang, T: s.text, Token: s.token}
	topic, known := h.cfg.Topics[s.claims.Topic]
	switch {
	case s.claims.Topic == "":
		page.Question = s.text.UnsubAllQuestion
	case known && topic.Required:
		render(w, http.StatusOK, messagePage{Lang: s.lang, Title: s.text.UnsubTitle, Body: s.text.UnsubRequired})
		return
	default:
		page.Question = fmt.Sprintf(s.text.UnsubQuestion, h.label(s, s.claims.Topic))
	}
	render(w, http.StatusOK, page)
}

// postUnsubscribe is RFC 8058 one-click unsubscribe. Mail providers post
// `List-Unsubscribe=One-Click` from their servers, with no cookie, no form
// value and no Origin: the signed token is the only credential, so there is
// no forgery check here (a forger would need the token, which already
// grants this). The confirmation page posts the same body plus from=page to
// get a page back instead of the short text.
func (h *handler) postUnsubscribe(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	// Both encodings RFC 8058 allows; a body that does not parse is
	// simply not One-Click and gets a 400 below.
	_ = r.ParseMultipartForm(maxForm)
	fromPage := r.PostFormValue("from") == "page"
	s, ok := h.open(w, r, preferences.PurposeUnsubscribe, !fromPage)
	if !ok {
		return
	}
	if r.PostFormValue("List-Unsubscribe") != "One-Click" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintln(w, "expected the body List-Unsubscribe=One-Click (RFC 8058)")
		return
	}
	var (
		patch preferences.Patch
		done  string
	)
	topic, known := h.cfg.Topics[s.claims.Topic]
	switch {
	case s.claims.Topic == "":
		// A link without a topic means "stop everything I can stop".
		patch.Paused = ptr(true)
		done = s.text.UnsubAllDone
	case known && topic.Required:
		h.answer(w, s, fromPage, http.StatusBadRequest, s.text.UnsubRequired)
		return
	default:
		// A topic since removed from the configuration is still recorded:
		// the customer's no must hold if the topic comes back.
		patch.Topics = map[string]bool{s.claims.Topic: false}
		done = fmt.Sprintf(s.text.UnsubDone, h.label(s, s.claims.Topic))
	}
	_, err := h.cfg.Prefs.SetPreferences(r.Context(), s.customer.ID, patch, preferences.Actor{Kind: preferences.ActorCustomer}, preferences.SourceOneClickUnsubscribe)
	if err != nil {
		h.cfg.Logger.ErrorContext(r.Context(), "unsubscribe: save", "customer_id", s.customer.ID, "error", err)
		h.answer(w, s, fromPage, http.StatusInternalServerError, s.text.ServerError)
		return
	}
	h.cfg.Logger.InfoContext(r.Context(), "unsubscribed", "customer_id", s.customer.ID, "topic", s.claims.Topic, "channel", s.claims.Channel, "from_page", fromPage)
	h.answer(w, s, fromPage, http.StatusOK, done)
}

func (h *handler) answer(w http.ResponseWriter, s session, page bool, status int, msg string) {
	if page {
		render(w, status, messagePage{Lang: s.lang, Title: s.text.UnsubTitle, Body: msg, Error: status >= 400})
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintln(w, msg)
}

func (h *handler) storeFailed(w http.ResponseWriter, r *http.Request, s session, err error) {
	h.cfg.Logger.ErrorContext(r.Context(), "preference centre: store", "customer_id", s.customer.ID, "error", err)
	h.fail(w, s, http.StatusInternalServerError, false)
}

// label names a topic for the customer; a topic since removed from the
// configuration still gets its humanised name.
func (h *handler) label(s session, topic string) string {
	if l := h.topics[topic].label.get(s.locale); l != "" {
		return l
	}
	return humanize(topic)
}

func (h *handler) formPage(s session, prefs herald.Preferences) formPage {
	tz := s.customer.Timezone
	if s.customer.Location() == time.UTC {
		tz = "UTC"
	}
	p := formPage{
		Lang:   s.lang,
		T:      s.text,
		Token:  s.token,
		CSRF:   csrfValue(h.cfg.Key, preferences.PurposePreferences, s.token),
		Paused: prefs.Paused,
		Zone:   fmt.Sprintf(s.text.QuietHint, tz),
	}
	names := make([]string, 0, len(h.cfg.Topics))
	for name := range h.cfg.Topics {
		names = append(names, name)
	}
	// Choices the customer can make first, then the always-on ones.
	sort.Slice(names, func(i, j int) bool {
		ri, rj := h.cfg.Topics[names[i]].Required, h.cfg.Topics[names[j]].Required
		if ri != rj {
			return !ri
		}
		return names[i] < names[j]
	})
	for i, name := range names {
		t := h.cfg.Topics[name]
		row := topicRow{
			ID: fmt.Sprintf("topic-%d", i), Name: name, Label: h.label(s, name),
			Description: h.topics[name].description.get(s.locale),
			On:          preferences.TopicOn(t, prefs), Required: t.Required,
		}
		var describedBy []string
		if row.Description != "" {
			describedBy = append(describedBy, row.ID+"-desc")
		}
		if t.Required {
			describedBy = append(describedBy, "required-note")
		}
		row.DescribedBy = strings.Join(describedBy, " ")
		p.Topics = append(p.Topics, row)
		p.AnyRequired = p.AnyRequired || t.Required
	}
	for _, ch := range herald.Channels {
		label := s.text.ChannelNames[string(ch)]
		if label == "" {
			label = humanize(string(ch))
		}
		p.Channels = append(p.Channels, channelRow{ID: "channel-" + string(ch), Name: string(ch), Label: label, On: prefs.ChannelOn(ch)})
	}
	if prefs.QuietHours != nil {
		p.QuietStart, p.QuietEnd = prefs.QuietHours.Start, prefs.QuietHours.End
	}
	p.Topics = slices.Clip(p.Topics)
	return p
}

func ptr[T any](v T) *T { return &v }
