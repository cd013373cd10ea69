//go:build race

package quickstart_test

// goflags is what the quickstart's `make install` builds with: under
// `go test -race` (make test), -race too, so that the build reuses the
// packages the tests compiled instead of compiling them all again.
const goflags = "-race"
