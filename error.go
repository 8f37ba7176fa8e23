package herald

import (
	"errors"
	"fmt"
	"time"
)

// Error codes shared by every layer: logs, metrics, the timeline and the
// HTTP API classify failures with them.
const (
	// ETemporary: the provider or a dependency failed in a way a retry can fix.
	ETemporary = "temporary"
	// EPermanent: the provider refused for good (bad address, unknown user).
	EPermanent = "permanent"
	// EInvalid: the input is malformed; retrying the same input cannot help.
	EInvalid = "invalid"
	// EOptedOut: the customer said no to this channel or topic.
	EOptedOut = "opted_out"
	// ENotFound: no such customer, template or workflow.
	ENotFound = "not_found"
	// EConflict: the request contradicts an earlier one (idempotency key reuse).
	EConflict = "conflict"
	// EInternal: a bug or an unexpected state.
	EInternal = "internal"
	// ERateLimited: a shared provider rate limit is reached; the delivery
	// waits RetryAfter and is not counted as a failure.
	ERateLimited = "rate_limited"
)

// Error is herald's error: a machine-readable code, a human message and, for
// provider failures, the provider's own reason and when to retry.
type Error struct {
	Code    string
	Message string
	// Reason is the provider's or policy's own word, e.g. "users_not_found",
	// "550 5.1.1", "quiet_hours".
	Reason string
	// RetryAfter is how long the provider asked us to wait (temporary only).
	RetryAfter time.Duration
	// Err is the underlying error, kept for errors.Is/As and logs.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Reason != "" && msg != e.Reason {
		return fmt.Sprintf("%s: %s (%s)", e.Code, msg, e.Reason)
	}
	return fmt.Sprintf("%s: %s", e.Code, msg)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given code and formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Temporary wraps err as a temporary failure, retryable after retryAfter
// (zero: use the default backoff).
func Temporary(err error, reason string, retryAfter time.Duration) *Error {
	return &Error{Code: ETemporary, Message: errMsg(err), Reason: reason, RetryAfter: retryAfter, Err: err}
}

// Permanent wraps err as a permanent failure.
func Permanent(err error, reason string) *Error {
	return &Error{Code: EPermanent, Message: errMsg(err), Reason: reason, Err: err}
}

func errMsg(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal for
// any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the human message of err without its code prefix.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) && e.Message != "" {
		return e.Message
	}
	return err.Error()
}

// ErrorReason returns the provider's or policy's reason recorded on err.
func ErrorReason(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// RetryAfter returns how long the provider asked to wait, or zero.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// RateLimited returns an ERateLimited error asking to wait d.
func RateLimited(limit string, d time.Duration) *Error {
	return &Error{Code: ERateLimited, Message: "rate limit " + limit + " reached", Reason: limit, RetryAfter: d}
}

// IsTemporary reports whether a retry may succeed.
func IsTemporary(err error) bool { return ErrorCode(err) == ETemporary }
