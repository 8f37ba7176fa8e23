package smtpserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value listens on a free loopback port,
// keeps messages in memory only and accepts mail without authentication.
type Options struct {
	// Addr is the address to listen on; default "127.0.0.1:0".
	Addr string
	// Dir, when set, receives each accepted message as Dir/<time>-<n>.eml.
	Dir string
	// Username and Password, when set, make AUTH PLAIN mandatory before MAIL.
	Username, Password string
	// Logger receives one line per accepted message; default: discard.
	Logger *slog.Logger
}

// Received is one accepted message.
type Received struct {
	From      string
	To        []string
	Data      []byte
	MessageID string // the Message-ID header, angle brackets included
	At        time.Time
	Path      string // the .eml file, when Options.Dir is set
}

// Fault makes the server refuse, drop, delay or hold messages until it is
// cleared with SetFault(Fault{}). A Fault with Code 0, Drop false, Delay 0
// and Hang false is no fault.
//
// Delay and Hang make the server slow rather than wrong: the session waits
// before it answers the stage, then answers as Code and Drop say, or
// normally when neither is set. A waiting session is let go early by any
// SetFault call (Fault{} included), after which it answers as its own fault
// says, and by Down or Close, after which it hangs up without answering; so
// Close never blocks on it. Waiting reports how many sessions are waiting.
type Fault struct {
	// Stage is where to answer: "MAIL", "RCPT" or "DATA" (default "DATA").
	// At DATA the fault applies to the reply after the message body (the
	// 354 has gone out already), so a delay there holds a client that has
	// sent the whole message and waits for the verdict.
	Stage string
	// Code is the SMTP reply code, e.g. 421, 451, 550.
	Code int
	// Enhanced is the enhanced status code, e.g. "4.4.1", "5.1.1"; when empty
	// the server sends the generic X.0.0.
	Enhanced string
	// Rcpt limits the fault to messages for this recipient address. At MAIL,
	// before any recipient is known, it is ignored.
	Rcpt string
	// Rcpts, like Rcpt, limits the fault to messages for any of these
	// addresses; with both set, either matches.
	Rcpts []string
	// Drop hangs up instead of answering. At DATA the whole message is read
	// first, so the client cannot tell whether it was delivered.
	Drop bool
	// Delay waits this long before answering the stage: a slow server. With
	// Code 0 and Drop false the answer is then the normal one.
	Delay time.Duration
	// Hang waits until the fault is replaced (SetFault) or the server goes
	// Down or is Closed: a server that stops answering, for testing a
	// client's timeouts. It takes precedence over Delay.
	Hang bool
}

// active reports whether f changes anything.
func (f Fault) active() bool {
	return f.Code != 0 || f.Drop || f.Delay > 0 || f.Hang
}

// Server is a running in-process SMTP server.
type Server struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	addr      string // fixed by the first listen so Up comes back on the same port
	srv       *smtp.Server
	ln        net.Listener
	served    chan struct{}
	closed    bool
	msgs      []Received
	seq       int
	conns     int
	fault     Fault
	onReceive func(Received)
	// released is closed, and replaced, by each SetFault: it lets go the
	// sessions that wait out a Delay or Hang of the fault it was made with.
	released chan struct{}
	// down is closed by stop: it lets go the waiting sessions of the
	// listener being stopped.
	down    chan struct{}
	waiting int
}

// Start listens on opts.Addr and serves until Close.
func Start(opts Options) (*Server, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if (opts.Username == "") != (opts.Password == "") {
		return nil, errors.New("smtpserver: set both Username and Password, or neither")
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("smtpserver: %w", err)
		}
	}
	s := &Server{opts: opts, log: opts.Logger, addr: opts.Addr, released: make(chan struct{})}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// listen starts serving on s.addr; s.mu must be held.
