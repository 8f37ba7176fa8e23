package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	slackgo "github.com/slack-go/slack"
)

// Defaults for zero Config fields.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultUserCacheTTL = 24 * time.Hour
)

// Config configures a Sender. A zero field means its default.
type Config struct {
	// Token is the bot token (xoxb-…).
	Token string
	// APIURL is the Web API base URL; "" means Slack's own. Tests and
	// `herald dev` point it at a fake.
	APIURL string
	// Timeout bounds each HTTP call to Slack; default 10s.
	Timeout time.Duration
	// UserCacheTTL is how long an email -> user ID lookup is remembered;
	// default 24h.
	UserCacheTTL time.Duration
}

// UserCache remembers email -> Slack user ID lookups across workers, so a
// busy journey does not spend its users.lookupByEmail rate limit (Tier 3) on
// the same people again and again. The engine implements it on Redis.
type UserCache interface {
	Get(ctx context.Context, email string) (userID string, ok bool, err error)
	Set(ctx context.Context, email, userID string, ttl time.Duration) error
}

// Sender delivers messages as Slack DMs. It is safe for concurrent use.
type Sender struct {
	api   *slackgo.Client
	cache UserCache
	ttl   time.Duration
	now   func() time.Time
}

var _ herald.Sender = (*Sender)(nil)

// New returns a Sender; cache may be nil, in which case every send by email
// looks the user up.
func New(cfg Config, cache UserCache) *Sender {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.UserCacheTTL <= 0 {
		cfg.UserCacheTTL = DefaultUserCacheTTL
	}
	// No OptionRetry: slack-go would then wait out a 429's Retry-After (up
	// to a minute without one) inside the call. Herald's queue owns retries,
	// so a 429 comes back at once as a temporary error carrying RetryAfter,
	// and no call outlives ctx's deadline.
	opts := []slackgo.Option{slackgo.OptionHTTPClient(&http.Client{Timeout: cfg.Timeout})}
	if cfg.APIURL != "" {
		u := cfg.APIURL
		if !strings.HasSuffix(u, "/") {
			// slack-go appends the method name directly.
			u += "/"
		}
		opts = append(opts, slackgo.OptionAPIURL(u))
	}
	return &Sender{
		api:   slackgo.New(cfg.Token, opts...),
		cache: cache,
		ttl:   cfg.UserCacheTTL,
		now:   time.Now,
	}
}

// Send posts m to the customer's DM with the app.
func (s *Sender) Send(ctx context.Context, m herald.Message) (herald.Receipt, error) {
	if err := ctx.Err(); err != nil {
		return herald.Receipt{}, classify(ctx, err)
	}
	opts, err := msgOptions(m.Content.SlackText, m.Content.SlackBlocks)
	if err != nil {
		return herald.Receipt{}, err
	}
	user, err := s.recipient(ctx, m.Customer)
	if err != nil {
		return herald.Receipt{}, err
	}
	channel, ts, err := s.api.PostMessageContext(ctx, user, opts...)
	if err != nil {
		return herald.Receipt{}, classify(ctx, err)
	}
	return herald.Receipt{
		Channel:    herald.ChannelSlack,
		ProviderID: channel + ":" + ts,
		Recipient:  user,
		SentAt:     s.now().UTC(),
	}, nil
}

// Update replaces the text and blocks of a message posted earlier, e.g. to
// show which button a customer pressed. Empty blocks remove the old ones,
// since Slack would otherwise keep them.
func (s *Sender) Update(ctx context.Context, channel, ts, text string, blocks json.RawMessage) error {
	if err := ctx.Err(); err != nil {
		return classify(ctx, err)
	}
	if channel == "" || ts == "" {
		return herald.Errorf(herald.EInvalid, "slack update needs a channel and a message ts")
	}
	opts, err := msgOptions(text, blocks)
	if err != nil {
		return err
	}
	if !hasBlocks(blocks) {
		opts = append(opts, slackgo.MsgOptionBlocks())
	}
	_, _, _, err = s.api.UpdateMessageContext(ctx, channel, ts, opts...)
	return classify(ctx, err)
}

// recipient returns the Slack user ID to DM.
func (s *Sender) recipient(ctx context.Context, c herald.Customer) (string, error) {
	if c.SlackUserID != "" {
		return c.SlackUserID, nil
	}
	email := strings.ToLower(strings.TrimSpace(c.Email))
	if email == "" {
		return "", herald.Errorf(herald.EInvalid, "slack: customer %q has neither a Slack user ID nor an email address", c.ID)
	}
	if s.cache != nil {
		// A cache outage must not stop delivery: Slack can still answer.
		if id, ok, err := s.cache.Get(ctx, email); err == nil && ok && id != "" {
			return id, nil
		}
	}
	u, err := s.api.GetUserByEmailContext(ctx, email)
	if err != nil {
		return "", classify(ctx, err)
	}
	if s.cache != nil {
		_ = s.cache.Set(ctx, email, u.ID, s.ttl)
	}
	return u.ID, nil
}

// msgOptions turns mrkdwn text and a raw Block Kit array into slack-go
// options, refusing blocks that are not a Block Kit array before Slack sees
// them.
func msgOptions(text string, blocks json.RawMessage) ([]slackgo.MsgOption, error) {
	// Text is already rendered and escaped by the templates layer; escaping
	// again would break its mrkdwn.
	opts := []slackgo.MsgOption{slackgo.MsgOptionText(text, false)}
	if hasBlocks(blocks) {
		var bs slackgo.Blocks
		if err := json.Unmarshal(blocks, &bs); err != nil {
			return nil, &herald.Error{Code: herald.EInvalid, Message: "slack blocks are not a Block Kit array: " + err.Error(), Reason: "slack invalid_blocks", Err: err}
		}
		if len(bs.BlockSet) > 0 {
			opts = append(opts, slackgo.MsgOptionBlocks(bs.BlockSet...))
		}
	}
	if text == "" && !hasBlocks(blocks) {
		return nil, herald.Errorf(herald.EInvalid, "slack message has neither text nor blocks")
	}
	return opts, nil
}

func hasBlocks(raw json.RawMessage) bool {
	b := bytes.TrimSpace(raw)
	return len(b) > 0 && !bytes.Equal(b, []byte("null")) && !bytes.Equal(b, []byte("[]"))
}
