package redisstore

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
)

// A consent line shows values as people write them, not as Go prints a
// map: quiet hours as a range, a channel order as JSON.
func TestConsentLineValues(t *testing.T) {
	var fromJSON any
	require.NoError(t, json.Unmarshal([]byte(`{"start":"22:00","end":"07:00"}`), &fromJSON))
	for _, tc := range []struct {
		v    any
		want string
	}{
		{nil, "unset"},
		{false, "false"},
		{"2026-12-01T09:00:00Z", "2026-12-01T09:00:00Z"},
		{&herald.QuietHours{Start: "22:00", End: "07:00"}, "22:00–07:00"},
		{fromJSON, "22:00–07:00"},
		{[]any{"slack", "email"}, `["slack","email"]`},
		{map[string]any{"a": 1.0}, `{"a":1}`},
	} {
		require.Equal(t, tc.want, showValue(tc.v), "%#v", tc.v)
	}
}
