//go:build race

package cluster_test

// buildFlags are what the example's script builds modelgate and the etcd
// member with: under `go test -race` (make test), -race too, so that the
// build reuses the packages the tests compiled instead of compiling them
// all again.
const buildFlags = "-race"
