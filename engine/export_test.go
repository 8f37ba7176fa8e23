package engine

import "context"

// SetFanOutFault makes f run after each message a broadcast's fan-out
// queues; tests use it to stop a worker mid-walk.
func (e *Engine) SetFanOutFault(f func(ctx context.Context, queued int64)) { e.fanOutFault = f }

// DeleteIdleTask is deleteIdleTask, for erasure's race with a worker.
var DeleteIdleTask = deleteIdleTask

// SetRecordFault makes f run between queueing a broadcast's fan-out and
// writing its record.
func (e *Engine) SetRecordFault(f func(id string)) { e.recordFault = f }
