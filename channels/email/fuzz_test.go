package email_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/heraldhq/herald/channels/email"
)

// FuzzParseURL feeds hostile SMTP URLs (they come from the environment and
// config files): ParseURL must not panic, must not quote the password in an
// error, and what it accepts must be usable as is: a host and HELO name that
// cannot smuggle SMTP commands, a port in range.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"smtp://user:pass@mail.example.com:587?tls=starttls&pool=4",
		"smtps://u:p%40ss@mail.example.com",
		"smtp://127.0.0.1:2525?tls=none&timeout=5s&helo=herald.local",
		"smtp://u:pa/ss@host",
		"smtp://u:secretpw@host:99999",
		"smtp://[::1]:25?tls=none",
		"smtp://host?helo=a%0D%0AMAIL%20FROM:<x>",
		"smtp://ho%0Ast:25",
		"smtp://host:25/path",
		"smtp:opaque",
		"smtp://host?pool=-1&pool=2",
		"smtp://host?timeout=-1s",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := email.ParseURL(raw)
		if err != nil {
			if u, perr := url.Parse(raw); perr == nil && u.User != nil {
				if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Count(raw, pw) == 1 && strings.Contains(err.Error(), pw) {
					t.Fatalf("error quotes the password: %v", err)
				}
			}
			return
		}
		if c.Host == "" {
			t.Fatalf("accepted %q without a host", raw)
		}
		if c.Port < 0 || c.Port > 65535 {
			t.Fatalf("accepted port %d", c.Port)
		}
		for name, v := range map[string]string{"host": c.Host, "helo": c.HELO} {
			if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
				t.Fatalf("accepted a %s with a space or control character: %q", name, v)
			}
		}
	})
}
