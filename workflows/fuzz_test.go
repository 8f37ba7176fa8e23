package workflows

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to the parser: it must return a workflow
// or problems, never panic, and a workflow it accepts must run.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/workflows/*.yaml")
	more, _ := filepath.Glob("testdata/fuzz/*.yaml")
	for _, name := range append(seeds, more...) {
		src, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(src)
	}
	f.Add([]byte(validWorkflow))
	f.Add([]byte("id: x\ntopic: t\ntrigger: a\nsteps: [{id: s, send: *a}]\n"))
	f.Add([]byte("a: &a {b: *a}\n"))

	f.Fuzz(func(t *testing.T, src []byte) {
		w, err := Parse("fuzz.yaml", src, LoadOptions{})
		if err != nil {
			if _, ok := err.(Problems); !ok {
				t.Fatalf("error is %T, not Problems", err)
			}
			return
		}
		now := time.Date(2026, 3, 27, 10, 0, 0, 0, time.UTC)
		s, _, err := Start(w, "j", "c", Input{Kind: InputStart}, now)
		if err != nil {
			t.Fatalf("a valid workflow failed to start: %v", err)
		}
		for i := 0; i < 5 && s.Status == StatusActive; i++ {
			s, _, err = Advance(w, s, Input{Kind: InputWake, WakeSeq: s.StepSeq}, s.WakeAt)
			if err != nil {
				t.Fatalf("a valid workflow failed to advance: %v", err)
			}
		}
	})
}
