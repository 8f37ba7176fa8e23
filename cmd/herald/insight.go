package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/workflows"
)

// The insight commands open the same engine the server runs (Redis, content,
// senders), without starting a worker or the HTTP server, and call the same
// services the API calls.

func openEngine(ctx context.Context, path string, stderr io.Writer) (*Main, error) {
	c, err := loadConfig(path, "")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := &Main{Config: c, Logger: log}
	// The worker's folders; with none configured (an author trying a
	// template), the embedded examples, as preview does.
	if folderContent(c).none() {
		ex := exampleContent()
		m.content = &ex
	}
	if err := m.Open(ctx); err != nil {
		_ = m.Close()
		return nil, err
	}
	return m, nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// hasFlag reports whether args name a flag (as -name, --name or --name=…).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "-"+name || a == "--"+name || strings.HasPrefix(a, "--"+name+"=") || strings.HasPrefix(a, "-"+name+"=") {
			return true
		}
	}
	return false
}

// cmdTestSend sends a template to the author's own address or Slack user,
// with the template's sample data or --data, subject prefixed [test].
func cmdTestSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("send --test-to", stderr)
	to := fs.String("test-to", "", "email address or Slack user ID to send the test to")
	name := fs.String("template", "", "template name (required)")
	locale := fs.String("locale", "", "locale (default: the default locale)")
	channel := fs.String("channel", "", "email or slack (default: email, or slack for a Slack user ID)")
	dataPath := fs.String("data", "", `JSON file with {"customer":{…},"data":{…}} (default: the template's sample)`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *to == "" || *name == "" {
		return errors.New("usage: herald send --test-to ADDRESS --template T [--locale L] [--data f.json] [--channel email|slack]")
	}
	req := engine.TestSendRequest{To: *to, Channel: herald.Channel(*channel), Template: *name, Locale: *locale, Actor: "cli"}
	if *dataPath != "" {
		b, err := os.ReadFile(*dataPath)
		if err != nil {
			return fmt.Errorf("--data: %w", err)
		}
		var in struct {
			Customer map[string]any `json:"customer"`
			Data     map[string]any `json:"data"`
		}
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("--data %s: %w", *dataPath, err)
		}
		req.Customer, req.Data = in.Customer, in.Data
	}
	m, err := openEngine(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	rec, err := m.Engine.TestSend(ctx, req)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s sent to %s by %s (%s), %q\n", rec.ID, rec.Template, rec.To, rec.Channel, rec.Locale, rec.Subject)
	return nil
}

// cmdWorkflows lists the workflows with their last 7 days.
func cmdWorkflows(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("workflows", stderr)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	m, err := openEngine(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tVERSION\tTOPIC\tTRIGGER\tRUNNING\tSTARTED 7D\tCOMPLETED 7D\tEXITED 7D")
	for _, w := range m.Engine.WorkflowList() {
		st, err := m.Engine.Stats(ctx, w.ID, time.Now().Add(-7*24*time.Hour))
		if err != nil {
			return err
		}
		j := st.Journeys
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", w.ID, w.Version, w.Topic, w.Trigger, j.Running, j.Started, j.Completed, j.Exited)
	}
	return tw.Flush()
}

// cmdStats prints a workflow's numbers per step as JSON.
func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("stats", stderr)
	since := fs.String("since", "24h", "a duration back from now (24h, 7d, 30d) or an RFC 3339 time")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald stats WORKFLOW [--since 7d]")
	}
	from, err := time.Parse(time.RFC3339, *since)
	if err != nil {
		d, derr := workflows.ParseDuration(*since)
		if derr != nil || d <= 0 {
			return fmt.Errorf("--since %q: want a duration back from now (24h, 7d, 30d) or an RFC 3339 time", *since)
		}
		from = time.Now().Add(-d)
	}
	m, err := openEngine(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if _, err := m.Engine.Workflow(pos[0]); err != nil {
		return err
	}
	st, err := m.Engine.Stats(ctx, pos[0], from)
	if err != nil {
		return err
	}
	return printJSON(stdout, st)
}

// cmdJourneys lists a customer's journeys, or cancels one.
func cmdJourneys(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cancel := len(args) > 0 && args[0] == "cancel"
	if cancel {
		args = args[1:]
	}
	fs, path := flags("journeys", stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if (!cancel && len(pos) != 1) || (cancel && len(pos) != 2) {
		return errors.New("usage: herald journeys CUSTOMER · herald journeys cancel CUSTOMER JOURNEY")
	}
	m, err := openEngine(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	if cancel {
		j, err := m.Engine.CancelJourney(ctx, pos[0], pos[1], "cli")
		if err != nil {
			return err
		}
		return printJSON(stdout, j)
	}
	js, err := m.Engine.CustomerJourneys(ctx, pos[0])
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOURNEY\tWORKFLOW\tVERSION\tSTATUS\tSTEP\tNEXT WAKE-UP\tSTARTED")
	for _, j := range js {
		wake := "-"
		if !j.NextWakeUp.IsZero() {
			wake = j.NextWakeUp.UTC().Format(time.RFC3339)
		}
		status := j.Status
		if j.Ended != "" {
			status += " (" + j.Ended + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Workflow, j.Version, status, j.Step, wake, j.StartedAt.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

// cmdMessage prints what became of a message, per channel.
func cmdMessage(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("message", stderr)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald message MESSAGE_ID")
	}
	m, err := openEngine(ctx, *path, stderr)
	if err != nil {
		return err
	}
	defer m.Close()
	st, err := m.Engine.Message(ctx, pos[0])
	if err != nil {
		return err
	}
	return printJSON(stdout, st)
}
