package workflows_test

import (
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/workflows"
	"github.com/stretchr/testify/require"
)

func TestAudience(t *testing.T) {
	t.Parallel()
	c := herald.Customer{
		ID: "c42", Email: "ada@acme.example", Locale: "ja-JP", Timezone: "Asia/Tokyo",
		Attributes: map[string]any{"plan": "pro", "seats": 12, "id": "not the id"},
		CreatedAt:  time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
	}
	env := workflows.CustomerEnv(c, false, map[string]bool{"product-updates": true, "newsletter": false}, map[herald.Channel]bool{herald.ChannelEmail: true, herald.ChannelSlack: false})
	for _, tt := range []struct {
		filter string
		want   bool
	}{
		{``, true},
		{`customer.plan == "pro" && customer.locale startsWith "ja"`, true},
		{`customer.seats > 10 && customer.timezone == "Asia/Tokyo"`, true},
		{`customer.id == "c42"`, true}, // the named field wins over an attribute
		{`customer.attributes.id == "not the id"`, true},
		{`customer.topics["product-updates"] && !customer.topics.newsletter`, true},
		{`customer.channels.slack`, false},
		{`customer.email endsWith "@acme.example" && !customer.paused`, true},
		{`customer.created_at >= "2026-01-01"`, true},
		{`customer.plan in ["team", "enterprise"]`, false},
	} {
		a, err := workflows.CompileAudience(tt.filter)
		require.NoError(t, err, tt.filter)
		got, err := a.Match(env)
		require.NoError(t, err, tt.filter)
		require.Equal(t, tt.want, got, tt.filter)
	}

	// A filter that fails on one customer's data does not select them.
	a, err := workflows.CompileAudience(`customer.missing > 3`)
	require.NoError(t, err)
	got, err := a.Match(env)
	require.Error(t, err)
	require.False(t, got)
}

func TestAudienceCompileErrorsNameTheColumn(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ filter, msg string }{
		{`customer.plan == `, "filter: unexpected token EOF (column 16)"},
		{`plan == "pro"`, "filter: unknown name plan (column 1)"},
		{`"pro"`, "expected bool"},
		{`now() > 1`, "filter: unknown name now"},
	} {
		_, err := workflows.CompileAudience(tt.filter)
		require.Error(t, err, tt.filter)
		require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
		require.Contains(t, herald.ErrorMessage(err), tt.msg, tt.filter)
	}
}
