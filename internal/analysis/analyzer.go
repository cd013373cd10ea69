package analysis

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/stats"
	"github.com/modelgate/modelgate/internal/telemetry"
)

const (
	// rollbackQuantile is the stable quantile that fixes the latency threshold
	// L of the rollback test.
	rollbackQuantile = 0.99
	// promotionQuantile is the stable quantile whose exceedance is the
	// latency promotion evidence: a p99 exceedance of 1% needs ~15,000 canary
	// requests to be shown within 1.5×, a p90 one a few hundred.
	promotionQuantile = 0.90
	// latencyPromotionMargin is the absolute allowance of the latency
	// promotion evidence: +2 points of requests slower than the stable's p90.
	latencyPromotionMargin = 0.02
	// minThresholdSample is the number of stable latencies needed to fix the
	// thresholds: below it a p99 is little more than the maximum.
	minThresholdSample = 100
	// stateVersion is the version of State's layout.
	stateVersion = 1
)

// SlicePair is the same 1-second slice of both deployments.
type SlicePair struct {
	Start          time.Time
	Stable, Canary telemetry.Slice
}

// Analyzer holds one rollout's analysis: the rollout-wide sequential tests
// (alpha is spent once per rollout) and the current stage's evidence. Make
// one per rollout with New, or Restore after a restart. Not safe for
// concurrent use.
type Analyzer struct {
	plan     spec.Plan
	alphas   alphas
	errT     *stats.RegressionTest // nil without a sequential gate
	latT     *stats.RegressionTest // nil without a sequential gate
	observed bool                  // a slice has been observed; last is its start
	last     time.Time
	stage    *stage // nil before the first StartStage
	// paused: the rollout is paused. The sample-ratio check is not fed and
	// suppresses nothing (the split may be a human's), while every other
	// test goes on judging each slice: a pause stops progress, not
	// protection. Not part of State: the controller sets it at every look.
	paused bool
}

type alphas struct{ errors, latency float64 }

// stage is the evidence of the current live stage.
type stage struct {
	start  time.Time
	weight spec.Percent
	// rollback and promotion are the latency thresholds L (stable p99) and
	// the promotion threshold (stable p90); zero until fixed.
	rollback, promotion time.Duration
	thresholdSource     string           // "stable_recent" or "stage_stable"
	pending             telemetry.Sketch // stable latencies of the stage while the thresholds wait
	srm                 *stats.SampleRatioTest
	niErr, niLat        *stats.NonInferiority // nil without a sequential gate; niLat nil until thresholds are fixed
}

// New returns the analyzer of a rollout run by plan, which must have its
// defaults filled in (spec.Plan.WithDefaults).
func New(plan spec.Plan) (*Analyzer, error) {
	if err := plan.Validate(); err != nil {
		return nil, fmt.Errorf("analysis: invalid plan: %w", err)
	}
	if !(plan.Alpha > 0 && plan.Alpha < 1) {
		return nil, fmt.Errorf("analysis: plan alpha %v not in (0, 1): fill in the defaults first", plan.Alpha)
	}
	if len(plan.Gates) == 0 {
		return nil, fmt.Errorf("analysis: plan has no gates: fill in the defaults first")
	}
	a := &Analyzer{plan: plan.Clone()}
	if a.sequential() {
		s, err := stats.SplitAlpha(plan.Alpha, 2)
		if err != nil {
			return nil, fmt.Errorf("analysis: %w", err)
		}
		a.alphas = alphas{errors: s[0], latency: s[1]}
		if a.errT, err = stats.NewRegressionTest(stats.RegressionConfig{Alpha: a.alphas.errors}); err != nil {
			return nil, fmt.Errorf("analysis: errors: %w", err)
		}
		if a.latT, err = stats.NewRegressionTest(stats.RegressionConfig{Alpha: a.alphas.latency}); err != nil {
			return nil, fmt.Errorf("analysis: latency: %w", err)
		}
	}
	return a, nil
}

func (a *Analyzer) sequential() bool {
	for _, g := range a.plan.Gates {
		if g.Type == spec.GateSequential {
			return true
		}
	}
	return false
}

func (a *Analyzer) errNIConfig() stats.NonInferiorityConfig {
	return stats.NonInferiorityConfig{Alpha: a.alphas.errors}
}

