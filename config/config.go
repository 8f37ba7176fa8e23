package config

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"golang.org/x/text/language"
)

// Secret is a string that never prints.
type Secret string

// String implements fmt.Stringer without revealing the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// LogValue keeps secrets out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps secrets out of JSON dumps.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(strconv.Quote(s.String())), nil }

// Reveal returns the value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Config is everything herald needs to run.
type Config struct {
	Redis      Redis      `yaml:"redis"`
	SMTP       SMTP       `yaml:"smtp"`
	Slack      Slack      `yaml:"slack"`
	HTTP       HTTP       `yaml:"http"`
	API        API        `yaml:"api"`
	Monitoring Monitoring `yaml:"monitoring"`
	Worker     Worker     `yaml:"worker"`
	Content    Content    `yaml:"content"`
	Topics     []Topic    `yaml:"topics"`
	Caps       []Cap      `yaml:"caps"`
	RateLimits RateLimits `yaml:"rate_limits"`
	Log        Log        `yaml:"log"`
	// SigningKey signs preference-centre and unsubscribe links (HMAC-SHA256)
	// and seals the Message-ID of every email.
	SigningKey Secret `yaml:"-"`
	// PreviousSigningKeys are signing keys replaced by SigningKey, kept so
	// that replies to email sent under them still find their message
	// (HERALD_PREVIOUS_SIGNING_KEYS, comma-separated). Links signed with
	// them stay invalid.
	PreviousSigningKeys []Secret `yaml:"-"`
	// TokenTTL is how long a signed link stays valid. Default 90 days.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// ClickTracking rewrites {{ track }} links through /r/{token}. Default off.
	ClickTracking bool `yaml:"click_tracking"`
	// Webhooks are app endpoints told what happened to messages and journeys.
	Webhooks []Webhook `yaml:"webhooks"`
}

// Redis says where Redis is: one URL, a Sentinel group, or a Cluster.
type Redis struct {
	URL              Secret        `yaml:"-"`               // HERALD_REDIS_URL: redis:// or rediss://
	SentinelMaster   string        `yaml:"sentinel_master"` // HERALD_REDIS_SENTINEL_MASTER
	SentinelAddrs    []string      `yaml:"sentinel_addrs"`  // HERALD_REDIS_SENTINEL_ADDRS
	SentinelPassword Secret        `yaml:"-"`               // HERALD_REDIS_SENTINEL_PASSWORD
	ClusterAddrs     []string      `yaml:"cluster_addrs"`   // HERALD_REDIS_CLUSTER_ADDRS
	Password         Secret        `yaml:"-"`               // HERALD_REDIS_PASSWORD (Sentinel/Cluster nodes)
	DB               int           `yaml:"db"`              // Sentinel only
	DialTimeout      time.Duration `yaml:"dial_timeout"`    // default 5s
}

// SMTP is the email relay.
type SMTP struct {
	URL  Secret `yaml:"-"`    // HERALD_SMTP_URL: smtp://user:pass@host:port?tls=none|starttls|tls
	From string `yaml:"from"` // HERALD_MAIL_FROM: "Lumen <hello@example.com>"
	// ReplyTo is the Reply-To address for messages (optional).
	ReplyTo string `yaml:"reply_to"`
	// UnsubscribeMailto adds a mailto: target to List-Unsubscribe (optional).
	UnsubscribeMailto string `yaml:"unsubscribe_mailto"`
	// DKIM signs every email when set (optional).
	DKIM DKIM `yaml:"dkim"`
}

// DKIM is the key emails are signed with (RFC 6376): the private key in
// KeyFile, whose public key is published in DNS as a TXT record at
// <selector>._domainkey.<domain>. Set all three or none.
type DKIM struct {
	Domain   string `yaml:"domain"`   // HERALD_DKIM_DOMAIN: d=, the From domain or a parent of it
	Selector string `yaml:"selector"` // HERALD_DKIM_SELECTOR: s=, e.g. herald2026
	// KeyFile is a PEM file holding an RSA (at least MinDKIMRSABits bits)
	// or Ed25519 private key, PKCS#1 or PKCS#8 (HERALD_DKIM_KEY_FILE).
	KeyFile string `yaml:"key_file"`
}

// MinDKIMRSABits is the smallest RSA key DKIM verifiers accept (RFC 8301).
const MinDKIMRSABits = 1024

// Enabled reports whether any DKIM field is set.
func (d DKIM) Enabled() bool { return d.Domain != "" || d.Selector != "" || d.KeyFile != "" }

// Key reads and parses KeyFile. Its errors name the file, never its content.
func (d DKIM) Key() (crypto.Signer, error) {
	b, err := os.ReadFile(d.KeyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("%s holds no PEM block", d.KeyFile)
	}
	var key any
	switch block.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("%s holds a %q PEM block, want an unencrypted \"PRIVATE KEY\" (PKCS#8) or \"RSA PRIVATE KEY\" (PKCS#1)", d.KeyFile, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: the private key does not parse", d.KeyFile)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < MinDKIMRSABits {
			return nil, fmt.Errorf("%s: RSA key has %d bits, want at least %d (2048 is usual)", d.KeyFile, n, MinDKIMRSABits)
		}
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	default:
		return nil, fmt.Errorf("%s: %T key, want RSA or Ed25519", d.KeyFile, k)
	}
}

