package ack_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/ack"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/channels/slack"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/httpapi"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	secret   = "8f742231b10e8888abcd99yyyzzz85a5"
	apiToken = "test-token"
	key      = "0123456789abcdef0123456789abcdef"
)

type bundle struct {
	e     *engine.Engine
	rdb   *redis.Client
	smtp  *smtpserver.Server
	slack *slackapi.Server
	srv   *httptest.Server
	http  *http.Client // does not follow redirects
	// later moves the click handler's clock forward.
	later atomic.Int64
}

func setup(t testing.TB) *bundle {
	t.Helper()
	rs := redistest.Start(t)
	b := &bundle{rdb: rs.Client()}
	var err error
	b.smtp, err = smtpserver.Start(smtpserver.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.smtp.Close() })
	b.slack, err = slackapi.Start(slackapi.Options{Token: "xoxb-test"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.slack.Close() })

	ec, err := email.ParseURL(b.smtp.URL())
	require.NoError(t, err)
	ec.From = "Lumen <hello@lumen.example>"
	es, err := email.New(ec)
	require.NoError(t, err)
	t.Cleanup(func() { _ = es.Close() })
	ss := slack.New(slack.Config{Token: "xoxb-test", APIURL: b.slack.URL()}, nil)

	tset, err := templates.Load(os.DirFS("testdata/templates"), templates.Options{})
	require.NoError(t, err)
	wset, err := workflows.Load(os.DirFS("testdata/workflows"), workflows.LoadOptions{TemplateExists: tset.Has})
	require.NoError(t, err)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	b.srv = httptest.NewUnstartedServer(nil)
	public := "http://" + b.srv.Listener.Addr().String()
	b.e, err = engine.New(engine.Options{
		Redis: b.rdb, RedisConn: asynq.RedisClientOpt{Addr: rs.Addr},
		Senders:   map[herald.Channel]herald.Sender{herald.ChannelEmail: es, herald.ChannelSlack: ss},
		Templates: tset, Workflows: wset,
		Policy: preferences.Policy{Topics: map[string]herald.Topic{
			"checkout": {Name: "checkout", OptIn: true, Class: "marketing"},
			"billing":  {Name: "billing", Required: true, OptIn: true},
		}},
		PublicURL: public, SigningKey: []byte(key),
		ClickTracking: true, SlackUpdater: ss, ReplyTo: "replies@lumen.example",
		MaxRetry: 3, RetryBase: time.Second, RetryMax: time.Second, Logger: log,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.e.Close() })

	worker := asynq.NewServerFromRedisClient(b.rdb, asynq.Config{
		Concurrency: 4, Queues: map[string]int{"critical": 3, "default": 2, "bulk": 1, "email": 2, "slack": 2},
		RetryDelayFunc: b.e.RetryDelay, IsFailure: b.e.IsFailure,
		TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 200 * time.Millisecond,
		LogLevel: asynq.FatalLevel,
	})
	require.NoError(t, worker.Start(b.e.Mux()))
	t.Cleanup(worker.Shutdown)
	t.Cleanup(b.e.StartWaker(context.Background()))

	b.srv.Config.Handler = httpapi.New(httpapi.Config{
		Engine: b.e, Tokens: []httpapi.Token{{Name: "mailhook", Value: apiToken}}, Logger: log,
		Extra: map[string]http.Handler{
			"POST /slack/interactions": &ack.Slack{Engine: b.e, SigningSecret: secret, Logger: log},
			"GET /r/{token}": &ack.Click{Engine: b.e, Key: []byte(key), Logger: log,
				Now: func() time.Time { return time.Now().Add(time.Duration(b.later.Load())) }},
		},
	})
	b.srv.Start()
	t.Cleanup(b.srv.Close)
	b.http = &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	_, _, err = b.e.Store().UpsertCustomer(context.Background(), herald.Customer{
		ID: "c1", Email: "ada@example.com", SlackUserID: "U0ADA", Attributes: map[string]any{"first_name": "Ada"},
	})
	require.NoError(t, err)
	return b
}

func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 30*time.Second, 20*time.Millisecond, msg)
}

// send delivers a one-off message and waits until herald recorded it.
func (b *bundle) send(t *testing.T, id, template, topic string, ch herald.Channel) {
	t.Helper()
	_, err := b.e.Send(context.Background(), wire.Message{
		ID: id, CustomerID: "c1", Template: template, Topic: topic,
		Channels: []herald.Channel{ch}, Data: map[string]any{"items": 3},
	})
	require.NoError(t, err)
	eventually(t, func() bool { _, err := b.e.SentTo(context.Background(), "c1", id); return err == nil }, "message "+id+" delivered")
}

