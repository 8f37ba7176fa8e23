package email_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/stretchr/testify/require"
)

const smtpSink = "/usr/sbin/smtp-sink"

// startSink runs Postfix's smtp-sink with args on a free loopback port and
// returns a Sender pointed at it. smtp-sink is another server's idea of SMTP
// (its own replies, pipelining, enhanced codes), so the error mapping is not
// only tested against our own server.
func startSink(t *testing.T, args ...string) *email.Sender {
	t.Helper()
	if _, err := os.Stat(smtpSink); err != nil {
		t.Fatalf("%s not found: install Postfix (Debian/Ubuntu: apt-get install -y postfix; Fedora: dnf install postfix; macOS: brew install postfix)", smtpSink)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	port := l.Addr().(*net.TCPAddr).Port
	require.NoError(t, l.Close())

	if os.Geteuid() == 0 {
		// smtp-sink refuses to keep root privileges.
		args = append([]string{"-u", "nobody"}, args...)
	}
	cmd := exec.Command(smtpSink, append(args, addr, "100")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}, 5*time.Second, 20*time.Millisecond, "smtp-sink did not start listening on %s", addr)

	s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: fromAddr, Timeout: 5 * time.Second, Pool: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSMTPSink(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		wantCode   string
		wantReason string
	}{
		{"Accepts", nil, "", ""},
		{"SoftRcpt", []string{"-r", "RCPT"}, herald.ETemporary, "smtp 450 4.3.0"},
		{"HardRcpt", []string{"-f", "RCPT"}, herald.EPermanent, "smtp 500 5.3.0"},
		{"HardMail", []string{"-f", "MAIL"}, herald.EPermanent, "smtp 500 5.3.0"},
		{"SoftEndOfData", []string{"-r", "."}, herald.ETemporary, "smtp 450 4.3.0"},
		{"HangUpAfterData", []string{"-q", "."}, herald.ETemporary, "smtp connection"},
		{"ClosingAtConnect", []string{"-Q", "CONNECT"}, herald.ETemporary, "smtp 421 4.0.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startSink(t, tt.args...)
			// Twice: the second message exercises the pooled (or replaced)
			// connection against a server that is not ours.
			for range 2 {
				r, err := s.Send(context.Background(), message())
				if tt.wantCode == "" {
					require.NoError(t, err)
					require.NotEmpty(t, r.ProviderID)
					continue
				}
				require.Error(t, err)
				require.Equal(t, tt.wantCode, herald.ErrorCode(err), "got %v", err)
				require.Equal(t, tt.wantReason, herald.ErrorReason(err), "got %v", err)
				require.False(t, email.DeadAddress(err), "5.3.0 is not an unknown address")
			}
		})
	}
}
