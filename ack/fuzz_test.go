package ack_test

import (
	"net/url"
	"testing"
	"time"
)

// FuzzSlackInteraction posts correctly signed requests with arbitrary
// payloads: the answer is always 200 (accepted or ignored) or 401 (a
// replay of an identical request), never a server error or a panic.
func FuzzSlackInteraction(f *testing.F) {
	b := setup(f)
	for _, seed := range []string{
		`{"type":"block_actions","user":{"id":"U1"},"container":{"channel_id":"D1","message_ts":"1.2"},"actions":[{"type":"button","action_id":"checkout.resumed","value":"m_nope","text":{"type":"plain_text","text":"Yes"}}]}`,
		`{"type":"block_actions","actions":[{"type":"button","action_id":"../../etc","value":"x"}]}`,
		`{"type":"view_submission"}`,
		`{"type":"block_actions","actions":[null]}`,
		`{}`, `[]`, `null`, `not json`, ``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		body := "payload=" + url.QueryEscape(payload)
		sig, stamp := sign(secret, time.Now(), body)
		if code := b.postSlack(t, body, sig, stamp); code != 200 && code != 401 {
			t.Fatalf("payload %q: status %d", payload, code)
		}
	})
}

// FuzzInboundEmail posts arbitrary bodies to the inbound-mail webhook: a
// 2xx or 4xx answer, never a server error.
func FuzzInboundEmail(f *testing.F) {
	b := setup(f)
	for _, seed := range []string{
		`{"message_id":"<r1@mail.example>","in_reply_to":"<x@lumen.example>","references":["<a@b>"],"from":"Ada <ada@example.com>","text":"yes"}`,
		`{"message_id":"","in_reply_to":"\r\nBcc: x@y"}`,
		`{"references":[1,2,3]}`,
		`{"unknown":true}`, `[]`, `{`, ``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		if code, _ := b.inbound(t, apiToken, body); code >= 500 {
			t.Fatalf("body %q: status %d", body, code)
		}
	})
}
