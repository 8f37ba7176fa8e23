package herald_test

import (
	"strings"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/stretchr/testify/require"
)

// One rule for event names, the API's: what it refuses, workflows and
// templates refuse too.
func TestValidEventName(t *testing.T) {
	t.Parallel()
	valid := []string{"trial.started", "payment_failed-2", "0day", strings.Repeat("a", herald.MaxEventNameLen)}
	for _, name := range valid {
		require.NoError(t, herald.ValidEventName(name), name)
	}
	refused := []string{"", "Payment.Failed", "Sub Cancelled", ".hidden", "-dash", "a/b", strings.Repeat("a", herald.MaxEventNameLen+1)}
	for _, name := range refused {
		err := herald.ValidEventName(name)
		require.Error(t, err, name)
		require.Equal(t, herald.EInvalid, herald.ErrorCode(err), name)
	}
}
