package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/internal/jsonerr"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
)

const broadcastUsage = `usage:
  herald broadcast create FILE [--dry-run]   FILE is YAML or JSON: id, template (or workflow), topic, data,
                                             audience {filter, customer_ids}, channels, send_at or local_time
  herald broadcast list [--limit N]
  herald broadcast show ID [--watch]         --watch redraws progress every second until it is all sent
  herald broadcast cancel ID
Each reads --config FILE (or HERALD_CONFIG) and HERALD_* variables to reach herald's Redis.`

func cmdBroadcast(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, broadcastUsage)
		return errors.New("herald broadcast: name a subcommand")
	}
	sub, args := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fmt.Fprintln(stderr, broadcastUsage)
		return flag.ErrHelp
	}
	fs, cfgPath := flags("broadcast "+sub, stderr)
	dry := fs.Bool("dry-run", false, "create: answer the audience size and ten sample IDs, send nothing")
	limit := fs.Int("limit", 20, "list: how many, newest first")
	watch := fs.Bool("watch", false, "show: redraw progress every second until everything is sent")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != map[string]int{"create": 1, "list": 0, "show": 1, "cancel": 1}[sub] || !slices.Contains([]string{"create", "list", "show", "cancel"}, sub) {
		fmt.Fprintln(stderr, broadcastUsage)
		return fmt.Errorf("herald broadcast %s: wrong arguments", sub)
	}
	var b client.Broadcast
	if sub == "create" {
		if b, err = readBroadcast(pos[0]); err != nil {
			return err
		}
		b.DryRun = b.DryRun || *dry
	}
	c, err := newClient(*cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	switch sub {
	case "create":
		info, _, err := c.CreateBroadcast(ctx, b)
		if err != nil {
			return err
		}
		return printJSON(stdout, info)
	case "list":
		list, err := c.Broadcasts(ctx, *limit)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%-24s %-10s %9s %9s %9s %10s %8s  %s\n", "ID", "STATUS", "MATCHED", "SENT", "DEFERRED", "SUPPRESSED", "FAILED", "CREATED")
		for _, i := range list {
			p := progressOf(i)
			fmt.Fprintf(stdout, "%-24s %-10s %9d %9d %9d %10d %8d  %s\n", i.ID, i.Status, i.Counts.Matched, p.sent, i.Counts.Deferred, p.suppressed, i.Counts.Failed, i.CreatedAt.Format(time.RFC3339))
		}
		return nil
	case "cancel":
		info, err := c.CancelBroadcast(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, info)
	}
	if !*watch {
		view, err := c.BroadcastView(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, view)
	}
	return watchBroadcast(ctx, c, pos[0], stdout, time.Second)
}

// readBroadcast reads a broadcast file: YAML (JSON is YAML too), every
// field known.
func readBroadcast(path string) (client.Broadcast, error) {
	var b client.Broadcast
	src, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return b, fmt.Errorf("%s: %v", path, err)
	}
	raw, err := json.Marshal(doc)
	if err != nil {
		return b, fmt.Errorf("%s: %v", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, fmt.Errorf("%s: %s", path, jsonerr.Explain(err, nil))
	}
	return b, nil
}

type progress struct {
	sent, suppressed, settled int64
}

// progressOf sums a broadcast's counts: settled is how many of its
// customers are past their message (sent, suppressed, failed, skipped or
// cancelled), counting a customer once when a fallback made two outcomes.
func progressOf(i client.BroadcastInfo) progress {
	var p progress
	for _, n := range i.Counts.Sent {
		p.sent += n
	}
	for _, n := range i.Counts.Suppressed {
		p.suppressed += n
	}
	p.settled = min(p.sent+p.suppressed+i.Counts.Failed+i.Counts.Skipped+i.Counts.Cancelled, i.Counts.Matched)
	return p
}

// watchBroadcast redraws one progress line every tick until the broadcast
// is cancelled or every customer is settled. Messages waiting for their
// customers' local time are shown with when the next and the last go out,
// and the ETA is the last.
func watchBroadcast(ctx context.Context, c *client.Client, id string, w io.Writer, tick time.Duration) error {
	var first time.Time
	var firstSettled int64
	for {
		view, err := c.BroadcastView(ctx, id)
		if err != nil {
			return err
		}
		info := view.BroadcastInfo
		p := progressOf(info)
		now := time.Now()
		if first.IsZero() {
			first, firstSettled = now, p.settled
		}
		eta, waiting := "—", ""
		if rate := float64(p.settled-firstSettled) / now.Sub(first).Seconds(); rate > 0 && p.settled < info.Counts.Matched {
			eta = time.Duration(float64(info.Counts.Matched-p.settled) / rate * float64(time.Second)).Round(time.Second).String()
		}
		if lw := view.Waiting; lw != nil {
			waiting = fmt.Sprintf(" · waiting %d for local time: next %s, last %s", lw.Messages, clock(lw.Next, now), clock(lw.Last, now))
			eta = clock(lw.Last, now)
		}
		fmt.Fprintf(w, "\r%s %s %3.0f%% sent %d · suppressed %d · deferred %d · failed %d%s · ETA %s   ",
			info.Status, bar(p.settled, info.Counts.Matched, 30), percent(p.settled, info.Counts.Matched),
			p.sent, p.suppressed, info.Counts.Deferred, info.Counts.Failed, waiting, eta)
		done := info.Status == "cancelled" || (info.Status == "done" && p.settled >= info.Counts.Matched)
		if done {
			fmt.Fprintln(w)
			return nil
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(w)
			return ctx.Err()
		case <-time.After(tick):
		}
	}
}

