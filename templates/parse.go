package templates

import (
	"bytes"
	"errors"
	"fmt"
	"github.com/heraldhq/herald"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"text/template/parse"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	yamlparser "github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// frontMatter is the YAML header of a template file. Unknown fields are
// errors: a typo such as "subjet" must not silently send an empty subject.
type frontMatter struct {
	Subject   string       `yaml:"subject"`
	Preheader string       `yaml:"preheader"`
	Slack     *string      `yaml:"slack"`
	Actions   []actionSpec `yaml:"actions"`
	Sample    *sample      `yaml:"sample"`
}

type actionSpec struct {
	Label  string `yaml:"label"`
	Event  string `yaml:"event"`
	URL    string `yaml:"url"`
	Style  string `yaml:"style"`
	OptOut bool   `yaml:"opt_out"`
}

// sample is the data `herald validate` and `herald preview` render with.
type sample struct {
	Customer map[string]any    `yaml:"customer"`
	Data     map[string]any    `yaml:"data"`
	Links    map[string]string `yaml:"links"`
}

// file is one <template>/<locale>.md, parsed.
type file struct {
	path    string
	name    string
	locale  string
	tag     language.Tag
	printer *message.Printer
	labels  Labels
	dir     string // "ltr" or "rtl"
	actions []fileAction
	sample  *sample
	// root holds every text/template of the file (subject, body, ...) as
	// associated templates; instances clone it.
	root *template.Template
	pool sync.Pool
	// plans caches the default layout cut for this file, by layoutVariant.
	plans [layoutVariants]atomic.Pointer[layoutPlan]
	// lines maps each associated template to the file line it starts on.
	lines map[string]int
	// markdown holds the source of the Markdown fields (body, slack), for
	// Check to point at a line.
	markdown map[string]string
}

type fileAction struct {
	Action
	line int
}

// Names of the associated templates inside a file's root template.
const (
	tSubject   = "subject"
	tPreheader = "preheader"
	tBody      = "body"
	tSlack     = "slack"
)

func actionName(i int, field string) string { return "action." + strconv.Itoa(i) + "." + field }

var errNoFrontMatter = errors.New("missing front matter: a template starts with a --- line, its YAML header (at least subject:), and a closing --- line")

// splitFrontMatter returns the YAML header and the body, and the file line
// the body starts on.
func splitFrontMatter(src []byte) (fm, body []byte, bodyLine int, err error) {
	if !bytes.HasPrefix(src, []byte("---\n")) {
		return nil, nil, 0, errNoFrontMatter
	}
	rest := src[4:]
	line := 2
	for len(rest) > 0 {
		end := bytes.IndexByte(rest, '\n')
		var l []byte
		if end < 0 {
			l, end = rest, len(rest)-1
		} else {
			l = rest[:end]
		}
		if string(bytes.TrimRight(l, " \t")) == "---" {
			fm = src[4 : len(src)-len(rest)]
			return fm, rest[end+1:], line + 1, nil
		}
		rest = rest[end+1:]
		line++
	}
	return nil, nil, 0, errors.New("front matter is not closed: add a --- line after the YAML header")
}

// nodeToValue decodes a front matter node strictly. The YAML library panics
// on some malformed input (an empty tag where a list is expected:
// "actions: !"); that is a bad file, reported as such.
func nodeToValue(n ast.Node, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed YAML (check tags such as '!' and the shape of each field): %v", r)
		}
	}()
	return yaml.NodeToValue(n, v, yaml.DisallowUnknownField(), yaml.Strict())
}

