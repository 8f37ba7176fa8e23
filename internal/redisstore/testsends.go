package redisstore

import (
	"context"
	"encoding/json"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// TestSendLogCap is how many test sends the log keeps, newest first.
const TestSendLogCap = 200

const testSendsKey = "herald:testsends"

// TestSend is one line of the test-send log: a template rendered with
// sample (or given) data and sent to an author's own address, outside any
// customer's record.
type TestSend struct {
	ID         string         `json:"id"`
	At         time.Time      `json:"at"`
	Actor      string         `json:"actor"`
	To         string         `json:"to"`
	Channel    herald.Channel `json:"channel"`
	Template   string         `json:"template"`
	Locale     string         `json:"locale"` // the locale rendered, after fallback
	Subject    string         `json:"subject,omitempty"`
	Outcome    herald.Outcome `json:"outcome"` // sent or failed-…
	ProviderID string         `json:"provider_id,omitempty"`
	Error      string         `json:"error,omitempty"`
}

// LogTestSend adds a line to the test-send log, keeping the newest
// TestSendLogCap.
func (s *Store) LogTestSend(ctx context.Context, t TestSend) error {
	b, _ := json.Marshal(t)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, testSendsKey, b)
		p.LTrim(ctx, testSendsKey, 0, TestSendLogCap-1)
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// TestSends returns up to limit lines of the test-send log, newest first.
func (s *Store) TestSends(ctx context.Context, limit int) ([]TestSend, error) {
	raw, err := s.rdb.LRange(ctx, testSendsKey, 0, int64(max(limit, 1)-1)).Result()
	if err != nil {
		return nil, herald.Temporary(err, "redis", 0)
	}
	out := make([]TestSend, 0, len(raw))
	for _, r := range raw {
		var t TestSend
		if json.Unmarshal([]byte(r), &t) == nil {
			out = append(out, t)
		}
	}
	return out, nil
}
