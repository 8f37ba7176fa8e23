package msgid_test

import (
	"net/mail"
	"strings"
	"testing"

	"github.com/heraldhq/herald/internal/msgid"
	"github.com/stretchr/testify/require"
)

var (
	current = []byte("0123456789abcdef0123456789abcdef")
	earlier = []byte("fedcba9876543210fedcba9876543210")
)

func TestSealOpensToItsIDs(t *testing.T) {
	t.Parallel()
	k := msgid.NewKeys(current)
	for _, tc := range []struct{ customer, message string }{
		{"c1", "m_5f0c2a9e41b7d3c8a6e2f190"},
		{"ada@example.com", "m_5f0c2a9e41b7d3c8a6e2f190"},
		{"x", "b_01jd5x_x"},
		{strings.Repeat("c", 48), strings.Repeat("m", 48)}, // MaxIDs exactly
		{strings.Repeat("c", 48), strings.Repeat("a", 48)}, // and packed
		{"c1", "j_8efc178ee398a588b8d1.welcome.1"},
		{"c1", "m_5f0c2a9e41b7d3c8a6e2f19"},    // an odd run
		{"c1", "0123456789abcdef"},             // a run alone
		{"c1", "m_0123456_89abcdef0_deadbeef"}, // the second run is packed
		{"c1", "m_5F0C2A9E41B7D3C8A6E2F190"},   // upper case stays as it is
		{"Ada.Lovelace+1@example.com", "t_ab"}, // no run
	} {
		local, ok := k.Seal(tc.customer, tc.message)
		require.True(t, ok, tc)
		require.True(t, strings.HasPrefix(local, msgid.Version+"."), local)
		require.LessOrEqual(t, len(local), 4+153)
		if len(tc.customer) > 4 {
			require.NotContains(t, local, tc.customer, "the customer ID is not readable")
		}

		id := "<" + local + "@lumen.example>"
		// A valid msg-id: net/mail reads it back as it is.
		ids, err := mail.ParseAddress(strings.Trim(id, "<>"))
		require.NoError(t, err, id)
		require.Equal(t, strings.Trim(id, "<>"), ids.Address)
		require.True(t, msgid.IsSealed(id))

		for _, form := range []string{id, strings.Trim(id, "<>"), " " + id + " ", strings.Replace(id, "lumen.example", "LUMEN.example", 1)} {
			cust, msg, ok := k.Open(form)
			require.True(t, ok, form)
			require.Equal(t, tc.customer, cust)
			require.Equal(t, tc.message, msg)
		}
		again, _ := k.Seal(tc.customer, tc.message)
		require.Equal(t, local, again, "deterministic: every retry carries the same Message-ID")
	}
	a, _ := k.Seal("c1", "m1")
	b, _ := k.Seal("c1", "m2")
	require.NotEqual(t, a, b)
	// A digest in the message ID takes half the room.
	packed, _ := k.Seal("c1", "m_5f0c2a9e41b7d3c8a6e2f190")
	unpacked, _ := k.Seal("c1", "m_"+strings.Repeat("z", 24))
	require.LessOrEqual(t, len(packed), len(unpacked)-13, "%s\n%s", packed, unpacked)
	// The boundary between customer and message is sealed too.
	c, _ := k.Seal("c1m", "1")
	require.NotEqual(t, a, c)
}