func (s *Set) parseFile(p, name string, tag language.Tag, src []byte, probs *Problems) *file {
	src = bytes.ReplaceAll(src, []byte("\r\n"), []byte("\n"))
	fmSrc, body, bodyLine, err := splitFrontMatter(src)
	if err != nil {
		probs.add(p, 1, "%v", err)
		return nil
	}
	var fm frontMatter
	astFile, err := yamlparser.ParseBytes(fmSrc, 0)
	if err == nil && len(astFile.Docs) > 0 && astFile.Docs[0].Body != nil {
		err = nodeToValue(astFile.Docs[0].Body, &fm)
	}
	if err != nil {
		line, msg := 0, err.Error()
		var ye yaml.Error
		if errors.As(err, &ye) {
			msg = ye.GetMessage()
			if tk := ye.GetToken(); tk != nil && tk.Position != nil {
				line = tk.Position.Line
			}
		}
		// The YAML starts on the file's second line.
		probs.add(p, line+1, "front matter: %s", msg)
		return nil
	}
	lineOf := func(q string) int {
		pth, err := yaml.PathString(q)
		if err != nil {
			return 1
		}
		n, err := pth.FilterFile(astFile)
		if err != nil || n == nil || n.GetToken() == nil {
			return 1
		}
		tk := n.GetToken()
		l := tk.Position.Line + 1
		if tk.Type == token.LiteralType || tk.Type == token.FoldedType {
			l++ // a block scalar's text starts on the next line
		}
		return l
	}

	f := &file{path: p, name: name, locale: tag.String(), tag: tag, printer: message.NewPrinter(tag), sample: fm.Sample, lines: map[string]int{}}
	f.labels, f.dir = labelsFor(tag), direction(tag)
	f.root = template.New(p).Option("missingkey=error").Funcs(funcs(&renderState{}))
	before := len(*probs)
	if strings.TrimSpace(fm.Subject) == "" {
		probs.add(p, 1, "front matter: subject is required")
	} else {
		f.parse(tSubject, fm.Subject, lineOf("$.subject"), false, probs)
	}
	if fm.Preheader != "" {
		f.parse(tPreheader, fm.Preheader, lineOf("$.preheader"), false, probs)
	}
	if fm.Slack != nil {
		f.parse(tSlack, *fm.Slack, lineOf("$.slack"), true, probs)
	}
	for i, a := range fm.Actions {
		line := lineOf(fmt.Sprintf("$.actions[%d]", i))
		switch {
		case strings.TrimSpace(a.Label) == "":
			probs.add(p, line, "action %d: label is required", i+1)
		case a.Event == "" && a.URL == "":
			probs.add(p, line, "action %q: give it an event, a url, or both", a.Label)
		case len(a.Event) > slackActionIDMax:
			probs.add(p, line, "action %q: an event name of %d characters; a Slack button carries at most %d", a.Label, len(a.Event), slackActionIDMax)
		case a.Event != "" && herald.ValidEventName(a.Event) != nil:
			// The rule the API applies to the event a press sends.
			probs.add(p, line, "action %q: %s", a.Label, herald.ErrorMessage(herald.ValidEventName(a.Event)))
		case a.OptOut && a.Event == "":
			probs.add(p, line, "action %q: an opt_out button needs an event", a.Label)
		case a.Style != "" && a.Style != "primary" && a.Style != "danger":
			probs.add(p, line, "action %q: style is primary, danger or empty, not %q", a.Label, a.Style)
		}
		f.parse(actionName(i, "label"), a.Label, lineOf(fmt.Sprintf("$.actions[%d].label", i)), false, probs)
		if a.URL != "" {
			f.parse(actionName(i, "url"), a.URL, lineOf(fmt.Sprintf("$.actions[%d].url", i)), false, probs)
		}
		f.actions = append(f.actions, fileAction{Action: Action(a), line: line})
	}
	if strings.TrimSpace(string(body)) == "" {
		probs.add(p, bodyLine, "the body is empty")
	} else {
		f.parse(tBody, string(body), bodyLine, true, probs)
	}
	for _, t := range f.root.Templates() {
		if n := t.Name(); n != p && !f.known(n) {
			probs.add(p, 0, "{{define %q}}: templates cannot define other templates", n)
		}
	}
	if len(*probs) > before {
		return nil
	}
	return f
}

func (f *file) known(n string) bool {
	switch n {
	case tSubject, tPreheader, tBody, tSlack:
		return true
	}
	return strings.HasPrefix(n, "action.")
}

// parse parses one field as an associated template. The text is padded with
// newlines so that text/template's line numbers are the file's; the padding
// is then cut from the tree. Markdown fields get every output action piped
// through the Markdown escaper, as html/template does for HTML.
func (f *file) parse(name, src string, line int, markdown bool, probs *Problems) {
	pad := max(line-1, 0)
	f.lines[name] = line
	if markdown {
		if f.markdown == nil {
			f.markdown = map[string]string{}
		}
		f.markdown[name] = src
	}
	t, err := f.root.New(name).Parse(strings.Repeat("\n", pad) + src)
	if err != nil {
		perr := f.problem(err).(Problem)
		if perr.Message == "unexpected EOF" {
			// text/template names only where the field ended.
			if action, at := unclosedBlock(src); action != "" {
				perr.Line, perr.Message = line+at-1, fmt.Sprintf("%s opened on line %d has no {{ end }}: add one where its block stops", action, line+at-1)
			}
		}
		probs.add(f.path, perr.Line, "%s", perr.Message)
		return
	}
	if t.Tree == nil || t.Tree.Root == nil {
		return
	}
	if len(t.Tree.Root.Nodes) > 0 {
		if tn, ok := t.Tree.Root.Nodes[0].(*parse.TextNode); ok {
			n := 0
			for n < pad && n < len(tn.Text) && tn.Text[n] == '\n' {
				n++
			}
			tn.Text = tn.Text[n:]
		}
	}
	walk(t.Tree.Root, func(n parse.Node) {
		switch n := n.(type) {
		case *parse.TemplateNode:
			l, _ := t.ErrorContext(n)
			probs.add(f.path, lineFromContext(l), "{{template %q}}: templates cannot include other templates", n.Name)
		case *parse.ActionNode:
			if markdown && len(n.Pipe.Decl) == 0 {
				n.Pipe.Cmds = append(n.Pipe.Cmds, &parse.CommandNode{
					NodeType: parse.NodeCommand,
					Pos:      n.Pos,
					Args:     []parse.Node{parse.NewIdentifier(escapeFunc).SetPos(n.Pos)},
				})
			}
		}
	})
}

