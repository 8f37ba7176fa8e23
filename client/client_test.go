package client_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/internal/redisstore"
	"github.com/heraldhq/herald/internal/redistest"
	"github.com/heraldhq/herald/internal/wire"
	"github.com/heraldhq/herald/preferences"
	"github.com/hibiken/asynq"
	"github.com/stretchr/testify/require"
)

type bundle struct {
	c    *client.Client
	rs   *redistest.Server
	insp *asynq.Inspector
}

func setup(t *testing.T) *bundle {
	t.Helper()
	rs := redistest.Start(t)
	c, err := client.New(rs.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	c.Actor = "billing-app"
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rs.Addr})
	t.Cleanup(func() { _ = insp.Close() })
	return &bundle{c: c, rs: rs, insp: insp}
}

func (b *bundle) customer(t *testing.T, id string) herald.Customer {
	t.Helper()
	c, err := b.c.UpsertCustomer(context.Background(), herald.Customer{
		ID: id, Email: "ada@example.com", Locale: "pl", Timezone: "Europe/Warsaw",
		Attributes: map[string]any{"first_name": "Ada"},
	})
	require.NoError(t, err)
	return c
}

// pending returns the pending tasks of type typ in queue.
func (b *bundle) pending(t *testing.T, queue, typ string) []*asynq.TaskInfo {
	t.Helper()
	tasks, err := b.insp.ListPendingTasks(queue)
	if err != nil {
		require.ErrorIs(t, err, asynq.ErrQueueNotFound)
	}
	var out []*asynq.TaskInfo
	for _, ti := range tasks {
		if ti.Type == typ {
			out = append(out, ti)
		}
	}
	return out
}

func TestCustomerRoundTrip(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	created := b.customer(t, "c42")
	require.False(t, created.CreatedAt.IsZero())

	got, err := b.c.Customer(ctx, "c42")
	require.NoError(t, err)
	require.Equal(t, "ada@example.com", got.Email)
	require.Equal(t, "Europe/Warsaw", got.Timezone)
	require.Equal(t, "Ada", got.Attributes["first_name"])

	time.Sleep(2 * time.Millisecond)
	updated, err := b.c.UpsertCustomer(ctx, herald.Customer{ID: "c42", Email: "ada@example.org"})
	require.NoError(t, err)
	require.Equal(t, created.CreatedAt.UTC(), updated.CreatedAt.UTC(), "an update keeps the creation time")
	got, err = b.c.Customer(ctx, "c42")
	require.NoError(t, err)
	require.Equal(t, "ada@example.org", got.Email)
	require.Empty(t, got.Timezone, "an upsert replaces the profile")
}

func TestErrorsAreTyped(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
		code string
	}{
		{"unknown customer", func() error { _, err := b.c.Customer(ctx, "nobody"); return err }, herald.ENotFound},
		{"bad customer id", func() error { _, err := b.c.Customer(ctx, "../etc"); return err }, herald.EInvalid},
		{"upsert bad id", func() error {
			_, err := b.c.UpsertCustomer(ctx, herald.Customer{ID: "a b"})
			return err
		}, herald.EInvalid},
		{"send unknown channel", func() error {
			_, err := b.c.Send(ctx, client.Message{CustomerID: "c1", Template: "hello", Topic: "onboarding", Channels: []herald.Channel{"fax"}})
			return err
		}, herald.EInvalid},
		{"send bad mode", func() error {
			_, err := b.c.Send(ctx, client.Message{CustomerID: "c1", Template: "hello", Topic: "onboarding", Mode: "some"})
			return err
		}, herald.EInvalid},
		{"send missing template", func() error {
			_, err := b.c.Send(ctx, client.Message{CustomerID: "c1", Topic: "onboarding"})
			return err
		}, herald.EInvalid},
		{"send unknown customer", func() error {
			_, err := b.c.Send(ctx, client.Message{CustomerID: "nobody", Template: "hello", Topic: "onboarding"})
			return err
		}, herald.ENotFound},
		{"event bad name", func() error { _, err := b.c.Event(ctx, "c1", "Trial Started", nil); return err }, herald.EInvalid},
		{"event bad customer id", func() error { _, err := b.c.Event(ctx, "", "trial.started", nil); return err }, herald.EInvalid},
		{"event unknown customer", func() error { _, err := b.c.Event(ctx, "nobody", "trial.started", nil); return err }, herald.ENotFound},
		{"preferences unknown customer", func() error {
			_, err := b.c.SetPreferences(ctx, "nobody", preferences.Patch{Channels: map[herald.Channel]bool{herald.ChannelEmail: false}})
			return err
		}, herald.ENotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			require.Error(t, err)
			var he *herald.Error
			require.ErrorAs(t, err, &he, "errors are *herald.Error")
			require.Equal(t, tt.code, he.Code, "%v", err)
		})
	}
	// Nothing was enqueued by the refused calls.
	require.Empty(t, b.pending(t, wire.QueueDefault, wire.TypeMessage))
	require.Empty(t, b.pending(t, wire.QueueDefault, wire.TypeEvent))
}

