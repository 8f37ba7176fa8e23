package workflows

import (
	"cmp"
	"fmt"
	"html"
	"slices"
	"strings"
)

// Diagram node kinds besides the step kinds.
const (
	NodeStart    = "start"    // the trigger
	NodeExit     = "exit"     // an exit_on event ended the journey
	NodeComplete = "complete" // the journey ran past its last step
)

// Diagram edge kinds.
const (
	EdgeTrigger = "trigger" // start → first step
	EdgeNext    = "next"    // a send went out (or was held until a local time)
	EdgeTimeout = "timeout" // a wait ran its full duration
	EdgeUntil   = "until"   // a wait's event came first
	EdgeCase    = "case"    // a branch case held
	EdgeDefault = "default" // no branch case held
	EdgeExit    = "exit"    // an exit_on event while the journey waited here
)

// Diagram is a workflow drawn as a graph: every step a node, every way from
// one step to another an edge labelled with what takes it.
type Diagram struct {
	Workflow string
	Version  string
	Topic    string
	Nodes    []DiagramNode
	Edges    []DiagramEdge
}

// DiagramNode is a step (ID is the step ID) or one of the start, exit and
// complete nodes (ID is "(start)", "(exit)", "(complete)").
type DiagramNode struct {
	ID    string
	Kind  string
	Title string
	// Detail says what the step does: template and channels, how long it
	// waits, the trigger event.
	Detail string
}

// DiagramEdge goes From one node To another.
type DiagramEdge struct {
	From, To string
	Kind     string
	Label    string
}

// Pseudo node IDs: parentheses cannot appear in a step ID worth drawing
// apart, and they read well in the text formats.
const (
	startID    = "(start)"
	exitID     = "(exit)"
	completeID = "(complete)"
)

// Diagram builds the graph of w from the same jumps validation walks.
func (w *Workflow) Diagram() Diagram {
	d := Diagram{Workflow: w.ID, Version: w.Version, Topic: w.Topic}
	d.Nodes = append(d.Nodes, DiagramNode{ID: startID, Kind: NodeStart, Title: "start", Detail: "on " + w.Trigger})
	if len(w.Steps) > 0 {
		d.Edges = append(d.Edges, DiagramEdge{From: startID, To: w.Steps[0].ID, Kind: EdgeTrigger, Label: w.Trigger})
	}
	completes, exits := false, false
	next := func(i int) string {
		if i+1 < len(w.Steps) {
			return w.Steps[i+1].ID
		}
		completes = true
		return completeID
	}
	for i, s := range w.Steps {
		n := DiagramNode{ID: s.ID, Kind: s.Kind, Title: s.ID}
		parked := false
		switch s.Kind {
		case KindSend:
			chans := "customer's order"
			if len(s.Send.Channels) > 0 {
				chans = strings.Join(s.Send.Channels, ", ")
			}
			if s.Send.Mode == ModeAll {
				chans = "all of " + chans
			}
			n.Detail = fmt.Sprintf("send %s by %s", s.Send.Template, chans)
			label := "sent"
			if s.DelayUntilLocal != "" {
				n.Detail += ", at " + s.DelayUntilLocal + " local"
				label = "sent at " + s.DelayUntilLocal + " local"
				parked = true
			}
			d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: next(i), Kind: EdgeNext, Label: label})
		case KindWait:
			forText := cmp.Or(s.Wait.forText, s.Wait.For.String())
			n.Detail = "wait " + forText
			if len(s.Wait.Until) > 0 {
				n.Detail += " or until " + strings.Join(s.Wait.Until, " | ")
				d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: s.Wait.Then, Kind: EdgeUntil, Label: strings.Join(s.Wait.Until, " | ")})
			}
			d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: next(i), Kind: EdgeTimeout, Label: "after " + forText})
			parked = true
		case KindBranch:
			n.Detail = fmt.Sprintf("branch, %d case(s)", len(s.Branch.Cases))
			for _, c := range s.Branch.Cases {
				d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: c.Then, Kind: EdgeCase, Label: "if " + c.If})
			}
			switch {
			case s.Branch.Default != "":
				d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: s.Branch.Default, Kind: EdgeDefault, Label: "otherwise"})
			default:
				d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: next(i), Kind: EdgeDefault, Label: "no case matched"})
			}
		case KindEnd:
			n.Detail = "end"
		}
		// An event reaches a journey only while it is parked: a wait, or a
		// send held until a local time.
		if parked && len(w.ExitOn) > 0 {
			exits = true
			d.Edges = append(d.Edges, DiagramEdge{From: s.ID, To: exitID, Kind: EdgeExit, Label: "exit on " + strings.Join(w.ExitOn, " | ")})
		}
		d.Nodes = append(d.Nodes, n)
	}
	if completes {
		d.Nodes = append(d.Nodes, DiagramNode{ID: completeID, Kind: NodeComplete, Title: "completed", Detail: "ran past the last step"})
	}
	if exits {
		d.Nodes = append(d.Nodes, DiagramNode{ID: exitID, Kind: NodeExit, Title: "exited", Detail: "on " + strings.Join(w.ExitOn, " | ")})
	}
	return d
}

