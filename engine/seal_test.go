package engine_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/heraldhq/herald/internal/wire"
)

// Data keys named like secrets never travel in a task payload: the archive
// of a failed message shows the key and "[sealed]", while the email that
// went out carries the value.
func TestSecretsStayOutOfTaskPayloads(t *testing.T) {
	t.Parallel()
	b := setupWith(t, 4, "testdata/templates", func(o *engine.Options) {
		o.SecretKeys = regexp.MustCompile(`^plan$`) // the test template prints .data.plan
	})
	b.customer(t, herald.Customer{ID: "c1", Email: "ada@example.com"})
	b.customer(t, herald.Customer{ID: "c2", Email: "gone@example.com"})
	b.smtp.SetFault(smtpserver.Fault{Stage: "RCPT", Code: 550, Enhanced: "5.1.1", Rcpt: "gone@example.com"})

	data := map[string]any{"plan": "Secret-Plan-77", "reset_url": "https://app.example/reset?token=tok-123", "seats": 3}
	send(t, b, wire.Message{CustomerID: "c1", Channels: []herald.Channel{herald.ChannelEmail}, Data: data})
	send(t, b, wire.Message{CustomerID: "c2", Channels: []herald.Channel{herald.ChannelEmail}, Data: data})

	eventually(t, func() bool { return len(b.smtp.Messages()) == 1 }, "c1's email is sent")
	require.Contains(t, string(b.smtp.Messages()[0].Data), "Secret-Plan-77", "the worker renders the sealed value")

	var archived []string
	eventually(t, func() bool {
		archived = archived[:0]
		for _, q := range wire.Queues {
			tasks, _ := b.insp.ListArchivedTasks(q)
			for _, tk := range tasks {
				archived = append(archived, string(tk.Payload))
			}
		}
		return len(archived) == 1
	}, "c2's message is archived after the hard bounce")
	p := archived[0]
	require.NotContains(t, p, "Secret-Plan-77")
	require.NotContains(t, p, "tok-123", "a link carrying a token is sealed by its query, whatever its key")
	require.Contains(t, p, `"plan":"[sealed]"`)
	require.Contains(t, p, `"seats":3`, "other data stays readable")
	require.True(t, strings.Contains(p, `"sealed":["plan","reset_url"]`), "the payload names what was sealed: %s", p)
}
