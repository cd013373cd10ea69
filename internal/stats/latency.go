package stats

import (
	"fmt"
	"math"
	"sort"
)

// ExceedanceThreshold returns the latency threshold L that turns latency into bad
// events for [RegressionTest] and [NonInferiority]: the q-quantile (R-7 / numpy
// "linear" rule) of the stable's latencies in a window before the stage starts,
// rounded up to the next histogram bucket bound when bounds (sorted ascending) are
// given, so that "latency > L" can be counted exactly from bucket counts. Fix L when
// the stage starts and keep it for the stage: a threshold that moves with the data
// would break the tests' guarantees. A tail shift of the canary (its p99 up 20%)
// becomes a higher rate of requests slower than L.
func ExceedanceThreshold(stable []float64, q float64, bounds []float64) (float64, error) {
	if len(stable) == 0 {
		return 0, fmt.Errorf("exceedance threshold: %w", ErrEmptySample)
	}
	if !(q >= 0 && q <= 1) {
		return 0, fmt.Errorf("exceedance threshold: quantile %v not in [0, 1]", q)
	}
	s := make([]float64, len(stable))
	copy(s, stable)
	for _, v := range s {
		if math.IsNaN(v) {
			return 0, fmt.Errorf("exceedance threshold: %w", ErrNaN)
		}
	}
	sort.Float64s(s)
	h := q * float64(len(s)-1)
	lo := int(math.Floor(h))
	v := s[lo]
	if lo+1 < len(s) {
		v += (h - float64(lo)) * (s[lo+1] - s[lo])
	}
	if len(bounds) > 0 {
		i := sort.SearchFloat64s(bounds, v) // first bound >= v
		if i == len(bounds) {
			return 0, fmt.Errorf("exceedance threshold: %v above the last bucket bound %v", v, bounds[len(bounds)-1])
		}
		v = bounds[i]
	}
	return v, nil
}
