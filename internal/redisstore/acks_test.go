package redisstore_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/stretchr/testify/require"
)

func TestNormMessageID(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"<Abc.1@Mail.Example.com>": "<abc.1@mail.example.com>",
		" abc@example.com ":        "<abc@example.com>",
		"":                         "",
		"<>":                       "",
		"no-at-sign":               "",
		"<a b@example.com>":        "",
		"<a@example.com><b@x>":     "",
	} {
		require.Equal(t, want, redisstore.NormMessageID(in), "%q", in)
	}
	require.Equal(t, redisstore.EmailIndexKey("<A@example.com>"), redisstore.EmailIndexKey("a@EXAMPLE.com"),
		"one index key however the Message-ID is written")
}

func TestAckIndexes(t *testing.T) {
	t.Parallel()
	require.Equal(t, map[string]string{"herald:msg:m1": "c1"},
		redisstore.AckIndexes(herald.ChannelSlack, "c1", "m1", "C1:1700000000.000100"))
	require.Equal(t, map[string]string{redisstore.EmailIndexKey("<x@example.com>"): "c1|m1"},
		redisstore.AckIndexes(herald.ChannelEmail, "c1", "m1", "<x@example.com>"))
	require.Empty(t, redisstore.AckIndexes(herald.ChannelEmail, "c1", "m1", "provider-id"), "no Message-ID, no reply to match")
	require.Empty(t, redisstore.AckIndexes(herald.ChannelEmail, "c1", "m1", "<hm1.ye3nrahzdlfd4ttbwvsh7mflyq4wfxfd4bsrxhyotaujxuomn4@example.com>"),
		"a sealed Message-ID carries what a reply needs: no index")
}

// The indexes a delivery writes lead an acknowledgement back to it.
func TestAckIndexesFindMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, idx := range []map[string]string{
		redisstore.AckIndexes(herald.ChannelSlack, "c1", "m1", "C1:1700000000.000100"),
		redisstore.AckIndexes(herald.ChannelEmail, "c2", "m2", "<Reply.Me@example.com>"),
	} {
		for k, v := range idx {
			require.NoError(t, b.rdb.Set(b.ctx, k, v, time.Hour).Err())
		}
	}
	cust, err := b.st.MessageCustomer(b.ctx, "m1")
	require.NoError(t, err)
	require.Equal(t, "c1", cust)
	_, err = b.st.MessageCustomer(b.ctx, "m2")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "an email is no Slack message: %v", err)

	// The first Message-ID herald sent wins; others are skipped.
	cust, msg, err := b.st.EmailMessage(b.ctx, "not an id", "<other@example.com>", "reply.me@EXAMPLE.com")
	require.NoError(t, err)
	require.Equal(t, []string{"c2", "m2"}, []string{cust, msg})
	_, _, err = b.st.EmailMessage(b.ctx, "<other@example.com>")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "got %v", err)
	_, _, err = b.st.EmailMessage(b.ctx)
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "got %v", err)

	// A malformed index entry matches nothing.
	require.NoError(t, b.rdb.Set(b.ctx, redisstore.EmailIndexKey("<bad@example.com>"), "no-separator", time.Hour).Err())
	_, _, err = b.st.EmailMessage(b.ctx, "<bad@example.com>")
	require.Equal(t, herald.ENotFound, herald.ErrorCode(err), "got %v", err)
}

func TestMarkAckSeen(t *testing.T) {
	t.Parallel()
	b := setup(t)
	first, err := b.st.MarkAckSeen(b.ctx, "c1", "a1", time.Hour)
	require.NoError(t, err)
	require.True(t, first)
	require.Greater(t, b.pttl(t, redisstore.Key("c1", "ack", "a1")), 59*time.Minute)
	first, err = b.st.MarkAckSeen(b.ctx, "c1", "a1", time.Hour)
	require.NoError(t, err)
	require.False(t, first, "seen once")
	first, err = b.st.MarkAckSeen(b.ctx, "c2", "a1", time.Hour)
	require.NoError(t, err)
	require.True(t, first, "per customer")

	require.NoError(t, b.st.ForgetAckSeen(b.ctx, "c1", "a1"))
	first, err = b.st.MarkAckSeen(b.ctx, "c1", "a1", time.Hour)
	require.NoError(t, err)
	require.True(t, first, "forgotten, counts again")
}

func TestAckUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, ok, err := b.st.AckUpdate(b.ctx, "c1", "a1")
	missing(t, ok, err)

	require.NoError(t, b.st.SaveAckUpdate(b.ctx, "c1", "a1", []byte(`{"text":"chosen"}`), time.Hour))
	require.Greater(t, b.pttl(t, redisstore.Key("c1", "ack-update", "a1")), 59*time.Minute)
	upd, ok, err := b.st.AckUpdate(b.ctx, "c1", "a1")
	require.NoError(t, err)
	require.True(t, ok)
	require.JSONEq(t, `{"text":"chosen"}`, string(upd))

	require.NoError(t, b.st.DeleteAckUpdate(b.ctx, "c1", "a1"))
	_, ok, err = b.st.AckUpdate(b.ctx, "c1", "a1")
	missing(t, ok, err)
}
