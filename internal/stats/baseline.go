package stats

import (
	"fmt"
	"math"
)

// BaselineConfig configures a [BaselineTest].
type BaselineConfig struct {
	// Alpha bounds the probability of ever rejecting while every request is bad
	// with probability at most Rate, however often the test is looked at.
	// Required, in (0, 1).
	Alpha float64
	// Rate is the highest acceptable probability that a request is bad, in (0, 1).
	Rate float64
	// Ratios are the alternatives, as multiples of the odds Rate/(1−Rate), all > 1.
	// Nil means DefaultRatios.
	Ratios []float64
}

// BaselineTest is the anytime-valid test that a canary with no stable left to
// compare with (at 100% of traffic) has become worse than a rate measured before:
// under the null hypothesis each request is bad with probability at most Rate,
// independently. It is a change detector (see RegressionConfig.DetectChanges), so
// a canary that degrades after a long healthy run is caught about as fast as one
// bad from the start. It rejects the first time its statistic reaches 1/Alpha. Not
// safe for concurrent use.
type BaselineTest struct {
	alpha  float64
	rate   float64
	mix    *oddsMixture
	counts Counts // Canary* only
	slices int64
	reject bool
}

// NewBaselineTest returns a test configured by cfg.
func NewBaselineTest(cfg BaselineConfig) (*BaselineTest, error) {
	if err := checkAlpha(cfg.Alpha); err != nil {
		return nil, fmt.Errorf("baseline test: %w", err)
	}
	if !(cfg.Rate > 0 && cfg.Rate < 1) {
		return nil, fmt.Errorf("baseline test: rate %v, want in (0, 1)", cfg.Rate)
	}
	ratios := cfg.Ratios
	if ratios == nil {
		ratios = DefaultRatios
	}
	for i, k := range ratios {
		if !(k > 1) || math.IsInf(k, 0) {
			return nil, fmt.Errorf("baseline test: ratios[%d] = %v, want > 1", i, k)
		}
	}
	// An event here is a request and "from the canary" means bad: the
	// mixture's null share is the rate itself, and its alternatives
	// multiply the odds of a bad request.
	mix, err := newOddsMixture(1, ratios)
	if err != nil {
		return nil, fmt.Errorf("baseline test: %w", err)
	}
	mix.detectChanges()
	return &BaselineTest{alpha: cfg.Alpha, rate: cfg.Rate, mix: mix}, nil
}

// Observe adds a slice of requests of which bad were bad, over span slices of
// time (0 means 1), and returns the evidence after it.
func (t *BaselineTest) Observe(requests, bad int64, span float64) (Evidence, error) {
	s := Slice{CanaryRequests: requests, CanaryBad: bad, Span: span}
	if err := s.Validate(); err != nil {
		return t.Evidence(), fmt.Errorf("baseline test: %w", err)
	}
	t.counts.add(s)
	t.slices++
	t.mix.observe(bad, requests, t.rate, span)
	if t.mix.logM >= math.Log(1/t.alpha) {
		t.reject = true
	}
	return t.Evidence(), nil
}

// Rate is the test's null rate.
func (t *BaselineTest) Rate() float64 { return t.rate }

// Evidence returns the test's current evidence (its counts are the canary's).
func (t *BaselineTest) Evidence() Evidence {
	return newEvidence(t.alpha, t.mix, t.counts, t.slices, t.reject)
}

// State returns the test's state; [RestoreBaselineTest] with the same
// configuration rebuilds a test that continues exactly like t.
func (t *BaselineTest) State() SequentialState {
	return sequentialState(t.mix, t.counts, t.slices, t.reject)
}

// RestoreBaselineTest returns a test configured by cfg in state st.
func RestoreBaselineTest(cfg BaselineConfig, st SequentialState) (*BaselineTest, error) {
	t, err := NewBaselineTest(cfg)
	if err != nil {
		return nil, err
	}
	if st.StableRequests != 0 || st.StableBad != 0 {
		return nil, fmt.Errorf("restore baseline test: stable counts %d/%d in a one-sample test", st.StableBad, st.StableRequests)
	}
	if err := restoreSequential(t.mix, &t.counts, &t.slices, &t.reject, st); err != nil {
		return nil, fmt.Errorf("restore baseline test: %w", err)
	}
	return t, nil
}