func (a *Analyzer) latNIConfig() stats.NonInferiorityConfig {
	return stats.NonInferiorityConfig{Alpha: a.alphas.latency, AbsoluteMargin: latencyPromotionMargin}
}

// StartStage begins a live stage at weight whose routing took effect at
// start. Slices starting before start are not stage evidence (the slice in
// which routing changed holds both weights); the rollout-wide tests still
// take them. It fixes the latency thresholds from stableRecent, the stable's
// Summary over a recent window before the stage (the last minute is
// recommended): L is its p99, the promotion threshold its p90. With fewer
// than 100 latencies there, they are fixed from the stable's first 100
// requests of the stage instead. It resets the stage's promotion evidence and
// the sample-ratio test.
func (a *Analyzer) StartStage(start time.Time, weight spec.Percent, stableRecent telemetry.Summary) {
	st := &stage{start: start, weight: weight}
	srm, err := stats.NewSampleRatioTest(stats.DefaultSRMAlpha)
	if err != nil {
		panic(err) // a constant alpha: cannot fail
	}
	st.srm = srm
	if a.errT != nil {
		st.niErr = mustNI(stats.NewNonInferiority(a.errNIConfig()))
	}
	if stableRecent.Latency.Count() >= minThresholdSample {
		a.fixThresholds(st, stableRecent.Latency, "stable_recent")
	}
	a.stage = st
}

// SetPaused tells the analyzer whether the rollout is paused (see the
// paused field): while it is, the sample-ratio test neither observes nor
// holds back a failed gate.
func (a *Analyzer) SetPaused(paused bool) { a.paused = paused }

// ResetSampleRatio restarts the stage's sample-ratio test, for resuming
// after a mismatch once routing is fixed.
func (a *Analyzer) ResetSampleRatio() {
	if a.stage == nil {
		return
	}
	srm, err := stats.NewSampleRatioTest(stats.DefaultSRMAlpha)
	if err != nil {
		panic(err)
	}
	a.stage.srm = srm
}

func (a *Analyzer) fixThresholds(st *stage, stable telemetry.Sketch, source string) {
	st.rollback = stable.Quantile(rollbackQuantile)
	st.promotion = stable.Quantile(promotionQuantile)
	st.thresholdSource = source
	st.pending = telemetry.Sketch{}
	if a.latT != nil {
		st.niLat = mustNI(stats.NewNonInferiority(a.latNIConfig()))
	}
}

func mustNI(n *stats.NonInferiority, err error) *stats.NonInferiority {
	if err != nil {
		panic(err) // alphas were checked by New
	}
	return n
}

