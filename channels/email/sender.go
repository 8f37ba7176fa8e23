package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"sync"
	"time"

	"github.com/heraldhq/herald"
	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Sender delivers herald messages over SMTP through a small pool of
// connections that are opened on first use, reused for later messages and
// replaced after any failure. It is safe for concurrent use.
type Sender struct {
	cfg    Config
	from   *mail.Address
	domain string
	// client holds the settings every connection is dialed with; the
	// connections themselves live in idle, so that several can send at once.
	client *gomail.Client
	tls    *tls.Config

	// slots bounds open connections (idle and busy) to cfg.Pool.
	slots  chan struct{}
	mu     sync.Mutex
	idle   []*conn
	closed bool
}

var _ herald.Sender = (*Sender)(nil)

type conn struct {
	smtp *smtp.Client
	// raw is closed to abandon a conversation when the caller's context
	// ends: go-mail's SMTP client takes no context after the dial.
	raw net.Conn
}

// New returns a Sender for cfg. It does not connect: the first Send does.
func New(cfg Config) (*Sender, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	from, domain, err := fromAddress(cfg.From)
	if err != nil {
		return nil, err
	}
	s := &Sender{
		cfg:    cfg,
		from:   from,
		domain: domain,
		tls:    &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12},
		slots:  make(chan struct{}, cfg.Pool),
	}
	opts := []gomail.Option{
		gomail.WithPort(cfg.Port),
		gomail.WithTimeout(cfg.Timeout),
		gomail.WithDialContextFunc(s.dialContext),
		// A pooled connection that died while idle shows up at MAIL FROM,
		// before any data, where Send retries it once on a fresh connection:
		// cheaper than a NOOP before every message.
		gomail.WithoutNoop(),
	}
	switch cfg.TLS {
	case TLSStartTLS:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(s.tls))
	default:
		// TLSImplicit is done by dialContext: go-mail skips its own TLS
		// dialer when given a dial function.
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	}
	if cfg.HELO != "" {
		opts = append(opts, gomail.WithHELO(cfg.HELO))
	}
	if cfg.Username != "" {
		// PLAIN is offered by every provider; go-mail refuses it without
		// TLS unless the server is on loopback.
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain),
			gomail.WithUsername(cfg.Username), gomail.WithPassword(cfg.Password))
	}
	s.client, err = gomail.NewClient(cfg.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("email: %w", err)
	}
	return s, nil
}

// Send delivers m to m.Customer.Email. A message whose delivery was cut off
// after the server accepted it counts as sent; otherwise the error is a
// *herald.Error: EInvalid before any network traffic, ETemporary for 4xx
// replies, lost connections and timeouts, EPermanent for 5xx replies.
func (s *Sender) Send(ctx context.Context, m herald.Message) (herald.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return herald.Receipt{}, abandoned(err)
	}
	msg, id, err := s.build(m, time.Now())
	if err != nil {
		return herald.Receipt{}, err
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := s.acquire(ctx)
		if err != nil {
			return herald.Receipt{}, s.failure(ctx, err)
		}
		healthy, err := s.deliver(ctx, c, msg)
		s.release(c, err == nil && healthy)
		if err == nil || msg.IsDelivered() {
			return herald.Receipt{Channel: herald.ChannelEmail, ProviderID: id, SentAt: time.Now()}, nil
		}
		if reused && attempt == 0 && diedIdle(err) && ctx.Err() == nil {
			continue
		}
		return herald.Receipt{}, s.failure(ctx, err)
	}
}

// Close closes the idle pooled connections. Sends in flight are not cut off:
// their connections close when they finish. Later Sends fail with a
// temporary error wrapping ErrClosed.
func (s *Sender) Close() error {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = nil, true
	s.mu.Unlock()
	for _, c := range idle {
		// QUIT is a courtesy; a server that is gone must not hold us up.
		_ = c.smtp.UpdateDeadline(time.Second)
		_ = s.client.CloseWithSMTPClient(c.smtp)
		_ = c.raw.Close()
	}
	return nil
}

