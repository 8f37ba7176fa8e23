package email

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldhq/herald"
	gomail "github.com/wneessen/go-mail"
	"github.com/wneessen/go-mail/smtp"
)

// Sender delivers herald messages over SMTP through a small pool of
// connections that are opened on first use and reused for later messages.
// It is safe for concurrent use.
//
// A pooled connection is checked with RSET before it carries a message when
// it has been idle for more than two seconds or its last message ended in
// an error reply; one that fails the check is closed together with every
// other idle connection (they most likely died together, as when the relay
// restarts) and a fresh one is dialed, so a dead pool costs a redial, never
// a failed send. A connection whose state is unknown after a failure (lost,
// timed out, told 421) is closed at once.
type Sender struct {
	cfg    Config
	from   *mail.Address
	domain string
	// client holds the settings every connection is dialed with; the
	// connections themselves live in idle, so that several can send at once.
	client *gomail.Client
	tls    *tls.Config
	// idleCheck is how long a connection may sit idle and still be reused
	// without a check: idleCheckAfter, changed only by tests.
	idleCheck time.Duration

	// slots bounds open connections (idle and busy) to cfg.Pool.
	slots  chan struct{}
	mu     sync.Mutex
	idle   []*conn
	closed bool
}

var _ herald.Sender = (*Sender)(nil)

const (
	// idleCheckAfter is how long a pooled connection may sit idle before it
	// is checked on reuse. Relays and NATs drop idle connections after tens
	// of seconds or more, and a restart kills them at any moment; a busy
	// pool reuses its connections within milliseconds and skips the round
	// trip, relying on the retry at MAIL FROM instead.
	idleCheckAfter = 2 * time.Second

	// maxReserve caps how much time before its context's deadline a send
	// must have left to start (see Sender.need). A started send is not cut
	// off by its context, so one started at the last moment would outlive
	// its caller's deadline, and the caller would retry a message that may
	// be delivered; a send to a working server takes milliseconds, so a few
	// seconds are plenty.
	maxReserve = 5 * time.Second
)

type conn struct {
	smtp *smtp.Client
	// raw is the socket under smtp: it is closed to abandon a dial or a
	// check when the caller's context ends (go-mail's SMTP client takes no
	// context after the dial), and it notes deadline expiries.
	raw *netConn
	// idleSince is when the connection was dialed or last released.
	idleSince time.Time
	// suspect is set when the connection's last message ended in an error
	// reply: the server may have left a transaction open or be about to
	// close, so the connection is checked before its next message.
	suspect bool
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
		cfg:       cfg,
		from:      from,
		domain:    domain,
		tls:       &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12},
		idleCheck: idleCheckAfter,
		slots:     make(chan struct{}, cfg.Pool),
	}
	opts := []gomail.Option{
		gomail.WithPort(cfg.Port),
		gomail.WithTimeout(cfg.Timeout),
		gomail.WithDialContextFunc(s.dialContext),
		// No NOOP before every message: acquire checks connections that
		// idled long or saw an error reply, and one that died in between
		// shows up at MAIL FROM, before any data, where Send retries once.
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

// ErrPoolWait is the cause of a Send given up before it started because its
// context's deadline came too near while it waited for a pooled connection
// (or checked or dialed one): less than min(Config.Timeout, 5s, half the
// time the caller gave it) was left. Nothing was sent; the error is
// temporary with reason "smtp pool wait", so the caller retries later.
var ErrPoolWait = errors.New("email: too little time left before the deadline to start a send")

// Send delivers m to m.Customer.Email: it is sent when the server's reply
// after the message accepts it. Otherwise the error is a *herald.Error:
// EInvalid before any network traffic; ETemporary for 4xx
// replies (reason "smtp 4xx x.y.z"), lost connections ("smtp connection"),
// a server that stops answering within Config.Timeout ("smtp timeout"), a
// send given up before it started because ctx ended ("canceled") or its
// deadline was too near (ErrPoolWait, "smtp pool wait"), or after Close
// ("closed"); EPermanent for 5xx replies ("smtp 5xx x.y.z").
//
// ctx bounds the wait for a pooled connection, the check of an idle one and
// the dial. Once the SMTP transaction has started it is bounded by
// Config.Timeout alone, not by ctx: closing the socket mid-DATA could leave
// the message delivered yet reported failed, and the caller's retry would
// send it twice. So that it still ends near ctx's deadline, a transaction
// only starts while at least min(Config.Timeout, 5s, half the time the
// caller gave) is left before the deadline: waiting for a busy pool may
// take the other half, never the send's own time.
func (s *Sender) Send(ctx context.Context, m herald.Message) (herald.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return herald.Receipt{}, abandoned(err)
	}
	need := s.need(ctx)
	msg, id, err := s.build(m, time.Now())
	if err != nil {
		return herald.Receipt{}, err
	}
	buf := renderBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= maxPooledBuffer {
			renderBuffers.Put(buf)
		}
	}()
	env, err := render(msg, buf)
	if err != nil {
		return herald.Receipt{}, s.redact(&herald.Error{Code: herald.EInvalid, Reason: "smtp message", Err: err})
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := s.acquire(ctx, need)
		if err != nil {
			return herald.Receipt{}, s.failure(ctx, err)
		}
		err = s.deliver(c, env)
		s.release(c, err)
		if err == nil {
			return herald.Receipt{Channel: herald.ChannelEmail, ProviderID: id, SentAt: time.Now()}, nil
		}
		if reused && attempt == 0 && diedIdle(err) {
			// The idle neighbours of a connection found dead most likely
			// died with it: redial rather than fail on each in turn.
			s.dropIdle()
			continue
		}
		// The transaction ran: its outcome is the server's verdict even if
		// ctx ended meanwhile.
		return herald.Receipt{}, s.classify(err)
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

// acquire returns a connection ready to carry a message: an idle one,
// checked first when it idled long or its last message failed, or a new
// one. It waits for a free slot while cfg.Pool connections are busy, but
// only while ctx's deadline leaves the send the time it needs.
func (s *Sender) acquire(ctx context.Context, need time.Duration) (c *conn, reused bool, err error) {
	if err := s.waitSlot(ctx, need); err != nil {
		return nil, false, err
	}
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			<-s.slots
			return nil, false, ErrClosed
		}
		n := len(s.idle)
		if n == 0 {
			s.mu.Unlock()
			break
		}
		// The most recently used connection is the least likely dead.
		c = s.idle[n-1]
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		if !c.suspect && time.Since(c.idleSince) <= s.idleCheck {
			return s.ready(ctx, need, c, true)
		}
		if err := s.check(ctx, c); err == nil {
			return s.ready(ctx, need, c, true)
		}
		_ = c.raw.Close()
		if err := ctx.Err(); err != nil {
			<-s.slots
			return nil, false, err
		}
		// Not the send's failure: the idle neighbours most likely died
		// with this one, so they go too and a fresh connection is dialed.
		s.dropIdle()
	}
	if err := s.timeLeft(ctx, need); err != nil {
		<-s.slots
		return nil, false, err
	}
	c, err = s.dial(ctx)
	if err != nil {
		<-s.slots
		return nil, false, err
	}
	return s.ready(ctx, need, c, false)
}

