package email_test

import (
	"context"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/channeltest"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/msgid"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

type peer struct{ b *bundle }

func (p peer) Sender() herald.Sender     { return p.b.sender }
func (p peer) Customer() herald.Customer { return herald.Customer{ID: "c1", Email: customer} }
func (p peer) Received() int             { return p.b.srv.Count() }
func (p peer) Fail(f channeltest.Fault) {
	switch f {
	case channeltest.FaultTemporary:
		p.b.srv.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 451, Enhanced: "4.3.0"})
	case channeltest.FaultPermanent:
		p.b.srv.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1"})
	default:
		p.b.srv.SetFault(smtpserver.Fault{})
	}
}

func TestExercise(t *testing.T) {
	t.Parallel()
	channeltest.Exercise(t, func(t *testing.T) channeltest.Peer {
		return peer{setup(t, smtpserver.Options{})}
	})
}

// parsed is a received email taken apart the way a mail client would.
type parsed struct {
	header  mail.Header
	subject string
	parts   map[string]string // media type -> decoded body
}

func parse(t *testing.T, raw []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	require.NoError(t, err)
	p := parsed{header: msg.Header, parts: map[string]string{}}
	p.subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(t, err)

	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(t, err)
	if !strings.HasPrefix(mt, "multipart/") {
		body, err := io.ReadAll(msg.Body)
		require.NoError(t, err)
		p.parts[mt] = string(body)
		return p
	}
	require.Equal(t, "multipart/alternative", mt)
	r := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := r.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		pt, _, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		require.NoError(t, err)
		body, err := io.ReadAll(part) // multipart decodes quoted-printable
		require.NoError(t, err)
		p.parts[pt] = string(body)
	}
	return p
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	b := setup(t, smtpserver.Options{Dir: t.TempDir()})

	subject := "Welcome, Zoë 👋 ยินดีต้อนรับ ようこそ — a subject long enough to need folding across lines"
	m := message(func(m *herald.Message) {
		m.Content.Subject = subject
		m.Content.Text = "Hi Zoë,\nyour trial started. ยินดีต้อนรับ\n"
		m.Content.HTML = "<p>Hi Zoë, <b>ようこそ</b></p>"
		m.Unsubscribe = []string{"https://herald.test/unsubscribe?token=abc.DEF_123-~%2F", "mailto:unsubscribe@herald.test?subject=unsubscribe"}
		m.ReplyTo = "support@herald.test"
	})
	r, err := b.sender.Send(context.Background(), m)
	require.NoError(t, err)
	require.Equal(t, herald.ChannelEmail, r.Channel)
	require.Empty(t, r.Recipient, "a receipt never carries an email address")
	require.Equal(t, email.MessageID(m.ID, fromDomain), r.ProviderID)

	msgs := b.srv.Messages()
	require.Len(t, msgs, 1)
	require.Equal(t, "hello@herald.test", msgs[0].From)
	require.Equal(t, []string{customer}, msgs[0].To)
	p := parse(t, msgs[0].Data)

	require.Equal(t, subject, p.subject)
	require.Equal(t, r.ProviderID, p.header.Get("Message-Id"))
	require.Equal(t, r.ProviderID, msgs[0].MessageID)
	from, err := p.header.AddressList("From")
	require.NoError(t, err)
	require.Equal(t, []*mail.Address{{Name: "Herald", Address: "hello@herald.test"}}, from)
	to, err := p.header.AddressList("To")
	require.NoError(t, err)
	require.Equal(t, customer, to[0].Address)
	replyTo, err := p.header.AddressList("Reply-To")
	require.NoError(t, err)
	require.Equal(t, "support@herald.test", replyTo[0].Address)
	date, err := p.header.Date()
	require.NoError(t, err)
	require.WithinDuration(t, time.Now(), date, time.Minute)

	require.Equal(t, "onboarding", p.header.Get(email.HeaderTopic))
	require.Equal(t, "welcome", p.header.Get(email.HeaderTemplate))
	require.Equal(t, "<https://herald.test/unsubscribe?token=abc.DEF_123-~%2F>, <mailto:unsubscribe@herald.test?subject=unsubscribe>",
		p.header.Get("List-Unsubscribe"))
	require.Equal(t, "List-Unsubscribe=One-Click", p.header.Get("List-Unsubscribe-Post"))

	require.Equal(t, map[string]string{
		"text/plain": m.Content.Text,
		"text/html":  m.Content.HTML,
	}, normalize(p.parts))
}

