package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	c, err := load("", env(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "127.0.0.1:8080", c.HTTP.Addr)
	require.Equal(t, "http://127.0.0.1:8080", c.HTTP.PublicURL)
	require.Equal(t, 6, c.Worker.Queues["critical"])
	require.Equal(t, 90*24*time.Hour, c.TokenTTL)
	require.True(t, *c.Monitoring.ReadOnly)
	require.NotEmpty(t, c.Topics)
}

func TestEnvWinsOverFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte("http:\n  addr: 0.0.0.0:9000\n  public_url: https://herald.example.com/\nworker:\n  concurrency: 7\n"), 0o600))
	secretFile := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600))
	c, err := load(path, env(map[string]string{
		"HERALD_HTTP_ADDR":           "127.0.0.1:9001",
		"HERALD_SIGNING_KEY_FILE":    secretFile,
		"HERALD_API_TOKENS":          "billing:aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb",
		"HERALD_SMTP_URL":            "smtp://u:hunter2@mail.example.com:587?tls=starttls",
		"HERALD_MAIL_FROM":           "Lumen <hello@example.com>",
		"HERALD_REDIS_CLUSTER_ADDRS": "127.0.0.1:7000,127.0.0.1:7001",
	}))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "127.0.0.1:9001", c.HTTP.Addr, "env wins")
	require.Equal(t, "https://herald.example.com", c.HTTP.PublicURL, "file value kept, trailing slash trimmed")
	require.Equal(t, 7, c.Worker.Concurrency)
	require.Equal(t, "0123456789abcdef0123456789abcdef", c.SigningKey.Reveal(), "secret read from *_FILE")
	require.Equal(t, []Token{{"billing", "aaaaaaaaaaaaaaaaaaaa"}, {"token-2", "bbbbbbbbbbbbbbbbbbbb"}}, c.API.Tokens)
	require.Equal(t, []string{"127.0.0.1:7000", "127.0.0.1:7001"}, c.Redis.ClusterAddrs)

	out := c.Redacted()
	require.NotContains(t, out, "hunter2")
	require.NotContains(t, out, "0123456789abcdef")
	require.NotContains(t, out, "aaaaaaaaaaaaaaaa")
}

func TestUnknownFieldNamed(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte("worker:\n  concurency: 3\n"), 0o600))
	_, err := load(path, env(nil))
	require.ErrorContains(t, err, "concurency")
}

// The YAML library panics on an empty tag where a list belongs; the file is
// reported as malformed instead.
func TestMalformedTagIsAnError(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte("topics: !\n"), 0o600))
	_, err := load(path, env(nil))
	require.ErrorContains(t, err, "malformed YAML")
}

func TestValidateNamesTheField(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		env  map[string]string
		edit func(*Config)
		want string
	}{
		{"redis url", map[string]string{"HERALD_REDIS_URL": "http://x"}, nil, "HERALD_REDIS_URL"},
		{"two redis modes", map[string]string{"HERALD_REDIS_URL": "redis://a:1", "HERALD_REDIS_CLUSTER_ADDRS": "b:2"}, nil, "choose one"},
		{"sentinel without master", map[string]string{"HERALD_REDIS_SENTINEL_ADDRS": "a:1"}, nil, "HERALD_REDIS_SENTINEL_MASTER"},
		{"smtp scheme", map[string]string{"HERALD_SMTP_URL": "imap://x", "HERALD_MAIL_FROM": "a@b"}, nil, "HERALD_SMTP_URL"},
		{"smtp without from", map[string]string{"HERALD_SMTP_URL": "smtp://x:25"}, nil, "HERALD_MAIL_FROM"},
		{"short token", map[string]string{"HERALD_API_TOKENS": "app:short"}, nil, `token "app"`},
		{"short signing key", map[string]string{"HERALD_SIGNING_KEY": "abc"}, nil, "HERALD_SIGNING_KEY"},
		{"http addr", map[string]string{"HERALD_HTTP_ADDR": "nonsense"}, nil, "HERALD_HTTP_ADDR"},
		{"log level", map[string]string{"HERALD_LOG_LEVEL": "loud"}, nil, "HERALD_LOG_LEVEL"},
		{"cap max", nil, func(c *Config) { c.Caps = []Cap{{Class: "marketing", Per: time.Hour, Action: "defer"}} }, "caps[0].max"},
		{"cap action", nil, func(c *Config) { c.Caps = []Cap{{Class: "m", Max: 1, Per: time.Hour, Action: "explode"}} }, "caps[0].action"},
		{"topic dup", nil, func(c *Config) { c.Topics = append(c.Topics, c.Topics[0]) }, "declared twice"},
		{"queue weight", nil, func(c *Config) { c.Worker.Queues["bulk"] = 0 }, "worker.queues.bulk"},
		{"missing queue", nil, func(c *Config) { delete(c.Worker.Queues, "default") }, `queue "default" is missing`},
		{"shutdown below delivery", nil, func(c *Config) { c.Worker.ShutdownTimeout, c.Worker.DeliveryTimeout = 25*time.Second, 60*time.Second }, "worker.shutdown_timeout"},
		{"shutdown inside the reserve", nil, func(c *Config) { c.Worker.ShutdownTimeout, c.Worker.DeliveryTimeout = 34*time.Second, 30*time.Second }, "send reserve"},
		{"bypass not required", nil, func(c *Config) { c.Topics[0].BypassQuietHours = true }, "bypass_quiet_hours"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load("", env(tc.env))
			require.NoError(t, err)
			if tc.edit != nil {
				tc.edit(&c)
			}
			err = c.Validate()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.False(t, strings.Contains(err.Error(), "hunter2"))
		})
	}
}
