package email_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/msgid"
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
		// Without PIPELINING each command waits for its reply.
		{"AcceptsOneCommandAtATime", []string{"-p"}, "", ""},
		{"HardMailOneCommandAtATime", []string{"-p", "-f", "MAIL"}, herald.EPermanent, "smtp 500 5.3.0"},
		{"SoftRcptOneCommandAtATime", []string{"-p", "-r", "RCPT"}, herald.ETemporary, "smtp 450 4.3.0"},
		{"HardDataOneCommandAtATime", []string{"-p", "-f", "DATA"}, herald.EPermanent, "smtp 500 5.3.0"},
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

// A sealed Message-ID reaches another server's idea of SMTP as it was
// written: smtp-sink dumps the message, header and all.
func TestSMTPSinkKeepsSealedMessageID(t *testing.T) {
	t.Parallel()
	// Not under t.TempDir, whose parent only its owner may enter:
	// smtp-sink may run as nobody.
	dir, err := os.MkdirTemp("", "herald-sink-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o777))
	dump := filepath.Join(dir, "dump")
	s := startSink(t, "-D", dump)
	token, ok := msgid.NewKeys([]byte("0123456789abcdef0123456789abcdef")).Seal("c1", "m_5f0c2a9e41b7d3c8a6e2f190")
	require.True(t, ok)
	r, err := s.Send(context.Background(), message(func(m *herald.Message) { m.ReplyToken = token }))
	require.NoError(t, err)
	require.Equal(t, "<"+token+"@"+fromDomain+">", r.ProviderID)
	var data []byte
	require.Eventually(t, func() bool {
		data, err = os.ReadFile(dump)
		return err == nil && len(data) > 0
	}, 5*time.Second, 20*time.Millisecond, "smtp-sink dumped the message")
	// go-mail folds the field before the msg-id when the line would pass
	// 78 characters (RFC 5322 allows folding white space there); the
	// msg-id itself is never broken.
	unfolded := strings.ReplaceAll(string(data), "\n ", " ")
	require.Contains(t, unfolded, "\nMessage-ID: "+r.ProviderID+"\n")
}
