package stats

import (
	"fmt"
	"math"
)

// DefaultMarginRatios is the default grid of alternatives of [MarginTest], as
// multiples of the margin: the canary's bad-event rate is 0.9, 0.8, ... 0.2 times
// the margin times the stable's. An identical canary under a 1.5× margin sits
// at 0.67.
var DefaultMarginRatios = []float64{0.9, 0.8, 0.67, 0.5, 0.33, 0.2}

// MarginConfig configures a [MarginTest].
type MarginConfig struct {
	// Alpha bounds the probability of ever showing a canary whose bad-event
	// rate is at least Margin times the stable's as within the margin, however
	// often the test is looked at. Required, in (0, 1).
	Alpha float64
	// Margin is m in the null hypothesis "canary rate ≥ m × stable rate".
	// Required, ≥ 1.
	Margin float64
	// Ratios are the alternatives as multiples of Margin, all in (0, 1). Nil
	// means DefaultMarginRatios.
	Ratios []float64
}

// MarginTest is the promotion evidence of a rollout: the anytime-valid test that
// shows a canary's rate of bad events to be less than Margin times the stable's.
// It is [RegressionTest] turned around: each bad event is labelled canary or
// stable, and under the null (canary rate ≥ Margin × stable rate) a bad event in a
// slice comes from the canary with probability at least θ(w, Margin), w the slice's
// realised canary share of requests; a mixture of likelihood ratios for smaller
// ratios is a test martingale under that null (the labels' likelihood ratio is
// monotone in the ratio). Because every slice is judged at its own share, one test
// can run for a whole rollout: weight changes between stages and swings of load
// that move both arms' rates together cancel within each slice. The claim is
// shown, finally, the first time the statistic reaches 1/Alpha. It needs bad events
// of the stable to show anything: with none, use a bound on each arm's rate
// ([NonInferiority]) instead. Not safe for concurrent use.
type MarginTest struct {
	alpha  float64
	margin float64
	mix    *oddsMixture
	counts Counts
	slices int64
	shown  bool
}

// NewMarginTest returns a test configured by cfg.
func NewMarginTest(cfg MarginConfig) (*MarginTest, error) {
	if err := checkAlpha(cfg.Alpha); err != nil {
		return nil, fmt.Errorf("margin test: %w", err)
	}
	if !(cfg.Margin >= 1) || math.IsInf(cfg.Margin, 0) {
		return nil, fmt.Errorf("margin test: margin %v, want >= 1", cfg.Margin)
	}
	ratios := cfg.Ratios
	if ratios == nil {
		ratios = DefaultMarginRatios
	}
	for i, k := range ratios {
		if !(k > 0 && k < 1) {
			return nil, fmt.Errorf("margin test: ratios[%d] = %v, want in (0, 1)", i, k)
		}
	}
	mix, err := newOddsMixture(cfg.Margin, ratios)
	if err != nil {
		return nil, fmt.Errorf("margin test: %w", err)
	}
	return &MarginTest{alpha: cfg.Alpha, margin: cfg.Margin, mix: mix}, nil
}

// Observe adds one slice of telemetry and returns the evidence after it.
func (t *MarginTest) Observe(s Slice) (MarginEvidence, error) {
	if err := s.Validate(); err != nil {
		return t.Evidence(), fmt.Errorf("margin test: %w", err)
	}
	if addBadEvents(t.mix, &t.counts, &t.slices, s, s.realisedShare(), t.alpha) {
		t.shown = true
	}
	return t.Evidence(), nil
}

// MarginEvidence is what a [MarginTest] decided and why.
type MarginEvidence struct {
	// Shown is set once the canary has been shown within the margin; it is
	// final.
	Shown bool
	// Margin is the test's m.
	Margin float64
	// Counts are the totals of the slices observed.
	Counts Counts
	// Slices is the number of slices observed.
	Slices int64
	// LogStatistic is ln M now; Threshold is 1/Alpha.
	LogStatistic float64
	Threshold    float64
	Alpha        float64
	// PValue is the anytime-valid p-value of the null "canary at least Margin
	// times worse": min(1, 1/max M so far).
	PValue float64
	// Observed and Expected: the canary's bad events and what it would have
	// had at the stable's rate, weight by weight (see Evidence).
	Observed int64
	Expected float64
}

// Evidence returns the test's current evidence.
func (t *MarginTest) Evidence() MarginEvidence {
	return MarginEvidence{
		Shown:        t.shown,
		Margin:       t.margin,
		Counts:       t.counts,
		Slices:       t.slices,
		LogStatistic: t.mix.logM,
		Threshold:    1 / t.alpha,
		Alpha:        t.alpha,
		PValue:       math.Min(1, math.Exp(-t.mix.maxLogM)),
		Observed:     t.mix.observed,
		Expected:     t.mix.expected,
	}
}

// State returns the test's state; [RestoreMarginTest] with the same
// configuration rebuilds a test that continues exactly like t.
func (t *MarginTest) State() SequentialState {
	return sequentialState(t.mix, t.counts, t.slices, t.shown)
}

// RestoreMarginTest returns a test configured by cfg in state st.
func RestoreMarginTest(cfg MarginConfig, st SequentialState) (*MarginTest, error) {
	t, err := NewMarginTest(cfg)
	if err != nil {
		return nil, err
	}
	if err := restoreSequential(t.mix, &t.counts, &t.slices, &t.shown, st); err != nil {
		return nil, fmt.Errorf("restore margin test: %w", err)
	}
	return t, nil
}
