// Package faults holds herald's fault suite: end-to-end scenarios that run
// real `herald worker` processes against a real redis-server, an in-process
// SMTP server and a fake Slack Web API, break one of them on purpose (kill
// -9, Redis restart, SMTP 4xx/5xx, dropped connections, Slack 429/5xx, a
// deleted follow-up, SIGTERM) and check that no message is lost and none is
// sent twice outside the narrow window the delivery guarantee allows.
//
// Run it with `make faults` (verbose, prints one line per scenario) or as
// part of `go test ./...`. HERALD_FAULTS_MESSAGES sets the messages per
// scenario (default 2000) and HERALD_FAULTS_OUTAGE the length of each
// provider outage (default 10s). The Redis Cluster variant runs with
// `make cluster-test` (build tag cluster).
package faults
