package redistest_test

import (
	"context"
	"testing"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/stretchr/testify/require"
)

func TestStartIsolatedAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	b := redistest.Start(t)
	require.NotEqual(t, a.Addr, b.Addr)
	require.NoError(t, a.Client().Set(ctx, "k", "v", 0).Err())
	require.Equal(t, int64(0), b.Client().Exists(ctx, "k").Val())

	a.Restart()
	got, err := a.Client().Get(ctx, "k").Result()
	require.NoError(t, err)
	require.Equal(t, "v", got, "AOF data survives a restart")
}