// Slack is the Slack workspace.
type Slack struct {
	Token         Secret `yaml:"-"`       // HERALD_SLACK_TOKEN: xoxb-…
	APIURL        string `yaml:"api_url"` // HERALD_SLACK_API_URL: for tests
	SigningSecret Secret `yaml:"-"`       // HERALD_SLACK_SIGNING_SECRET
}

// HTTP is the API server.
type HTTP struct {
	Addr      string `yaml:"addr"`       // HERALD_HTTP_ADDR, default 127.0.0.1:8080
	PublicURL string `yaml:"public_url"` // HERALD_PUBLIC_URL, default http://<addr>
	// MaxBodyBytes caps request bodies (413 beyond). Default 1 MiB.
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// PublicRateLimit is how many requests a minute one client address may
	// make to the public routes (/r/{token}, /preferences, /unsubscribe,
	// /slack/interactions), in process memory; 429 with Retry-After beyond.
	// Default 120; 0 turns it off (HERALD_PUBLIC_RATE_LIMIT).
	PublicRateLimit *int `yaml:"public_rate_limit"`
	// TrustedProxies are the addresses or CIDRs of proxies in front of
	// herald whose X-Forwarded-For is believed for the client address
	// (HERALD_TRUSTED_PROXIES, comma separated). Default none: the header
	// is ignored.
	TrustedProxies []string `yaml:"trusted_proxies"`
	// MetricsToken, when set, is the bearer token /metrics asks for, on the
	// HTTP server and on worker.metrics_addr (HERALD_METRICS_TOKEN). Default
	// none: /metrics is open to whoever reaches the address.
	MetricsToken Secret `yaml:"-"`
}

// TrustedProxyPrefixes returns TrustedProxies as prefixes (a bare address
// is a one-address prefix), skipping any that do not parse (Validate names
// them).
func (h HTTP) TrustedProxyPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, v := range h.TrustedProxies {
		if p, err := parsePrefix(v); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func parsePrefix(v string) (netip.Prefix, error) {
	if strings.Contains(v, "/") {
		p, err := netip.ParsePrefix(v)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// API holds the bearer tokens apps use.
type API struct {
	// Tokens come from HERALD_API_TOKENS: "name:token,name:token" (a bare
	// token is named token-1, token-2, …). The name is recorded in consent and
	// timeline entries.
	Tokens []Token `yaml:"-"`
}

// Token is one named API token.
type Token struct {
	Name  string
	Value Secret
}

// Monitoring protects the embedded asynq dashboard.
type Monitoring struct {
	Username string `yaml:"username"` // HERALD_MONITORING_USER
	Password Secret `yaml:"-"`        // HERALD_MONITORING_PASSWORD
	// ReadOnly hides the dashboard's write actions. Default true.
	ReadOnly *bool `yaml:"read_only"`
}

// Worker tunes the asynq server.
type Worker struct {
	Concurrency int `yaml:"concurrency"` // default 20
	// CriticalConcurrency is how many tasks of the critical queue (required
	// topics) a worker process handles at once, in slots of their own
	// beside Concurrency: a password reset never waits for a slot held by
	// lifecycle or bulk work. Default a quarter of Concurrency, at least 2.
	CriticalConcurrency int `yaml:"critical_concurrency"`
	// Queues maps queue names to priorities. Default critical 6, default 4,
	// bulk 2, and email 1, slack 1 (where older versions queued
	// deliveries). critical, default and bulk are required.
	Queues map[string]int `yaml:"queues"`
	// StrictPriority makes a worker empty a higher queue before it takes
	// from a lower one (default true): a password reset never waits behind
	// marketing, and a busy queue costs no probes of empty ones below it.
	// false: weighted random choice by Queues.
	StrictPriority *bool `yaml:"strict_priority"`
	// ShutdownTimeout is how long a stopping worker lets running tasks
	// finish before putting them back. Default 45s; it must exceed
	// DeliveryTimeout plus the 5s send reserve, or a send still running
	// is put back and sent again by another worker.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// DeliveryTimeout bounds one provider call. Default 30s (whole seconds: asynq rounds).
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	MaxRetry        int           `yaml:"max_retry"` // default 12
	// RetryBase is the first retry delay of a failed delivery, doubling
	// with each attempt up to RetryMax. Defaults 10s and 1h
	// (HERALD_WORKER_RETRY_BASE, HERALD_WORKER_RETRY_MAX).
	RetryBase time.Duration `yaml:"retry_base"`
	RetryMax  time.Duration `yaml:"retry_max"`
	// WatchdogInterval is the lease of a journey follow-up a worker's
	// waker took: if its wake-up task is lost, or the worker dies before
	// queueing it, another worker takes it this long after the claim (and
	// the repair is counted). Default 30s (HERALD_WATCHDOG_INTERVAL).
	WatchdogInterval time.Duration `yaml:"watchdog_interval"`
	// SecretKeys are the words that mark a data key as secret: such values
	// are sealed out of task payloads, so the dashboard and its archive
	// never show them. Links whose query carries a token are sealed
	// whatever their key. A word matches whole parts of a key (split at
	// non-alphanumerics, camelCase humps and digits, any case), so "auth"
	// seals x-auth and authToken but not author; "api_key" matches apiKey
	// and apikey too. Empty: service.DefaultSecretWords
	// (HERALD_SECRET_KEYS, comma-separated).
	SecretKeys []string `yaml:"secret_keys"`
	// MetricsAddr, when set, makes a worker-only process (`herald worker`)
	// serve /metrics, /healthz and /readyz there: its message counters live
	// in that process (HERALD_METRICS_ADDR, e.g. 127.0.0.1:9091).
	MetricsAddr string `yaml:"metrics_addr"`
}

// Content says where workflows and templates live and how messages look.
type Content struct {
	Workflows     string `yaml:"workflows"`      // HERALD_WORKFLOWS (folder)
	Templates     string `yaml:"templates"`      // HERALD_TEMPLATES (folder)
	DefaultLocale string `yaml:"default_locale"` // default en
	BrandName     string `yaml:"brand_name"`     // default herald
	PostalAddress string `yaml:"postal_address"`

	// Locales are the locales every template must have (HERALD_LOCALES,
	// comma separated): content missing one is refused. Empty: none is
	// required, and `herald validate` notes a locale some templates have
	// and others lack.
	Locales []string `yaml:"locales"`

	// DefaultTimezone is the IANA zone of customers without one, for
	// broadcasts at a local hour (HERALD_DEFAULT_TIMEZONE; default UTC).
	DefaultTimezone string `yaml:"default_timezone"`
}

// Topic declares a topic customers can opt in or out of.
type Topic struct {
	Name             string `yaml:"name"`
	Required         bool   `yaml:"required"`
	OptIn            *bool  `yaml:"opt_in"` // default true (opt-out model)
	Class            string `yaml:"class"`
	BypassQuietHours bool   `yaml:"bypass_quiet_hours"`
	// Labels and Descriptions are what the preference centre and the
	// unsubscribe page show, keyed by BCP 47 locale:
	//   labels: { en: "Product updates", ja: "製品のお知らせ" }
	// A locale without its own falls back as templates do; a topic with no
	// label at all shows its name humanised ("Product updates").
	Labels       map[string]string `yaml:"labels"`
	Descriptions map[string]string `yaml:"descriptions"`
}

// Cap limits how many messages of a topic class a customer gets per period.
type Cap struct {
	Class  string        `yaml:"class"`
	Max    int           `yaml:"max"`
	Per    time.Duration `yaml:"per"`
	Action string        `yaml:"action"` // defer (default) or drop
}

// RateLimits are provider limits shared by every worker through Redis.
type RateLimits struct {
	SMTPPerSecond  int `yaml:"smtp_per_second"`  // HERALD_SMTP_PER_SECOND; 0 = unlimited
	SlackPerMinute int `yaml:"slack_per_minute"` // HERALD_SLACK_PER_MINUTE, chat.postMessage; 0 = unlimited
}

// Log configures log/slog.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn, error
	Format string `yaml:"format"` // json (default) or text
}

// Load reads the YAML file at path (none when path is empty) and then the
// environment (env wins), and fills defaults. It does not validate. An
// unreadable or malformed file returns at once; bad environment variables
// are returned together, with the Config still filled (see LoadFor).
func Load(path string) (Config, error) {
	return load(path, os.LookupEnv)
}

// unmarshal decodes YAML strictly. The YAML library panics on some
// malformed input (an empty tag where a list is expected: "topics: !");
// that is a bad file, reported as such.
func unmarshal(b []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (check tags such as '!' and the shape of each field): %v", r)
		}
	}()
	return yaml.UnmarshalWithOptions(b, v, yaml.DisallowUnknownField())
}

