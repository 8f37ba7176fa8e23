package herald_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/stretchr/testify/require"
)

func TestValidEventName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"trial.started", true},
		{"payment_failed-2", true},
		{"0day", true},
		{strings.Repeat("a", herald.MaxEventNameLen), true},
		{strings.Repeat("a", herald.MaxEventNameLen+1), false},
		{"", false},
		{"Payment.Failed", false},
		{"Sub Cancelled", false},
		{".hidden", false},
		{"-dash", false},
		{"a/b", false},
	} {
		err := herald.ValidEventName(tt.name)
		require.Equal(t, tt.ok, err == nil, "%q: %v", tt.name, err)
		if err != nil {
			require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
		}
	}
}
