package stats

import (
	"errors"
	"fmt"
	"math"
)

// Slice is what the rollout controller feeds the sequential tests for one metric and
// one time slice (e.g. one second) of telemetry. "Bad" is the metric's event: an
// error response, or a request slower than a latency threshold fixed when the stage
// started (package analysis fixes it from the stable's latency sketch).
type Slice struct {
	// CanaryRequests and StableRequests count the requests each arm served.
	CanaryRequests, StableRequests int64
	// CanaryBad and StableBad count the bad requests among them.
	CanaryBad, StableBad int64
	// Weight is the canary's configured share of traffic in the slice, in (0, 1).
	// Only [SampleRatioTest] uses it; the other tests use the realised share
	// CanaryRequests/(CanaryRequests+StableRequests), which stays right when the
	// weight changes between (or within) stages. Zero means "not set".
	Weight float64
	// Span is the slice's length in slices: 1 for a whole one, less for the
	// part of one read before it ended (a look every few requests). Zero
	// means 1. Only change detectors use it, as the clock of their prior
	// over when a regression began (see RegressionConfig.DetectChanges).
	Span float64
}

// Validate reports every inconsistency of the slice's counts at once.
func (s Slice) Validate() error {
	var errs []error
	if s.CanaryRequests < 0 || s.StableRequests < 0 || s.CanaryBad < 0 || s.StableBad < 0 {
		errs = append(errs, fmt.Errorf("negative count in %+v", s))
	}
	if s.CanaryBad > s.CanaryRequests {
		errs = append(errs, fmt.Errorf("canary bad %d > canary requests %d", s.CanaryBad, s.CanaryRequests))
	}
	if s.StableBad > s.StableRequests {
		errs = append(errs, fmt.Errorf("stable bad %d > stable requests %d", s.StableBad, s.StableRequests))
	}
	if math.IsNaN(s.Weight) || s.Weight < 0 || s.Weight >= 1 {
		errs = append(errs, fmt.Errorf("weight %v not in [0, 1)", s.Weight))
	}
	if !(s.Span >= 0) || math.IsInf(s.Span, 0) {
		errs = append(errs, fmt.Errorf("span %v, want finite and >= 0", s.Span))
	}
	return errors.Join(errs...)
}

// Decision is the outcome of a sequential test at the current look.
type Decision int

const (
	// Continue means the evidence does not reject the null hypothesis (yet).
	Continue Decision = iota
	// Reject means the null hypothesis is rejected: roll back (regression tests) or
	// halt (sample-ratio test). It is final: later slices do not undo it.
	Reject
)

// String returns "continue" or "reject".
func (d Decision) String() string {
	if d == Reject {
		return "reject"
	}
	return "continue"
}

// Counts accumulates the counts of the slices a test has seen.
type Counts struct {
	CanaryRequests, CanaryBad, StableRequests, StableBad int64
}

func (c *Counts) add(s Slice) {
	c.CanaryRequests += s.CanaryRequests
	c.CanaryBad += s.CanaryBad
	c.StableRequests += s.StableRequests
	c.StableBad += s.StableBad
}

// SplitAlpha divides a rollout's alpha across the metrics it tests, in proportion to
// weights (equal shares when no weights are given): Bonferroni, Σ alpha_m = alpha,
// valid whatever the dependence between the metrics. With alpha = 0.05 and errors and
// latency tested, each gets 0.025.
func SplitAlpha(alpha float64, metrics int, weights ...float64) ([]float64, error) {
	if !(alpha > 0 && alpha < 1) {
		return nil, fmt.Errorf("split alpha: alpha %v not in (0, 1)", alpha)
	}
	if metrics < 1 {
		return nil, fmt.Errorf("split alpha: %d metrics", metrics)
	}
	if len(weights) == 0 {
		weights = make([]float64, metrics)
		for i := range weights {
			weights[i] = 1
		}
	}
	if len(weights) != metrics {
		return nil, fmt.Errorf("split alpha: %d weights for %d metrics", len(weights), metrics)
	}
	var sum float64
	for i, w := range weights {
		if !(w > 0) || math.IsInf(w, 0) {
			return nil, fmt.Errorf("split alpha: weights[%d] = %v, want > 0", i, w)
		}
		sum += w
	}
	out := make([]float64, metrics)
	for i, w := range weights {
		out[i] = alpha * w / sum
	}
	return out, nil
}

func checkAlpha(alpha float64) error {
	if !(alpha > 0 && alpha < 1) {
		return fmt.Errorf("alpha %v not in (0, 1)", alpha)
	}
	return nil
}