func (b *bundle) timeline(t *testing.T) []herald.TimelineEntry {
	t.Helper()
	tl, err := b.e.Store().Timeline(context.Background(), "c1", 0)
	require.NoError(t, err)
	return tl
}

func (b *bundle) entries(t *testing.T, kind, summaryPrefix string) []herald.TimelineEntry {
	t.Helper()
	var out []herald.TimelineEntry
	for _, e := range b.timeline(t) {
		if e.Kind == kind && strings.HasPrefix(e.Summary, summaryPrefix) {
			out = append(out, e)
		}
	}
	return out
}

func (b *bundle) events(t *testing.T, name string) []herald.TimelineEntry {
	return b.entries(t, herald.KindEvent, "event "+name)
}

// --- Slack -----------------------------------------------------------------

// press builds the block_actions payload Slack would send for a press of the
// button with action_id event on the last message posted.
func (b *bundle) press(t *testing.T, event string) string {
	t.Helper()
	var post slackapi.Post
	for _, p := range b.slack.Posts() {
		if p.Method == "chat.postMessage" {
			post = p
		}
	}
	require.NotEmpty(t, post.TS, "a Slack message was posted")
	var blocks []struct {
		Type     string          `json:"type"`
		Elements json.RawMessage `json:"elements"`
	}
	require.NoError(t, json.Unmarshal(post.Blocks, &blocks))
	for _, bl := range blocks {
		if bl.Type != "actions" {
			continue
		}
		var buttons []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
			Text     struct {
				Text string `json:"text"`
			} `json:"text"`
		}
		require.NoError(t, json.Unmarshal(bl.Elements, &buttons))
		for _, el := range buttons {
			if el.ActionID != event {
				continue
			}
			payload, err := json.Marshal(map[string]any{
				"type":      "block_actions",
				"user":      map[string]any{"id": post.User},
				"container": map[string]any{"type": "message", "message_ts": post.TS, "channel_id": post.Channel},
				"channel":   map[string]any{"id": post.Channel},
				"message":   map[string]any{"type": "message", "ts": post.TS, "text": post.Text, "blocks": post.Blocks},
				"actions": []any{map[string]any{
					"type": "button", "block_id": "b1", "action_id": el.ActionID, "value": el.Value,
					"text":      map[string]any{"type": "plain_text", "text": el.Text.Text},
					"action_ts": strconv.FormatInt(time.Now().UnixMicro(), 10),
				}},
			})
			require.NoError(t, err)
			return url.Values{"payload": {string(payload)}}.Encode()
		}
	}
	t.Fatalf("no button %q in the Slack message", event)
	return ""
}

// sign returns Slack's v0 signature headers for body at ts.
func sign(secret string, ts time.Time, body string) (string, string) {
	stamp := strconv.FormatInt(ts.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("v0:" + stamp + ":" + body))
	return "v0=" + hex.EncodeToString(m.Sum(nil)), stamp
}

func (b *bundle) postSlack(t *testing.T, body, sig, stamp string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/slack/interactions", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if sig != "" {
		req.Header.Set("X-Slack-Signature", sig)
	}
	if stamp != "" {
		req.Header.Set("X-Slack-Request-Timestamp", stamp)
	}
	res, err := b.http.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	return res.StatusCode
}

func TestSlackRequestsMustBeSignedFreshAndNew(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelSlack)
	body := b.press(t, "outreach.snoozed")
	now := time.Now()
	goodSig, goodStamp := sign(secret, now, body)
	wrongSig, _ := sign("another-secret", now, body)
	staleSig, staleStamp := sign(secret, now.Add(-6*time.Minute), body)
	futureSig, futureStamp := sign(secret, now.Add(6*time.Minute), body)
	tamperedSig, _ := sign(secret, now, body+"x")

	for name, c := range map[string]struct{ sig, stamp string }{
		"no signature":        {"", goodStamp},
		"no timestamp":        {goodSig, ""},
		"wrong secret":        {wrongSig, goodStamp},
		"other body":          {tamperedSig, goodStamp},
		"stale timestamp":     {staleSig, staleStamp},
		"future timestamp":    {futureSig, futureStamp},
		"signature not hex":   {"v0=zz", goodStamp},
		"timestamp swapped":   {goodSig, staleStamp},
		"signature truncated": {goodSig[:20], goodStamp},
	} {
		require.Equal(t, http.StatusUnauthorized, b.postSlack(t, body, c.sig, c.stamp), name)
	}
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, b.entries(t, herald.KindAcknowledgement, ""), "nothing recorded for a refused request")
	require.Empty(t, b.events(t, "outreach.snoozed"))
	require.Zero(t, b.slack.Calls("chat.update"))

	require.Equal(t, http.StatusOK, b.postSlack(t, body, goodSig, goodStamp), "the signed request is accepted")
	eventually(t, func() bool { return len(b.entries(t, herald.KindAcknowledgement, "")) == 1 }, "acknowledged")

	require.Equal(t, http.StatusUnauthorized, b.postSlack(t, body, goodSig, goodStamp), "a replay is refused")
	time.Sleep(700 * time.Millisecond)
	require.Len(t, b.entries(t, herald.KindAcknowledgement, ""), 1, "the replay recorded nothing")
	require.Len(t, b.events(t, "outreach.snoozed"), 1)
	require.Equal(t, 1, b.slack.Calls("chat.update"))
}

