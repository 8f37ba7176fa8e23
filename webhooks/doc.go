// Package webhooks tells the app what happened to its customers' messages
// and journeys: each event is a signed JSON POST to the endpoints that
// subscribed to its type, delivered through its own asynq queue with
// retries and backoff for a day, in the order the events happened for each
// customer. Events carry IDs and references, never a message body or an
// address.
//
// The engine only enqueues (Emit); the queue is the workers' lowest
// priority, so a slow or failing endpoint never holds up a message.
package webhooks
