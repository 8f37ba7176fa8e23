package webhooks_test

import (
	"fmt"
	"time"

	"github.com/heraldhq/herald/webhooks"
)

// An app checks each request's Herald-Signature header against the raw
// body before trusting it.
func ExampleVerify() {
	secret := []byte("whsec-from-HERALD_WEBHOOK_APP_SECRET")
	body := []byte(`{"id":"evt_1","type":"message.sent","customer_id":"c-1001"}`)
	sent := time.Date(2026, 3, 27, 10, 0, 0, 0, time.UTC)
	header := webhooks.Sign(secret, sent, body) // what herald puts in Herald-Signature

	received := sent.Add(2 * time.Second)
	fmt.Println(webhooks.Verify(secret, header, body, received, 5*time.Minute))
	fmt.Println(webhooks.Verify(secret, header, []byte(`{"id":"evt_1","type":"message.failed"}`), received, 5*time.Minute))
	fmt.Println(webhooks.Verify(secret, header, body, sent.Add(time.Hour), 5*time.Minute))
	// Output:
	// <nil>
	// webhooks: signature does not match
	// webhooks: signature time 2026-03-27T10:00:00Z is outside the tolerance
}
