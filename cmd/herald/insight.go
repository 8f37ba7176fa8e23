package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/jsonerr"
	"github.com/heraldhq/herald/workflows"
)

// The insight commands read what the Go client reads, through Redis alone:
// they need HERALD_REDIS_URL and, for the workflow list and a workflow's
// steps, the workflows the worker loads (or the embedded examples), but no
// channel, sender or signing key. A test send opens the engine, which holds
// the senders.

// openEngine opens the engine the server runs (Redis, content, senders),
// without starting a worker or the HTTP server. Content is not checked
// against the configured channels: a command sends at most a test, on
// the channel it names.
func openEngine(ctx context.Context, path string, stderr io.Writer) (*Main, error) {
	c, err := loadConfig(path, "")
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	m := &Main{Config: c, Logger: log, anyChannel: true}
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

// openWorkflows loads the workflows a worker with this config runs (the
// embedded examples without content folders), checked as the worker
// checks them but for the channels configured.
func openWorkflows(path string) (*workflows.Set, error) {
	c, err := loadConfig(path, "")
	if err != nil {
		return nil, err
	}
	src := folderContent(c)
	if src.none() {
		src = exampleContent()
		exampleBrand(&c)
	}
	_, wset, probs := checkContent(src, c, nil)
	if len(probs) > 0 {
		return nil, contentError(probs)
	}
	if wset == nil {
		return nil, errors.New("content.workflows: set HERALD_WORKFLOWS to the workflows folder")
	}
	return wset, nil
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
			return fmt.Errorf("--data %s: %s", *dataPath, jsonerr.Explain(err, b))
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
	wset, err := openWorkflows(*path)
	if err != nil {
		return err
	}
	c, err := newClient(*path)
	if err != nil {
		return err
	}
	defer c.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKFLOW\tVERSION\tTOPIC\tTRIGGER\tRUNNING\tSTARTED 7D\tCOMPLETED 7D\tEXITED 7D")
	for _, w := range wset.All() {
		st, err := c.WorkflowStats(ctx, w.ID, time.Now().Add(-7*24*time.Hour))
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
	wset, err := openWorkflows(*path)
	if err != nil {
		return err
	}
	w, ok := wset.Get(pos[0])
	if !ok {
		return herald.Errorf(herald.ENotFound, "workflow %q not found", pos[0])
	}
	c, err := newClient(*path)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.WorkflowStepStats(ctx, w, from)
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
	c, err := newClient(*path)
	if err != nil {
		return err
	}
	defer c.Close()
	if cancel {
		return cancelJourney(ctx, c, pos[0], pos[1], stdout, stderr)
	}
	js, err := c.Journeys(ctx, pos[0])
	if err != nil {
		return err
	}
	return printJourneys(stdout, js)
}

// printJourneys prints journeys as a table. ARMS lists the arm taken at
// each split step passed, as step=arm.
func printJourneys(w io.Writer, js []client.Journey) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOURNEY\tWORKFLOW\tVERSION\tSTATUS\tSTEP\tARMS\tNEXT WAKE-UP\tSTARTED")
	for _, j := range js {
		wake := "-"
		if !j.NextWakeUp.IsZero() {
			wake = j.NextWakeUp.UTC().Format(time.RFC3339)
		}
		status := j.Status
		if j.Ended != "" {
			status += " (" + j.Ended + ")"
		}
		arms := "-"
		if len(j.Arms) > 0 {
			var parts []string
			for _, step := range slices.Sorted(maps.Keys(j.Arms)) {
				parts = append(parts, step+"="+j.Arms[step])
			}
			arms = strings.Join(parts, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Workflow, j.Version, status, j.Step, arms, wake, j.StartedAt.UTC().Format(time.RFC3339))
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
	c, err := newClient(*path)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := c.Message(ctx, pos[0])
	if err != nil {
		return err
	}
	return printJSON(stdout, st)
}

// cancelWait is how long `herald journeys cancel` waits for a worker to
// end the journey.
var cancelWait = 10 * time.Second

// cancelJourney queues a journey's cancellation for the workers, as the Go
// client does, and waits a little for a worker to end it: it prints the
// journey as it then stands, ended or still running if no worker took the
// cancellation in time (it stays queued).
func cancelJourney(ctx context.Context, c *client.Client, customerID, journeyID string, stdout, stderr io.Writer) error {
	if err := c.CancelJourney(ctx, customerID, journeyID); err != nil {
		return err
	}
	view := func() (client.Journey, error) {
		js, err := c.Journeys(ctx, customerID)
		if err != nil {
			return client.Journey{}, err
		}
		for _, j := range js {
			if j.ID == journeyID {
				return j, nil
			}
		}
		return client.Journey{}, herald.Errorf(herald.ENotFound, "customer %q has no journey %q", customerID, journeyID)
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(cancelWait)
	for {
		j, err := view()
		if err != nil {
			return err
		}
		if j.Status != workflows.StatusActive {
			return printJSON(stdout, j)
		}
		select {
		case <-tick.C:
		case <-deadline:
			fmt.Fprintf(stderr, "cancellation queued: no worker has ended journey %s within %v; it ends when a worker takes the task\n", journeyID, cancelWait)
			return printJSON(stdout, j)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
