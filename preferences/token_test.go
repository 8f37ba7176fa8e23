package preferences

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestTokenRoundTrip(t *testing.T) {
	t.Parallel()
	now := utc("2026-06-01T12:00:00Z")
	c := Claims{CustomerID: "cus_42", Purpose: PurposeUnsubscribe, Topic: "product-updates", Channel: herald.ChannelEmail, Expires: now.Add(DefaultTokenTTL)}
	tok := Sign(testKey, c)
	require.NotContains(t, tok, "=")
	require.NotContains(t, tok, "+")
	require.NotContains(t, tok, "/")
	require.Less(t, len(tok), 200, "compact enough for a List-Unsubscribe header")
	got, err := Verify(testKey, tok, now)
	require.NoError(t, err)
	require.Equal(t, c, got)
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()
	now := utc("2026-06-01T12:00:00Z")
	good := Sign(testKey, Claims{CustomerID: "cus_42", Purpose: PurposePreferences, Expires: now.Add(time.Hour)})
	parts := strings.Split(good, ".")
	other := Sign(testKey, Claims{CustomerID: "cus_43", Purpose: PurposePreferences, Expires: now.Add(time.Hour)})
	flip := func(s string) string { // change one character of the claims
		b := []byte(s)
		i := len(parts[0]) + 3
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	cases := []struct {
		name  string
		key   []byte
		token string
		now   time.Time
		msg   string
	}{
		{"empty", testKey, "", now, "missing"},
		{"expired", testKey, good, now.Add(time.Hour), "expired"},
		{"tampered claims", testKey, flip(good), now, "bad signature"},
		{"swapped claims", testKey, parts[0] + "." + strings.Split(other, ".")[1] + "." + parts[2], now, "bad signature"},
		{"other key", []byte("another key, another customer base"), good, now, "bad signature"},
		{"truncated signature", testKey, good[:len(good)-2], now, "signature"},
		{"signature with other trailing bits", testKey, good[:len(good)-1] + string(good[len(good)-1]^1), now, "signature"},
		{"no signature", testKey, parts[0] + "." + parts[1], now, "malformed"},
		{"bad base64", testKey, parts[0] + "." + parts[1] + ".***", now, "malformed"},
		{"wrong version", testKey, "h0." + parts[1] + "." + parts[2], now, "malformed"},
		{"huge", testKey, strings.Repeat("a", 5000), now, "malformed"},
		{"no expiry", testKey, Sign(testKey, Claims{CustomerID: "c", Purpose: PurposePreferences}), now, "no expiry"},
		{"no customer", testKey, Sign(testKey, Claims{Purpose: PurposePreferences, Expires: now.Add(time.Hour)}), now, "no customer"},
		{"bad purpose", testKey, Sign(testKey, Claims{CustomerID: "c", Purpose: "admin", Expires: now.Add(time.Hour)}), now, "purpose"},
		{"valid json, not claims", testKey, signRaw(testKey, `[1,2]`), now, "malformed claims"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Verify(tc.key, tc.token, tc.now)
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "%v", err)
			require.Contains(t, err.Error(), tc.msg)
		})
	}
	_, err := Verify(nil, good, now)
	require.Equal(t, herald.EInternal, herald.ErrorCode(err))
	require.Panics(t, func() { Sign(nil, Claims{}) })
}

func signRaw(key []byte, payload string) string {
	body := tokenVersion + "." + b64.EncodeToString([]byte(payload))
	return body + "." + b64.EncodeToString(tokenMAC(key, body))
}

func FuzzVerify(f *testing.F) {
	now := utc("2026-06-01T12:00:00Z")
	f.Add(Sign(testKey, Claims{CustomerID: "cus_42", Purpose: PurposeUnsubscribe, Topic: "news", Channel: "email", Expires: now.Add(time.Hour)}))
	f.Add(Sign(testKey, Claims{CustomerID: "cus_42", Purpose: PurposePreferences, Expires: now.Add(-time.Hour)}))
	f.Add(signRaw(testKey, `{"c":"x","p":"preferences","e":1e30}`))
	f.Add("h1..")
	f.Add("h1.e30.")
	f.Add("")
	f.Add("....")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := Verify(testKey, tok, now)
		if err != nil {
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
			require.Zero(t, c)
			return
		}
		// Whatever verifies must be exactly what we signed.
		require.NotEmpty(t, c.CustomerID)
		require.True(t, c.Expires.After(now))
		require.Equal(t, tok, Sign(testKey, c), "a verified token re-signs to itself")
	})
}

func TestClickTokenCarriesItsTarget(t *testing.T) {
	t.Parallel()
	now := utc("2026-06-01T12:00:00Z")
	c := Claims{CustomerID: "cus_42", Purpose: PurposeClick, Channel: herald.ChannelEmail, Expires: now.Add(time.Hour),
		Message: "j_1.nudge.2", URL: "https://shop.example/cart?x=1&y=2", Event: "checkout.resumed"}
	got, err := Verify(testKey, Sign(testKey, c), now)
	require.NoError(t, err)
	require.Equal(t, c, got)

	for name, bad := range map[string]Claims{
		"no target":  {CustomerID: "cus_42", Purpose: PurposeClick, Message: "m", Expires: now.Add(time.Hour)},
		"no message": {CustomerID: "cus_42", Purpose: PurposeClick, URL: "https://x.example/", Expires: now.Add(time.Hour)},
	} {
		_, err := Verify(testKey, Sign(testKey, bad), now)
		require.Error(t, err, name)
	}
	// Tokens without the click fields read as before.
	plain := Claims{CustomerID: "cus_42", Purpose: PurposePreferences, Expires: now.Add(time.Hour)}
	tok := Sign(testKey, plain)
	got, err = Verify(testKey, tok, now)
	require.NoError(t, err)
	require.Equal(t, plain, got)
}
