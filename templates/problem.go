package templates

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a template file, located so that an editor
// can jump to it.
type Problem struct {
	File    string
	Line    int // 0 when the problem concerns the whole file or folder
	Message string
}

// String formats the problem as "file:line: message" (without the file
// when the problem is not in one, such as a configured locale).
func (p Problem) String() string {
	if p.File == "" {
		return p.Message
	}
	if p.Line <= 0 {
		return fmt.Sprintf("%s: %s", p.File, p.Message)
	}
	return fmt.Sprintf("%s:%d: %s", p.File, p.Line, p.Message)
}

// Error makes a single Problem usable as an error (Render wraps one).
func (p Problem) Error() string { return p.String() }

// Problems collects every problem found, so that `herald validate` can show
// them all at once instead of one per run.
type Problems []Problem

// Error lists one problem per line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}

func (ps *Problems) add(file string, line int, format string, args ...any) {
	*ps = append(*ps, Problem{File: file, Line: line, Message: fmt.Sprintf(format, args...)})
}