// normalize turns the CRLF line ends of the wire format back into LF.
func normalize(parts map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range parts {
		out[k] = strings.ReplaceAll(v, "\r\n", "\n")
	}
	return out
}

func TestHeadersOptional(t *testing.T) {
	t.Parallel()
	b := setup(t, smtpserver.Options{})

	_, err := b.sender.Send(context.Background(), message(func(m *herald.Message) {
		m.Content.HTML = ""
		m.Unsubscribe = []string{"mailto:unsubscribe@herald.test"}
	}))
	require.NoError(t, err)
	p := parse(t, b.srv.Messages()[0].Data)
	require.Equal(t, map[string]string{"text/plain": "Hello from herald.\n"}, normalize(p.parts), "text only when there is no HTML")
	require.Equal(t, "<mailto:unsubscribe@herald.test>", p.header.Get("List-Unsubscribe"))
	require.Empty(t, p.header.Get("List-Unsubscribe-Post"), "one-click needs an https URL")
	require.Empty(t, p.header.Get("Reply-To"))

	// herald dev serves its unsubscribe page over plain http on loopback.
	_, err = b.sender.Send(context.Background(), message(func(m *herald.Message) {
		m.Unsubscribe = []string{"http://127.0.0.1:8080/unsubscribe?token=x"}
	}))
	require.NoError(t, err)
	p = parse(t, b.srv.Messages()[1].Data)
	require.Equal(t, "<http://127.0.0.1:8080/unsubscribe?token=x>", p.header.Get("List-Unsubscribe"))
	require.Empty(t, p.header.Get("List-Unsubscribe-Post"))
}

func TestMessageIDStable(t *testing.T) {
	t.Parallel()
	b := setup(t, smtpserver.Options{})

	m := message()
	r1, err := b.sender.Send(context.Background(), m)
	require.NoError(t, err)
	r2, err := b.sender.Send(context.Background(), m)
	require.NoError(t, err)
	other, err := b.sender.Send(context.Background(), message())
	require.NoError(t, err)

	msgs := b.srv.Messages()
	require.Len(t, msgs, 3)
	require.Equal(t, msgs[0].MessageID, msgs[1].MessageID, "a retried delivery carries the same Message-ID")
	require.Equal(t, r1.ProviderID, r2.ProviderID)
	require.NotEqual(t, msgs[0].MessageID, msgs[2].MessageID)
	require.Equal(t, other.ProviderID, msgs[2].MessageID)
}

func TestMessageID(t *testing.T) {
	t.Parallel()
	id := email.MessageID("journey-1:welcome:email", "herald.test")
	require.Regexp(t, `^<[0-9a-f]{32}@herald\.test>$`, id)
	require.Equal(t, id, email.MessageID("journey-1:welcome:email", "herald.test"))
	require.NotEqual(t, id, email.MessageID("journey-1:welcome:slack", "herald.test"))
}

