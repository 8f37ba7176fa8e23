// Package herald holds the domain of customer communication: customers,
// channels, topics, preferences, events, messages, deliveries and the
// timeline, the Sender interface every channel implements, and the error
// codes every layer uses to classify failures.
//
// It imports only the standard library. Adapters live in sub-packages named
// after the technology they speak (channels/email, channels/slack, the Redis
// stores in engine and preferences); cmd/herald wires them together.
package herald