// nodeIndex maps node IDs to their position.
func (d Diagram) nodeIndex() map[string]int {
	idx := make(map[string]int, len(d.Nodes))
	for i, n := range d.Nodes {
		idx[n.ID] = i
	}
	return idx
}

// Mermaid returns the diagram as a Mermaid flowchart.
func (d Diagram) Mermaid() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%%%% workflow %s version %s\nflowchart TD\n", d.Workflow, d.Version)
	for i, n := range d.Nodes {
		label := mermaidText(n.Title) + "<br/>" + mermaidText(n.Detail)
		open, closing := "[\"", "\"]"
		switch n.Kind {
		case NodeStart, NodeExit, NodeComplete, KindEnd:
			open, closing = "([\"", "\"])"
		case KindBranch:
			open, closing = "{\"", "\"}"
		case KindWait:
			open, closing = "[/\"", "\"/]"
		}
		fmt.Fprintf(&b, "  n%d%s%s%s\n", i, open, label, closing)
	}
	idx := d.nodeIndex()
	for _, e := range d.Edges {
		arrow := "-->"
		if e.Kind == EdgeExit {
			arrow = "-.->"
		}
		fmt.Fprintf(&b, "  n%d %s|\"%s\"| n%d\n", idx[e.From], arrow, mermaidText(e.Label), idx[e.To])
	}
	return b.String()
}

// mermaidText escapes text for a quoted Mermaid label.
func mermaidText(s string) string {
	r := strings.NewReplacer(`"`, "#quot;", "<", "#lt;", ">", "#gt;", "|", "#124;", "\n", " ")
	return r.Replace(s)
}

// DOT returns the diagram in Graphviz's DOT language.
func (d Diagram) DOT() string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %s {\n  label=%s;\n  labelloc=t;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
		dotQuote(d.Workflow), dotQuote(d.Workflow+" (version "+d.Version+")"))
	for i, n := range d.Nodes {
		shape := "box"
		switch n.Kind {
		case NodeStart, NodeExit, NodeComplete, KindEnd:
			shape = "oval"
		case KindBranch:
			shape = "diamond"
		case KindWait:
			shape = "parallelogram"
		}
		fmt.Fprintf(&b, "  n%d [label=%s, shape=%s];\n", i, dotQuote(n.Title+"\n"+n.Detail), shape)
	}
	idx := d.nodeIndex()
	for _, e := range d.Edges {
		style := ""
		if e.Kind == EdgeExit {
			style = ", style=dashed"
		}
		fmt.Fprintf(&b, "  n%d -> n%d [label=%s%s];\n", idx[e.From], idx[e.To], dotQuote(e.Label), style)
	}
	b.WriteString("}\n")
	return b.String()
}

func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// SVG layout, in pixels.
const (
	svgNodeW   = 260
	svgLineH   = 16
	svgPadY    = 10
	svgGapX    = 60
	svgGapY    = 70
	svgMargin  = 30
	svgLoopGap = 40
	svgMaxText = 44 // characters of a line before it is cut
)

// SVGOptions adds to the drawing.
type SVGOptions struct {
	// Notes are extra lines drawn in a node (by node ID): the page puts
	// each step's numbers there.
	Notes map[string][]string
	// Classes are extra CSS classes of a node's group, by node ID.
	Classes map[string]string
}

