package smtpserver_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

func setup(t *testing.T, opts smtpserver.Options) *smtpserver.Server {
	t.Helper()
	s, err := smtpserver.Start(opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func body(id string) string {
	return "From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <" + id + "@example.com>\r\nSubject: hi\r\n\r\nhello\r\n"
}

// exchange is one SMTP transaction; it returns the first error and the stage
// that produced it.
type exchange struct {
	user, pass string
	from       string
	to         []string
	data       string
}

func (x exchange) run(t *testing.T, c *smtp.Client) (string, error) {
	t.Helper()
	if x.user != "" {
		if err := c.Auth(sasl.NewPlainClient("", x.user, x.pass)); err != nil {
			return "AUTH", err
		}
	}
	if x.from == "" {
		x.from = "a@example.com"
	}
	if len(x.to) == 0 {
		x.to = []string{"b@example.com"}
	}
	if err := c.Mail(x.from, nil); err != nil {
		return "MAIL", err
	}
	for _, r := range x.to {
		if err := c.Rcpt(r, nil); err != nil {
			return "RCPT", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "DATA", err
	}
	if x.data == "" {
		x.data = body("m1")
	}
	if _, err := w.Write([]byte(x.data)); err != nil {
		return "DATA", err
	}
	if err := w.Close(); err != nil {
		return "DATA", err
	}
	return "", nil
}

func dial(t *testing.T, addr string) *smtp.Client {
	t.Helper()
	c, err := smtp.Dial(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Hello("client.test"))
	return c
}

func smtpCode(t *testing.T, err error) (int, smtp.EnhancedCode) {
	t.Helper()
	var se *smtp.SMTPError
	require.True(t, errors.As(err, &se), "want an SMTP reply, got %v", err)
	return se.Code, se.EnhancedCode
}

func TestReceive(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "outbox")
	s := setup(t, smtpserver.Options{Dir: dir})

	var seen atomic.Int32
	s.OnReceive(func(r smtpserver.Received) { seen.Add(1) })

	c := dial(t, s.Addr())
	for i := range 3 {
		_, err := exchange{data: body(fmt.Sprint("m", i)), to: []string{"b@example.com", "c@example.com"}}.run(t, c)
		require.NoError(t, err)
	}
	require.NoError(t, c.Quit())

	require.Equal(t, 3, s.Count())
	require.Equal(t, int32(3), seen.Load())
	require.Equal(t, 1, s.Connections(), "three messages over one connection")

	msgs := s.Messages()
	require.Len(t, msgs, 3)
	for i, m := range msgs {
		require.Equal(t, "a@example.com", m.From)
		require.Equal(t, []string{"b@example.com", "c@example.com"}, m.To)
		require.Equal(t, fmt.Sprintf("<m%d@example.com>", i), m.MessageID)
		require.False(t, m.At.IsZero())
		require.True(t, strings.HasSuffix(m.Path, ".eml"), m.Path)
		require.Equal(t, dir, filepath.Dir(m.Path))
		onDisk, err := os.ReadFile(m.Path)
		require.NoError(t, err)
		require.Equal(t, m.Data, onDisk)
	}
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 3, "no temporary files left behind")
}

func TestURL(t *testing.T) {
	t.Parallel()
	s := setup(t, smtpserver.Options{})
	require.Equal(t, "smtp://"+s.Addr()+"?tls=none", s.URL())

	a := setup(t, smtpserver.Options{Username: "herald", Password: "p@ss word"})
	u, err := url.Parse(a.URL())
	require.NoError(t, err)
	require.Equal(t, "herald", u.User.Username())
	pass, _ := u.User.Password()
	require.Equal(t, "p@ss word", pass)
	require.Equal(t, a.Addr(), u.Host)
}

func TestStartRejectsHalfCredentials(t *testing.T) {
	t.Parallel()
	_, err := smtpserver.Start(smtpserver.Options{Username: "herald"})
	require.Error(t, err)
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := setup(t, smtpserver.Options{Username: "herald", Password: "secret"})

	t.Run("Required", func(t *testing.T) {
		t.Parallel()
		stage, err := exchange{}.run(t, dial(t, s.Addr()))
		require.Equal(t, "MAIL", stage)
		code, _ := smtpCode(t, err)
		require.Equal(t, 502, code)
	})
	t.Run("WrongPassword", func(t *testing.T) {
		t.Parallel()
		stage, err := exchange{user: "herald", pass: "nope"}.run(t, dial(t, s.Addr()))
		require.Equal(t, "AUTH", stage)
		code, ec := smtpCode(t, err)
		require.Equal(t, 535, code)
		require.Equal(t, smtp.EnhancedCode{5, 7, 8}, ec)
	})
	t.Run("Accepted", func(t *testing.T) {
		t.Parallel()
		_, err := exchange{user: "herald", pass: "secret"}.run(t, dial(t, s.Addr()))
		require.NoError(t, err)
		require.Eventually(t, func() bool { return s.Count() >= 1 }, time.Second, 5*time.Millisecond)
	})
}

func TestFault(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     smtpserver.Fault
		to        []string
		wantStage string
		wantCode  int
		wantEC    smtp.EnhancedCode
	}{
		{"MailTemporary", smtpserver.Fault{Stage: "MAIL", Code: 421, Enhanced: "4.4.1"}, nil, "MAIL", 421, smtp.EnhancedCode{4, 4, 1}},
		{"MailIgnoresRcpt", smtpserver.Fault{Stage: "mail", Code: 451, Rcpt: "x@example.com"}, nil, "MAIL", 451, smtp.EnhancedCode{4, 0, 0}},
		{"RcptPermanent", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1"}, nil, "RCPT", 550, smtp.EnhancedCode{5, 1, 1}},
		{"RcptOneAddress", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Rcpt: "Bad@Example.com"}, []string{"ok@example.com", "bad@example.com"}, "RCPT", 550, smtp.EnhancedCode{5, 1, 1}},
		{"RcptSomeAddresses", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Rcpts: []string{"a@example.com", "Bad@Example.com"}}, []string{"bad@example.com"}, "RCPT", 550, smtp.EnhancedCode{5, 1, 1}},
		{"RcptNoneOfAddresses", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Rcpts: []string{"a@example.com"}}, []string{"ok@example.com"}, "", 0, smtp.EnhancedCode{}},
		{"RcptOtherAddress", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Rcpt: "bad@example.com"}, []string{"ok@example.com"}, "", 0, smtp.EnhancedCode{}},
		{"DataTemporary", smtpserver.Fault{Stage: "DATA", Code: 451, Enhanced: "4.3.0"}, nil, "DATA", 451, smtp.EnhancedCode{4, 3, 0}},
		{"DataDefaultStage", smtpserver.Fault{Code: 554, Enhanced: "5.6.0"}, nil, "DATA", 554, smtp.EnhancedCode{5, 6, 0}},
		{"DataForRcpt", smtpserver.Fault{Stage: "DATA", Code: 552, Rcpt: "b@example.com"}, nil, "DATA", 552, smtp.EnhancedCode{5, 0, 0}},
		{"NoCodeIsNoFault", smtpserver.Fault{Stage: "RCPT"}, nil, "", 0, smtp.EnhancedCode{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, smtpserver.Options{})
			s.SetFault(tt.fault)
			stage, err := exchange{to: tt.to}.run(t, dial(t, s.Addr()))
			require.Equal(t, tt.wantStage, stage, "err: %v", err)
			if tt.wantStage == "" {
				require.NoError(t, err)
				require.Equal(t, 1, s.Count())
				return
			}
			code, ec := smtpCode(t, err)
			require.Equal(t, tt.wantCode, code)
			require.Equal(t, tt.wantEC, ec)
			require.Equal(t, 0, s.Count(), "a refused message is not recorded")

			s.SetFault(smtpserver.Fault{})
			_, err = exchange{to: tt.to}.run(t, dial(t, s.Addr()))
			require.NoError(t, err, "a cleared fault lets mail through")
			require.Equal(t, 1, s.Count())
		})
	}
}

