// Package client is what Go applications import to talk to herald: upsert
// customers, send events that start and advance journeys, send one-off
// messages and change a customer's preferences. It writes to the same Redis
// the herald workers read, through asynq, so it needs no HTTP hop.
//
//	c, err := client.New("redis://localhost:6379/0")
//	_, err = c.UpsertCustomer(ctx, herald.Customer{ID: "c42", Email: "ada@example.com", Locale: "pl"})
//	_, err = c.Event(ctx, "c42", "trial.started", map[string]any{"plan": "Pro"})
//
// Errors are *herald.Error values; herald.ErrorCode(err) says what to do:
//
//   - herald.EInvalid: the request can never succeed as it is (a bad
//     customer ID or event name, an unknown channel or mode, a missing
//     template or topic). Fix the call; do not retry.
//   - herald.ENotFound: no such customer. Upsert the customer first.
//   - herald.ETemporary: Redis is unreachable. Retry later; with an
//     idempotency key a retry never counts twice.
//
// Unknown templates and topics, and the customer's preferences, are checked
// by the worker when it runs the message; the customer's timeline says why a
// message was or was not sent.
package client
