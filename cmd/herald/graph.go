package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/workflows"
)

// cmdGraph prints a workflow as a diagram: Mermaid (paste into a Markdown
// file or mermaid.live), DOT (Graphviz) or a standalone SVG.
func cmdGraph(args []string, stdout, stderr io.Writer) error {
	fs, path := flags("graph", stderr)
	format := fs.String("format", "mermaid", "mermaid, dot or svg")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: herald graph WORKFLOW [--format mermaid|dot|svg]")
	}
	if !slices.Contains(workflows.Formats, *format) {
		return fmt.Errorf("graph: --format %q: want %s", *format, strings.Join(workflows.Formats, ", "))
	}
	c, err := config.Load(*path)
	if err != nil {
		return err
	}
	// The worker's folders; with none configured, the embedded examples.
	src := folderContent(c)
	if src.none() {
		src = exampleContent()
	}
	if src.workflows == nil {
		return errors.New("graph: no workflows folder configured (HERALD_WORKFLOWS)")
	}
	set, err := workflows.Load(src.workflows, workflows.LoadOptions{})
	if err != nil {
		for _, l := range problemLines(src.wdir, err) {
			fmt.Fprintln(stderr, l)
		}
		return exitError(1)
	}
	w, ok := set.Get(pos[0])
	if !ok {
		var ids []string
		for _, w := range set.All() {
			ids = append(ids, w.ID)
		}
		return fmt.Errorf("graph: no workflow %q (have: %s)", pos[0], strings.Join(ids, ", "))
	}
	out, err := w.Diagram().Render(*format)
	if err != nil {
		return err
	}
	_, err = io.WriteString(stdout, out)
	return err
}
