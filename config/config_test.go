package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
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
		"HERALD_HTTP_ADDR":             "127.0.0.1:9001",
		"HERALD_SIGNING_KEY_FILE":      secretFile,
		"HERALD_API_TOKENS":            "billing:aaaaaaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbbbbbb",
		"HERALD_SMTP_URL":              "smtp://u:hunter2@mail.example.com:587?tls=starttls",
		"HERALD_MAIL_FROM":             "Lumen <hello@example.com>",
		"HERALD_REDIS_CLUSTER_ADDRS":   "127.0.0.1:7000,127.0.0.1:7001",
		"HERALD_PREVIOUS_SIGNING_KEYS": "fedcba9876543210fedcba9876543210, 00112233445566778899aabbccddeeff",
	}))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, "127.0.0.1:9001", c.HTTP.Addr, "env wins")
	require.Equal(t, "https://herald.example.com", c.HTTP.PublicURL, "file value kept, trailing slash trimmed")
	require.Equal(t, 7, c.Worker.Concurrency)
	require.Equal(t, "0123456789abcdef0123456789abcdef", c.SigningKey.Reveal(), "secret read from *_FILE")
	require.Equal(t, []Token{{"billing", "aaaaaaaaaaaaaaaaaaaa"}, {"token-2", "bbbbbbbbbbbbbbbbbbbb"}}, c.API.Tokens)
	require.Equal(t, []string{"127.0.0.1:7000", "127.0.0.1:7001"}, c.Redis.ClusterAddrs)
	require.Equal(t, []Secret{"fedcba9876543210fedcba9876543210", "00112233445566778899aabbccddeeff"}, c.PreviousSigningKeys)

	out := c.Redacted()
	require.NotContains(t, out, "hunter2")
	require.NotContains(t, out, "0123456789abcdef")
	require.NotContains(t, out, "aaaaaaaaaaaaaaaa")
	require.NotContains(t, out, "fedcba9876543210")
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
		{"redis url the client cannot dial", map[string]string{"HERALD_REDIS_URL": "unix:///run/redis.sock"}, nil, "redis.url (HERALD_REDIS_URL): want redis://"},
		{"two redis modes", map[string]string{"HERALD_REDIS_URL": "redis://a:1", "HERALD_REDIS_CLUSTER_ADDRS": "b:2"}, nil, "choose one"},
		{"sentinel without master", map[string]string{"HERALD_REDIS_SENTINEL_ADDRS": "a:1"}, nil, "HERALD_REDIS_SENTINEL_MASTER"},
		{"smtp scheme", map[string]string{"HERALD_SMTP_URL": "imap://x", "HERALD_MAIL_FROM": "a@b"}, nil, "HERALD_SMTP_URL"},
		{"smtp without from", map[string]string{"HERALD_SMTP_URL": "smtp://x:25"}, nil, "HERALD_MAIL_FROM"},
		{"short token", map[string]string{"HERALD_API_TOKENS": "app:short"}, nil, `token "app"`},
		{"short signing key", map[string]string{"HERALD_SIGNING_KEY": "abc"}, nil, "HERALD_SIGNING_KEY"},
		{"short previous signing key", map[string]string{"HERALD_PREVIOUS_SIGNING_KEYS": "0123456789abcdef0123456789abcdef,abc"}, nil, "HERALD_PREVIOUS_SIGNING_KEYS): key 2"},
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
		{"monitoring user without password", map[string]string{"HERALD_MONITORING_USER": "ops"}, nil, "HERALD_MONITORING_PASSWORD"},
		{"monitoring user with empty password", map[string]string{"HERALD_MONITORING_USER": "ops", "HERALD_MONITORING_PASSWORD": ""}, nil, "HERALD_MONITORING_PASSWORD"},
		{"monitoring password too short", map[string]string{"HERALD_MONITORING_USER": "ops", "HERALD_MONITORING_PASSWORD": "hunter2"}, nil, "at least 12"},
		{"monitoring password without user", map[string]string{"HERALD_MONITORING_PASSWORD": "long-enough-password"}, nil, "HERALD_MONITORING_USER"},
		{"negative public rate limit", map[string]string{"HERALD_PUBLIC_RATE_LIMIT": "-1"}, nil, "HERALD_PUBLIC_RATE_LIMIT"},
		{"trusted proxy not an address", map[string]string{"HERALD_TRUSTED_PROXIES": "10.0.0.1,proxy.internal"}, nil, `"proxy.internal"`},
		{"short metrics token", map[string]string{"HERALD_METRICS_TOKEN": "short"}, nil, "HERALD_METRICS_TOKEN"},
		{"short token without a name", map[string]string{"HERALD_API_TOKENS": "foo"}, nil, `token "token-1" is shorter than 16 characters (the variable is name:token`},
		{"negative smtp rate", map[string]string{"HERALD_SMTP_PER_SECOND": "-3"}, nil, "rate_limits.smtp_per_second (HERALD_SMTP_PER_SECOND): -3"},
		{"negative slack rate", map[string]string{"HERALD_SLACK_PER_MINUTE": "-3"}, nil, "rate_limits.slack_per_minute (HERALD_SLACK_PER_MINUTE): -3"},
		{"negative max retry", nil, func(c *Config) { c.Worker.MaxRetry = -1 }, "worker.max_retry: -1"},
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

