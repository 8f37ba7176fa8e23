package httpapi

import (
	"bytes"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/heraldhq/herald/engine"
	"github.com/heraldhq/herald/workflows"
)

// The workflow pages show marketing how each journey is doing: a list of
// workflows with their last week, and each workflow's diagram with its
// numbers on every step. Server-rendered HTML and SVG, no script, nothing
// fetched from elsewhere; they sit behind the dashboard's auth and headers.

// pageRanges are the time ranges a workflow page offers.
type pageRange struct {
	Key   string
	Label string
	D     time.Duration
}

var pageRanges = []pageRange{
	{"24h", "24 h", 24 * time.Hour},
	{"7d", "7 d", 7 * 24 * time.Hour},
	{"30d", "30 d", 30 * 24 * time.Hour},
}

func (s *server) workflowPages() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /workflows/{$}", s.workflowListPage)
	mux.HandleFunc("GET /workflows/{id}", s.workflowPage)
	return mux
}

type listRow struct {
	W *workflows.Workflow
	J engine.JourneyNumbers
}

func (s *server) workflowListPage(w http.ResponseWriter, r *http.Request) {
	var rows []listRow
	for _, wf := range s.e.WorkflowList() {
		st, err := s.e.Stats(r.Context(), wf.ID, s.cfg.Now().Add(-week))
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		rows = append(rows, listRow{wf, st.Journeys})
	}
	s.renderPage(w, http.StatusOK, "list", map[string]any{"Title": "Workflows", "Rows": rows})
}

type stepRow struct {
	ID, Kind string
	N        *engine.StepNumbers
	Lines    []string
}

