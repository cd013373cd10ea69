// Package version says which modelgate this is, from what the Go
// toolchain records in the binary: the module version, or the commit it
// was built from (and whether the work tree had changes).
package version

import (
	"runtime/debug"
	"sync"
)

var get = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if v != "" && v != "(devel)" {
		return v
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+changes"
	}
	return "devel-" + rev
})

// String is the version: a release's module version ("v1.2.0"), or
// "devel-<commit>" ("+changes" when built from a modified work tree), or
// "devel" when the binary records neither.
func String() string { return get() }