// Observe adds complete 1-second slices in time order. Slices starting at or
// before the last one observed are ignored, so replaying an overlapping range
// after a restart counts nothing twice. Nothing is added when any slice is
// inconsistent (more split requests than requests, more errors than
// requests).
func (a *Analyzer) Observe(pairs []SlicePair) error {
	var errs []error
	for i, p := range pairs {
		if err := checkSlice(p.Stable); err != nil {
			errs = append(errs, fmt.Errorf("pairs[%d] (%s) stable: %w", i, p.Start.UTC().Format(time.RFC3339), err))
		}
		if err := checkSlice(p.Canary); err != nil {
			errs = append(errs, fmt.Errorf("pairs[%d] (%s) canary: %w", i, p.Start.UTC().Format(time.RFC3339), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("analysis: observe: %w", err)
	}
	for _, p := range pairs {
		if a.observed && !p.Start.After(a.last) {
			continue
		}
		a.observe(p)
		a.observed, a.last = true, p.Start
	}
	return nil
}

func checkSlice(s telemetry.Slice) error {
	if s.SplitRequests > s.Requests {
		return fmt.Errorf("%d split requests of %d requests", s.SplitRequests, s.Requests)
	}
	if s.SplitErrors > s.SplitRequests {
		return fmt.Errorf("%d split errors of %d split requests", s.SplitErrors, s.SplitRequests)
	}
	if n := s.Latency.Count(); n > s.SplitRequests {
		return fmt.Errorf("latency of %d requests for %d split requests (the sketch holds split-routed requests only)", n, s.SplitRequests)
	}
	return nil
}

// observe adds one slice. The counts were checked, so the tests cannot fail.
func (a *Analyzer) observe(p SlicePair) {
	st := a.stage
	inStage := st != nil && !p.Start.Before(st.start)
	errSlice := stats.Slice{
		CanaryRequests: int64(p.Canary.SplitRequests), CanaryBad: int64(p.Canary.SplitErrors),
		StableRequests: int64(p.Stable.SplitRequests), StableBad: int64(p.Stable.SplitErrors),
	}
	if a.errT != nil {
		a.errT.Observe(errSlice)
		if inStage {
			st.niErr.Observe(errSlice)
		}
	}
	if inStage && !a.paused && st.weight > 0 && st.weight < spec.Full {
		s := errSlice
		s.Weight = st.weight.Fraction()
		st.srm.Observe(s)
	}
	if st == nil {
		return // no thresholds before the first stage
	}
	if st.rollback == 0 {
		if inStage {
			st.pending.Merge(p.Stable.Latency)
			if st.pending.Count() >= minThresholdSample {
				a.fixThresholds(st, st.pending, "stage_stable") // from the next slice on
			}
		}
		return
	}
	if a.latT != nil {
		a.latT.Observe(exceedances(p, st.rollback))
		if inStage {
			st.niLat.Observe(exceedances(p, st.promotion))
		}
	}
}

// exceedances is the latency slice for threshold l: split requests and the
// split requests slower than l, per arm.
func exceedances(p SlicePair, l time.Duration) stats.Slice {
	cr, cb := slow(p.Canary, l)
	sr, sb := slow(p.Stable, l)
	return stats.Slice{CanaryRequests: cr, CanaryBad: cb, StableRequests: sr, StableBad: sb}
}

// slow counts the split requests of s in buckets whose representative
// value is above l (the slice's sketch holds split-routed requests only).
func slow(s telemetry.Slice, l time.Duration) (requests, bad int64) {
	var over uint64
	for v, c := range s.Latency.Buckets() {
		if v > l {
			over += c
		}
	}
	return int64(s.SplitRequests), int64(over) // over <= SplitRequests: checkSlice
}

// State is an Analyzer's complete state, JSON-serialisable, for the
// controller to persist; Restore with the same plan rebuilds an Analyzer
// that continues exactly like the one saved.
type State struct {
	Version int `json:"version"`
	// Alpha is the plan's alpha the tests were built with; Restore refuses a
	// plan with another.
	Alpha float64 `json:"alpha"`
	// LastSlice is the start of the last slice observed; nil before any.
	LastSlice *time.Time             `json:"last_slice,omitempty"`
	Errors    *stats.SequentialState `json:"errors,omitempty"`
	Latency   *stats.SequentialState `json:"latency,omitempty"`
	Stage     *StageState            `json:"stage,omitempty"`
}

// StageState is the current stage's part of State.
type StageState struct {
	Start  time.Time    `json:"start"`
	Weight spec.Percent `json:"weight"`
	// LatencyThresholdNS and PromotionThresholdNS are L and the promotion
	// threshold in nanoseconds; zero while not fixed.
	LatencyThresholdNS   int64  `json:"latency_threshold_ns"`
	PromotionThresholdNS int64  `json:"promotion_threshold_ns"`
	ThresholdSource      string `json:"threshold_source,omitempty"`
	// Pending holds the stable's stage latencies while the thresholds wait
	// for enough of them.
	Pending          []Bucket                   `json:"pending,omitempty"`
	SampleRatio      stats.SequentialState      `json:"sample_ratio"`
	ErrorsPromotion  *stats.NonInferiorityState `json:"errors_promotion,omitempty"`
	LatencyPromotion *stats.NonInferiorityState `json:"latency_promotion,omitempty"`
}

// Bucket is one sketch bucket: its representative value and count.
type Bucket struct {
	ValueNS int64  `json:"value_ns"`
	Count   uint64 `json:"count"`
}

// State returns the analyzer's state.
func (a *Analyzer) State() State {
	s := State{Version: stateVersion, Alpha: a.plan.Alpha}
	if a.observed {
		t := a.last
		s.LastSlice = &t
	}
	if a.errT != nil {
		e, l := a.errT.State(), a.latT.State()
		s.Errors, s.Latency = &e, &l
	}
	if st := a.stage; st != nil {
		ss := &StageState{
			Start:                st.start,
			Weight:               st.weight,
			LatencyThresholdNS:   int64(st.rollback),
			PromotionThresholdNS: int64(st.promotion),
			ThresholdSource:      st.thresholdSource,
			SampleRatio:          st.srm.State(),
		}
		for v, c := range st.pending.Buckets() {
			ss.Pending = append(ss.Pending, Bucket{ValueNS: int64(v), Count: c})
		}
		if st.niErr != nil {
			n := st.niErr.State()
			ss.ErrorsPromotion = &n
		}
		if st.niLat != nil {
			n := st.niLat.State()
			ss.LatencyPromotion = &n
		}
		s.Stage = ss
	}
	return s
}

// Restore rebuilds the analyzer of a rollout run by plan (the same plan
// given to New) from a saved State.
func Restore(plan spec.Plan, st State) (*Analyzer, error) {
	a, err := New(plan)
	if err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("analysis: restore: state version %d, want %d", st.Version, stateVersion)
	}
	if st.Alpha != plan.Alpha {
		return nil, fmt.Errorf("analysis: restore: state was built with alpha %v, plan has %v", st.Alpha, plan.Alpha)
	}
	if (st.Errors != nil) != (a.errT != nil) || (st.Latency != nil) != (a.latT != nil) {
		return nil, fmt.Errorf("analysis: restore: state and plan disagree on the sequential gate")
	}
	if st.LastSlice != nil {
		a.observed, a.last = true, *st.LastSlice
	}
	if a.errT != nil {
		if a.errT, err = stats.RestoreRegressionTest(stats.RegressionConfig{Alpha: a.alphas.errors}, *st.Errors); err != nil {
			return nil, fmt.Errorf("analysis: restore errors: %w", err)
		}
		if a.latT, err = stats.RestoreRegressionTest(stats.RegressionConfig{Alpha: a.alphas.latency}, *st.Latency); err != nil {
			return nil, fmt.Errorf("analysis: restore latency: %w", err)
		}
	}
	if ss := st.Stage; ss != nil {
		if a.stage, err = a.restoreStage(ss); err != nil {
			return nil, fmt.Errorf("analysis: restore stage: %w", err)
		}
	}
	return a, nil
}

func (a *Analyzer) restoreStage(ss *StageState) (*stage, error) {
	if ss.Weight < 0 || ss.Weight > spec.Full || ss.LatencyThresholdNS < 0 || ss.PromotionThresholdNS < 0 ||
		(ss.LatencyThresholdNS == 0) != (ss.PromotionThresholdNS == 0) {
		return nil, fmt.Errorf("weight %v, thresholds %d ns and %d ns: inconsistent", ss.Weight, ss.LatencyThresholdNS, ss.PromotionThresholdNS)
	}
	st := &stage{
		start:           ss.Start,
		weight:          ss.Weight,
		rollback:        time.Duration(ss.LatencyThresholdNS),
		promotion:       time.Duration(ss.PromotionThresholdNS),
		thresholdSource: ss.ThresholdSource,
	}
	for _, b := range ss.Pending {
		if b.ValueNS <= 0 {
			return nil, fmt.Errorf("pending bucket value %d ns", b.ValueNS)
		}
		st.pending.Add(time.Duration(b.ValueNS), b.Count)
	}
	var err error
	if st.srm, err = stats.RestoreSampleRatioTest(stats.DefaultSRMAlpha, ss.SampleRatio); err != nil {
		return nil, err
	}
	fixed := st.rollback > 0
	if a.errT != nil {
		if ss.ErrorsPromotion == nil || (ss.LatencyPromotion != nil) != fixed {
			return nil, fmt.Errorf("promotion evidence missing or inconsistent with the thresholds")
		}
		if st.niErr, err = stats.RestoreNonInferiority(a.errNIConfig(), *ss.ErrorsPromotion); err != nil {
			return nil, err
		}
		if fixed {
			if st.niLat, err = stats.RestoreNonInferiority(a.latNIConfig(), *ss.LatencyPromotion); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// finite returns x, or the largest float64 of its sign for ±Inf, so that
// evidence always encodes as JSON.
func finite(x float64) float64 {
	switch {
	case math.IsInf(x, 1):
		return math.MaxFloat64
	case math.IsInf(x, -1):
		return -math.MaxFloat64
	case math.IsNaN(x):
		return 0
	}
	return x
}
