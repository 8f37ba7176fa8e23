package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/examples"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
)

// contentFS returns the configured folders, or the embedded examples.
func contentFS(c *config.Config) (tfs, wfs fs.FS, tdir, wdir string) {
	if c.Content.Templates == "" {
		exampleBrand(c)
		return examples.Templates(), examples.Workflows(), "examples/templates", "examples/workflows"
	}
	tfs, tdir = os.DirFS(c.Content.Templates), c.Content.Templates
	if c.Content.Workflows != "" {
		wfs, wdir = os.DirFS(c.Content.Workflows), c.Content.Workflows
	}
	return tfs, wfs, tdir, wdir
}

// cmdValidate checks the config, every template (rendered with its sample
// data in every locale, and against content.locales for missing ones) and
// every workflow, printing file:line: message.
func cmdValidate(args []string, stdout, stderr io.Writer) error {
	fs, path := flags("validate", stderr)
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	c, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stdout, err)
		return exitError(1)
	}
	problems := 0
	if err := c.Validate(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stdout, "%s: %s\n", orDefault(*path, "config"), line)
			problems++
		}
	}
	tfs, wfs, tdir, wdir := contentFS(&c)
	var wset *workflows.Set
	tset, err := templates.Load(tfs, templateOptions(c))
	if err != nil {
		problems += report(stdout, tdir, err)
	} else {
		problems += report(stdout, tdir, tset.Check())
		problems += report(stdout, tdir, tset.CheckLocales(c.Content.Locales))
	}
	if wfs != nil {
		topics := policy(c).Topics
		opts := workflows.LoadOptions{Topics: func(t string) bool { _, ok := topics[t]; return ok }}
		if tset != nil {
			opts.TemplateExists = tset.Has
		}
		if wset, err = workflows.Load(wfs, opts); err != nil {
			problems += report(stdout, wdir, err)
		}
	}
	problems += checkBroadcasts(stdout, files, tset, wset, policy(c).Topics)
	if problems > 0 {
		fmt.Fprintf(stderr, "%d problem(s)\n", problems)
		return exitError(1)
	}
	fmt.Fprintln(stderr, "ok: config, templates and workflows are valid")
	return nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// report prints each problem with its folder and returns how many.
func report(w io.Writer, dir string, err error) int {
	if err == nil {
		return 0
	}
	var tp templates.Problems
	var wp workflows.Problems
	lines := []string{}
	switch {
	case errors.As(err, &tp):
		if len(tp) == 0 {
			return 0
		}
		for _, p := range tp {
			p.File = filepath.Join(dir, p.File)
			lines = append(lines, p.String())
		}
	case errors.As(err, &wp):
		if len(wp) == 0 {
			return 0
		}
		for _, p := range wp {
			p.File = filepath.Join(dir, p.File)
			lines = append(lines, p.String())
		}
	default:
		lines = append(lines, dir+": "+err.Error())
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return len(lines)
}

func cmdPreview(args []string, stdout, stderr io.Writer) error {
	fs, path := flags("preview", stderr)
	name := fs.String("template", "", "template name (required)")
	locale := fs.String("locale", "", "locale (default: the default locale)")
	channel := fs.String("channel", "email", "email or slack")
	dataPath := fs.String("data", "", "JSON file with {\"customer\":{…},\"data\":{…}} (default: the template's sample)")
	htmlOut := fs.String("html", "", "also write the email HTML to this file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("preview: --template is required")
	}
	if *channel != "email" && *channel != "slack" {
		return fmt.Errorf("preview: --channel %q: want email or slack", *channel)
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	tfs, _, tdir, _ := contentFS(&c)
	tset, err := templates.Load(tfs, templateOptions(c))
	if err != nil {
		report(stderr, tdir, err)
		return exitError(1)
	}
	if !tset.Has(*name) {
		return fmt.Errorf("preview: no template %q (have: %s)", *name, strings.Join(tset.Names(), ", "))
	}
	data, ok := tset.Sample(*name, *locale)
	if !ok {
		data = templates.Data{}
	}
	if *dataPath != "" {
		b, err := os.ReadFile(*dataPath)
		if err != nil {
			return fmt.Errorf("preview: --data: %w", err)
		}
		var in struct {
			Customer herald.Customer `json:"customer"`
			Data     map[string]any  `json:"data"`
		}
		var raw map[string]any
		if err := json.Unmarshal(b, &raw); err != nil {
			return fmt.Errorf("preview: --data %s: %w", *dataPath, err)
		}
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("preview: --data %s: %w", *dataPath, err)
		}
		if cm, ok := raw["customer"].(map[string]any); ok {
			in.Customer.Attributes = cm
		}
		data.Customer, data.Data = in.Customer, in.Data
	}
	if data.Links.Preferences == "" {
		data.Links = templates.Links{Preferences: c.HTTP.PublicURL + "/preferences?token=preview", Unsubscribe: c.HTTP.PublicURL + "/unsubscribe?token=preview"}
	}
	content, err := tset.Render(*name, *locale, data)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError(1)
	}
	// Said on stderr so that stdout stays the rendered message.
	if used, exact, _ := tset.Resolve(*name, *locale); !exact {
		fmt.Fprintf(stderr, "preview: template %s has no %s; rendering %s\n", *name, *locale, used)
	}
	if *htmlOut != "" {
		if err := os.WriteFile(*htmlOut, []byte(content.HTML), 0o644); err != nil {
			return err
		}
	}
	return templates.WritePreview(stdout, content, *channel)
}

