package redistest_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/heraldhq/herald/internal/redistest"
	"github.com/redis/go-redis/v9"
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

// A clean restart keeps every acknowledged write, even with everysec.
func TestRestartCleanKeepsEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "everysec")
	c := s.Client()
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range 5000 {
			p.Set(ctx, "k"+strconv.Itoa(i), i, 0)
		}
		return nil
	})
	require.NoError(t, err)
	s.RestartClean()
	n, err := c.DBSize(ctx).Result()
	require.NoError(t, err)
	require.Equal(t, int64(5000), n)
}
