package ack

import (
	"crypto/sha256"
	"encoding/hex"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/preferences"
)

// Click serves GET /r/{token}: a tracked email link. A valid token records
// the click and redirects to the URL signed into it; anything else is a 403
// page with no redirect, so herald is never an open redirect.
type Click struct {
	Engine *engine.Engine
	// Key is the signing key of the tokens (HERALD_SIGNING_KEY).
	Key    []byte
	Logger *slog.Logger
	Now    func() time.Time
}

// ClickWindow is the span in which repeated clicks on one link count once.
const ClickWindow = 10 * time.Minute

func (h *Click) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	// The token must not travel on to the target, nor be cached anywhere.
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	c, err := preferences.Verify(h.Key, r.PathValue("token"), now())
	if err == nil && c.Purpose != preferences.PurposeClick {
		err = herald.Errorf(herald.EInvalid, "token: purpose %s used for a link", c.Purpose)
	}
	var target *url.URL
	if err == nil {
		target, err = url.Parse(c.URL)
		if err == nil && ((target.Scheme != "http" && target.Scheme != "https") || target.Host == "") {
			err = herald.Errorf(herald.EInvalid, "token: target is not an http(s) URL")
		}
	}
	if err != nil {
		log.Warn("tracked link refused", "reason", herald.ErrorMessage(err))
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(http.StatusForbidden)
		_ = refused.Execute(w, nil)
		return
	}
	// HEAD is what link checkers send: answer it without counting a click.
	if r.Method == http.MethodGet {
		// Clicks on one link within a window are one acknowledgement: a
		// reload, a double click or a scanner opening it again records
		// nothing more, and cannot push other lines out of the timeline.
		at := now().UTC()
		window := at.Truncate(ClickWindow).Unix()
		sum := sha256.Sum256([]byte(c.CustomerID + "\x00" + c.Message + "\x00" + c.URL + "\x00" + c.Event + "\x00" + strconv.FormatInt(window, 10)))
		a := engine.Ack{
			ID: "click_" + hex.EncodeToString(sum[:12]), Kind: engine.AckClick, CustomerID: c.CustomerID, MessageID: c.Message,
			Channel: herald.ChannelEmail, Event: c.Event, URL: c.URL, At: at,
		}
		// The customer gets where they were going even if Redis is down.
		if err := h.Engine.Acknowledge(r.Context(), a, nil); err != nil {
			log.Error("tracked click not recorded", "customer", c.CustomerID, "message", c.Message, "err", err)
		}
	}
	http.Redirect(w, r, c.URL, http.StatusFound)
}

var refused = template.Must(template.New("refused").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Link not valid</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem">
<h1>This link is not valid</h1>
<p>It may have been changed or cut short, or it is too old. Please use the link from the original email.</p>
</body></html>
`))
