package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestNonInferiorityVerdicts(t *testing.T) {
	tests := []struct {
		name string
		c    Slice
		want Promotion
	}{
		{"no data", Slice{}, Inconclusive},
		{"zero errors both arms, 3000 canary", Slice{CanaryRequests: 3000, StableRequests: 57000}, Promote},
		{"zero errors both arms, 1000 canary", Slice{CanaryRequests: 1000, StableRequests: 19000}, Inconclusive},
		{"equal 10% rates, large", Slice{CanaryRequests: 20000, CanaryBad: 2000, StableRequests: 380000, StableBad: 38000}, Promote},
		{"canary 2x worse", Slice{CanaryRequests: 20000, CanaryBad: 4000, StableRequests: 380000, StableBad: 38000}, Inconclusive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ni, err := NewNonInferiority(NonInferiorityConfig{Alpha: 0.05})
			if err != nil {
				t.Fatal(err)
			}
			e, err := ni.Observe(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if e.Verdict != tc.want {
				t.Errorf("Verdict = %v, want %v (evidence %+v)", e.Verdict, tc.want, e)
			}
		})
	}
}

// TestNonInferiorityFalsePromotion: a canary exactly at the margin is (falsely)
// promoted, at any look, in at most alpha of the runs.
func TestNonInferiorityFalsePromotion(t *testing.T) {
	const alpha, runs = 0.05, 200
	for _, ps := range []float64{0, 0.002, 0.01} {
		pc := math.Max(1.5*ps, ps+0.002)
		rng := rand.New(rand.NewPCG(9, uint64(ps*1e4)))
		promoted := 0
		for range runs {
			ni, err := NewNonInferiority(NonInferiorityConfig{Alpha: alpha})
			if err != nil {
				t.Fatal(err)
			}
			for range 400 { // 10-second looks at 100 rps, 5% canary: 20,000 canary requests
				nc := binomial(rng, 1000, 0.05)
				s := Slice{CanaryRequests: nc, StableRequests: 1000 - nc}
				s.CanaryBad, s.StableBad = binomial(rng, nc, pc), binomial(rng, 1000-nc, ps)
				e, err := ni.Observe(s)
				if err != nil {
					t.Fatal(err)
				}
				if e.Verdict == Promote {
					promoted++
					break
				}
			}
		}
		if rate := float64(promoted) / runs; rate > alpha {
			t.Errorf("stable %v, canary at margin %v: promoted in %.3f of runs > %v", ps, pc, rate, alpha)
		}
	}
}

func TestBinomialConfidenceSequence(t *testing.T) {
	tests := []struct {
		x, n   int64
		lo, hi float64 // loose expectations
	}{
		{0, 0, 0, 1},
		{0, 1000, 0, 0.01},
		{100, 1000, 0.05, 0.15},
		{1000, 1000, 0.98, 1},
	}
	for _, tc := range tests {
		lo, hi := BinomialConfidenceSequence(tc.x, tc.n, 0.05, 1, 1)
		p := 0.0
		if tc.n > 0 {
			p = float64(tc.x) / float64(tc.n)
		}
		if lo < tc.lo || hi > tc.hi || lo > p || hi < p {
			t.Errorf("BinomialConfidenceSequence(%d, %d) = [%v, %v], want within [%v, %v] around %v", tc.x, tc.n, lo, hi, tc.lo, tc.hi, p)
		}
	}
}
