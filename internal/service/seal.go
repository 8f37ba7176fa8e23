package service

import (
	"context"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"

	"github.com/heraldhq/herald"
)

// SealedValue stands in a task's payload for a value kept out of it.
const SealedValue = "[sealed]"

// DefaultSecretWords mark the data keys whose values are secrets or links
// that act as credentials: they never travel in a task payload, so the
// dashboard, its archive and any payload dump show the key and not the
// value. worker.secret_keys replaces them.
var DefaultSecretWords = []string{
	"token", "tokens", "access_token", "refresh_token", "auth_token",
	"secret", "secrets", "password", "passwords", "passwd", "passcode", "passphrase",
	"otp", "api_key", "auth", "authorization", "oauth", "session",
	"signature", "credential", "credentials", "cookie", "cookies",
	"reset", "magic", "verify", "verification", "login_url", "invite_url",
	"confirm", "confirmation",
}

// DefaultSecretKeys is SecretKeyPattern(DefaultSecretWords).
var DefaultSecretKeys = SecretKeyPattern(DefaultSecretWords)

// SecretKeyPattern matches a data key that holds one of words as whole
// parts. A key's parts are split at any character but a letter or digit
// (`_`, `-`, `.`), at camelCase humps and between letters and digits, and
// compared in any of lower, Title or UPPER case: "auth" matches auth,
// x-auth, authToken, AUTH_TOKEN and OAuth, not author or authority. A word
// of several parts ("api_key", or "apiKey") matches them in a row however
// they are joined: api_key, apiKey, X-API-KEY, apikey. Whole parts keep a
// word from sealing data that merely contains it. Nil when words holds
// none.
func SecretKeyPattern(words []string) *regexp.Regexp {
	var alts []string
	for _, w := range words {
		if ps := keyParts(w); len(ps) > 0 {
			alts = append(alts, partsPattern(ps))
		}
	}
	if len(alts) == 0 {
		return nil
	}
	slices.Sort(alts)
	return regexp.MustCompile(strings.Join(slices.Compact(alts), "|"))
}

