package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWebhooksConfig(t *testing.T) {
	t.Setenv("HERALD_WEBHOOK_APP_SECRET", "0123456789abcdef-app")
	t.Setenv("HERALD_WEBHOOK_SHORT_SECRET", "short")
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`webhooks:
  - name: app
    url: https://app.example.com/herald/events
    events: [message.sent, message.failed, journey.completed]
    secret_env: HERALD_WEBHOOK_APP_SECRET
`), 0o600))
	c, err := load(path, env(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "0123456789abcdef-app", c.Webhooks[0].Secret().Reveal())
	require.NotContains(t, c.Redacted(), "0123456789abcdef-app")

	ok := Webhook{Name: "app", URL: "https://app.example.com/h", Events: []string{"message.sent"}, SecretEnv: "HERALD_WEBHOOK_APP_SECRET"}
	cases := []struct {
		name string
		edit func(w *Webhook)
		want string
	}{
		{"ftp url", func(w *Webhook) { w.URL = "ftp://app.example.com/h" }, `webhooks[0].url: "ftp://app.example.com/h": want an http:// or https:// URL`},
		{"no host", func(w *Webhook) { w.URL = "https:///h" }, `webhooks[0].url`},
		{"password in url", func(w *Webhook) { w.URL = "https://u:p@app.example.com/h" }, `webhooks[0].url: must not carry a user or password`},
		{"unknown event", func(w *Webhook) { w.Events = []string{"message.opened"} }, `webhooks[0].events: unknown event type "message.opened" (known: message.sent,`},
		{"no events", func(w *Webhook) { w.Events = nil }, `webhooks[0].events: list at least one event type`},
		{"twice", func(w *Webhook) { w.Events = []string{"message.sent", "message.sent"} }, `"message.sent" is listed twice`},
		{"no secret_env", func(w *Webhook) { w.SecretEnv = "" }, `webhooks[0].secret_env: name the environment variable holding the signing secret, e.g. HERALD_WEBHOOK_APP_SECRET`},
		{"missing secret", func(w *Webhook) { w.SecretEnv = "HERALD_WEBHOOK_NOPE_SECRET" }, `webhooks[0].secret_env: HERALD_WEBHOOK_NOPE_SECRET is not set`},
		{"short secret", func(w *Webhook) { w.SecretEnv = "HERALD_WEBHOOK_SHORT_SECRET" }, `shorter than 16 characters`},
		{"bad name", func(w *Webhook) { w.Name = "My App" }, `webhooks[0].name: "My App"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := load("", env(nil))
			require.NoError(t, err)
			w := ok
			tc.edit(&w)
			c.Webhooks = []Webhook{w}
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
	c, err = load("", env(nil))
	require.NoError(t, err)
	c.Webhooks = []Webhook{ok, ok}
	require.ErrorContains(t, c.Validate(), `webhooks[1].name: "app" is used by an earlier webhook`)
}
