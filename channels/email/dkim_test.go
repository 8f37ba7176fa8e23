package email_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"math/big"
	"net/mail"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/channeltest"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

const selector = "herald2026"

// dkimKey is a signing key and the TXT record that publishes it.
type dkimKey struct {
	name   string
	algo   string // the signature's a= tag
	signer crypto.Signer
	txt    string
}

// lookup answers the DNS query for the key, and only that one.
func (k dkimKey) lookup(name string) ([]string, error) {
	if name != selector+"._domainkey."+fromDomain {
		return nil, fmt.Errorf("no TXT record at %s", name)
	}
	return []string{k.txt}, nil
}

// Keys are generated once: RSA generation is slow under -race.
var testKeys = sync.OnceValue(func() []dkimKey {
	rsaKey := func(bits int) dkimKey {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			panic(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			panic(err)
		}
		return dkimKey{fmt.Sprintf("RSA%d", bits), "rsa-sha256", k, "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der)}
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return []dkimKey{
		rsaKey(2048),
		rsaKey(email.MinDKIMRSABits),
		{"Ed25519", "ed25519-sha256", priv, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)},
	}
})

func withDKIM(k dkimKey) func(*email.Config) {
	return func(c *email.Config) {
		c.DKIM = email.DKIM{Domain: fromDomain, Selector: selector, Signer: k.signer}
	}
}

// verify checks the one DKIM signature of raw against k's published key.
func verify(t *testing.T, raw []byte, k dkimKey) error {
	t.Helper()
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: k.lookup})
	require.NoError(t, err)
	require.Len(t, vs, 1, "one signature")
	if vs[0].Err == nil {
		require.Equal(t, fromDomain, vs[0].Domain)
	}
	return vs[0].Err
}

// tags returns the tags of raw's DKIM-Signature, folding whitespace removed.
func tags(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(t, err)
	sigs := msg.Header["Dkim-Signature"]
	require.Len(t, sigs, 1)
	out := map[string]string{}
	for _, tag := range strings.Split(sigs[0], ";") {
		k, v, ok := strings.Cut(tag, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Join(strings.Fields(v), "")
	}
	return out
}

// longUnsubscribe is an unsubscribe link the size herald's signed tokens
// make: with the mailto target, List-Unsubscribe is some 250 characters.
const longUnsubscribe = "https://herald.test/unsubscribe?token=" +
	"eyJjIjoiY3VzXzAxSjhaUTRYNVc3TjJQM0s5UjZUMU1WQiIsInQiOiJwcm9kdWN0LXVwZGF0ZXMiLCJlIjoxNzk4NzYxNjAwfQ." +
	"kX3f9Q2mZ7vB1cN8dR4tY6uH0wJ5sL2aE9gP7oI3yT1"

func TestDKIMSignsEveryMessage(t *testing.T) {
	t.Parallel()
	variants := []struct {
		name string
		mod  func(*herald.Message)
		// want are the fields h= names, each twice; the others must be absent.
		want []string
	}{
		{"Full", func(m *herald.Message) {
			m.Content.Subject = "Welcome, Zoë 👋 ยินดีต้อนรับ ようこそ — a subject long enough to need folding across lines"
			m.Unsubscribe = []string{longUnsubscribe, "mailto:unsubscribe@herald.test?subject=unsubscribe"}
			m.ReplyTo = "support@herald.test"
		}, []string{"From", "To", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post"}},
		{"TextOnlyMailto", func(m *herald.Message) {
			m.Content.HTML = ""
			m.Unsubscribe = []string{"mailto:unsubscribe@herald.test"}
		}, []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe"}},
		{"HTMLOnlyNoUnsubscribe", func(m *herald.Message) {
			m.Content.Text = ""
		}, []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "Content-Transfer-Encoding"}},
		{"AwkwardBody", func(m *herald.Message) {
			// Trailing blanks, dot-stuffing, a line longer than SMTP's
			// limit (quoted-printable breaks it), blank lines at the end.
			m.Content.Text = "trailing blanks   \t\n.\n..two dots\n" + strings.Repeat("x", 1200) + "\n\n\n"
			m.Content.HTML = "<p>.</p>\n.\n<p>" + strings.Repeat("ü", 600) + "</p>"
			m.Unsubscribe = []string{longUnsubscribe}
		}, []string{"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type", "List-Unsubscribe", "List-Unsubscribe-Post"}},
	}
	all := []string{"From", "To", "Subject", "Date", "Message-ID", "Reply-To", "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "List-Unsubscribe", "List-Unsubscribe-Post"}

	for _, k := range testKeys() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			// Sent at once, over several connections: the key is shared.
			b := setup(t, smtpserver.Options{}, withDKIM(k))
			ids := make([]string, len(variants))
			errs := make([]error, len(variants))
			var wg sync.WaitGroup
			for i, v := range variants {
				wg.Go(func() {
					m := message(v.mod)
					ids[i] = email.MessageID(m.ID, fromDomain)
					_, errs[i] = b.sender.Send(context.Background(), m)
				})
			}
			wg.Wait()
			for _, err := range errs {
				require.NoError(t, err)
			}
			received := map[string][]byte{}
			for _, m := range b.srv.Messages() {
				received[m.MessageID] = m.Data
			}
			require.Len(t, received, len(variants))
			for i, v := range variants {
				t.Run(v.name, func(t *testing.T) {
					raw, ok := received[ids[i]]
					require.True(t, ok, "received with the Message-ID derived from the delivery")
					require.NoError(t, verify(t, raw, k))

					tg := tags(t, raw)
					require.Equal(t, "relaxed/relaxed", tg["c"])
					require.Equal(t, fromDomain, tg["d"])
					require.Equal(t, selector, tg["s"])
					require.Equal(t, k.algo, tg["a"])
					signed := map[string]int{}
					for _, h := range strings.Split(tg["h"], ":") {
						signed[h]++
					}
					for _, h := range all {
						if wanted := contains(v.want, h); wanted {
							require.Equal(t, 2, signed[h], "%s is signed and oversigned", h)
						} else {
							require.Zero(t, signed[h], "%s is not in the message, so not in h=", h)
						}
					}
				})
			}
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// The channel suite with signing on: every message the server accepts
// verifies.
func TestDKIMExercise(t *testing.T) {
	t.Parallel()
	k := testKeys()[2]
	channeltest.Exercise(t, func(t *testing.T) channeltest.Peer {
		b := setup(t, smtpserver.Options{}, withDKIM(k))
		t.Cleanup(func() {
			for _, m := range b.srv.Messages() {
				require.NoError(t, verify(t, m.Data, k))
			}
		})
		return peer{b}
	})
}

func TestDKIMTampered(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		edit  func(raw string) string
		valid bool
	}{
		{"Untouched", func(raw string) string { return raw }, true},
		// Relaxed canonicalization: refolding on the way is no change.
		{"Unfolded", func(raw string) string { return strings.ReplaceAll(raw, ",\r\n <mailto:", ", <mailto:") }, true},
		{"Refolded", func(raw string) string {
			return strings.Replace(raw, "Subject: Welcome aboard", "Subject: Welcome\r\n\taboard", 1)
		}, true},
		{"Subject", func(raw string) string {
			return strings.Replace(raw, "Subject: Welcome aboard", "Subject: Welcome abroad", 1)
		}, false},
		{"ListUnsubscribe", func(raw string) string {
			return strings.Replace(raw, "<https://herald.test/unsubscribe?token=", "<https://evil.test/unsubscribe?token=", 1)
		}, false},
		{"ListUnsubscribeAdded", func(raw string) string {
			return "List-Unsubscribe: <https://evil.test/u>\r\n" + raw
		}, false},
		{"ListUnsubscribePostRemoved", func(raw string) string {
			return strings.Replace(raw, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", "", 1)
		}, false},
		{"FromAdded", func(raw string) string { return "From: Bank <alerts@bank.test>\r\n" + raw }, false},
		{"Body", func(raw string) string { return strings.Replace(raw, "Hello from herald.", "Hello from evil.", 1) }, false},
	}
	for _, k := range testKeys() {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{}, withDKIM(k))
			_, err := b.sender.Send(context.Background(), message(func(m *herald.Message) {
				m.Unsubscribe = []string{longUnsubscribe, "mailto:unsubscribe@herald.test?subject=unsubscribe"}
			}))
			require.NoError(t, err)
			raw := string(b.srv.Messages()[0].Data)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					edited := tt.edit(raw)
					if tt.name != "Untouched" {
						require.NotEqual(t, raw, edited, "the edit applies")
					}
					err := verify(t, []byte(edited), k)
					if tt.valid {
						require.NoError(t, err)
					} else {
						// A broken signature, not a malformed or unfetchable one.
						require.ErrorContains(t, err, "did not verify")
						require.False(t, dkim.IsPermFail(err) || dkim.IsTempFail(err), "got %v", err)
					}
				})
			}
		})
	}
}

