package httpapi

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzLogTarget: whatever the request target, the logged form is short and
// never holds the value of a token parameter or a /r/ token.
func FuzzLogTarget(f *testing.F) {
	for _, s := range []string{
		"/r/h1.abc.def", "/preferences?token=h1.abc.def&lang=ja", "/unsubscribe?a=1&token=xyz&token=again",
		"/monitoring/login?token=%73ecret", "/x?%74oken=v", "/?=&&=", "/r/", "/v1/customers/h1.a.b/timeline",
	} {
		f.Add(s, "secret-value")
	}
	f.Fuzz(func(t *testing.T, target, secret string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		got := logTarget(u)
		if len(got) > 300+len("…") {
			t.Fatalf("logged %d bytes", len(got))
		}
		if len(secret) < 8 || strings.ContainsAny(secret, "&=#/?%") || strings.Contains(target, secret) {
			return
		}
		for _, withSecret := range []string{
			"/r/" + url.PathEscape(secret),
			"/preferences?lang=ja&token=" + url.QueryEscape(secret),
			"/x?Access_Token=" + url.QueryEscape(secret) + "&" + u.RawQuery,
		} {
			v, err := url.ParseRequestURI(withSecret)
			if err != nil {
				continue
			}
			if out := logTarget(v); strings.Contains(out, url.QueryEscape(secret)) || strings.Contains(out, url.PathEscape(secret)) {
				t.Fatalf("%q logged as %q", withSecret, out)
			}
		}
	})
}