func TestHTTPProtection(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name      string
		env       map[string]string
		rateLimit int
		proxies   []netip.Prefix
		metrics   string
	}{
		{"defaults", nil, DefaultPublicRateLimit, nil, ""},
		{"rate limit off", map[string]string{"HERALD_PUBLIC_RATE_LIMIT": "0"}, 0, nil, ""},
		{"rate limit set", map[string]string{"HERALD_PUBLIC_RATE_LIMIT": "30"}, 30, nil, ""},
		{
			"proxies and metrics token",
			map[string]string{"HERALD_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7, ::ffff:172.16.0.1, fd00::/8", "HERALD_METRICS_TOKEN": "metrics-token-0123456789"},
			DefaultPublicRateLimit,
			[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.168.1.7/32"), netip.MustParsePrefix("172.16.0.1/32"), netip.MustParsePrefix("fd00::/8")},
			"metrics-token-0123456789",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load("", env(tc.env))
			require.NoError(t, err)
			require.NoError(t, c.Validate())
			require.Equal(t, tc.rateLimit, *c.HTTP.PublicRateLimit)
			require.Equal(t, tc.proxies, c.HTTP.TrustedProxyPrefixes())
			require.Equal(t, tc.metrics, c.HTTP.MetricsToken.Reveal())
			require.NotContains(t, c.Redacted(), "metrics-token")
		})
	}
}

func TestMonitoringCredentialsAccepted(t *testing.T) {
	t.Parallel()
	c, err := load("", env(map[string]string{"HERALD_MONITORING_USER": "ops", "HERALD_MONITORING_PASSWORD": "correct-horse-battery"}))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
}

func TestTopicLabels(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`topics:
  - name: product-updates
    labels: { en: "Product updates", ja: "製品のお知らせ", zh-Hant: "產品消息" }
    descriptions: { en: "New features, once a month", ja: "新機能のご紹介（月1回程度）" }
`), 0o600))
	c, err := load(path, env(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, map[string]string{"en": "Product updates", "ja": "製品のお知らせ", "zh-Hant": "產品消息"}, c.Topics[0].Labels)
	require.Equal(t, "新機能のご紹介（月1回程度）", c.Topics[0].Descriptions["ja"])

	cases := []struct {
		name         string
		labels, desc map[string]string
		want         string
	}{
		{"not a tag", map[string]string{"english": "Product updates"}, nil, `topics[0].labels.english: "english" is not a BCP 47 locale`},
		{"unknown language", map[string]string{"jp": "製品のお知らせ"}, nil, "topics[0].labels.jp"},
		{"same locale twice", map[string]string{"zh-Hant": "產品消息", "zh-hant": "產品消息"}, nil, `"zh-Hant" and "zh-hant" are the same locale`},
		{"empty label", map[string]string{"ko": " "}, nil, "topics[0].labels.ko: empty"},
		{"description key", nil, map[string]string{"en_GB!": "x"}, "topics[0].descriptions.en_GB!"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load("", env(nil))
			require.NoError(t, err)
			c.Topics = []Topic{{Name: "product-updates", Labels: tc.labels, Descriptions: tc.desc}}
			require.ErrorContains(t, c.Validate(), tc.want)
		})
	}
}