func TestFaultDrop(t *testing.T) {
	t.Parallel()
	for _, stage := range []string{"MAIL", "RCPT", "DATA", ""} {
		t.Run("Stage"+stage, func(t *testing.T) {
			t.Parallel()
			s := setup(t, smtpserver.Options{})
			s.SetFault(smtpserver.Fault{Stage: stage, Drop: true})
			got, err := exchange{}.run(t, dial(t, s.Addr()))
			want := stage
			if want == "" {
				want = "DATA"
			}
			require.Equal(t, want, got)
			require.Error(t, err)
			var se *smtp.SMTPError
			require.False(t, errors.As(err, &se), "a dropped connection gives no SMTP reply, got %v", err)
			require.Equal(t, 0, s.Count())
		})
	}
}

func TestDownUp(t *testing.T) {
	t.Parallel()
	s := setup(t, smtpserver.Options{})
	addr := s.Addr()

	idle := dial(t, addr)
	_, err := exchange{}.run(t, idle)
	require.NoError(t, err)

	require.NoError(t, s.Down())
	require.NoError(t, s.Down(), "Down twice is harmless")
	_, err = net.DialTimeout("tcp", addr, time.Second)
	require.Error(t, err, "nothing listens while down")
	require.Error(t, idle.Noop(), "open connections are dropped")

	require.NoError(t, s.Up())
	require.NoError(t, s.Up(), "Up twice is harmless")
	require.Equal(t, addr, s.Addr(), "same address after Up")
	_, err = exchange{}.run(t, dial(t, addr))
	require.NoError(t, err)
	require.Equal(t, 2, s.Count(), "messages survive Down/Up")

	require.NoError(t, s.Close())
	require.Error(t, s.Up(), "a closed server stays closed")
}

