package email_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

// fillPool leaves n idle connections in b's pool: n sends held at DATA at
// once need n connections.
func fillPool(t *testing.T, b *bundle, n int) {
	t.Helper()
	b.srv.SetFault(smtpserver.Fault{Stage: "DATA", Hang: true})
	done := make([]<-chan sent, n)
	for i := range done {
		done[i] = sendAsync(context.Background(), b.sender, message())
	}
	waiting(t, b.srv, n)
	b.srv.SetFault(smtpserver.Fault{})
	for _, d := range done {
		require.NoError(t, (<-d).err)
	}
	require.Equal(t, n, b.srv.Connections())
}

func TestRelayRestart(t *testing.T) {
	t.Parallel()
	// The relay restarts while the pool holds four idle connections, all
	// now dead: no Send fails, whether the dead connections are found by
	// the check before reuse or at MAIL FROM, and the dead pool is dropped
	// at once rather than tried connection by connection.
	tests := []struct {
		name      string
		idleCheck time.Duration // 0: the default
		parallel  bool
	}{
		{"CheckedBeforeReuse", time.Nanosecond, false},
		{"FoundDeadAtMailFrom", time.Hour, false},
		{"DefaultIdleCheck", 0, false},
		{"CheckedBeforeReuseParallel", time.Nanosecond, true},
		{"FoundDeadAtMailFromParallel", time.Hour, true},
	}
	const n = 8
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{}, func(c *email.Config) { c.Pool = 4 })
			if tt.idleCheck > 0 {
				email.SetIdleCheck(b.sender, tt.idleCheck)
			}
			fillPool(t, b, 4)

			addr := b.srv.Addr()
			require.NoError(t, b.srv.Close())
			srv, err := smtpserver.Start(smtpserver.Options{Addr: addr})
			require.NoError(t, err)
			t.Cleanup(func() { _ = srv.Close() })

			if tt.parallel {
				var wg sync.WaitGroup
				errs := make(chan error, n)
				for range n {
					wg.Go(func() {
						_, err := b.sender.Send(context.Background(), message())
						errs <- err
					})
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					require.NoError(t, err, "a dead pooled connection is no failed send")
				}
				// Concurrent sends may each find a dead connection and drop
				// the pool, fresh ones included; none dials twice.
				require.LessOrEqual(t, srv.Connections(), n)
			} else {
				for i := range n {
					_, err := b.sender.Send(context.Background(), message())
					require.NoError(t, err, "send %d after the restart", i)
				}
				require.Equal(t, 1, srv.Connections(), "one dead connection found: the others were dropped with it")
			}
			require.Equal(t, n, srv.Count())
		})
	}
}

func TestSuspectConnectionChecked(t *testing.T) {
	t.Parallel()
	// An error reply leaves the connection pooled but suspect: it is checked
	// before its next message even when it idled for no time at all, and
	// replaced if the check fails.
	tests := []struct {
		name string
		// between runs after the refused message, before the next.
		between func(t *testing.T, b *bundle)
		conns   int
	}{
		{"StillGood", func(*testing.T, *bundle) {}, 1},
		{"DiedMeanwhile", func(t *testing.T, b *bundle) {
			require.NoError(t, b.srv.Down())
			require.NoError(t, b.srv.Up())
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{}, func(c *email.Config) { c.Pool = 1 })
			email.SetIdleCheck(b.sender, time.Hour)
			b.srv.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 450, Enhanced: "4.2.1"})
			_, err := b.sender.Send(context.Background(), message())
			require.Error(t, err)
			b.srv.SetFault(smtpserver.Fault{})

			tt.between(t, b)
			_, err = b.sender.Send(context.Background(), message())
			require.NoError(t, err)
			require.Equal(t, 1, b.srv.Count())
			require.Equal(t, tt.conns, b.srv.Connections())
		})
	}
}

func TestIdleTimedOutByServer(t *testing.T) {
	t.Parallel()
	// A server that timed an idle connection out answers its next command
	// with 421 and hangs up, as go-smtp and Postfix do: whether that
	// command is the check before reuse (RSET) or MAIL FROM, the message
	// goes out on a fresh connection and the Send does not fail.
	tests := []struct {
		name      string
		idleCheck time.Duration
		verb      string
		nth       int // the first RSET follows the first message
	}{
		{"AtCheck", time.Nanosecond, "RSET", 2},
		{"AtMailFrom", time.Hour, "MAIL", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			port, accepted := scripted(t, func(conn int, verb string, nth int) (string, bool) {
				if conn == 0 && verb == tt.verb && nth == tt.nth {
					return "421 4.4.2 Idle timeout, bye bye", true
				}
				return "", false
			})
			s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: fromAddr, Pool: 1})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			email.SetIdleCheck(s, tt.idleCheck)

			for i := range 3 {
				_, err := s.Send(context.Background(), message())
				require.NoError(t, err, "send %d", i)
			}
			require.Equal(t, 2, accepted())
		})
	}
}
