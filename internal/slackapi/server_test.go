package slackapi_test

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

	"github.com/heraldhq/herald/internal/logbuf"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/slack-go/slack"
	"github.com/stretchr/testify/require"
)

const token = "xoxb-test"

type bundle struct {
	srv    *slackapi.Server
	hs     *httptest.Server
	client *slack.Client
	url    string
}

func setup(t *testing.T, opts slackapi.Options) *bundle {
	t.Helper()
	if opts.Token == "" {
		opts.Token = token
	}
	srv := slackapi.New(opts)
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	// Cleanups run last first: held requests are dropped before hs.Close
	// waits for them.
	t.Cleanup(func() { _ = srv.Close() })
	url := hs.URL + "/api/"
	return &bundle{srv: srv, hs: hs, client: slack.New(token, slack.OptionAPIURL(url)), url: url}
}

func TestAuthTest(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})

	res, err := b.client.AuthTestContext(context.Background())
	require.NoError(t, err)
	require.Equal(t, slackapi.TeamID, res.TeamID)
	require.Equal(t, slackapi.BotUID, res.UserID)

	for name, tok := range map[string]string{"invalid_auth": "xoxb-wrong", "not_authed": ""} {
		_, err = slack.New(tok, slack.OptionAPIURL(b.url)).AuthTestContext(context.Background())
		require.Equal(t, name, slackCode(t, err))
	}
}

func TestPostMessageToUserOpensDM(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})
	blocks := slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "*hi*", false, false), nil, nil))

	ch, ts1, err := b.client.PostMessageContext(context.Background(), "U123", slack.MsgOptionText("hi", false), blocks)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(ch, "D"), "a post to a user lands in their DM, got %q", ch)

	ch2, ts2, err := b.client.PostMessageContext(context.Background(), "U123", slack.MsgOptionText("again", false))
	require.NoError(t, err)
	require.Equal(t, ch, ch2, "one DM per user")
	require.Less(t, ts1, ts2, "timestamps increase")

	open, _, _, err := b.client.OpenConversationContext(context.Background(), &slack.OpenConversationParameters{Users: []string{"U123"}})
	require.NoError(t, err)
	require.Equal(t, ch, open.ID, "conversations.open returns the same DM")

	posts := b.srv.Posts()
	require.Len(t, posts, 2)
	require.Equal(t, 2, b.srv.Count())
	require.Equal(t, slackapi.Post{Method: "chat.postMessage", Channel: ch, User: "U123", Text: "hi", TS: ts1, At: posts[0].At,
		Blocks: json.RawMessage(`[{"type":"section","text":{"type":"mrkdwn","text":"*hi*"}}]`)}, posts[0])
	require.Nil(t, posts[1].Blocks)
}

func TestPostMessageJSONBody(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})

	body := `{"channel":"C42","text":"json","blocks":[{"type":"divider"}]}`
	req, err := http.NewRequest(http.MethodPost, b.url+"chat.postMessage", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()

	var got struct {
		OK      bool   `json:"ok"`
		Channel string `json:"channel"`
		TS      string `json:"ts"`
	}
	require.NoError(t, json.NewDecoder(res.Body).Decode(&got))
	require.True(t, got.OK)
	require.Equal(t, "C42", got.Channel)
	require.NotEmpty(t, got.TS)
	require.JSONEq(t, `[{"type":"divider"}]`, string(b.srv.Posts()[0].Blocks))
}

func TestPostMessageRefusals(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})

	tests := map[string][]slack.MsgOption{
		"no_text":      {slack.MsgOptionText("", false)},
		"msg_too_long": {slack.MsgOptionText(strings.Repeat("a", 40001), false)},
	}
	for code, opts := range tests {
		_, _, err := b.client.PostMessageContext(context.Background(), "U1", opts...)
		require.Equal(t, code, slackCode(t, err))
	}
	_, _, err := b.client.PostMessageContext(context.Background(), "", slack.MsgOptionText("x", false))
	require.Equal(t, "channel_not_found", slackCode(t, err))
	require.Equal(t, 0, b.srv.Count())
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})
	ctx := context.Background()

	ch, ts, err := b.client.PostMessageContext(ctx, "U9", slack.MsgOptionText("before", false))
	require.NoError(t, err)
	_, ts2, _, err := b.client.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("after", false))
	require.NoError(t, err)
	require.Equal(t, ts, ts2)

	posts := b.srv.Posts()
	require.Len(t, posts, 2)
	require.Equal(t, "chat.update", posts[1].Method)
	require.Equal(t, "after", posts[1].Text)
	require.Equal(t, "U9", posts[1].User)
	require.Equal(t, 1, b.srv.Count(), "an update is not a new post")

	_, _, _, err = b.client.UpdateMessageContext(ctx, ch, "1.000001", slack.MsgOptionText("x", false))
	require.Equal(t, "message_not_found", slackCode(t, err))
}