// Slack wants an answer within 3 s, so the answer waits for nothing the
// press sets off: with Slack's chat.update held, the press is still
// answered, acknowledged and on the timeline, and the message is updated
// once Slack answers.
func TestSlackButtonAcknowledgesAndShowsTheChoice(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelSlack)
	body := b.press(t, "outreach.snoozed")
	sig, stamp := sign(secret, time.Now(), body)
	b.slack.SetFault(slackapi.Fault{Method: "chat.update", Hang: true})
	require.Equal(t, http.StatusOK, b.postSlack(t, body, sig, stamp))

	eventually(t, func() bool { return len(b.events(t, "outreach.snoozed")) == 1 }, "the button's event is emitted")
	ev := b.events(t, "outreach.snoozed")[0]
	require.Equal(t, "slack", ev.Data["channel"])
	require.Equal(t, "m1", ev.Data["message"])

	eventually(t, func() bool { return len(b.entries(t, herald.KindAcknowledgement, "")) == 1 }, "acknowledgement on the timeline")
	a := b.entries(t, herald.KindAcknowledgement, "")[0]
	require.Equal(t, herald.ChannelSlack, a.Channel)
	require.Equal(t, "m1", a.Ref)
	require.Equal(t, "m1", a.Data["message"])
	require.Equal(t, "outreach.snoozed", a.Data["action"])
	require.Equal(t, "Not now", a.Data["label"])

	// Calls counts a call when it arrives; the post is recorded once it
	// is accepted: release the held update, then wait for the post.
	eventually(t, func() bool { return b.slack.Calls("chat.update") == 1 }, "the update reaches Slack")
	b.slack.SetFault(slackapi.Fault{})
	var upd slackapi.Post
	eventually(t, func() bool {
		for _, p := range b.slack.Posts() {
			if p.Method == "chat.update" {
				upd = p
				return true
			}
		}
		return false
	}, "the message is updated")
	require.Equal(t, 1, b.slack.Calls("chat.update"))
	require.Contains(t, string(upd.Blocks), "✓ Not now")
	require.NotContains(t, string(upd.Blocks), `"actions"`, "the buttons are gone")
	require.Contains(t, string(upd.Blocks), "you left 3 items", "the message itself stays")

	p, err := b.e.Preferences().Get(context.Background(), "c1")
	require.NoError(t, err)
	require.Empty(t, p.Topics, "an ordinary button changes no preference")
}

func TestSlackOptOutButton(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelSlack)
	body := b.press(t, "topic.opt_out")
	sig, stamp := sign(secret, time.Now(), body)
	require.Equal(t, http.StatusOK, b.postSlack(t, body, sig, stamp))
	eventually(t, func() bool {
		p, err := b.e.Preferences().Get(context.Background(), "c1")
		return err == nil && p.Topics["checkout"] == false && len(p.Topics) == 1
	}, "opted out of the message's topic")
	log, err := b.e.Preferences().Consent(context.Background(), "c1")
	require.NoError(t, err)
	require.Len(t, log, 1)
	require.Equal(t, "topics.checkout", log[0].Field)
	require.Equal(t, "customer", log[0].Actor.Kind)
	require.Equal(t, "slack_button", log[0].Source)
}

func TestSlackButtonForUnknownMessageRecordsNothing(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelSlack)
	body := strings.Replace(b.press(t, "outreach.snoozed"), "%22value%22%3A%22m1%22", "%22value%22%3A%22nope%22", 1)
	require.Contains(t, body, "nope")
	sig, stamp := sign(secret, time.Now(), body)
	require.Equal(t, http.StatusOK, b.postSlack(t, body, sig, stamp), "Slack gets its 200 anyway")
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, b.entries(t, herald.KindAcknowledgement, ""))
}

// --- email clicks --------------------------------------------------------------

