package email

import "time"

// SetIdleCheck sets how long a pooled connection of s may sit idle and still
// be reused without a check; call it before the first Send.
func SetIdleCheck(s *Sender, d time.Duration) { s.idleCheck = d }