// waitSlot takes a slot for a connection. It gives up when ctx ends or when
// its deadline comes too near for a send to start.
func (s *Sender) waitSlot(ctx context.Context, need time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.timeLeft(ctx, need); err != nil {
		return err
	}
	var giveUp <-chan time.Time
	if deadline, ok := ctx.Deadline(); ok {
		t := time.NewTimer(time.Until(deadline) - need)
		defer t.Stop()
		giveUp = t.C
	}
	select {
	case s.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-giveUp:
		deadline, _ := ctx.Deadline()
		return poolWait(time.Until(deadline), need)
	}
}

// ready hands c out, or puts it back unused when ctx has ended or its
// deadline is too near for the send to start.
func (s *Sender) ready(ctx context.Context, need time.Duration, c *conn, reused bool) (*conn, bool, error) {
	err := ctx.Err()
	if err == nil {
		err = s.timeLeft(ctx, need)
	}
	if err != nil {
		s.putBack(c, true)
		return nil, false, err
	}
	return c, reused, nil
}

// need is how much time a send called with ctx must have left before the
// deadline to start: Config.Timeout, the time a transaction may take, capped
// at maxReserve, and at half the time left now, so that a caller that gives
// Send little time is served when a connection is at hand rather than never
// (such a caller says how long it expects the send to take) and waits at
// most half of it for a busy pool.
func (s *Sender) need(ctx context.Context) time.Duration {
	need := min(s.cfg.Timeout, maxReserve)
	if deadline, ok := ctx.Deadline(); ok {
		need = min(need, time.Until(deadline)/2)
	}
	return need
}

// timeLeft returns a pool-wait error when ctx's deadline leaves less than
// need.
func (s *Sender) timeLeft(ctx context.Context, need time.Duration) error {
	deadline, ok := ctx.Deadline()
	if !ok {
		return nil
	}
	if left := time.Until(deadline); left < need {
		return poolWait(left, need)
	}
	return nil
}

func poolWait(left, need time.Duration) *herald.Error {
	err := fmt.Errorf("%w (%s left, a send needs %s)", ErrPoolWait, max(left, 0).Round(time.Millisecond), need.Round(time.Millisecond))
	return herald.Temporary(err, "smtp pool wait", 0)
}

// check makes sure an idle connection still works. RSET rather than NOOP:
// it also ends whatever transaction an error reply left open. ctx aborts
// it by closing the socket.
func (s *Sender) check(ctx context.Context, c *conn) error {
	if err := c.smtp.UpdateDeadline(s.cfg.Timeout); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = c.raw.Close() })
	err := c.smtp.Reset()
	if !stop() {
		return ctx.Err()
	}
	if err == nil {
		c.suspect = false
	}
	return err
}