func load(path string, lookup func(string) (string, bool)) (Config, error) {
	var c Config
	if err := c.readFile(path); err != nil {
		return c, err
	}
	return c, c.fill(lookup)
}

// fill reads the environment and fills defaults. A bad variable does not
// stop the rest: its field is left at its default, so Validate can still
// name every other problem in the same run.
func (c *Config) fill(lookup func(string) (string, bool)) error {
	err := c.fromEnv(lookup)
	c.defaults()
	return err
}

// FileError is a config file that cannot be read or decoded: nothing in
// it can be checked further.
type FileError struct {
	Path string
	msg  string
	err  error
}

func (e *FileError) Error() string { return e.msg }
func (e *FileError) Unwrap() error { return e.err }

// readFile decodes the YAML file at path into c (nothing when path is empty).
func (c *Config) readFile(path string) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return &FileError{Path: path, msg: "config: " + err.Error(), err: err}
	}
	if err := unmarshal(b, c); err != nil {
		return &FileError{Path: path, msg: fmt.Sprintf("config %s: %s", path, yaml.FormatError(err, false, false)), err: err}
	}
	return nil
}

func (c *Config) fromEnv(lookup func(string) (string, bool)) error {
	var errs []error
	str := func(name string, dst *string) {
		if v, ok := lookup(name); ok {
			*dst = v
		}
	}
	secret := func(name string, dst *Secret) {
		if v, ok := lookup(name); ok {
			*dst = Secret(v)
			return
		}
		if p, ok := lookup(name + "_FILE"); ok && p != "" {
			b, err := os.ReadFile(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_FILE: %w", name, err))
				return
			}
			*dst = Secret(strings.TrimSpace(string(b)))
		}
	}
	list := func(name string, dst *[]string) {
		if v, ok := lookup(name); ok {
			*dst = splitList(v)
		}
	}
	secret("HERALD_REDIS_URL", &c.Redis.URL)
	str("HERALD_REDIS_SENTINEL_MASTER", &c.Redis.SentinelMaster)
	list("HERALD_REDIS_SENTINEL_ADDRS", &c.Redis.SentinelAddrs)
	secret("HERALD_REDIS_SENTINEL_PASSWORD", &c.Redis.SentinelPassword)
	list("HERALD_REDIS_CLUSTER_ADDRS", &c.Redis.ClusterAddrs)
	secret("HERALD_REDIS_PASSWORD", &c.Redis.Password)
	secret("HERALD_SMTP_URL", &c.SMTP.URL)
	str("HERALD_MAIL_FROM", &c.SMTP.From)
	str("HERALD_DKIM_DOMAIN", &c.SMTP.DKIM.Domain)
	str("HERALD_DKIM_SELECTOR", &c.SMTP.DKIM.Selector)
	str("HERALD_DKIM_KEY_FILE", &c.SMTP.DKIM.KeyFile)
	secret("HERALD_SLACK_TOKEN", &c.Slack.Token)
	str("HERALD_SLACK_API_URL", &c.Slack.APIURL)
	secret("HERALD_SLACK_SIGNING_SECRET", &c.Slack.SigningSecret)
	str("HERALD_HTTP_ADDR", &c.HTTP.Addr)
	str("HERALD_PUBLIC_URL", &c.HTTP.PublicURL)
	secret("HERALD_SIGNING_KEY", &c.SigningKey)
	str("HERALD_WORKFLOWS", &c.Content.Workflows)
	str("HERALD_TEMPLATES", &c.Content.Templates)
	str("HERALD_DEFAULT_LOCALE", &c.Content.DefaultLocale)
	str("HERALD_DEFAULT_TIMEZONE", &c.Content.DefaultTimezone)
	list("HERALD_LOCALES", &c.Content.Locales)
	list("HERALD_SECRET_KEYS", &c.Worker.SecretKeys)
	str("HERALD_MONITORING_USER", &c.Monitoring.Username)
	secret("HERALD_MONITORING_PASSWORD", &c.Monitoring.Password)
	secret("HERALD_METRICS_TOKEN", &c.HTTP.MetricsToken)
	list("HERALD_TRUSTED_PROXIES", &c.HTTP.TrustedProxies)
	str("HERALD_LOG_LEVEL", &c.Log.Level)
	str("HERALD_LOG_FORMAT", &c.Log.Format)
	num := func(name string, dst *int) {
		if v, ok := lookup(name); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a whole number", name, v))
			}
			*dst = n
		}
	}
	num("HERALD_WORKER_CONCURRENCY", &c.Worker.Concurrency)
	num("HERALD_WORKER_CRITICAL_CONCURRENCY", &c.Worker.CriticalConcurrency)
	num("HERALD_SMTP_PER_SECOND", &c.RateLimits.SMTPPerSecond)
	num("HERALD_SLACK_PER_MINUTE", &c.RateLimits.SlackPerMinute)
	if _, ok := lookup("HERALD_PUBLIC_RATE_LIMIT"); ok {
		n := 0
		num("HERALD_PUBLIC_RATE_LIMIT", &n)
		c.HTTP.PublicRateLimit = &n
	}
	dur := func(name string, dst *time.Duration) {
		if v, ok := lookup(name); ok {
			d, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not a duration such as 10s or 1m", name, v))
			}
			*dst = d
		}
	}
	dur("HERALD_WORKER_RETRY_BASE", &c.Worker.RetryBase)
	dur("HERALD_WORKER_RETRY_MAX", &c.Worker.RetryMax)
	dur("HERALD_WATCHDOG_INTERVAL", &c.Worker.WatchdogInterval)
	str("HERALD_METRICS_ADDR", &c.Worker.MetricsAddr)
	var previous Secret
	secret("HERALD_PREVIOUS_SIGNING_KEYS", &previous)
	if previous != "" {
		c.PreviousSigningKeys = nil
		for _, k := range splitList(previous.Reveal()) {
			c.PreviousSigningKeys = append(c.PreviousSigningKeys, Secret(k))
		}
	}
	var tokens Secret
	secret("HERALD_API_TOKENS", &tokens)
	if tokens != "" {
		c.API.Tokens = nil
		for i, t := range splitList(tokens.Reveal()) {
			name, value, ok := strings.Cut(t, ":")
			if !ok {
				name, value = fmt.Sprintf("token-%d", i+1), t
			}
			c.API.Tokens = append(c.API.Tokens, Token{Name: name, Value: Secret(value)})
		}
	}
	return errors.Join(errs...)
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// MinMonitoringPassword is the shortest dashboard password Validate takes.
const MinMonitoringPassword = 12