func (s *server) workflowPage(w http.ResponseWriter, r *http.Request) {
	wf, err := s.e.Workflow(r.PathValue("id"))
	if err != nil {
		s.renderPage(w, http.StatusNotFound, "missing", map[string]any{"Title": "Workflow not found", "ID": r.PathValue("id")})
		return
	}
	rng := pageRanges[0]
	if q := r.URL.Query().Get("range"); q != "" {
		i := slices.IndexFunc(pageRanges, func(p pageRange) bool { return p.Key == q })
		if i < 0 {
			s.renderPage(w, http.StatusBadRequest, "missing", map[string]any{"Title": "Unknown range", "ID": q})
			return
		}
		rng = pageRanges[i]
	}
	st, err := s.e.Stats(r.Context(), wf.ID, s.cfg.Now().Add(-rng.D))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	conv, err := s.e.WorkflowCounts(r.Context(), wf.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	notes := map[string][]string{}
	var rows []stepRow
	for _, step := range wf.Steps {
		n := st.Steps[step.ID]
		lines := stepLines(step, n)
		for _, a := range conv.Arms {
			if a.Step == step.ID {
				line := fmt.Sprintf("arm %s: entered %d", a.Arm, a.Entered)
				if wf.Goal != nil {
					line += fmt.Sprintf(" · converted %d", a.Converted)
				}
				lines = append(lines, line)
			}
		}
		notes[step.ID] = lines
		rows = append(rows, stepRow{ID: step.ID, Kind: step.Kind, N: n, Lines: lines})
	}
	j := st.Journeys
	notes["(start)"] = []string{fmt.Sprintf("started %d · running now %d", j.Started, j.Running)}
	if wf.Goal != nil {
		notes["(start)"] = append(notes["(start)"], fmt.Sprintf("goal %s: converted %d of %d (all time)", wf.Goal.Event, conv.Converted, conv.Started))
	}
	notes["(complete)"] = []string{fmt.Sprintf("completed %d", j.Completed)}
	notes["(exit)"] = []string{fmt.Sprintf("exited %d", j.Exited)}
	svg := wf.Diagram().SVG(workflows.SVGOptions{Notes: notes})
	s.renderPage(w, http.StatusOK, "workflow", map[string]any{
		"Title": wf.ID, "W": wf, "Stats": st, "Range": rng.Key, "Ranges": pageRanges, "Conv": conv,
		"Diagram": template.HTML(svg), "Rows": rows, //nolint:gosec // drawn by workflows.SVG, every text escaped there
	})
}

// stepLines are the numbers drawn in a step's box.
func stepLines(step *workflows.Step, n *engine.StepNumbers) []string {
	if n == nil {
		return []string{"entered 0"}
	}
	lines := []string{fmt.Sprintf("entered %d", n.Entered)}
	if step.Kind == workflows.KindSend {
		lines = append(lines, "sent "+perKey(n.Sent, "0"))
		if len(n.Suppressed) > 0 {
			lines = append(lines, "suppressed "+perKey(n.Suppressed, "0"))
		}
		lines = append(lines, fmt.Sprintf("failed %d", n.Failed))
	}
	if step.Kind == workflows.KindWait || step.DelayUntilLocal != "" {
		line := fmt.Sprintf("waiting now %d", n.Waiting)
		if step.Kind == workflows.KindWait {
			line += fmt.Sprintf(" · timed out %d", n.TimedOut)
		}
		lines = append(lines, line)
	}
	if len(n.Exited) > 0 {
		lines = append(lines, "exited "+perKey(n.Exited, "0"))
	}
	return lines
}

// perKey writes "email 12 · slack 3" in key order, or none.
func perKey(m map[string]int64, none string) string {
	if len(m) == 0 {
		return none
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, " · ")
}

func (s *server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("workflow page", "path", r.URL.Path, "err", err)
	s.renderPage(w, http.StatusServiceUnavailable, "missing", map[string]any{"Title": "Numbers unavailable", "ID": "try again in a moment"})
}

func (s *server) renderPage(w http.ResponseWriter, status int, name string, data map[string]any) {
	var b bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&b, name, data); err != nil {
		s.log.Error("render workflow page", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"join": strings.Join,
}).Parse(`
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · herald</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1a202c; background: #f7fafc; }
header { background: #1a202c; color: #fff; padding: 12px 24px; display: flex; gap: 24px; align-items: baseline; }
header a { color: #e2e8f0; text-decoration: none; }
header strong { font-size: 18px; }
main { padding: 20px 24px; }
table { border-collapse: collapse; background: #fff; }
th, td { padding: 6px 12px; border-bottom: 1px solid #e2e8f0; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
.ranges a { display: inline-block; padding: 4px 10px; border: 1px solid #cbd5e0; border-radius: 4px; margin-right: 4px; color: #2d3748; text-decoration: none; background: #fff; }
.ranges a[aria-current="page"] { background: #2b6cb0; color: #fff; border-color: #2b6cb0; }
.summary { margin: 12px 0; }
.summary span { margin-right: 18px; }
.diagram { background: #fff; border: 1px solid #e2e8f0; overflow-x: auto; margin: 12px 0; }
code { background: #edf2f7; padding: 1px 4px; border-radius: 3px; }
</style></head><body>
<header><strong>herald</strong><a href="/workflows/">Workflows</a><a href="/monitoring/">Queues</a></header>
<main>{{end}}

{{define "foot"}}</main></body></html>{{end}}

{{define "list"}}{{template "head" .}}
<h1>Workflows</h1>
<table id="workflows">
<thead><tr><th>Workflow</th><th>Version</th><th>Topic</th><th>Trigger</th><th class="n">Running now</th><th class="n">Started 7 d</th><th class="n">Completed 7 d</th><th class="n">Exited 7 d</th></tr></thead>
<tbody>{{range .Rows}}
<tr data-workflow="{{.W.ID}}"><td><a href="/workflows/{{.W.ID}}">{{.W.ID}}</a></td><td><code>{{.W.Version}}</code></td><td>{{.W.Topic}}</td><td><code>{{.W.Trigger}}</code></td>
<td class="n running">{{.J.Running}}</td><td class="n started">{{.J.Started}}</td><td class="n completed">{{.J.Completed}}</td><td class="n exited">{{.J.Exited}}</td></tr>
{{else}}<tr><td colspan="8">No workflows are loaded.</td></tr>{{end}}</tbody>
</table>
{{template "foot" .}}{{end}}

{{define "workflow"}}{{template "head" .}}
<h1>{{.W.ID}}</h1>
<p>Version <code>{{.W.Version}}</code> · topic {{.W.Topic}} · starts on <code>{{.W.Trigger}}</code>{{if .W.ExitOn}} · exits on <code>{{join .W.ExitOn ", "}}</code>{{end}}</p>
<nav class="ranges" aria-label="Time range">{{$cur := .Range}}{{range .Ranges}}<a href="?range={{.Key}}"{{if eq .Key $cur}} aria-current="page"{{end}}>{{.Label}}</a>{{end}}</nav>
<p class="summary" id="journeys"><span>started <b class="started">{{.Stats.Journeys.Started}}</b></span><span>completed <b class="completed">{{.Stats.Journeys.Completed}}</b></span><span>exited <b class="exited">{{.Stats.Journeys.Exited}}</b></span><span>running now <b class="running">{{.Stats.Journeys.Running}}</b></span></p>
{{if .W.Goal}}<p class="summary" id="goal"><span>goal <code>{{.W.Goal.Event}}</code>: converted <b class="converted">{{.Conv.Converted}}</b> of <b>{{.Conv.Started}}</b> journeys (all time)</span></p>{{end}}
{{if .Conv.Arms}}<table id="arms"><thead><tr><th>Split</th><th>Arm</th><th class="n">Entered</th>{{if .W.Goal}}<th class="n">Converted</th>{{end}}</tr></thead>
<tbody>{{$goal := .W.Goal}}{{range .Conv.Arms}}<tr><td>{{.Step}}</td><td>{{.Arm}}</td><td class="n">{{.Entered}}</td>{{if $goal}}<td class="n converted">{{.Converted}}</td>{{end}}</tr>
{{end}}</tbody></table>{{end}}
<div class="diagram">{{.Diagram}}</div>
<h2>Steps</h2>
<table id="steps">
<thead><tr><th>Step</th><th>Kind</th><th class="n">Entered</th><th>Sent</th><th>Suppressed</th><th class="n">Failed</th><th class="n">Waiting now</th><th class="n">Timed out</th><th>Exited</th></tr></thead>
<tbody>{{range .Rows}}<tr data-step="{{.ID}}"><td>{{.ID}}</td><td>{{.Kind}}</td>{{with .N}}<td class="n entered">{{.Entered}}</td><td class="sent">{{range $k, $v := .Sent}}{{$k}} {{$v}} {{end}}</td><td class="suppressed">{{range $k, $v := .Suppressed}}{{$k}} {{$v}} {{end}}</td><td class="n failed">{{.Failed}}</td><td class="n waiting">{{.Waiting}}</td><td class="n timed-out">{{.TimedOut}}</td><td class="exited">{{range $k, $v := .Exited}}{{$k}} {{$v}} {{end}}</td>{{else}}<td colspan="7">no numbers yet</td>{{end}}</tr>
{{end}}</tbody></table>
{{template "foot" .}}{{end}}

{{define "missing"}}{{template "head" .}}
<h1>{{.Title}}</h1><p><code>{{.ID}}</code></p><p><a href="/workflows/">All workflows</a></p>
{{template "foot" .}}{{end}}
`))
