package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/webhooks"
	"github.com/stretchr/testify/require"
)

// A configured webhook gets a signed message.sent for a message the
// worker sends: the worker listens on the webhooks queue and the engine
// emits to it.
func TestWebhookWiredEndToEnd(t *testing.T) {
	secret := "whsec-end-to-end-0123456789"
	t.Setenv("HERALD_WEBHOOK_APP_SECRET", secret)
	var mu sync.Mutex
	var got []webhooks.Event
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := webhooks.Verify([]byte(secret), r.Header.Get(webhooks.SignatureHeader), body, time.Now(), time.Minute); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var ev webhooks.Event
		if err := json.Unmarshal(body, &ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
	}))
	defer rcv.Close()
	d := startDevWith(t, func(c *config.Config) {
		c.Webhooks = []config.Webhook{{Name: "app", URL: rcv.URL, Events: []string{webhooks.MessageSent}, SecretEnv: "HERALD_WEBHOOK_APP_SECRET"}}
	})
	id, err := d.Main.Engine.Send(context.Background(), wireMessage("demo", "nudge", "onboarding", map[string]any{"dashboard_url": "https://app.lumen.example/"}))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	}, 10*time.Second, 20*time.Millisecond, "message.sent reaches the app")
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, webhooks.MessageSent, got[0].Type)
	require.Equal(t, "demo", got[0].CustomerID)
	require.Equal(t, id, got[0].Message.ID)
	require.Equal(t, "nudge", got[0].Message.Template)
}

// herald validate refuses a webhook that could never work, naming the field.
func TestValidateRefusesBadWebhooks(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`webhooks:
  - name: app
    url: ftp://app.example.com/events
    events: [message.sent, message.opened]
    secret_env: HERALD_WEBHOOK_UNSET_FOR_TEST
`), 0o600))
	out, _, err := runCLI(t, "validate", "--config", path)
	require.Error(t, err)
	require.Contains(t, out, `webhooks[0].url: "ftp://app.example.com/events": want an http:// or https:// URL`)
	require.Contains(t, out, `webhooks[0].events: unknown event type "message.opened"`)
	require.Contains(t, out, `webhooks[0].secret_env: HERALD_WEBHOOK_UNSET_FOR_TEST is not set`)
}

// With webhooks on, the worker listens on their queue, below every other.
func TestWebhooksQueueIsLowest(t *testing.T) {
	t.Parallel()
	m := &Main{}
	qs := map[string]int{"critical": 6, "default": 4, "bulk": 2, "email": 1}
	require.Equal(t, qs, m.workerQueues(qs), "no webhooks, no queue")
	m.webhooks = &webhooks.Service{}
	require.Equal(t, map[string]int{"critical": 12, "default": 8, "bulk": 4, "email": 2, "webhooks": 1}, m.workerQueues(qs))
	named := map[string]int{"critical": 6, "webhooks": 3}
	require.Equal(t, named, m.workerQueues(named), "a queue list that names it is kept")
}
