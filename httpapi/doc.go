// Package httpapi is herald's HTTP surface: the JSON API apps call (/v1,
// bearer tokens), health and metrics endpoints, the embedded asynq dashboard
// and the customer-facing preference centre and one-click unsubscribe.
//
// Errors are always {"error":{"code":"…","message":"…"}} with 400 (malformed
// JSON, unknown field), 401 (token), 403 (a cross-origin write to the
// dashboard), 404, 409 (idempotency key reused with a different body), 413
// (body too large), 415 (not JSON), 422 (a field's value is wrong) or 429
// (a client over the public routes' rate limit, with Retry-After).
package httpapi
