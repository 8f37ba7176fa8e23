// Package smtpserver is an in-process SMTP server for `herald dev` and for
// tests: it keeps every accepted message (and, with Options.Dir, writes it as
// an .eml file), and it can misbehave on demand (reply 4xx/5xx at MAIL, RCPT
// or DATA, answer late or not at all, hang up mid-transaction, go down and
// come back) so that senders are tested against a real SMTP conversation
// rather than a mock.
package smtpserver
