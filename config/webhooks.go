package config

import (
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/heraldhq/herald/webhooks"
)

// Webhook is an app endpoint that is told what happened to messages and
// journeys:
//
//	webhooks:
//	  - name: app
//	    url: https://app.example.com/herald/events
//	    events: [message.sent, message.failed, journey.completed]
//	    secret_env: HERALD_WEBHOOK_APP_SECRET
//
// Each event is a JSON POST signed with the secret read from the
// environment variable secret_env (Herald-Signature: t=…,v1=…).
type Webhook struct {
	Name      string   `yaml:"name"`
	URL       string   `yaml:"url"`
	Events    []string `yaml:"events"`
	SecretEnv string   `yaml:"secret_env"`
}

var webhookNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// Secret reads the endpoint's signing secret from its environment
// variable.
func (w Webhook) Secret() Secret {
	v, _ := os.LookupEnv(w.SecretEnv)
	return Secret(strings.TrimSpace(v))
}

// validateWebhooks checks every endpoint: a unique name, an http(s) URL,
// known event types, a secret present in the environment.
func validateWebhooks(ws []Webhook, bad func(field, format string, args ...any)) {
	seen := map[string]bool{}
	for i, w := range ws {
		field := func(name string) string { return fmt.Sprintf("webhooks[%d].%s", i, name) }
		switch {
		case !webhookNameRe.MatchString(w.Name):
			bad(field("name"), "%q: use 1-40 lower-case letters, digits, '-' or '_'", w.Name)
		case seen[w.Name]:
			bad(field("name"), "%q is used by an earlier webhook", w.Name)
		}
		seen[w.Name] = true
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(field("url"), "%q: want an http:// or https:// URL", w.URL)
		} else if u.User != nil {
			bad(field("url"), "must not carry a user or password: requests are signed instead")
		}
		if len(w.Events) == 0 {
			bad(field("events"), "list at least one event type (%s)", strings.Join(webhooks.Types, ", "))
		}
		for j, e := range w.Events {
			if !webhooks.ValidType(e) {
				bad(field("events"), "unknown event type %q (known: %s)", e, strings.Join(webhooks.Types, ", "))
			} else if slices.Contains(w.Events[:j], e) {
				bad(field("events"), "%q is listed twice", e)
			}
		}
		switch {
		case w.SecretEnv == "":
			bad(field("secret_env"), "name the environment variable holding the signing secret, e.g. HERALD_WEBHOOK_%s_SECRET", strings.ToUpper(strings.ReplaceAll(w.Name, "-", "_")))
		case len(w.Secret()) == 0:
			bad(field("secret_env"), "%s is not set: the signing secret is required", w.SecretEnv)
		case len(w.Secret()) < 16:
			bad(field("secret_env"), "%s is shorter than 16 characters: use a long random secret", w.SecretEnv)
		}
	}
}
