package slack_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/channeltest"
	"github.com/heraldhq/herald/channels/slack"
	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/stretchr/testify/require"
)

const (
	token  = "xoxb-herald-test"
	userID = "U0ADA"
	email  = "ada@example.com"
)

type bundle struct {
	api    *slackapi.Server
	url    string
	cache  *memCache
	sender *slack.Sender
}

type setupOpts struct {
	jsonl      *logbuf.Buffer
	sendToken  string
	noCache    bool
	timeout    time.Duration
	cacheError error
}

func setup(t *testing.T, o setupOpts) *bundle {
	t.Helper()
	opts := slackapi.Options{Token: token, Users: map[string]string{email: userID}}
	if o.jsonl != nil {
		opts.JSONL = o.jsonl
	}
	api := slackapi.New(opts)
	hs := httptest.NewServer(api)
	t.Cleanup(hs.Close)
	// Cleanups run last first: requests held by a Hang fault are dropped
	// before hs.Close waits for them.
	t.Cleanup(func() { _ = api.Close() })

	b := &bundle{api: api, url: hs.URL + "/api"}
	var cache slack.UserCache
	if !o.noCache {
		b.cache = &memCache{m: map[string]string{}, err: o.cacheError}
		cache = b.cache
	}
	tok := token
	if o.sendToken != "" {
		tok = o.sendToken
	}
	b.sender = slack.New(slack.Config{Token: tok, APIURL: b.url, Timeout: o.timeout}, cache)
	return b
}

func message(c herald.Customer) herald.Message {
	return herald.Message{
		ID:       "m1",
		Channel:  herald.ChannelSlack,
		Customer: c,
		Topic:    "onboarding",
		Content:  herald.Content{Locale: "en", SlackText: "Hello from *herald*."},
	}
}

func byID() herald.Customer    { return herald.Customer{ID: "c1", SlackUserID: userID} }
func byEmail() herald.Customer { return herald.Customer{ID: "c1", Email: email} }

type peer struct {
	b         *bundle
	customer  herald.Customer
	temporary slackapi.Fault
}

func (p *peer) Sender() herald.Sender     { return p.b.sender }
func (p *peer) Customer() herald.Customer { return p.customer }
func (p *peer) Received() int             { return p.b.api.Count() }

func (p *peer) Fail(f channeltest.Fault) {
	switch f {
	case channeltest.FaultTemporary:
		p.b.api.SetFault(p.temporary)
	case channeltest.FaultPermanent:
		p.b.api.SetFault(slackapi.Fault{Error: "users_not_found"})
	default:
		p.b.api.SetFault(slackapi.Fault{})
	}
}

func TestExercise(t *testing.T) {
	t.Parallel()

	t.Run("ByUserIDServerError", func(t *testing.T) {
		t.Parallel()
		channeltest.Exercise(t, func(t *testing.T) channeltest.Peer {
			return &peer{b: setup(t, setupOpts{}), customer: byID(), temporary: slackapi.Fault{Status: 500}}
		})
	})
	t.Run("ByEmailRateLimited", func(t *testing.T) {
		t.Parallel()
		channeltest.Exercise(t, func(t *testing.T) channeltest.Peer {
			return &peer{b: setup(t, setupOpts{}), customer: byEmail(), temporary: slackapi.Fault{Status: 429, RetryAfter: time.Second}}
		})
	})
}

func TestSendReceipt(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{})

	r, err := b.sender.Send(context.Background(), message(byID()))
	require.NoError(t, err)
	posts := b.api.Posts()
	require.Len(t, posts, 1)
	require.Equal(t, herald.ChannelSlack, r.Channel)
	require.Equal(t, userID, r.Recipient)
	require.Equal(t, posts[0].Channel+":"+posts[0].TS, r.ProviderID)
	require.True(t, strings.HasPrefix(posts[0].Channel, "D"), "delivered to the user's DM")
	require.Equal(t, userID, posts[0].User)
	require.Equal(t, "Hello from *herald*.", posts[0].Text, "mrkdwn is sent as rendered")
	require.False(t, r.SentAt.IsZero())
}

