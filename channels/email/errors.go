package email

import (
	"errors"
	"fmt"
	"net/textproto"
	"regexp"
	"strings"

	"github.com/heraldhq/herald"
)

// ErrClosed is the cause of every Send after Close.
var ErrClosed = errors.New("email: sender closed")

var (
	enhancedRE = regexp.MustCompile(`^[245]\.\d{1,3}\.\d{1,3}\b`)
	addressRE  = regexp.MustCompile(`[A-Za-z0-9.!#$%&'*+/=?^_{|}~-]+@[A-Za-z0-9.-]+`)
)

// classify turns a transaction's or a dial's error into herald's error.
//
// A dropped connection or a refused dial is not the server's verdict on
// the message, so it is temporary ("smtp connection"), as is a server that
// stopped answering within Config.Timeout ("smtp timeout"). Only a 5xx
// reply is permanent.
func (s *Sender) classify(err error) *herald.Error {
	code, enh := 0, ""
	var tx *txError
	var te *textproto.Error
	switch {
	case errors.As(err, &tx):
		code, enh = tx.reply()
	case errors.As(err, &te):
		// Errors from the dial (greeting, EHLO, STARTTLS, AUTH) carry the
		// reply itself; the enhanced code, if any, leads its text.
		code, enh = te.Code, enhancedCode(te)
	}
	switch code / 100 {
	case 5:
		return s.redact(herald.Permanent(err, reason(code, enh)))
	case 4:
		return s.redact(herald.Temporary(err, reason(code, enh), 0))
	default:
		if isTimeout(err) {
			return s.redact(herald.Temporary(err, "smtp timeout", 0))
		}
		return s.redact(herald.Temporary(err, "smtp connection", 0))
	}
}

func reason(code int, enh string) string {
	if enh == "" {
		return fmt.Sprintf("smtp %d", code)
	}
	return fmt.Sprintf("smtp %d %s", code, enh)
}

// redact rewrites e's message for logs: servers often quote the addresses
// back; the password never appears in
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

// deadStatus are the enhanced status codes of RFC 3463 that say the
// recipient's address itself is no good: X.1.1 bad destination mailbox
// address, X.1.2 bad destination system address, X.1.3 bad destination
// mailbox address syntax, X.1.4 destination mailbox address ambiguous, X.1.5
// destination mailbox address valid (sent with a 5xx, the mailbox cannot
// take mail), X.1.6 destination mailbox has moved, no forwarding address.
// X.1.0 (other address status) says too little, X.1.7 and X.1.8 are about
// our sender address, and X.1.9 and above are not about a dead address.
var deadStatus = map[string]bool{
	"5.1.1": true, "5.1.2": true, "5.1.3": true,
	"5.1.4": true, "5.1.5": true, "5.1.6": true,
}

// DeadAddress reports whether err is the server saying that the recipient's
// address does not exist or cannot be used, so that later mail to it can be
// suppressed: a permanent (5xx) reply to RCPT TO whose enhanced status code
// is 5.1.1 to 5.1.6 (see deadStatus). It is false for every other error:
// replies to MAIL FROM or after DATA, even with those codes (they are about
// our sender or the message, and a server's choice of code there is not
// reliable enough to stop mailing a customer); 5.1.0, 5.1.7, 5.1.8 and
// 5.1.9 and above; other classes such as 5.7.x policy refusals; every 4xx
// reply; replies without an enhanced code (read only from servers that
// advertise ENHANCEDSTATUSCODES); lost connections and timeouts.
// err may be the *herald.Error Send returns, wrapped any number of times.
func DeadAddress(err error) bool {
	var te *txError
	if !errors.As(err, &te) || te.Stage != stageRcpt {
		return false
	}
	code, enh := te.reply()
	return code/100 == 5 && deadStatus[enh]
}
