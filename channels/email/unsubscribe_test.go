package email_test

import (
	"bytes"
	"context"
	"net/mail"
	"strings"
	"testing"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/channels/email"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/stretchr/testify/require"
)

// headerLines returns the lines of raw's header section and, among them,
// those of the List-Unsubscribe field.
func headerLines(t *testing.T, raw []byte) (all, unsub []string) {
	t.Helper()
	end := bytes.Index(raw, []byte("\r\n\r\n"))
	require.Positive(t, end)
	all = strings.Split(string(raw[:end]), "\r\n")
	in := false
	for _, l := range all {
		switch {
		case strings.HasPrefix(l, "List-Unsubscribe:"):
			in = true
		case in && (strings.HasPrefix(l, " ") || strings.HasPrefix(l, "\t")):
		default:
			in = false
		}
		if in {
			unsub = append(unsub, l)
		}
	}
	return all, unsub
}

func TestListUnsubscribeFolded(t *testing.T) {
	t.Parallel()
	mailto := "mailto:unsubscribe@herald.test?subject=unsubscribe"
	longest := "https://herald.test/u?t=" + strings.Repeat("a", 400-len("https://herald.test/u?t="))
	tests := []struct {
		name  string
		urls  []string
		lines int
	}{
		{"Short", []string{"https://herald.test/u?t=1", "mailto:u@herald.test"}, 1},
		// "List-Unsubscribe: <https://herald.test/u?t=0123456789>, <mailto:u@herald.test>"
		// is 78 characters; one more and it folds.
		{"JustFits", []string{"https://herald.test/u?t=0123456789", "mailto:u@herald.test"}, 1},
		{"JustOver", []string{"https://herald.test/u?t=0123456789", "mailto:uu@herald.test"}, 2},
		{"OneFitting", []string{mailto}, 1},
		{"OneLong", []string{longUnsubscribe}, 1},
		{"LongThenMailto", []string{longUnsubscribe, mailto}, 2},
		{"MailtoThenLong", []string{mailto, longUnsubscribe}, 2},
		{"TwoMedium", []string{"https://herald.test/unsubscribe?token=" + strings.Repeat("b", 30), mailto}, 2},
		{"Longest", []string{longest, mailto}, 2},
		{"Three", []string{"https://herald.test/a", "https://herald.test/b", "mailto:a@herald.test?subject=" + strings.Repeat("c", 40)}, 2},
	}
	b := setup(t, smtpserver.Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := message(func(m *herald.Message) { m.Unsubscribe = tt.urls })
			_, err := b.sender.Send(context.Background(), m)
			require.NoError(t, err)
			var raw []byte
			for _, r := range b.srv.Messages() {
				if r.MessageID == email.MessageID(m.ID, fromDomain) {
					raw = r.Data
				}
			}
			require.NotNil(t, raw)

			msg, err := mail.ReadMessage(bytes.NewReader(raw))
			require.NoError(t, err)
			entries := make([]string, len(tt.urls))
			for i, u := range tt.urls {
				entries[i] = "<" + u + ">"
			}
			require.Equal(t, strings.Join(entries, ", "), msg.Header.Get("List-Unsubscribe"), "unfolded, the value is the list")

			all, unsub := headerLines(t, raw)
			for _, l := range all {
				require.LessOrEqual(t, len(l), 998, "RFC 5322 line limit: %q", l)
			}
			require.Len(t, unsub, tt.lines, "%q", unsub)
			for _, l := range unsub {
				// Never broken inside <...>.
				require.Equal(t, strings.Count(l, "<"), strings.Count(l, ">"), "%q", l)
				if len(l) > 78 {
					require.Equal(t, 1, strings.Count(l, "<"), "only a line with a single URL too long for 78 characters is longer: %q", l)
				}
			}
		})
	}
}