func TestSealedMessageID(t *testing.T) {
	t.Parallel()
	b := setup(t, smtpserver.Options{})
	keys := msgid.NewKeys([]byte("0123456789abcdef0123456789abcdef"))
	token, ok := keys.Seal("ada@example.com", "m_5f0c2a9e41b7d3c8a6e2f190")
	require.True(t, ok)
	longest, ok := keys.Seal(strings.Repeat("c", 48), strings.Repeat("m", msgid.MaxIDs-48))
	require.True(t, ok)

	m := message(func(m *herald.Message) { m.ReplyToken = token })
	r, err := b.sender.Send(context.Background(), m)
	require.NoError(t, err)
	want := "<" + token + "@" + fromDomain + ">"
	require.Equal(t, want, r.ProviderID)
	again, err := b.sender.Send(context.Background(), m)
	require.NoError(t, err)
	require.Equal(t, r.ProviderID, again.ProviderID, "a retried delivery carries the same Message-ID")

	msgs := b.srv.Messages()
	require.Len(t, msgs, 2)
	require.Equal(t, want, msgs[0].MessageID, "go-mail and the server keep it as it is")
	p := parse(t, msgs[0].Data)
	require.Equal(t, want, p.header.Get("Message-Id"))
	require.NotContains(t, string(msgs[0].Data), "ada@example.com", "the customer ID is sealed")
	cust, msg, ok := keys.Open(msgs[0].MessageID)
	require.True(t, ok)
	require.Equal(t, "ada@example.com", cust)
	require.Equal(t, "m_5f0c2a9e41b7d3c8a6e2f190", msg)

	// The longest token goes on a folded line of its own, whole.
	r, err = b.sender.Send(context.Background(), message(func(m *herald.Message) { m.ReplyToken = longest }))
	require.NoError(t, err)
	require.Equal(t, "<"+longest+"@"+fromDomain+">", b.srv.Messages()[2].MessageID)
	require.Contains(t, string(b.srv.Messages()[2].Data), "Message-ID:\r\n "+r.ProviderID+"\r\n")
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mod  func(*herald.Message)
	}{
		{"NoEmail", func(m *herald.Message) { m.Customer.Email = "" }},
		{"MalformedEmail", func(m *herald.Message) { m.Customer.Email = "zoe.example.com" }},
		{"EmailWithName", func(m *herald.Message) { m.Customer.Email = "Zoe <zoe@example.com>" }},
		{"EmailCRLF", func(m *herald.Message) { m.Customer.Email = "zoe@example.com\r\nBcc: x@evil.test" }},
		{"SubjectCRLF", func(m *herald.Message) { m.Content.Subject = "Hi\r\nBcc: x@evil.test" }},
		{"SubjectLF", func(m *herald.Message) { m.Content.Subject = "Hi\nthere" }},
		{"TopicCR", func(m *herald.Message) { m.Topic = "onboarding\rX-Evil: 1" }},
		{"ReplyToCRLF", func(m *herald.Message) { m.ReplyTo = "a@b.test\r\nBcc: x@evil.test" }},
		{"ReplyToMalformed", func(m *herald.Message) { m.ReplyTo = "not an address" }},
		{"NoBody", func(m *herald.Message) { m.Content.Text, m.Content.HTML = "", "" }},
		{"NoID", func(m *herald.Message) { m.ID = "" }},
		{"ReplyTokenCRLF", func(m *herald.Message) { m.ReplyToken = "hm1.abc>\r\nBcc: x@evil.test" }},
		{"ReplyTokenAt", func(m *herald.Message) { m.ReplyToken = "hm1.abc@evil.test" }},
		{"ReplyTokenDots", func(m *herald.Message) { m.ReplyToken = "hm1..abc" }},
		{"ReplyTokenTooLong", func(m *herald.Message) { m.ReplyToken = "hm1." + strings.Repeat("a", 300) }},
		{"UnsubCRLF", func(m *herald.Message) {
			m.Unsubscribe = []string{"https://herald.test/u?t=1\r\nBcc: x@evil.test"}
		}},
		{"UnsubSpace", func(m *herald.Message) { m.Unsubscribe = []string{"https://herald.test/u?t=a b"} }},
		{"UnsubAngle", func(m *herald.Message) { m.Unsubscribe = []string{"https://herald.test/u>, <https://evil.test/"} }},
		{"UnsubNonASCII", func(m *herald.Message) { m.Unsubscribe = []string{"https://herald.test/ü"} }},
		{"UnsubJavascript", func(m *herald.Message) { m.Unsubscribe = []string{"javascript:alert(1)"} }},
		{"UnsubHTTP", func(m *herald.Message) { m.Unsubscribe = []string{"http://herald.test/u"} }},
		{"UnsubNoHost", func(m *herald.Message) { m.Unsubscribe = []string{"https:///u"} }},
		{"UnsubMailtoEmpty", func(m *herald.Message) { m.Unsubscribe = []string{"mailto:"} }},
		{"UnsubTooLong", func(m *herald.Message) {
			m.Unsubscribe = []string{"https://herald.test/" + strings.Repeat("a", 500)}
		}},
	}
	b := setup(t, smtpserver.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := b.sender.Send(context.Background(), message(tt.mod))
			require.Error(t, err)
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "got %v", err)
			require.NotContains(t, err.Error(), "evil", "the error does not echo the bad value")
		})
	}
	t.Cleanup(func() {
		require.Equal(t, 0, b.srv.Connections(), "invalid messages never reach the server")
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	opts := smtpserver.Options{Username: "herald", Password: "s3cret-pass"}

	t.Run("Accepted", func(t *testing.T) {
		t.Parallel()
		b := setup(t, opts)
		require.Equal(t, "herald", b.cfg.Username)
		_, err := b.sender.Send(context.Background(), message())
		require.NoError(t, err)
		require.Equal(t, 1, b.srv.Count())
	})
	t.Run("WrongPassword", func(t *testing.T) {
		t.Parallel()
		b := setup(t, opts, func(c *email.Config) { c.Password = "wrong-horse-battery" })
		_, err := b.sender.Send(context.Background(), message())
		require.Error(t, err)
		require.Equal(t, herald.EPermanent, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "smtp 535 5.7.8", herald.ErrorReason(err))
		require.NotContains(t, err.Error(), "wrong-horse-battery")
		require.False(t, email.DeadAddress(err))
		require.Equal(t, 0, b.srv.Count())
	})
	t.Run("NoCredentials", func(t *testing.T) {
		t.Parallel()
		b := setup(t, opts, func(c *email.Config) { c.Username, c.Password = "", "" })
		_, err := b.sender.Send(context.Background(), message())
		require.Error(t, err)
		require.Equal(t, herald.EPermanent, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "smtp 502 5.7.0", herald.ErrorReason(err))
	})
}

func TestPoolReuse(t *testing.T) {
	t.Parallel()
	t.Run("Sequential", func(t *testing.T) {
		t.Parallel()
		b := setup(t, smtpserver.Options{})
		for range 20 {
			_, err := b.sender.Send(context.Background(), message())
			require.NoError(t, err)
		}
		require.Equal(t, 20, b.srv.Count())
		require.Equal(t, 1, b.srv.Connections(), "one connection carries every message sent one after another")
	})
	t.Run("Parallel", func(t *testing.T) {
		t.Parallel()
		b := setup(t, smtpserver.Options{}, func(c *email.Config) { c.Pool = 3 })
		var wg sync.WaitGroup
		errs := make(chan error, 60)
		for range 60 {
			wg.Go(func() {
				_, err := b.sender.Send(context.Background(), message())
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, 60, b.srv.Count())
		require.LessOrEqual(t, b.srv.Connections(), 3, "never more connections than the pool size")
	})
}

func TestFailureClassification(t *testing.T) {
	t.Parallel()
	// conns is how many connections the server saw after a failed message and
	// a good one: an error reply leaves the connection usable (it is checked
	// with RSET and reused), a 421 or a hang-up gets it replaced.
	tests := []struct {
		name       string
		fault      smtpserver.Fault
		wantCode   string
		wantReason string
		dead       bool
		conns      int
	}{
		{"Mail421", smtpserver.Fault{Stage: "MAIL", Code: 421, Enhanced: "4.4.1"}, herald.ETemporary, "smtp 421 4.4.1", false, 2},
		{"Rcpt451", smtpserver.Fault{Stage: "RCPT", Code: 451, Enhanced: "4.3.0"}, herald.ETemporary, "smtp 451 4.3.0", false, 1},
		{"Rcpt550Unknown", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1"}, herald.EPermanent, "smtp 550 5.1.1", true, 1},
		{"Rcpt550BadDomain", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.2", Rcpt: customer}, herald.EPermanent, "smtp 550 5.1.2", true, 1},
		{"Rcpt550Policy", smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.7.1"}, herald.EPermanent, "smtp 550 5.7.1", false, 1},
		{"Mail550Sender", smtpserver.Fault{Stage: "MAIL", Code: 550, Enhanced: "5.1.8"}, herald.EPermanent, "smtp 550 5.1.8", false, 1},
		{"Rcpt553SenderCode", smtpserver.Fault{Stage: "RCPT", Code: 553, Enhanced: "5.1.7"}, herald.EPermanent, "smtp 553 5.1.7", false, 1},
		{"Data554", smtpserver.Fault{Stage: "DATA", Code: 554, Enhanced: "5.6.0"}, herald.EPermanent, "smtp 554 5.6.0", false, 1},
		{"Data452", smtpserver.Fault{Stage: "DATA", Code: 452, Enhanced: "4.2.2"}, herald.ETemporary, "smtp 452 4.2.2", false, 1},
		{"DroppedMidData", smtpserver.Fault{Stage: "DATA", Drop: true}, herald.ETemporary, "smtp connection", false, 2},
		{"DroppedAtRcpt", smtpserver.Fault{Stage: "RCPT", Drop: true}, herald.ETemporary, "smtp connection", false, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{})
			b.srv.SetFault(tt.fault)
			_, err := b.sender.Send(context.Background(), message())
			require.Error(t, err)
			require.Equal(t, tt.wantCode, herald.ErrorCode(err), "got %v", err)
			require.Equal(t, tt.wantReason, herald.ErrorReason(err))
			require.Equal(t, tt.dead, email.DeadAddress(err))
			require.NotContains(t, err.Error(), customer, "addresses stay out of error messages")
			require.Equal(t, 0, b.srv.Count())

			b.srv.SetFault(smtpserver.Fault{})
			_, err = b.sender.Send(context.Background(), message())
			require.NoError(t, err, "the next message goes through once the server recovers")
			require.Equal(t, 1, b.srv.Count())
			require.Equal(t, tt.conns, b.srv.Connections())
		})
	}
}

func TestReconnect(t *testing.T) {
	t.Parallel()

	t.Run("ServerDown", func(t *testing.T) {
		t.Parallel()
		b := setup(t, smtpserver.Options{})
		_, err := b.sender.Send(context.Background(), message())
		require.NoError(t, err)

		require.NoError(t, b.srv.Down())
		_, err = b.sender.Send(context.Background(), message())
		require.Error(t, err)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "smtp connection", herald.ErrorReason(err))

		require.NoError(t, b.srv.Up())
		_, err = b.sender.Send(context.Background(), message())
		require.NoError(t, err)
		require.Equal(t, 2, b.srv.Count())
		require.Equal(t, 2, b.srv.Connections())
	})

	t.Run("IdleConnectionDropped", func(t *testing.T) {
		t.Parallel()
		b := setup(t, smtpserver.Options{})
		_, err := b.sender.Send(context.Background(), message())
		require.NoError(t, err)

		// The pooled connection dies while idle; the next Send notices (by
		// the check before reuse, or at MAIL FROM) and redials instead of
		// failing the message.
		require.NoError(t, b.srv.Down())
		require.NoError(t, b.srv.Up())
		_, err = b.sender.Send(context.Background(), message())
		require.NoError(t, err)
		require.Equal(t, 2, b.srv.Count())
		require.Equal(t, 2, b.srv.Connections())
	})

	t.Run("Refused", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := l.Addr().(*net.TCPAddr)
		require.NoError(t, l.Close())

		s, err := email.New(email.Config{Host: "127.0.0.1", Port: addr.Port, TLS: email.TLSNone, From: fromAddr})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		_, err = s.Send(context.Background(), message())
		require.Error(t, err)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "smtp connection", herald.ErrorReason(err))
	})
}

// silent accepts connections and never says a word: a server that hangs.
// accepted is how many connections it has taken.
func silent(t *testing.T) (port int, accepted func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().(*net.TCPAddr).Port, func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

type sent struct {
	r   herald.Receipt
	err error
}

// sendAsync runs Send on its own goroutine.
func sendAsync(ctx context.Context, s *email.Sender, m herald.Message) <-chan sent {
	done := make(chan sent, 1)
	go func() {
		r, err := s.Send(ctx, m)
		done <- sent{r, err}
	}()
	return done
}

func TestContext(t *testing.T) {
	t.Parallel()

	t.Run("CancelledWhileServerHangs", func(t *testing.T) {
		t.Parallel()
		port, accepted := silent(t)
		// An hour's timeout: only the cancellation can end the dial.
		s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: fromAddr, Timeout: time.Hour})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })

		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := sendAsync(ctx, s, message())
		require.Eventually(t, func() bool { return accepted() == 1 }, 10*time.Second, 5*time.Millisecond)
		cancel()
		r := <-done
		require.ErrorIs(t, r.err, context.Canceled)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(r.err))
		require.Equal(t, "canceled", herald.ErrorReason(r.err))
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		port, _ := silent(t)
		s, err := email.New(email.Config{Host: "127.0.0.1", Port: port, TLS: email.TLSNone, From: fromAddr, Timeout: 200 * time.Millisecond})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })

		_, err = s.Send(context.Background(), message())
		require.Error(t, err)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "smtp timeout", herald.ErrorReason(err), "no greeting within the timeout")
	})

	t.Run("Cancelled", func(t *testing.T) {
		t.Parallel()
		b := setup(t, smtpserver.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := b.sender.Send(ctx, message())
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err))
		require.Equal(t, 0, b.srv.Connections())
	})

	t.Run("CancelledDuringData", func(t *testing.T) {
		t.Parallel()
		b := setup(t, smtpserver.Options{}, func(c *email.Config) { c.Pool = 1 })
		// The server has the whole message and holds back its verdict while
		// the caller gives up: the socket stays open, the verdict is awaited
		// and the message is reported sent.
		b.srv.SetFault(smtpserver.Fault{Stage: "DATA", Hang: true})
		ctx, cancel := context.WithCancel(context.Background())
		m := message()
		done := sendAsync(ctx, b.sender, m)
		waiting(t, b.srv, 1)
		cancel()
		b.srv.SetFault(smtpserver.Fault{})
		r := <-done
		require.NoError(t, r.err)
		require.Equal(t, email.MessageID(m.ID, fromDomain), r.r.ProviderID)
		require.Equal(t, 1, b.srv.Count())

		_, err := b.sender.Send(context.Background(), message())
		require.NoError(t, err)
		require.Equal(t, 1, b.srv.Connections(), "the connection was not cut off and stays pooled")
	})
}