// DefaultPublicRateLimit is the default of http.public_rate_limit:
// requests a minute per client address to the public routes.
const DefaultPublicRateLimit = 120

// Default queue weights.
var DefaultQueues = map[string]int{"critical": 6, "default": 4, "bulk": 2, "email": 1, "slack": 1}

// SendReserve is the part of a task's time the engine keeps back from a
// provider call to record its outcome (engine.SendReserve).
const SendReserve = 5 * time.Second

func (c *Config) defaults() {
	if c.Redis.DialTimeout == 0 {
		c.Redis.DialTimeout = 5 * time.Second
	}
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8080"
	}
	if c.HTTP.PublicURL == "" {
		c.HTTP.PublicURL = "http://" + c.HTTP.Addr
	}
	c.HTTP.PublicURL = strings.TrimRight(c.HTTP.PublicURL, "/")
	if c.HTTP.MaxBodyBytes == 0 {
		c.HTTP.MaxBodyBytes = 1 << 20
	}
	if c.HTTP.PublicRateLimit == nil {
		n := DefaultPublicRateLimit
		c.HTTP.PublicRateLimit = &n
	}
	if c.Monitoring.ReadOnly == nil {
		t := true
		c.Monitoring.ReadOnly = &t
	}
	if c.Worker.Concurrency == 0 {
		c.Worker.Concurrency = 20
	}
	if c.Worker.CriticalConcurrency == 0 && c.Worker.Concurrency > 0 {
		c.Worker.CriticalConcurrency = max(2, (c.Worker.Concurrency+3)/4) // as engine.CriticalConcurrency
	}
	if len(c.Worker.Queues) == 0 {
		c.Worker.Queues = map[string]int{}
		for k, v := range DefaultQueues {
			c.Worker.Queues[k] = v
		}
	}
	if c.Worker.StrictPriority == nil {
		t := true
		c.Worker.StrictPriority = &t
	}
	if c.Worker.ShutdownTimeout == 0 {
		c.Worker.ShutdownTimeout = 45 * time.Second
	}
	if c.Worker.DeliveryTimeout == 0 {
		c.Worker.DeliveryTimeout = 30 * time.Second
	}
	if c.Worker.MaxRetry == 0 {
		c.Worker.MaxRetry = 12
	}
	if c.Worker.RetryBase == 0 {
		c.Worker.RetryBase = 10 * time.Second
	}
	if c.Worker.RetryMax == 0 {
		c.Worker.RetryMax = time.Hour
	}
	if c.Worker.WatchdogInterval == 0 {
		c.Worker.WatchdogInterval = 30 * time.Second
	}
	if c.Content.DefaultLocale == "" {
		c.Content.DefaultLocale = "en"
	}
	if c.Content.BrandName == "" {
		c.Content.BrandName = "herald"
	}
	if c.TokenTTL == 0 {
		c.TokenTTL = 90 * 24 * time.Hour
	}
	if len(c.Topics) == 0 {
		c.Topics = DefaultTopics()
	}
	for i := range c.Caps {
		if c.Caps[i].Action == "" {
			c.Caps[i].Action = "defer"
		}
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
}

