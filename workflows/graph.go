package workflows

import (
	"fmt"
	"slices"
	"strings"
)

// jump is an edge of the step graph named in the file (then, default).
type jump struct {
	target string
	line   int
}

// jumps lists the named jumps of step s.
func (s *Step) jumps() []jump {
	var out []jump
	switch {
	case s.Wait != nil && s.Wait.Then != "":
		out = append(out, jump{s.Wait.Then, s.Wait.thenLine})
	case s.Branch != nil:
		for _, c := range s.Branch.Cases {
			if c.Then != "" {
				out = append(out, jump{c.Then, c.thenLine})
			}
		}
		if s.Branch.Default != "" {
			out = append(out, jump{s.Branch.Default, s.Branch.defaultLine})
		}
	case s.Split != nil:
		for _, a := range s.Split.Arms {
			if a.Then != "" {
				out = append(out, jump{a.Then, a.thenLine})
			}
		}
	case s.Digest != nil && s.Digest.Then != "":
		out = append(out, jump{s.Digest.Then, s.Digest.thenLine})
	}
	return out
}

// continues reports whether step s can go on to the next step in order:
// after a send, on a wait's timeout, or when no branch case matches and
// there is no default.
func (s *Step) continues() bool {
	switch s.Kind {
	case KindEnd:
		return false
	case KindBranch:
		return s.Branch == nil || s.Branch.Default == ""
	case KindSplit:
		return false
	case KindDigest:
		return s.Digest == nil || s.Digest.Then == ""
	}
	return true
}

// successors returns the indexes of the steps reachable from step i in one
// move. Falling off the last step is not an edge: it finishes the journey.
func (w *Workflow) successors(i int) []int {
	s := w.Steps[i]
	var out []int
	for _, j := range s.jumps() {
		if k, ok := w.index[j.target]; ok && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	if s.continues() && i+1 < len(w.Steps) && !slices.Contains(out, i+1) {
		out = append(out, i+1)
	}
	return out
}

// pauses reports whether a journey stops at step s until a wake-up: a wait,
// or a digest collecting its window. A loop through one cannot spin.
func (s *Step) pauses() bool { return s.Kind == KindWait || s.Kind == KindDigest }

func stepName(s *Step, i int) string {
	if s.ID != "" {
		return fmt.Sprintf("%q", s.ID)
	}
	return fmt.Sprintf("#%d", i+1)
}

// checkGraph reports jumps to missing steps, unreachable steps, and loops
// that pass no wait step (they would spin without ever pausing).
func (d *decoder) checkGraph(w *Workflow) {
	for i, s := range w.Steps {
		for _, j := range s.jumps() {
			if _, ok := w.index[j.target]; !ok {
				d.addf(j.line, "step %s: jump to unknown step %q", stepName(s, i), j.target)
			}
		}
	}
	if len(w.Steps) == 0 {
		return
	}

	seen := make([]bool, len(w.Steps))
	queue := []int{0}
	seen[0] = true
	for len(queue) > 0 {
		i := queue[0]
		queue = queue[1:]
		for _, k := range w.successors(i) {
			if !seen[k] {
				seen[k] = true
				queue = append(queue, k)
			}
		}
	}
	for i, s := range w.Steps {
		if !seen[i] {
			d.addf(s.Line, "step %s is unreachable: no jump leads to it and the step before it does not continue", stepName(s, i))
		}
	}

	for _, comp := range w.loopsWithoutWait() {
		names := make([]string, len(comp))
		for k, i := range comp {
			names[k] = stepName(w.Steps[i], i)
		}
		names = append(names, names[0])
		d.addf(w.Steps[comp[0]].Line, "loop without a wait: %s (add a wait step to the loop)", strings.Join(names, " → "))
	}
}

// loopsWithoutWait returns the cycles of the graph left after removing wait
// steps, each as the indexes of one cycle in walking order. Tarjan's strongly
// connected components find every such loop once; a shortest cycle through
// the component's first step makes the message readable.
func (w *Workflow) loopsWithoutWait() [][]int {
	n := len(w.Steps)
	next := func(i int) []int {
		var out []int
		for _, k := range w.successors(i) {
			if !w.Steps[k].pauses() {
				out = append(out, k)
			}
		}
		return out
	}
	index := make([]int, n)
	low := make([]int, n)
	onStack := make([]bool, n)
	for i := range index {
		index[i] = -1
	}
	var stack []int
	var comps [][]int
	counter := 0
	var connect func(v int)
	connect = func(v int) {
		index[v], low[v] = counter, counter
		counter++
		stack = append(stack, v)
		onStack[v] = true
		for _, u := range next(v) {
			if index[u] < 0 {
				connect(u)
				low[v] = min(low[v], low[u])
			} else if onStack[u] {
				low[v] = min(low[v], index[u])
			}
		}
		if low[v] != index[v] {
			return
		}
		var comp []int
		for {
			u := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			onStack[u] = false
			comp = append(comp, u)
			if u == v {
				break
			}
		}
		if len(comp) > 1 || slices.Contains(next(v), v) {
			comps = append(comps, comp)
		}
	}
	for i := range n {
		if !w.Steps[i].pauses() && index[i] < 0 {
			connect(i)
		}
	}

	var loops [][]int
	for _, comp := range comps {
		slices.Sort(comp)
		loops = append(loops, shortestCycle(comp, next))
	}
	slices.SortFunc(loops, func(a, b []int) int { return a[0] - b[0] })
	return loops
}

// shortestCycle finds a shortest cycle through comp[0] inside comp.
func shortestCycle(comp []int, next func(int) []int) []int {
	start := comp[0]
	prev := map[int]int{}
	queue := []int{start}
	for len(queue) > 0 {
		v := queue[0]
		queue = queue[1:]
		for _, u := range next(v) {
			if !slices.Contains(comp, u) {
				continue
			}
			if u == start {
				path := []int{v}
				for path[len(path)-1] != start {
					path = append(path, prev[path[len(path)-1]])
				}
				slices.Reverse(path)
				return path
			}
			if _, ok := prev[u]; !ok {
				prev[u] = v
				queue = append(queue, u)
			}
		}
	}
	return comp
}
