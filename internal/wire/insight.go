package wire

// TypeCancelJourney asks the worker to cancel a running journey.
const TypeCancelJourney = "herald:journey:cancel"

// CancelJourney is the payload of TypeCancelJourney.
type CancelJourney struct {
	CustomerID string `json:"customer_id"`
	JourneyID  string `json:"journey"`
	By         string `json:"by"` // who asked, for the timeline
}
