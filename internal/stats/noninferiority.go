package stats

import (
	"fmt"
	"math"
)

// Defaults of [NonInferiorityConfig].
const (
	DefaultRelativeMargin = 1.5
	DefaultAbsoluteMargin = 0.002
	DefaultPriorA         = 0.1
	DefaultPriorB         = 10
)

// NonInferiorityConfig configures a [NonInferiority] check. Zero values mean the
// defaults.
type NonInferiorityConfig struct {
	// Alpha bounds the probability that a canary worse than the margin is ever
	// reported as promotable. Required, in (0, 1). Half of it goes to the canary's
	// upper bound and half to the stable's lower bound.
	Alpha float64
	// RelativeMargin: the canary may be up to this many times worse than stable
	// (default 1.5).
	RelativeMargin float64
	// AbsoluteMargin: or up to this much worse in absolute rate, whichever is looser
	// (default 0.002, i.e. +0.2 percentage points). It is what lets a canary be
	// promoted when stable has few or zero bad events.
	AbsoluteMargin float64
	// PriorA and PriorB are the Beta(a, b) mixing distribution of each arm's
	// confidence sequence (defaults 0.1 and 10: mass near small rates, so that an arm
	// with no bad events gets a tight upper bound quickly).
	PriorA, PriorB float64
}

// NonInferiority is promotion evidence from each arm's pooled counts: an
// anytime-valid confidence sequence for each arm's bad-event rate (a Beta-binomial
// mixture, exact for Bernoulli requests at a constant rate), and the claim "canary
// rate < max(RelativeMargin × stable rate, stable rate + AbsoluteMargin)". The claim
// holds when the canary's upper bound is below the allowance computed from the
// stable's lower bound; otherwise the result is inconclusive. Pooling assumes the
// rates do not move with time: where load swings move both arms' rates and the
// canary's requests cluster in time (later stages carry more weight), the pooled
// rates are not comparable, which [MarginTest] avoids by judging each slice at its
// own share. The analysis uses it for the absolute allowance only, where rates are
// low. Not safe for concurrent use.
type NonInferiority struct {
	cfg    NonInferiorityConfig
	counts Counts
	slices int64
}

// NewNonInferiority returns a check configured by cfg.
func NewNonInferiority(cfg NonInferiorityConfig) (*NonInferiority, error) {
	if err := checkAlpha(cfg.Alpha); err != nil {
		return nil, fmt.Errorf("non-inferiority: %w", err)
	}
	if cfg.RelativeMargin == 0 {
		cfg.RelativeMargin = DefaultRelativeMargin
	}
	if cfg.AbsoluteMargin == 0 {
		cfg.AbsoluteMargin = DefaultAbsoluteMargin
	}
	if cfg.PriorA == 0 {
		cfg.PriorA = DefaultPriorA
	}
	if cfg.PriorB == 0 {
		cfg.PriorB = DefaultPriorB
	}
	if !(cfg.RelativeMargin >= 1) || !(cfg.AbsoluteMargin >= 0 && cfg.AbsoluteMargin < 1) {
		return nil, fmt.Errorf("non-inferiority: margins %v, %v: want relative >= 1 and absolute in [0, 1)", cfg.RelativeMargin, cfg.AbsoluteMargin)
	}
	if !(cfg.PriorA > 0) || !(cfg.PriorB > 0) {
		return nil, fmt.Errorf("non-inferiority: prior Beta(%v, %v), want positive", cfg.PriorA, cfg.PriorB)
	}
	return &NonInferiority{cfg: cfg}, nil
}

// Promotion is the verdict of a [NonInferiority] check.
type Promotion int

const (
	// Inconclusive means the data do not (yet) show that the canary is at most the
	// margin worse than stable.
	Inconclusive Promotion = iota
	// Promote means the canary is shown to be at most the margin worse than stable.
	Promote
)

// String returns "inconclusive" or "promote".
func (p Promotion) String() string {
	if p == Promote {
		return "promote"
	}
	return "inconclusive"
}

