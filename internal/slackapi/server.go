package slackapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Identities the fake answers auth.test with.
const (
	TeamID = "T0HERALD01"
	BotID  = "B0HERALD01"
	BotUID = "U0HERALD01"
)

// maxTextLen is Slack's limit on a message's text, in characters; longer text
// is refused with msg_too_long.
const maxTextLen = 40000

// maxBody bounds a request body, as Slack does, so a runaway client cannot
// exhaust the fake's memory.
const maxBody = 4 << 20

// Options configure a Server. The zero value accepts any token and knows no
// users.
type Options struct {
	// Token, when set, is the only token accepted; requests carrying another
	// get invalid_auth and requests carrying none get not_authed. Slack takes
	// the token from "Authorization: Bearer <token>" or from a "token"
	// parameter (slack-go sends the latter for most methods), so both work.
	Token string
	// JSONL, when set, receives every accepted post and update as one JSON
	// object per line.
	JSONL io.Writer
	// Users maps email addresses to Slack user IDs for users.lookupByEmail.
	Users map[string]string
}

// Post is one accepted chat.postMessage or chat.update.
type Post struct {
	Method  string          `json:"method"`  // chat.postMessage or chat.update
	Channel string          `json:"channel"` // the conversation, a D… ID for a DM
	User    string          `json:"user"`    // the DM's user, "" for a channel
	Text    string          `json:"text"`
	Blocks  json.RawMessage `json:"blocks,omitempty"`
	TS      string          `json:"ts"`
	At      time.Time       `json:"at"`
}

// Fault is a failure the server produces instead of answering normally: an
// error answer (Status, Error), a slow answer (Delay), no answer at all
// (Hang), or a slow or withheld error answer when combined.
type Fault struct {
	// Status is the HTTP status to answer with, e.g. 429 or 500; 0 answers
	// 200 with {"ok":false,"error":Error}. With Status 0 and Error "" the
	// answer is the normal one, which only makes sense with Delay or Hang.
	Status int
	// RetryAfter sets the Retry-After header of a 429 (rounded up to whole
	// seconds); 0 sends none.
	RetryAfter time.Duration
	// Error is the Slack error code in the body, e.g. "users_not_found".
	Error string
	// Channel limits the fault to requests naming this channel or user ID
	// (posts, updates, conversations.open); "" means every request.
	Channel string
	// Method limits the fault to one API method, e.g. "users.lookupByEmail";
	// "" means every method.
	Method string
	// Times is how many requests fail before the fault clears itself; 0
	// keeps failing until SetFault(Fault{}).
	Times int
	// Delay holds each matching request this long before answering it: with
	// the error that Status and Error describe, or, when both are unset,
	// normally. A request whose client hangs up meanwhile, or that is still
	// waiting when the Server is closed, is dropped without being handled
	// or answered.
	Delay time.Duration
	// Hang holds each matching request, after any Delay, until the next
	// SetFault call (SetFault(Fault{}) to clear it), until its client hangs
	// up (a timeout or a cancelled context) or until the Server is closed.
	// Released by SetFault, it is answered as after a Delay; otherwise it is
	// dropped without being handled or answered. A Hang fault that clears
	// itself after Times keeps holding the requests it caught until then.
	Hang bool
}

func (f Fault) active() bool { return f.answers() || f.Delay > 0 || f.Hang }

// answers reports whether the fault replaces the normal answer.
func (f Fault) answers() bool { return f.Status != 0 || f.Error != "" }

// Server is a fake Slack Web API. It is safe for concurrent use.
type Server struct {
	opts Options

	mu       sync.Mutex
	users    map[string]string // lower-cased email -> user ID
	dms      map[string]string // user ID -> D… channel
	dmUsers  map[string]string // D… channel -> user ID
	messages map[string]string // channel:ts -> user ID
	posts    []Post
	count    int
	calls    map[string]int
	fault    Fault
	release  chan struct{} // closed by the next SetFault, releasing requests held by Hang
	lastTS   time.Time
	onPost   []func(Post)
	onFault  []func(string, Fault)

	closed    chan struct{} // closed by Close, dropping held requests
	closeOnce sync.Once

	methods map[string]func(http.ResponseWriter, url.Values)

	jsonlMu sync.Mutex // separate from mu so a slow writer does not stall readers

	srv *http.Server
	ln  net.Listener
}

