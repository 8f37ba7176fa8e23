package wire

import (
	"encoding/json"

	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/hibiken/asynq"
)

// FindMessage looks for a message's own task ("m:<id>") in the queues; nil
// when it is in none.
func FindMessage(insp *asynq.Inspector, id string) *redisstore.QueuedTask {
	for _, q := range Queues {
		info, err := insp.GetTaskInfo(q, "m:"+id)
		if err != nil {
			continue // not in this queue (or the queue does not exist yet)
		}
		var m Message
		if json.Unmarshal(info.Payload, &m) != nil {
			continue
		}
		return &redisstore.QueuedTask{
			TaskStatus: redisstore.TaskStatus{Queue: q, State: info.State.String(), NextProcessAt: info.NextProcessAt, LastError: info.LastErr},
			CustomerID: m.CustomerID, Template: m.Template, Topic: m.Topic, Workflow: m.WorkflowID, Journey: m.JourneyID, Step: m.StepID,
		}
	}
	return nil
}

// TypeCancelJourney asks the worker to cancel a running journey.
const TypeCancelJourney = "herald:journey:cancel"

// CancelJourney is the payload of TypeCancelJourney.
type CancelJourney struct {
	CustomerID string `json:"customer_id"`
	JourneyID  string `json:"journey"`
	By         string `json:"by"` // who asked, for the timeline
}