// clock says when t is, in the local zone, and how long until then.
func clock(t, now time.Time) string {
	return t.Local().Format("Jan 2 15:04 MST") + " (in " + t.Sub(now).Round(time.Minute).String() + ")"
}

func percent(n, of int64) float64 {
	if of == 0 {
		return 100
	}
	return 100 * float64(n) / float64(of)
}

func bar(n, of int64, width int) string {
	full := width
	if of > 0 {
		full = int(int64(width) * n / of)
	}
	return "[" + strings.Repeat("#", full) + strings.Repeat("-", width-full) + "]"
}

// defaultZone is the configured zone of customers without one (validated
// with the config; nil: UTC).
func defaultZone(name string) *time.Location {
	if name == "" {
		return nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil
	}
	return loc
}

// checkBroadcasts checks broadcast files against the content `herald
// validate` loaded, printing "file:line: message" for each problem; it
// returns how many.
func checkBroadcasts(w io.Writer, files []string, tset *templates.Set, wset *workflows.Set, topics map[string]herald.Topic) int {
	problems := 0
	for _, f := range files {
		for _, p := range broadcastProblems(f, engine.BroadcastContent{Templates: tset, Workflows: wset, Topics: topics}) {
			fmt.Fprintln(w, p)
			problems++
		}
	}
	return problems
}

// broadcastProblems checks one broadcast file as the API would and says
// each problem on its own "file:line: message" line, at the field it is
// about (line 1 for a field the file lacks).
func broadcastProblems(file string, content engine.BroadcastContent) []string {
	src, err := os.ReadFile(file)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}
	}
	var doc any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		var ye yaml.Error
		if errors.As(err, &ye) {
			line := 1
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				line = tk.Position.Line
			}
			return []string{fmt.Sprintf("%s:%d: %s", file, line, ye.GetMessage())}
		}
		return []string{fmt.Sprintf("%s:1: %v", file, err)}
	}
	b, err := readBroadcast(file)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), file+": ")
		field := ""
		if f, ok := strings.CutPrefix(msg, "unknown field "); ok {
			field = strings.Trim(f, `"`)
		}
		return []string{fmt.Sprintf("%s:%d: %s", file, max(fieldLine(src, field), 1), msg)}
	}
	if _, err := engine.CheckBroadcast(b, content); err != nil {
		var out []string
		for _, msg := range splitBroadcastProblems(herald.ErrorMessage(err)) {
			out = append(out, fmt.Sprintf("%s:%d: %s", file, problemLine(src, msg), msg))
		}
		return out
	}
	return nil
}

// broadcastFields are the fields engine.CheckBroadcast's problems start
// with ("broadcast id" for id).
var broadcastFields = []string{"broadcast id", "template", "workflow", "topic", "channels", "mode", "send_at", "local_time", "audience"}

// splitBroadcastProblems splits engine.CheckBroadcast's message, its
// problems joined by "; ", at each "; " that starts another field's
// problem (a filter's own message may hold one).
func splitBroadcastProblems(msg string) []string {
	var out []string
	for _, part := range strings.Split(msg, "; ") {
		starts := slices.ContainsFunc(broadcastFields, func(f string) bool {
			rest, ok := strings.CutPrefix(part, f)
			return ok && (rest == "" || strings.IndexByte(" .:[", rest[0]) >= 0)
		})
		if len(out) > 0 && !starts {
			out[len(out)-1] += "; " + part
			continue
		}
		out = append(out, part)
	}
	return out
}

// problemLine is the line of the first field a problem names that the
// file has ("template and workflow: …" names two), or of its nearest
// enclosing one ("audience.customer_ids[2]" in "audience"), else 1.
func problemLine(src []byte, msg string) int {
	head, _, _ := strings.Cut(msg, ":")
	head = strings.Replace(head, "broadcast id", "id", 1)
	for _, field := range strings.Fields(head) {
		if field == "and" || field == "or" || strings.HasPrefix(field, `"`) {
			continue
		}
		for {
			if l := fieldLine(src, field); l > 0 {
				return l
			}
			i := strings.LastIndexAny(field, ".[")
			if i < 0 {
				break
			}
			field = field[:i]
		}
	}
	return 1
}

// fieldLine is the line of a field ("audience.filter", "channels[1]") in a
// broadcast file, or 0 when it has none.
func fieldLine(src []byte, field string) int {
	p, err := yaml.PathString("$." + field)
	if field == "" || err != nil {
		return 0
	}
	n, err := p.ReadNode(bytes.NewReader(src))
	if err != nil || n == nil || n.GetToken() == nil || n.GetToken().Position == nil {
		return 0
	}
	return n.GetToken().Position.Line
}
