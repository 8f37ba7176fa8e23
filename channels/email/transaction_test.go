package email_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/stretchr/testify/require"
)

// strictServer is an SMTP server that advertises PIPELINING and CHUNKING and
// holds its reply to MAIL FROM until RCPT TO has arrived: a client that waits
// for each reply before the next command stalls on it. It records every
// command line. refuse, when set, answers a command verb instead of 250.
type strictServer struct {
	port int
	mu   sync.Mutex
	cmds []string
	msgs [][]byte
}

func startStrict(t *testing.T, refuse map[string]string) *strictServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &strictServer{port: l.Addr().(*net.TCPAddr).Port}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { s.converse(t, c, refuse) })
		}
	})
	return s
}

func (s *strictServer) converse(t *testing.T, c net.Conn, refuse map[string]string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	say := func(lines ...string) { _, _ = io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n") }
	read := func() (string, bool) {
		l, err := r.ReadString('\n')
		l = strings.TrimRight(l, "\r\n")
		if err == nil {
			s.mu.Lock()
			s.cmds = append(s.cmds, l)
			s.mu.Unlock()
		}
		return l, err == nil
	}
	answer := func(verb, ok string) string {
		if r, refused := refuse[verb]; refused {
			return r
		}
		return ok
	}
	say("220 strict ESMTP")
	for {
		line, ok := read()
		if !ok {
			return
		}
		verb, arg, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "EHLO":
			say("250-strict", "250-PIPELINING", "250-CHUNKING", "250-8BITMIME", "250-SIZE 1000000", "250 ENHANCEDSTATUSCODES")
		case "MAIL":
			// The reply waits for the next command, as a pipelining client
			// sends it without waiting.
			next, ok := read()
			if !ok {
				return
			}
			say(answer("MAIL", "250 2.1.0 OK"))
			if strings.HasPrefix(next, "RCPT") {
				say(answer("RCPT", "250 2.1.5 OK"))
			} else {
				say("503 5.5.1 RCPT expected")
			}
		case "BDAT":
			n, _ := strconv.Atoi(strings.Fields(arg)[0])
			data := make([]byte, n)
			if _, err := io.ReadFull(r, data); err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, data)
			s.mu.Unlock()
			say(answer("BDAT", "250 2.0.0 Queued"))
		case "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			say("250 2.0.0 OK")
		}
	}
}

func (s *strictServer) verbs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var v []string
	for _, c := range s.cmds {
		verb, _, _ := strings.Cut(c, ":")
		verb, _, _ = strings.Cut(verb, " ")
		v = append(v, verb)
	}
	return v
}

func TestTransactionPipelinedAndChunked(t *testing.T) {
	t.Parallel()
	srv := startStrict(t, nil)
	s, err := email.New(email.Config{Host: "127.0.0.1", Port: srv.port, TLS: email.TLSNone, From: fromAddr, Timeout: 2 * time.Second, Pool: 1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	for range 3 {
		_, err := s.Send(context.Background(), message())
		require.NoError(t, err)
	}
	// One connection; each message is MAIL+RCPT in one write and BDAT with
	// the message in the next; no DATA, no RSET between messages.
	require.Equal(t, []string{"EHLO", "MAIL", "RCPT", "BDAT", "MAIL", "RCPT", "BDAT", "MAIL", "RCPT", "BDAT"}, srv.verbs())
	srv.mu.Lock()
	defer srv.mu.Unlock()
	require.Contains(t, srv.cmds[1], "MAIL FROM:<hello@herald.test> BODY=8BITMIME SIZE=")
	require.Equal(t, "RCPT TO:<"+customer+">", srv.cmds[2])
	require.Len(t, srv.msgs, 3)
	// The chunk is the message as written, not dot-stuffed: its size was
	// announced at MAIL FROM and in BDAT.
	size := strconv.Itoa(len(srv.msgs[0]))
	require.Contains(t, srv.cmds[1], "SIZE="+size)
	require.Equal(t, "BDAT "+size+" LAST", srv.cmds[3])
	require.Contains(t, string(srv.msgs[0]), "Subject: Welcome aboard\r\n")
}

func TestTransactionPipelinedRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		refuse map[string]string
		reason string
		dead   bool
		// then is the verbs after EHLO: the refused message, then the next
		// one (refused the same way), preceded by RSET as the connection is
		// suspect.
		then []string
	}{
		{"MailRefused", map[string]string{"MAIL": "550 5.1.8 Bad sender domain", "RCPT": "503 5.5.1 MAIL first"}, "smtp 550 5.1.8", false,
			[]string{"MAIL", "RCPT", "RSET", "MAIL", "RCPT"}},
		{"RcptUnknown", map[string]string{"RCPT": "550 5.1.1 No such user"}, "smtp 550 5.1.1", true,
			[]string{"MAIL", "RCPT", "RSET", "MAIL", "RCPT"}},
		{"RcptLater", map[string]string{"RCPT": "450 4.2.1 Try later"}, "smtp 450 4.2.1", false,
			[]string{"MAIL", "RCPT", "RSET", "MAIL", "RCPT"}},
		{"MessageRefused", map[string]string{"BDAT": "554 5.6.0 Content refused"}, "smtp 554 5.6.0", false,
			[]string{"MAIL", "RCPT", "BDAT", "RSET", "MAIL", "RCPT", "BDAT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := startStrict(t, tt.refuse)
			s, err := email.New(email.Config{Host: "127.0.0.1", Port: srv.port, TLS: email.TLSNone, From: fromAddr, Timeout: 2 * time.Second, Pool: 1})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })

			_, err = s.Send(context.Background(), message())
			require.Error(t, err)
			require.Equal(t, tt.reason, herald.ErrorReason(err), "got %v", err)
			require.Equal(t, tt.dead, email.DeadAddress(err))
			require.NotContains(t, err.Error(), customer, "the address is redacted")

			// The refusal left the connection usable: the next message goes
			// on it, after an RSET.
			_, _ = s.Send(context.Background(), message())
			require.Equal(t, tt.then, srv.verbs()[1:])
		})
	}
}
