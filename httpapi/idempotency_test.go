package httpapi_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/stretchr/testify/require"
)

// A request cut off after it took its idempotency key (Redis failing, a
// crash) leaves the key pending. The client's retry is not refused with
// 409: it gets 503 with Retry-After while the key is held, and succeeds
// once the pending record has run out, within seconds.
func TestRetryAfterAnUnfinishedRequestSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.do(t, req{method: "PUT", path: "/v1/customers/c1", body: `{"email":"ada@example.com"}`})
	body := `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Pro"},"channels":["email"],"idempotency_key":"order-9"}`

	// What the cut-off request left behind: its pending record.
	var v map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &v))
	delete(v, "idempotency_key")
	canon, _ := json.Marshal(v)
	fp := sha256.Sum256(canon)
	_, seen, err := redisstore.New(b.rdb, nil).Remember(context.Background(), "app\x00/v1/messages\x00order-9",
		redisstore.Idempotent{Fingerprint: hex.EncodeToString(fp[:])}, 3*time.Second)
	require.NoError(t, err)
	require.False(t, seen)

	busy := b.do(t, req{method: "POST", path: "/v1/messages", body: body})
	require.Equal(t, http.StatusServiceUnavailable, busy.status, "%s", busy.body)
	require.Equal(t, "1", busy.header.Get("Retry-After"))

	// The client retries as told until the pending record runs out.
	ok := busy
	for deadline := time.Now().Add(15 * time.Second); ok.status == http.StatusServiceUnavailable && time.Now().Before(deadline); {
		ok = b.do(t, req{method: "POST", path: "/v1/messages", body: body})
	}
	require.Equal(t, http.StatusAccepted, ok.status, "%s", ok.body)

	// A different body under the same key is still a conflict.
	other := b.do(t, req{method: "POST", path: "/v1/messages", body: `{"customer_id":"c1","template":"hello","topic":"onboarding","data":{"plan":"Team"},"channels":["email"],"idempotency_key":"order-9"}`})
	require.Equal(t, http.StatusConflict, other.status)
}