type mappingCase struct {
	name       string
	fault      slackapi.Fault
	code       string
	reason     string
	retryAfter time.Duration
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()

	tests := []mappingCase{
		{"429WithRetryAfter", slackapi.Fault{Status: 429, RetryAfter: 7 * time.Second}, herald.ETemporary, "slack rate_limited", 7 * time.Second},
		{"429WithoutRetryAfter", slackapi.Fault{Status: 429}, herald.ETemporary, "slack rate_limited", 0},
		{"500", slackapi.Fault{Status: 500}, herald.ETemporary, "slack http_500", 0},
		{"502", slackapi.Fault{Status: 502}, herald.ETemporary, "slack http_502", 0},
		{"503", slackapi.Fault{Status: 503}, herald.ETemporary, "slack http_503", 0},
		{"404", slackapi.Fault{Status: 404}, herald.EPermanent, "slack http_404", 0},
	}
	for _, code := range []string{
		"users_not_found", "user_not_found", "user_not_visible", "account_inactive", "channel_not_found",
		"invalid_auth", "not_authed", "is_archived", "cannot_dm_bot", "invalid_blocks", "msg_too_long",
		"token_revoked", "missing_scope",
	} {
		tests = append(tests, mappingCase{code, slackapi.Fault{Error: code}, herald.EPermanent, "slack " + code, 0})
	}
	for _, code := range []string{"internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited"} {
		tests = append(tests, mappingCase{code, slackapi.Fault{Error: code}, herald.ETemporary, "slack " + code, 0})
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, c := range []herald.Customer{byID(), byEmail()} {
				b := setup(t, setupOpts{})
				b.api.SetFault(tt.fault)
				_, err := b.sender.Send(context.Background(), message(c))
				require.Error(t, err)
				require.Equal(t, tt.code, herald.ErrorCode(err), "got %v", err)
				require.Equal(t, tt.reason, herald.ErrorReason(err))
				require.Equal(t, tt.retryAfter, herald.RetryAfter(err))
				require.Equal(t, 0, b.api.Count())
			}
		})
	}
}

func TestNetworkErrorsAreTemporary(t *testing.T) {
	t.Parallel()

	t.Run("ConnectionRefused", func(t *testing.T) {
		t.Parallel()
		hs := httptest.NewServer(http.NotFoundHandler())
		url := hs.URL
		hs.Close()
		s := slack.New(slack.Config{Token: token, APIURL: url + "/api/"}, nil)
		_, err := s.Send(context.Background(), message(byID()))
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "slack network", herald.ErrorReason(err))
	})

	t.Run("HTTPTimeout", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{timeout: 50 * time.Millisecond})
		b.api.SetFault(slackapi.Fault{Hang: true})
		_, err := b.sender.Send(context.Background(), message(byID()))
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "slack timeout", herald.ErrorReason(err))
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})

	t.Run("GarbledResponse", func(t *testing.T) {
		t.Parallel()
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write([]byte("<html>proxy error</html>"))
		}))
		t.Cleanup(hs.Close)
		s := slack.New(slack.Config{Token: token, APIURL: hs.URL + "/api/"}, nil)
		_, err := s.Send(context.Background(), message(byID()))
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
	})

	t.Run("ContextDeadline", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{timeout: time.Hour})
		b.api.SetFault(slackapi.Fault{Hang: true})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := b.sender.Send(ctx, message(byID()))
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "slack timeout", herald.ErrorReason(err))
	})
}

func TestInvalidToken(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{sendToken: "xoxb-wrong"})
	_, err := b.sender.Send(context.Background(), message(byID()))
	require.Equal(t, herald.EPermanent, herald.ErrorCode(err), "got %v", err)
	require.Equal(t, "slack invalid_auth", herald.ErrorReason(err))
	require.Equal(t, 0, b.api.Count())
}

