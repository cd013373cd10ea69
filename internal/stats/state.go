package stats

import (
	"errors"
	"fmt"
	"math"
)

// SequentialState is the complete state of a [RegressionTest] or a
// [SampleRatioTest], for persisting a test across restarts of the process
// that runs it. It is JSON-friendly: every float is finite, and encoding/json
// writes float64 in the shortest form that reads back to the same bits, so a
// test restored from its JSON continues exactly like the original.
type SequentialState struct {
	CanaryRequests int64 `json:"canary_requests"`
	CanaryBad      int64 `json:"canary_bad"`
	StableRequests int64 `json:"stable_requests"`
	StableBad      int64 `json:"stable_bad"`
	Slices         int64 `json:"slices"`
	// Reject is set once the test has rejected; it is final.
	Reject bool `json:"reject"`
	// LogLikelihoodRatios holds ln of each alternative's likelihood ratio, in the
	// order of the test's grid of alternatives.
	LogLikelihoodRatios []float64 `json:"log_likelihood_ratios"`
	// LogStatistic is ln M now; MaxLogStatistic its running maximum (the
	// anytime-valid p-value is exp(−MaxLogStatistic)).
	LogStatistic    float64 `json:"log_statistic"`
	MaxLogStatistic float64 `json:"max_log_statistic"`
	// Units is the informative time observed, in slices (the spans of the
	// slices that carried information: bad events of both arms possible); a
	// change detector's prior over starts runs over it.
	Units float64 `json:"units,omitempty"`
	// ObservedCanaryBad and ExpectedCanaryBad are the canary's events in
	// the informative slices and what it would have had at the stable's
	// rate (see Evidence).
	ObservedCanaryBad int64   `json:"observed_canary_bad,omitempty"`
	ExpectedCanaryBad float64 `json:"expected_canary_bad,omitempty"`
}

// NonInferiorityState is the complete state of a [NonInferiority] check: its
// evidence is a function of the totals alone.
type NonInferiorityState struct {
	CanaryRequests int64 `json:"canary_requests"`
	CanaryBad      int64 `json:"canary_bad"`
	StableRequests int64 `json:"stable_requests"`
	StableBad      int64 `json:"stable_bad"`
	Slices         int64 `json:"slices"`
}

// State returns the test's state; [RestoreRegressionTest] with the same
// configuration rebuilds a test that continues exactly like t.
func (t *RegressionTest) State() SequentialState {
	return sequentialState(t.mix, t.counts, t.slices, t.reject)
}

// RestoreRegressionTest returns a test configured by cfg (the configuration
// the saved test was created with) in state st.
func RestoreRegressionTest(cfg RegressionConfig, st SequentialState) (*RegressionTest, error) {
	t, err := NewRegressionTest(cfg)
	if err != nil {
		return nil, err
	}
	if err := restoreSequential(t.mix, &t.counts, &t.slices, &t.reject, st); err != nil {
		return nil, fmt.Errorf("restore regression test: %w", err)
	}
	return t, nil
}

// State returns the test's state; [RestoreSampleRatioTest] with the same
// alpha rebuilds a test that continues exactly like t.
func (t *SampleRatioTest) State() SequentialState {
	return sequentialState(t.mix, t.counts, t.slices, t.reject)
}

// RestoreSampleRatioTest returns a sample-ratio test at level alpha (zero
// means DefaultSRMAlpha) in state st.
func RestoreSampleRatioTest(alpha float64, st SequentialState) (*SampleRatioTest, error) {
	t, err := NewSampleRatioTest(alpha)
	if err != nil {
		return nil, err
	}
	if err := restoreSequential(t.mix, &t.counts, &t.slices, &t.reject, st); err != nil {
		return nil, fmt.Errorf("restore sample ratio test: %w", err)
	}
	return t, nil
}

// State returns the check's state; [RestoreNonInferiority] with the same
// configuration rebuilds a check that continues exactly like n.
func (n *NonInferiority) State() NonInferiorityState {
	c := n.counts
	return NonInferiorityState{
		CanaryRequests: c.CanaryRequests, CanaryBad: c.CanaryBad,
		StableRequests: c.StableRequests, StableBad: c.StableBad,
		Slices: n.slices,
	}
}

