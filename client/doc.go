// Package client is what Go applications import to talk to herald: upsert
// customers, send events that start and advance journeys, send one-off
// messages and change a customer's preferences. It writes to the same Redis
// the herald workers read, through asynq, so it needs no HTTP hop.
//
//	c, err := client.New("redis://localhost:6379/0")
//	_, err = c.UpsertCustomer(ctx, herald.Customer{ID: "c42", Email: "ada@example.com", Locale: "pl"})
//	_, err = c.Event(ctx, "c42", "trial.started", map[string]any{"plan": "Pro"})
//
// Errors are *herald.Error values: herald.ErrorCode(err) is herald.EInvalid
// for a request that can never succeed, herald.ENotFound for an unknown
// customer, herald.ETemporary when Redis is unreachable.
package client