// DefaultTopics are the topics of the examples, used when the config
// declares none, labelled in the examples' six languages.
func DefaultTopics() []Topic {
	f := false
	return []Topic{
		{Name: "onboarding", Class: "lifecycle",
			Labels: map[string]string{
				"en": "Getting started", "th": "เริ่มต้นใช้งาน", "ja": "ご利用開始のご案内",
				"ko": "시작 안내", "zh-Hant": "新手入門", "pl": "Pierwsze kroki",
			},
			Descriptions: map[string]string{
				"en":      "Help and tips while you set up your account",
				"th":      "คำแนะนำและเคล็ดลับระหว่างตั้งค่าบัญชีของคุณ",
				"ja":      "アカウントの設定中に役立つヒントやご案内",
				"ko":      "계정을 설정하는 동안 도움이 되는 안내와 팁",
				"zh-Hant": "設定帳戶期間的說明與小提示",
				"pl":      "Pomoc i wskazówki, gdy konfigurujesz konto",
			}},
		{Name: "checkout", Class: "lifecycle",
			Labels: map[string]string{
				"en": "Cart reminders", "th": "การแจ้งเตือนตะกร้าสินค้า", "ja": "カートのお知らせ",
				"ko": "장바구니 알림", "zh-Hant": "購物車提醒", "pl": "Przypomnienia o koszyku",
			},
			Descriptions: map[string]string{
				"en":      "A reminder when you leave something in your cart",
				"th":      "แจ้งเตือนเมื่อคุณมีสินค้าค้างอยู่ในตะกร้า",
				"ja":      "カートに商品が残っているときのお知らせ",
				"ko":      "장바구니에 담아 둔 상품이 있을 때 알려 드립니다",
				"zh-Hant": "購物車內還有商品時提醒您",
				"pl":      "Przypomnienie, gdy zostawisz coś w koszyku",
			}},
		{Name: "product-updates", Class: "marketing",
			Labels: map[string]string{
				"en": "Product updates", "th": "ข่าวสารผลิตภัณฑ์", "ja": "製品のお知らせ",
				"ko": "제품 소식", "zh-Hant": "產品消息", "pl": "Nowości w produkcie",
			},
			Descriptions: map[string]string{
				"en":      "New features, about once a month",
				"th":      "ฟีเจอร์ใหม่ ประมาณเดือนละครั้ง",
				"ja":      "新機能のご紹介（月1回程度）",
				"ko":      "새로운 기능 소개(한 달에 한 번 정도)",
				"zh-Hant": "新功能介紹，大約每月一次",
				"pl":      "Nowe funkcje, mniej więcej raz w miesiącu",
			}},
		{Name: "billing", Required: true, Class: "transactional",
			Labels: map[string]string{
				"en": "Billing", "th": "การเรียกเก็บเงิน", "ja": "お支払い",
				"ko": "결제", "zh-Hant": "帳單", "pl": "Płatności",
			},
			Descriptions: map[string]string{
				"en":      "Receipts, invoices and payment problems",
				"th":      "ใบเสร็จ ใบแจ้งหนี้ และปัญหาการชำระเงิน",
				"ja":      "領収書、請求書、お支払いに関するお知らせ",
				"ko":      "영수증, 청구서, 결제 문제 안내",
				"zh-Hant": "收據、帳單與付款問題通知",
				"pl":      "Potwierdzenia, faktury i problemy z płatnością",
			}},
		{Name: "security", Required: true, Class: "transactional", BypassQuietHours: true,
			Labels: map[string]string{
				"en": "Security", "th": "ความปลอดภัย", "ja": "セキュリティ",
				"ko": "보안", "zh-Hant": "帳戶安全", "pl": "Bezpieczeństwo",
			},
			Descriptions: map[string]string{
				"en":      "Sign-ins, password resets and security alerts",
				"th":      "การเข้าสู่ระบบ การรีเซ็ตรหัสผ่าน และการแจ้งเตือนด้านความปลอดภัย",
				"ja":      "ログイン、パスワードの再設定、セキュリティに関するお知らせ",
				"ko":      "로그인, 비밀번호 재설정, 보안 알림",
				"zh-Hant": "登入、密碼重設、安全性通知",
				"pl":      "Logowania, resetowanie hasła i alerty bezpieczeństwa",
			}},
		{Name: "newsletter", Class: "marketing", OptIn: &f,
			Labels: map[string]string{
				"en": "Newsletter", "th": "จดหมายข่าว", "ja": "ニュースレター",
				"ko": "뉴스레터", "zh-Hant": "電子報", "pl": "Newsletter",
			},
			Descriptions: map[string]string{
				"en":      "Stories and ideas from our team",
				"th":      "เรื่องราวและไอเดียจากทีมของเรา",
				"ja":      "チームからの読み物やアイデア",
				"ko":      "팀이 전하는 이야기와 아이디어",
				"zh-Hant": "團隊分享的故事與靈感",
				"pl":      "Historie i pomysły od naszego zespołu",
			}},
	}
}

