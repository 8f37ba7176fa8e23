package httpapi

import (
	"net/http"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
)

// inboundEmailBody is what an inbound-mail webhook posts for a reply. Only
// the threading headers are used; sender and text are accepted and not
// stored.
type inboundEmailBody struct {
	MessageID  string   `json:"message_id"`
	InReplyTo  string   `json:"in_reply_to"`
	References []string `json:"references"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	Subject    string   `json:"subject"`
	Text       string   `json:"text"`
	HTML       string   `json:"html"`
}

// inboundEmail maps a reply back to the message it answers (In-Reply-To,
// then References from the newest) and acknowledges it: message.replied
// for the customer. A reply to no herald message is 200 "ignored", so the
// webhook does not retry it.
func (s *server) inboundEmail(w http.ResponseWriter, r *http.Request, _ string) error {
	var b inboundEmailBody
	if _, err := readJSON(w, r, s.cfg.MaxBody, &b); err != nil {
		return err
	}
	if b.InReplyTo == "" && len(b.References) == 0 {
		return herald.Errorf(herald.EInvalid, "in_reply_to or references: required to find the message replied to")
	}
	ids := []string{b.InReplyTo}
	for i := len(b.References) - 1; i >= 0; i-- {
		ids = append(ids, b.References[i])
	}
	m, err := s.e.SentEmail(r.Context(), ids...)
	if herald.ErrorCode(err) == herald.ENotFound {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ignored", "reason": "not a reply to a message herald sent"})
		return nil
	}
	if err != nil {
		return err
	}
	// The reply's own Message-ID makes a retried webhook count once.
	id := redisstore.NewID("reply_")
	if b.MessageID != "" {
		id = "reply_" + redisstore.Hash(b.MessageID)[:24]
	}
	if err := s.e.Acknowledge(r.Context(), engine.Ack{
		ID: id, Kind: engine.AckReply, CustomerID: m.CustomerID, MessageID: m.MessageID,
		Channel: herald.ChannelEmail, Event: engine.EventReplied,
	}, nil); err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "accepted", "customer_id": m.CustomerID, "message_id": m.MessageID})
	return nil
}
