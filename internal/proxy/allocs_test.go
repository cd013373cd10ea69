//go:build !race

// The race detector makes sync.Pool drop what it is given at random, so
// allocations are only counted without it (go test -count=3 without -race,
// as every change is checked).

package proxy

import "testing"

// TestLoopPathAllocatesNothing: a proxied request on the event loops (the
// plain path, client and backend included) allocates nothing: a 95/5
// split, JSON in and out, over TCP on loopback. A regression here is a
// cost on every request (it was one allocation per reused backend
// connection's peek, 93e13a1).
func TestLoopPathAllocatesNothing(t *testing.T) {
	res := testing.Benchmark(func(b *testing.B) { benchLoop(b, nil) })
	if res.N == 0 {
		t.Fatal("the benchmark did not run")
	}
	if a := res.AllocsPerOp(); a != 0 {
		t.Errorf("%d allocations per proxied request on the loop path (%d B), want 0", a, res.AllocedBytesPerOp())
	}
}