// herald dev runs the default topics: each is labelled and described in
// every language the examples are written in.
func TestDefaultTopicsLabelled(t *testing.T) {
	t.Parallel()
	c, err := load("", env(nil))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	entries, err := os.ReadDir(filepath.Join("..", "examples", "templates", "welcome"))
	require.NoError(t, err)
	var locales []string
	for _, e := range entries {
		locales = append(locales, strings.TrimSuffix(e.Name(), ".md"))
	}
	require.Len(t, locales, 6)
	for _, tp := range DefaultTopics() {
		for _, loc := range locales {
			require.NotEmpty(t, tp.Labels[loc], "%s label in %s", tp.Name, loc)
			require.NotEmpty(t, tp.Descriptions[loc], "%s description in %s", tp.Name, loc)
		}
	}

	// The production sample says the same.
	sample, err := load(filepath.Join("..", "deploy", "herald.yaml"), env(nil))
	require.NoError(t, err)
	declared := map[string]Topic{}
	for _, tp := range sample.Topics {
		declared[tp.Name] = tp
	}
	for _, tp := range DefaultTopics() {
		require.Equal(t, tp.Labels, declared[tp.Name].Labels, tp.Name)
		require.Equal(t, tp.Descriptions, declared[tp.Name].Descriptions, tp.Name)
	}
}

// keyFiles writes DKIM key files in every shape Validate meets and returns
// their paths by name.
func keyFiles(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	paths := map[string]string{}
	write := func(name, typ string, der []byte) {
		p := filepath.Join(dir, name+".pem")
		require.NoError(t, os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
		paths[name] = p
	}
	pkcs8 := func(k any) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		require.NoError(t, err)
		return der
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, MinDKIMRSABits)
	require.NoError(t, err)
	write("rsa-pkcs1", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	write("rsa-pkcs8", "PRIVATE KEY", pkcs8(rsaKey))
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	write("ed25519", "PRIVATE KEY", pkcs8(edKey))
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	write("ecdsa", "PRIVATE KEY", pkcs8(ecKey))
	write("rsa-512", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(weakRSA(t)))
	write("garbled", "PRIVATE KEY", []byte("not DER"))
	write("certificate", "CERTIFICATE", []byte("not DER"))
	p := filepath.Join(dir, "not-pem.txt")
	require.NoError(t, os.WriteFile(p, []byte("hunter2\n"), 0o600))
	paths["not-pem"] = p
	return paths
}

// weakRSA is a 512-bit RSA key, which rsa.GenerateKey refuses to make.
func weakRSA(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	p, err := rand.Prime(rand.Reader, 256)
	require.NoError(t, err)
	q, err := rand.Prime(rand.Reader, 256)
	require.NoError(t, err)
	one := big.NewInt(1)
	phi := new(big.Int).Mul(new(big.Int).Sub(p, one), new(big.Int).Sub(q, one))
	e := big.NewInt(65537)
	d := new(big.Int).ModInverse(e, phi)
	require.NotNil(t, d)
	return &rsa.PrivateKey{PublicKey: rsa.PublicKey{N: new(big.Int).Mul(p, q), E: 65537}, D: d, Primes: []*big.Int{p, q}}
}

func TestDKIM(t *testing.T) {
	t.Parallel()
	keys := keyFiles(t)
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte("smtp:\n  dkim:\n    domain: example.com\n    selector: from-file\n    key_file: "+keys["rsa-pkcs1"]+"\n"), 0o600))
	c, err := load(path, env(map[string]string{"HERALD_DKIM_SELECTOR": "herald2026"}))
	require.NoError(t, err)
	require.NoError(t, c.Validate())
	require.Equal(t, DKIM{Domain: "example.com", Selector: "herald2026", KeyFile: keys["rsa-pkcs1"]}, c.SMTP.DKIM, "env wins")

	for _, tt := range []struct{ name, typ string }{
		{"rsa-pkcs1", "*rsa.PrivateKey"},
		{"rsa-pkcs8", "*rsa.PrivateKey"},
		{"ed25519", "ed25519.PrivateKey"},
	} {
		k, err := DKIM{KeyFile: keys[tt.name]}.Key()
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.typ, fmt.Sprintf("%T", k), tt.name)
	}

	c, err = load("", env(nil))
	require.NoError(t, err)
	require.False(t, c.SMTP.DKIM.Enabled(), "off by default")
}