func TestOpenRefusesAlteredAndForeignIDs(t *testing.T) {
	t.Parallel()
	k := msgid.NewKeys(current)
	local, ok := k.Seal("ada@example.com", "m_5f0c2a9e41b7d3c8a6e2f190")
	require.True(t, ok)
	token := strings.TrimPrefix(local, msgid.Version+".")

	// Every single-character change of the token fails to open.
	for i := range token {
		for _, r := range "a7-" {
			if rune(token[i]) == r {
				continue
			}
			altered := msgid.Version + "." + token[:i] + string(r) + token[i+1:] + "@lumen.example"
			_, _, ok := k.Open(altered)
			require.False(t, ok, "changed at %d: %s", i, altered)
		}
	}
	for _, bad := range []string{
		"",
		"<93f7ac29619e55c077af4f87caeb4899@lumen.example>", // unsealed, from before
		"<" + msgid.Version + ".@lumen.example>",
		"<" + msgid.Version + "." + token[:20] + "@lumen.example>", // cut short
		"<" + msgid.Version + "." + token + "aa@lumen.example>",    // lengthened
		"<" + msgid.Version + "." + token + "!@lumen.example>",     // not base64url
		"<" + msgid.Version + "." + strings.ToUpper(token) + "@lumen.example>",
		"<hm2." + token + "@lumen.example>",     // another version
		"<" + msgid.Version + "." + token + ">", // no domain
		"<" + msgid.Version + "." + strings.Repeat("a", 400) + "@lumen.example>",
	} {
		_, _, ok := k.Open(bad)
		require.False(t, ok, bad)
	}
	require.False(t, msgid.IsSealed("<93f7ac29619e55c077af4f87caeb4899@lumen.example>"))

	// Another signing key does not open it.
	_, _, ok = msgid.NewKeys(earlier).Open(local + "@lumen.example")
	require.False(t, ok, "wrong key")
	// Nor does no key.
	_, _, ok = msgid.NewKeys().Open(local + "@lumen.example")
	require.False(t, ok)
	var none *msgid.Keys
	_, _, ok = none.Open(local + "@lumen.example")
	require.False(t, ok)
}

func TestRotatedKeyStillOpens(t *testing.T) {
	t.Parallel()
	old, ok := msgid.NewKeys(earlier).Seal("c1", "m1")
	require.True(t, ok)

	rotated := msgid.NewKeys(current, earlier)
	cust, msg, ok := rotated.Open(old + "@lumen.example")
	require.True(t, ok, "sealed under the earlier key, still configured")
	require.Equal(t, "c1", cust)
	require.Equal(t, "m1", msg)

	fresh, _ := rotated.Seal("c1", "m1")
	require.NotEqual(t, old, fresh, "new mail is sealed with the current key")
	_, _, ok = msgid.NewKeys(current).Open(fresh + "@lumen.example")
	require.True(t, ok)
	_, _, ok = msgid.NewKeys(earlier).Open(fresh + "@lumen.example")
	require.False(t, ok)

	// Once the earlier key is dropped, its Message-IDs no longer open.
	_, _, ok = msgid.NewKeys(current).Open(old + "@lumen.example")
	require.False(t, ok)
}

func TestSealFallsBackWhenItCannot(t *testing.T) {
	t.Parallel()
	k := msgid.NewKeys(current)
	for _, tc := range []struct{ customer, message string }{
		{strings.Repeat("c", 49), strings.Repeat("m", 48)}, // one over MaxIDs
		{strings.Repeat("c", 128), "m1"},                   // the longest customer ID
		{"", "m1"},
		{"c1", ""},
	} {
		_, ok := k.Seal(tc.customer, tc.message)
		require.False(t, ok, tc)
	}
	_, ok := msgid.NewKeys().Seal("c1", "m1")
	require.False(t, ok, "no key configured")
	_, ok = msgid.NewKeys(nil, []byte{}).Seal("c1", "m1")
	require.False(t, ok)
	var none *msgid.Keys
	_, ok = none.Seal("c1", "m1")
	require.False(t, ok)
}

func FuzzOpen(f *testing.F) {
	k := msgid.NewKeys(current, earlier)
	local, _ := k.Seal("c1", "m1")
	f.Add(local + "@lumen.example")
	f.Add("<93f7ac29619e55c077af4f87caeb4899@lumen.example>")
	f.Add("c1|j_8efc178ee398a588b8d1.welcome.1")
	f.Add("c1|m_5f0c2a9e41b7d3c8a6e2f19")
	f.Fuzz(func(t *testing.T, id string) {
		// Any IDs that can be sealed open to themselves.
		if cust, msg, found := strings.Cut(id, "|"); found {
			if local, ok := k.Seal(cust, msg); ok {
				c2, m2, ok := k.Open(local + "@x")
				require.True(t, ok, id)
				require.Equal(t, [2]string{cust, msg}, [2]string{c2, m2})
			}
		}

		cust, msg, ok := k.Open(id)
		if !ok {
			return
		}
		// Whatever opens was sealed by us: it names a customer and a
		// message, and sealing them again gives the same token.
		require.NotEmpty(t, cust)
		require.NotEmpty(t, msg)
		again, sealed := k.Seal(cust, msg)
		require.True(t, sealed)
		c2, m2, ok := k.Open(again + "@x")
		require.True(t, ok)
		require.Equal(t, [2]string{cust, msg}, [2]string{c2, m2})
	})
}
