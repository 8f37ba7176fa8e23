package engine_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

// The critical queue has a lane of its own: with every slot of the other
// lane held by slow default tasks, a critical task still runs at once.
func TestCriticalLaneRunsBesideABusyWorker(t *testing.T) {
	t.Parallel()
	rdb := redistest.Start(t).Client()
	const concurrency = 3
	w := engine.NewWorker(rdb, asynq.Config{
		Concurrency: concurrency, Queues: map[string]int{"critical": 6, "default": 4, "bulk": 2}, StrictPriority: true,
		TaskCheckInterval: 20 * time.Millisecond, ShutdownTimeout: time.Second, LogLevel: asynq.FatalLevel,
	}, 0)
	require.Equal(t, [][]string{{"critical"}, {"bulk", "default"}}, w.Lanes())

	hold := make(chan struct{})
	started := make(chan string, 2*concurrency)
	ran := make(chan struct{}, 1)
	mux := asynq.NewServeMux()
	mux.HandleFunc("slow", func(ctx context.Context, t *asynq.Task) error {
		started <- string(t.Payload())
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil
	})
	mux.HandleFunc("urgent", func(context.Context, *asynq.Task) error {
		ran <- struct{}{}
		return nil
	})
	cl := asynq.NewClientFromRedisClient(rdb)
	for i := range 2 * concurrency {
		_, err := cl.Enqueue(asynq.NewTask("slow", []byte(strconv.Itoa(i))), asynq.Queue("default"))
		require.NoError(t, err)
	}
	require.NoError(t, w.Start(mux))
	defer w.Shutdown()
	defer close(hold)
	for range concurrency {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("the default lane did not take its tasks")
		}
	}
	_, err := cl.Enqueue(asynq.NewTask("urgent", nil), asynq.Queue("critical"))
	require.NoError(t, err)
	select {
	case <-ran:
	case <-time.After(30 * time.Second):
		t.Fatal("the critical task waited for a slot of the busy lane")
	}
	require.Len(t, started, 0, "the default lane took no more than its slots")
}

// Without a critical queue there is one lane with every queue.
func TestOneLaneWithoutCritical(t *testing.T) {
	rdb := redistest.Start(t).Client()
	w := engine.NewWorker(rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{"default": 1, "bulk": 1}}, 0)
	require.Equal(t, [][]string{{"bulk", "default"}}, w.Lanes())
	require.Equal(t, 2, engine.CriticalConcurrency(2))
	require.Equal(t, 5, engine.CriticalConcurrency(20))
}
