package email_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

const (
	fromAddr   = "Herald <hello@herald.test>"
	fromDomain = "herald.test"
	customer   = "zoe@example.com"
)

type bundle struct {
	srv    *smtpserver.Server
	cfg    email.Config
	sender *email.Sender
}

// setup starts an SMTP server with opts and a Sender pointed at it; mods
// adjust the Sender's config.
func setup(tb testing.TB, opts smtpserver.Options, mods ...func(*email.Config)) *bundle {
	tb.Helper()
	srv, err := smtpserver.Start(opts)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = srv.Close() })

	cfg, err := email.ParseURL(srv.URL())
	require.NoError(tb, err)
	cfg.From = fromAddr
	for _, mod := range mods {
		mod(&cfg)
	}
	s, err := email.New(cfg)
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return &bundle{srv: srv, cfg: cfg, sender: s}
}

var seq atomic.Int64

func message(mods ...func(*herald.Message)) herald.Message {
	m := herald.Message{
		ID:       fmt.Sprintf("journey-1:step-%d:email", seq.Add(1)),
		Channel:  herald.ChannelEmail,
		Customer: herald.Customer{ID: "c1", Email: customer},
		Topic:    "onboarding",
		Template: "welcome",
		Content: herald.Content{
			Locale:  "en",
			Subject: "Welcome aboard",
			Text:    "Hello from herald.\n",
			HTML:    "<p>Hello from <strong>herald</strong>.</p>",
		},
	}
	for _, mod := range mods {
		mod(&m)
	}
	return m
}

// waiting waits until n sessions of srv are held by a Delay or Hang fault.
func waiting(t *testing.T, srv *smtpserver.Server, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return srv.Waiting() == n }, 10*time.Second, 5*time.Millisecond,
		"want %d sessions held by the fault", n)
}
