package templates

import (
	_ "embed"
	"errors"
	"html/template"
	"io/fs"
	"regexp"
	"strconv"
)

// layoutFile, at the root of the templates folder, replaces the default
// email layout.
const layoutFile = "_layout.html"

// LayoutData is what the email layout (the default one or _layout.html)
// executes with.
type LayoutData struct {
	Lang          string        // the locale rendered, for <html lang>
	Dir           string        // "ltr" or "rtl"
	Subject       string        // for <title>
	Preheader     string        // inbox preview text, hidden in the body
	Body          template.HTML // the Markdown body as HTML
	BrandName     string
	PostalAddress string
	Links         Links  // preference and unsubscribe links, empty when not set
	Labels        Labels // footer words in the message's language
	Customer      map[string]any
	Data          map[string]any
}

//go:embed layout.html
var defaultLayoutSrc string

var defaultLayout = template.Must(template.New(layoutFile).Parse(defaultLayoutSrc))

var layoutErr = regexp.MustCompile(`^(?:html/)?template: [^:]*:(\d+)(?::\d+)?: (.*)$`)

func loadLayout(fsys fs.FS, probs *Problems) *template.Template {
	src, err := fs.ReadFile(fsys, layoutFile)
	if err == nil {
		var t *template.Template
		if t, err = template.New(layoutFile).Option("missingkey=error").Parse(string(src)); err == nil {
			return t
		}
	}
	line, msg := 0, err.Error()
	if m := layoutErr.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	probs.add(layoutFile, line, "%s", msg)
	return nil
}
