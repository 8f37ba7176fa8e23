package email

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/hex"
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/heraldhq/herald"
	gomail "github.com/wneessen/go-mail"
)

// MinDKIMRSABits is the smallest RSA key DKIM signs with: RFC 8301 makes
// verifiers refuse smaller ones. 2048 bits is the usual choice.
const MinDKIMRSABits = 1024

// DKIM makes the Sender sign every message (RFC 6376), so that receivers can
// tell it comes from Domain and was not changed on the way: Gmail and Yahoo
// require it of bulk senders, and only a signed List-Unsubscribe gets their
// one-click unsubscribe button. Set all three fields or none.
//
// The signature is relaxed/relaxed and covers, where the message has them,
// From, To, Subject, Date, Message-ID, Reply-To, MIME-Version,
// Content-Type, Content-Transfer-Encoding, List-Unsubscribe and
// List-Unsubscribe-Post, each listed twice in h= so that a second copy of
// any of them added on the way breaks the signature.
type DKIM struct {
	// Domain is the signing domain (d=). For DMARC it must be the domain of
	// Config.From or a parent of it.
	Domain string
	// Selector names the key (s=): receivers fetch the public key from the
	// TXT record <Selector>._domainkey.<Domain>.
	Selector string
	// Signer is the private key: an *rsa.PrivateKey of at least
	// MinDKIMRSABits bits or an ed25519.PrivateKey, or a crypto.Signer
	// whose Public() is one of theirs (a key held in a KMS).
	Signer crypto.Signer
}

func (d DKIM) enabled() bool {
	return d.Domain != "" || d.Selector != "" || d.Signer != nil
}

// check validates d; the zero DKIM is valid and signs nothing.
func (d DKIM) check() error {
	if !d.enabled() {
		return nil
	}
	if d.Domain == "" || d.Selector == "" || d.Signer == nil {
		return errors.New("email: DKIM needs a domain, a selector and a key, or none of them")
	}
	// No final dot: d= is compared with the From domain for DMARC.
	if why := dnsNameProblem(d.Domain); why != "" || strings.HasSuffix(d.Domain, ".") || len(d.Domain) > 253 {
		return fmt.Errorf("email: DKIM domain %q is not a domain name", d.Domain)
	}
	if why := dnsNameProblem(d.Selector); why != "" || strings.HasSuffix(d.Selector, ".") || len(d.Selector) > 63 {
		return fmt.Errorf("email: DKIM selector %q: want DNS labels such as mail or s2024", d.Selector)
	}
	switch k := d.Signer.Public().(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinDKIMRSABits {
			return fmt.Errorf("email: DKIM RSA key has %d bits, want at least %d", n, MinDKIMRSABits)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("email: DKIM key is %T, want RSA or Ed25519", k)
	}
	return nil
}

// dkimHeaders are the header fields a signature covers when the message has
// them.
var dkimHeaders = []string{
	"From", "To", "Subject", "Date", "Message-ID", "Reply-To",
	"MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe-Post",
}

// sign adds a DKIM-Signature field to msg.
//
// go-mail offers no way to send bytes of our own, so the signature is
// computed over go-mail's rendering of msg and added to msg as a field,
// and go-mail renders msg again when it sends it. The two renderings carry
// the same bytes: every field value is fixed before this is called (Date
// and Message-ID included), the multipart boundary is fixed here, and the
// only thing that may differ is the order of the preformatted fields, which
// DKIM does not see (each signed field occurs once). go-mail's own DKIM
// signer (v0.8) is not used: it hashes its DKIM-Signature field unfolded but
// folds it mid-token on the wire, so a long h= list fails verification.
func (s *Sender) sign(msg *gomail.Msg) error {
	if msg.GetBoundary() == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		msg.SetBoundary(hex.EncodeToString(b[:]))
	}
	var raw bytes.Buffer
	if _, err := msg.WriteTo(&raw); err != nil {
		return signError(err)
	}
	header, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(raw.Bytes()))).ReadMIMEHeader()
	if err != nil {
		return signError(err)
	}
	keys := make([]string, 0, 2*len(dkimHeaders))
	for _, k := range dkimHeaders {
		if _, ok := header[textproto.CanonicalMIMEHeaderKey(k)]; ok {
			keys = append(keys, k)
		}
	}
	// Listed twice: the second names a copy the message does not have, so
	// one added later (a forged From or List-Unsubscribe above ours) fails.
	keys = append(keys, keys...)

	signer, err := dkim.NewSigner(&dkim.SignOptions{
		Domain:                 s.cfg.DKIM.Domain,
		Selector:               s.cfg.DKIM.Selector,
		Signer:                 s.cfg.DKIM.Signer,
		Hash:                   crypto.SHA256,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed,
		BodyCanonicalization:   dkim.CanonicalizationRelaxed,
		HeaderKeys:             keys,
	})
	if err != nil {
		return signError(err)
	}
	_, werr := signer.Write(raw.Bytes())
	if err := signer.Close(); err != nil {
		return signError(err)
	}
	if werr != nil {
		return signError(werr)
	}
	// "DKIM-Signature: a=...; bh=...;\r\n ...\r\n b=...\r\n": go-mail writes a
	// preformatted field as "name: value\r\n", the same bytes.
	name, value, _ := strings.Cut(signer.Signature(), ":")
	value = strings.TrimSuffix(strings.TrimPrefix(value, " "), "\r\n")
	msg.SetGenHeaderPreformatted(gomail.Header(name), value)
	return nil
}

// signError is a message that could not be signed: temporary, since the
// key was checked by New and only a signer that holds its key elsewhere
// (a KMS) fails at signing time; the message is never sent unsigned.
func signError(err error) error {
	e := herald.Temporary(err, "dkim", 0)
	e.Message = "email: DKIM signing: " + err.Error()
	return e
}
