package workflows

import (
	"cmp"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"
)

// Set holds the loaded workflows, the current version of each, plus any
// older versions added back so running journeys finish on the version they
// started with. It is safe for concurrent use.
type Set struct {
	mu       sync.RWMutex
	current  map[string]*Workflow
	versions map[string]map[string]*Workflow // id → version → workflow
}

// NewSet returns a set whose current workflows are ws. Later entries with the
// same ID replace earlier ones.
func NewSet(ws ...*Workflow) *Set {
	s := &Set{current: map[string]*Workflow{}, versions: map[string]map[string]*Workflow{}}
	for _, w := range ws {
		s.current[w.ID] = w
		s.addVersion(w)
	}
	return s
}

// Load parses every *.yaml and *.yml file under fsys (recursively) and checks
// what spans files (workflow IDs are unique). The error, if any, is Problems
// listing every problem in every file.
//
// With Problems it still returns a Set, of every workflow that got as far
// as an ID, those with problems too (the first of a duplicate ID), so that
// checks of what names a workflow (a broadcast) go on without reporting it
// unknown. Such a Set must not run journeys.
func Load(fsys fs.FS, opts LoadOptions) (*Set, error) {
	var probs Problems
	var ws, parsed []*Workflow
	err := fs.WalkDir(fsys, ".", func(name string, e fs.DirEntry, err error) error {
		if err != nil {
			probs = append(probs, Problem{File: name, Message: err.Error()})
			return nil
		}
		if e.IsDir() {
			return nil
		}
		if ext := strings.ToLower(path.Ext(name)); ext != ".yaml" && ext != ".yml" {
			return nil
		}
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			probs = append(probs, Problem{File: name, Message: err.Error()})
			return nil
		}
		d := &decoder{file: name}
		w := d.workflow(src, opts)
		probs = append(probs, d.probs...)
		parsed = append(parsed, w)
		if len(d.probs) == 0 {
			ws = append(ws, w)
		}
		return nil
	})
	if err != nil {
		probs = append(probs, Problem{File: ".", Message: err.Error()})
	}

	// Workflows with problems still claim their ID, so a duplicate is
	// reported even while the other file is broken.
	first := map[string]*Workflow{}
	var named []*Workflow
	for _, w := range parsed {
		if w.ID == "" {
			continue
		}
		if f, dup := first[w.ID]; dup {
			probs = append(probs, Problem{File: w.File, Line: w.idLine,
				Message: fmt.Sprintf("duplicate workflow id %q (also in %s:%d)", w.ID, f.File, f.idLine)})
			continue
		}
		first[w.ID] = w
		named = append(named, w)
	}
	if err := probs.err(); err != nil {
		return NewSet(named...), err
	}
	return NewSet(ws...), nil
}

func (s *Set) addVersion(w *Workflow) {
	vs := s.versions[w.ID]
	if vs == nil {
		vs = map[string]*Workflow{}
		s.versions[w.ID] = vs
	}
	if _, ok := vs[w.Version]; !ok {
		vs[w.Version] = w
	}
}

// Get returns the current version of a workflow.
func (s *Set) Get(id string) (*Workflow, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, ok := s.current[id]
	return w, ok
}

// Version returns a workflow at a given version: the current one or one
// added with Add.
func (s *Set) Version(id, version string) (*Workflow, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	w, ok := s.versions[id][version]
	return w, ok
}

// Add registers another version of a workflow (typically parsed from the
// source stored with a journey) without making it current: new journeys
// keep starting on the loaded file.
func (s *Set) Add(w *Workflow) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addVersion(w)
}

// Versions returns every version the set holds, current ones and those
// added back, ordered by ID then version.
func (s *Set) Versions() []*Workflow {
	s.mu.RLock()
	var out []*Workflow
	for _, vs := range s.versions {
		for _, w := range vs {
			out = append(out, w)
		}
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Workflow) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Version, b.Version))
	})
	return out
}

// Triggered returns the current workflows started by event, ordered by ID.
func (s *Set) Triggered(event string) []*Workflow {
	var out []*Workflow
	for _, w := range s.All() {
		if w.Trigger == event {
			out = append(out, w)
		}
	}
	return out
}

// All returns the current workflows ordered by ID.
func (s *Set) All() []*Workflow {
	s.mu.RLock()
	out := make([]*Workflow, 0, len(s.current))
	for _, w := range s.current {
		out = append(out, w)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Workflow) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
