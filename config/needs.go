package config

import (
	"errors"
	"fmt"
	"os"
)

// Role is what a herald process runs; each role needs some settings that
// a well-formed config may still lack.
type Role string

// The roles of `herald run`, `herald worker` and `herald serve`.
const (
	RoleRun    Role = "run"    // worker and HTTP server
	RoleWorker Role = "worker" // the asynq worker
	RoleServe  Role = "serve"  // the HTTP server
)

// ParseRole returns the Role named s.
func ParseRole(s string) (Role, error) {
	switch r := Role(s); r {
	case RoleRun, RoleWorker, RoleServe:
		return r, nil
	}
	return "", fmt.Errorf("role %q: want run, worker or serve", s)
}

// HTTP reports whether the role serves the HTTP API.
func (r Role) HTTP() bool { return r == RoleRun || r == RoleServe }

// Configured reports whether any way to reach Redis is set: a URL, a
// Sentinel group or a Cluster.
func (r Redis) Configured() bool {
	return r.URL != "" || r.SentinelMaster != "" || len(r.SentinelAddrs) > 0 || len(r.ClusterAddrs) > 0
}

// Channels lists the channels with a provider configured, in herald's
// order: email with an SMTP relay, slack with a bot token.
func (c Config) Channels() []string {
	out := []string{}
	if c.SMTP.URL != "" {
		out = append(out, "email")
	}
	if c.Slack.Token != "" {
		out = append(out, "slack")
	}
	return out
}

// Needs reports every setting role needs that c lacks, each naming its
// field and variable: what would otherwise stop the process at start-up,
// one problem at a time, or leave it running but useless.
func (c Config) Needs(role Role) error {
	var errs []error
	need := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: required by herald %s: %s", field, role, fmt.Sprintf(format, args...)))
	}
	if !c.Redis.Configured() {
		need("redis.url (HERALD_REDIS_URL)", "redis://[user:pass@]host:port/db, or a Sentinel group (HERALD_REDIS_SENTINEL_MASTER and _ADDRS) or a Cluster (HERALD_REDIS_CLUSTER_ADDRS)")
	}
	if len(c.Channels()) == 0 {
		need("smtp.url (HERALD_SMTP_URL) or slack.token (HERALD_SLACK_TOKEN)", "at least one channel")
	}
	if c.SigningKey == "" {
		need("signing_key (HERALD_SIGNING_KEY)", "32+ random characters; it signs preference and unsubscribe links")
	}
	if role.HTTP() && len(c.API.Tokens) == 0 {
		need("api.tokens (HERALD_API_TOKENS)", "name:token,… (16+ characters each); without one the API refuses every request")
	}
	if c.Content.Templates == "" {
		need("content.templates (HERALD_TEMPLATES)", "the templates folder (only herald dev falls back to the embedded examples)")
	}
	return errors.Join(errs...)
}

// LoadFor loads the config as Load does and checks it for role, returning
// every problem at once: bad environment variables, bad fields (Validate)
// and settings the role needs (Needs). An unreadable or malformed file is
// reported alone. An empty role checks no needs.
func LoadFor(path string, role Role) (Config, error) {
	return loadFor(path, role, os.LookupEnv)
}

func loadFor(path string, role Role, lookup func(string) (string, bool)) (Config, error) {
	var c Config
	if err := c.readFile(path); err != nil {
		return c, err
	}
	errs := []error{c.fill(lookup), c.Validate()}
	if role != "" {
		errs = append(errs, c.Needs(role))
	}
	return c, errors.Join(errs...)
}