// NonInferiorityEvidence is what a [NonInferiority] check decided and why.
type NonInferiorityEvidence struct {
	// Verdict is Promote when CanaryUpper < Allowed.
	Verdict Promotion
	// Counts are the totals observed.
	Counts Counts
	// CanaryUpper is the canary's upper confidence bound on its bad-event rate.
	CanaryUpper float64
	// StableLower is the stable's lower confidence bound on its bad-event rate.
	StableLower float64
	// Allowed is max(RelativeMargin × StableLower, StableLower + AbsoluteMargin).
	Allowed float64
	// RelativeMargin and AbsoluteMargin are the margins used.
	RelativeMargin, AbsoluteMargin float64
	// Alpha is the check's level.
	Alpha float64
}

// Observe adds one slice and returns the evidence after it.
func (n *NonInferiority) Observe(s Slice) (NonInferiorityEvidence, error) {
	err := n.Add(s)
	return n.Evidence(), err
}

// Add adds one slice without computing the evidence (two confidence
// bounds, each a bisection): for callers that look less often than they
// add.
func (n *NonInferiority) Add(s Slice) error {
	if err := s.Validate(); err != nil {
		return fmt.Errorf("non-inferiority: %w", err)
	}
	n.counts.add(s)
	n.slices++
	return nil
}

// Evidence returns the current evidence.
func (n *NonInferiority) Evidence() NonInferiorityEvidence {
	c := n.counts
	a, b, half := n.cfg.PriorA, n.cfg.PriorB, n.cfg.Alpha/2
	_, cu := BinomialConfidenceSequence(c.CanaryBad, c.CanaryRequests, half, a, b)
	sl, _ := BinomialConfidenceSequence(c.StableBad, c.StableRequests, half, a, b)
	e := NonInferiorityEvidence{
		Counts:         c,
		CanaryUpper:    cu,
		StableLower:    sl,
		Allowed:        math.Max(n.cfg.RelativeMargin*sl, sl+n.cfg.AbsoluteMargin),
		RelativeMargin: n.cfg.RelativeMargin,
		AbsoluteMargin: n.cfg.AbsoluteMargin,
		Alpha:          n.cfg.Alpha,
	}
	if e.CanaryUpper < e.Allowed {
		e.Verdict = Promote
	}
	return e
}

// BinomialConfidenceSequence returns the anytime-valid (1−alpha) confidence interval
// for a Bernoulli rate p after x successes in n trials: the set of p whose
// Beta(a, b)-mixture likelihood ratio
//
//	M(p) = B(a+x, b+n−x) / (B(a, b) · p^x · (1−p)^(n−x))
//
// is below 1/alpha. M(p) is a martingale under p, so the probability that the
// interval ever excludes the true p, over all n, is at most alpha. With n = 0 it is
// [0, 1].
func BinomialConfidenceSequence(x, n int64, alpha, a, b float64) (lower, upper float64) {
	if n <= 0 {
		return 0, 1
	}
	fx, fy := float64(x), float64(n-x)
	c := math.Log(1/alpha) - lnBeta(a+fx, b+fy) + lnBeta(a, b)
	// f(p) = c + (-x ln p - (n-x) ln(1-p)) > 0 outside the interval; f is convex with
	// its minimum at x/n.
	f := func(p float64) float64 {
		v := c
		if x > 0 {
			v += fx * math.Log(p)
		}
		if n > x {
			v += fy * math.Log1p(-p)
		}
		return v
	}
	// Inside the interval: log-likelihood ratio ln M(p) < ln(1/alpha), i.e. f(p) > 0
	// with f = ln(1/alpha) - ln M(p).
	mid := fx / float64(n)
	if f(mid) <= 0 { // even the MLE is rejected: cannot happen for alpha < 1, guard
		return mid, mid
	}
	lower, upper = 0, 1
	if x > 0 {
		lower = bisect(f, 0, mid)
	}
	if n > x {
		upper = bisect(f, 1, mid)
	}
	return lower, upper
}

// bisect finds the boundary between out (f ≤ 0) and in (f > 0) on the segment
// from out to in.
func bisect(f func(float64) float64, out, in float64) float64 {
	for range 64 { // 2^-64 of the segment: below float64 resolution of rates
		m := (out + in) / 2
		if m == out || m == in {
			break
		}
		if f(m) > 0 {
			in = m
		} else {
			out = m
		}
	}
	return out
}

func lnBeta(a, b float64) float64 {
	la, _ := math.Lgamma(a)
	lb, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	return la + lb - lab
}
