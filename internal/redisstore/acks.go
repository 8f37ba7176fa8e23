package redisstore

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/msgid"
	"github.com/redis/go-redis/v9"
)

// Acknowledgements (a Slack button, a tracked click, an email reply) find
// their message through global indexes written with the ledger record, and
// count once through a per-customer "seen" key.

// MsgIndexKey maps a message ID to its customer; global, since a Slack
// button carries only the message ID.
func MsgIndexKey(messageID string) string { return "herald:msg:" + messageID }

// EmailIndexKey maps an email Message-ID (hashed) to "<customer>|<message>":
// the reply index of an email whose Message-ID is not sealed (sent before
// Message-IDs were, or with IDs too long to seal).
func EmailIndexKey(rfcID string) string {
	return "herald:msgid:" + Hash(NormMessageID(rfcID))
}

// NormMessageID returns "<local@domain>" for a Message-ID with or without
// angle brackets ("" if it is none).
func NormMessageID(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	if s == "" || strings.ContainsAny(s, "<> \t\r\n") || !strings.Contains(s, "@") {
		return ""
	}
	return "<" + strings.ToLower(s) + ">"
}

// AckIndexes returns the global indexes (key → value, for Claim.Finish) that
// let an acknowledgement find a delivered message again: a Slack button
// carries only the message ID, an email reply only its Message-ID
// (providerID). Clicks carry the customer in their signed token, and so
// does a sealed Message-ID (package msgid): only an email whose IDs were
// too long to seal gets the reply index.
func AckIndexes(ch herald.Channel, customerID, messageID, providerID string) map[string]string {
	indexes := map[string]string{}
	switch {
	case ch == herald.ChannelSlack:
		indexes[MsgIndexKey(messageID)] = customerID
	case ch == herald.ChannelEmail && NormMessageID(providerID) != "" && !msgid.IsSealed(providerID):
		indexes[EmailIndexKey(providerID)] = customerID + "|" + messageID
	}
	return indexes
}

// MessageCustomer returns the customer of a delivered Slack message
// (ENotFound when unknown or older than its retention).
func (s *Store) MessageCustomer(ctx context.Context, messageID string) (string, error) {
	cust, err := s.rdb.Get(ctx, MsgIndexKey(messageID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", herald.Errorf(herald.ENotFound, "no delivered message %q", messageID)
	}
	if err != nil {
		return "", herald.Temporary(err, "redis", 0)
	}
	return cust, nil
}

// EmailMessage returns the customer and message behind the first of these
// email Message-IDs that herald sent (ENotFound when none).
func (s *Store) EmailMessage(ctx context.Context, rfcIDs ...string) (customerID, messageID string, err error) {
	for _, id := range rfcIDs {
		if NormMessageID(id) == "" {
			continue
		}
		v, err := s.rdb.Get(ctx, EmailIndexKey(id)).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return "", "", herald.Temporary(err, "redis", 0)
		}
		cust, msg, ok := strings.Cut(v, "|")
		if !ok {
			continue
		}
		return cust, msg, nil
	}
	return "", "", herald.Errorf(herald.ENotFound, "no email herald sent matches")
}

func ackSeenKey(customerID, id string) string { return Key(customerID, "ack", id) }

func ackUpdateKey(customerID, id string) string { return Key(customerID, "ack-update", id) }

// MarkAckSeen remembers an acknowledgement ID for ttl; first is false when
// it was already seen.
func (s *Store) MarkAckSeen(ctx context.Context, customerID, id string, ttl time.Duration) (first bool, err error) {
	first, err = s.rdb.SetNX(ctx, ackSeenKey(customerID, id), 1, ttl).Result()
	if err != nil {
		return false, herald.Temporary(err, "redis", 0)
	}
	return first, nil
}

// ForgetAckSeen drops a seen mark, so a failed acknowledgement can be tried
// again.
func (s *Store) ForgetAckSeen(ctx context.Context, customerID, id string) error {
	return s.rdb.Del(ctx, ackSeenKey(customerID, id)).Err()
}

// SaveAckUpdate keeps what a Slack message becomes after a button press
// (task payloads carry no message bodies) for ttl.
func (s *Store) SaveAckUpdate(ctx context.Context, customerID, id string, update []byte, ttl time.Duration) error {
	if err := s.rdb.Set(ctx, ackUpdateKey(customerID, id), update, ttl).Err(); err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// AckUpdate returns the update saved for an acknowledgement; ok is false
// when there is none.
func (s *Store) AckUpdate(ctx context.Context, customerID, id string) (update []byte, ok bool, err error) {
	b, err := s.rdb.Get(ctx, ackUpdateKey(customerID, id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, herald.Temporary(err, "redis", 0)
	}
	return b, true, nil
}

// DeleteAckUpdate drops the update once shown.
func (s *Store) DeleteAckUpdate(ctx context.Context, customerID, id string) error {
	return s.rdb.Del(ctx, ackUpdateKey(customerID, id)).Err()
}

// MarkSlackRequest records a Slack request's signature for window; false
// when it was seen already (a replayed request).
func (s *Store) MarkSlackRequest(ctx context.Context, signature, timestamp string, window time.Duration) (bool, error) {
	fresh, err := s.rdb.SetNX(ctx, "herald:slack-replay:"+Hash(signature+"\x00"+timestamp), 1, window).Result()
	if err != nil {
		return false, herald.Temporary(err, "redis", 0)
	}
	return fresh, nil
}
