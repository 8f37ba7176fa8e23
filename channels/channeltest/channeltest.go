// Package channeltest is the suite every herald.Sender must pass: success,
// temporary failure, permanent failure and a cancelled context, each against
// the channel's real test peer (an in-process SMTP server, an httptest Slack
// API).
package channeltest

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/stretchr/testify/require"
)

// Fault is a failure the peer must produce for the next delivery.
type Fault int

// Faults a Peer must be able to produce.
const (
	FaultNone      Fault = iota
	FaultTemporary       // e.g. SMTP 451, Slack 429 or 500
	FaultPermanent       // e.g. SMTP 550, Slack users_not_found
)

// Peer is a channel's Sender wired to a test provider the suite can steer.
type Peer interface {
	// Sender returns the Sender under test.
	Sender() herald.Sender
	// Customer returns a customer the channel can reach.
	Customer() herald.Customer
	// Fail makes the provider answer the next delivery attempts with f until
	// Fail(FaultNone) is called.
	Fail(f Fault)
	// Received returns how many messages the provider has accepted so far.
	Received() int
}

// Exercise runs the shared suite against the peer made by newPeer (called
// once per sub-test, so peers need not be reset).
func Exercise(t *testing.T, newPeer func(t *testing.T) Peer) {
	t.Helper()

	t.Run("Success", func(t *testing.T) {
		p := newPeer(t)
		m := message(p.Customer(), "success")
		r, err := p.Sender().Send(context.Background(), m)
		require.NoError(t, err)
		require.NotEmpty(t, r.ProviderID, "a receipt names the provider's ID")
		require.False(t, r.SentAt.IsZero(), "a receipt carries the send time")
		require.NotEmpty(t, r.Channel, "a receipt names its channel")
		require.Eventually(t, func() bool { return p.Received() == 1 }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("TemporaryFailure", func(t *testing.T) {
		p := newPeer(t)
		p.Fail(FaultTemporary)
		_, err := p.Sender().Send(context.Background(), message(p.Customer(), "temporary"))
		require.Error(t, err)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, 0, p.Received())

		p.Fail(FaultNone)
		_, err = p.Sender().Send(context.Background(), message(p.Customer(), "temporary"))
		require.NoError(t, err, "the sender recovers once the provider does")
		require.Eventually(t, func() bool { return p.Received() == 1 }, 5*time.Second, 10*time.Millisecond)
	})

	t.Run("PermanentFailure", func(t *testing.T) {
		p := newPeer(t)
		p.Fail(FaultPermanent)
		_, err := p.Sender().Send(context.Background(), message(p.Customer(), "permanent"))
		require.Error(t, err)
		require.Equal(t, herald.EPermanent, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, 0, p.Received())
	})

	t.Run("CancelledContext", func(t *testing.T) {
		p := newPeer(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := p.Sender().Send(ctx, message(p.Customer(), "cancelled"))
		require.Error(t, err)
		require.True(t, errors.Is(err, context.Canceled), "a cancelled context surfaces context.Canceled, got %v", err)
		require.NotEqual(t, herald.EPermanent, herald.ErrorCode(err), "cancellation is never permanent")
		require.Equal(t, 0, p.Received())
	})
}

var seq atomic.Int64

func message(c herald.Customer, name string) herald.Message {
	return herald.Message{
		ID:       fmt.Sprintf("channeltest:%s:%d:%d", name, time.Now().UnixNano(), seq.Add(1)),
		Customer: c,
		Topic:    "onboarding",
		Template: "welcome",
		Content: herald.Content{
			Locale:    "en",
			Subject:   "Welcome, Zoë 👋",
			Text:      "Hello from herald.\n",
			HTML:      "<p>Hello from <strong>herald</strong>.</p>",
			SlackText: "Hello from *herald*.",
		},
	}
}
