package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/goccy/go-yaml/ast"

	"github.com/heraldhq/herald"
)

// Entry says when a customer may start a journey of a workflow.
type Entry string

const (
	// EntryOnceActive lets a customer in again once their previous journey
	// of the workflow has ended. It is the default.
	EntryOnceActive Entry = "once_active"
	// EntryOnce lets a customer in only once, ever.
	EntryOnce Entry = "once"
)

// Step kinds.
const (
	KindSend   = "send"
	KindWait   = "wait"
	KindBranch = "branch"
	KindEnd    = "end"
	KindSplit  = "split"
	KindDigest = "digest"
)

// Send modes.
const (
	ModeFirst = "first" // the first allowed channel; a permanent failure falls back to the next
	ModeAll   = "all"   // every allowed channel
)

// Workflow is one parsed, validated workflow at one version.
type Workflow struct {
	ID      string
	Topic   string
	Trigger string
	ExitOn  []string
	Entry   Entry
	// Version is the file's version field or, when absent, the first 12 hex
	// digits of the SHA-256 of Source, so any edit makes a new version.
	Version string
	Steps   []*Step
	// Goal, when set, counts a conversion when the customer does Goal.Event.
	Goal *Goal
	// File is the name the workflow was parsed under.
	File string
	// Source is the file as read: the shell stores it so a journey can be
	// finished on its own version after the file changed (see Set.Add).
	Source []byte

	index  map[string]int
	idLine int
}

// Step is one step of a workflow. Exactly one of Send, Wait, Branch is set,
// unless Kind is KindEnd.
type Step struct {
	ID   string
	Kind string // KindSend, KindWait, KindBranch or KindEnd
	// Line is where the step starts in its file, for tools that point at it.
	Line int

	Send   *Send
	Wait   *Wait
	Branch *Branch
	Split  *Split
	Digest *Digest
	// DelayUntilLocal ("HH:MM") holds a send until that wall-clock time in
	// the customer's time zone, at or after the moment the step is reached.
	DelayUntilLocal string

	delayHour, delayMinute int
}

// Send delivers a template.
type Send struct {
	Template string
	// Channels is the workflow's channel order; empty means the customer's
	// own order, then every channel.
	Channels []string
	Mode     string // ModeFirst or ModeAll
}

// Wait pauses the journey for For, or until one of the Until events arrives,
// in which case the journey jumps to Then. On timeout it continues with the
// next step in order.
type Wait struct {
	For   time.Duration
	Until []string
	Then  string

	thenLine int
	forText  string
}

// Branch jumps to the Then of the first case whose condition holds, else to
// Default, else continues with the next step in order.
type Branch struct {
	Cases   []Case
	Default string

	defaultLine int
}

// Case is one condition of a branch.
type Case struct {
	If   string
	Then string

	program  *vm.Program
	thenLine int
}

// Step returns the step with the given ID.
func (w *Workflow) Step(id string) (*Step, bool) {
	i, ok := w.index[id]
	if !ok {
		return nil, false
	}
	return w.Steps[i], true
}

// IsExit reports whether event ends journeys of this workflow.
func (w *Workflow) IsExit(event string) bool { return slices.Contains(w.ExitOn, event) }

// TriggerSend is a send step a journey of a workflow makes with its
// trigger's data alone.
type TriggerSend struct {
	Step *Step
	// After is the last wait, or send held for the customer's hour,
	// before the step ("": the step is reached as the journey starts; a
	// held one is made at the customer's hour).
	After string
	// Via is the last split before the step ("": none): the step is made
	// for the customers the split puts in its arm.
	Via string
}

// TriggerSends are the send steps a journey of w makes with its trigger's
// data alone: from the start, through sends, sends held for the
// customer's hour, waits that time out (a wait's event, when it comes
// first, brings its data and leads elsewhere) and every arm of a split (an
// arm is drawn by chance, never by the data), up to the first branch,
// digest, end or wait without a timeout. A branch is not followed: it
// picks an arm by the customer or the data, and what an app puts in an
// event can differ the same way, so an arm's template may need what only
// the events of the customers it picks hold. Only an exit brings data in between,
// and it ends the journey. Such a send is made for every journey that is
// not ended, opted out of or converted first (a split's, for every one in
// its arm), so data it cannot render would fail it for every such
// customer. A step reached along several paths is listed once, for the
// first; the list is in the order the walk meets the steps.
func (w *Workflow) TriggerSends() []TriggerSend {
	var out []TriggerSend
	seen := map[string]bool{}
	var walk func(i int, after, via string)
	walk = func(i int, after, via string) {
		for ; i < len(w.Steps); i++ {
			s := w.Steps[i]
			if seen[s.ID] {
				return
			}
			seen[s.ID] = true
			switch {
			case s.Send != nil:
				out = append(out, TriggerSend{Step: s, After: after, Via: via})
				if s.DelayUntilLocal != "" {
					after = s.ID
				}
			case s.Wait != nil && s.Wait.For > 0:
				after = s.ID
			case s.Split != nil:
				for _, a := range s.Split.Arms {
					if j, ok := w.index[a.Then]; ok {
						walk(j, after, s.ID)
					}
				}
				return
			default:
				return
			}
		}
	}
	walk(0, "", "")
	return out
}

