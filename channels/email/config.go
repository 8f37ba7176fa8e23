package email

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// TLS modes.
const (
	TLSNone     = "none"     // plain text; AUTH only to a loopback server
	TLSStartTLS = "starttls" // upgrade with STARTTLS, refuse servers without it
	TLSImplicit = "tls"      // TLS from the first byte (SMTPS, port 465)
)

// Defaults for zero Config fields.
const (
	DefaultPool    = 4
	DefaultTimeout = 30 * time.Second
)

// Config says how to reach the SMTP server. A zero field means its default.
type Config struct {
	Host string
	// Port defaults to 587, 465 for TLSImplicit and 25 for TLSNone.
	Port int
	// TLS is TLSNone, TLSStartTLS or TLSImplicit; default TLSStartTLS, or
	// TLSImplicit on port 465.
	TLS      string
	Username string
	Password string
	// From is "Name <addr@domain>" or "addr@domain"; its domain also names
	// Message-IDs.
	From string
	// Pool is how many connections are kept open and reused; default 4.
	Pool int
	// Timeout bounds each SMTP operation (dial, the check of an idle
	// connection, one message from MAIL FROM to the server's verdict);
	// default 30s. A message under way is cut off by Timeout only, not by
	// the caller's context, so a Send does not start one with less than
	// min(Timeout, 5s, half the time it was given) left before its
	// context's deadline.
	Timeout time.Duration
	// HELO is the name given in EHLO; default the machine's host name.
	HELO string
	// DKIM, when set, signs every message (see DKIM); the zero value sends
	// messages unsigned.
	DKIM DKIM
}