func TestRedisDownIsTemporary(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.rs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := b.c.Customer(ctx, "c1")
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "%v", err)
	_, err = b.c.UpsertCustomer(ctx, herald.Customer{ID: "c1"})
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "%v", err)
	_, err = b.c.Event(ctx, "c1", "trial.started", nil, "k1")
	require.Equal(t, herald.ETemporary, herald.ErrorCode(err), "%v", err)
}

func TestEventEnqueuesTask(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	id, err := b.c.Event(context.Background(), "c1", "trial.started", map[string]any{"plan": "Pro"})
	require.NoError(t, err)
	require.NotEmpty(t, id)

	tasks := b.pending(t, wire.QueueDefault, wire.TypeEvent)
	require.Len(t, tasks, 1)
	require.Equal(t, "e:"+id, tasks[0].ID)
	var ev herald.Event
	require.NoError(t, json.Unmarshal(tasks[0].Payload, &ev))
	require.Equal(t, id, ev.ID)
	require.Equal(t, "c1", ev.CustomerID)
	require.Equal(t, "trial.started", ev.Name)
	require.Equal(t, "Pro", ev.Data["plan"])
	require.False(t, ev.At.IsZero())
}

func TestIdempotencyKeyDedupes(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	ctx := context.Background()

	first, err := b.c.Event(ctx, "c1", "trial.started", nil, "trial-c1")
	require.NoError(t, err)
	again, err := b.c.Event(ctx, "c1", "trial.started", map[string]any{"plan": "Team"}, "trial-c1")
	require.NoError(t, err)
	require.Equal(t, first, again, "a repeat returns the first event's ID")
	other, err := b.c.Event(ctx, "c1", "trial.started", nil, "trial-c1-bis")
	require.NoError(t, err)
	require.NotEqual(t, first, other)
	require.Len(t, b.pending(t, wire.QueueDefault, wire.TypeEvent), 2, "the repeat enqueued nothing")

	m := client.Message{CustomerID: "c1", Template: "hello", Topic: "onboarding", IdempotencyKey: "order-7"}
	m1, err := b.c.Send(ctx, m)
	require.NoError(t, err)
	m2, err := b.c.Send(ctx, m)
	require.NoError(t, err)
	require.Equal(t, m1, m2)
	m.IdempotencyKey = ""
	m3, err := b.c.Send(ctx, m)
	require.NoError(t, err)
	require.NotEqual(t, m1, m3, "without a key every call is a new message")
	require.Len(t, b.pending(t, wire.QueueDefault, wire.TypeMessage), 2)
}

