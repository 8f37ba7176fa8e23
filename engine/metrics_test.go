package engine

import (
	"testing"

	"github.com/heraldhq/herald/internal/wire"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// The backlog gauges tell what a scheduled or retry task waits for from its
// type, its task ID's kind and, in asynq's retry set, its last error.
func TestBacklogState(t *testing.T) {
	t.Parallel()
	wait := (&waitError{reason: "customer c1 is busy", after: 1e9}).Error()
	for _, tt := range []struct {
		name string
		task asynq.TaskInfo
		want string
	}{
		{"inline retry", asynq.TaskInfo{ID: "d:m_1:email:retry:1", State: asynq.TaskStateScheduled, Type: wire.DeliverType("email")}, "retrying"},
		{"rate-limit slot", asynq.TaskInfo{ID: "d:m_1:email:wait:3", State: asynq.TaskStateScheduled, Type: wire.DeliverType("email")}, "rate_limited"},
		{"policy deferral of a delivery", asynq.TaskInfo{ID: "d:m_1:slack:defer:1", State: asynq.TaskStateScheduled, Type: wire.DeliverType("slack")}, "deferred"},
		{"policy deferral of a message", asynq.TaskInfo{ID: "m:m_1:defer:2", State: asynq.TaskStateScheduled, Type: wire.TypeMessage}, "deferred"},
		{"an ID that looks like a kind", asynq.TaskInfo{ID: "d:retry:wait:email:defer:1", State: asynq.TaskStateScheduled, Type: wire.DeliverType("email")}, "deferred"},
		{"journey follow-up", asynq.TaskInfo{ID: "w:j_1:2", State: asynq.TaskStateScheduled, Type: wire.TypeWake}, "follow_up"},
		{"failed delivery task", asynq.TaskInfo{ID: "d:m_1:email:retry:1", State: asynq.TaskStateRetry, LastErr: "smtp 451 4.2.0: try later"}, "retrying"},
		{"busy customer", asynq.TaskInfo{ID: "e:ev_1", State: asynq.TaskStateRetry, Type: wire.TypeEvent, LastErr: wait}, "waiting"},
		{"follow-up that failed", asynq.TaskInfo{ID: "w:j_1:2", State: asynq.TaskStateRetry, Type: wire.TypeWake, LastErr: "redis: connection refused"}, "retrying"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, backlogState(&tt.task))
		})
	}
}