func TestHungServer(t *testing.T) {
	t.Parallel()
	// A server that stops answering is cut off by Config.Timeout, whatever
	// the stage, with a temporary error; the connection is replaced.
	tests := []struct {
		stage string
		// stored is how many messages the server has in the end: the one
		// held at DATA was sent in full and is stored once let go, as a real
		// server might, after the client gave up on it.
		stored int
	}{
		{"MAIL", 1},
		{"RCPT", 1},
		{"DATA", 2},
	}
	for _, tt := range tests {
		t.Run(tt.stage, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{}, func(c *email.Config) { c.Timeout = time.Second })
			b.srv.SetFault(smtpserver.Fault{Stage: tt.stage, Hang: true})
			_, err := b.sender.Send(context.Background(), message())
			require.Error(t, err)
			require.True(t, herald.IsTemporary(err), "got %v", err)
			require.Equal(t, "smtp timeout", herald.ErrorReason(err), "got %v", err)
			require.False(t, email.DeadAddress(err))
			require.Equal(t, 0, b.srv.Count())

			b.srv.SetFault(smtpserver.Fault{})
			_, err = b.sender.Send(context.Background(), message())
			require.NoError(t, err)
			require.Equal(t, 2, b.srv.Connections(), "the timed-out connection was replaced")
			require.Eventually(t, func() bool { return b.srv.Count() == tt.stored }, 10*time.Second, 5*time.Millisecond)
		})
	}
}

