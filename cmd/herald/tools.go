package main

import (
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

	"github.com/heraldhq/herald"
	"github.com/heraldhq/herald/client"
	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/internal/jsonerr"
	"github.com/heraldhq/herald/preferences"
	"github.com/heraldhq/herald/templates"
	"github.com/redis/go-redis/v9"
)

// cmdValidate checks the config, every template (rendered with its sample
// data in every locale, and against content.locales for missing ones) and
// every workflow, printing file:line: message. Given a role (by default
// run, when the config describes a deployment), it also checks what that
// role needs to start and that no workflow can only use channels without
// a provider; with --connect, that Redis answers. The content checked is
// exactly what the worker would load, and it says which.
func cmdValidate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, path := flags("validate", stderr)
	roleF := fs.String("role", "", "also check what herald run, worker or serve needs to start; content checks templates and workflows only (default: run when the config sets Redis, a channel, a signing key or API tokens; else content)")
	connect := fs.Bool("connect", false, "also ask Redis for PING, waiting at most "+pingTimeout.String()+" (implies --role run unless one is given)")
	files, err := parse(fs, args)
	if err != nil {
		return err
	}
	c, err := config.LoadFor(*path, "")
	var fe *config.FileError
	if errors.As(err, &fe) {
		fmt.Fprintln(stdout, err)
		return exitError(1)
	}
	role, rerr := validateRole(*roleF, *connect, c)
	if rerr != nil {
		return rerr
	}
	problems := 0
	if role != "" {
		err = errors.Join(err, c.Needs(role))
	}
	var lines []string
	if err != nil {
		lines = strings.Split(err.Error(), "\n")
	}
	// What start-up builds from the settings, unless the field is
	// reported already (a bad smtp.url once, not twice).
	for _, serr := range settingsProblems(c) {
		field, _, _ := strings.Cut(serr.Error(), ": ")
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, field+": ") }) {
			lines = append(lines, strings.Split(serr.Error(), "\n")...)
		}
	}
	for _, line := range lines {
		fmt.Fprintf(stdout, "%s: %s\n", orDefault(*path, "config"), line)
		problems++
	}
	src := folderContent(c)
	switch {
	case role == "" && src.none():
		src = exampleContent()
		exampleBrand(&c)
	case role == "" && src.templates == nil:
		fmt.Fprintf(stdout, "%s: content.templates (HERALD_TEMPLATES): not set, so herald run, worker and serve refuse to start; the workflows are checked without their templates\n", orDefault(*path, "config"))
		problems++
	}
	var channels []string
	if role != "" {
		channels = c.Channels()
	}
	tset, wset, probs := checkContent(src, c, channels)
	for _, p := range probs {
		fmt.Fprintln(stdout, p)
	}
	if len(probs) == 0 {
		for _, n := range localeNotes(src, c, tset) {
			fmt.Fprintln(stdout, "note: "+n+" (set content.locales to require it)")
		}
	}
	problems += len(probs)
	checked := "content only (--role run, worker or serve also checks a deployment's settings)"
	if role != "" {
		checked = "herald " + string(role) + " (channels configured: " + orDefault(strings.Join(channels, ", "), "none") + ")"
	}
	fmt.Fprintf(stderr, "config: %s; checked for %s\n", orDefault(*path, "HERALD_* variables"), checked)
	fmt.Fprintf(stderr, "templates: %s\n", src.describe("templates"))
	fmt.Fprintf(stderr, "workflows: %s\n", src.describe("workflows"))
	if *connect && c.Redis.Configured() {
		if err := pingRedis(ctx, c.Redis); err != nil {
			fmt.Fprintf(stdout, "%s: redis: %v\n", orDefault(*path, "config"), err)
			problems++
		} else {
			fmt.Fprintln(stderr, "redis: answered PING")
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

// validateRole is the role validate checks for: the one asked for, else
// run when the config describes a deployment or --connect asks for Redis,
// else none (content only).
func validateRole(flag string, connect bool, c config.Config) (config.Role, error) {
	switch flag {
	case "content":
		if connect {
			return "", errors.New("validate: --connect checks a deployment: drop --role content")
		}
		return "", nil
	case "":
		deployment := c.Redis.Configured() || len(c.Channels()) > 0 || c.SigningKey != "" || len(c.API.Tokens) > 0
		if deployment || connect {
			return config.RoleRun, nil
		}
		return "", nil
	}
	role, err := config.ParseRole(flag)
	if err != nil {
		return "", fmt.Errorf("validate: --%w, or content", err)
	}
	return role, nil
}

// pingTimeout bounds validate --connect: it must not hang on an address
// that drops packets.
const pingTimeout = 3 * time.Second

// pingRedis asks the configured Redis for PING. go-redis's own lines about
// failed dials are dropped: the failure is the answer, reported once.
func pingRedis(ctx context.Context, r config.Redis) error {
	redis.SetLogger(quietRedis{})
	opt, err := redisConn(r)
	if err != nil {
		return err
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("unsupported connection option")
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer to PING within %s (%v)", pingTimeout, err)
		}
		return fmt.Errorf("PING failed: %v", err)
	}
	return nil
}

type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
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
	src := folderContent(c)
	if src.templates == nil {
		src = exampleContent()
		exampleBrand(&c)
	}
	tset, err := templates.Load(src.templates, templateOptions(c))
	if err != nil {
		for _, l := range problemLines(src.tdir, err) {
			fmt.Fprintln(stderr, l)
		}
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
			return fmt.Errorf("preview: --data %s: %s", *dataPath, jsonerr.Explain(err, b))
		}
		if err := json.Unmarshal(b, &in); err != nil {
			return fmt.Errorf("preview: --data %s: %s", *dataPath, jsonerr.Explain(err, b))
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

// newClient connects to herald's Redis the way the worker does: from the
// config file (--config / HERALD_CONFIG) and HERALD_* variables, so a URL,
// a Sentinel group or a Cluster all work.
func newClient(path string) (*client.Client, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	opt, err := redisConn(c.Redis)
	if err != nil {
		return nil, err
	}
	cl, err := client.NewFromOpt(opt)
	if err != nil {
		return nil, err
	}
	cl.Actor = "cli"
	return cl, nil
}

func jsonFlag(s, name string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		return nil, fmt.Errorf("--%s: %s", name, jsonerr.Explain(err, []byte(s)))
	}
	return m, nil
}

func cmdEvent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := flags("event", stderr)
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
	c, err := newClient(*cfgPath)
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
	if hasFlag(args, "test-to") {
		return cmdTestSend(ctx, args, stdout, stderr)
	}
	fs, cfgPath := flags("send", stderr)
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
	c, err := newClient(*cfgPath)
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
	fs, cfgPath := flags("customer", stderr)
	emailF := fs.String("email", "", "email address")
	slackF := fs.String("slack", "", "Slack user ID")
	locale := fs.String("locale", "", "BCP 47 locale, e.g. ja-JP")
	tz := fs.String("timezone", "", "IANA time zone, e.g. Asia/Bangkok")
	var attrs multiFlag
	fs.Var(&attrs, "attr", "attribute key=value (repeatable)")
	var unset multiFlag
	fs.Var(&unset, "unset", "remove a field: email, slack_user_id, locale, timezone or attributes.KEY (repeatable)")
	erase := fs.Bool("erase", false, "erase the customer (suppress addresses, remove everything else)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald customer CUSTOMER [--email E] [--slack U…] [--locale L] [--timezone Z] [--attr k=v …] [--unset FIELD …] [--erase]")
	}
	c, err := newClient(*cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	changes := 0
	fs.Visit(func(f *flag.Flag) {
		if f.Name != "config" {
			changes++
		}
	})
	if changes == 0 {
		// No change asked for: a look-up, which creates nothing.
		cust, err := c.Customer(ctx, pos[0])
		if herald.ErrorCode(err) == herald.ENotFound {
			return fmt.Errorf("%w (give --email, --slack, --locale, --timezone or --attr to create it)", err)
		}
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(cust)
	}
	if *erase {
		if err := c.EraseCustomer(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "customer %s erased: addresses suppressed; a worker removes the rest\n", pos[0])
		return nil
	}
	// The flags given change those fields; the others stay (a merge, as
	// PATCH /v1/customers/{id}). An unknown customer is created with them.
	patch := map[string]any{}
	for k, v := range map[string]string{"email": *emailF, "slack_user_id": *slackF, "locale": *locale, "timezone": *tz} {
		if v != "" {
			patch[k] = v
		}
	}
	attrsPatch := map[string]any{}
	for _, a := range attrs {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			return fmt.Errorf("--attr %q: want key=value", a)
		}
		attrsPatch[k] = v
	}
	for _, f := range unset {
		switch {
		case f == "email" || f == "slack_user_id" || f == "locale" || f == "timezone":
			patch[f] = nil
		case strings.HasPrefix(f, "attributes.") && len(f) > len("attributes."):
			attrsPatch[strings.TrimPrefix(f, "attributes.")] = nil
		default:
			return fmt.Errorf("--unset %q: want email, slack_user_id, locale, timezone or attributes.KEY", f)
		}
	}
	if len(attrsPatch) > 0 {
		patch["attributes"] = attrsPatch
	}
	cust, err := c.PatchCustomer(ctx, pos[0], patch)
	if herald.ErrorCode(err) == herald.ENotFound {
		n := herald.Customer{ID: pos[0], Email: *emailF, SlackUserID: *slackF, Locale: *locale, Timezone: *tz}
		for k, v := range attrsPatch {
			if v != nil {
				if n.Attributes == nil {
					n.Attributes = map[string]any{}
				}
				n.Attributes[k] = v
			}
		}
		cust, err = c.UpsertCustomer(ctx, n)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(cust)
}

func cmdPrefs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, cfgPath := flags("customer prefs", stderr)
	setF := fs.String("set", "", `merge a change, e.g. '{"channels":{"email":false}}'`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald customer prefs CUSTOMER [--set JSON]")
	}
	c, err := newClient(*cfgPath)
	if err != nil {
		return err
	}
	defer c.Close()
	var prefs herald.Preferences
	if *setF != "" {
		var p preferences.Patch
		if err := json.Unmarshal([]byte(*setF), &p); err != nil {
			return fmt.Errorf("--set: %s", jsonerr.Explain(err, []byte(*setF)))
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