// unclosedBlock finds the innermost {{ if }}, {{ range }}, {{ with }},
// {{ block }} or {{ define }} in src that no {{ end }} closes, and returns
// it as written (shortened) with its line in src, or "" when there is none.
func unclosedBlock(src string) (action string, line int) {
	type open struct {
		text string
		line int
	}
	var stack []open
	for i := 0; ; {
		k := strings.Index(src[i:], "{{")
		if k < 0 {
			break
		}
		start := i + k
		end := actionEnd(src, start+2)
		if end < 0 {
			break
		}
		i = end + 2
		inner := strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(src[start+2:end], "-"), "-"))
		word, _, _ := strings.Cut(inner, " ")
		switch word {
		case "if", "range", "with", "block", "define":
			text := "{{ " + inner + " }}"
			if r := []rune(text); len(r) > 40 {
				text = string(r[:36]) + "… }}"
			}
			stack = append(stack, open{text, strings.Count(src[:start], "\n") + 1})
		case "end":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if len(stack) == 0 {
		return "", 0
	}
	o := stack[len(stack)-1]
	return o.text, o.line
}

// actionEnd returns where the "}}" closing the action that starts at
// src[i] is, skipping quoted strings and comments, or -1.
func actionEnd(src string, i int) int {
	for i < len(src) {
		switch c := src[i]; {
		case strings.HasPrefix(src[i:], "}}"):
			return i
		case strings.HasPrefix(src[i:], "/*"):
			k := strings.Index(src[i+2:], "*/")
			if k < 0 {
				return -1
			}
			i += k + 4
		case c == '"' || c == '`' || c == '\'':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j + 1
		default:
			i++
		}
	}
	return -1
}

func lineFromContext(loc string) int {
	// loc is "name:line:col".
	parts := strings.Split(loc, ":")
	if len(parts) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(parts[len(parts)-2])
	return n
}

func walk(n parse.Node, fn func(parse.Node)) {
	if n == nil {
		return
	}
	fn(n)
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(c, fn)
		}
	case *parse.IfNode:
		walk(n.List, fn)
		walk(n.ElseList, fn)
	case *parse.RangeNode:
		walk(n.List, fn)
		walk(n.ElseList, fn)
	case *parse.WithNode:
		walk(n.List, fn)
		walk(n.ElseList, fn)
	}
}

// get returns an instance from the pool, cloning the parsed templates (the
// trees are shared, not copied) when the pool is empty.
func (f *file) get() *instance {
	if v := f.pool.Get(); v != nil {
		return v.(*instance)
	}
	return f.newInstance()
}

// newInstance clones the parsed templates with the given text/template
// options on top of the file's.
func (f *file) newInstance(option ...string) *instance {
	st := &renderState{}
	t, err := f.root.Clone()
	if err != nil {
		panic(err) // only possible after the root was executed, which it never is
	}
	t.Funcs(funcs(st)).Option(option...)
	in := &instance{
		st:        st,
		subject:   t.Lookup(tSubject),
		preheader: t.Lookup(tPreheader),
		body:      t.Lookup(tBody),
		slack:     t.Lookup(tSlack),
		actions:   make([]actionTemplates, len(f.actions)),
	}
	for i := range f.actions {
		in.actions[i] = actionTemplates{label: t.Lookup(actionName(i, "label")), url: t.Lookup(actionName(i, "url"))}
	}
	return in
}

func (f *file) put(in *instance) {
	// Let go of what grew for an unusually large render.
	for _, b := range [...]*bytes.Buffer{&in.src, &in.src2, &in.tw.buf, &in.tw.inline, &in.sw.b, &in.sw.tb, &in.sw.mrkdwn, &in.sw.json} {
		if b.Cap() > 64<<10 {
			*b = bytes.Buffer{}
		}
	}
	for _, b := range [...]*bytes.Buffer{&in.out, &in.page} {
		if b.Cap() > 256<<10 {
			*b = bytes.Buffer{}
		}
	}
	if cap(in.tw.pieces) > 4096 {
		in.tw.pieces = nil
	}
	if cap(in.sw.spans) > 4096 {
		in.sw.spans = nil
	}
	if len(in.dotMaps.customer) > 256 { // a map does not shrink
		in.dotMaps = dotMaps{}
	}
	// Drop references to the customer and event data.
	in.st.d = Data{}
	clear(in.dotMaps.customer)
	clear(in.dotMaps.root)
	clear(in.buttons)
	f.pool.Put(in)
}