type svgBox struct {
	x, y, w, h int
	layer      int
}

// SVG draws the diagram as a standalone SVG: a layered layout computed
// here (nodes in rows by the longest forward path from the start, steps
// kept in file order within a row), so nothing outside herald is needed
// to render it.
func (d Diagram) SVG(opts SVGOptions) string {
	idx := d.nodeIndex()
	n := len(d.Nodes)
	// Forward edges go to a node later in the list; the rest are loops,
	// drawn around the side.
	layer := make([]int, n)
	for i := range n { // nodes are in file order: one pass settles forward edges
		for _, e := range d.Edges {
			if idx[e.To] == i && idx[e.From] < i {
				layer[i] = max(layer[i], layer[idx[e.From]]+1)
			}
		}
	}
	rows := map[int][]int{}
	maxLayer := 0
	for i := range n {
		rows[layer[i]] = append(rows[layer[i]], i)
		maxLayer = max(maxLayer, layer[i])
	}
	lines := make([][]string, n)
	for i, nd := range d.Nodes {
		ls := []string{nd.Title, nd.Detail}
		ls = append(ls, opts.Notes[nd.ID]...)
		lines[i] = ls
	}
	boxes := make([]svgBox, n)
	widest := 0
	for _, r := range rows {
		widest = max(widest, len(r))
	}
	width := svgMargin*2 + widest*svgNodeW + (widest-1)*svgGapX + svgLoopGap*2
	y := svgMargin
	for l := 0; l <= maxLayer; l++ {
		r := rows[l]
		rowH := 0
		for _, i := range r {
			rowH = max(rowH, len(lines[i])*svgLineH+2*svgPadY)
		}
		rowW := len(r)*svgNodeW + (len(r)-1)*svgGapX
		x := (width - rowW) / 2
		for _, i := range r {
			boxes[i] = svgBox{x: x, y: y, w: svgNodeW, h: len(lines[i])*svgLineH + 2*svgPadY, layer: l}
			x += svgNodeW + svgGapX
		}
		y += rowH + svgGapY
	}
	height := y - svgGapY + svgMargin

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" class="workflow-diagram" viewBox="0 0 %d %d" width="%d" height="%d" role="img" aria-label="%s">`+"\n",
		width, height, width, height, html.EscapeString("workflow "+d.Workflow))
	b.WriteString(svgStyle)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrowhead"/></marker></defs>` + "\n")

	// Edges first, so boxes sit on top of them; labels last of all.
	type label struct {
		x, y int
		text string
		kind string
	}
	var labels []label
	loops := 0
	for _, e := range d.Edges {
		f, t := boxes[idx[e.From]], boxes[idx[e.To]]
		var path string
		var lx, ly int
		if t.layer == f.layer+1 {
			x1, y1 := f.x+f.w/2, f.y+f.h
			x2, y2 := t.x+t.w/2, t.y
			my := (y1 + y2) / 2
			path = fmt.Sprintf("M %d %d C %d %d, %d %d, %d %d", x1, y1, x1, my, x2, my, x2, y2)
			lx, ly = x1+(x2-x1)*3/4, my+(y2-my)/3 // near the target, so labels of one step's edges part
		} else if t.layer > f.layer+1 { // past other rows: round the left side
			loops++
			side := svgMargin/2 + loops*6
			x1, y1 := f.x, f.y+f.h/2
			x2, y2 := t.x, t.y+t.h/2
			path = fmt.Sprintf("M %d %d C %d %d, %d %d, %d %d", x1, y1, side, y1, side, y2, x2, y2)
			lx, ly = side+50, y1+(y2-y1)/3
		} else { // a loop: out of the right side, round, into the target's right side
			loops++
			side := width - svgMargin/2 - loops*6
			x1, y1 := f.x+f.w, f.y+f.h/2
			x2, y2 := t.x+t.w, t.y+t.h/2
			path = fmt.Sprintf("M %d %d C %d %d, %d %d, %d %d", x1, y1, side, y1, side, y2, x2, y2)
			lx, ly = side-40, (y1+y2)/2
		}
		fmt.Fprintf(&b, `<path class="edge edge-%s" d="%s" marker-end="url(#arrow)"><title>%s</title></path>`+"\n", e.Kind, path, html.EscapeString(e.Label))
		labels = append(labels, label{lx, ly, e.Label, e.Kind})
	}
	for i, nd := range d.Nodes {
		bx := boxes[i]
		class := "node node-" + nd.Kind
		if c := opts.Classes[nd.ID]; c != "" {
			class += " " + c
		}
		rx := 6
		switch nd.Kind {
		case NodeStart, NodeExit, NodeComplete, KindEnd:
			rx = bx.h / 2
		}
		fmt.Fprintf(&b, `<g class="%s" data-node="%s"><rect x="%d" y="%d" width="%d" height="%d" rx="%d"/>`,
			class, html.EscapeString(nd.ID), bx.x, bx.y, bx.w, bx.h, rx)
		for k, ln := range lines[i] {
			cls := "note"
			switch k {
			case 0:
				cls = "title"
			case 1:
				cls = "detail"
			}
			fmt.Fprintf(&b, `<text class="%s" x="%d" y="%d">%s</text>`, cls, bx.x+bx.w/2, bx.y+svgPadY+(k+1)*svgLineH-4, html.EscapeString(cut(ln, svgMaxText)))
		}
		b.WriteString("</g>\n")
	}
	for _, l := range labels {
		text := cut(l.text, 34)
		w := len([]rune(text))*6 + 10
		fmt.Fprintf(&b, `<g class="label label-%s"><rect x="%d" y="%d" width="%d" height="16" rx="3"/><text x="%d" y="%d">%s</text></g>`+"\n",
			l.kind, l.x-w/2, l.y-8, w, l.x, l.y+4, html.EscapeString(text))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// svgStyle keeps the SVG readable on its own (a file opened in a browser)
// and inside a page.
const svgStyle = `<style>
.workflow-diagram { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
.workflow-diagram .node rect { fill: #fff; stroke: #4a5568; stroke-width: 1.5; }
.workflow-diagram .node-send rect { fill: #ebf8ff; stroke: #2b6cb0; }
.workflow-diagram .node-wait rect { fill: #fffaf0; stroke: #c05621; }
.workflow-diagram .node-branch rect { fill: #faf5ff; stroke: #6b46c1; }
.workflow-diagram .node-start rect, .workflow-diagram .node-complete rect, .workflow-diagram .node-end rect { fill: #f0fff4; stroke: #2f855a; }
.workflow-diagram .node-exit rect { fill: #fff5f5; stroke: #c53030; }
.workflow-diagram text { text-anchor: middle; font-size: 12px; fill: #2d3748; }
.workflow-diagram .title { font-weight: 600; font-size: 13px; }
.workflow-diagram .detail { fill: #4a5568; }
.workflow-diagram .note { font-variant-numeric: tabular-nums; fill: #1a202c; }
.workflow-diagram .edge { fill: none; stroke: #718096; stroke-width: 1.4; }
.workflow-diagram .edge-exit { stroke-dasharray: 5 4; stroke: #c53030; }
.workflow-diagram .edge-until { stroke: #2f855a; }
.workflow-diagram .arrowhead { fill: #718096; }
.workflow-diagram .label rect { fill: #fff; stroke: #e2e8f0; }
.workflow-diagram .label text { font-size: 10px; fill: #4a5568; }
</style>
`

// cut shortens s to n characters with an ellipsis.
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// Formats lists the diagram formats Render accepts.
var Formats = []string{"mermaid", "dot", "svg"}

// Render returns the diagram in one of Formats.
func (d Diagram) Render(format string) (string, error) {
	switch format {
	case "mermaid", "":
		return d.Mermaid(), nil
	case "dot":
		return d.DOT(), nil
	case "svg":
		return d.SVG(SVGOptions{}), nil
	}
	return "", fmt.Errorf("unknown diagram format %q (want %s)", format, strings.Join(Formats, ", "))
}

// StepIDs lists the diagram's step nodes in file order.
func (d Diagram) StepIDs() []string {
	var out []string
	for _, n := range d.Nodes {
		if !slices.Contains([]string{NodeStart, NodeExit, NodeComplete}, n.Kind) {
			out = append(out, n.ID)
		}
	}
	return out
}
