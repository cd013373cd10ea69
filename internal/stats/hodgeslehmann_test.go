package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestHodgesLehmannKnown(t *testing.T) {
	tests := []struct {
		name     string
		x, y     []float64
		level    float64
		estimate float64
		lo, hi   float64
	}{
		// Differences {-1,0,1,1,2,3,2,3,4}; exact: C(6,3)=20, P(U<=0)=0.05, so a 90%
		// interval is [d(1), d(9)] and a 95% one cannot be reached.
		{"exact 90%", []float64{2, 3, 4}, []float64{0, 1, 3}, 0.90, 2, -1, 4},
		{"exact 95% unreachable", []float64{2, 3, 4}, []float64{0, 1, 3}, 0.95, 2, math.Inf(-1), math.Inf(1)},
		{"constant shift", []float64{11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 0.95, 10, 7, 13}, // k = floor(50.5 - 1.96·13.23) = 24
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := HodgesLehmann(tc.x, tc.y, tc.level)
			if err != nil {
				t.Fatal(err)
			}
			if got.Estimate != tc.estimate || got.Lower != tc.lo || got.Upper != tc.hi {
				t.Errorf("HodgesLehmann = %+v, want estimate %v [%v, %v]", got, tc.estimate, tc.lo, tc.hi)
			}
		})
	}
	if _, err := HodgesLehmann([]float64{1}, []float64{2}, 1); err == nil {
		t.Error("HodgesLehmann(level 1): no error")
	}
}

// TestHodgesLehmannCoverage checks by seeded simulation that the interval covers the
// true shift at least at its nominal level (within Monte Carlo error).
func TestHodgesLehmannCoverage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		n1, n2 int
		round  bool
	}{{6, 7, false}, {5, 30, false}, {20, 25, false}, {30, 30, true}} {
		const runs, shift, level = 2000, 0.7, 0.9
		covered := 0
		for range runs {
			x, y := make([]float64, tc.n1), make([]float64, tc.n2)
			for i := range x {
				x[i] = rng.NormFloat64() + shift
			}
			for i := range y {
				y[i] = rng.NormFloat64()
			}
			if tc.round { // ties: round both to a common grid, shift stays on it
				for i := range x {
					x[i] = math.Round((x[i]-shift)*4)/4 + shift
				}
				for i := range y {
					y[i] = math.Round(y[i]*4) / 4
				}
			}
			s, err := HodgesLehmann(x, y, level)
			if err != nil {
				t.Fatal(err)
			}
			if s.Lower <= shift && shift <= s.Upper {
				covered++
			}
		}
		cov := float64(covered) / runs
		// 3 standard errors below nominal.
		if floor := level - 3*math.Sqrt(level*(1-level)/runs); cov < floor {
			t.Errorf("n1=%d n2=%d ties=%v: coverage %.3f < %.3f", tc.n1, tc.n2, tc.round, cov, floor)
		}
	}
}
