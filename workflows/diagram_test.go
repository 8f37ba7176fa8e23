package workflows

import (
	"encoding/xml"
	"fmt"
	"html"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func loadExamples(t *testing.T) *Set {
	t.Helper()
	set, err := Load(os.DirFS("../examples/workflows"), LoadOptions{})
	require.NoError(t, err)
	return set
}

// Every step is a node and every way out of a step an edge labelled with
// what takes it: the send, the wait's duration and events, the branch's
// conditions, the exit events.
func TestDiagramEdges(t *testing.T) {
	t.Parallel()
	set := loadExamples(t)
	trial, _ := set.Get("trial-onboarding")
	d := trial.Diagram()
	require.Equal(t, []string{"welcome", "wait-for-project", "nudge", "done", "congrats"}, d.StepIDs())
	type edge struct{ from, to, kind, label string }
	var got []edge
	for _, e := range d.Edges {
		got = append(got, edge{e.From, e.To, e.Kind, e.Label})
	}
	require.Equal(t, []edge{
		{"(start)", "welcome", EdgeTrigger, "trial.started"},
		{"welcome", "wait-for-project", EdgeNext, "sent"},
		{"wait-for-project", "congrats", EdgeUntil, "project.created"},
		{"wait-for-project", "nudge", EdgeTimeout, "after 48h"},
		{"wait-for-project", "(exit)", EdgeExit, "exit on subscription.purchased"},
		{"nudge", "done", EdgeNext, "sent at 09:00 local"},
		{"nudge", "(exit)", EdgeExit, "exit on subscription.purchased"},
		{"congrats", "(complete)", EdgeNext, "sent"},
	}, got)

	re, _ := set.Get("re-engagement")
	d = re.Diagram()
	var labels []string
	for _, e := range d.Edges {
		if e.From == "choose-follow-up" {
			labels = append(labels, e.To+": "+e.Label)
		}
	}
	require.Equal(t, []string{
		`winback-offer: if customer.plan == "enterprise" || (data.lifetime_value ?? 0) >= 1000`,
		"feedback-request: otherwise",
	}, labels)
	for _, n := range d.Nodes {
		require.NotEqual(t, NodeExit, n.Kind, "re-engagement has no exit_on: no exit node")
	}
}

// The three formats carry every step and every edge label.
func TestDiagramFormats(t *testing.T) {
	t.Parallel()
	for _, w := range loadExamples(t).All() {
		d := w.Diagram()
		for _, format := range Formats {
			out, err := d.Render(format)
			require.NoError(t, err)
			for _, id := range d.StepIDs() {
				require.Contains(t, out, id, "%s %s", w.ID, format)
			}
			for _, e := range d.Edges {
				want := e.Label
				switch format {
				case "mermaid":
					want = mermaidText(want)
				case "dot":
					want = strings.Trim(dotQuote(want), `"`)
				case "svg":
					want = html.EscapeString(cut(want, 34))
				}
				require.Contains(t, out, want, "%s %s: edge %s → %s", w.ID, format, e.From, e.To)
			}
		}
	}
	_, err := loadExamples(t).All()[0].Diagram().Render("png")
	require.ErrorContains(t, err, `unknown diagram format "png"`)
}

// The SVG is well-formed XML, draws the notes it is given in their node and
// keeps every box apart.
func TestDiagramSVG(t *testing.T) {
	t.Parallel()
	set := loadExamples(t)
	re, _ := set.Get("re-engagement")
	svg := re.Diagram().SVG(SVGOptions{Notes: map[string][]string{"we-miss-you": {"entered 12", "sent email 11"}}})
	dec := xml.NewDecoder(strings.NewReader(svg))
	type rect struct{ x, y, w, h float64 }
	var boxes []rect
	inNode := ""
	var notes []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		switch el := tok.(type) {
		case xml.StartElement:
			attr := map[string]string{}
			for _, a := range el.Attr {
				attr[a.Name.Local] = a.Value
			}
			if el.Name.Local == "g" && attr["data-node"] != "" {
				inNode = attr["data-node"]
			}
			if el.Name.Local == "rect" && inNode != "" {
				var r rect
				_, err := fmtSscan(attr["x"], attr["y"], attr["width"], attr["height"], &r.x, &r.y, &r.w, &r.h)
				require.NoError(t, err)
				boxes = append(boxes, r)
			}
			if el.Name.Local == "text" && attr["class"] == "note" && inNode == "we-miss-you" {
				var s string
				require.NoError(t, dec.DecodeElement(&s, &el))
				notes = append(notes, s)
			}
		case xml.EndElement:
			if el.Name.Local == "g" {
				inNode = ""
			}
		}
	}
	require.Equal(t, []string{"entered 12", "sent email 11"}, notes)
	require.Len(t, boxes, len(re.Diagram().Nodes))
	for i, a := range boxes {
		for _, b := range boxes[i+1:] {
			overlap := a.x < b.x+b.w && b.x < a.x+a.w && a.y < b.y+b.h && b.y < a.y+a.h
			require.False(t, overlap, "boxes %v and %v overlap", a, b)
		}
	}
}

func fmtSscan(x, y, w, h string, dst ...*float64) (int, error) {
	return fmt.Sscan(x+" "+y+" "+w+" "+h, dst[0], dst[1], dst[2], dst[3])
}