// Templates lists the templates the workflow sends, in step order, once each.
func (w *Workflow) Templates() []string {
	var out []string
	for _, s := range w.Steps {
		if s.Send != nil && !slices.Contains(out, s.Send.Template) {
			out = append(out, s.Send.Template)
		}
	}
	return out
}

// LoadOptions says what exists outside the workflow files, so references to
// it are checked at load time rather than when a customer reaches the step.
type LoadOptions struct {
	// TemplateExists reports whether a template exists; nil skips the check.
	TemplateExists func(name string) bool
	// Channels lists the known channel names; empty means email and slack.
	Channels []string
	// Topics reports whether a topic exists; nil accepts any topic.
	Topics func(name string) bool
	// Configured lists the channels herald can send on (those with a
	// provider set up); a send step none of whose channels is among them is
	// a problem, since its messages could never be sent. nil skips the
	// check.
	Configured []string
	// Stored marks the source stored with a running journey: it was
	// accepted when the journey started, so the event-name rule (newer
	// than some stored versions) is not applied again and the journey can
	// finish on its own version.
	Stored bool
}

func (o LoadOptions) channels() []string {
	if len(o.Channels) > 0 {
		return o.Channels
	}
	out := make([]string, len(herald.Channels))
	for i, c := range herald.Channels {
		out[i] = string(c)
	}
	return out
}

// exprEnv is the shape branch conditions are compiled against: unknown
// names are compile errors, attribute access is checked at run time.
var exprEnv = map[string]any{
	"customer": map[string]any{},
	"data":     map[string]any{},
}

var (
	workflowFields = []string{"id", "version", "topic", "trigger", "exit_on", "entry", "goal", "steps"}
	stepFields     = []string{"id", KindSend, KindWait, KindBranch, KindSplit, KindDigest, KindEnd, "delay_until_local"}
	sendFields     = []string{"template", "channels", "mode"}
	waitFields     = []string{"for", "until", "then"}
	branchFields   = []string{"cases", "default"}
	caseFields     = []string{"if", "then"}
)

// Parse parses and validates one workflow file. name is used in problems
// (and as Workflow.File). The error, if any, is Problems.
func Parse(name string, src []byte, opts LoadOptions) (*Workflow, error) {
	d := &decoder{file: name, anyEventName: opts.Stored}
	w := d.workflow(src, opts)
	if err := d.probs.err(); err != nil {
		return nil, err
	}
	return w, nil
}

func (d *decoder) workflow(src []byte, opts LoadOptions) *Workflow {
	w := &Workflow{File: d.file, Source: slices.Clone(src), index: map[string]int{}}
	body := d.parseYAML(src)
	if body == nil {
		return w
	}
	top, ok := d.mapping(body, "workflow", workflowFields...)
	if !ok {
		return w
	}
	topLine := lineOf(d.resolve(body))
	w.ID = d.str(top["id"], "id")
	w.idLine = top["id"].line()
	w.Version = d.str(top["version"], "version")
	w.Topic = d.str(top["topic"], "topic")
	w.Trigger = d.str(top["trigger"], "trigger")
	w.ExitOn = d.strList(top["exit_on"], "exit_on")
	w.Entry = Entry(d.str(top["entry"], "entry"))

	for _, req := range []struct{ name, value string }{{"id", w.ID}, {"topic", w.Topic}, {"trigger", w.Trigger}} {
		if req.value == "" {
			line := topLine
			if f := top[req.name]; f.ok() {
				line = f.line()
			}
			d.addf(line, "missing %s", req.name)
		}
	}
	if w.Topic != "" && opts.Topics != nil && !opts.Topics(w.Topic) {
		d.addf(top["topic"].line(), "unknown topic %q", w.Topic)
	}
	if w.Trigger != "" {
		d.eventName(top["trigger"], "trigger", w.Trigger)
	}
	for _, e := range w.ExitOn {
		d.eventName(top["exit_on"], "exit_on", e)
	}
	switch w.Entry {
	case "":
		w.Entry = EntryOnceActive
	case EntryOnce, EntryOnceActive:
	default:
		d.addf(top["entry"].line(), "entry must be once or once_active, not %q", w.Entry)
	}
	if f := top["goal"]; f.ok() {
		w.Goal = d.goal(f)
	}
	if w.Version == "" {
		sum := sha256.Sum256(src)
		w.Version = hex.EncodeToString(sum[:])[:12]
	}

	items := d.list(top["steps"], "steps")
	if len(items) == 0 {
		line := topLine
		if f := top["steps"]; f.ok() {
			line = f.line()
		}
		d.addf(line, "workflow has no steps")
		return w
	}
	firstLine := map[string]int{}
	for _, item := range items {
		s := d.step(item, opts)
		if s == nil {
			continue
		}
		if s.ID != "" {
			if prev, dup := firstLine[s.ID]; dup {
				d.addf(s.Line, "duplicate step id %q (first at line %d)", s.ID, prev)
				continue
			}
			firstLine[s.ID] = s.Line
			w.index[s.ID] = len(w.Steps)
		}
		w.Steps = append(w.Steps, s)
	}
	d.checkGraph(w)
	return w
}

