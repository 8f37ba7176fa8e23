// Package examples holds herald's sample content: marketing workflows
// (workflows/*.yaml) and their templates (templates/<name>/<locale>.md) in
// six languages. It is embedded so `herald dev` runs anywhere.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed all:workflows all:templates
var content embed.FS

// Workflows returns the example workflow files.
func Workflows() fs.FS { return sub("workflows") }

// Templates returns the example templates.
func Templates() fs.FS { return sub("templates") }

func sub(dir string) fs.FS {
	f, err := fs.Sub(content, dir)
	if err != nil {
		panic(err) // the directory is embedded at build time
	}
	return f
}
