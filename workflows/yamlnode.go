package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
)

// The language is decoded by walking the YAML syntax tree rather than with
// reflection-based decoding: a strict decoder stops at the first unknown field
// (and picks it in map order), while a walk reports every unknown field, every
// type mistake and every missing value with its own line, in file order.

type decoder struct {
	file    string
	probs   Problems
	anchors map[string]ast.Node
	// anyEventName skips the event-name rule (LoadOptions.Stored).
	anyEventName bool
}

// field is one key of a mapping with the nodes needed for line numbers.
type field struct {
	key   ast.Node
	value ast.Node
}

func (f field) ok() bool { return f.key != nil }

func (d *decoder) addf(line int, format string, args ...any) {
	d.probs = append(d.probs, Problem{File: d.file, Line: line, Message: fmt.Sprintf(format, args...)})
}

func lineOf(n ast.Node) int {
	if n == nil {
		return 0
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return 0
	}
	return tk.Position.Line
}

// line prefers the value's line and falls back to the key's, so an empty
// value still points at its key.
func (f field) line() int {
	if l := lineOf(f.value); l > 0 {
		if _, null := f.value.(*ast.NullNode); !null {
			return l
		}
	}
	return lineOf(f.key)
}

// parseYAML parses src into the body of its single document, reporting syntax
// errors with their line.
func (d *decoder) parseYAML(src []byte) (body ast.Node) {
	// A parser bug on a hostile file must not take down validate or a
	// worker at load time; it becomes a problem like any other.
	defer func() {
		if r := recover(); r != nil {
			d.addf(0, "invalid YAML: parser failed: %v", r)
			body = nil
		}
	}()
	file, err := parser.ParseBytes(src, 0)
	if err != nil {
		var yerr yaml.Error
		if errors.As(err, &yerr) {
			line := 0
			if tk := yerr.GetToken(); tk != nil && tk.Position != nil {
				line = tk.Position.Line
			}
			d.addf(line, "invalid YAML: %s", yerr.GetMessage())
		} else {
			d.addf(0, "invalid YAML: %v", err)
		}
		return nil
	}
	var bodies []ast.Node
	for _, doc := range file.Docs {
		if doc != nil && doc.Body != nil {
			bodies = append(bodies, doc.Body)
		}
	}
	if len(bodies) == 0 {
		d.addf(0, "empty workflow file")
		return nil
	}
	if len(bodies) > 1 {
		d.addf(lineOf(bodies[1]), "one workflow per file: found %d documents", len(bodies))
	}
	d.anchors = map[string]ast.Node{}
	ast.Walk(anchorCollector(d.anchors), bodies[0])
	return bodies[0]
}

type anchorCollector map[string]ast.Node

func (c anchorCollector) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		c[a.Name.GetToken().Value] = a.Value
	}
	return c
}

// resolve looks through anchors, aliases and tags to the node that carries the
// value. The depth limit stops alias cycles.
func (d *decoder) resolve(n ast.Node) ast.Node {
	for range 16 {
		switch v := n.(type) {
		case *ast.AnchorNode:
			n = v.Value
		case *ast.TagNode:
			n = v.Value
		case *ast.AliasNode:
			if v.Value == nil {
				return nil
			}
			target, ok := d.anchors[v.Value.GetToken().Value]
			if !ok {
				return nil
			}
			n = target
		default:
			return n
		}
	}
	return nil
}

// mapping returns the fields of a mapping node by key, reporting unknown keys.
// Merge keys (<<) are expanded; explicit keys win over merged ones.
func (d *decoder) mapping(n ast.Node, what string, known ...string) (map[string]field, bool) {
	fields := map[string]field{}
	line := lineOf(n)
	n = d.resolve(n)
	var values []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		values = m.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{m}
	default:
		d.addf(line, "%s must be a mapping", what)
		return fields, false
	}
	var merged []*ast.MappingValueNode
	for _, mv := range values {
		if mv.Key != nil && mv.Key.IsMergeKey() {
			merged = append(merged, d.mergeValues(mv.Value)...)
			continue
		}
		key := scalarText(d.resolve(mv.Key))
		if !slices.Contains(known, key) {
			d.addf(lineOf(mv.Key), "unknown field %q in %s (known: %s)", key, what, strings.Join(known, ", "))
			continue
		}
		fields[key] = field{key: mv.Key, value: mv.Value}
	}
	for _, mv := range merged {
		key := scalarText(d.resolve(mv.Key))
		if _, set := fields[key]; set {
			continue
		}
		if !slices.Contains(known, key) {
			d.addf(lineOf(mv.Key), "unknown field %q in %s (known: %s)", key, what, strings.Join(known, ", "))
			continue
		}
		fields[key] = field{key: mv.Key, value: mv.Value}
	}
	return fields, true
}

