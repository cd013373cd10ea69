package stats

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// randomSlices returns n slices of a 5% canary with bad rates pc and ps.
func randomSlices(seed uint64, n int, pc, ps float64) []Slice {
	rng := rand.New(rand.NewPCG(seed, 7))
	out := make([]Slice, n)
	for i := range out {
		total := int64(80 + rng.IntN(40))
		c := binomial(rng, total, 0.05)
		out[i] = Slice{
			CanaryRequests: c, StableRequests: total - c,
			CanaryBad: binomial(rng, c, pc), StableBad: binomial(rng, total-c, ps),
			Weight: 0.05,
		}
	}
	return out
}

// jsonRoundTrip encodes v and decodes it into a fresh T, as the controller's
// store does.
func jsonRoundTrip[T any](t *testing.T, v T) T {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	var out T
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("unmarshal %T: %v", v, err)
	}
	return out
}

// TestRegressionStateRoundTrip: a test restored from the JSON of its state in the
// middle of a stream produces exactly the evidence of the original on every later
// slice, rejection included.
func TestRegressionStateRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    RegressionConfig
		pc, ps float64
	}{
		{"null", RegressionConfig{Alpha: 0.025}, 0.01, 0.01},
		{"regression", RegressionConfig{Alpha: 0.025}, 0.05, 0.01},
		{"configured weight", RegressionConfig{Alpha: 0.05, UseConfiguredWeight: true, Ratios: []float64{1.5, 3}}, 0.03, 0.01},
	} {
		t.Run(tc.name, func(t *testing.T) {
			slices := randomSlices(3, 400, tc.pc, tc.ps)
			if _, err := NewRegressionTest(tc.cfg); err != nil {
				t.Fatal(err)
			}
			for _, cut := range []int{0, 1, 57, 200} {
				orig, _ := NewRegressionTest(tc.cfg)
				for _, s := range slices[:cut] {
					if _, err := orig.Observe(s); err != nil {
						t.Fatal(err)
					}
				}
				restored, err := RestoreRegressionTest(tc.cfg, jsonRoundTrip(t, orig.State()))
				if err != nil {
					t.Fatalf("RestoreRegressionTest: %v", err)
				}
				if diff := cmp.Diff(orig.Evidence(), restored.Evidence()); diff != "" {
					t.Fatalf("cut %d: evidence after restore (-orig +restored):\n%s", cut, diff)
				}
				for i, s := range slices[cut:] {
					a, _ := orig.Observe(s)
					b, _ := restored.Observe(s)
					if diff := cmp.Diff(a, b); diff != "" {
						t.Fatalf("cut %d, slice %d: evidence (-orig +restored):\n%s", cut, cut+i, diff)
					}
				}
				if diff := cmp.Diff(orig.State(), restored.State()); diff != "" {
					t.Fatalf("cut %d: final state (-orig +restored):\n%s", cut, diff)
				}
			}
		})
	}
}

func TestSampleRatioStateRoundTrip(t *testing.T) {
	slices := randomSlices(5, 300, 0, 0)
	for i := range slices[150:] {
		slices[150+i].Weight = 0.03 // routing "breaks": the test rejects after the cut
	}
	orig, _ := NewSampleRatioTest(0)
	for _, s := range slices[:100] {
		orig.Observe(s)
	}
	restored, err := RestoreSampleRatioTest(0, jsonRoundTrip(t, orig.State()))
	if err != nil {
		t.Fatalf("RestoreSampleRatioTest: %v", err)
	}
	rejected := false
	for i, s := range slices[100:] {
		a, _ := orig.Observe(s)
		b, _ := restored.Observe(s)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("slice %d: evidence (-orig +restored):\n%s", 100+i, diff)
		}
		rejected = rejected || a.Decision == Reject
	}
	if !rejected {
		t.Errorf("the sample-ratio test never rejected a 5%% share judged against 3%%; the round trip was not exercised across a rejection")
	}
}

func TestNonInferiorityStateRoundTrip(t *testing.T) {
	cfg := NonInferiorityConfig{Alpha: 0.025, AbsoluteMargin: 0.02}
	slices := randomSlices(9, 500, 0.01, 0.01)
	orig, _ := NewNonInferiority(cfg)
	for _, s := range slices[:120] {
		orig.Observe(s)
	}
	restored, err := RestoreNonInferiority(cfg, jsonRoundTrip(t, orig.State()))
	if err != nil {
		t.Fatalf("RestoreNonInferiority: %v", err)
	}
	for i, s := range slices[120:] {
		a, _ := orig.Observe(s)
		b, _ := restored.Observe(s)
		if diff := cmp.Diff(a, b); diff != "" {
			t.Fatalf("slice %d: evidence (-orig +restored):\n%s", 120+i, diff)
		}
	}
}

// TestRestoreRejectsBadState: a state that does not fit the configuration or is
// inconsistent is refused, not silently used.
func TestRestoreRejectsBadState(t *testing.T) {
	good, _ := NewRegressionTest(RegressionConfig{Alpha: 0.05})
	for _, s := range randomSlices(1, 10, 0.02, 0.01) {
		good.Observe(s)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*SequentialState)
	}{
		{"grid length", func(s *SequentialState) { s.LogLikelihoodRatios = s.LogLikelihoodRatios[:3] }},
		{"bad above requests", func(s *SequentialState) { s.CanaryBad = s.CanaryRequests + 1 }},
		{"negative slices", func(s *SequentialState) { s.Slices = -1 }},
		{"maximum below statistic", func(s *SequentialState) { s.MaxLogStatistic = s.LogStatistic - 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := good.State()
			tc.mutate(&st)
			if _, err := RestoreRegressionTest(RegressionConfig{Alpha: 0.05}, st); err == nil {
				t.Errorf("RestoreRegressionTest(%s) = nil error, want an error", tc.name)
			}
		})
	}
	if _, err := RestoreNonInferiority(NonInferiorityConfig{Alpha: 0.05}, NonInferiorityState{CanaryRequests: 1, CanaryBad: 2}); err == nil {
		t.Errorf("RestoreNonInferiority(bad > requests) = nil error, want an error")
	}
}