func TestLookupByEmail(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("UsesCache", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		for range 2 {
			r, err := b.sender.Send(ctx, message(herald.Customer{ID: "c1", Email: "  Ada@Example.com "}))
			require.NoError(t, err)
			require.Equal(t, userID, r.Recipient)
		}
		require.Equal(t, 1, b.api.Calls("users.lookupByEmail"), "the second send is served by the cache")
		require.Equal(t, 2, b.api.Count())
		require.Equal(t, map[string]string{email: userID}, b.cache.snapshot())
		require.Equal(t, slack.DefaultUserCacheTTL, b.cache.lastTTL())
	})

	t.Run("WithoutCache", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{noCache: true})
		for range 2 {
			_, err := b.sender.Send(ctx, message(byEmail()))
			require.NoError(t, err)
		}
		require.Equal(t, 2, b.api.Calls("users.lookupByEmail"))
	})

	t.Run("CacheErrorFallsThrough", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{cacheError: errors.New("redis down")})
		r, err := b.sender.Send(ctx, message(byEmail()))
		require.NoError(t, err)
		require.Equal(t, userID, r.Recipient)
		require.Equal(t, 1, b.api.Calls("users.lookupByEmail"))
	})

	t.Run("UnknownEmailIsPermanent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, err := b.sender.Send(ctx, message(herald.Customer{ID: "c1", Email: "nobody@example.com"}))
		require.Equal(t, herald.EPermanent, herald.ErrorCode(err), "got %v", err)
		require.Equal(t, "slack users_not_found", herald.ErrorReason(err))
		require.NotContains(t, err.Error(), "nobody@example.com", "errors end up in logs and must not carry addresses")
		require.Empty(t, b.cache.snapshot(), "a failed lookup is not cached")
	})

	t.Run("UserIDWins", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, err := b.sender.Send(ctx, message(herald.Customer{ID: "c1", SlackUserID: "U0OTHER", Email: email}))
		require.NoError(t, err)
		require.Equal(t, 0, b.api.Calls("users.lookupByEmail"))
		require.Equal(t, "U0OTHER", b.api.Posts()[0].User)
	})

	t.Run("NoAddressIsInvalid", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		_, err := b.sender.Send(ctx, message(herald.Customer{ID: "c1"}))
		require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "got %v", err)
		require.Contains(t, err.Error(), "neither a Slack user ID nor an email")
	})
}

const blocks = `[
  {"type":"header","text":{"type":"plain_text","text":"Welcome, Zoë 👋","emoji":true}},
  {"type":"section","block_id":"intro","text":{"type":"mrkdwn","text":"Your *pro* trial has started. <https://example.com|Open>"},
   "accessory":{"type":"button","text":{"type":"plain_text","text":"Start"},"action_id":"start","value":"trial","url":"https://example.com/start"}},
  {"type":"divider"},
  {"type":"actions","block_id":"choices","elements":[
    {"type":"button","text":{"type":"plain_text","text":"Yes"},"action_id":"yes","value":"1","style":"primary"},
    {"type":"button","text":{"type":"plain_text","text":"No"},"action_id":"no","value":"0","style":"danger"}]},
  {"type":"context","elements":[{"type":"mrkdwn","text":"<https://example.com/prefs|Manage what we send you>"}]}
]`