// New returns a Server to mount as an http.Handler (for example with
// httptest.NewServer). Point slack-go at "<base URL>/api/".
func New(opts Options) *Server {
	s := &Server{
		opts:     opts,
		users:    make(map[string]string, len(opts.Users)),
		dms:      make(map[string]string),
		dmUsers:  make(map[string]string),
		messages: make(map[string]string),
		calls:    make(map[string]int),
		release:  make(chan struct{}),
		closed:   make(chan struct{}),
	}
	for email, id := range opts.Users {
		s.users[normEmail(email)] = id
	}
	s.methods = map[string]func(http.ResponseWriter, url.Values){
		"auth.test":           s.authTest,
		"chat.postMessage":    s.chatPostMessage,
		"chat.update":         s.chatUpdate,
		"users.lookupByEmail": s.usersLookupByEmail,
		"conversations.open":  s.conversationsOpen,
	}
	return s
}

// Start returns a Server listening on its own loopback port.
func Start(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("slackapi: listen: %w", err)
	}
	s := New(opts)
	s.ln = ln
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// URL returns the API base URL, ending in "/", for slack.OptionAPIURL. It is
// empty for a Server made with New, whose URL belongs to whoever serves it.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.ln.Addr().String() + "/api/"
}

// Close drops every request held by a Delay or Hang fault, unanswered, as
// well as any such request that arrives later, and stops a Server made with
// Start. A Server made with New is served by someone else, so Close only
// drops held requests; call it before httptest.Server.Close, which waits for
// every request being handled and would otherwise wait for hung ones.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	if s.srv == nil {
		return nil
	}
	return s.srv.Close()
}

// Posts returns every accepted post and update, oldest first.
func (s *Server) Posts() []Post {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Post, len(s.posts))
	copy(out, s.posts)
	return out
}

// Count returns how many chat.postMessage calls were accepted.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

// Calls returns how many requests reached method, accepted or not.
func (s *Server) Calls(method string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[method]
}

// OnPost registers fn to be called after every accepted post and update.
// Calls happen on the request's goroutine, outside the server's lock.
func (s *Server) OnPost(fn func(Post)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onPost = append(s.onPost, fn)
}

// AddUser makes email resolvable to id by users.lookupByEmail.
func (s *Server) AddUser(email, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[normEmail(email)] = id
}

// OnFault registers fn to be called with the method and the fault whenever a
// fault hits a request, before any Delay or Hang, so a test can tell when a
// request is being held. Calls happen on the request's goroutine, outside the
// server's lock.
func (s *Server) OnFault(fn func(method string, f Fault)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onFault = append(s.onFault, fn)
}

// SetFault makes the server fail matching requests; Fault{} clears it. Every
// call releases the requests held by an earlier Hang fault.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	close(s.release)
	s.release = make(chan struct{})
}

// ServeHTTP answers Slack Web API calls at "/api/<method>" (or "/<method>").
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	method := path.Base(r.URL.Path)
	params, token, err := readParams(w, r)
	if err != nil {
		// Slack answers unparseable bodies with 200 and an error code.
		writeError(w, "invalid_form_data")
		return
	}

	s.mu.Lock()
	s.calls[method]++
	f, faulted := s.takeFault(method, params)
	release := s.release
	listeners := append([]func(string, Fault){}, s.onFault...)
	s.mu.Unlock()
	if faulted {
		for _, fn := range listeners {
			fn(method, f)
		}
		if !s.hold(r, f, release) {
			// Hang up without an answer, as a vanished server would; the
			// http package closes the connection and logs nothing.
			panic(http.ErrAbortHandler)
		}
		if f.answers() {
			writeFault(w, f)
			return
		}
	}

	handler, ok := s.methods[method]
	if !ok {
		writeError(w, "unknown_method")
		return
	}
	if code := s.checkAuth(token); code != "" {
		writeError(w, code)
		return
	}
	handler(w, params)
}

// hold waits out f's Delay and Hang. It reports false when the request is to
// be dropped: its client went away or the Server was closed.
func (s *Server) hold(r *http.Request, f Fault, release <-chan struct{}) bool {
	if f.Delay <= 0 && !f.Hang {
		return true
	}
	// The http package notices a client hanging up only once the body has
	// been read to its end; a JSON body may not have been.
	_, _ = io.Copy(io.Discard, r.Body)
	ctx := r.Context()
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		case <-s.closed:
			return false
		}
	}
	if f.Hang {
		select {
		case <-release:
		case <-ctx.Done():
			return false
		case <-s.closed:
			return false
		}
	}
	select {
	case <-ctx.Done():
		return false
	case <-s.closed:
		return false
	default:
		return true
	}
}

func (s *Server) checkAuth(token string) string {
	switch {
	case s.opts.Token == "":
		return ""
	case token == "":
		return "not_authed"
	case token != s.opts.Token:
		return "invalid_auth"
	}
	return ""
}