// RestoreNonInferiority returns a check configured by cfg in state st.
func RestoreNonInferiority(cfg NonInferiorityConfig, st NonInferiorityState) (*NonInferiority, error) {
	n, err := NewNonInferiority(cfg)
	if err != nil {
		return nil, err
	}
	c := Counts{CanaryRequests: st.CanaryRequests, CanaryBad: st.CanaryBad, StableRequests: st.StableRequests, StableBad: st.StableBad}
	if err := checkCounts(c, st.Slices); err != nil {
		return nil, fmt.Errorf("restore non-inferiority: %w", err)
	}
	n.counts, n.slices = c, st.Slices
	return n, nil
}

func sequentialState(m *oddsMixture, c Counts, slices int64, reject bool) SequentialState {
	lls := append([]float64(nil), m.ll...)
	if m.changes && m.units == 0 {
		clear(lls) // no start has begun: ln 0 everywhere, which JSON cannot hold
	}
	return SequentialState{
		CanaryRequests: c.CanaryRequests, CanaryBad: c.CanaryBad,
		StableRequests: c.StableRequests, StableBad: c.StableBad,
		Slices:              slices,
		Reject:              reject,
		LogLikelihoodRatios: lls,
		LogStatistic:        m.logM,
		MaxLogStatistic:     m.maxLogM,
		Units:               m.units,
		ObservedCanaryBad:   m.observed,
		ExpectedCanaryBad:   m.expected,
	}
}

func restoreSequential(m *oddsMixture, counts *Counts, slices *int64, reject *bool, st SequentialState) error {
	c := Counts{CanaryRequests: st.CanaryRequests, CanaryBad: st.CanaryBad, StableRequests: st.StableRequests, StableBad: st.StableBad}
	var errs []error
	if err := checkCounts(c, st.Slices); err != nil {
		errs = append(errs, err)
	}
	if len(st.LogLikelihoodRatios) != len(m.ll) {
		errs = append(errs, fmt.Errorf("%d log likelihood ratios for a grid of %d alternatives", len(st.LogLikelihoodRatios), len(m.ll)))
	}
	for i, v := range st.LogLikelihoodRatios {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			errs = append(errs, fmt.Errorf("log likelihood ratio [%d] = %v, want finite", i, v))
		}
	}
	if !isFinite(st.LogStatistic) || !isFinite(st.MaxLogStatistic) || st.MaxLogStatistic < 0 || st.MaxLogStatistic < st.LogStatistic {
		errs = append(errs, fmt.Errorf("log statistic %v with running maximum %v: want finite, maximum >= max(0, statistic)", st.LogStatistic, st.MaxLogStatistic))
	}
	if st.ObservedCanaryBad < 0 || st.ObservedCanaryBad > st.CanaryBad+st.CanaryRequests || !isFinite(st.ExpectedCanaryBad) || st.ExpectedCanaryBad < 0 {
		errs = append(errs, fmt.Errorf("observed %d and expected %v canary events: want 0 or more, finite", st.ObservedCanaryBad, st.ExpectedCanaryBad))
	}
	if !isFinite(st.Units) || st.Units < 0 || st.Units > 0 && st.Slices == 0 {
		errs = append(errs, fmt.Errorf("%v informative slices' time over %d slices: want finite, >= 0, and 0 without slices", st.Units, st.Slices))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	m.units = st.Units
	m.observed, m.expected = st.ObservedCanaryBad, st.ExpectedCanaryBad
	if !m.changes || m.units > 0 {
		copy(m.ll, st.LogLikelihoodRatios)
	}
	m.logM, m.maxLogM = st.LogStatistic, st.MaxLogStatistic
	*counts, *slices, *reject = c, st.Slices, st.Reject
	return nil
}

func checkCounts(c Counts, slices int64) error {
	if c.CanaryRequests < 0 || c.StableRequests < 0 || c.CanaryBad < 0 || c.StableBad < 0 || slices < 0 ||
		c.CanaryBad > c.CanaryRequests || c.StableBad > c.StableRequests {
		return fmt.Errorf("inconsistent counts %+v over %d slices", c, slices)
	}
	return nil
}

func isFinite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
