package ack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/redisstore"
	slackgo "github.com/slack-go/slack"
)

// ReplayWindow is how long a signed Slack request is remembered to refuse
// it a second time. slack-go accepts timestamps up to five minutes either
// side of now, so a request is replayable for at most ten.
const ReplayWindow = 10 * time.Minute

// maxSlackBody bounds a Slack request; interaction payloads are a few KiB.
const maxSlackBody = 1 << 20

// Slack answers Slack's interactivity requests.
type Slack struct {
	Engine *engine.Engine
	// SigningSecret is the Slack app's signing secret.
	SigningSecret string
	Logger        *slog.Logger
}

// ServeHTTP verifies the request (signature, timestamp window, replay),
// maps a block_actions button back to its message and enqueues the
// acknowledgement. Anything refused is 401 and records nothing.
func (h *Slack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.Logger
	if log == nil {
		log = slog.Default()
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxSlackBody))
	if err != nil {
		http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
		return
	}
	if h.SigningSecret == "" {
		log.Error("slack interaction refused: no signing secret configured (HERALD_SLACK_SIGNING_SECRET)")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	sv, err := slackgo.NewSecretsVerifier(r.Header, h.SigningSecret)
	if err == nil {
		_, _ = sv.Write(body)
		err = sv.Ensure()
	}
	if err != nil {
		log.Warn("slack interaction refused", "reason", err)
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	ctx := r.Context()
	fresh, err := h.Engine.Store().MarkSlackRequest(ctx, r.Header.Get("X-Slack-Signature"), r.Header.Get("X-Slack-Request-Timestamp"), ReplayWindow)
	if err != nil {
		log.Error("slack interaction: replay check", "err", err)
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	if !fresh {
		log.Warn("slack interaction refused", "reason", "replayed request")
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if err := h.accept(ctx, body); err != nil {
		if herald.IsTemporary(err) {
			log.Error("slack interaction not recorded", "err", err)
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		log.Warn("slack interaction ignored", "err", herald.ErrorMessage(err))
	}
	w.WriteHeader(http.StatusOK)
}

// rawPayload is the part of the payload kept as Slack sent it: the
// message's blocks, to show them again with the buttons replaced.
type rawPayload struct {
	Message struct {
		Text   string            `json:"text"`
		Blocks []json.RawMessage `json:"blocks"`
	} `json:"message"`
}

func (h *Slack) accept(ctx context.Context, body []byte) error {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return herald.Errorf(herald.EInvalid, "slack interaction: body is not a form")
	}
	payload := form.Get("payload")
	var cb slackgo.InteractionCallback
	if err := json.Unmarshal([]byte(payload), &cb); err != nil {
		return herald.Errorf(herald.EInvalid, "slack interaction: payload: %v", err)
	}
	if cb.Type != slackgo.InteractionTypeBlockActions {
		return herald.Errorf(herald.EInvalid, "slack interaction: type %q is not handled", cb.Type)
	}
	var raw rawPayload
	_ = json.Unmarshal([]byte(payload), &raw)
	channel, ts := cb.Container.ChannelID, cb.Container.MessageTs
	if channel == "" {
		channel = cb.Channel.ID
	}
	if ts == "" {
		ts = cb.Message.Timestamp
	}
	for _, act := range cb.ActionCallback.BlockActions {
		if act == nil || act.Value == "" || act.Type != slackgo.ActionType("button") {
			continue // a link-only button: nothing to report
		}
		if err := redisstore.ValidEventName(act.ActionID); err != nil {
			return err
		}
		m, err := h.Engine.SentMessage(ctx, act.Value)
		if err != nil {
			return err
		}
		// The press must come from the conversation and message herald
		// posted, by that message's customer: a signed payload that names
		// another customer's message is refused.
		if want := m.Providers[herald.ChannelSlack]; want == "" || want != channel+":"+ts {
			return herald.Errorf(herald.EInvalid, "slack interaction: message %s was not posted at %s %s", m.MessageID, channel, ts)
		}
		if err := h.Engine.CheckSlackUser(ctx, m.CustomerID, cb.User.ID); err != nil {
			return err
		}
		sum := sha256.Sum256([]byte(channel + "\x00" + ts + "\x00" + act.ActionID + "\x00" + act.ActionTs + "\x00" + cb.User.ID))
		a := engine.Ack{
			ID: "slack_" + hex.EncodeToString(sum[:12]), Kind: engine.AckButton,
			CustomerID: m.CustomerID, MessageID: m.MessageID, Channel: herald.ChannelSlack,
			Event: act.ActionID, Label: act.Text.Text, SlackChannel: channel, SlackTS: ts,
		}
		return h.Engine.Acknowledge(ctx, a, chosen(raw, act.Text.Text))
	}
	return herald.Errorf(herald.EInvalid, "slack interaction: no button with a value")
}

// chosen is the message with its actions block replaced by a context line
// naming the choice: the customer sees what they pressed, and cannot press
// again. nil when the payload carried no blocks.
func chosen(raw rawPayload, label string) *engine.SlackUpdate {
	if len(raw.Message.Blocks) == 0 {
		return nil
	}
	line, _ := json.Marshal(map[string]any{
		"type": "context",
		"elements": []any{map[string]any{
			"type": "plain_text", "text": "✓ " + label, "emoji": true,
		}},
	})
	out := make([]json.RawMessage, 0, len(raw.Message.Blocks))
	replaced := false
	for _, b := range raw.Message.Blocks {
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &head) != nil {
			continue
		}
		switch head.Type {
		case "actions":
			if !replaced {
				out = append(out, line)
				replaced = true
			}
			continue
		case "section", "header", "context", "divider", "rich_text", "image":
			// What herald's templates produce; anything else is dropped.
		default:
			continue
		}
		out = append(out, b)
	}
	if !replaced {
		out = append(out, line)
	}
	blocks, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	return &engine.SlackUpdate{Text: raw.Message.Text, Blocks: blocks}
}
