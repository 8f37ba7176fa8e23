// Package ack serves the HTTP side of acknowledgements: Slack button presses
// (POST /slack/interactions, signed by Slack) and tracked email links
// (GET /r/{token}, signed by herald). Handlers only verify, parse and
// enqueue; the engine's herald:interaction task does the work, so Slack's
// three-second limit and a customer's redirect never wait on it.
package ack
