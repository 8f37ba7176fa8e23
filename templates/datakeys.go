package templates

import (
	"maps"
	"slices"
	"strings"
	"text/template/parse"

	"github.com/heraldhq/herald"
)

// DataKeys returns the keys of .data that template name reads on every one
// of channels (email and Slack; none: both), in every locale, whatever the
// data holds, sorted: with missingkey=error, a message whose data lacks one
// of them cannot be rendered for any customer on any of those channels.
// Only reads that always happen count: an action's pipeline, and the
// condition of an if, with or range, outside any branch; not inside a
// branch, a range or with body (where the dot moves), a called template,
// or an and / or (which stop early). Optional keys read with index count
// for nothing. Nil for an unknown template or channel.
func (s *Set) DataKeys(name string, channels ...herald.Channel) []string {
	if s == nil {
		return nil
	}
	t := s.templates[name]
	if t == nil {
		return nil
	}
	if len(channels) == 0 {
		channels = []herald.Channel{herald.ChannelEmail, herald.ChannelSlack}
	}
	id := string(channels[0])
	if len(channels) > 1 {
		var b strings.Builder
		for _, ch := range channels {
			b.WriteString(string(ch))
			b.WriteByte(',')
		}
		id = b.String()
	}
	if keys, ok := t.dataKeys.Load(id); ok {
		return keys.([]string)
	}
	keys := t.readKeys(channels)
	t.dataKeys.Store(id, keys)
	return keys
}

// readKeys is DataKeys without the cache.
func (t *tmpl) readKeys(channels []herald.Channel) []string {
	var common map[string]bool
	keep := func(keys map[string]bool) {
		if common == nil {
			common = keys
			return
		}
		for k := range common {
			if !keys[k] {
				delete(common, k)
			}
		}
	}
	for _, f := range t.files {
		for _, ch := range channels {
			keep(f.dataKeys(f.rendered(ch)))
		}
	}
	return slices.Sorted(maps.Keys(common))
}

// rendered names the templates of f a render for ch executes.
func (f *file) rendered(ch herald.Channel) []string {
	switch ch {
	case herald.ChannelEmail:
		return []string{tSubject, tPreheader, tBody}
	case herald.ChannelSlack:
		names := []string{tSlack}
		if f.root.Lookup(tSlack) == nil {
			names = []string{tBody}
		}
		for i := range f.actions {
			names = append(names, actionName(i, "label"), actionName(i, "url"))
		}
		return names
	}
	return nil
}

// dataKeys returns the .data keys every execution of the templates of f
// named reads.
func (f *file) dataKeys(names []string) map[string]bool {
	out := map[string]bool{}
	for _, name := range names {
		t := f.root.Lookup(name)
		if t == nil || t.Tree == nil || t.Tree.Root == nil {
			continue
		}
		for _, n := range t.Tree.Root.Nodes {
			switch n := n.(type) {
			case *parse.ActionNode:
				pipeDataKeys(n.Pipe, out)
			case *parse.IfNode:
				pipeDataKeys(n.Pipe, out)
			case *parse.RangeNode:
				pipeDataKeys(n.Pipe, out)
			case *parse.WithNode:
				pipeDataKeys(n.Pipe, out)
			}
		}
	}
	return out
}

// pipeDataKeys adds the .data keys pipe reads (.data.KEY or $.data.KEY,
// at the top-level dot), unless it calls and or or.
func pipeDataKeys(pipe *parse.PipeNode, out map[string]bool) {
	if pipe == nil {
		return
	}
	var keys []string
	var walk func(n parse.Node) bool
	walk = func(n parse.Node) bool {
		switch n := n.(type) {
		case *parse.IdentifierNode:
			if n.Ident == "and" || n.Ident == "or" {
				return false
			}
		case *parse.FieldNode:
			if len(n.Ident) >= 2 && n.Ident[0] == "data" {
				keys = append(keys, n.Ident[1])
			}
		case *parse.VariableNode:
			if len(n.Ident) >= 3 && n.Ident[0] == "$" && n.Ident[1] == "data" {
				keys = append(keys, n.Ident[2])
			}
		case *parse.PipeNode:
			for _, c := range n.Cmds {
				for _, a := range c.Args {
					if !walk(a) {
						return false
					}
				}
			}
		}
		return true
	}
	if walk(pipe) {
		for _, k := range keys {
			out[k] = true
		}
	}
}
