// Package config turns a YAML file plus HERALD_* environment variables into
// one Config for the herald binary. Environment variables win over the file;
// a zero field means the documented default; Validate says exactly which
// field is wrong. Secrets (SMTP URL, Slack token and signing secret, API
// tokens, the signing key, dashboard password) come from the environment or
// from a file named by HERALD_<NAME>_FILE, never from logs: they print as
// "[redacted]".
//
// Only cmd/herald imports this package; every other package receives plain
// values.
package config