func TestSendEnqueuesMessage(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	id, err := b.c.Send(context.Background(), client.Message{
		CustomerID: "c1", Template: "password-reset", Topic: "security",
		Data: map[string]any{"reset_url": "https://app.example.com/r/1"}, Channels: []herald.Channel{herald.ChannelEmail, herald.ChannelSlack},
	})
	require.NoError(t, err)
	tasks := b.pending(t, wire.QueueDefault, wire.TypeMessage)
	require.Len(t, tasks, 1)
	require.Equal(t, "m:"+id, tasks[0].ID)
	var m wire.Message
	require.NoError(t, json.Unmarshal(tasks[0].Payload, &m))
	require.Equal(t, id, m.ID)
	require.Equal(t, "password-reset", m.Template)
	require.Equal(t, "security", m.Topic)
	require.Equal(t, []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}, m.Channels)
	require.Equal(t, "billing-app", m.Actor, "the message names the client")
	require.NoError(t, m.Validate())
}

func TestSetPreferencesRecordsConsent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	ctx := context.Background()
	off := false
	prefs, err := b.c.SetPreferences(ctx, "c1", preferences.Patch{
		Channels: map[herald.Channel]bool{herald.ChannelEmail: false},
		Topics:   map[string]bool{"product-updates": false},
	})
	require.NoError(t, err)
	require.False(t, prefs.ChannelOn(herald.ChannelEmail))
	require.Equal(t, map[string]bool{"product-updates": off}, prefs.Topics)

	got, err := b.c.Preferences(ctx, "c1")
	require.NoError(t, err)
	require.Equal(t, prefs.Topics, got.Topics)

	log, err := redisstore.NewPrefs(b.rs.Client(), nil).Consent(ctx, "c1")
	require.NoError(t, err)
	require.Len(t, log, 2)
	fields := map[string]bool{}
	for _, e := range log {
		require.Equal(t, preferences.Actor{Kind: "client", Name: "billing-app"}, e.Actor)
		require.Equal(t, "api", e.Source)
		fields[e.Field] = true
	}
	require.Equal(t, map[string]bool{"channels.email": true, "topics.product-updates": true}, fields)

	// Leaving a topic tells the workers, so its journeys end.
	tasks := b.pending(t, wire.QueueDefault, wire.TypeEvent)
	require.Len(t, tasks, 1)
	var ev herald.Event
	require.NoError(t, json.Unmarshal(tasks[0].Payload, &ev))
	require.Equal(t, wire.EventPreferencesChanged, ev.Name)

	// No change, no consent entry and no event.
	_, err = b.c.SetPreferences(ctx, "c1", preferences.Patch{Channels: map[herald.Channel]bool{herald.ChannelEmail: false}})
	require.NoError(t, err)
	log, err = redisstore.NewPrefs(b.rs.Client(), nil).Consent(ctx, "c1")
	require.NoError(t, err)
	require.Len(t, log, 2)
	require.Len(t, b.pending(t, wire.QueueDefault, wire.TypeEvent), 1)
}

func TestTimeline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	tl, err := b.c.Timeline(context.Background(), "c1", 10)
	require.NoError(t, err)
	require.Len(t, tl, 1, "the client writes what every door writes")
	require.Equal(t, "customer created by client billing-app", tl[0].Summary)
}

// publish publishes r as the workers do.
func (b *bundle) publish(t *testing.T, r redisstore.Routing) {
	t.Helper()
	require.NoError(t, redisstore.New(b.rs.Client(), nil).PublishRouting(context.Background(), r))
}

// The client queues a message as the workers would: in its topic's
// priority queue, with their retry budget, as published by the workers.
func TestSendFollowsPublishedRouting(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	b.publish(t, redisstore.Routing{
		Queues: map[string]string{"security": wire.QueueCritical, "newsletter": wire.QueueBulk}, MaxRetry: 7,
	})
	for topic, queue := range map[string]string{"security": wire.QueueCritical, "newsletter": wire.QueueBulk, "unknown-here": wire.QueueDefault} {
		id, err := b.c.Send(context.Background(), client.Message{CustomerID: "c1", Template: "t", Topic: topic})
		require.NoError(t, err)
		info, err := b.insp.GetTaskInfo(queue, "m:"+id)
		require.NoError(t, err, topic)
		require.Equal(t, 7, info.MaxRetry, topic)
	}
}

