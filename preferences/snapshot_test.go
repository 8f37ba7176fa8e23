package preferences_test

import (
	"context"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/preferences"
	"github.com/stretchr/testify/require"
)

func TestSnapshotMatchesSingleReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	s := preferences.NewStore(redistest.Start(t).Client(), func() time.Time { return now })
	off := false
	_, _, err := s.Apply(ctx, "c1", preferences.Patch{Channels: map[herald.Channel]bool{herald.ChannelSlack: off}}, preferences.Actor{Kind: "api"}, "api")
	require.NoError(t, err)
	require.NoError(t, s.Suppress(ctx, herald.ChannelEmail, "Ada@Example.com", "smtp 550 5.1.1"))
	require.NoError(t, s.RecordSend(ctx, "c1", "marketing", now.Add(-2*time.Hour)))
	require.NoError(t, s.RecordSend(ctx, "c1", "marketing", now.Add(-30*time.Hour)))

	addrs := map[herald.Channel]string{herald.ChannelEmail: "ada@example.com", herald.ChannelSlack: "U1"}
	snap, err := s.Snapshot(ctx, "c1", addrs, "marketing", now.Add(-24*time.Hour))
	require.NoError(t, err)
	want, err := s.Get(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, want, snap.Prefs)
	require.Equal(t, map[herald.Channel]bool{herald.ChannelEmail: true, herald.ChannelSlack: false}, snap.Suppressed)
	require.Equal(t, []time.Time{now.Add(-2 * time.Hour)}, snap.RecentSends)

	empty, err := s.Snapshot(ctx, "nobody", addrs, "", time.Time{})
	require.NoError(t, err)
	require.Equal(t, herald.Preferences{}, empty.Prefs)
	require.Nil(t, empty.RecentSends)
}