// acquire returns an idle connection or dials one, waiting for a free slot
// while cfg.Pool connections are busy.
func (s *Sender) acquire(ctx context.Context) (c *conn, reused bool, err error) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.slots
		return nil, false, ErrClosed
	}
	if n := len(s.idle); n > 0 {
		c = s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return c, true, nil
	}
	s.mu.Unlock()
	c, err = s.dial(ctx)
	if err != nil {
		<-s.slots
		return nil, false, err
	}
	return c, false, nil
}

// release returns c to the pool, or closes it after a failure: its state is
// unknown, and a fresh connection is cheap next to a stuck one.
func (s *Sender) release(c *conn, healthy bool) {
	s.mu.Lock()
	if healthy && !s.closed {
		s.idle = append(s.idle, c)
		s.mu.Unlock()
	} else {
		s.mu.Unlock()
		_ = c.raw.Close()
	}
	<-s.slots
}

// deliver sends msg over c. healthy is false when ctx ended mid-way and c was
// cut off.
func (s *Sender) deliver(ctx context.Context, c *conn, msg *gomail.Msg) (healthy bool, err error) {
	stop := context.AfterFunc(ctx, func() { _ = c.raw.Close() })
	err = s.client.SendWithSMTPClient(c.smtp, msg)
	return stop(), err
}

type rawKey struct{}

// rawConn carries the dialed net.Conn out of go-mail's dial, so the
// connection can be closed when the caller gives up.
type rawConn struct {
	mu      sync.Mutex
	conn    net.Conn
	aborted bool
}

func (r *rawConn) set(c net.Conn) {
	r.mu.Lock()
	r.conn = c
	aborted := r.aborted
	r.mu.Unlock()
	if aborted {
		_ = c.Close()
	}
}

func (r *rawConn) abort() {
	r.mu.Lock()
	r.aborted = true
	c := r.conn
	r.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

func (s *Sender) dial(ctx context.Context) (*conn, error) {
	raw := &rawConn{}
	stop := context.AfterFunc(ctx, raw.abort)
	defer stop()
	client, err := s.client.DialToSMTPClientWithContext(context.WithValue(ctx, rawKey{}, raw))
	if err != nil {
		// go-mail leaves the socket open when EHLO, STARTTLS or AUTH fails.
		raw.abort()
		return nil, err
	}
	raw.mu.Lock()
	defer raw.mu.Unlock()
	return &conn{smtp: client, raw: raw.conn}, nil
}

func (s *Sender) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: s.cfg.Timeout}
	var c net.Conn
	var err error
	if s.cfg.TLS == TLSImplicit {
		c, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, network, addr)
	} else {
		c, err = d.DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	if raw, ok := ctx.Value(rawKey{}).(*rawConn); ok {
		raw.set(c)
	}
	return c, nil
}

// diedIdle reports whether err is a pooled connection found dead before the
// message left: no reply code, at the connection check or MAIL FROM. Nothing
// was delivered, so one retry on a fresh connection is safe.
func diedIdle(err error) bool {
	var se *gomail.SendError
	if !errors.As(err, &se) || se.ErrorCode() != 0 {
		return false
	}
	return se.Reason == gomail.ErrConnCheck || se.Reason == gomail.ErrSMTPMailFrom
}

func (s *Sender) failure(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return abandoned(cerr)
	}
	if errors.Is(err, ErrClosed) {
		return herald.Temporary(err, "closed", 0)
	}
	return s.classify(err)
}

// abandoned is the error for a Send its caller gave up on: temporary, since
// the message may well go through on the next attempt, and wrapping the
// context's error for errors.Is.
func abandoned(err error) error {
	e := herald.Temporary(err, "canceled", 0)
	e.Message = "email: send abandoned: " + err.Error()
	return e
}