// background runs x on its own connection and returns where its result
// arrives.
func background(t *testing.T, addr string, x exchange) <-chan result {
	t.Helper()
	c := dial(t, addr)
	done := make(chan result, 1)
	go func() {
		stage, err := x.run(t, c)
		done <- result{stage, err}
	}()
	return done
}

type result struct {
	stage string
	err   error
}

func waiting(t *testing.T, s *smtpserver.Server, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return s.Waiting() == n }, 10*time.Second, 5*time.Millisecond,
		"want %d sessions held by the fault", n)
}

func TestFaultDelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		fault     smtpserver.Fault
		wantStage string
		wantCode  int
		stored    int
	}{
		{"DataThenNormal", smtpserver.Fault{Stage: "DATA", Delay: 20 * time.Millisecond}, "", 0, 1},
		{"MailThenNormal", smtpserver.Fault{Stage: "MAIL", Delay: 20 * time.Millisecond}, "", 0, 1},
		{"RcptThenCode", smtpserver.Fault{Stage: "RCPT", Delay: 20 * time.Millisecond, Code: 550, Enhanced: "5.1.1"}, "RCPT", 550, 0},
		{"DataThenDrop", smtpserver.Fault{Delay: 20 * time.Millisecond, Drop: true}, "DATA", 0, 0},
		{"OtherRecipient", smtpserver.Fault{Stage: "RCPT", Delay: time.Hour, Rcpt: "x@example.com"}, "", 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, smtpserver.Options{})
			s.SetFault(tt.fault)
			stage, err := exchange{}.run(t, dial(t, s.Addr()))
			require.Equal(t, tt.wantStage, stage, "err: %v", err)
			switch {
			case tt.wantStage == "":
				require.NoError(t, err)
			case tt.wantCode != 0:
				code, _ := smtpCode(t, err)
				require.Equal(t, tt.wantCode, code)
			default:
				var se *smtp.SMTPError
				require.False(t, errors.As(err, &se), "a drop gives no SMTP reply, got %v", err)
			}
			require.Equal(t, tt.stored, s.Count())
			require.Equal(t, 0, s.Waiting())
		})
	}
}

func TestFaultHold(t *testing.T) {
	t.Parallel()
	// Each fault holds the session until let go; release then says how.
	tests := []struct {
		name      string
		fault     smtpserver.Fault
		release   func(*smtpserver.Server) error
		wantStage string
		wantCode  int
		stored    int
	}{
		{"HangDataCleared", smtpserver.Fault{Stage: "DATA", Hang: true}, clearFault, "", 0, 1},
		{"HangMailCleared", smtpserver.Fault{Stage: "MAIL", Hang: true}, clearFault, "", 0, 1},
		{"HangRcptThenCode", smtpserver.Fault{Stage: "RCPT", Hang: true, Code: 451, Enhanced: "4.3.0"}, clearFault, "RCPT", 451, 0},
		{"HangWinsOverDelay", smtpserver.Fault{Stage: "DATA", Hang: true, Delay: time.Millisecond}, clearFault, "", 0, 1},
		{"LongDelayCleared", smtpserver.Fault{Stage: "DATA", Delay: time.Hour}, clearFault, "", 0, 1},
		{"HangDataClosed", smtpserver.Fault{Stage: "DATA", Hang: true}, (*smtpserver.Server).Close, "DATA", 0, 0},
		{"HangMailDown", smtpserver.Fault{Stage: "MAIL", Hang: true}, (*smtpserver.Server).Down, "MAIL", 0, 0},
		{"DelayDataDown", smtpserver.Fault{Stage: "DATA", Delay: time.Hour}, (*smtpserver.Server).Down, "DATA", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := setup(t, smtpserver.Options{})
			s.SetFault(tt.fault)
			done := background(t, s.Addr(), exchange{})
			waiting(t, s, 1)
			select {
			case r := <-done:
				t.Fatalf("the exchange ended while held: %q %v", r.stage, r.err)
			default:
			}

			require.NoError(t, tt.release(s), "letting go never blocks on the held session")
			r := <-done
			require.Equal(t, tt.wantStage, r.stage, "err: %v", r.err)
			switch {
			case tt.wantStage == "":
				require.NoError(t, r.err)
			case tt.wantCode != 0:
				code, _ := smtpCode(t, r.err)
				require.Equal(t, tt.wantCode, code)
			default:
				var se *smtp.SMTPError
				require.False(t, errors.As(r.err, &se), "a server going away gives no SMTP reply, got %v", r.err)
			}
			require.Equal(t, tt.stored, s.Count())
			waiting(t, s, 0)
		})
	}
}