func TestPoolWait(t *testing.T) {
	t.Parallel()
	// One pooled connection, busy with a send the server keeps waiting at
	// DATA, or idle; a second Send with the given deadline. It may wait for
	// the connection for half its time at most (and never within 5s of the
	// deadline): then it gives up, having sent nothing.
	tests := []struct {
		name     string
		busy     bool
		deadline time.Duration
		sent     bool
	}{
		{"BusyShortDeadline", true, 2 * time.Second, false},
		{"BusyLongDeadline", true, time.Minute, true},
		{"IdleShortDeadline", false, 2 * time.Second, true},
		{"IdleLongDeadline", false, time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{}, func(c *email.Config) { c.Pool = 1 })
			var first <-chan sent
			if tt.busy {
				b.srv.SetFault(smtpserver.Fault{Stage: "DATA", Hang: true})
				first = sendAsync(context.Background(), b.sender, message())
				waiting(t, b.srv, 1)
			}

			ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
			defer cancel()
			second := sendAsync(ctx, b.sender, message())
			if !tt.sent {
				r := <-second
				require.ErrorIs(t, r.err, email.ErrPoolWait)
				require.True(t, herald.IsTemporary(r.err), "got %v", r.err)
				require.Equal(t, "smtp pool wait", herald.ErrorReason(r.err))
			}
			if tt.busy {
				b.srv.SetFault(smtpserver.Fault{})
				require.NoError(t, (<-first).err)
			}
			want := 0
			if tt.busy {
				want++
			}
			if tt.sent {
				require.NoError(t, (<-second).err)
				want++
			}
			require.Equal(t, want, b.srv.Count(), "a Send given up before it started sent nothing")
			require.LessOrEqual(t, b.srv.Connections(), 1)
		})
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	b := setup(t, smtpserver.Options{})
	_, err := b.sender.Send(context.Background(), message())
	require.NoError(t, err)

	require.NoError(t, b.sender.Close())
	require.NoError(t, b.sender.Close(), "Close twice is harmless")
	_, err = b.sender.Send(context.Background(), message())
	require.ErrorIs(t, err, email.ErrClosed)
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err))
	require.Equal(t, 1, b.srv.Count())
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  email.Config
	}{
		{"NoFrom", email.Config{Host: "smtp.example.com"}},
		{"BadFrom", email.Config{Host: "smtp.example.com", From: "not an address"}},
		{"FromCRLF", email.Config{Host: "smtp.example.com", From: "a@b.test\r\nBcc: x@y.test"}},
		{"NoHost", email.Config{From: fromAddr}},
		{"BadTLS", email.Config{Host: "smtp.example.com", From: fromAddr, TLS: "ssl"}},
		{"UserWithoutPassword", email.Config{Host: "smtp.example.com", From: fromAddr, Username: "u"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := email.New(tt.cfg)
			require.Error(t, err)
		})
	}
}

func TestTLSNeverDowngrades(t *testing.T) {
	t.Parallel()
	// The test server speaks plain SMTP only: a Sender that asked for TLS
	// must fail rather than send in the clear.
	for _, mode := range []string{email.TLSStartTLS, email.TLSImplicit} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			b := setup(t, smtpserver.Options{}, func(c *email.Config) {
				c.TLS = mode
				c.Timeout = 2 * time.Second
			})
			_, err := b.sender.Send(context.Background(), message())
			require.Error(t, err)
			require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "a TLS problem is worth retrying once fixed, got %v", err)
			require.Equal(t, 0, b.srv.Count())
		})
	}
}