// takeFault reports whether the current fault applies to this request and
// uses up one of its Times. s.mu must be held.
func (s *Server) takeFault(method string, params url.Values) (Fault, bool) {
	f := s.fault
	if !f.active() {
		return Fault{}, false
	}
	if f.Method != "" && f.Method != method {
		return Fault{}, false
	}
	if f.Channel != "" && !s.names(params, f.Channel) {
		return Fault{}, false
	}
	if f.Times > 0 {
		s.fault.Times--
		if s.fault.Times == 0 {
			s.fault = Fault{}
		}
	}
	return f, true
}

// names reports whether the request is about channel, directly or through
// the user whose DM it is. s.mu must be held.
func (s *Server) names(params url.Values, channel string) bool {
	targets := strings.Split(params.Get("users"), ",")
	targets = append(targets, params.Get("channel"))
	for _, t := range targets {
		if t == "" {
			continue
		}
		if t == channel || s.dms[t] == channel || s.dmUsers[t] == channel {
			return true
		}
	}
	return false
}

func writeFault(w http.ResponseWriter, f Fault) {
	code := f.Error
	if code == "" {
		code = "internal_error"
		if f.Status == http.StatusTooManyRequests {
			code = "ratelimited"
		}
	}
	status := f.Status
	if status == 0 {
		status = http.StatusOK
	}
	if status == http.StatusTooManyRequests && f.RetryAfter > 0 {
		secs := int64((f.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.FormatInt(secs, 10))
	}
	writeJSON(w, status, map[string]any{"ok": false, "error": code})
}

func (s *Server) authTest(w http.ResponseWriter, _ url.Values) {
	writeOK(w, map[string]any{
		"url":     "https://herald-dev.slack.com/",
		"team":    "herald dev",
		"user":    "herald",
		"team_id": TeamID,
		"user_id": BotUID,
		"bot_id":  BotID,
	})
}

func (s *Server) usersLookupByEmail(w http.ResponseWriter, p url.Values) {
	email := normEmail(p.Get("email"))
	if email == "" {
		writeError(w, "invalid_arguments")
		return
	}
	s.mu.Lock()
	id, ok := s.users[email]
	s.mu.Unlock()
	if !ok {
		writeError(w, "users_not_found")
		return
	}
	name, _, _ := strings.Cut(email, "@")
	writeOK(w, map[string]any{"user": map[string]any{
		"id":      id,
		"team_id": TeamID,
		"name":    name,
		"deleted": false,
		"is_bot":  false,
		"profile": map[string]any{"email": email},
	}})
}

func (s *Server) conversationsOpen(w http.ResponseWriter, p url.Values) {
	if ch := p.Get("channel"); ch != "" {
		writeOK(w, map[string]any{"channel": map[string]any{"id": ch}, "already_open": true})
		return
	}
	users := strings.Split(p.Get("users"), ",")
	if len(users) != 1 || users[0] == "" {
		// Group DMs are not something herald opens.
		writeError(w, "not_enough_users")
		return
	}
	s.mu.Lock()
	_, already := s.dms[users[0]]
	ch := s.dmFor(users[0])
	s.mu.Unlock()
	writeOK(w, map[string]any{
		"channel":      map[string]any{"id": ch, "is_im": true, "user": users[0]},
		"already_open": already,
	})
}

// dmFor returns the DM channel with user, opening one if needed. s.mu must
// be held.
func (s *Server) dmFor(user string) string {
	if ch, ok := s.dms[user]; ok {
		return ch
	}
	ch := fmt.Sprintf("D%08d", len(s.dms)+1)
	s.dms[user] = ch
	s.dmUsers[ch] = user
	return ch
}

func (s *Server) chatPostMessage(w http.ResponseWriter, p url.Values) {
	text, blocks, code := content(p)
	if code != "" {
		writeError(w, code)
		return
	}
	target := p.Get("channel")
	if target == "" {
		writeError(w, "channel_not_found")
		return
	}

	s.mu.Lock()
	channel, user := target, ""
	switch {
	case isUserID(target):
		// Posting to a user ID posts to the app's DM with them, as Slack does.
		channel, user = s.dmFor(target), target
	case strings.HasPrefix(target, "D"):
		user = s.dmUsers[target]
	}
	post := Post{Method: "chat.postMessage", Channel: channel, User: user, Text: text, Blocks: blocks}
	post.At, post.TS = s.nextTS()
	s.mu.Unlock()

	if !s.accept(w, post) {
		return
	}
	writeOK(w, map[string]any{"channel": post.Channel, "ts": post.TS, "message": message(post)})
}

func (s *Server) chatUpdate(w http.ResponseWriter, p url.Values) {
	text, blocks, code := content(p)
	if code != "" {
		writeError(w, code)
		return
	}
	channel, ts := p.Get("channel"), p.Get("ts")
	if channel == "" {
		writeError(w, "channel_not_found")
		return
	}
	s.mu.Lock()
	if isUserID(channel) {
		channel = s.dms[channel]
	}
	user, ok := s.messages[channel+":"+ts]
	now := time.Now().UTC()
	s.mu.Unlock()
	if !ok {
		writeError(w, "message_not_found")
		return
	}
	post := Post{Method: "chat.update", Channel: channel, User: user, Text: text, Blocks: blocks, TS: ts, At: now}
	if !s.accept(w, post) {
		return
	}
	writeOK(w, map[string]any{"channel": channel, "ts": ts, "text": text, "message": message(post)})
}

// accept records post, writes it to the JSONL stream and notifies
// listeners. A post that could not be captured is refused with
// internal_error, so the client retries rather than believing it delivered.
func (s *Server) accept(w http.ResponseWriter, post Post) bool {
	if s.opts.JSONL != nil {
		line, err := json.Marshal(post)
		if err == nil {
			line = append(line, '\n')
			s.jsonlMu.Lock()
			_, err = s.opts.JSONL.Write(line)
			s.jsonlMu.Unlock()
		}
		if err != nil {
			writeError(w, "internal_error")
			return false
		}
	}
	s.mu.Lock()
	s.posts = append(s.posts, post)
	s.messages[post.Channel+":"+post.TS] = post.User
	if post.Method == "chat.postMessage" {
		s.count++
	}
	listeners := append([]func(Post){}, s.onPost...)
	s.mu.Unlock()
	for _, fn := range listeners {
		fn(post)
	}
	return true
}

// nextTS returns a message timestamp in Slack's "seconds.micros" form,
// strictly increasing so that every message is unique. s.mu must be held.
func (s *Server) nextTS() (time.Time, string) {
	now := time.Now().UTC().Truncate(time.Microsecond)
	if !now.After(s.lastTS) {
		now = s.lastTS.Add(time.Microsecond)
	}
	s.lastTS = now
	return now, fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
}

// content validates the text and blocks of a post or update the way Slack
// does.
func content(p url.Values) (string, json.RawMessage, string) {
	text := p.Get("text")
	if utf8.RuneCountInString(text) > maxTextLen {
		return "", nil, "msg_too_long"
	}
	var blocks json.RawMessage
	if raw := strings.TrimSpace(p.Get("blocks")); raw != "" {
		var arr []map[string]any
		if err := json.Unmarshal([]byte(raw), &arr); err != nil {
			return "", nil, "invalid_blocks"
		}
		for _, b := range arr {
			if t, _ := b["type"].(string); t == "" {
				return "", nil, "invalid_blocks"
			}
		}
		if len(arr) > 0 {
			blocks = compact(raw)
		}
	}
	if text == "" && blocks == nil {
		return "", nil, "no_text"
	}
	return text, blocks, ""
}

func message(p Post) map[string]any {
	m := map[string]any{"type": "message", "text": p.Text, "ts": p.TS, "user": BotUID, "bot_id": BotID}
	if p.Blocks != nil {
		m["blocks"] = p.Blocks
	}
	return m
}

func isUserID(id string) bool {
	return strings.HasPrefix(id, "U") || strings.HasPrefix(id, "W")
}

func normEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

func compact(raw string) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(raw)); err != nil {
		return json.RawMessage(raw)
	}
	return buf.Bytes()
}

// readParams gathers a request's arguments from the query, a form body or a
// JSON body, and its token from the Authorization header or the "token"
// argument.
func readParams(w http.ResponseWriter, r *http.Request) (url.Values, string, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var params url.Values
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/json" {
		params = r.URL.Query()
		var body map[string]json.RawMessage
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
			return nil, "", err
		}
		for k, v := range body {
			var str string
			if json.Unmarshal(v, &str) == nil {
				params.Set(k, str)
			} else {
				params.Set(k, string(v))
			}
		}
	} else {
		if err := r.ParseForm(); err != nil {
			return nil, "", err
		}
		params = r.Form
	}
	token := params.Get("token")
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = bearer
	}
	return params, token, nil
}

func writeOK(w http.ResponseWriter, body map[string]any) {
	body["ok"] = true
	writeJSON(w, http.StatusOK, body)
}

func writeError(w http.ResponseWriter, code string) {
	writeJSON(w, http.StatusOK, map[string]any{"ok": false, "error": code})
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(body)
}
