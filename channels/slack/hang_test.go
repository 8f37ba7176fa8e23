package slack_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/stretchr/testify/require"
)

// call is one Sender step that reaches Slack, and the API method it calls.
type call struct {
	name   string
	method string
	do     func(ctx context.Context, b *bundle) error
}

var calls = []call{
	{"PostByUserID", "chat.postMessage", func(ctx context.Context, b *bundle) error {
		_, err := b.sender.Send(ctx, message(byID()))
		return err
	}},
	{"LookUpEmail", "users.lookupByEmail", func(ctx context.Context, b *bundle) error {
		_, err := b.sender.Send(ctx, message(byEmail()))
		return err
	}},
	{"Update", "chat.update", func(ctx context.Context, b *bundle) error {
		return b.sender.Update(ctx, "D00000001", "1.000001", "x", nil)
	}},
}

func TestContextEndsWhileSlackHangs(t *testing.T) {
	t.Parallel()

	ends := []struct {
		name   string
		end    func(*expiringCtx, context.CancelFunc)
		want   error
		reason string
	}{
		{"Deadline", func(c *expiringCtx, _ context.CancelFunc) { c.expire() }, context.DeadlineExceeded, "slack timeout"},
		{"Cancel", func(_ *expiringCtx, cancel context.CancelFunc) { cancel() }, context.Canceled, "slack canceled"},
	}
	for _, c := range calls {
		for _, e := range ends {
			t.Run(c.name+"/"+e.name, func(t *testing.T) {
				t.Parallel()
				// Config.Timeout is out of reach: only ctx can end the call.
				b := setup(t, setupOpts{timeout: time.Hour})
				held := make(chan struct{}, 1)
				b.api.OnFault(func(string, slackapi.Fault) { held <- struct{}{} })
				b.api.SetFault(slackapi.Fault{Hang: true, Method: c.method})
				deadline := newExpiringCtx()
				ctx, cancel := context.WithCancel(deadline)
				defer cancel()

				done := make(chan error, 1)
				go func() { done <- c.do(ctx, b) }()
				<-held
				e.end(deadline, cancel)
				err := <-done

				var herr *herald.Error
				require.ErrorAs(t, err, &herr)
				require.True(t, herald.IsTemporary(err), "got %v", err)
				require.Equal(t, e.reason, herald.ErrorReason(err))
				require.ErrorIs(t, err, e.want)
				require.Equal(t, 1, b.api.Calls(c.method))
				if c.method == "users.lookupByEmail" {
					require.Equal(t, 0, b.api.Calls("chat.postMessage"), "no post without the user")
				}
				require.Empty(t, b.api.Posts())
				require.Empty(t, b.cache.snapshot(), "an unfinished lookup is not cached")
			})
		}
	}
}

func TestRateLimitIsNotWaitedOut(t *testing.T) {
	t.Parallel()

	for _, c := range calls {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{timeout: time.Hour})
			// Waiting out Retry-After would outlast ctx and turn the answer
			// into a timeout.
			b.api.SetFault(slackapi.Fault{Status: 429, RetryAfter: time.Hour, Method: c.method})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()

			err := c.do(ctx, b)
			require.True(t, herald.IsTemporary(err), "got %v", err)
			require.Equal(t, "slack rate_limited", herald.ErrorReason(err))
			require.Equal(t, time.Hour, herald.RetryAfter(err))
			require.Equal(t, 1, b.api.Calls(c.method), "slack-go does not retry on its own")
			require.Empty(t, b.api.Posts())
		})
	}
}

// expiringCtx is a context whose deadline passes when the test says so, so
// that it passes exactly while a request hangs, however slow the machine.
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