func TestBlocks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("DeliveredAsGiven", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		m := message(byID())
		m.Content.SlackBlocks = json.RawMessage(blocks)
		_, err := b.sender.Send(ctx, m)
		require.NoError(t, err)
		require.JSONEq(t, blocks, string(b.api.Posts()[0].Blocks))
		require.Equal(t, m.Content.SlackText, b.api.Posts()[0].Text, "text stays as the notification fallback")
	})

	t.Run("EmptyArrayMeansTextOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		m := message(byID())
		m.Content.SlackBlocks = json.RawMessage(`[]`)
		_, err := b.sender.Send(ctx, m)
		require.NoError(t, err)
		require.Nil(t, b.api.Posts()[0].Blocks)
	})

	for name, raw := range map[string]string{"Malformed": `[{"type":`, "NotAnArray": `{"type":"divider"}`} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, setupOpts{})
			m := message(byID())
			m.Content.SlackBlocks = json.RawMessage(raw)
			_, err := b.sender.Send(ctx, m)
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "got %v", err)
			require.Equal(t, 0, b.api.Calls("chat.postMessage"), "nothing reaches Slack")
		})
	}

	t.Run("NothingToSay", func(t *testing.T) {
		t.Parallel()
		b := setup(t, setupOpts{})
		m := message(byID())
		m.Content.SlackText = ""
		_, err := b.sender.Send(ctx, m)
		require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "got %v", err)
	})
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, setupOpts{})

	m := message(byID())
	m.Content.SlackBlocks = json.RawMessage(blocks)
	r, err := b.sender.Send(ctx, m)
	require.NoError(t, err)
	channel, ts, ok := strings.Cut(r.ProviderID, ":")
	require.True(t, ok)

	done := `[{"type":"section","text":{"type":"mrkdwn","text":"You chose *Yes*."}}]`
	require.NoError(t, b.sender.Update(ctx, channel, ts, "You chose Yes.", json.RawMessage(done)))
	require.NoError(t, b.sender.Update(ctx, channel, ts, "Plain again.", nil))

	posts := b.api.Posts()
	require.Len(t, posts, 3)
	require.Equal(t, "chat.update", posts[1].Method)
	require.Equal(t, ts, posts[1].TS)
	require.Equal(t, "You chose Yes.", posts[1].Text)
	require.JSONEq(t, done, string(posts[1].Blocks))
	require.Nil(t, posts[2].Blocks, "an update without blocks removes the old ones")
	require.Equal(t, 1, b.api.Count(), "updates are not new messages")

	err = b.sender.Update(ctx, channel, "1.000001", "x", nil)
	require.Equal(t, herald.EPermanent, herald.ErrorCode(err), "got %v", err)
	require.Equal(t, "slack message_not_found", herald.ErrorReason(err))

	err = b.sender.Update(ctx, "", ts, "x", nil)
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))

	b.api.SetFault(slackapi.Fault{Status: 429, RetryAfter: 2 * time.Second})
	err = b.sender.Update(ctx, channel, ts, "x", nil)
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err))
	require.Equal(t, 2*time.Second, herald.RetryAfter(err))
}

func TestJSONLOutput(t *testing.T) {
	t.Parallel()
	var out logbuf.Buffer
	b := setup(t, setupOpts{jsonl: &out})
	ctx := context.Background()

	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			m := message(byID())
			m.Content.SlackText = "line one\nline \"two\"\t" + strings.Repeat("é", i)
			if i%2 == 0 {
				m.Content.SlackBlocks = json.RawMessage(blocks)
			}
			_, err := b.sender.Send(ctx, m)
			if err != nil {
				t.Errorf("send %d: %v", i, err)
			}
		})
	}
	wg.Wait()

	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var rec struct {
			Channel string          `json:"channel"`
			User    string          `json:"user"`
			Text    string          `json:"text"`
			Blocks  json.RawMessage `json:"blocks"`
			TS      string          `json:"ts"`
			At      time.Time       `json:"at"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "line %d: %s", n, sc.Text())
		require.Equal(t, userID, rec.User)
		require.NotEmpty(t, rec.Channel)
		require.NotEmpty(t, rec.TS)
		require.False(t, rec.At.IsZero())
		require.True(t, strings.HasPrefix(rec.Text, "line one\n"))
		n++
	}
	require.NoError(t, sc.Err())
	require.Equal(t, 10, n, "one line per message")
}

// memCache is an in-memory UserCache that can be told to fail.
type memCache struct {
	mu  sync.Mutex
	m   map[string]string
	ttl time.Duration
	err error
}

func (c *memCache) Get(_ context.Context, email string) (string, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return "", false, c.err
	}
	id, ok := c.m[email]
	return id, ok, nil
}

func (c *memCache) Set(_ context.Context, email, id string, ttl time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.m[email] = id
	c.ttl = ttl
	return nil
}

func (c *memCache) snapshot() map[string]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]string, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

func (c *memCache) lastTTL() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ttl
}
