package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestReducedSimulation runs a reduced version of the benchmark (a few scenarios, 40
// runs each) so that `go test ./...` exercises the harness end to end. The full
// benchmark (1,000 runs per scenario) is `go run ./bench/stats`.
func TestReducedSimulation(t *testing.T) {
	var scs []scenario
	for _, s := range scenarios() {
		if strings.HasPrefix(s.name, "E1 ") || strings.HasPrefix(s.name, "A1 ") || strings.HasPrefix(s.name, "A5 ") {
			scs = append(scs, s)
		}
	}
	const runs = 40
	results := simulate(scs, methodSpecs(), runs, 1, 2)
	var buf bytes.Buffer
	report(&buf, results, runs)
	t.Log("\n" + buf.String())
	for _, r := range results {
		if !strings.HasPrefix(r.method, "modelgate (errors+latency") {
			continue
		}
		rate := float64(r.rollbacks) / float64(r.runs)
		switch {
		case r.regression && rate < 0.95:
			t.Errorf("%s: %s rolled back in %.2f of runs, want ≥ 0.95", r.scenario, r.method, rate)
		case !r.regression && r.lo > 0.05:
			t.Errorf("%s: %s false rollback rate %.2f, interval above alpha", r.scenario, r.method, rate)
		}
		if strings.HasPrefix(r.scenario, "A5 ") && r.promoted3000 < runs*8/10 {
			t.Errorf("%s: promoted within 3,000 canary requests in %d of %d runs", r.scenario, r.promoted3000, runs)
		}
	}
}

func TestClopperPearson(t *testing.T) {
	tests := []struct {
		k, n   int
		lo, hi float64
	}{
		{0, 10, 0, 0.3084971},
		{5, 10, 0.1870860, 0.8129140},
		{50, 1000, 0.0373, 0.0654},
	}
	for _, tc := range tests {
		lo, hi := clopperPearson(tc.k, tc.n)
		if d := lo - tc.lo; d > 5e-4 || d < -5e-4 {
			t.Errorf("clopperPearson(%d, %d) lo = %v, want %v", tc.k, tc.n, lo, tc.lo)
		}
		if d := hi - tc.hi; d > 5e-4 || d < -5e-4 {
			t.Errorf("clopperPearson(%d, %d) hi = %v, want %v", tc.k, tc.n, hi, tc.hi)
		}
	}
}