// text returns the decoded text/plain and text/html parts of a raw email.
func text(t *testing.T, raw []byte) string {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(raw)))
	require.NoError(t, err)
	var out strings.Builder
	var walk func(h func(string) string, r io.Reader)
	walk = func(h func(string) string, r io.Reader) {
		mt, params, _ := mime.ParseMediaType(h("Content-Type"))
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(r, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err != nil {
					return
				}
				walk(p.Header.Get, p)
			}
		}
		if strings.EqualFold(h("Content-Transfer-Encoding"), "quoted-printable") {
			r = quotedprintable.NewReader(r)
		}
		b, _ := io.ReadAll(r)
		out.Write(b)
	}
	walk(m.Header.Get, m.Body)
	return out.String()
}

var trackedRe = regexp.MustCompile(`http://[0-9.:]+/r/[A-Za-z0-9._-]+`)

func (b *bundle) clickLinks(t *testing.T, i int) []string {
	t.Helper()
	body := text(t, b.smtp.Messages()[i].Data)
	seen := map[string]bool{}
	var out []string
	for _, l := range trackedRe.FindAllString(body, -1) {
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

func (b *bundle) get(t *testing.T, u string) *http.Response {
	t.Helper()
	res, err := b.http.Get(u)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res
}

func TestTrackedClickRecordsAndRedirectsToTheSignedTarget(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelEmail)
	body := text(t, b.smtp.Messages()[0].Data)
	require.NotContains(t, body, "https://shop.example/pricing", "the target is only reachable through the tracked link")
	links := b.clickLinks(t, 0)
	require.Len(t, links, 1)

	// Three clicks within the window count once; a click after it counts
	// again. The clock starts just after a window begins.
	start := time.Until(time.Now().Truncate(ack.ClickWindow).Add(ack.ClickWindow)) + time.Second
	for i, c := range []struct {
		after time.Duration
		want  int
	}{{0, 1}, {0, 1}, {time.Minute, 1}, {ack.ClickWindow + time.Minute, 2}} {
		b.later.Store(int64(start + c.after))
		res := b.get(t, links[0])
		require.Equal(t, http.StatusFound, res.StatusCode)
		require.Equal(t, "https://shop.example/pricing?plan=pro&x=1", res.Header.Get("Location"))
		require.Equal(t, "no-referrer", res.Header.Get("Referrer-Policy"), "the token does not leak to the target")
		eventually(t, func() bool { return len(b.events(t, "pricing.viewed")) == c.want }, fmt.Sprintf("click %d: %d events", i, c.want))
		eventually(t, func() bool { return len(b.events(t, "message.clicked")) == c.want }, "and as message.clicked")
	}
	ev := b.events(t, "pricing.viewed")[0]
	require.Equal(t, map[string]any{"channel": "email", "message": "m1", "url": "https://shop.example/pricing?plan=pro&x=1"}, ev.Data)
	acks := b.entries(t, herald.KindAcknowledgement, "")
	require.Len(t, acks, 2)
	require.Equal(t, herald.ChannelEmail, acks[0].Channel)

	// A link checker's HEAD is answered without counting a click.
	res, err := b.http.Head(links[0])
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusFound, res.StatusCode)
	time.Sleep(300 * time.Millisecond)
	require.Len(t, b.events(t, "pricing.viewed"), 2)
}

func TestTamperedClickIsRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelEmail)
	link := b.clickLinks(t, 0)[0]
	base, tok, _ := strings.Cut(link, "/r/")
	parts := strings.Split(tok, ".")
	require.Len(t, parts, 3)

	now := time.Now()
	evil := preferences.Sign([]byte("another-key-another-key-another!!"), preferences.Claims{
		CustomerID: "c1", Purpose: preferences.PurposeClick, Message: "m1", URL: "https://evil.example/", Expires: now.Add(time.Hour)})
	prefsTok := preferences.Sign([]byte(key), preferences.Claims{CustomerID: "c1", Purpose: preferences.PurposePreferences, Expires: now.Add(time.Hour)})
	expired := preferences.Sign([]byte(key), preferences.Claims{
		CustomerID: "c1", Purpose: preferences.PurposeClick, Message: "m1", URL: "https://shop.example/", Expires: now.Add(-time.Hour)})
	js := preferences.Sign([]byte(key), preferences.Claims{
		CustomerID: "c1", Purpose: preferences.PurposeClick, Message: "m1", URL: "javascript:alert(1)", Expires: now.Add(time.Hour)})
	// The claims of the real token with another target, keeping its signature.
	claims, err := b64decode(parts[1])
	require.NoError(t, err)
	swapped := strings.Replace(string(claims), "https://shop.example/pricing", "https://evil.example/pricing", 1)
	require.NotEqual(t, string(claims), swapped)

	for name, u := range map[string]string{
		"target swapped":      base + "/r/" + parts[0] + "." + b64encode([]byte(swapped)) + "." + parts[2],
		"signature changed":   base + "/r/" + parts[0] + "." + parts[1] + "." + flip(parts[2]),
		"unsigned":            base + "/r/" + parts[0] + "." + parts[1],
		"other key":           base + "/r/" + evil,
		"preferences token":   base + "/r/" + prefsTok,
		"expired":             base + "/r/" + expired,
		"not a web target":    base + "/r/" + js,
		"garbage":             base + "/r/hello",
		"open redirect query": base + "/r/x?url=https://evil.example/",
	} {
		res := b.get(t, u)
		require.Equal(t, http.StatusForbidden, res.StatusCode, name)
		require.Empty(t, res.Header.Get("Location"), name)
	}
	time.Sleep(500 * time.Millisecond)
	require.Empty(t, b.entries(t, herald.KindAcknowledgement, ""), "nothing recorded")
	require.Empty(t, b.events(t, "message.clicked"))
}