func (s *Server) listen() error {
	tcp, err := net.Listen("tcp", s.addr)
	if err != nil {
		return fmt.Errorf("smtpserver: %w", err)
	}
	s.addr = tcp.Addr().String()
	l := &listener{Listener: tcp, conns: map[*conn]struct{}{}}

	down := make(chan struct{})
	srv := smtp.NewServer(backend{s: s, down: down})
	srv.Domain = "localhost"
	srv.MaxMessageBytes = 32 << 20
	srv.MaxRecipients = 100
	srv.EnableSMTPUTF8 = true
	// Idle pooled client connections must survive between messages, but a
	// forgotten one must not live for ever.
	srv.ReadTimeout = 10 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.AllowInsecureAuth = isLoopback(s.addr)
	srv.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)

	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(l)
	}()
	s.srv, s.ln, s.served, s.down = srv, l, served, down
	return nil
}

// stop closes the listener and every connection; s.mu must be held.
func (s *Server) stop() error {
	if s.srv == nil {
		return nil
	}
	// Sessions waiting out a Delay or Hang hang up; go-smtp's Close does
	// not wait for them, but they must not outlive the server.
	close(s.down)
	// The sockets are closed under go-smtp rather than through its Close,
	// which races with a BDAT chunk being read (it clears the chunk's pipe
	// while the connection's goroutine uses it): each connection's own
	// goroutine then sees its socket closed and ends the session itself.
	err := s.ln.Close()
	s.ln.(*listener).closeAll()
	<-s.served
	s.srv, s.ln, s.served, s.down = nil, nil, nil, nil
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// listener keeps the connections it accepted, so that they can be closed.
type listener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*conn]struct{}
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &conn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *listener) closeAll() {
	l.mu.Lock()
	conns := l.conns
	l.conns = map[*conn]struct{}{}
	l.mu.Unlock()
	for c := range conns {
		_ = c.Conn.Close()
	}
}

type conn struct {
	net.Conn
	l *listener
}

func (c *conn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the server as an SMTP URL for the email channel, credentials
// included when authentication is on.
func (s *Server) URL() string {
	u := url.URL{Scheme: "smtp", Host: s.Addr(), RawQuery: "tls=none"}
	if s.opts.Username != "" {
		u.User = url.UserPassword(s.opts.Username, s.opts.Password)
	}
	return u.String()
}

// Messages returns a copy of every accepted message, oldest first.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Received, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// Count is how many messages have been accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Connections is how many client connections have greeted the server (EHLO
// or HELO) since Start: a pooling client keeps it low.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// OnReceive sets f to be called with each accepted message, on the
// connection's goroutine just before the client gets its 250 reply. Keep it
// quick; nil removes it.
func (s *Server) OnReceive(f func(Received)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onReceive = f
}

// SetFault makes the server misbehave as f says; Fault{} clears it. Sessions
// waiting out the previous fault's Delay or Hang are let go: each answers as
// that fault says.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	close(s.released)
	s.released = make(chan struct{})
}

// Waiting is how many sessions are waiting out a fault's Delay or Hang right
// now: a test waits for it to know that a client is being held.
func (s *Server) Waiting() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// Down stops listening and drops every connection, as if the server had
// gone away. Messages received so far are kept.
func (s *Server) Down() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stop()
}

// Up listens again on the same address after Down.
func (s *Server) Up() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("smtpserver: closed")
	}
	if s.srv != nil {
		return nil
	}
	return s.listen()
}

// Close stops the server for good.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return s.stop()
}

// held is a fault to apply, with what ends its Delay or Hang early.
type held struct {
	Fault
	released <-chan struct{}
}

// faultFor returns the fault to apply at stage for a message to rcpts.
func (s *Server) faultFor(stage string, rcpts ...string) (held, bool) {
	s.mu.Lock()
	h := held{Fault: s.fault, released: s.released}
	s.mu.Unlock()
	f := h.Fault
	if !f.active() {
		return held{}, false
	}
	want := f.Stage
	if want == "" {
		want = "DATA"
	}
	if !strings.EqualFold(want, stage) {
		return held{}, false
	}
	if (f.Rcpt == "" && len(f.Rcpts) == 0) || stage == "MAIL" {
		return h, true
	}
	for _, r := range rcpts {
		if f.Rcpt != "" && strings.EqualFold(r, f.Rcpt) {
			return h, true
		}
		for _, fr := range f.Rcpts {
			if strings.EqualFold(r, fr) {
				return h, true
			}
		}
	}
	return held{}, false
}

