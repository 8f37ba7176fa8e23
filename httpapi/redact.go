package httpapi

import (
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

const redacted = "[redacted]"

// secretParam matches query parameter names whose values grant something:
// signed link tokens, login links, signatures, keys and passwords.
var secretParam = regexp.MustCompile(`(?i)token|sig|secret|key|pass|auth|session|code|hmac|credential`)

// logTarget is the request's path and query as the request log shows it:
// signed tokens in the path (/r/{token}, any h1.… segment) and the values
// of secret-looking query parameters are replaced, so a log reader cannot
// replay a customer's link.
func logTarget(u *url.URL) string {
	segs := strings.Split(u.EscapedPath(), "/")
	for i, seg := range segs {
		if (i == 2 && segs[1] == "r") || strings.HasPrefix(seg, "h1.") {
			segs[i] = redacted
		}
	}
	out := strings.Join(segs, "/")
	if u.RawQuery != "" {
		parts := strings.Split(u.RawQuery, "&")
		for i, p := range parts {
			k, v, hasValue := strings.Cut(p, "=")
			name, err := url.QueryUnescape(k)
			if err != nil {
				name = k
			}
			switch {
			case hasValue && (secretParam.MatchString(name) || strings.HasPrefix(v, "h1.")):
				parts[i] = k + "=" + redacted
			case !hasValue && strings.HasPrefix(k, "h1."):
				parts[i] = redacted
			}
		}
		out += "?" + strings.Join(parts, "&")
	}
	return truncate(out, 300)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
