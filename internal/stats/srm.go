package stats

import (
	"fmt"
	"math"
)

// DefaultSRMAlpha is the default level of [SampleRatioTest]: a false halt in at most
// one rollout in a thousand.
const DefaultSRMAlpha = 0.001

// srmRatios are the alternatives of the sample-ratio test, as odds ratios of the real
// canary share against the configured one, in both directions.
var srmRatios = []float64{1.0 / 4, 1.0 / 2, 2.0 / 3, 0.8, 0.9, 1 / 0.9, 1.25, 1.5, 2, 4}

// SampleRatioTest is a sequential sample-ratio-mismatch check: is the canary's share
// of requests consistent with its configured weight? Each request is an event that
// comes from the canary with probability Slice.Weight under the null; the test is the
// same likelihood-ratio mixture as [RegressionTest], two-sided, over odds ratios
// between 1/4 and 4. A Reject means routing is broken: halt the rollout, do not judge
// the canary. Not safe for concurrent use.
type SampleRatioTest struct {
	alpha  float64
	mix    *oddsMixture
	counts Counts
	slices int64
	reject bool
}

// NewSampleRatioTest returns a sample-ratio test at level alpha (zero means
// DefaultSRMAlpha).
func NewSampleRatioTest(alpha float64) (*SampleRatioTest, error) {
	if alpha == 0 {
		alpha = DefaultSRMAlpha
	}
	if err := checkAlpha(alpha); err != nil {
		return nil, fmt.Errorf("sample ratio test: %w", err)
	}
	mix, err := newOddsMixture(1, srmRatios)
	if err != nil {
		return nil, fmt.Errorf("sample ratio test: %w", err)
	}
	return &SampleRatioTest{alpha: alpha, mix: mix}, nil
}

// Observe adds one slice (it needs CanaryRequests, StableRequests and Weight) and
// returns the evidence after it.
func (t *SampleRatioTest) Observe(s Slice) (Evidence, error) {
	if err := s.Validate(); err != nil {
		return t.Evidence(), fmt.Errorf("sample ratio test: %w", err)
	}
	n := s.CanaryRequests + s.StableRequests
	if n > 0 && s.Weight == 0 {
		return t.Evidence(), fmt.Errorf("sample ratio test: slice has requests but no weight")
	}
	t.counts.add(s)
	t.slices++
	t.mix.observe(s.CanaryRequests, n, s.Weight, s.Span)
	if t.mix.logM >= math.Log(1/t.alpha) {
		t.reject = true
	}
	return t.Evidence(), nil
}

// Evidence returns the test's current evidence.
func (t *SampleRatioTest) Evidence() Evidence {
	return newEvidence(t.alpha, t.mix, t.counts, t.slices, t.reject)
}