// wait waits out h's Delay or Hang. It returns false when the listener the
// session came from went down meanwhile.
func (s *Server) wait(h held, down <-chan struct{}) bool {
	if !h.Hang && h.Delay <= 0 {
		return true
	}
	s.mu.Lock()
	s.waiting++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.waiting--
		s.mu.Unlock()
	}()
	var timeout <-chan time.Time
	if !h.Hang {
		t := time.NewTimer(h.Delay)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-timeout:
	case <-h.released:
	case <-down:
		return false
	}
	return true
}

func (s *Server) record(from string, to []string, data []byte) (Received, error) {
	r := Received{From: from, To: to, Data: data, At: time.Now()}
	if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		r.MessageID = msg.Header.Get("Message-Id")
	}

	s.mu.Lock()
	s.seq++
	n := s.seq
	s.mu.Unlock()

	if s.opts.Dir != "" {
		name := fmt.Sprintf("%s-%d.eml", r.At.UTC().Format("20060102T150405.000000000Z"), n)
		path := filepath.Join(s.opts.Dir, name)
		// Write then rename, so a reader watching Dir never sees half a message.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return r, err
		}
		if err := os.Rename(tmp, path); err != nil {
			return r, err
		}
		r.Path = path
	}

	s.mu.Lock()
	s.msgs = append(s.msgs, r)
	onReceive := s.onReceive
	s.mu.Unlock()

	s.log.Info("smtp message received", "message_id", r.MessageID, "bytes", len(data), "path", r.Path)
	if onReceive != nil {
		onReceive(r)
	}
	return r, nil
}

type backend struct {
	s    *Server
	down <-chan struct{} // closed when the listener stops
}

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.mu.Lock()
	b.s.conns++
	b.s.mu.Unlock()
	return &session{s: b.s, conn: c, down: b.down}, nil
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	down   <-chan struct{}
	authed bool
	from   string
	to     []string
}

var errDropped = errors.New("smtpserver: connection dropped on purpose")

// answer applies a fault: it waits out its Delay or Hang, then returns the
// reply the client gets, hangs up, or returns nil to carry on normally.
func (ss *session) answer(h held) error {
	if !ss.s.wait(h, ss.down) || h.Drop {
		_ = ss.conn.Conn().Close()
		return errDropped
	}
	if h.Code == 0 {
		return nil
	}
	return &smtp.SMTPError{Code: h.Code, EnhancedCode: enhanced(h.Enhanced), Message: "Fault injected by smtpserver"}
}

func (ss *session) AuthMechanisms() []string {
	if ss.s.opts.Username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (ss *session) Auth(mech string) (sasl.Server, error) {
	if ss.s.opts.Username == "" || mech != sasl.Plain {
		return nil, smtp.ErrAuthUnknownMechanism
	}
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != ss.s.opts.Username || pass != ss.s.opts.Password {
			return smtp.ErrAuthFailed
		}
		ss.authed = true
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.opts.Username != "" && !ss.authed {
		return smtp.ErrAuthRequired
	}
	if h, ok := ss.s.faultFor("MAIL"); ok {
		if err := ss.answer(h); err != nil {
			return err
		}
	}
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	if h, ok := ss.s.faultFor("RCPT", to); ok {
		if err := ss.answer(h); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if h, ok := ss.s.faultFor("DATA", ss.to...); ok {
		if err := ss.answer(h); err != nil {
			return err
		}
	}
	to := make([]string, len(ss.to))
	copy(to, ss.to)
	if _, err := ss.s.record(ss.from, to, data); err != nil {
		ss.s.log.Error("smtp message not stored", "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Cannot store message"}
	}
	return nil
}

func (ss *session) Reset() {
	ss.from, ss.to = "", nil
}

func (ss *session) Logout() error { return nil }

func enhanced(s string) smtp.EnhancedCode {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return smtp.EnhancedCodeNotSet
	}
	var ec smtp.EnhancedCode
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 999 {
			return smtp.EnhancedCodeNotSet
		}
		ec[i] = n
	}
	return ec
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