func newClient() (*client.Client, error) {
	url := os.Getenv("HERALD_REDIS_URL")
	if url == "" {
		return nil, errors.New("set HERALD_REDIS_URL to herald's Redis (redis://host:port/db)")
	}
	c, err := client.New(url)
	if err != nil {
		return nil, err
	}
	c.Actor = "cli"
	return c, nil
}

func jsonFlag(s, name string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("--%s: not a JSON object: %v", name, err)
	}
	return m, nil
}

func cmdEvent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("event", stderr)
	data := fs.String("data", "", "event data as a JSON object")
	key := fs.String("key", "", "idempotency key")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 {
		return errors.New("usage: herald event CUSTOMER NAME [--data JSON] [--key K]")
	}
	d, err := jsonFlag(*data, "data")
	if err != nil {
		return err
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := c.Event(ctx, pos[0], pos[1], d, *key)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

func cmdSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("send", stderr)
	topic := fs.String("topic", "", "topic (required)")
	data := fs.String("data", "", "template data as a JSON object")
	chans := fs.String("channels", "", "candidate channels in order, e.g. email,slack")
	mode := fs.String("mode", "first", "first or all")
	key := fs.String("key", "", "idempotency key")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || *topic == "" {
		return errors.New("usage: herald send CUSTOMER TEMPLATE --topic TOPIC [--data JSON] [--channels email,slack]")
	}
	d, err := jsonFlag(*data, "data")
	if err != nil {
		return err
	}
	m := client.Message{CustomerID: pos[0], Template: pos[1], Topic: *topic, Data: d, Mode: *mode, IdempotencyKey: *key}
	for _, ch := range strings.Split(*chans, ",") {
		if ch = strings.TrimSpace(ch); ch != "" {
			m.Channels = append(m.Channels, herald.Channel(ch))
		}
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	id, err := c.Send(ctx, m)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, id)
	return nil
}

func cmdCustomer(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "prefs" {
		return cmdPrefs(ctx, args[1:], stdout, stderr)
	}
	fs, _ := flags("customer", stderr)
	emailF := fs.String("email", "", "email address")
	slackF := fs.String("slack", "", "Slack user ID")
	locale := fs.String("locale", "", "BCP 47 locale, e.g. ja-JP")
	tz := fs.String("timezone", "", "IANA time zone, e.g. Asia/Bangkok")
	var attrs multiFlag
	fs.Var(&attrs, "attr", "attribute key=value (repeatable)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald customer CUSTOMER [--email E] [--slack U…] [--locale L] [--timezone Z] [--attr k=v …]")
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	cust, err := c.Customer(ctx, pos[0])
	if err != nil && herald.ErrorCode(err) != herald.ENotFound {
		return err
	}
	cust.ID = pos[0]
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&cust.Email, *emailF)
	set(&cust.SlackUserID, *slackF)
	set(&cust.Locale, *locale)
	set(&cust.Timezone, *tz)
	for _, a := range attrs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("--attr %q: want key=value", a)
		}
		if cust.Attributes == nil {
			cust.Attributes = map[string]any{}
		}
		cust.Attributes[k] = v
	}
	cust, err = c.UpsertCustomer(ctx, cust)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(cust)
}

func cmdPrefs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, _ := flags("customer prefs", stderr)
	setF := fs.String("set", "", `merge a change, e.g. '{"channels":{"email":false}}'`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald customer prefs CUSTOMER [--set JSON]")
	}
	c, err := newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	var prefs herald.Preferences
	if *setF != "" {
		var p preferences.Patch
		if err := json.Unmarshal([]byte(*setF), &p); err != nil {
			return fmt.Errorf("--set: %v", err)
		}
		prefs, err = c.SetPreferences(ctx, pos[0], p)
	} else {
		prefs, err = c.Preferences(ctx, pos[0])
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(prefs)
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
