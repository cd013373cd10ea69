//go:build !race

package cluster_test

// buildFlags: see race_test.go.
const buildFlags = ""
