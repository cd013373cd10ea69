package stats

import (
	"fmt"
	"math"
)

// DefaultRatios is the default grid of alternatives of [RegressionTest], as
// multiples of the tolerance: the canary's bad-event rate is 1.25, 1.5, ... 10 times
// the stable's. Each gets the same prior weight.
var DefaultRatios = []float64{1.25, 1.5, 1.75, 2, 2.5, 3, 4, 5, 7, 10}

// RegressionConfig configures a [RegressionTest].
type RegressionConfig struct {
	// Alpha bounds the probability of ever rolling back a canary that is no worse
	// than the tolerance, however often the test is looked at. Required, in (0, 1).
	// Use [SplitAlpha] to share a rollout's alpha between metrics.
	Alpha float64
	// Tolerance is r0 in the null hypothesis "canary rate ≤ r0 × stable rate".
	// Zero means 1 (no tolerance). Values above 1 are valid only approximately (see
	// docs/analysis.md); leave it at 1 unless you know why.
	Tolerance float64
	// Ratios are the alternatives as multiples of Tolerance, all > 1. Nil means
	// DefaultRatios.
	Ratios []float64
	// UseConfiguredWeight makes the null share of a slice's bad events Slice.Weight
	// instead of the realised share of requests. The realised share (the default) is
	// exact whatever the routing (random or round-robin) but needs slices holding
	// traffic of both arms: a one-request slice carries no information. The configured
	// weight is exact only when every request goes to the canary independently with
	// probability Weight; then slices may be as small as one request.
	UseConfiguredWeight bool
	// DetectChanges makes the test a change detector: its statistic mixes
	// over the slice at which the canary became worse, so a regression that
	// begins after a long healthy run is caught about as fast as one present
	// from the start (a cumulative test must first undo the healthy run's
	// evidence). The guarantee is the same: the probability of ever
	// rejecting a canary that is never worse than the tolerance is at most
	// Alpha. A regression present from the start costs about 1.4 nats more
	// evidence.
	DetectChanges bool
}

// RegressionTest is the anytime-valid test that rolls a canary back when its rate of
// bad events is higher than the stable's. It looks only at bad events: each one is
// labelled canary or stable, and under the null hypothesis (canary rate ≤ stable
// rate) a bad event in a slice comes from the canary with probability at most the
// canary's realised share of requests in that slice. A mixture of likelihood ratios
// over a grid of rate ratios is a test martingale M under that null; the test
// rejects the first time M ≥ 1/Alpha. Keep one test per metric for the whole rollout:
// weight changes between stages need no restart (the share is per slice), and a
// restart would spend Alpha again. Not safe for concurrent use.
type RegressionTest struct {
	alpha      float64
	configured bool
	mix        *oddsMixture
	counts     Counts
	slices     int64
	reject     bool
}

// NewRegressionTest returns a test configured by cfg.
func NewRegressionTest(cfg RegressionConfig) (*RegressionTest, error) {
	if err := checkAlpha(cfg.Alpha); err != nil {
		return nil, fmt.Errorf("regression test: %w", err)
	}
	r0 := cfg.Tolerance
	if r0 == 0 {
		r0 = 1
	}
	if !(r0 >= 1) || math.IsInf(r0, 0) {
		return nil, fmt.Errorf("regression test: tolerance %v, want >= 1", cfg.Tolerance)
	}
	ratios := cfg.Ratios
	if ratios == nil {
		ratios = DefaultRatios
	}
	for i, k := range ratios {
		if !(k > 1) {
			return nil, fmt.Errorf("regression test: ratios[%d] = %v, want > 1", i, k)
		}
	}
	mix, err := newOddsMixture(r0, ratios)
	if err != nil {
		return nil, fmt.Errorf("regression test: %w", err)
	}
	if cfg.DetectChanges {
		mix.detectChanges()
	}
	return &RegressionTest{alpha: cfg.Alpha, configured: cfg.UseConfiguredWeight, mix: mix}, nil
}

// Observe adds one slice of telemetry and returns the evidence after it.
func (t *RegressionTest) Observe(s Slice) (Evidence, error) {
	if err := s.Validate(); err != nil {
		return t.Evidence(), fmt.Errorf("regression test: %w", err)
	}
	var w float64
	if t.configured {
		if s.Weight == 0 && s.CanaryRequests+s.StableRequests > 0 {
			return t.Evidence(), fmt.Errorf("regression test: slice has requests but no weight")
		}
		w = s.Weight
	} else {
		w = s.realisedShare()
	}
	if addBadEvents(t.mix, &t.counts, &t.slices, s, w, t.alpha) {
		t.reject = true
	}
	return t.Evidence(), nil
}

// realisedShare is the canary's share of the slice's requests (0 without
// any).
func (s Slice) realisedShare() float64 {
	if n := s.CanaryRequests + s.StableRequests; n > 0 {
		return float64(s.CanaryRequests) / float64(n)
	}
	return 0
}

// addBadEvents counts slice s and feeds its bad events to m at the
// canary's share w; it reports whether the statistic has reached 1/alpha.
func addBadEvents(m *oddsMixture, c *Counts, slices *int64, s Slice, w, alpha float64) bool {
	c.add(s)
	*slices++
	m.observe(s.CanaryBad, s.CanaryBad+s.StableBad, w, s.Span)
	return m.logM >= math.Log(1/alpha)
}

// Evidence is what a sequential test decided and why, for the user.
type Evidence struct {
	// Decision is Reject once the statistic has reached the threshold.
	Decision Decision
	// Counts are the totals of the slices observed.
	Counts Counts
	// Slices is the number of slices observed.
	Slices int64
	// LogStatistic is ln M, the log of the mixture likelihood ratio now.
	LogStatistic float64
	// Statistic is M (may be +Inf when LogStatistic is large).
	Statistic float64
	// Threshold is 1/Alpha: the test rejects when Statistic ≥ Threshold.
	Threshold float64
	// Alpha is the test's level.
	Alpha float64
	// PValue is the anytime-valid p-value min(1, 1/max M so far); Decision is Reject
	// exactly when PValue ≤ Alpha.
	PValue float64
	// Observed is the canary's bad events in the slices that carried
	// information, Expected what it would have had there at the stable's
	// rate (each slice's stable bad events times its canary requests over
	// its stable requests; for a [BaselineTest], about its requests times
	// the null rate). Observed/Expected estimates the canary's rate over
	// the stable's weight by weight: unlike rates pooled over stages of
	// different weights, it is about 1 for identical arms.
	Observed int64
	Expected float64
}

// Evidence returns the test's current evidence.
func (t *RegressionTest) Evidence() Evidence {
	return newEvidence(t.alpha, t.mix, t.counts, t.slices, t.reject)
}

func newEvidence(alpha float64, mix *oddsMixture, c Counts, slices int64, reject bool) Evidence {
	e := Evidence{
		Counts:       c,
		Slices:       slices,
		LogStatistic: mix.logM,
		Statistic:    math.Exp(mix.logM),
		Threshold:    1 / alpha,
		Alpha:        alpha,
		PValue:       math.Min(1, math.Exp(-mix.maxLogM)),
		Observed:     mix.observed,
		Expected:     mix.expected,
	}
	if reject {
		e.Decision = Reject
	}
	return e
}