// deliver runs the SMTP transaction for env on c (see transact). It takes
// no context, as cutting a transaction off may leave the message delivered
// but reported failed; Config.Timeout bounds it from MAIL FROM on, the
// deadline that cuts off a server that stops answering.
func (s *Sender) deliver(c *conn, env envelope) error {
	err := c.smtp.UpdateDeadline(s.cfg.Timeout)
	if err == nil {
		err = transact(c.smtp, env)
	}
	if err != nil && c.raw.timedOut.Load() {
		return timeoutError{err}
	}
	return err
}

// release returns c to the pool after a transaction that ended with err:
// as it is after success or an error reply (which makes it suspect),
// closed when its state is unknown.
func (s *Sender) release(c *conn, err error) {
	keep := true
	switch {
	case err == nil:
		c.suspect = false
	case answered(err):
		c.suspect = true
	default:
		keep = false
	}
	c.idleSince = time.Now()
	s.putBack(c, keep)
}

// putBack returns c to the idle pool, or closes it, and frees its slot.
func (s *Sender) putBack(c *conn, keep bool) {
	s.mu.Lock()
	if keep && !s.closed {
		s.idle = append(s.idle, c)
		s.mu.Unlock()
	} else {
		s.mu.Unlock()
		_ = c.raw.Close()
	}
	<-s.slots
}

// dropIdle closes every idle connection, without QUIT: they are presumed
// dead.
func (s *Sender) dropIdle() {
	s.mu.Lock()
	idle := s.idle
	s.idle = nil
	s.mu.Unlock()
	for _, c := range idle {
		_ = c.raw.Close()
	}
}

// answered reports whether err is the server refusing a step of a
// transaction, which leaves the connection usable once RSET has ended the
// transaction: any 4xx or 5xx reply but 421, with which the server
// announces it is closing the connection.
func answered(err error) bool {
	var te *txError
	if isTimeout(err) || !errors.As(err, &te) {
		return false
	}
	code, _ := te.reply()
	return code >= 400 && code < 600 && code != 421
}

type rawKey struct{}

// rawConn carries the dialed socket out of go-mail's dial, so the
// connection can be closed when the caller gives up.
type rawConn struct {
	mu      sync.Mutex
	conn    *netConn
	aborted bool
}

func (r *rawConn) set(c *netConn) {
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

func (r *rawConn) timedOut() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn != nil && r.conn.timedOut.Load()
}

// dial opens a connection: TCP, TLS, EHLO, AUTH. ctx aborts it at any step.
func (s *Sender) dial(ctx context.Context) (*conn, error) {
	raw := &rawConn{}
	stop := context.AfterFunc(ctx, raw.abort)
	client, err := s.client.DialToSMTPClientWithContext(context.WithValue(ctx, rawKey{}, raw))
	if !stop() && err == nil {
		// ctx ended as the dial finished: the socket is closed already.
		err = ctx.Err()
	}
	if err != nil {
		// go-mail leaves the socket open when EHLO, STARTTLS or AUTH fails.
		raw.abort()
		if raw.timedOut() {
			err = timeoutError{err}
		}
		return nil, err
	}
	raw.mu.Lock()
	defer raw.mu.Unlock()
	return &conn{smtp: client, raw: raw.conn, idleSince: time.Now()}, nil
}

func (s *Sender) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: s.cfg.Timeout}
	tcp, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c := &netConn{Conn: tcp}
	if raw, ok := ctx.Value(rawKey{}).(*rawConn); ok {
		raw.set(c)
	}
	if s.cfg.TLS != TLSImplicit {
		return c, nil
	}
	// TLS over the watched socket, so that its deadlines are noted too; the
	// *tls.Conn itself goes to go-mail, which tells TLS apart by its type.
	tc := tls.Client(c, s.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return tc, nil
}

// netConn is the socket under a connection. It notes a read or write cut
// off by the deadline, which go-mail's errors do not let through: a server
// that stops answering is told apart from one that hangs up.
type netConn struct {
	net.Conn
	timedOut atomic.Bool
}

func (c *netConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.note(err)
	return n, err
}

func (c *netConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.note(err)
	return n, err
}

func (c *netConn) note(err error) {
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.timedOut.Store(true)
	}
}

// timeoutError marks an error from a conversation cut off by the
// connection's deadline; it is a net.Error whose Timeout is true.
type timeoutError struct{ error }

func (e timeoutError) Unwrap() error   { return e.error }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// diedIdle reports whether err is a pooled connection found dead before the
// message left, at MAIL FROM: no reply (and no timeout), or a 421, which is
// also what a server that timed the idle connection out says to the next
// command. Nothing was delivered, so one retry on a fresh connection is
// safe.
func diedIdle(err error) bool {
	var te *txError
	if isTimeout(err) || !errors.As(err, &te) || te.Stage != stageMail {
		return false
	}
	code, _ := te.reply()
	return code == 0 || code == 421
}

// failure is the error for a Send that failed before its transaction began.
func (s *Sender) failure(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return abandoned(cerr)
	}
	if errors.Is(err, ErrClosed) {
		return herald.Temporary(err, "closed", 0)
	}
	var he *herald.Error
	if errors.As(err, &he) {
		return he
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
