package email

import (
	"bytes"
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"sync"

	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// A transaction is one message's SMTP conversation on a connection whose
// greeting, EHLO, STARTTLS and AUTH go-mail has done. go-mail's own send
// asks and waits five times a message (MAIL, RCPT, DATA, the message, RSET);
// this one asks as few times as the server allows:
//
//   - with PIPELINING (RFC 2920), MAIL FROM and RCPT TO leave in one write
//     and their replies are read together;
//   - with CHUNKING (RFC 3030), the message goes as one BDAT LAST chunk in
//     the same write as its command: no DATA round trip, and no
//     dot-stuffing on either side;
//   - no RSET after a message the server accepted: the final reply ends the
//     transaction (RFC 5321 section 4.1.1.4). A connection whose last
//     transaction ended in an error reply is checked with RSET before it is
//     used again (see Sender.acquire).
//
// With PIPELINING and CHUNKING a message costs two round trips; without
// either, four (MAIL, RCPT, DATA, the message). The message never leaves in
// the envelope's write, though RFC 3030 allows it: a connection that breaks
// before the envelope's replies are read then leaves unknown whether the
// server kept the message, while here it proves that it did not, so the
// send is retried at once on a fresh connection without risk of a copy.
//
// The message is rendered before the first command, so a message that
// cannot be rendered never opens a transaction, and a retry on a fresh
// connection sends the same bytes.

// stage is the step of a transaction an error happened at.
type stage string

const (
	stageMail stage = "MAIL FROM"
	stageRcpt stage = "RCPT TO"
	stageData stage = "DATA"
	// stageEnd is the reply after the message, which accepts or refuses
	// it. An error there other than a reply (a lost connection, a timeout)
	// leaves it unknown whether the server kept the message.
	stageEnd stage = "end of data"
)

// txError is a transaction that failed at a stage: refused by a reply
// (Err is a *textproto.Error) or cut off (Err is the I/O error).
type txError struct {
	Stage stage
	Err   error
	// enhanced is set when the server advertised ENHANCEDSTATUSCODES, so a
	// leading x.y.z in the reply text is an RFC 3463 status code.
	enhanced bool
}

func (e *txError) Error() string {
	return fmt.Sprintf("smtp %s: %v", e.Stage, e.Err)
}

func (e *txError) Unwrap() error { return e.Err }

// reply returns the server's reply code and its enhanced status code, if
// the error is a reply; code 0 when it is not.
func (e *txError) reply() (code int, enh string) {
	var te *textproto.Error
	if !errors.As(e.Err, &te) {
		return 0, ""
	}
	if e.enhanced {
		enh = enhancedCode(te)
	}
	return te.Code, enh
}

// enhancedCode is the RFC 3463 code leading te's text, when its class
// matches the reply code's.
func enhancedCode(te *textproto.Error) string {
	if m := enhancedRE.FindString(te.Msg); m != "" && m[0] == byte('0'+te.Code/100) {
		return m
	}
	return ""
}

// envelope is a message ready for the wire.
type envelope struct {
	from, to string // <address>, as MAIL FROM and RCPT TO take them
	data     []byte // the message, CRLF line endings, not dot-stuffed
}

// renderBuffers hold rendered messages while they are sent: a message of
// a few kilobytes written into a new buffer costs twice its size in
// allocations as the buffer grows.
var renderBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer is the largest buffer kept for the next message.
const maxPooledBuffer = 1 << 20

// render writes msg out for the wire into buf.
func render(msg *gomail.Msg, buf *bytes.Buffer) (envelope, error) {
	from, err := msg.GetSender(false)
	if err != nil {
		return envelope{}, err
	}
	rcpts, err := msg.GetRecipients()
	if err != nil {
		return envelope{}, err
	}
	if len(rcpts) != 1 {
		return envelope{}, fmt.Errorf("email: a message has one recipient, not %d", len(rcpts))
	}
	if _, err := msg.WriteTo(buf); err != nil {
		return envelope{}, err
	}
	env := envelope{from: from, to: rcpts[0], data: buf.Bytes()}
	if strings.ContainsAny(env.from+env.to, "\r\n") {
		return envelope{}, errors.New("email: address contains a line break")
	}
	return env, nil
}

// transact runs env's transaction on c: nil when the server accepted the
// message, else a *txError.
func transact(c *smtp.Client, env envelope) error {
	pipelining, _ := c.Extension("PIPELINING")
	chunking, _ := c.Extension("CHUNKING")
	enhanced, _ := c.Extension("ENHANCEDSTATUSCODES")
	fail := func(s stage, err error) error { return &txError{Stage: s, Err: err, enhanced: enhanced} }
	t := c.Text

	mail := "MAIL FROM:" + env.from
	if ok, _ := c.Extension("8BITMIME"); ok {
		mail += " BODY=8BITMIME"
	}
	if ok, _ := c.Extension("SMTPUTF8"); ok {
		mail += " SMTPUTF8"
	}
	if ok, _ := c.Extension("SIZE"); ok {
		// The server refuses a message too big at MAIL FROM, before it
		// is sent (RFC 1870).
		mail += " SIZE=" + strconv.Itoa(len(env.data))
	}
	rcpt := "RCPT TO:" + env.to

	if pipelining {
		if err := send(t, mail, rcpt); err != nil {
			return fail(stageMail, err)
		}
		mailErr := expect(t, 250)
		if isIO(mailErr) {
			return fail(stageMail, mailErr)
		}
		// RCPT's reply comes even when MAIL was refused (a 503).
		rcptErr := expect(t, 25)
		if mailErr != nil {
			return fail(stageMail, mailErr)
		}
		if rcptErr != nil {
			return fail(stageRcpt, rcptErr)
		}
	} else {
		if err := ask(t, 250, mail); err != nil {
			return fail(stageMail, err)
		}
		if err := ask(t, 25, rcpt); err != nil {
			return fail(stageRcpt, err)
		}
	}

	if chunking {
		// The chunk follows its command in the same write (RFC 3030
		// section 4.2).
		t.W.WriteString("BDAT " + strconv.Itoa(len(env.data)) + " LAST\r\n")
		t.W.Write(env.data)
		if err := t.W.Flush(); err != nil {
			return fail(stageEnd, err)
		}
		if err := expect(t, 250); err != nil {
			return fail(stageEnd, err)
		}
		return nil
	}
	if err := ask(t, 354, "DATA"); err != nil {
		return fail(stageData, err)
	}
	w := t.DotWriter()
	_, err := w.Write(env.data)
	if err == nil {
		err = w.Close()
	}
	if err != nil {
		return fail(stageEnd, err)
	}
	if err := expect(t, 250); err != nil {
		return fail(stageEnd, err)
	}
	return nil
}

// send writes lines as one write.
func send(t *textproto.Conn, lines ...string) error {
	for _, l := range lines {
		t.W.WriteString(l)
		t.W.WriteString("\r\n")
	}
	return t.W.Flush()
}

// ask sends one command and reads its reply.
func ask(t *textproto.Conn, code int, line string) error {
	if err := send(t, line); err != nil {
		return err
	}
	return expect(t, code)
}

// expect reads one reply; it is an error (a *textproto.Error) unless its
// code starts with code's digits.
func expect(t *textproto.Conn, code int) error {
	_, _, err := t.ReadResponse(code)
	return err
}

// isIO reports whether err is a failure to read a reply rather than a
// reply.
func isIO(err error) bool {
	var te *textproto.Error
	return err != nil && !errors.As(err, &te)
}