func TestValidateDKIM(t *testing.T) {
	t.Parallel()
	keys := keyFiles(t)
	dkim := func(domain, selector, key string) map[string]string {
		m := map[string]string{}
		for k, v := range map[string]string{"HERALD_DKIM_DOMAIN": domain, "HERALD_DKIM_SELECTOR": selector, "HERALD_DKIM_KEY_FILE": key} {
			if v != "" {
				m[k] = v
			}
		}
		return m
	}
	cases := []struct {
		name string
		env  map[string]string
		want []string // every one appears in the error
	}{
		{"no domain", dkim("", "s1", keys["ed25519"]), []string{"smtp.dkim.domain (HERALD_DKIM_DOMAIN)", "set all three or none"}},
		{"no selector", dkim("example.com", "", keys["ed25519"]), []string{"smtp.dkim.selector (HERALD_DKIM_SELECTOR)", "set all three or none"}},
		{"no key file", dkim("example.com", "s1", ""), []string{"smtp.dkim.key_file (HERALD_DKIM_KEY_FILE)", "set all three or none"}},
		{"domain only", dkim("example.com", "", ""), []string{"HERALD_DKIM_SELECTOR", "HERALD_DKIM_KEY_FILE"}},
		{"bad domain", dkim("example .com", "s1", keys["ed25519"]), []string{"smtp.dkim.domain (HERALD_DKIM_DOMAIN)", "not a domain name"}},
		{"bad selector", dkim("example.com", "s1; h=From", keys["ed25519"]), []string{"smtp.dkim.selector (HERALD_DKIM_SELECTOR)"}},
		{"missing key file", dkim("example.com", "s1", "/nonexistent/dkim.pem"), []string{"smtp.dkim.key_file (HERALD_DKIM_KEY_FILE)", "/nonexistent/dkim.pem"}},
		{"not PEM", dkim("example.com", "s1", keys["not-pem"]), []string{"HERALD_DKIM_KEY_FILE", "no PEM block"}},
		{"certificate", dkim("example.com", "s1", keys["certificate"]), []string{"HERALD_DKIM_KEY_FILE", `"CERTIFICATE" PEM block`}},
		{"garbled key", dkim("example.com", "s1", keys["garbled"]), []string{"HERALD_DKIM_KEY_FILE", "does not parse"}},
		{"RSA too small", dkim("example.com", "s1", keys["rsa-512"]), []string{"HERALD_DKIM_KEY_FILE", "512 bits, want at least 1024"}},
		{"ECDSA key", dkim("example.com", "s1", keys["ecdsa"]), []string{"HERALD_DKIM_KEY_FILE", "want RSA or Ed25519"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load("", env(tc.env))
			require.NoError(t, err)
			err = c.Validate()
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
			require.NotContains(t, err.Error(), "hunter2", "never the key file's content")
		})
	}
}

