package email_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

func TestDeadAddress(t *testing.T) {
	t.Parallel()
	// One row per reply and stage, each from a real SMTP conversation: only
	// a 5xx reply to RCPT TO with 5.1.1 to 5.1.6 marks the address dead.
	rcpt := func(code int, enh string) smtpserver.Fault {
		return smtpserver.Fault{Stage: "RCPT", Code: code, Enhanced: enh}
	}
	mail := func(code int, enh string) smtpserver.Fault {
		return smtpserver.Fault{Stage: "MAIL", Code: code, Enhanced: enh}
	}
	tests := []struct {
		name  string
		fault smtpserver.Fault
		dead  bool
	}{
		{"Rcpt550_5.1.1BadMailbox", rcpt(550, "5.1.1"), true},
		{"Rcpt550_5.1.2BadSystem", rcpt(550, "5.1.2"), true},
		{"Rcpt553_5.1.3BadSyntax", rcpt(553, "5.1.3"), true},
		{"Rcpt550_5.1.4Ambiguous", rcpt(550, "5.1.4"), true},
		{"Rcpt550_5.1.5MailboxValid", rcpt(550, "5.1.5"), true},
		{"Rcpt551_5.1.6Moved", rcpt(551, "5.1.6"), true},
		{"Rcpt550_5.1.0Other", rcpt(550, "5.1.0"), false},
		{"Rcpt553_5.1.7BadSenderSyntax", rcpt(553, "5.1.7"), false},
		{"Rcpt550_5.1.8BadSenderSystem", rcpt(550, "5.1.8"), false},
		{"Rcpt550_5.1.10", rcpt(550, "5.1.10"), false},
		{"Rcpt550_5.7.1Policy", rcpt(550, "5.7.1"), false},
		{"Rcpt552_5.2.2MailboxFull", rcpt(552, "5.2.2"), false},
		{"Rcpt450_4.1.1", rcpt(450, "4.1.1"), false},
		{"Rcpt550_5.0.0", rcpt(550, "5.0.0"), false},
		{"Mail550_5.1.1", mail(550, "5.1.1"), false},
		{"Mail553_5.1.7", mail(553, "5.1.7"), false},
		{"Mail550_5.1.8", mail(550, "5.1.8"), false},
		{"EndOfData550_5.1.1", smtpserver.Fault{Stage: "DATA", Code: 550, Enhanced: "5.1.1"}, false},
		{"RcptDropped", smtpserver.Fault{Stage: "RCPT", Drop: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{})
			b.srv.SetFault(tt.fault)
			_, err := b.sender.Send(context.Background(), message())
			require.Error(t, err)
			if tt.fault.Code != 0 {
				want := fmt.Sprintf("smtp %d", tt.fault.Code)
				if tt.fault.Enhanced != "" {
					want += " " + tt.fault.Enhanced
				}
				require.Equal(t, want, herald.ErrorReason(err), "the server's reply reached the sender")
			}
			requireDead(t, tt.dead, err)
		})
	}

	// go-smtp cannot refuse the DATA command itself (it sends 354 first) nor
	// leave out the enhanced code: a scripted server does.
	scriptedTests := []struct {
		name       string
		replies    map[string]string
		wantReason string
	}{
		{"DataCommand550_5.1.1", map[string]string{"DATA": "550 5.1.1 No such user here"}, "smtp 550 5.1.1"},
		{"Rcpt550NoEnhancedCode", map[string]string{"RCPT": "550 No such user here"}, "smtp 550"},
	}
	for _, tt := range scriptedTests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			port, _ := scripted(t, fixed(tt.replies))
			s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: fromAddr})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			_, err = s.Send(context.Background(), message())
			require.Error(t, err)
			require.Equal(t, tt.wantReason, herald.ErrorReason(err))
			requireDead(t, false, err)
		})
	}

	t.Run("NotFromSMTP", func(t *testing.T) {
		t.Parallel()
		for _, err := range []error{nil, errors.New("550 5.1.1 unknown user"), herald.Permanent(errors.New("550 5.1.1"), "smtp 550 5.1.1")} {
			requireDead(t, false, err)
		}
	})
}

// requireDead checks DeadAddress on err as Send returns it and wrapped the
// ways callers wrap it.
func requireDead(t *testing.T, want bool, err error) {
	t.Helper()
	require.Equal(t, want, email.DeadAddress(err), "got %v", err)
	require.Equal(t, want, email.DeadAddress(fmt.Errorf("deliver: %w", err)), "wrapped with %%w")
	require.Equal(t, want, email.DeadAddress(herald.Permanent(err, "retries exhausted")), "wrapped in another *herald.Error")
	require.Equal(t, want, email.DeadAddress(fmt.Errorf("task: %w", herald.Permanent(fmt.Errorf("deliver: %w", err), "x"))), "wrapped twice")
}

// script says how a scripted server answers the nth (from 1) command verb
// on its conn-th (from 0) connection; ok false means the usual reply.
type script func(conn int, verb string, nth int) (reply string, ok bool)

// fixed answers verb with replies[verb], every time.
func fixed(replies map[string]string) script {
	return func(_ int, verb string, _ int) (string, bool) {
		r, ok := replies[verb]
		return r, ok
	}
}

// scripted is a minimal SMTP server that answers every command with 250
// (EHLO advertising ENHANCEDSTATUSCODES), DATA with 354, and QUIT with 221,
// except as sc says; after a 421 it hangs up. It returns its port and how
// many connections it has taken.
func scripted(t *testing.T, sc script) (port int, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			n := len(conns)
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { converse(c, n, sc) })
		}
	})
	return l.Addr().(*net.TCPAddr).Port, func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

func converse(c net.Conn, n int, sc script) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(s string) bool {
		_, err := c.Write([]byte(s + "\r\n"))
		return err == nil && !strings.HasPrefix(s, "421")
	}
	if !say("220 scripted ESMTP") {
		return
	}
	seen := map[string]int{}
	inData := false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if inData {
			if line == "." {
				inData = false
				if !say("250 2.0.0 Queued") {
					return
				}
			}
			continue
		}
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		seen[verb]++
		reply, ok := sc(n, verb, seen[verb])
		switch {
		case ok:
		case verb == "EHLO":
			reply = "250-scripted\r\n250-ENHANCEDSTATUSCODES\r\n250 8BITMIME"
		case verb == "DATA":
			inData = true
			reply = "354 Go ahead"
		case verb == "QUIT":
			say("221 2.0.0 Bye")
			return
		default:
			reply = "250 2.0.0 OK"
		}
		if !say(reply) {
			return
		}
	}
}