func (d *decoder) step(item ast.Node, opts LoadOptions) *Step {
	fields, ok := d.mapping(item, "step", stepFields...)
	if !ok {
		return nil
	}
	s := &Step{Line: lineOf(d.resolve(item))}
	if f := fields["id"]; f.ok() {
		s.Line = lineOf(f.key)
	}
	s.ID = d.str(fields["id"], "id")
	name := "step"
	if s.ID == "" {
		d.addf(s.Line, "step has no id")
	} else {
		name = fmt.Sprintf("step %q", s.ID)
	}

	var kinds []string
	for _, k := range []string{KindSend, KindWait, KindBranch, KindSplit, KindDigest, KindEnd} {
		if fields[k].ok() {
			kinds = append(kinds, k)
		}
	}
	switch len(kinds) {
	case 0:
		d.addf(s.Line, "%s has no kind: give it one of send, wait, branch, split, digest, end", name)
	case 1:
		s.Kind = kinds[0]
	default:
		d.addf(s.Line, "%s has more than one kind (%s): give it exactly one", name, strings.Join(kinds, ", "))
	}

	if f := fields[KindSend]; f.ok() {
		s.Send = d.send(f, name, opts)
	}
	if f := fields[KindWait]; f.ok() {
		s.Wait = d.wait(f, name)
	}
	if f := fields[KindBranch]; f.ok() {
		s.Branch = d.branch(f, name)
	}
	if f := fields[KindSplit]; f.ok() {
		s.Split = d.split(f, name)
	}
	if f := fields[KindDigest]; f.ok() {
		s.Digest = d.digest(f, name)
	}
	if f := fields[KindEnd]; f.ok() {
		if b, ok := d.resolve(f.value).(*ast.BoolNode); !ok || !b.Value {
			d.addf(f.line(), "%s: end must be true", name)
		}
	}
	if f := fields["delay_until_local"]; f.ok() {
		s.DelayUntilLocal = d.str(f, "delay_until_local")
		h, m, ok := parseClock(s.DelayUntilLocal)
		switch {
		case !ok:
			d.addf(f.line(), "%s: delay_until_local %q is not HH:MM (24-hour, e.g. 09:00)", name, s.DelayUntilLocal)
		case s.Kind != KindSend && s.Kind != "":
			d.addf(f.line(), "%s: delay_until_local only applies to send steps", name)
		}
		s.delayHour, s.delayMinute = h, m
	}
	return s
}

func (d *decoder) send(f field, name string, opts LoadOptions) *Send {
	fields, ok := d.mapping(f.value, name+" send", sendFields...)
	out := &Send{Mode: ModeFirst}
	if !ok {
		return out
	}
	out.Template = d.str(fields["template"], "send.template")
	switch {
	case out.Template == "":
		d.addf(f.line(), "%s: send has no template", name)
	case opts.TemplateExists != nil && !opts.TemplateExists(out.Template):
		d.addf(fields["template"].line(), "%s: unknown template %q", name, out.Template)
	}
	known := opts.channels()
	out.Channels = d.strList(fields["channels"], "send.channels")
	for i, c := range out.Channels {
		if !slices.Contains(known, c) {
			d.addf(fields["channels"].line(), "%s: unknown channel %q (known: %s)", name, c, strings.Join(known, ", "))
		} else if slices.Contains(out.Channels[:i], c) {
			d.addf(fields["channels"].line(), "%s: channel %q listed twice", name, c)
		}
	}
	if opts.Configured != nil && out.Template != "" {
		d.configured(f, fields["channels"], name, out.Channels, opts.Configured)
	}
	if m := d.str(fields["mode"], "send.mode"); m != "" {
		if m != ModeFirst && m != ModeAll {
			d.addf(fields["mode"].line(), "%s: send.mode must be first or all, not %q", name, m)
		}
		out.Mode = m
	}
	return out
}

