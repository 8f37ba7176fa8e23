package redisstore

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldhq/herald"
	"github.com/redis/go-redis/v9"
)

// routingKey holds how herald's workers want messages queued: the queue of
// each topic and the retry budget. Workers publish it at start; producers
// that have no config of their own (the Go client) read it, so every door
// queues a message the same way.
const routingKey = "herald:routing"

// Routing is how messages are queued.
type Routing struct {
	// Queues maps a topic to its priority queue.
	Queues   map[string]string
	MaxRetry int
	// Topics is the topic catalogue, so every door validates preference
	// changes against the same topics (nil: not known).
	Topics map[string]herald.Topic
	// Templates are the names of the templates the workers loaded, sorted,
	// so every door refuses a message whose template does not exist (nil:
	// not known).
	Templates []string
	// TemplateData maps a template to the keys of .data it reads on each
	// channel whatever the data holds (templates.Set.DataKeys), so every
	// door refuses data a template cannot do without.
	TemplateData map[string]map[herald.Channel][]string
	// Starts maps an event to the sends the journeys it triggers make with
	// its data alone (workflows.Workflow.TriggerSends), so every door
	// refuses an event whose data those sends cannot render.
	Starts map[string][]StartSend
}

// StartSend is a send a journey makes with its trigger's data alone.
type StartSend struct {
	Workflow string           `json:"workflow"`
	Step     string           `json:"step"`
	Template string           `json:"template"`
	Channels []herald.Channel `json:"channels,omitempty"`
	// After is the last wait or held send before the step ("": the
	// journey reaches it as it starts).
	After string `json:"after,omitempty"`
	// Via is the last split before the step ("": none).
	Via string `json:"via,omitempty"`
}

// DataKeys names the keys of .data template name reads on every one of
// channels (none: email and Slack), as published; nil when not known.
func (r Routing) DataKeys(name string, channels ...herald.Channel) []string {
	per, ok := r.TemplateData[name]
	if !ok {
		return nil
	}
	if len(channels) == 0 {
		channels = []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}
	}
	var out []string
	for i, ch := range channels {
		keys := per[ch]
		if i == 0 {
			out = slices.Clone(keys)
			continue
		}
		out = slices.DeleteFunc(out, func(k string) bool { return !slices.Contains(keys, k) })
	}
	return out
}

// HasTemplate reports whether r lists template name; true when r does not
// know the templates.
func (r Routing) HasTemplate(name string) bool {
	if r.Templates == nil {
		return true
	}
	_, ok := slices.BinarySearch(r.Templates, name)
	return ok
}

// PublishRouting replaces the published routing.
func (s *Store) PublishRouting(ctx context.Context, r Routing) error {
	fields := map[string]any{"max_retry": strconv.Itoa(r.MaxRetry)}
	for t, q := range r.Queues {
		fields["topic:"+t] = q
	}
	if r.Topics != nil {
		b, err := json.Marshal(r.Topics)
		if err != nil {
			return err
		}
		fields["topics"] = string(b)
	}
	if r.Templates != nil {
		b, err := json.Marshal(slices.Sorted(slices.Values(r.Templates)))
		if err != nil {
			return err
		}
		fields["templates"] = string(b)
	}
	if r.TemplateData != nil {
		b, err := json.Marshal(r.TemplateData)
		if err != nil {
			return err
		}
		fields["template_data"] = string(b)
	}
	if r.Starts != nil {
		b, err := json.Marshal(r.Starts)
		if err != nil {
			return err
		}
		fields["starts"] = string(b)
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, routingKey)
		p.HSet(ctx, routingKey, fields)
		return nil
	})
	if err != nil {
		return herald.Temporary(err, "redis", 0)
	}
	return nil
}

// RoutingCache reads the published routing, at most once per ttl.
type RoutingCache struct {
	s   *Store
	ttl time.Duration

	mu   sync.Mutex
	at   time.Time
	last Routing
}

// RoutingCache returns a cache of the published routing.
func (s *Store) RoutingCache(ttl time.Duration) *RoutingCache {
	return &RoutingCache{s: s, ttl: ttl}
}

// Get returns the routing; ok is false when no worker has published one
// (callers then fall back to their defaults).
func (c *RoutingCache) Get(ctx context.Context) (Routing, bool, error) {
	return c.Routing(ctx)
}

// Routing is Get, so a RoutingCache serves as a service.Catalog.
func (c *RoutingCache) Routing(ctx context.Context) (Routing, bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.last, len(c.last.Queues) > 0 || c.last.MaxRetry > 0, nil
	}
	h, err := c.s.rdb.HGetAll(ctx, routingKey).Result()
	if err != nil {
		return Routing{}, false, herald.Temporary(err, "redis", 0)
	}
	r := Routing{Queues: map[string]string{}}
	for k, v := range h {
		if t, ok := strings.CutPrefix(k, "topic:"); ok {
			r.Queues[t] = v
		} else if k == "max_retry" {
			r.MaxRetry, _ = strconv.Atoi(v)
		} else if k == "topics" {
			_ = json.Unmarshal([]byte(v), &r.Topics)
		} else if k == "templates" {
			_ = json.Unmarshal([]byte(v), &r.Templates)
		} else if k == "template_data" {
			_ = json.Unmarshal([]byte(v), &r.TemplateData)
		} else if k == "starts" {
			_ = json.Unmarshal([]byte(v), &r.Starts)
		}
	}
	c.at, c.last = time.Now(), r
	return r, len(h) > 0, nil
}
