// modelgate addition: see byteslice_test.go and README.modelgate.md.

//go:build !race

package byteslice

const raceEnabled = false
