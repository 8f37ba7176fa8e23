// Package preferences owns a customer's say over what herald sends: the
// contact policy (channels, topics, pause, quiet hours, frequency caps,
// suppression) as a pure function, the Redis store for preferences, the
// append-only consent log that proves every change, the suppression list, the
// send counters behind frequency caps, and the signed tokens that let a
// customer reach their own preference centre and unsubscribe in one click.
//
// policy.go, quiet.go, patch.go, consent.go and token.go read neither Redis
// nor the clock, so the decision "may we send this now?" is tested in
// microseconds with fixed times; store.go is the Redis adapter.
package preferences
