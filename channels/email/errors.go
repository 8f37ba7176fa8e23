package email

import (
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/heraldhq/herald"
	gomail "github.com/wneessen/go-mail"
)

// ErrClosed is the cause of every Send after Close.
var ErrClosed = errors.New("email: sender closed")

var (
	enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)
	addressRE  = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9.-]+`)
)

// classify turns a go-mail or network error into herald's error.
//
// go-mail reports a dropped connection as a SendError with IsTemp()==false
// and no reply code, and a refused dial as a plain error: neither is the
// server's verdict on the message, so both are temporary. Only a 5xx reply is
// permanent.
func (s *Sender) classify(err error) *herald.Error {
	code, enh := 0, ""
	var se *gomail.SendError
	var te *textproto.Error
	switch {
	case errors.As(err, &se):
		switch se.Reason {
		case gomail.ErrGetSender, gomail.ErrGetRcpts:
			return s.redact(&herald.Error{Code: herald.EInvalid, Reason: "smtp address", Err: err})
		case gomail.ErrNoUnencoded:
			return s.redact(herald.Permanent(err, "smtp 8bitmime"))
		}
		code, enh = se.ErrorCode(), se.EnhancedStatusCode()
	case errors.As(err, &te):
		// Errors from the dial (greeting, EHLO, STARTTLS, AUTH) carry the
		// reply itself; the enhanced code, if any, leads its text.
		code = te.Code
		if m := enhancedRE.FindString(te.Msg); m != "" && m[0] == byte('0'+code/100) {
			enh = m
		}
	}
	switch code / 100 {
	case 5:
		return s.redact(herald.Permanent(err, reason(code, enh)))
	case 4:
		return s.redact(herald.Temporary(err, reason(code, enh), 0))
	default:
		return s.redact(herald.Temporary(err, "smtp connection", 0))
	}
}

func reason(code int, enh string) string {
	if enh == "" {
		return fmt.Sprintf("smtp %d", code)
	}
	return fmt.Sprintf("smtp %d %s", code, enh)
}

// redact rewrites e's message for logs: go-mail lists the recipients in its
// errors and servers often quote them back; the password never appears in
// either, but is scrubbed anyway in case a server echoes it.
func (s *Sender) redact(e *herald.Error) *herald.Error {
	msg := e.Err.Error()
	for _, cut := range []string{", affected recipient(s): ", ", affected message ID: "} {
		if i := strings.Index(msg, cut); i >= 0 {
			msg = msg[:i]
		}
	}
	msg = addressRE.ReplaceAllString(msg, "[address]")
	if len(s.cfg.Password) >= 3 {
		msg = strings.ReplaceAll(msg, s.cfg.Password, "xxxxx")
	}
	e.Message = "email: " + msg
	return e
}

// DeadAddress reports whether err is the server saying the recipient's
// address does not exist (a permanent reply with enhanced status 5.1.x at
// RCPT or DATA), so the address can be suppressed. Sender-address codes
// (5.1.7, 5.1.8) and replies to MAIL FROM are about our From, not the
// customer, and do not count.
func DeadAddress(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) || se.ErrorCode()/100 != 5 {
		return false
	}
	switch se.Reason {
	case gomail.ErrSMTPRcptTo, gomail.ErrSMTPData, gomail.ErrSMTPDataClose:
	default:
		return false
	}
	enh := se.EnhancedStatusCode()
	if !strings.HasPrefix(enh, "5.1.") {
		return false
	}
	return enh != "5.1.7" && enh != "5.1.8"
}