func TestLookupByEmail(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{Users: map[string]string{"Ada@Example.com": "U1"}})
	b.srv.AddUser("grace@example.com", "U2")
	ctx := context.Background()

	u, err := b.client.GetUserByEmailContext(ctx, "ada@example.com")
	require.NoError(t, err)
	require.Equal(t, "U1", u.ID)
	u, err = b.client.GetUserByEmailContext(ctx, "grace@example.com")
	require.NoError(t, err)
	require.Equal(t, "U2", u.ID)

	_, err = b.client.GetUserByEmailContext(ctx, "nobody@example.com")
	require.Equal(t, "users_not_found", slackCode(t, err))
	require.Equal(t, 3, b.srv.Calls("users.lookupByEmail"))
}

func TestUnknownMethod(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})
	_, err := b.client.GetTeamInfoContext(context.Background())
	require.Equal(t, "unknown_method", slackCode(t, err))
}

func TestFaults(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("RateLimitedWithRetryAfter", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		b.srv.SetFault(slackapi.Fault{Status: 429, RetryAfter: 1500 * time.Millisecond})
		_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		var rl *slack.RateLimitedError
		require.ErrorAs(t, err, &rl)
		require.Equal(t, 2*time.Second, rl.RetryAfter, "Retry-After is rounded up to whole seconds")
	})

	t.Run("RateLimitedWithoutHeader", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		b.srv.SetFault(slackapi.Fault{Status: 429})
		_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		var sc slack.StatusCodeError
		require.ErrorAs(t, err, &sc)
		require.Equal(t, 429, sc.Code)
	})

	t.Run("ErrorCodeTimesThenClears", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		b.srv.SetFault(slackapi.Fault{Error: "account_inactive", Times: 2})
		for range 2 {
			_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
			require.Equal(t, "account_inactive", slackCode(t, err))
		}
		_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		require.NoError(t, err)
		require.Equal(t, 1, b.srv.Count())
		require.Equal(t, 3, b.srv.Calls("chat.postMessage"))
	})

	t.Run("OnlyForChannel", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{})
		b.srv.SetFault(slackapi.Fault{Status: 500, Channel: "U1"})
		_, _, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		var sc slack.StatusCodeError
		require.ErrorAs(t, err, &sc)
		require.Equal(t, 500, sc.Code)
		_, _, err = b.client.PostMessageContext(ctx, "U2", slack.MsgOptionText("x", false))
		require.NoError(t, err)

		b.srv.SetFault(slackapi.Fault{})
		_, _, err = b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		require.NoError(t, err)
	})

	t.Run("OnlyForMethod", func(t *testing.T) {
		t.Parallel()
		b := setup(t, slackapi.Options{Users: map[string]string{"a@example.com": "U1"}})
		b.srv.SetFault(slackapi.Fault{Error: "internal_error", Method: "users.lookupByEmail"})
		_, err := b.client.GetUserByEmailContext(ctx, "a@example.com")
		require.Equal(t, "internal_error", slackCode(t, err))
		_, _, err = b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("x", false))
		require.NoError(t, err)
	})
}

func TestJSONL(t *testing.T) {
	t.Parallel()
	var out logbuf.Buffer
	b := setup(t, slackapi.Options{JSONL: &out})
	var seen []slackapi.Post
	var mu sync.Mutex
	b.srv.OnPost(func(p slackapi.Post) { mu.Lock(); seen = append(seen, p); mu.Unlock() })

	ctx := context.Background()
	ch, ts, err := b.client.PostMessageContext(ctx, "U1", slack.MsgOptionText("line\nbreak \"quoted\"", false),
		slack.MsgOptionBlocks(slack.NewDividerBlock()))
	require.NoError(t, err)
	_, _, _, err = b.client.UpdateMessageContext(ctx, ch, ts, slack.MsgOptionText("updated", false))
	require.NoError(t, err)

	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec), "line %d is one JSON object", lines)
		for _, k := range []string{"channel", "user", "text", "ts", "at"} {
			require.Contains(t, rec, k)
		}
		lines++
	}
	require.Equal(t, 2, lines)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 2)
}

func TestConcurrentPostsGetUniqueTimestamps(t *testing.T) {
	t.Parallel()
	b := setup(t, slackapi.Options{})
	const n = 50
	var wg sync.WaitGroup
	tss := make(chan string, n)
	for i := range n {
		wg.Go(func() {
			_, ts, err := b.client.PostMessageContext(context.Background(), "U1", slack.MsgOptionText("x", false))
			if err != nil {
				t.Errorf("post %d: %v", i, err)
			}
			tss <- ts
		})
	}
	wg.Wait()
	close(tss)
	seen := map[string]bool{}
	for ts := range tss {
		require.False(t, seen[ts], "duplicate ts %s", ts)
		seen[ts] = true
	}
	require.Equal(t, n, b.srv.Count())
}

func TestStart(t *testing.T) {
	t.Parallel()
	srv, err := slackapi.Start(slackapi.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Close()) })
	require.True(t, strings.HasSuffix(srv.URL(), "/api/"))

	_, _, err = slack.New("any", slack.OptionAPIURL(srv.URL())).PostMessageContext(context.Background(), "C1", slack.MsgOptionText("x", false))
	require.NoError(t, err)
	require.Equal(t, 1, srv.Count())
}

func slackCode(t *testing.T, err error) string {
	t.Helper()
	var se slack.SlackErrorResponse
	require.True(t, errors.As(err, &se), "want a Slack error response, got %v", err)
	return se.Err
}