// Each role's needs are named with their field and variable; a complete
// config needs nothing more.
func TestNeeds(t *testing.T) {
	t.Parallel()
	full := map[string]string{
		"HERALD_REDIS_URL":   "redis://127.0.0.1:6379/0",
		"HERALD_SMTP_URL":    "smtp://127.0.0.1:25?tls=none",
		"HERALD_MAIL_FROM":   "Lumen <hello@lumen.example>",
		"HERALD_SIGNING_KEY": "0123456789abcdef0123456789abcdef",
		"HERALD_API_TOKENS":  "web:web-token-0123456789",
		"HERALD_TEMPLATES":   "/srv/herald/templates",
	}
	without := func(keys ...string) map[string]string {
		m := map[string]string{}
		for k, v := range full {
			m[k] = v
		}
		for _, k := range keys {
			delete(m, k)
		}
		return m
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		role Role
		want []string // each problem's start, in order; none for a config that is ready
	}{
		{"ready to run", full, RoleRun, nil},
		{"worker needs no API token", without("HERALD_API_TOKENS"), RoleWorker, nil},
		{"serve needs an API token", without("HERALD_API_TOKENS"), RoleServe, []string{"api.tokens (HERALD_API_TOKENS): required by herald serve"}},
		{"no redis", without("HERALD_REDIS_URL"), RoleWorker, []string{"redis.url (HERALD_REDIS_URL): required by herald worker"}},
		{"sentinel is redis", func() map[string]string {
			m := without("HERALD_REDIS_URL")
			m["HERALD_REDIS_SENTINEL_MASTER"], m["HERALD_REDIS_SENTINEL_ADDRS"] = "mymaster", "10.0.0.1:26379"
			return m
		}(), RoleRun, nil},
		{"cluster is redis", func() map[string]string {
			m := without("HERALD_REDIS_URL")
			m["HERALD_REDIS_CLUSTER_ADDRS"] = "10.0.0.1:7000"
			return m
		}(), RoleRun, nil},
		{"no channel", without("HERALD_SMTP_URL", "HERALD_MAIL_FROM"), RoleRun, []string{"smtp.url (HERALD_SMTP_URL) or slack.token (HERALD_SLACK_TOKEN): required by herald run: at least one channel"}},
		{"slack is a channel", func() map[string]string {
			m := without("HERALD_SMTP_URL", "HERALD_MAIL_FROM")
			m["HERALD_SLACK_TOKEN"] = "xoxb-1"
			return m
		}(), RoleRun, nil},
		{"nothing set", map[string]string{}, RoleRun, []string{
			"redis.url (HERALD_REDIS_URL): required by herald run",
			"smtp.url (HERALD_SMTP_URL) or slack.token (HERALD_SLACK_TOKEN): required by herald run",
			"signing_key (HERALD_SIGNING_KEY): required by herald run",
			"api.tokens (HERALD_API_TOKENS): required by herald run",
			"content.templates (HERALD_TEMPLATES): required by herald run",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := load("", env(tc.env))
			require.NoError(t, err)
			require.NoError(t, c.Validate())
			err = c.Needs(tc.role)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			lines := strings.Split(err.Error(), "\n")
			require.Len(t, lines, len(tc.want), err.Error())
			for i, w := range tc.want {
				require.True(t, strings.HasPrefix(lines[i], w), "line %d: %q, want %q", i, lines[i], w)
			}
		})
	}
}

// LoadFor reports a bad variable, a bad field and a missing setting in one
// go, one line each, rather than one per start attempt.
func TestLoadForReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	c, err := loadFor("", RoleRun, env(map[string]string{
		"HERALD_WORKER_CONCURRENCY": "lots",
		"HERALD_REDIS_URL":          "redis://:hunter2@10.0.0.5:6379/zero",
		"HERALD_SMTP_URL":           "smtp://127.0.0.1:25",
		"HERALD_MAIL_FROM":          "not an address",
		"HERALD_LOG_LEVEL":          "loud",
		"HERALD_TEMPLATES":          "/srv/herald/templates",
	}))
	require.Error(t, err)
	require.Equal(t, 20, c.Worker.Concurrency, "the bad variable's field keeps its default")
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{
		`HERALD_WORKER_CONCURRENCY: "lots" is not a whole number`,
		"redis.url (HERALD_REDIS_URL): the database after the host must be a number such as /0",
		`smtp.from (HERALD_MAIL_FROM): "not an address" is not an address`,
		`log.level (HERALD_LOG_LEVEL): "loud"`,
		"signing_key (HERALD_SIGNING_KEY): required by herald run",
		"api.tokens (HERALD_API_TOKENS): required by herald run",
	} {
		require.True(t, slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }), "missing %q in:\n%s", want, err)
	}
	require.Len(t, lines, 6, err.Error())
	require.NotContains(t, err.Error(), "hunter2")

	// A file that does not parse is reported alone: nothing else can be trusted.
	path := filepath.Join(t.TempDir(), "herald.yaml")
	require.NoError(t, os.WriteFile(path, []byte("worker:\n  concurency: 3\n"), 0o600))
	_, err = loadFor(path, RoleRun, env(map[string]string{"HERALD_LOG_LEVEL": "loud"}))
	require.ErrorContains(t, err, "concurency")
	require.NotContains(t, err.Error(), "HERALD_LOG_LEVEL")
}

func TestParseRole(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"run", "worker", "serve"} {
		r, err := ParseRole(s)
		require.NoError(t, err)
		require.Equal(t, Role(s), r)
	}
	_, err := ParseRole("dev")
	require.ErrorContains(t, err, "want run, worker or serve")
	require.True(t, RoleRun.HTTP())
	require.True(t, RoleServe.HTTP())
	require.False(t, RoleWorker.HTTP())
}
