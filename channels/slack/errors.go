package slack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/heraldhq/herald"
	slackgo "github.com/slack-go/slack"
)

// temporaryCodes are the Slack error codes that describe Slack's state rather
// than the request, so the same request may succeed later. Every other code
// (users_not_found, account_inactive, invalid_auth, invalid_blocks, …) is a
// property of the request or the workspace and is permanent: retrying the
// same call can only spend rate limit.
var temporaryCodes = map[string]bool{
	"internal_error":         true,
	"fatal_error":            true,
	"service_unavailable":    true,
	"request_timeout":        true,
	"ratelimited":            true,
	"rate_limited":           true,
	"message_limit_exceeded": true,
	"team_added_to_org":      true, // the workspace is migrating; Slack says calls fail intermittently until done
}

// classify turns a slack-go error into a herald error. Reasons are exactly
// "slack <code>" because other layers act on them (preferences suppresses a
// Slack user on "slack account_inactive"). A call cut short by ctx or by
// Config.Timeout is temporary: "slack timeout" (errors.Is
// context.DeadlineExceeded) or "slack canceled" (errors.Is context.Canceled).
func classify(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	// The caller gave up: say so, and never as a permanent failure, so the
	// delivery is retried rather than recorded as refused.
	if ctxErr := ctx.Err(); ctxErr != nil {
		if !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w: %w", ctxErr, err)
		}
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			return herald.Temporary(err, "slack timeout", 0)
		}
		return herald.Temporary(err, "slack canceled", 0)
	}

	var rl *slackgo.RateLimitedError
	if errors.As(err, &rl) {
		return herald.Temporary(err, "slack rate_limited", rl.RetryAfter)
	}
	var sc slackgo.StatusCodeError
	if errors.As(err, &sc) {
		switch {
		case sc.Code == http.StatusTooManyRequests:
			return herald.Temporary(err, "slack rate_limited", 0)
		case sc.Code >= 500, sc.Code == http.StatusRequestTimeout, sc.Code == http.StatusTooEarly:
			return herald.Temporary(err, "slack http_"+strconv.Itoa(sc.Code), 0)
		default:
			return herald.Permanent(err, "slack http_"+strconv.Itoa(sc.Code))
		}
	}
	var se slackgo.SlackErrorResponse
	if errors.As(err, &se) {
		wrapped := fmt.Errorf("slack refused the call: %w", err)
		if temporaryCodes[se.Err] {
			return herald.Temporary(wrapped, "slack "+se.Err, 0)
		}
		return herald.Permanent(wrapped, "slack "+se.Err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		// Config.Timeout or a network deadline ran out. Say so through
		// context.DeadlineExceeded, as for the caller's deadline above:
		// net/http's Client.Timeout errors already wrap it, a bare i/o
		// timeout does not.
		if !errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return herald.Temporary(err, "slack timeout", 0)
	}
	// Dropped connections, refused dials and garbled responses (a proxy's HTML
	// page, a truncated body) are all worth another try.
	return herald.Temporary(err, "slack network", 0)
}
