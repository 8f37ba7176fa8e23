// Package slackapi is a fake Slack Web API that speaks the real wire format,
// so an unmodified slack-go client can talk to it. `herald dev` uses it to
// capture Slack messages into a JSON Lines file instead of a workspace, and
// tests use it to steer Slack into rate limits, outages, refusals and slow
// or hung answers (see Fault).
//
// It implements the few methods herald calls: auth.test, chat.postMessage,
// chat.update, users.lookupByEmail and conversations.open.
package slackapi
