//go:build !race

package quickstart_test

// goflags: see race_test.go.
const goflags = ""
