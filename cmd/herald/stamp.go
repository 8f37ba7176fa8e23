package main

import (
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
)

func walkStamp(dir string, b *strings.Builder) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
}