func clearFault(s *smtpserver.Server) error {
	s.SetFault(smtpserver.Fault{})
	return nil
}

func TestFaultHangTimesClientOut(t *testing.T) {
	t.Parallel()
	s := setup(t, smtpserver.Options{})
	s.SetFault(smtpserver.Fault{Stage: "RCPT", Hang: true})

	c := dial(t, s.Addr())
	c.CommandTimeout = 100 * time.Millisecond
	stage, err := exchange{}.run(t, c)
	require.Equal(t, "RCPT", stage)
	var ne net.Error
	require.True(t, errors.As(err, &ne) && ne.Timeout(), "a hung server makes the client time out, got %v", err)
	waiting(t, s, 1) // still hanging after the client gave up

	// The server stays usable for other clients once the fault is gone.
	s.SetFault(smtpserver.Fault{})
	waiting(t, s, 0)
	_, err = exchange{}.run(t, dial(t, s.Addr()))
	require.NoError(t, err)
	require.Equal(t, 1, s.Count())
}

func TestFaultHangDownUp(t *testing.T) {
	t.Parallel()
	s := setup(t, smtpserver.Options{})
	s.SetFault(smtpserver.Fault{Stage: "DATA", Hang: true})
	done := background(t, s.Addr(), exchange{})
	waiting(t, s, 1)

	require.NoError(t, s.Down())
	r := <-done
	require.Equal(t, "DATA", r.stage)
	require.Error(t, r.err)
	waiting(t, s, 0)

	// Back up, the fault still holds new sessions until cleared.
	require.NoError(t, s.Up())
	done = background(t, s.Addr(), exchange{})
	waiting(t, s, 1)
	s.SetFault(smtpserver.Fault{})
	r = <-done
	require.NoError(t, r.err)
	require.Equal(t, 1, s.Count(), "only the message let through after Up is stored")
}

// A server taken down while a BDAT chunk is half read ends that session
// cleanly (run with -race: go-smtp's own Close races with the chunk's
// reader), keeps no part of the message, and comes back up.
func TestDownMidChunk(t *testing.T) {
	t.Parallel()
	srv, err := smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Close() })

	c, err := net.Dial("tcp", srv.Addr())
	require.NoError(t, err)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	text := textproto.NewConn(c)
	expect := func(code int) {
		t.Helper()
		_, _, err := text.ReadResponse(code)
		require.NoError(t, err)
	}
	expect(220)
	require.NoError(t, text.PrintfLine("EHLO test"))
	expect(250)
	require.NoError(t, text.PrintfLine("MAIL FROM:<a@example.com>"))
	expect(250)
	require.NoError(t, text.PrintfLine("RCPT TO:<b@example.com>"))
	expect(250)
	// Half of the chunk announced: the server is reading it when it goes.
	require.NoError(t, text.PrintfLine("BDAT 100000 LAST"))
	_, err = c.Write([]byte(strings.Repeat("x", 50000)))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // let the server start on the chunk; the test holds without it
	require.NoError(t, srv.Down())
	_, err = io.ReadAll(c) // EOF, or a reset as the chunk's rest was unread
	var ne net.Error
	require.False(t, errors.As(err, &ne) && ne.Timeout(), "the server hangs up: %v", err)
	require.Zero(t, srv.Count())

	require.NoError(t, srv.Up())
	cl, err := smtp.Dial(srv.Addr())
	require.NoError(t, err)
	defer cl.Close()
	require.NoError(t, cl.SendMail("a@example.com", []string{"b@example.com"}, strings.NewReader("Subject: hi\r\n\r\nhello\r\n")))
	require.Equal(t, 1, srv.Count())
}
