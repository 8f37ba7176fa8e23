package main

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/heraldhq/herald/config"
	"github.com/heraldhq/herald/examples"
	"github.com/heraldhq/herald/templates"
	"github.com/heraldhq/herald/workflows"
)

// contentSource is where a process's templates and workflows come from:
// the configured folders or the embedded examples. A nil FS means none.
type contentSource struct {
	templates, workflows fs.FS
	// tdir and wdir name them in problems and start-up lines.
	tdir, wdir string
	// folders is true when tdir and wdir are folders on disk.
	folders bool
}

// folderContent is the content the worker loads: the configured folders
// and nothing else.
func folderContent(c config.Config) contentSource {
	s := contentSource{folders: true}
	if d := c.Content.Templates; d != "" {
		s.templates, s.tdir = os.DirFS(d), d
	}
	if d := c.Content.Workflows; d != "" {
		s.workflows, s.wdir = os.DirFS(d), d
	}
	return s
}

// exampleContent is the embedded examples, which only herald dev runs and
// validate and preview read when no folder is configured.
func exampleContent() contentSource {
	return contentSource{
		templates: examples.Templates(), workflows: examples.Workflows(),
		tdir: "examples/templates", wdir: "examples/workflows",
	}
}

// none reports whether neither templates nor workflows are set.
func (s contentSource) none() bool { return s.templates == nil && s.workflows == nil }

// describe says where the templates (what "templates") or the workflows
// come from and how many there are, e.g. "./content/workflows (3 files)".
func (s contentSource) describe(what string) string {
	fsys, dir, setting := s.templates, s.tdir, "content.templates / HERALD_TEMPLATES"
	if what == "workflows" {
		fsys, dir, setting = s.workflows, s.wdir, "content.workflows / HERALD_WORKFLOWS"
	}
	switch {
	case fsys == nil:
		return "none (" + setting + " not set)"
	case !s.folders:
		dir = "embedded " + dir
	default:
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return dir + " (not a folder)"
		}
	}
	if what == "templates" {
		return fmt.Sprintf("%s (%d templates)", dir, countTemplates(fsys))
	}
	return fmt.Sprintf("%s (%d files)", dir, countWorkflowFiles(fsys))
}

// countTemplates counts the template folders templates.Load reads.
func countTemplates(fsys fs.FS) int {
	entries, _ := fs.ReadDir(fsys, ".")
	n := 0
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n
}

// countWorkflowFiles counts the files workflows.Load reads.
func countWorkflowFiles(fsys fs.FS) int {
	n := 0
	_ = fs.WalkDir(fsys, ".", func(name string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if ext := strings.ToLower(path.Ext(name)); ext == ".yaml" || ext == ".yml" {
				n++
			}
		}
		return nil
	})
	return n
}

// checkContent loads templates and workflows and runs every check on them:
// templates parse and render their samples in every locale, no locale of
// content.locales (when set) is missing, workflows parse and name known templates,
// topics and events, and, when channels is not nil, no send step can only
// use channels outside it. herald validate prints the problems; start-up,
// SIGHUP and --watch reloads refuse content that has any. Each problem is
// one line, its file named under tdir or wdir.
//
// One problem hides no other: the sets come back even with problems,
// knowing every template and workflow by name, broken ones too, so that
// workflows and broadcasts naming them are checked as they stand. Sets
// returned with problems are for such checks only, never to run.
func checkContent(src contentSource, c config.Config, channels []string) (*templates.Set, *workflows.Set, []string) {
	var probs []string
	add := func(dir string, err error) { probs = append(probs, problemLines(dir, err)...) }
	if src.folders {
		for _, f := range []struct{ dir, field string }{{src.tdir, "content.templates (HERALD_TEMPLATES)"}, {src.wdir, "content.workflows (HERALD_WORKFLOWS)"}} {
			if f.dir == "" {
				continue
			}
			if st, err := os.Stat(f.dir); err != nil || !st.IsDir() {
				probs = append(probs, fmt.Sprintf("%s: %s is not a folder", f.field, f.dir))
			}
		}
		if len(probs) > 0 {
			return nil, nil, probs
		}
	}
	var tset *templates.Set
	if src.templates != nil {
		var err error
		tset, err = templates.Load(src.templates, templateOptions(c))
		var tp templates.Problems
		switch {
		case tset == nil:
			add(src.tdir, err)
		case err == nil || errors.As(err, &tp):
			// What failed to load and what the rest renders, file by file.
			tp = append(tp, tset.Check()...)
			slices.SortStableFunc(tp, func(a, b templates.Problem) int {
				return cmp.Or(strings.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
			})
			add(src.tdir, tp)
			// A template that did not load has no locales to miss. Unless
			// content.locales names the locales every template must have,
			// a translation some templates lack is no problem: those
			// messages fall back (see localeNotes).
			if err == nil && len(c.Content.Locales) > 0 {
				add(src.tdir, tset.CheckLocales(c.Content.Locales))
			}
		default:
			add(src.tdir, err)
		}
	}
	var wset *workflows.Set
	if src.workflows != nil {
		topics := policy(c).Topics
		opts := workflows.LoadOptions{
			Topics:     func(t string) bool { _, ok := topics[t]; return ok },
			Configured: channels,
		}
		if tset != nil {
			opts.TemplateExists = tset.Has
		}
		var err error
		wset, err = workflows.Load(src.workflows, opts)
		add(src.wdir, err)
	}
	return tset, wset, probs
}

// problemLines formats the problems in err, each file named under dir.
func problemLines(dir string, err error) []string {
	if err == nil {
		return nil
	}
	var tp templates.Problems
	var wp workflows.Problems
	var lines []string
	switch {
	case errors.As(err, &tp):
		for _, p := range tp {
			p.File = filepath.Join(dir, p.File)
			lines = append(lines, p.String())
		}
	case errors.As(err, &wp):
		for _, p := range wp {
			p.File = filepath.Join(dir, p.File)
			lines = append(lines, p.String())
		}
	default:
		lines = append(lines, dir+": "+err.Error())
	}
	return lines
}

// settingsProblems builds, connecting to nothing, what Main.Open builds
// from the settings alone and refuses to start without: the Redis
// connection options (redisConn) and the sender of each configured channel
// (Main.senders, which parses the SMTP URL and reads the DKIM key). herald
// validate calls the same functions, so a config it passes gets past them
// at start-up too. A channel-less config is Needs' to report.
func settingsProblems(c config.Config) []error {
	var errs []error
	if c.Redis.Configured() {
		if _, err := redisConn(c.Redis); err != nil {
			errs = append(errs, err)
		}
	}
	if len(c.Channels()) > 0 {
		m := &Main{Config: c}
		if _, err := m.senders(); err != nil {
			errs = append(errs, err)
		}
		_ = m.Close() // the senders have dialled nothing
	}
	return errs
}

// contentError is the error of content with problems.
func contentError(probs []string) error {
	return fmt.Errorf("%d problem(s) in templates and workflows:\n%s", len(probs), strings.Join(probs, "\n"))
}

// localeNotes lists, while content.locales is unset, each locale that some
// templates have and a template lacks, with the locale its messages fall
// back to: not a problem (a translation can be added one template at a
// time), but worth knowing. Setting content.locales makes them problems.
func localeNotes(src contentSource, c config.Config, tset *templates.Set) []string {
	if tset == nil || len(c.Content.Locales) > 0 {
		return nil
	}
	return problemLines(src.tdir, tset.CheckLocales(nil))
}
