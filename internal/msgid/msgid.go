// Package msgid makes the Message-ID of an email herald sends carry its
// customer and message, sealed, so that a reply (In-Reply-To, References)
// finds its message without an index in Redis.
//
// A sealed Message-ID reads <hm1.TOKEN@domain>. TOKEN is the customer ID
// and the message ID, encrypted and authenticated with a key derived from
// the signing key, in base64url without padding (letters, digits, '-' and
// '_': a valid dot-atom): the recipient can forward the header but not read
// the customer ID in it or change it. Like any msg-id it is compared as it
// is written, case included.
//
// The construction is SIV (RFC 5297, with HMAC-SHA256 as its PRF):
//
//	iv    = HMAC-SHA256(macKey, "hm1" || plain)[:16]
//	token = iv || AES-256-CTR(encKey, iv, plain)
//	plain = len(customer) || customer || packed message
//
// Message IDs are mostly hex digests ("m_5f0c…", "j_8efc….welcome.1"):
// their first run of 8 or more lowercase hex digits is packed two digits a
// byte, which keeps the Message-ID (and the ledger and timeline copies of
// it) a dozen characters shorter.
//
// It is deterministic, as a Message-ID must be: every retry of a delivery
// carries the same one, so mailbox providers fold a duplicate. Equal
// plaintexts give equal tokens and nothing else is revealed; the 128-bit iv
// is also the tag that Open checks.
package msgid

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strings"
)

// Version opens the local part of every sealed Message-ID, so the format
// can change without old IDs being misread. Unsealed IDs (32 hex digits)
// never hold a dot.
const Version = "hm1"

// MaxIDs bounds the customer and message IDs together that a Message-ID
// may carry: a token of at most 153 characters. A delivery with longer
// IDs gets an unsealed Message-ID and an index, as before sealing.
const MaxIDs = 96

const (
	ivLen = 16
	// maxLocal bounds what Open decodes (a longer local part cannot be one
	// of ours): the IV, the customer's length, the IDs and at most three
	// bytes of packing.
	maxLocal = len(Version) + 1 + (ivLen+1+MaxIDs+3)*4/3 + 1
	info     = "herald/message-id/" + Version
	// minHexRun is the shortest run of hex digits worth packing.
	minHexRun = 8
)

// Message encodings in the plaintext.
const (
	rawMessage    = 0 // the ID as it is
	packedMessage = 1 // len(prefix) prefix len(hex) hex-bytes suffix
)

// b64 is base64url without padding; Strict refuses stray bits in the last
// character, so a token has one spelling.
var b64 = base64.RawURLEncoding.Strict()

type key struct {
	enc cipher.Block
	mac []byte
}

// Keys seal Message-IDs with the first signing key and open them with any.
// The zero value (no key) seals nothing and opens nothing.
type Keys struct {
	keys []key
}

// NewKeys derives the sealing keys from signing keys, current first, then
// earlier ones kept so that replies to mail sent under them still match.
// Empty keys are skipped.
func NewKeys(signing ...[]byte) *Keys {
	k := &Keys{}
	for _, s := range signing {
		if len(s) == 0 {
			continue
		}
		m, err := hkdf.Key(sha256.New, s, nil, info, 64)
		if err != nil {
			panic("msgid: " + err.Error()) // only for lengths far beyond 64
		}
		block, err := aes.NewCipher(m[:32])
		if err != nil {
			panic("msgid: " + err.Error())
		}
		k.keys = append(k.keys, key{enc: block, mac: m[32:]})
	}
	return k
}

// Seal returns the local part of the Message-ID that carries customerID
// and messageID; ok is false when there is no key, an ID is empty or they
// are longer together than MaxIDs.
func (k *Keys) Seal(customerID, messageID string) (local string, ok bool) {
	if k == nil || len(k.keys) == 0 || customerID == "" || messageID == "" || len(customerID)+len(messageID) > MaxIDs {
		return "", false
	}
	plain := make([]byte, 0, 4+len(customerID)+len(messageID))
	plain = append(plain, byte(len(customerID)))
	plain = append(plain, customerID...)
	plain = pack(plain, messageID)
	kk := k.keys[0]
	out := make([]byte, ivLen+len(plain))
	copy(out, kk.iv(plain))
	cipher.NewCTR(kk.enc, out[:ivLen]).XORKeyStream(out[ivLen:], plain)
	return Version + "." + b64.EncodeToString(out), true
}