// keyParts splits a word as SecretKeyPattern splits a key, lower-cased.
func keyParts(s string) []string {
	var parts []string
	var cur []rune
	cut := func() {
		if len(cur) > 0 {
			parts = append(parts, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(s)
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			cut()
			continue
		}
		if i > 0 && len(cur) > 0 {
			prev := rs[i-1]
			switch {
			case unicode.IsDigit(prev) != unicode.IsDigit(r):
				cut()
			case unicode.IsUpper(r) && unicode.IsLower(prev):
				cut()
			case unicode.IsLower(r) && unicode.IsUpper(prev) && len(cur) > 1:
				// The last capital of a run starts a word: APIKey.
				last := cur[len(cur)-1]
				cur = cur[:len(cur)-1]
				cut()
				cur = append(cur, last)
			}
		}
		cur = append(cur, r)
	}
	cut()
	return parts
}

// partsPattern matches parts in a row in a raw key. Only the first part
// looks at what comes before it, and only the last at what follows, so a
// match starts and ends on a part's boundary; parts in between may be
// joined by separators or by nothing.
func partsPattern(parts []string) string {
	const sep = `[^A-Za-z0-9]*`
	n := len(parts) - 1
	alt := func(f func(form) string, p string) string {
		var out []string
		for _, fm := range forms(p) {
			out = append(out, f(fm))
		}
		return "(?:" + strings.Join(slices.Compact(out), "|") + ")"
	}
	if n == 0 {
		return alt(func(f form) string { return f.lead + regexp.QuoteMeta(f.text) + f.trail }, parts[0])
	}
	s := alt(func(f form) string { return f.lead + regexp.QuoteMeta(f.text) }, parts[0])
	for _, p := range parts[1:n] {
		s += sep + alt(func(f form) string { return regexp.QuoteMeta(f.text) }, p)
	}
	return s + sep + alt(func(f form) string { return regexp.QuoteMeta(f.text) + f.trail }, parts[n])
}

// form is one way a part is written, with what may stand before and after
// it for it to be a whole part.
type form struct{ lead, text, trail string }

// forms are a lower-case part written lower (not after a letter: xauth is
// one part; not before a lower-case letter: author), Title (after
// anything: xAuth, OAuth) and UPPER (not after a capital: XAUTH; before a
// non-letter or a Title word: AUTHToken). Digits stand apart from letters.
func forms(p string) []form {
	if strings.IndexFunc(p, unicode.IsLetter) < 0 {
		return []form{{`(?:^|[^0-9])`, p, `(?:$|[^0-9])`}}
	}
	r := []rune(p)
	title := string(unicode.ToUpper(r[0])) + string(r[1:])
	return []form{
		{`(?:^|[^A-Za-z])`, p, `(?:$|[^a-z])`},
		{``, title, `(?:$|[^a-z])`},
		{`(?:^|[^A-Z])`, strings.ToUpper(p), `(?:$|[^A-Za-z]|[A-Z][a-z])`},
	}
}

// secretParams are URL query parameters that make a link a credential.
var secretParams = regexp.MustCompile(`(?i)^(token|code|key|sig|signature|auth|session|otp|secret|access_token|id_token|t)$`)

// split takes out of data every top-level value whose key matches keys or
// which is a URL carrying a credential-like query parameter. It returns the
// payload data (those values replaced by SealedValue), the values taken and
// their keys, sorted; data itself is not changed.
func split(keys *regexp.Regexp, data map[string]any) (map[string]any, map[string]any, []string) {
	var taken map[string]any
	for k, v := range data {
		if v == SealedValue {
			continue
		}
		if !secretKey(keys, k) && !credentialURL(v) {
			continue
		}
		if taken == nil {
			taken = map[string]any{}
		}
		taken[k] = v
	}
	if taken == nil {
		return data, nil, nil
	}
	clean := maps.Clone(data)
	for k := range taken {
		clean[k] = SealedValue
	}
	return clean, taken, slices.Sorted(maps.Keys(taken))
}

// keyVerdicts remembers, for each pattern, which keys it matched: an app
// sends the same few data keys over and over, and a regexp match of each
// key on every message costs more than the rest of sealing. At most
// maxKeyVerdicts keys a pattern are kept; past that keys are matched afresh.
var keyVerdicts sync.Map // *regexp.Regexp → *verdicts

const maxKeyVerdicts = 4096

type verdicts struct {
	m sync.Map // key → bool
	n atomic.Int32
}

// secretKey reports whether keys matches key.
func secretKey(keys *regexp.Regexp, key string) bool {
	vv, ok := keyVerdicts.Load(keys)
	if !ok {
		vv, _ = keyVerdicts.LoadOrStore(keys, new(verdicts))
	}
	v := vv.(*verdicts)
	if got, ok := v.m.Load(key); ok {
		return got.(bool)
	}
	match := keys.MatchString(key)
	if v.n.Load() < maxKeyVerdicts {
		if _, loaded := v.m.LoadOrStore(strings.Clone(key), match); !loaded {
			v.n.Add(1)
		}
	}
	return match
}

func credentialURL(v any) bool {
	s, ok := v.(string)
	if !ok || len(s) < 8 {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.RawQuery == "" {
		return false
	}
	for p := range u.Query() {
		if secretParams.MatchString(p) {
			return true
		}
	}
	return false
}

// Seal keeps secret values of data out of a task payload: they are stored
// under ref for the worker (VaultTTL), and the returned data holds
// SealedValue in their place; sealed names the keys (nil: nothing to seal,
// no Redis call). Keys already sealed stay sealed.
func (s *Service) Seal(ctx context.Context, customerID, ref string, data map[string]any, already []string) (map[string]any, []string, error) {
	clean, taken, keys := split(s.secretKeys(), data)
	if len(taken) == 0 {
		return data, already, nil
	}
	if len(already) > 0 {
		// Merge with what an earlier task sealed under the same ref.
		old, err := s.o.Store.Sealed(ctx, customerID, ref)
		if err != nil && herald.ErrorCode(err) != herald.ENotFound {
			return nil, nil, err
		}
		for k, v := range old {
			if _, ok := taken[k]; !ok {
				taken[k] = v
			}
		}
		keys = slices.Compact(slices.Sorted(slices.Values(append(keys, already...))))
	}
	if err := s.o.Store.PutSealed(ctx, customerID, ref, taken); err != nil {
		return nil, nil, err
	}
	return clean, keys, nil
}

// Unseal puts the sealed values back into data (a copy) for rendering.
func (s *Service) Unseal(ctx context.Context, customerID, ref string, data map[string]any, sealed []string) (map[string]any, error) {
	if len(sealed) == 0 {
		return data, nil
	}
	vals, err := s.o.Store.Sealed(ctx, customerID, ref)
	if err != nil {
		return nil, err
	}
	out := maps.Clone(data)
	if out == nil {
		out = map[string]any{}
	}
	for _, k := range sealed {
		if v, ok := vals[k]; ok {
			out[k] = v
		}
	}
	return out, nil
}

func (s *Service) secretKeys() *regexp.Regexp {
	if s.o.SecretKeys != nil {
		return s.o.SecretKeys
	}
	return DefaultSecretKeys
}
