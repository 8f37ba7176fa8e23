package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/slackapi"
	"github.com/heraldhq/herald/internal/smtpserver"
	"github.com/hibiken/asynq"
)

// DevToken is the API token `herald dev` accepts unless HERALD_API_TOKENS is set.
const DevToken = "dev-token-change-me"

// DevSlackSigningSecret signs simulated Slack button presses in herald dev
// when the captured Slack API stands in for Slack.
const DevSlackSigningSecret = "dev-slack-signing-secret"

// Dev is herald dev's set-up: embedded Redis, SMTP and Slack captures.
type Dev struct {
	Main   *Main
	Outbox string
	Mini   *miniredis.Miniredis
	SMTP   *smtpserver.Server
	Slack  *slackapi.Server
	// Token is DevToken when herald dev made it up, "" when API tokens
	// are configured: those are never printed.
	Token string
}

// OpenDev builds everything `herald dev` runs, with captures under outbox.
func OpenDev(ctx context.Context, c config.Config, outbox string, log *slog.Logger) (*Dev, error) {
	d := &Dev{Outbox: outbox}
	if err := os.MkdirAll(outbox, 0o755); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	m := &Main{Config: c, Logger: log, Worker: true, HTTP: true,
		TaskCheckInterval: 50 * time.Millisecond, DelayedTaskCheckInterval: 500 * time.Millisecond}
	d.Main = m
	ok := false
	defer func() {
		if !ok {
			d.Close()
		}
	}()
	if !c.Redis.Configured() {
		d.Mini = miniredis.NewMiniRedis()
		d.Mini.ClockTTL(true) // asynq's locks and heartbeats need TTLs that run out
		if err := d.Mini.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		m.RedisConn = asynq.RedisClientOpt{Addr: d.Mini.Addr()}
	}
	if c.SMTP.URL == "" {
		s, err := smtpserver.Start(smtpserver.Options{Dir: outbox, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("embedded smtp: %w", err)
		}
		d.SMTP = s
		m.Config.SMTP.URL = config.Secret(s.URL())
		if m.Config.SMTP.From == "" {
			m.Config.SMTP.From = "Lumen <hello@lumen.example>"
		}
	}
	if c.Slack.Token == "" {
		f, err := os.OpenFile(filepath.Join(outbox, "slack.jsonl"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return nil, fmt.Errorf("slack capture: %w", err)
		}
		s, err := slackapi.Start(slackapi.Options{Token: "xoxb-dev", JSONL: f, Users: map[string]string{"ada@example.com": "U0ADA"}})
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("embedded slack api: %w", err)
		}
		d.Slack = s
		m.closers = append(m.closers, f.Close)
		m.Config.Slack.Token, m.Config.Slack.APIURL = "xoxb-dev", s.URL()
		if m.Config.Slack.SigningSecret == "" {
			// No real Slack can press a button here: sign simulated presses
			// with a known secret (README, "Acknowledgements").
			m.Config.Slack.SigningSecret = DevSlackSigningSecret
		}
	}
	if m.Config.SigningKey == "" {
		var b [32]byte
		_, _ = rand.Read(b[:])
		m.Config.SigningKey = config.Secret(hex.EncodeToString(b[:]))
	}
	if len(m.Config.API.Tokens) == 0 {
		m.Config.API.Tokens = []config.Token{{Name: "dev", Value: DevToken}}
		d.Token = DevToken
	}
	// A browser cannot send a bearer token: the printed dashboard link
	// logs it in instead.
	var login [24]byte
	_, _ = rand.Read(login[:])
	m.MonitoringLogin = hex.EncodeToString(login[:])
	switch {
	case c.Content.Templates == "" && c.Content.Workflows == "":
		ex := exampleContent()
		m.content = &ex
		exampleBrand(&m.Config)
	case c.Content.Templates == "":
		// The examples' templates under the folder's workflows would run
		// neither the examples nor the content being worked on.
		return nil, errors.New("content.workflows (HERALD_WORKFLOWS) is set but content.templates (HERALD_TEMPLATES) is not: set both, or neither for the embedded examples")
	}
	if err := m.Open(ctx); err != nil {
		return nil, err
	}
	if _, _, err := m.Engine.Store().UpsertCustomer(ctx, herald.Customer{
		ID: "demo", Email: "ada@example.com", SlackUserID: "U0ADA", Locale: "en", Timezone: "Europe/Warsaw",
		Attributes: map[string]any{"first_name": "Ada", "plan": "pro"},
	}); err != nil {
		return nil, fmt.Errorf("seed demo customer: %w", err)
	}
	ok = true
	return d, nil
}

// Close stops everything.
func (d *Dev) Close() {
	if d.Main != nil {
		_ = d.Main.Close()
	}
	if d.SMTP != nil {
		_ = d.SMTP.Close()
	}
	if d.Slack != nil {
		_ = d.Slack.Close()
	}
	if d.Mini != nil {
		d.Mini.Close()
	}
}

func cmdDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("dev", stderr)
	outbox := fs.String("outbox", "outbox", "folder for captured email (.eml) and Slack (slack.jsonl)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	c, err := loadConfig(*path, "")
	if err != nil {
		return err
	}
	if os.Getenv("HERALD_LOG_FORMAT") == "" {
		c.Log.Format = "text"
	}
	log := newLogger(c, stderr)
	slog.SetDefault(log)
	d, err := OpenDev(ctx, c, *outbox, log)
	if err != nil {
		return err
	}
	defer d.Close()
	sig, stop := notifySignals()
	defer stop()
	if err := d.Main.Start(ctx); err != nil {
		return err
	}
	d.Banner(stdout)
	d.Main.role = "run" // worker and HTTP server, for the shutdown line
	return d.Main.wait(ctx, sig, false)
}

// DashboardURL is the dashboard's login link: opened in a browser, it
// starts a session and shows the dashboard.
func (d *Dev) DashboardURL() string {
	return "http://" + d.Main.Addr() + "/monitoring/login?token=" + d.Main.MonitoringLogin
}

// Banner prints where everything is, where the content came from and
// commands to try that work for that content: a template and a workflow
// trigger it loaded, with the template's sample data. It shows the dev
// token only when herald dev made it up; configured API tokens are
// secrets and stay out of terminals and scrollback.
func (d *Dev) Banner(w io.Writer) {
	base := "http://" + d.Main.Addr()
	abs, _ := filepath.Abs(d.Outbox)
	auth, token := "Authorization: Bearer "+d.Token, d.Token
	if d.Token == "" {
		auth, token = "using the configured API tokens, HERALD_API_TOKENS", "$HERALD_TOKEN"
	}
	metrics := ""
	if d.Main.Config.HTTP.MetricsToken != "" {
		metrics = "  (Authorization: Bearer $HERALD_METRICS_TOKEN)"
	}
	src := d.Main.contentSource()
	fmt.Fprintf(w, `
herald dev is running.

  API            %[1]s/v1/  (%[4]s)
  Dashboard      %[5]s
                 (opens a browser session; curl takes the bearer token or HERALD_MONITORING_USER/PASSWORD)
  Metrics        %[1]s/metrics%[6]s
  Health         %[1]s/healthz  %[1]s/readyz
  Outbox         %[2]s  (email as .eml, Slack as slack.jsonl)
  Redis          %[3]s
  CLI            %[9]s
  Templates      %[7]s
  Workflows      %[8]s

`, base, abs, redisDesc(d), auth, d.DashboardURL(), metrics, src.describe("templates"), src.describe("workflows"), cliDesc(d))
	try := d.tryThis()
	curl := "curl -sS -X POST " + base + "%s -H \"Authorization: Bearer " + token + "\" -H 'Content-Type: application/json' \\\n    -d '%s'\n"
	fmt.Fprintf(w, "A demo customer \"demo\" (Ada, Europe/Warsaw) is ready. Send her %s:\n\n  ", try.template)
	fmt.Fprintf(w, curl, "/v1/messages", shellQuoted(mustJSON(map[string]any{
		"customer_id": "demo", "template": try.template, "topic": try.topic, "channels": []string{"email"}, "data": try.data,
	})))
	fmt.Fprintf(w, "\nthen look in %s.", abs)
	if try.event == "" {
		fmt.Fprint(w, " No workflow is loaded, so events start no journey (set HERALD_WORKFLOWS to a folder).\n")
	} else {
		fmt.Fprintf(w, " Start the journey %s with its event:\n\n  ", try.workflow)
		fmt.Fprintf(w, curl, "/v1/events", shellQuoted(mustJSON(map[string]any{"customer_id": "demo", "name": try.event, "data": try.eventData})))
		if len(try.others) > 0 {
			fmt.Fprintf(w, "\nOther journeys start on %s.\n", strings.Join(try.others, ", "))
		}
	}
	fmt.Fprintf(w, "\nRead her timeline at %s/v1/customers/demo/timeline. Ctrl-C stops.\n", base)
}

// tryThis is what the banner suggests, taken from the loaded content.
type tryThis struct {
	template, topic string
	data            map[string]any
	workflow, event string
	eventData       map[string]any
	others          []string // "event (workflow)" of the other workflows
}

// tryThis picks the first workflow's trigger and first template (the
// templates' first, by name, when no workflow is loaded), with the
// templates' sample data.
func (d *Dev) tryThis() tryThis {
	e := d.Main.Engine
	tset := e.Templates()
	sample := func(name string) map[string]any {
		if s, ok := tset.Sample(name, ""); ok && s.Data != nil {
			return s.Data
		}
		return map[string]any{}
	}
	var t tryThis
	if wset := e.Workflows(); wset != nil {
		for _, wf := range wset.All() {
			if t.event != "" {
				t.others = append(t.others, fmt.Sprintf("%s (%s)", wf.Trigger, wf.ID))
				continue
			}
			t.workflow, t.event, t.topic, t.eventData = wf.ID, wf.Trigger, wf.Topic, map[string]any{}
			if names := wf.Templates(); len(names) > 0 {
				t.template, t.eventData = names[0], sample(names[0])
			}
		}
	}
	if t.template == "" {
		if names := tset.Names(); len(names) > 0 {
			t.template = names[0]
		}
	}
	if t.topic == "" {
		// A topic the demo customer is in by default.
		for _, tp := range d.Main.Config.Topics {
			if tp.Required || tp.OptIn == nil || *tp.OptIn {
				t.topic = tp.Name
				break
			}
		}
	}
	t.data = sample(t.template)
	return t
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "{}"
	}
	return string(b)
}

// shellQuoted makes s safe inside the banner's single quotes.
func shellQuoted(s string) string { return strings.ReplaceAll(s, "'", `'\''`) }

// cliDesc tells how the CLI reaches this herald: by its Redis.
func cliDesc(d *Dev) string {
	if d.Mini != nil {
		return "export HERALD_REDIS_URL=redis://" + d.Mini.Addr() + "   then e.g. herald message ID, herald journeys demo, herald workflows"
	}
	return "the same HERALD_REDIS_URL, e.g. herald message ID, herald journeys demo, herald workflows"
}

func redisDesc(d *Dev) string {
	if d.Mini != nil {
		return "embedded (miniredis at " + d.Mini.Addr() + ", not persistent)"
	}
	return "HERALD_REDIS_URL"
}