var (
	hhmm    = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	topicRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	queueRe = regexp.MustCompile(`^[a-z0-9][a-z0-9:_-]{0,63}$`)
	// dnsName is a domain name or DKIM selector: dot-separated labels of
	// letters, digits, '-' and '_', none starting or ending with '-'.
	dnsName = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$`)
	_       = hhmm
)

// Validate reports every problem, each naming its field (YAML path and the
// environment variable where there is one).
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	modes := 0
	if c.Redis.URL != "" {
		modes++
		u, err := url.Parse(c.Redis.URL.Reveal())
		// The schemes herald's Redis client (asynq.ParseRedisURI) dials.
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			bad("redis.url (HERALD_REDIS_URL)", "want redis://[user:pass@]host:port[/db] or rediss://…")
		} else if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				bad("redis.url (HERALD_REDIS_URL)", "the database after the host must be a number such as /0")
			}
		}
	}
	if len(c.Redis.SentinelAddrs) > 0 || c.Redis.SentinelMaster != "" {
		modes++
		if c.Redis.SentinelMaster == "" {
			bad("redis.sentinel_master (HERALD_REDIS_SENTINEL_MASTER)", "required with sentinel_addrs")
		}
		if len(c.Redis.SentinelAddrs) == 0 {
			bad("redis.sentinel_addrs (HERALD_REDIS_SENTINEL_ADDRS)", "required with sentinel_master")
		}
		for _, a := range c.Redis.SentinelAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("redis.sentinel_addrs", "%q is not host:port", a)
			}
		}
	}
	if len(c.Redis.ClusterAddrs) > 0 {
		modes++
		for _, a := range c.Redis.ClusterAddrs {
			if _, _, err := net.SplitHostPort(a); err != nil {
				bad("redis.cluster_addrs (HERALD_REDIS_CLUSTER_ADDRS)", "%q is not host:port", a)
			}
		}
	}
	if modes > 1 {
		bad("redis", "choose one of url, sentinel or cluster")
	}
	if c.SMTP.URL != "" {
		u, err := url.Parse(c.SMTP.URL.Reveal())
		if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
			bad("smtp.url (HERALD_SMTP_URL)", "want smtp://[user:pass@]host:port?tls=none|starttls|tls")
		}
		if c.SMTP.From == "" {
			bad("smtp.from (HERALD_MAIL_FROM)", "required when an SMTP relay is set")
		}
	}
	if c.SMTP.From != "" && strings.ContainsAny(c.SMTP.From, "\r\n") {
		bad("smtp.from (HERALD_MAIL_FROM)", "must not contain line breaks")
	} else if c.SMTP.From != "" {
		if _, err := mail.ParseAddress(c.SMTP.From); err != nil {
			bad("smtp.from (HERALD_MAIL_FROM)", "%q is not an address such as \"Lumen <hello@lumen.example>\" or hello@lumen.example", c.SMTP.From)
		}
	}
	if d := c.SMTP.DKIM; d.Enabled() {
		if d.Domain == "" {
			bad("smtp.dkim.domain (HERALD_DKIM_DOMAIN)", "required with smtp.dkim.selector and key_file: set all three or none")
		} else if !dnsName.MatchString(d.Domain) || len(d.Domain) > 253 {
			bad("smtp.dkim.domain (HERALD_DKIM_DOMAIN)", "%q is not a domain name", d.Domain)
		}
		if d.Selector == "" {
			bad("smtp.dkim.selector (HERALD_DKIM_SELECTOR)", "required with smtp.dkim.domain and key_file: set all three or none")
		} else if !dnsName.MatchString(d.Selector) {
			bad("smtp.dkim.selector (HERALD_DKIM_SELECTOR)", "%q: want DNS labels such as herald2026", d.Selector)
		}
		if d.KeyFile == "" {
			bad("smtp.dkim.key_file (HERALD_DKIM_KEY_FILE)", "required with smtp.dkim.domain and selector: set all three or none")
		} else if _, err := d.Key(); err != nil {
			bad("smtp.dkim.key_file (HERALD_DKIM_KEY_FILE)", "%v", err)
		}
	}
	if c.Slack.APIURL != "" {
		if u, err := url.Parse(c.Slack.APIURL); err != nil || u.Host == "" {
			bad("slack.api_url (HERALD_SLACK_API_URL)", "%q is not an absolute URL", c.Slack.APIURL)
		}
	}
	if _, _, err := net.SplitHostPort(c.HTTP.Addr); err != nil {
		bad("http.addr (HERALD_HTTP_ADDR)", "%q is not host:port", c.HTTP.Addr)
	}
	if u, err := url.Parse(c.HTTP.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("http.public_url (HERALD_PUBLIC_URL)", "%q is not an http(s) URL", c.HTTP.PublicURL)
	}
	if c.HTTP.MaxBodyBytes < 1024 {
		bad("http.max_body_bytes", "at least 1024")
	}
	if c.HTTP.PublicRateLimit != nil && *c.HTTP.PublicRateLimit < 0 {
		bad("http.public_rate_limit (HERALD_PUBLIC_RATE_LIMIT)", "requests a minute per client: 0 (off) or more")
	}
	for _, v := range c.HTTP.TrustedProxies {
		if _, err := parsePrefix(v); err != nil {
			bad("http.trusted_proxies (HERALD_TRUSTED_PROXIES)", "%q is not an IP address or CIDR such as 10.0.0.0/8", v)
		}
	}
	if c.HTTP.MetricsToken != "" && len(c.HTTP.MetricsToken) < 16 {
		bad("http.metrics_token (HERALD_METRICS_TOKEN)", "at least 16 characters")
	}
	switch {
	case c.Monitoring.Username != "" && c.Monitoring.Password == "":
		bad("monitoring.password (HERALD_MONITORING_PASSWORD)", "required with monitoring.username (HERALD_MONITORING_USER)")
	case c.Monitoring.Username == "" && c.Monitoring.Password != "":
		bad("monitoring.username (HERALD_MONITORING_USER)", "required with HERALD_MONITORING_PASSWORD")
	}
	if c.Monitoring.Password != "" && len(c.Monitoring.Password) < MinMonitoringPassword {
		bad("monitoring.password (HERALD_MONITORING_PASSWORD)", "at least %d characters", MinMonitoringPassword)
	}
	seenTok := map[string]bool{}
	for _, t := range c.API.Tokens {
		if len(t.Value) < 16 {
			bad("api.tokens (HERALD_API_TOKENS)", "token %q is shorter than 16 characters (the variable is name:token,…; a token given without a name is named token-N by its place)", t.Name)
		}
		if seenTok[t.Name] {
			bad("api.tokens (HERALD_API_TOKENS)", "token name %q used twice", t.Name)
		}
		seenTok[t.Name] = true
	}
	if c.SigningKey != "" && len(c.SigningKey) < 32 {
		bad("signing_key (HERALD_SIGNING_KEY)", "at least 32 characters")
	}
	for i, k := range c.PreviousSigningKeys {
		if len(k) < 32 {
			bad("previous signing keys (HERALD_PREVIOUS_SIGNING_KEYS)", "key %d: at least 32 characters", i+1)
		}
	}
	if c.Worker.MetricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.Worker.MetricsAddr); err != nil {
			bad("worker.metrics_addr (HERALD_METRICS_ADDR)", "%q is not host:port", c.Worker.MetricsAddr)
		}
	}
	if c.Worker.MaxRetry < 0 {
		bad("worker.max_retry", "%d: at least 1 (unset or 0 is the default, 12)", c.Worker.MaxRetry)
	}
	if c.Worker.Concurrency < 1 {
		bad("worker.concurrency", "at least 1")
	}
	if c.Worker.CriticalConcurrency < 1 {
		bad("worker.critical_concurrency (HERALD_WORKER_CRITICAL_CONCURRENCY)", "at least 1")
	}
	qs := make([]string, 0, len(c.Worker.Queues))
	for q := range c.Worker.Queues {
		qs = append(qs, q)
	}
	sort.Strings(qs)
	for _, q := range qs {
		if !queueRe.MatchString(q) {
			bad("worker.queues", "queue name %q: use lower-case letters, digits, '-', '_' or ':'", q)
		}
		if c.Worker.Queues[q] < 1 {
			bad("worker.queues."+q, "weight must be at least 1")
		}
	}
	for _, q := range []string{"critical", "default", "bulk"} {
		if _, ok := c.Worker.Queues[q]; !ok {
			bad("worker.queues", "queue %q is missing", q)
		}
	}
	if c.Worker.DeliveryTimeout < time.Second {
		bad("worker.delivery_timeout", "at least 1s (asynq counts whole seconds)")
	}
	if c.Worker.ShutdownTimeout <= c.Worker.DeliveryTimeout+SendReserve {
		bad("worker.shutdown_timeout", "%s must be above worker.delivery_timeout (%s) plus the %s send reserve, or a stopping worker puts back a task that is still sending and it is sent twice",
			c.Worker.ShutdownTimeout, c.Worker.DeliveryTimeout, SendReserve)
	}
	if c.Worker.RetryBase < 100*time.Millisecond {
		bad("worker.retry_base (HERALD_WORKER_RETRY_BASE)", "at least 100ms")
	}
	if c.Worker.RetryMax < c.Worker.RetryBase {
		bad("worker.retry_max (HERALD_WORKER_RETRY_MAX)", "at least worker.retry_base (%s)", c.Worker.RetryBase)
	}
	if c.Worker.WatchdogInterval < time.Second {
		bad("worker.watchdog_interval (HERALD_WATCHDOG_INTERVAL)", "at least 1s")
	}
	seen := map[string]bool{}
	for i, t := range c.Topics {
		f := fmt.Sprintf("topics[%d].name", i)
		if !topicRe.MatchString(t.Name) {
			bad(f, "%q: use lower-case letters, digits, '.', '_' or '-'", t.Name)
		}
		if seen[t.Name] {
			bad(f, "topic %q declared twice", t.Name)
		}
		seen[t.Name] = true
		if t.BypassQuietHours && !t.Required {
			bad(fmt.Sprintf("topics[%d].bypass_quiet_hours", i), "only required topics may bypass quiet hours")
		}
		validateLocalized(bad, fmt.Sprintf("topics[%d].labels", i), t.Labels)
		validateLocalized(bad, fmt.Sprintf("topics[%d].descriptions", i), t.Descriptions)
	}
	for i, cp := range c.Caps {
		if cp.Class == "" {
			bad(fmt.Sprintf("caps[%d].class", i), "required")
		}
		if cp.Max < 1 {
			bad(fmt.Sprintf("caps[%d].max", i), "at least 1")
		}
		if cp.Per <= 0 {
			bad(fmt.Sprintf("caps[%d].per", i), "a positive duration such as 24h")
		}
		if cp.Action != "defer" && cp.Action != "drop" {
			bad(fmt.Sprintf("caps[%d].action", i), "%q: want defer or drop", cp.Action)
		}
	}
	if c.RateLimits.SMTPPerSecond < 0 {
		bad("rate_limits.smtp_per_second (HERALD_SMTP_PER_SECOND)", "%d: a limit cannot be negative (0 is no limit)", c.RateLimits.SMTPPerSecond)
	}
	if c.RateLimits.SlackPerMinute < 0 {
		bad("rate_limits.slack_per_minute (HERALD_SLACK_PER_MINUTE)", "%d: a limit cannot be negative (0 is no limit)", c.RateLimits.SlackPerMinute)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level (HERALD_LOG_LEVEL)", "%q: want debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format (HERALD_LOG_FORMAT)", "%q: want json or text", c.Log.Format)
	}
	if z := c.Content.DefaultTimezone; z != "" {
		if _, err := time.LoadLocation(z); err != nil {
			bad("content.default_timezone (HERALD_DEFAULT_TIMEZONE)", "%q: want an IANA zone such as Europe/Warsaw", z)
		}
	}
	for i, l := range c.Content.Locales {
		if _, err := language.Parse(l); err != nil {
			bad(fmt.Sprintf("content.locales[%d] (HERALD_LOCALES)", i), "%q is not a BCP 47 locale (want one such as en, ja, pt-BR or zh-Hant)", l)
		}
	}
	validateWebhooks(c.Webhooks, bad)
	return errors.Join(errs...)
}

// validateLocalized checks texts keyed by locale: each key a BCP 47 tag,
// no two keys naming the same locale ("zh-hant" and "zh-Hant"), no empty
// text.
func validateLocalized(bad func(field, format string, args ...any), field string, m map[string]string) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seen := map[string]string{}
	for _, k := range keys {
		f := field + "." + k
		tag, err := language.Parse(k)
		if err != nil {
			bad(f, "%q is not a BCP 47 locale (want one such as en, ja, pt-BR or zh-Hant)", k)
			continue
		}
		if prev, ok := seen[tag.String()]; ok {
			bad(f, "%q and %q are the same locale (%s)", prev, k, tag)
			continue
		}
		seen[tag.String()] = k
		if strings.TrimSpace(m[k]) == "" {
			bad(f, "empty")
		}
	}
}

// Redacted returns the configuration as YAML with every secret hidden, for
// `herald validate --config` and start-up logs.
func (c Config) Redacted() string {
	var buf bytes.Buffer
	b, _ := yaml.Marshal(c)
	buf.Write(b)
	return buf.String()
}
