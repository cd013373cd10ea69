package stats

import (
	"fmt"
	"math"
	"sort"
)

// Shift is a Hodges-Lehmann estimate of the location shift of x relative to y with
// its distribution-free confidence interval.
type Shift struct {
	// Estimate is the median of all pairwise differences x_i - y_j.
	Estimate float64
	// Lower and Upper bound the confidence interval; ±Inf when the samples are too
	// small for the requested level.
	Lower, Upper float64
	// Level is the confidence level, e.g. 0.95.
	Level float64
	// Method is how the order statistics bounding the interval were chosen.
	Method Method
}

// HodgesLehmann estimates the shift Δ in "x is distributed as y + Δ" by the median
// of the n1·n2 pairwise differences x_i − y_j, with the confidence interval obtained
// by inverting the Mann-Whitney test: [d_(k), d_(n1·n2+1−k)] where d_(i) are the
// sorted differences and k is the largest index such that P(U ≤ k−1) ≤ (1−level)/2
// under the null. P uses the exact distribution of U when [MannWhitneyU] would (no
// ties, a sample of at most 8), else the normal approximation with tie and
// continuity correction. This is the estimate Kayenta's judge thresholds (Kayenta
// uses level 0.98). It needs O(n1·n2) memory.
func HodgesLehmann(x, y []float64, level float64) (Shift, error) {
	if err := checkSamples(x, y); err != nil {
		return Shift{}, fmt.Errorf("hodges-lehmann: %w", err)
	}
	if !(level > 0 && level < 1) {
		return Shift{}, fmt.Errorf("hodges-lehmann: level %v not in (0, 1)", level)
	}
	n1, n2 := len(x), len(y)
	d := make([]float64, 0, n1*n2)
	for _, xi := range x {
		for _, yj := range y {
			d = append(d, xi-yj)
		}
	}
	sort.Float64s(d)
	mn := len(d)
	s := Shift{Level: level, Lower: math.Inf(-1), Upper: math.Inf(1)}
	if mn%2 == 1 {
		s.Estimate = d[mn/2]
	} else {
		s.Estimate = (d[mn/2-1] + d[mn/2]) / 2
	}
	half := (1 - level) / 2
	r := rankPooled(x, y)
	var k int
	if (n1 > 8 && n2 > 8) || r.ties {
		s.Method = Asymptotic
		n := float64(n1 + n2)
		sigma := math.Sqrt(float64(mn) / 12 * ((n + 1) - r.tieTerm/(n*(n-1))))
		// P(U <= k-1) ≈ Φ((k-1+0.5-mn/2)/σ) <= half.
		k = int(math.Floor(float64(mn)/2 + 0.5 + normalQuantile(half)*sigma))
	} else {
		s.Method = Exact
		u := newUDist(n1, n2)
		k = 0
		for k < mn && u.cdf(k) <= half { // k ends as the smallest u with cdf(u) > half
			k++
		}
	}
	if k >= 1 && k <= mn/2+1 && mn+1-k >= k {
		s.Lower, s.Upper = d[k-1], d[mn-k]
	}
	return s, nil
}

func sortFloats(v []float64) { sort.Float64s(v) }
