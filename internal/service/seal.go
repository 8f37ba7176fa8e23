package service

import (
	"context"
	"maps"
	"net/url"
	"regexp"
	"slices"

	"github.com/heraldhq/herald"
)

// SealedValue stands in a task's payload for a value kept out of it.
const SealedValue = "[sealed]"

// DefaultSecretKeys matches data keys whose values are secrets or links
// that act as credentials: they never travel in a task payload, so the
// dashboard, its archive and any payload dump show the key and not the
// value. worker.secret_keys replaces it.
var DefaultSecretKeys = regexp.MustCompile(`(?i)(token|secret|passw|passcode|otp|api_?key|auth|session|signature|credential|cookie|reset|magic|verify|verification|login_url|invite_url|confirm)`)

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
		if !keys.MatchString(k) && !credentialURL(v) {
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
