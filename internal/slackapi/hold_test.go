package slackapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/slack-go/slack"
	"github.com/stretchr/testify/require"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const delay = 30 * time.Millisecond

	tests := []struct {
		name  string
		fault slackapi.Fault
		code  string // the Slack error answered after the delay; "" for the normal answer
	}{
		{"AnswersNormally", slackapi.Fault{Delay: delay}, ""},
		{"AnswersNormallyForMethod", slackapi.Fault{Delay: delay, Method: "chat.postMessage"}, ""},
		{"AnswersWithError", slackapi.Fault{Delay: delay, Error: "internal_error"}, "internal_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, slackapi.Options{})
			b.srv.SetFault(tt.fault)

			start := time.Now()
			_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
			require.GreaterOrEqual(t, time.Since(start), delay, "the answer waits out the delay")
			if tt.code == "" {
				require.NoError(t, err)
				require.Equal(t, 1, b.srv.Count())
			} else {
				require.Equal(t, tt.code, slackCode(t, err))
				require.Equal(t, 0, b.srv.Count())
			}
		})
	}

	t.Run("ClientGivesUp", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		b.srv.SetFault(slackapi.Fault{Delay: time.Hour})
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		b.srv.OnFault(func(string, slackapi.Fault) { cancel() })

		_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		require.ErrorIs(t, err, context.Canceled)
		b.hs.Close() // returns only once the delayed request has been dropped
		require.Equal(t, 0, b.srv.Count(), "a dropped request is not handled")
		require.Equal(t, 1, b.srv.Calls("chat.postMessage"))
	})
}

func TestHang(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ReleasedBySetFault", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			fault slackapi.Fault
			code  string // the Slack error answered once released; "" for the normal answer
		}{
			{"AnswersNormally", slackapi.Fault{Hang: true, Method: "chat.postMessage"}, ""},
			{"AnswersWithError", slackapi.Fault{Hang: true, Method: "chat.postMessage", Error: "ratelimited"}, "ratelimited"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, slackapi.Options{})
				held := heldRequests(b.srv)
				b.srv.SetFault(tt.fault)

				done := postAsync(ctx, b.client, "U1")
				require.Equal(t, "chat.postMessage", <-held)
				_, err := b.client.AuthTestContext(ctx)
				require.NoError(t, err, "other methods are not held")
				requireWaiting(t, done)

				b.srv.SetFault(slackapi.Fault{})
				err = <-done
				if tt.code == "" {
					require.NoError(t, err)
					require.Equal(t, 1, b.srv.Count())
				} else {
					require.Equal(t, tt.code, slackCode(t, err))
					require.Equal(t, 0, b.srv.Count())
				}
			})
		}
	})

	t.Run("ChannelAndTimes", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		held := heldRequests(b.srv)
		b.srv.SetFault(slackapi.Fault{Hang: true, Channel: "C1", Times: 1})

		done := postAsync(ctx, b.client, "C1")
		<-held
		for _, ch := range []string{"C2", "C1"} {
			_, _, err := b.client.PostMessageContext(ctx, ch, slack.MsgOptionText("x", false))
			require.NoError(t, err, "%s is not held: another channel, or the fault used up", ch)
		}
		requireWaiting(t, done)
		require.Equal(t, 2, b.srv.Count())

		b.srv.SetFault(slackapi.Fault{})
		require.NoError(t, <-done)
		require.Equal(t, 3, b.srv.Count())
	})

	t.Run("ReleasedByClient", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name string
			end  func(*expiringCtx, context.CancelFunc)
			want error
		}{
			{"Deadline", func(c *expiringCtx, _ context.CancelFunc) { c.expire() }, context.DeadlineExceeded},
			{"Cancel", func(_ *expiringCtx, cancel context.CancelFunc) { cancel() }, context.Canceled},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				b := setup(t, slackapi.Options{})
				held := heldRequests(b.srv)
				b.srv.SetFault(slackapi.Fault{Hang: true})
				deadline := newExpiringCtx()
				ctx, cancel := context.WithCancel(deadline)
				defer cancel()

				done := postAsync(ctx, b.client, "U1")
				<-held
				tt.end(deadline, cancel)
				require.ErrorIs(t, <-done, tt.want)
				b.hs.Close() // returns only once the hung request has been dropped
				require.Equal(t, 0, b.srv.Count(), "a dropped request is not handled")
			})
		}
	})

	t.Run("ReleasedByHTTPClientTimeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		b.srv.SetFault(slackapi.Fault{Hang: true})
		client := slack.New(token, slack.OptionAPIURL(b.url), slack.OptionHTTPClient(&http.Client{Timeout: 50 * time.Millisecond}))

		_, _, err := client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		var ne net.Error
		require.ErrorAs(t, err, &ne)
		require.True(t, ne.Timeout(), "got %v", err)
		b.hs.Close() // returns only once the hung request, if it arrived, has been dropped
		require.Equal(t, 0, b.srv.Count())
	})

	t.Run("ReleasedByClose", func(t *testing.T) {
		t.Parallel()
		tests := []struct {
			name  string
			start func(t *testing.T) (srv *slackapi.Server, url string, stop func())
		}{
			{"New", func(t *testing.T) (*slackapi.Server, string, func()) {
				b := setup(t, slackapi.Options{})
				return b.srv, b.url, func() {
					require.NoError(t, b.srv.Close())
					b.hs.Close() // would wait for the hung request if Close had not dropped it
				}
			}},
			{"Start", func(t *testing.T) (*slackapi.Server, string, func()) {
				srv, err := slackapi.Start(slackapi.Options{})
				require.NoError(t, err)
				t.Cleanup(func() { _ = srv.Close() })
				return srv, srv.URL(), func() { require.NoError(t, srv.Close()) }
			}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				srv, url, stop := tt.start(t)
				held := heldRequests(srv)
				srv.SetFault(slackapi.Fault{Hang: true})

				done := postAsync(ctx, slack.New(token, slack.OptionAPIURL(url)), "U1")
				<-held
				stop()
				err := <-done
				require.Error(t, err, "the connection is dropped without an answer")
				var se slack.SlackErrorResponse
				require.False(t, errors.As(err, &se), "no Slack answer, got %v", err)
				require.Equal(t, 0, srv.Count())
			})
		}
	})
}

// heldRequests reports the method of every request a fault hits, just before
// it is held.
func heldRequests(srv *slackapi.Server) <-chan string {
	ch := make(chan string, 16)
	srv.OnFault(func(method string, _ slackapi.Fault) { ch <- method })
	return ch
}

// postAsync posts to channel in the background and reports the outcome.
func postAsync(ctx context.Context, client *slack.Client, channel string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, _, err := client.PostMessageContext(ctx, channel, slack.MsgOptionText("x", false))
		done <- err
	}()
	return done
}

// requireWaiting fails if the call behind done has already returned.
func requireWaiting(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		require.FailNow(t, "the held request was answered", "got %v", err)
	default:
	}
}

// expiringCtx is a context whose deadline passes when the test says so, so
// that it passes exactly while a request is held, however slow the machine.
type expiringCtx struct {
	context.Context
	deadline time.Time
	done     chan struct{}
	once     sync.Once
}

func newExpiringCtx() *expiringCtx {
	return &expiringCtx{Context: context.Background(), deadline: time.Now().Add(time.Hour), done: make(chan struct{})}
}

func (c *expiringCtx) expire() { c.once.Do(func() { close(c.done) }) }

func (c *expiringCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *expiringCtx) Done() <-chan struct{}       { return c.done }

func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
