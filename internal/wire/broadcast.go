package wire

import (
	"time"

	"github.com/heraldhq/herald"
)

// Broadcast task types, as they read in the dashboard.
const (
	// TypeBroadcast walks a broadcast's frozen audience and queues one
	// message (or journey start) per customer.
	TypeBroadcast = "herald:broadcast"
	// TypeBroadcastJourney starts a workflow's journey for one customer of
	// a broadcast.
	TypeBroadcastJourney = "herald:broadcast:journey"
	// TypeBroadcastCreate creates a broadcast asked for by a producer
	// without content of its own (the Go client, the CLI): the worker
	// checks it against its templates, workflows and topics and leaves its
	// answer in Redis.
	TypeBroadcastCreate = "herald:broadcast:create"
)

// Broadcast asks for one message (a template on a topic) or one journey
// (a workflow) for every customer of an audience, at a time or at a local
// hour of each customer.
type Broadcast struct {
	ID       string           `json:"id" yaml:"id"`
	Template string           `json:"template,omitempty" yaml:"template"`
	Workflow string           `json:"workflow,omitempty" yaml:"workflow"`
	Topic    string           `json:"topic,omitempty" yaml:"topic"`
	Data     map[string]any   `json:"data,omitempty" yaml:"data"`
	Audience Audience         `json:"audience" yaml:"audience"`
	Channels []herald.Channel `json:"channels,omitempty" yaml:"channels"`
	Mode     string           `json:"mode,omitempty" yaml:"mode"`
	// SendAt is when sending starts (zero or past: now).
	SendAt *time.Time `json:"send_at,omitempty" yaml:"send_at"`
	// LocalTime is "HH:MM" (the next such time in each customer's zone) or
	// "YYYY-MM-DD HH:MM" (that date and time in each customer's zone).
	LocalTime string `json:"local_time,omitempty" yaml:"local_time"`
	// DryRun answers the audience's size and a sample, creating nothing.
	DryRun bool `json:"dry_run,omitempty" yaml:"dry_run"`
}

// Audience selects customers: a filter in the workflow expression language
// over customer.*, a list of IDs, or both (the IDs that match the filter).
type Audience struct {
	Filter      string   `json:"filter,omitempty" yaml:"filter"`
	CustomerIDs []string `json:"customer_ids,omitempty" yaml:"customer_ids"`
}

// BroadcastInfo is a broadcast and its progress.
type BroadcastInfo struct {
	Broadcast
	Status     string     `json:"status"`
	CreatedAt  time.Time  `json:"created_at,omitzero"`
	StartedAt  time.Time  `json:"started_at,omitzero"`
	FinishedAt time.Time  `json:"finished_at,omitzero"`
	Actor      string     `json:"actor,omitempty"`
	Notes      []string   `json:"notes,omitempty"`
	Counts     Counts     `json:"counts"`
	Sample     []string   `json:"sample,omitempty"` // dry run: ten customer IDs
	StartAt    *time.Time `json:"start_at,omitempty"`
}

// Counts are a broadcast's numbers. A customer may add to more than one
// (suppressed on email, then sent on Slack; deferred, then sent).
type Counts struct {
	Matched    int64            `json:"matched"`
	Queued     int64            `json:"queued"`
	Sent       map[string]int64 `json:"sent"`
	Suppressed map[string]int64 `json:"suppressed"`
	Deferred   int64            `json:"deferred"`
	Failed     int64            `json:"failed"`
	Skipped    int64            `json:"skipped"` // erased after the audience was fixed
	Cancelled  int64            `json:"cancelled"`
}

// CreateBroadcast is the payload of TypeBroadcastCreate.
type CreateBroadcast struct {
	Request   string    `json:"request"`
	Actor     string    `json:"actor,omitempty"`
	Broadcast Broadcast `json:"broadcast"`
}

// BroadcastAnswer is what the worker answers a CreateBroadcast with: the
// broadcast, or the error's code and message.
type BroadcastAnswer struct {
	Info    *BroadcastInfo `json:"info,omitempty"`
	Created bool           `json:"created,omitempty"`
	Code    string         `json:"code,omitempty"`
	Message string         `json:"message,omitempty"`
}