// mergeValues returns the entries a merge key brings in: one mapping or a
// list of mappings, as YAML 1.1 defines it. Nested lists are not followed,
// which also keeps a self-referencing alias from recursing.
func (d *decoder) mergeValues(n ast.Node) []*ast.MappingValueNode {
	one := func(n ast.Node) []*ast.MappingValueNode {
		switch m := d.resolve(n).(type) {
		case *ast.MappingNode:
			return m.Values
		case *ast.MappingValueNode:
			return []*ast.MappingValueNode{m}
		}
		d.addf(lineOf(n), "<< must merge a mapping or a list of mappings")
		return nil
	}
	seq, ok := d.resolve(n).(*ast.SequenceNode)
	if !ok {
		return one(n)
	}
	var out []*ast.MappingValueNode
	for _, v := range seq.Values {
		out = append(out, one(v)...)
	}
	return out
}

// scalarText returns the text of a scalar as written; "" for anything else.
func scalarText(n ast.Node) string {
	switch v := n.(type) {
	case nil, *ast.NullNode:
		return ""
	case *ast.StringNode:
		return v.Value
	case *ast.LiteralNode:
		if v.Value != nil {
			return v.Value.Value
		}
		return ""
	case *ast.MappingKeyNode:
		return scalarText(v.Value)
	case ast.ScalarNode:
		if tk := v.GetToken(); tk != nil {
			return tk.Value
		}
	}
	return ""
}

func isScalar(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode, *ast.SequenceNode:
		return false
	}
	_, ok := n.(ast.ScalarNode)
	return ok
}

// str decodes a string field; a missing or null field is "".
func (d *decoder) str(f field, name string) string {
	if !f.ok() {
		return ""
	}
	v := d.resolve(f.value)
	if v == nil {
		return ""
	}
	if !isScalar(v) {
		d.addf(f.line(), "%s must be a string", name)
		return ""
	}
	return strings.TrimSpace(scalarText(v))
}

// strList decodes a list of strings; a single string is a list of one, which
// keeps "until: project.created" as natural as "until: [a, b]".
func (d *decoder) strList(f field, name string) []string {
	if !f.ok() {
		return nil
	}
	v := d.resolve(f.value)
	if v == nil {
		return nil
	}
	if isScalar(v) {
		if _, null := v.(*ast.NullNode); null {
			return nil
		}
		return []string{strings.TrimSpace(scalarText(v))}
	}
	seq, ok := v.(*ast.SequenceNode)
	if !ok {
		d.addf(f.line(), "%s must be a string or a list of strings", name)
		return nil
	}
	out := make([]string, 0, len(seq.Values))
	for _, item := range seq.Values {
		iv := d.resolve(item)
		if iv == nil || !isScalar(iv) {
			d.addf(lineOf(item), "%s must be a list of strings", name)
			continue
		}
		out = append(out, strings.TrimSpace(scalarText(iv)))
	}
	return out
}

// list returns the items of a sequence node.
func (d *decoder) list(f field, name string) []ast.Node {
	if !f.ok() {
		return nil
	}
	v := d.resolve(f.value)
	if v == nil {
		return nil
	}
	if _, null := v.(*ast.NullNode); null {
		return nil
	}
	seq, ok := v.(*ast.SequenceNode)
	if !ok {
		d.addf(f.line(), "%s must be a list", name)
		return nil
	}
	return seq.Values
}
