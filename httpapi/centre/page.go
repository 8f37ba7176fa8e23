package centre

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"strings"

	"github.com/heraldhq/herald/templates"
)

type topicRow struct {
	ID, Name, Label string
	Description     string
	DescribedBy     string // ids for aria-describedby: the description, the required note
	On, Required    bool
}

type channelRow struct {
	ID, Name, Label string
	On              bool
}

type formPage struct {
	Lang        string
	T           text
	Token, CSRF string
	Topics      []topicRow
	AnyRequired bool
	Channels    []channelRow
	Paused      bool
	Zone        string
	QuietStart  string
	QuietEnd    string
	Saved       bool
	Problem     string
}

type unsubscribePage struct {
	Lang     string
	T        text
	Token    string
	Question string
}

type messagePage struct {
	Lang, Title, Body string
	Error             bool
}

// style is inline so the page is one request and works from any mount
// point; the CSP allows exactly this stylesheet by its hash. Colours keep a
// contrast ratio above 7:1 for text and 4.5:1 for controls; controls are at
// least 44px tall. Fonts and line breaking follow the page's lang, as in
// the emails (templates.TextCSS).
var style = `
:root{color-scheme:light;line-height:1.5;color:#1a1a1a;background:#fff;` + templates.TextCSS("") + `}
` + langStyles() + `body{margin:0;padding:1rem}
main{max-width:38rem;margin:0 auto}
h1{font-size:1.6rem;margin:.5rem 0 1rem}
fieldset{border:1px solid #6b6b6b;border-radius:.5rem;margin:0 0 1.25rem;padding:.75rem 1rem 1rem}
legend{font-weight:700;font-size:1.15rem;padding:0 .35rem}
.hint,.note{color:#3d3d3d;font-size:.95rem;margin:.25rem 0 .5rem}
.option{display:flex;align-items:flex-start;gap:.75rem;min-height:44px}
.option input{width:1.5rem;height:1.5rem;margin:.5rem 0 0;flex:none;accent-color:#0b57d0}
.option label,.choice{flex:1}
.option label{display:block;padding:.5rem 0;cursor:pointer}
.desc{color:#3d3d3d;font-size:.95rem;margin:-.4rem 0 .5rem}
.time{display:flex;flex-wrap:wrap;gap:1rem}
.time label{display:flex;flex-direction:column;font-weight:600}
.time input{font:inherit;min-height:44px;padding:0 .5rem;border:1px solid #6b6b6b;border-radius:.35rem}
button{font:inherit;font-weight:700;min-height:48px;padding:.6rem 1.4rem;border:0;border-radius:.5rem;background:#0b57d0;color:#fff;cursor:pointer}
button:focus-visible,input:focus-visible{outline:3px solid #1a1a1a;outline-offset:2px}
.status{background:#e6f4ea;border-left:.35rem solid #146c2e;padding:.75rem 1rem}
.error{background:#fce8e6;border-left:.35rem solid #a50e0e;padding:.75rem 1rem}
`

// langStyles gives each page language whose TextCSS differs from the
// default's its own rule.
func langStyles() string {
	var b strings.Builder
	for _, tag := range supported {
		if css := templates.TextCSS(tag.String()); css != templates.TextCSS("") {
			fmt.Fprintf(&b, ":root:lang(%s){%s}\n", tag, css)
		}
	}
	return b.String()
}

var csp = func() string {
	sum := sha256.Sum256([]byte(style))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
}()

var head = `{{define "head"}}<!doctype html>
<html lang="{{.Lang}}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}}</title>
<style>` + style + `</style>
</head>
<body>
<main>
{{end}}`

var pages = template.Must(template.New("").Funcs(template.FuncMap{"headOf": headOf}).Parse(head + `
{{define "form"}}{{template "head" (headOf .Lang .T.Title)}}
<h1>{{.T.Title}}</h1>
<p>{{.T.Intro}}</p>
{{if .Saved}}<p class="status" role="status">{{.T.Saved}}</p>{{end}}
{{if .Problem}}<p class="error" role="alert">{{.Problem}}</p>{{end}}
<form method="post" action="?token={{.Token}}">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<fieldset>
<legend>{{.T.TopicsLegend}}</legend>
<p class="hint">{{.T.TopicsHint}}</p>
{{range .Topics}}<div class="option">
<input type="checkbox" id="{{.ID}}" name="topic.{{.Name}}" value="on"{{if .On}} checked{{end}}{{if .Required}} disabled{{end}}{{with .DescribedBy}} aria-describedby="{{.}}"{{end}}>
<div class="choice">
<label for="{{.ID}}">{{.Label}}</label>
{{- if .Description}}
<p class="desc" id="{{.ID}}-desc">{{.Description}}</p>
{{- end}}
</div>
</div>
{{end}}{{if .AnyRequired}}<p class="note" id="required-note">{{.T.RequiredNote}}</p>{{end}}
</fieldset>
<fieldset>
<legend>{{.T.ChannelsLegend}}</legend>
<p class="hint">{{.T.ChannelsHint}}</p>
{{range .Channels}}<div class="option">
<input type="checkbox" id="{{.ID}}" name="channel.{{.Name}}" value="on"{{if .On}} checked{{end}}>
<label for="{{.ID}}">{{.Label}}</label>
</div>
{{end}}</fieldset>
<fieldset>
<legend>{{.T.PauseLegend}}</legend>
<div class="option">
<input type="checkbox" id="paused" name="paused" value="on"{{if .Paused}} checked{{end}}>
<label for="paused">{{.T.PauseLabel}}</label>
</div>
</fieldset>
<fieldset>
<legend>{{.T.QuietLegend}}</legend>
<p class="hint" id="quiet-hint">{{.Zone}}</p>
<div class="time">
<label for="quiet-start">{{.T.QuietFrom}}<input type="time" id="quiet-start" name="quiet_start" value="{{.QuietStart}}" aria-describedby="quiet-hint"></label>
<label for="quiet-end">{{.T.QuietTo}}<input type="time" id="quiet-end" name="quiet_end" value="{{.QuietEnd}}" aria-describedby="quiet-hint"></label>
</div>
</fieldset>
<button type="submit">{{.T.Save}}</button>
</form>
</main>
</body>
</html>
{{end}}

{{define "unsubscribe"}}{{template "head" (headOf .Lang .T.UnsubTitle)}}
<h1>{{.T.UnsubTitle}}</h1>
<form method="post" action="?token={{.Token}}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<input type="hidden" name="from" value="page">
<p>{{.Question}}</p>
<button type="submit">{{.T.UnsubButton}}</button>
</form>
</main>
</body>
</html>
{{end}}

{{define "message"}}{{template "head" (headOf .Lang .Title)}}
<h1>{{.Title}}</h1>
{{if .Body}}<p{{if .Error}} role="alert"{{end}}>{{.Body}}</p>{{end}}
</main>
</body>
</html>
{{end}}
`))

type headData struct{ Lang, Title string }

func headOf(lang, title string) headData { return headData{lang, title} }

func render(w http.ResponseWriter, status int, data any) {
	name := "message"
	switch data.(type) {
	case formPage:
		name = "form"
	case unsubscribePage:
		name = "unsubscribe"
	}
	var buf bytes.Buffer
	if err := pages.ExecuteTemplate(&buf, name, data); err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}