// A message that has not run yet is found in its queue.
func TestMessageQueued(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	id, err := b.c.Send(context.Background(), client.Message{CustomerID: "c1", Template: "receipt", Topic: "billing"})
	require.NoError(t, err)
	m, err := b.c.Message(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "c1", m.CustomerID)
	require.Equal(t, "receipt", m.Template)
	require.NotNil(t, m.Task)
	require.Equal(t, "pending", m.Task.State)
	require.Empty(t, m.Channels, "nothing delivered yet")
	_, err = b.c.Message(context.Background(), "bad id")
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err))
}

// The client refuses a message whose template the workers did not load,
// as the API does, from the names the workers published; before any
// worker has published them, the worker checks.
func TestSendRefusesATemplateTheWorkersLack(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	b.publish(t, redisstore.Routing{
		Queues: map[string]string{"security": wire.QueueCritical}, MaxRetry: 3, Templates: []string{"welcome", "password-reset"},
	})
	_, err := b.c.Send(context.Background(), client.Message{CustomerID: "c1", Template: "nope", Topic: "security"})
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "%v", err)
	require.ErrorContains(t, err, `unknown template "nope"`)
	require.Empty(t, b.pending(t, wire.QueueCritical, wire.TypeMessage), "nothing queued")
	_, err = b.c.Send(context.Background(), client.Message{CustomerID: "c1", Template: "password-reset", Topic: "security"})
	require.NoError(t, err)
	require.Len(t, b.pending(t, wire.QueueCritical, wire.TypeMessage), 1)

	unknown := setup(t)
	unknown.customer(t, "c1")
	_, err = unknown.c.Send(context.Background(), client.Message{CustomerID: "c1", Template: "nope", Topic: "security"})
	require.NoError(t, err, "no published names: the worker checks")
}

// The client refuses data a template cannot do without on every channel
// the message may use, from the keys the workers published, as the API
// does; a channel that can do without the key lets the message through.
func TestSendRefusesDataTheTemplateNeeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.customer(t, "c1")
	b.publish(t, redisstore.Routing{
		Queues: map[string]string{"security": wire.QueueCritical}, MaxRetry: 3, Templates: []string{"password-reset"},
		TemplateData: map[string]map[herald.Channel][]string{"password-reset": {
			herald.ChannelEmail: {"expires_in", "reset_url"}, herald.ChannelSlack: {"reset_url"}}},
	})
	send := func(data map[string]any, channels ...herald.Channel) error {
		_, err := b.c.Send(context.Background(), client.Message{CustomerID: "c1", Template: "password-reset", Topic: "security", Data: data, Channels: channels})
		return err
	}
	err := send(nil, herald.ChannelEmail)
	require.Equal(t, herald.EInvalid, herald.ErrorCode(err), "%v", err)
	require.ErrorContains(t, err, `data: template "password-reset" reads keys "expires_in", "reset_url" in every locale`)
	err = send(map[string]any{"expires_in": "1h"})
	require.ErrorContains(t, err, `reads key "reset_url"`, "needed on both channels")
	require.Empty(t, b.pending(t, wire.QueueCritical, wire.TypeMessage), "nothing queued")
	require.NoError(t, send(map[string]any{"reset_url": "https://x.example/r"}, herald.ChannelSlack), "Slack does without expires_in")
	require.NoError(t, send(map[string]any{"reset_url": "https://x.example/r"}), "so does a message that may go by Slack")
	require.Len(t, b.pending(t, wire.QueueCritical, wire.TypeMessage), 2)
}