// ParseURL reads smtp://user:pass@host:port?tls=none|starttls|tls&pool=N&timeout=10s&helo=name.
// smtps:// means tls. Errors never quote the password.
func ParseURL(raw string) (Config, error) {
	var c Config
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, password included, and even its
		// "invalid port" may be a piece of an unescaped password
		// (smtp://u:pa/ss@host): say only where to look.
		return c, errors.New("email: SMTP URL does not parse: check host:port and that user and password are URL-escaped")
	}
	switch u.Scheme {
	case "smtp":
	case "smtps":
		c.TLS = TLSImplicit
	default:
		return c, fmt.Errorf("email: SMTP URL scheme %q: want smtp or smtps", u.Scheme)
	}
	if u.Opaque != "" {
		return c, errors.New("email: SMTP URL must look like smtp://host:port")
	}
	c.Host = u.Hostname()
	if c.Host == "" {
		return c, errors.New("email: SMTP URL has no host")
	}
	if p := u.Port(); p != "" {
		c.Port, err = strconv.Atoi(p)
		if err != nil || c.Port < 1 || c.Port > 65535 {
			return c, fmt.Errorf("email: SMTP URL port %q: want 1-65535", p)
		}
	}
	if u.User != nil {
		c.Username = u.User.Username()
		c.Password, _ = u.User.Password()
	}
	if u.Path != "" && u.Path != "/" {
		return c, errors.New("email: SMTP URL must not have a path")
	}

	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return c, errors.New("email: SMTP URL query does not parse")
	}
	for key, vals := range q {
		v := vals[len(vals)-1]
		switch key {
		case "tls":
			if u.Scheme == "smtps" && v != TLSImplicit {
				return c, fmt.Errorf("email: SMTP URL: smtps:// with tls=%s", v)
			}
			c.TLS = v
		case "pool":
			c.Pool, err = strconv.Atoi(v)
			if err != nil || c.Pool < 1 {
				return c, fmt.Errorf("email: SMTP URL pool %q: want a positive integer", v)
			}
		case "timeout":
			c.Timeout, err = time.ParseDuration(v)
			if err != nil || c.Timeout <= 0 {
				return c, fmt.Errorf("email: SMTP URL timeout %q: want a positive duration such as 10s", v)
			}
		case "helo":
			if err := checkHELO(v); err != nil {
				return c, err
			}
			c.HELO = v
		default:
			return c, fmt.Errorf("email: SMTP URL parameter %q: want tls, pool, timeout or helo", key)
		}
	}
	return c, c.check()
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.TLS == "" {
		c.TLS = TLSStartTLS
		if c.Port == 465 {
			c.TLS = TLSImplicit
		}
	}
	if c.Port == 0 {
		switch c.TLS {
		case TLSImplicit:
			c.Port = 465
		case TLSNone:
			c.Port = 25
		default:
			c.Port = 587
		}
	}
	if c.Pool == 0 {
		c.Pool = DefaultPool
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// check validates the fields a URL can carry; From is checked by New.
func (c Config) check() error {
	switch c.TLS {
	case "", TLSNone, TLSStartTLS, TLSImplicit:
	default:
		return fmt.Errorf("email: TLS mode %q: want none, starttls or tls", c.TLS)
	}
	if c.Host == "" {
		return errors.New("email: no SMTP host")
	}
	if strings.ContainsAny(c.Host+c.Username, "\r\n") {
		return errors.New("email: SMTP host and user must be one line")
	}
	if c.HELO != "" {
		if err := checkHELO(c.HELO); err != nil {
			return err
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("email: SMTP port %d: want 1-65535", c.Port)
	}
	if c.Pool < 0 {
		return fmt.Errorf("email: pool %d: want a positive number", c.Pool)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("email: timeout %s: want a positive duration", c.Timeout)
	}
	if (c.Username == "") != (c.Password == "") {
		return errors.New("email: set both SMTP user and password, or neither")
	}
	return c.DKIM.check()
}

// Redacted is the config as an SMTP URL with the password replaced by
// "xxxxx", for logs and `herald` output.
func (c Config) Redacted() string {
	c = c.withDefaults()
	u := url.URL{Scheme: "smtp", Host: hostPort(c.Host, c.Port)}
	if c.Username != "" {
		u.User = url.UserPassword(c.Username, "xxxxx")
	}
	q := url.Values{}
	q.Set("tls", c.TLS)
	q.Set("pool", strconv.Itoa(c.Pool))
	q.Set("timeout", c.Timeout.String())
	if c.HELO != "" {
		q.Set("helo", c.HELO)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// checkHELO accepts what RFC 5321 lets a client name itself in EHLO: a
// domain (letters, digits, hyphens and underscores in dot-separated labels of
// at most 63 characters, 255 in all) or an address literal such as
// [192.0.2.1] or [IPv6:2001:db8::1]. Anything else (empty, spaces, control
// characters) could not be sent as one EHLO argument.
func checkHELO(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("email: HELO name %q: %s; want a host name such as mail.example.com or an address literal such as [192.0.2.1]", name, why)
	}
	if strings.TrimSpace(name) == "" {
		return bad("empty")
	}
	if len(name) > 255 {
		return bad("longer than 255 characters")
	}
	if strings.HasPrefix(name, "[") {
		if !strings.HasSuffix(name, "]") {
			return bad("address literal without a closing ]")
		}
		lit := name[1 : len(name)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			if a, err := netip.ParseAddr(v6); err == nil && a.Is6() && !a.Is4In6() && a.Zone() == "" {
				return nil
			}
			return bad("not an IPv6 address literal")
		}
		if a, err := netip.ParseAddr(lit); err == nil && a.Is4() {
			return nil
		}
		return bad("not an address literal")
	}
	if why := dnsNameProblem(name); why != "" {
		return bad(why)
	}
	return nil
}

// dnsNameProblem says what keeps name from being a domain name (letters,
// digits, hyphens and underscores in dot-separated labels of at most 63
// characters, a final dot allowed), or "" when nothing does. The length of
// the whole name is the caller's to check.
func dnsNameProblem(name string) string {
	for _, label := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if label == "" || len(label) > 63 {
			return "empty or over-long label"
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "a label starts or ends with a hyphen"
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return fmt.Sprintf("character %q is not allowed in a host name", ch)
			}
		}
	}
	return ""
}

func hostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// fromAddress parses Config.From and returns it with the domain Message-IDs
// are named after.
func fromAddress(from string) (*mail.Address, string, error) {
	if from == "" {
		return nil, "", errors.New("email: no From address")
	}
	if strings.ContainsAny(from, "\r\n") {
		return nil, "", errors.New("email: From must be one line")
	}
	a, err := mail.ParseAddress(from)
	if err != nil {
		return nil, "", fmt.Errorf("email: From %q: %w", from, err)
	}
	at := strings.LastIndexByte(a.Address, '@')
	if at < 1 || at == len(a.Address)-1 {
		return nil, "", fmt.Errorf("email: From %q has no domain", from)
	}
	return a, a.Address[at+1:], nil
}