func (d *decoder) wait(f field, name string) *Wait {
	fields, ok := d.mapping(f.value, name+" wait", waitFields...)
	out := &Wait{}
	if !ok {
		return out
	}
	out.For, out.forText = d.duration(fields["for"], f, name, "wait", "for")
	out.Until = d.strList(fields["until"], "wait.until")
	out.Then = d.str(fields["then"], "wait.then")
	out.thenLine = fields["then"].line()
	switch {
	case len(out.Until) > 0 && out.Then == "":
		d.addf(fields["until"].line(), "%s: wait.until needs then (the step to jump to)", name)
	case len(out.Until) == 0 && out.Then != "":
		d.addf(fields["then"].line(), "%s: wait.then needs until (the event that jumps)", name)
	}
	for _, e := range out.Until {
		d.eventName(fields["until"], name+": wait.until", e)
	}
	return out
}

// configured reports a send step that can only use channels without a
// provider: its messages would all end unsent.
func (d *decoder) configured(send, chans field, name string, listed, configured []string) {
	for _, c := range listed {
		if slices.Contains(configured, c) {
			return
		}
	}
	none := "none"
	if len(configured) > 0 {
		none = strings.Join(configured, ", ")
	}
	if len(listed) == 0 {
		if len(configured) == 0 {
			d.addf(send.line(), "%s: no channel is configured, so its messages could never be sent", name)
		}
		return
	}
	d.addf(chans.line(), "%s: sends only by %s, which is not configured (configured: %s), so its messages could never be sent",
		name, strings.Join(listed, " or "), none)
}

// eventName checks an event the workflow starts on, exits on or waits for
// against the API's rule: a name the API refuses can never arrive.
func (d *decoder) eventName(f field, what, name string) {
	if name == "" {
		d.addf(f.line(), "%s has an empty event name", what)
		return
	}
	if err := herald.ValidEventName(name); err != nil && !d.anyEventName {
		d.addf(f.line(), "%s: %s; the API refuses such events, so this one could never arrive", what, herald.ErrorMessage(err))
	}
}

func (d *decoder) branch(f field, name string) *Branch {
	fields, ok := d.mapping(f.value, name+" branch", branchFields...)
	out := &Branch{}
	if !ok {
		return out
	}
	out.Default = d.str(fields["default"], "branch.default")
	out.defaultLine = fields["default"].line()
	items := d.list(fields["cases"], "branch.cases")
	if len(items) == 0 {
		d.addf(f.line(), "%s: branch needs at least one case", name)
	}
	for i, item := range items {
		cf, ok := d.mapping(item, fmt.Sprintf("%s branch case %d", name, i+1), caseFields...)
		if !ok {
			continue
		}
		c := Case{If: d.str(cf["if"], "if"), Then: d.str(cf["then"], "then")}
		line := lineOf(d.resolve(item))
		c.thenLine = line
		if f := cf["then"]; f.ok() {
			c.thenLine = f.line()
		}
		if c.If == "" {
			d.addf(line, "%s: branch case %d has no if", name, i+1)
		} else {
			// now() would read the wall clock inside the pure core and make a
			// replayed journey take another path.
			prog, err := expr.Compile(c.If, expr.Env(exprEnv), expr.AsBool(), expr.DisableBuiltin("now"))
			if err != nil {
				d.addf(cf["if"].line(), "%s: branch case %d: %s", name, i+1, exprMessage(err))
			}
			c.program = prog
		}
		if c.Then == "" {
			d.addf(line, "%s: branch case %d has no then", name, i+1)
		}
		out.Cases = append(out.Cases, c)
	}
	return out
}

func exprMessage(err error) string {
	var fe *file.Error
	if errors.As(err, &fe) {
		if fe.Snippet != "" { // bound to the source: Column is 0-based
			return fmt.Sprintf("%s (column %d)", fe.Message, fe.Column+1)
		}
		return fe.Message
	}
	return err.Error()
}
