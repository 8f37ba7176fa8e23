// Package deploy holds the files to run herald in production: a sample
// configuration (herald.yaml), a hardened systemd unit (herald.service) and
// a Grafana dashboard (grafana-dashboard.json). Its tests check that they
// agree with the code: the config loads and validates, the unit passes
// systemd-analyze verify, and the dashboard queries only metrics herald
// registers.
package deploy