func TestClickTrackingNeverOnRequiredTopics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "receipt", "billing", herald.ChannelEmail)
	body := text(t, b.smtp.Messages()[0].Data)
	require.Contains(t, body, "https://shop.example/invoice/1")
	require.Empty(t, b.clickLinks(t, 0))
}

func TestSlackLinksAreNotTracked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelSlack)
	p := b.slack.Posts()[0]
	require.NotContains(t, string(p.Blocks)+p.Text, "/r/")
}

// --- email replies -----------------------------------------------------------

func (b *bundle) inbound(t *testing.T, token, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/inbound/email", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := b.http.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func TestEmailReplyEmitsMessageReplied(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelEmail)
	sent := b.smtp.Messages()[0]
	require.True(t, strings.HasPrefix(sent.MessageID, "<hm1."), "a sealed Message-ID: %s", sent.MessageID)
	require.Contains(t, string(sent.Data), "Reply-To: <replies@lumen.example>")
	require.Empty(t, b.rdb.Keys(context.Background(), "herald:msgid:*").Val(), "no reply index for a sealed Message-ID")

	body, _ := json.Marshal(map[string]any{
		"message_id": "<reply-1@mail.example.com>", "in_reply_to": sent.MessageID,
		"references": []string{"<older@elsewhere.example>", sent.MessageID},
		"from":       "Ada <ada@example.com>", "text": "Thanks, tonight.",
	})
	status, _ := b.inbound(t, "", string(body))
	require.Equal(t, http.StatusUnauthorized, status, "bearer token required")
	status, _ = b.inbound(t, "wrong", string(body))
	require.Equal(t, http.StatusUnauthorized, status)
	time.Sleep(300 * time.Millisecond)
	require.Empty(t, b.events(t, "message.replied"))

	status, out := b.inbound(t, apiToken, string(body))
	require.Equal(t, http.StatusAccepted, status, out)
	require.Equal(t, "c1", out["customer_id"])
	eventually(t, func() bool { return len(b.events(t, "message.replied")) == 1 }, "message.replied emitted")
	require.Equal(t, map[string]any{"channel": "email", "message": "m1"}, b.events(t, "message.replied")[0].Data)
	eventually(t, func() bool { return len(b.entries(t, herald.KindAcknowledgement, "replied")) == 1 }, "acknowledgement")

	// The webhook retries the same reply: it counts once.
	status, _ = b.inbound(t, apiToken, string(body))
	require.Equal(t, http.StatusAccepted, status)
	// Matched through References alone, without brackets.
	only, _ := json.Marshal(map[string]any{"message_id": "<reply-2@mail.example.com>", "references": []string{strings.Trim(sent.MessageID, "<>")}})
	status, _ = b.inbound(t, apiToken, string(only))
	require.Equal(t, http.StatusAccepted, status)
	eventually(t, func() bool { return len(b.events(t, "message.replied")) == 2 }, "second reply")
	time.Sleep(300 * time.Millisecond)
	require.Len(t, b.events(t, "message.replied"), 2)

	status, out = b.inbound(t, apiToken, `{"in_reply_to":"<someone-else@example.com>"}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "ignored", out["status"])
	status, _ = b.inbound(t, apiToken, `{"from":"x@example.com"}`)
	require.Equal(t, http.StatusUnprocessableEntity, status)
}

// reply posts a reply to rfcID to the inbound-mail webhook and returns the
// status and the message ID it was matched to.
func (b *bundle) reply(t *testing.T, replyID, rfcID string) (int, string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"message_id": replyID, "in_reply_to": rfcID, "text": "Thanks."})
	status, out := b.inbound(t, apiToken, string(body))
	msg, _ := out["message_id"].(string)
	return status, msg
}

// A delivery whose customer and message IDs are too long to seal gets a
// digest Message-ID and the reply index, as every email did before
// Message-IDs were sealed: replies to such mail match through the index.
func TestEmailReplyThroughTheIndex(t *testing.T) {
	t.Parallel()
	b := setup(t)
	long := "m_" + strings.Repeat("0123456789", 10) // with "c1", past msgid.MaxIDs
	b.send(t, long, "remind", "checkout", herald.ChannelEmail)
	sent := b.smtp.Messages()[0]
	require.Regexp(t, `^<[0-9a-f]{32}@lumen\.example>$`, sent.MessageID)
	require.Len(t, b.rdb.Keys(context.Background(), "herald:msgid:*").Val(), 1, "the reply index")

	status, msg := b.reply(t, "<reply-old@mail.example.com>", sent.MessageID)
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, long, msg)
	// The index is keyed on the ID in lower case: any casing finds it.
	status, msg = b.reply(t, "<reply-old-2@mail.example.com>", strings.ToUpper(sent.MessageID))
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, long, msg)
	eventually(t, func() bool { return len(b.events(t, "message.replied")) == 2 }, "message.replied emitted")

	// A sealed one alongside: each reply finds its own message.
	b.send(t, "m2", "remind", "checkout", herald.ChannelEmail)
	sealed := b.smtp.Messages()[1].MessageID
	require.True(t, strings.HasPrefix(sealed, "<hm1."), sealed)
	status, msg = b.reply(t, "<reply-new@mail.example.com>", sealed)
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, "m2", msg)
	require.Len(t, b.rdb.Keys(context.Background(), "herald:msgid:*").Val(), 1, "still only the long one's")

	// Erasing the customer leaves nothing a reply can match.
	require.NoError(t, b.e.Erase(context.Background(), "c1", preferences.Actor{Kind: "api", Name: "test"}))
	require.Empty(t, b.rdb.Keys(context.Background(), "herald:msgid:*").Val())
	for i, id := range []string{sent.MessageID, sealed} {
		status, _ := b.reply(t, fmt.Sprintf("<reply-erased-%d@mail.example.com>", i), id)
		require.Equal(t, http.StatusOK, status, "a reply to an erased customer's mail is ignored")
	}
}

// A sealed Message-ID opens with a signing key that has since been
// replaced, as long as it is still listed among the previous keys; an
// altered one, or one whose key is gone, matches nothing.
func TestEmailReplyAfterKeyRotation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "remind", "checkout", herald.ChannelEmail)
	sent := b.smtp.Messages()[0].MessageID
	ctx := context.Background()

	tset, err := templates.Load(os.DirFS("testdata/templates"), templates.Options{})
	require.NoError(t, err)
	rotated := func(previous ...[]byte) *engine.Engine {
		e, err := engine.New(engine.Options{
			Redis: b.rdb, RedisConn: asynq.RedisClientOpt{Addr: b.rdb.Options().Addr},
			Templates: tset, SigningKey: []byte("a-new-signing-key-0123456789abcdef"),
			PreviousSigningKeys: previous,
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = e.Close() })
		return e
	}
	m, err := rotated([]byte(key)).SentEmail(ctx, sent)
	require.NoError(t, err)
	require.Equal(t, "c1", m.CustomerID)
	require.Equal(t, "m1", m.MessageID)
	_, err = rotated().SentEmail(ctx, sent)
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "the old key is no longer listed")

	local := strings.Trim(sent, "<>")
	other := "A"
	if local[10] == 'A' {
		other = "B"
	}
	altered := "<" + local[:10] + other + local[11:] + ">"
	_, err = b.e.SentEmail(ctx, altered)
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "altered: %s", altered)
	// In-Reply-To altered, References intact: the intact one matches.
	m, err = b.e.SentEmail(ctx, altered, sent)
	require.NoError(t, err)
	require.Equal(t, "m1", m.MessageID)
}

// --- journeys: Slack first, email unless acknowledged ---------------------------

func TestEscalationStopsWhenTheButtonIsPressed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now()
	_, err := b.e.Event(context.Background(), herald.Event{CustomerID: "c1", Name: "checkout.abandoned", Data: map[string]any{"items": 3}}, "test")
	require.NoError(t, err)
	eventually(t, func() bool { return b.slack.Count() == 1 }, "the Slack reminder is posted")
	body := b.press(t, "checkout.resumed")
	sig, stamp := sign(secret, time.Now(), body)
	require.Equal(t, http.StatusOK, b.postSlack(t, body, sig, stamp))

	eventually(t, func() bool {
		js, err := b.e.Journeys(context.Background(), "c1")
		return err == nil && len(js) == 1 && js[0].Status == workflows.StatusFinished && js[0].Step == "acknowledged"
	}, "the journey ends as acknowledged")
	js, _ := b.e.Journeys(context.Background(), "c1")
	ev := b.events(t, "checkout.resumed")
	require.Len(t, ev, 1)
	require.Equal(t, js[0].JourneyID, ev[0].Data["journey"], "the event names its journey")
	require.Equal(t, "slack-reminder", ev[0].Data["step"])
	require.Equal(t, "escalate", ev[0].Data["workflow"])
	time.Sleep(time.Until(start.Add(12 * time.Second))) // past the wait
	require.Zero(t, b.smtp.Count(), "no email for something already done on Slack")
}

func TestEscalationSendsTheEmailWhenNothingHappens(t *testing.T) {
	t.Parallel()
	b := setup(t)
	start := time.Now()
	_, err := b.e.Event(context.Background(), herald.Event{CustomerID: "c1", Name: "checkout.abandoned", Data: map[string]any{"items": 3}}, "test")
	require.NoError(t, err)
	eventually(t, func() bool { return b.slack.Count() == 1 }, "the Slack reminder is posted")
	eventually(t, func() bool { return b.smtp.Count() == 1 }, "the email follows")
	require.GreaterOrEqual(t, time.Since(start), 10*time.Second, "not before the wait is over")
	require.Len(t, b.clickLinks(t, 0), 2, "both links tracked")
	require.Empty(t, b.entries(t, herald.KindAcknowledgement, ""))
}

func TestClickOnTheEscalationEmailIsAnAcknowledgement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.send(t, "m1", "last-call", "checkout", herald.ChannelEmail)
	links := b.clickLinks(t, 0)
	require.Len(t, links, 2)
	res := b.get(t, links[1])
	require.Equal(t, "https://shop.example/faq", res.Header.Get("Location"))
	eventually(t, func() bool { return len(b.events(t, "message.clicked")) == 1 }, "a link without its own event is message.clicked")
	time.Sleep(300 * time.Millisecond)
	require.Len(t, b.entries(t, herald.KindEvent, ""), 1, "and nothing else")
}

func b64decode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
func b64encode(b []byte) string          { return base64.RawURLEncoding.EncodeToString(b) }

// flip changes the first character of s.
func flip(s string) string {
	if s[0] == 'A' {
		return "B" + s[1:]
	}
	return "A" + s[1:]
}

// A signed press that names a message in another conversation, or comes
// from a Slack user who is not the message's customer, records nothing
// and changes no message.
func TestSlackPressMustMatchTheMessageAndItsCustomer(t *testing.T) {
	t.Parallel()
	for name, edit := range map[string]func(string) string{
		"other conversation": func(b string) string {
			return strings.Replace(b, "%22channel_id%22%3A%22D", "%22channel_id%22%3A%22DX", 1)
		},
		"other user": func(b string) string {
			return strings.Replace(b, "%22user%22%3A%7B%22id%22%3A%22", "%22user%22%3A%7B%22id%22%3A%22UEVE", 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			b.send(t, "m1", "remind", "checkout", herald.ChannelSlack)
			orig := b.press(t, "outreach.snoozed")
			body := edit(orig)
			require.NotEqual(t, orig, body, "the payload was changed")
			sig, stamp := sign(secret, time.Now(), body)
			require.Equal(t, http.StatusOK, b.postSlack(t, body, sig, stamp), "Slack gets its 200 anyway")
			// A genuine press afterwards is processed: once it is on the
			// timeline, the forged one would have been too.
			good := b.press(t, "outreach.snoozed")
			sig, stamp = sign(secret, time.Now(), good)
			require.Equal(t, http.StatusOK, b.postSlack(t, good, sig, stamp))
			eventually(t, func() bool { return len(b.entries(t, herald.KindAcknowledgement, "")) >= 1 }, "the genuine press is recorded")
			require.Len(t, b.entries(t, herald.KindAcknowledgement, ""), 1, "only the genuine press")
		})
	}
}

// --- acknowledgements between a send and its record ---------------------------

// holdRecord holds back the first send record (the ledger write of
// Claim.Finish) until release is closed; after, when set, runs after every
// single command, to tell when the record is being looked for.
type holdRecord struct {
	release chan struct{}
	held    atomic.Bool
	after   func(redis.Cmder)
}

func newHoldRecord() *holdRecord { return &holdRecord{release: make(chan struct{})} }

// sendHeld sends message m1 by ch with its record held back, and returns
// the hold and a count of the reads of m1's ledger (a look for its record)
// once the provider has it. also, when set, sees every single command run.
func (b *bundle) sendHeld(t *testing.T, ch herald.Channel, also func(redis.Cmder)) (*holdRecord, *atomic.Int32) {
	t.Helper()
	h := newHoldRecord()
	looks := &atomic.Int32{}
	h.after = func(c redis.Cmder) {
		if a := c.Args(); c.Name() == "mget" && len(a) > 1 && strings.Contains(fmt.Sprint(a[1]), ":ledger:m1:") {
			looks.Add(1)
		}
		if also != nil {
			also(c)
		}
	}
	b.rdb.AddHook(h)
	_, err := b.e.Send(context.Background(), wire.Message{
		ID: "m1", CustomerID: "c1", Template: "remind", Topic: "checkout",
		Channels: []herald.Channel{ch}, Data: map[string]any{"items": 3},
	})
	require.NoError(t, err)
	eventually(t, func() bool { return b.slack.Count()+b.smtp.Count() == 1 && h.held.Load() }, "sent, and its record held back")
	return h, looks
}

func (*holdRecord) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *holdRecord) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if h.after != nil {
			h.after(cmd)
		}
		return err
	}
}
func (h *holdRecord) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		isRecord := func(c redis.Cmder) bool { // the record replaces the claim: SET … GET, not NX
			a := c.Args()
			return c.Name() == "set" && len(a) > 1 && strings.Contains(fmt.Sprint(a[1]), ":ledger:") &&
				slices.Contains(a, any("get")) && !slices.Contains(a, any("NX"))
		}
		if slices.ContainsFunc(cmds, isRecord) && h.held.CompareAndSwap(false, true) {
			<-h.release
		}
		return next(ctx, cmds)
	}
}

// A button pressed after its Slack message was posted and before herald
// recorded the post waits for the record: the press counts.
func TestSlackPressBeforeThePostIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var once sync.Once
	release := make(chan struct{})
	h, _ := b.sendHeld(t, herald.ChannelSlack, func(c redis.Cmder) { // the press looked for its message and found none yet
		if a := c.Args(); c.Name() == "get" && len(a) > 1 && strings.HasPrefix(fmt.Sprint(a[1]), "herald:msg:") {
			once.Do(func() { close(release) })
		}
	})
	go func() { <-release; close(h.release) }()
	body := b.press(t, "outreach.snoozed")
	sig, stamp := sign(secret, time.Now(), body)
	require.Equal(t, http.StatusOK, b.postSlack(t, body, sig, stamp))
	eventually(t, func() bool { return len(b.entries(t, herald.KindAcknowledgement, "")) == 1 }, "the press is recorded")
	eventually(t, func() bool { return len(b.events(t, "outreach.snoozed")) == 1 }, "the button's event is emitted")
}

// A reply to an email whose record is late waits for it; still late after
// a moment, the webhook is answered 503, so that the mail provider tries
// again, and the retry counts.
func TestEmailReplyBeforeTheSendIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h, looks := b.sendHeld(t, herald.ChannelEmail, nil)
	sent := b.smtp.Messages()[0].MessageID

	status, _ := b.reply(t, "<reply-1@mail.example.com>", sent)
	require.Equal(t, http.StatusServiceUnavailable, status, "late, not missing")
	require.Empty(t, b.entries(t, herald.KindAcknowledgement, ""))

	before := looks.Load()
	done := make(chan struct{})
	go func() {
		defer close(done)
		status, msg := b.reply(t, "<reply-1@mail.example.com>", sent)
		assert.Equal(t, http.StatusAccepted, status)
		assert.Equal(t, "m1", msg)
	}()
	eventually(t, func() bool { return looks.Load() > before }, "the retry is waiting for the record")
	close(h.release)
	<-done
	eventually(t, func() bool { return len(b.events(t, "message.replied")) == 1 }, "message.replied emitted")
}

// A click between a send and its record is recorded once the record is
// written, naming what the message was.
func TestClickBeforeTheSendIsRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	h, looks := b.sendHeld(t, herald.ChannelEmail, nil)
	links := b.clickLinks(t, 0)
	require.Len(t, links, 1)
	before := looks.Load()
	require.Equal(t, http.StatusFound, b.get(t, links[0]).StatusCode)
	eventually(t, func() bool { return looks.Load() > before }, "the click is waiting for the record")
	close(h.release)
	eventually(t, func() bool { return len(b.entries(t, herald.KindAcknowledgement, "")) == 1 }, "the click is recorded")
	require.Contains(t, b.entries(t, herald.KindAcknowledgement, "")[0].Summary, " in remind by email")
	eventually(t, func() bool { return len(b.events(t, "message.clicked")) == 1 }, "message.clicked emitted")
}
