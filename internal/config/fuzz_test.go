package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// validates and survives marshalling and parsing again unchanged.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(bomb))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data)
	})
}

// FuzzParseAssignments checks that ParseAssignments never panics, and that
// weights it accepts are valid and read back the same from their canonical
// form.
func FuzzParseAssignments(f *testing.F) {
	f.Add("blue=95", "green=5")
	f.Add("green=5.5%", "")
	f.Add("blue=95,green=5", "white=0")
	f.Add("blue", "=5")
	f.Add("blue=1", "blue=2")
	f.Add("Blue=100.00", "x=101")
	f.Fuzz(func(t *testing.T, a, b string) {
		w, err := ParseAssignments([]string{a, b})
		if err != nil {
			if w != nil {
				t.Fatalf("ParseAssignments(%q, %q) = %v with error %v", a, b, w, err)
			}
			for _, p := range spec.Problems(err) {
				if p.Message == "" {
					t.Fatalf("ParseAssignments(%q, %q): empty problem message", a, b)
				}
			}
			return
		}
		var args []string
		for _, name := range w.Names() {
			if err := spec.ValidateName("", name); err != nil {
				t.Fatalf("ParseAssignments(%q, %q) accepted name %q: %v", a, b, name, err)
			}
			if v := w[name]; v < 0 || v > spec.Full {
				t.Fatalf("ParseAssignments(%q, %q)[%q] = %d, outside 0..100", a, b, name, v)
			}
			args = append(args, name+"="+w[name].String())
		}
		back, err := ParseAssignments([]string{strings.Join(args, " ")})
		if err != nil {
			t.Fatalf("ParseAssignments(%q) = %v", args, err)
		}
		if diff := cmp.Diff(w, back); diff != "" {
			t.Fatalf("round trip of %q, %q (-first +second):\n%s", a, b, diff)
		}
	})
}