// Open returns the customer and message a sealed Message-ID carries, with
// or without angle brackets; ok is false for any other
// Message-ID, one altered, or one sealed with a key no longer configured.
func (k *Keys) Open(rfcID string) (customerID, messageID string, ok bool) {
	local, ok := sealedLocal(rfcID)
	if !ok || k == nil {
		return "", "", false
	}
	raw, err := b64.DecodeString(local)
	if err != nil || len(raw) < ivLen+3 {
		return "", "", false
	}
	iv, sealed := raw[:ivLen], raw[ivLen:]
	plain := make([]byte, len(sealed))
	for _, kk := range k.keys {
		cipher.NewCTR(kk.enc, iv).XORKeyStream(plain, sealed)
		if !hmac.Equal(iv, kk.iv(plain)) {
			continue
		}
		n := int(plain[0])
		if n == 0 || 1+n >= len(plain) {
			return "", "", false
		}
		msg, ok := unpack(plain[1+n:])
		if !ok {
			return "", "", false
		}
		return string(plain[1 : 1+n]), msg, true
	}
	return "", "", false
}

// IsSealed reports whether rfcID has the form of a sealed Message-ID
// (without checking that it opens).
func IsSealed(rfcID string) bool {
	_, ok := sealedLocal(rfcID)
	return ok
}

// sealedLocal returns the token of a sealed Message-ID.
func sealedLocal(rfcID string) (string, bool) {
	s := strings.TrimSpace(rfcID)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	at := strings.LastIndexByte(s, '@')
	if at < 0 || at > maxLocal {
		return "", false
	}
	token, ok := strings.CutPrefix(s[:at], Version+".")
	return token, ok && token != ""
}

func (kk key) iv(plain []byte) []byte {
	m := hmac.New(sha256.New, kk.mac)
	m.Write([]byte(Version))
	m.Write(plain)
	return m.Sum(nil)[:ivLen]
}

// pack appends the message ID to b: its first run of minHexRun or more
// lowercase hex digits (an even number of them) as bytes, or the ID as it
// is when it has no such run.
func pack(b []byte, messageID string) []byte {
	start, n := hexRun(messageID)
	if n < minHexRun {
		b = append(b, rawMessage)
		return append(b, messageID...)
	}
	n &^= 1
	b = append(b, packedMessage, byte(start))
	b = append(b, messageID[:start]...)
	b = append(b, byte(n/2))
	b, _ = hex.AppendDecode(b, []byte(messageID[start:start+n]))
	return append(b, messageID[start+n:]...)
}

// unpack reverses pack.
func unpack(b []byte) (string, bool) {
	if len(b) < 2 {
		return "", false
	}
	switch b[0] {
	case rawMessage:
		return string(b[1:]), true
	case packedMessage:
		pl := int(b[1])
		if 2+pl >= len(b) {
			return "", false
		}
		prefix, rest := b[2:2+pl], b[2+pl:]
		hl := int(rest[0])
		if hl == 0 || 1+hl > len(rest) {
			return "", false
		}
		return string(prefix) + hex.EncodeToString(rest[1:1+hl]) + string(rest[1+hl:]), true
	}
	return "", false
}

// hexRun returns where the first run of at least minHexRun lowercase hex
// digits in s starts and its length (0 when none).
func hexRun(s string) (start, n int) {
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && ('0' <= s[j] && s[j] <= '9' || 'a' <= s[j] && s[j] <= 'f') {
			j++
		}
		if j-i >= minHexRun {
			return i, j - i
		}
		i = j + 1
	}
	return 0, 0
}
