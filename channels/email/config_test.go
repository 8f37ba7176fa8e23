package email_test

import (
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/channels/email"
	"github.com/stretchr/testify/require"
)

func TestParseURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want email.Config
	}{
		{"Plain", "smtp://127.0.0.1:2525?tls=none",
			email.Config{Host: "127.0.0.1", Port: 2525, TLS: email.TLSNone}},
		{"StartTLS", "smtp://apikey:s3cr%2Ft@smtp.example.com:587?tls=starttls&pool=8&timeout=10s",
			email.Config{Host: "smtp.example.com", Port: 587, TLS: email.TLSStartTLS, Username: "apikey", Password: "s3cr/t", Pool: 8, Timeout: 10 * time.Second}},
		{"ImplicitTLS", "smtp://u:p@smtp.example.com:465?tls=tls",
			email.Config{Host: "smtp.example.com", Port: 465, TLS: email.TLSImplicit, Username: "u", Password: "p"}},
		{"SMTPS", "smtps://u:p@smtp.example.com",
			email.Config{Host: "smtp.example.com", TLS: email.TLSImplicit, Username: "u", Password: "p"}},
		{"SMTPSExplicitTLS", "smtps://smtp.example.com?tls=tls",
			email.Config{Host: "smtp.example.com", TLS: email.TLSImplicit}},
		{"Defaults", "smtp://smtp.example.com",
			email.Config{Host: "smtp.example.com"}},
		{"HELO", "smtp://smtp.example.com:25?helo=mx.herald.test",
			email.Config{Host: "smtp.example.com", Port: 25, HELO: "mx.herald.test"}},
		{"HELOAddressLiteral", "smtp://smtp.example.com:25?helo=%5B192.0.2.1%5D",
			email.Config{Host: "smtp.example.com", Port: 25, HELO: "[192.0.2.1]"}},
		{"HELOIPv6Literal", "smtp://smtp.example.com:25?helo=%5BIPv6:2001:db8::1%5D",
			email.Config{Host: "smtp.example.com", Port: 25, HELO: "[IPv6:2001:db8::1]"}},
		{"HELOUnderscore", "smtp://smtp.example.com:25?helo=mail_1.example.com.",
			email.Config{Host: "smtp.example.com", Port: 25, HELO: "mail_1.example.com."}},
		{"IPv6", "smtp://[::1]:2525?tls=none",
			email.Config{Host: "::1", Port: 2525, TLS: email.TLSNone}},
		{"TrailingSlash", "smtp://smtp.example.com/",
			email.Config{Host: "smtp.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := email.ParseURL(tt.raw)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestParseURLErrors(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-secret"
	tests := []struct {
		name, raw, wantText string
	}{
		{"BadScheme", "http://u:" + secret + "@smtp.example.com", `scheme "http"`},
		{"NoScheme", "smtp.example.com:587", "scheme"},
		{"MissingHost", "smtp://u:" + secret + "@:587", "no host"},
		{"Empty", "", "scheme"},
		{"PortNotNumber", "smtp://u:" + secret + "@smtp.example.com:abc", "host:port"},
		{"PortZero", "smtp://u:" + secret + "@smtp.example.com:0", `port "0"`},
		{"PortTooBig", "smtp://u:" + secret + "@smtp.example.com:70000", `port "70000"`},
		{"BadTLS", "smtp://u:" + secret + "@smtp.example.com?tls=ssl", `TLS mode "ssl"`},
		{"SMTPSWithNone", "smtps://u:" + secret + "@smtp.example.com?tls=none", "smtps:// with tls=none"},
		{"BadPool", "smtp://u:" + secret + "@smtp.example.com?pool=0", `pool "0"`},
		{"BadTimeout", "smtp://u:" + secret + "@smtp.example.com?timeout=soon", `timeout "soon"`},
		{"UnknownParam", "smtp://u:" + secret + "@smtp.example.com?tsl=none", `parameter "tsl"`},
		{"BadEscapeInPassword", "smtp://u:" + secret + "%zz@smtp.example.com", "URL-escaped"},
		{"UnescapedSlashInPassword", "smtp://u:hunter2/x@smtp.example.com", "URL-escaped"},
		{"UserWithoutPassword", "smtp://u@smtp.example.com", "password"},
		{"Path", "smtp://u:" + secret + "@smtp.example.com/inbox", "path"},
		{"ControlChar", "smtp://u:" + secret + "@smtp.example.com\r\n", "parse"},
		// The fuzzer's find (testdata/fuzz/FuzzParseURL/helo-space): a
		// lone space became the EHLO argument.
		{"HELOSpace", "smtp://u:" + secret + "@host?helo=%20", `HELO name " ": empty`},
		{"HELOEmpty", "smtp://u:" + secret + "@host?helo=", `HELO name "": empty`},
		{"HELOInnerSpace", "smtp://u:" + secret + "@host?helo=mail%20example", "not allowed"},
		{"HELOCRLF", "smtp://u:" + secret + "@host?helo=a%0D%0AMAIL%20FROM:<x>", "not allowed"},
		{"HELONUL", "smtp://u:" + secret + "@host?helo=a%00b", "not allowed"},
		{"HELOTab", "smtp://u:" + secret + "@host?helo=a%09b", "not allowed"},
		{"HELOEmptyLabel", "smtp://u:" + secret + "@host?helo=a..b", "label"},
		{"HELOHyphenLabel", "smtp://u:" + secret + "@host?helo=-a.example", "hyphen"},
		{"HELOLongLabel", "smtp://u:" + secret + "@host?helo=" + strings.Repeat("a", 64), "label"},
		{"HELOBadLiteral", "smtp://u:" + secret + "@host?helo=%5B300.1.1.1%5D", "address literal"},
		{"HELOUnclosedLiteral", "smtp://u:" + secret + "@host?helo=%5B192.0.2.1", "closing"},
		{"HELOIPv6Zone", "smtp://u:" + secret + "@host?helo=%5BIPv6:fe80::1%25eth0%5D", "IPv6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := email.ParseURL(tt.raw)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.wantText)
			require.NotContains(t, err.Error(), "hunter2", "errors never quote the password")
		})
	}
}

func TestRedacted(t *testing.T) {
	t.Parallel()
	cfg, err := email.ParseURL("smtp://apikey:hunter2@smtp.example.com?pool=2")
	require.NoError(t, err)
	red := cfg.Redacted()
	require.Equal(t, "smtp://apikey:xxxxx@smtp.example.com:587?pool=2&timeout=30s&tls=starttls", red)
	require.NotContains(t, red, "hunter2")

	back, err := email.ParseURL(red)
	require.NoError(t, err, "the redacted form parses")
	require.Equal(t, "xxxxx", back.Password)

	require.Equal(t, "smtp://127.0.0.1:25?pool=4&timeout=30s&tls=none",
		email.Config{Host: "127.0.0.1", TLS: email.TLSNone}.Redacted())
	require.Equal(t, "smtp://smtp.example.com:465?pool=4&timeout=30s&tls=tls",
		email.Config{Host: "smtp.example.com", Port: 465}.Redacted(), "port 465 implies implicit TLS")
}