// smallRSA is a public key too small for DKIM; it cannot sign, and need not.
type smallRSA struct{}

func (smallRSA) Public() crypto.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), 511)
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

func (smallRSA) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, fmt.Errorf("not a key")
}

func TestDKIMConfig(t *testing.T) {
	t.Parallel()
	ed := testKeys()[2].signer
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tests := []struct {
		name string
		dkim email.DKIM
		want string // "" when valid
	}{
		{"Off", email.DKIM{}, ""},
		{"Ed25519", email.DKIM{Domain: "herald.test", Selector: "s1", Signer: ed}, ""},
		{"RSAMinimum", email.DKIM{Domain: "mail.herald.test", Selector: "s1.eu", Signer: testKeys()[1].signer}, ""},
		{"DomainFinalDot", email.DKIM{Domain: "herald.test.", Selector: "s1", Signer: ed}, "DKIM domain"},
		{"NoSelector", email.DKIM{Domain: "herald.test", Signer: ed}, "a domain, a selector and a key"},
		{"NoKey", email.DKIM{Domain: "herald.test", Selector: "s1"}, "a domain, a selector and a key"},
		{"NoDomain", email.DKIM{Selector: "s1", Signer: ed}, "a domain, a selector and a key"},
		{"DomainWithSpace", email.DKIM{Domain: "herald test", Selector: "s1", Signer: ed}, "DKIM domain"},
		{"DomainInjects", email.DKIM{Domain: "herald.test; s=evil", Selector: "s1", Signer: ed}, "DKIM domain"},
		{"SelectorInjects", email.DKIM{Domain: "herald.test", Selector: "s1;\r\n", Signer: ed}, "DKIM selector"},
		{"RSATooSmall", email.DKIM{Domain: "herald.test", Selector: "s1", Signer: smallRSA{}}, "512 bits, want at least 1024"},
		{"ECDSA", email.DKIM{Domain: "herald.test", Selector: "s1", Signer: ec}, "want RSA or Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := email.New(email.Config{Host: "127.0.0.1", From: fromAddr, DKIM: tt.dkim})
			if tt.want == "" {
				require.NoError(t, err)
				require.NoError(t, s.Close())
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}
