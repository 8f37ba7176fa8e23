// Package email is herald's email channel: one herald.Sender over go-mail
// that turns a rendered message into a MIME email (text and HTML parts,
// encoded UTF-8 subject, a Message-ID derived from the delivery's idempotency
// key, RFC 8058 one-click unsubscribe headers, optionally a DKIM signature),
// hands it to an SMTP server through a small pool of reused connections, and
// classifies every failure as invalid, temporary or permanent.
package email
