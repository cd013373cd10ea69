package analysis

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/stats"
	"github.com/modelgate/modelgate/internal/telemetry"
)

const (
	// minThresholdSample is the number of stable latencies needed to fix the
	// thresholds: below it a p99 is little more than the maximum.
	minThresholdSample = 100
	// allowanceShare is the part of each metric's promotion error given to
	// its absolute allowance (a bound on each arm's pooled rate); the ratio
	// test gets the rest.
	allowanceShare = 0.2
	// stateVersion is the version of State's layout.
	stateVersion = 4
)

// SlicePair is the same 1-second slice of both deployments, or the same
// part of one: the controller looks every few canary requests, and reads
// what each deployment served since its last look (telemetry.Tail).
type SlicePair struct {
	Start  time.Time       `json:"start"`
	Stable telemetry.Slice `json:"stable"`
	Canary telemetry.Slice `json:"canary"`
	// Span is the time the pair covers: 1 s for a whole slice (zero means
	// that too), less for a part.
	Span time.Duration `json:"span_ns"`
	// Open is set on a part of a second that had not ended: more of the
	// same second may follow, and is then observed too.
	Open bool `json:"open,omitempty"`
}

// ReadPairs reads what both deployments served since the tails' last
// read, up to now: the rest of each second that has ended, and the part of
// the current one so far, as pairs.
func ReadPairs(stable, canary *telemetry.Tail, now time.Time) []SlicePair {
	st, ca := stable.Read(now), canary.Read(now)
	out := make([]SlicePair, 0, len(st))
	for i, s := range st {
		p := SlicePair{Start: s.Start, Stable: s, Span: s.Span, Open: s.Open}
		if i < len(ca) { // both tails read the same seconds: one start, one now
			p.Canary = ca[i]
		}
		out = append(out, p)
	}
	return out
}

// Analyzer holds one rollout's analysis: the rollout-wide sequential tests
// (alpha and the promotion error are spent once per rollout) and the current
// stage's thresholds and sample-ratio check. Make one per rollout with New,
// or Restore after a restart. Not safe for concurrent use.
type Analyzer struct {
	plan     spec.Plan
	seq      *sequential // nil without a sequential gate
	observed bool        // a slice has been observed; last is its start
	last     time.Time
	// lastOpen: the last slice observed was a part of its second, and the
	// rest may follow. Not part of State: a restored analyzer goes on from
	// the next second, and the rest of that one is lost (as anything since
	// the state was saved).
	lastOpen bool
	stage    *stage     // nil before the first StartStage
	bake     *finalBake // nil before StartFinalBake
	names    Names      // for the summaries; not part of State
	// lookSecond is the wall second of the controller's look (SetLook);
	// thresholds the threshold gates' verdicts judged in thresholdSecond,
	// by gate index. Not part of State.
	lookSecond, thresholdSecond int64
	thresholds                  map[int]GateResult
	// paused: the rollout is paused. The sample-ratio check is not fed and
	// suppresses nothing (the split may be a human's), while every other
	// test goes on judging each slice: a pause stops progress, not
	// protection. Not part of State: the controller sets it at every look.
	paused bool
}

// sequential is the sequential gate's tests, each for the whole rollout.
type sequential struct {
	cfg seqConfig
	// errRollback and latRollback (one per quantile) roll the canary back:
	// change detectors, so a regression that starts late is caught fast.
	errRollback *stats.RegressionTest
	latRollback []*stats.RegressionTest
	// errPromotion[i] shows the canary's error rate within cfg.margins[i];
	// latPromotion[q] its share of slow requests (above the tolerant
	// threshold) at most the stable's (above its quantile): for latency
	// the tolerance is the margin, the same at every stage, because a
	// ratio of shares is no measure of slowness where slow requests are
	// half of all (p50); errAllowance shows its error rate within the
	// absolute allowance of the stable's, latAllowance the same for slow
	// requests: on each arm's totals, so over the current stage only (one
	// weight: totals over stages of different weights are not comparable),
	// started again at every stage. Each stage's claim is at the promotion
	// error's level for its own margin, as the ratio tests' are; the one
	// that promotes to 100% is the last stage's.
	errPromotion []*stats.MarginTest
	errAllowance *stats.NonInferiority
	latPromotion []*stats.MarginTest
	latAllowance []*stats.NonInferiority // one per quantile
}

// seqConfig is what the sequential gate's tests are built from, all from
// the plan.
type seqConfig struct {
	errAlpha, latAlpha float64 // rollback, per test
	bakeAlpha          float64 // the final bake's, all its tests together
	// promotion, per test: ratio tests and allowance paths
	errBeta, errAllowBeta, latBeta, latAllowBeta float64
	errAllowance, latAllowance                   float64 // fractions
	quantiles                                    []float64
	tolerance                                    float64 // fraction
	toleranceAbs                                 time.Duration
	margins                                      []float64 // distinct stage margins, ascending
}

// stage is the current live stage.
type stage struct {
	start  time.Time
	weight spec.Percent
	margin float64
	// stable are the stable's quantiles (one per cfg.quantiles), the
	// thresholds of a slow stable request; canary the same plus the
	// tolerance, those of a slow canary request. Nil until fixed.
	stable, canary  []time.Duration
	thresholdSource string           // "stable_recent" or "stage_stable"
	pending         telemetry.Sketch // stable latencies of the stage while the thresholds wait
	srm             *stats.SampleRatioTest
	// routed is when the stage's split took effect in the data plane
	// (RoutedAt); the sample-ratio test judges the slices that start from
	// then on. Zero: from start.
	routed time.Time
	// canaryRequests counts the stage's canary split requests, for the
	// warm-up; warm is set once the warm-up is over.
	canaryRequests int64
	warm           bool
	// stableSeen is the stable's split requests, errors and latencies of
	// the stage's slices, kept when the plan has a final bake: its
	// baseline, which survives a restart with the analysis state.
	stableSeen telemetry.Summary
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
	if g, ok := findSequential(plan); ok {
		cfg, err := newSeqConfig(plan, g)
		if err != nil {
			return nil, fmt.Errorf("analysis: %w", err)
		}
		if a.seq, err = newSequential(cfg); err != nil {
			return nil, fmt.Errorf("analysis: %w", err)
		}
	}
	return a, nil
}

func findSequential(p spec.Plan) (spec.Gate, bool) {
	for _, g := range p.Gates {
		if g.Type == spec.GateSequential {
			return g, true
		}
	}
	return spec.Gate{}, false
}

func newSeqConfig(p spec.Plan, g spec.Gate) (seqConfig, error) {
	errA, latA := g.ErrorsAlpha, g.LatencyAlpha
	if errA == 0 && latA == 0 { // a plan stored before the shares existed
		errA, latA = p.Alpha/2, p.Alpha/2
	}
	if !(errA > 0) || !(latA > 0) || g.FinalBakeAlpha < 0 || errA+latA+g.FinalBakeAlpha > p.Alpha*(1+1e-9) {
		return seqConfig{}, fmt.Errorf("sequential gate: errors_alpha %v, latency_alpha %v and final_bake_alpha %v: the first two must be above 0, all three together at most alpha %v", errA, latA, g.FinalBakeAlpha, p.Alpha)
	}
	beta := p.PromotionError
	if beta == 0 {
		beta = spec.DefaultPromotionError
	}
	allowance := p.ErrorAllowance
	if allowance == 0 {
		allowance = spec.DefaultErrorAllowance
	}
	qs := p.LatencyQuantiles()
	cfg := seqConfig{
		errAlpha:     errA,
		latAlpha:     latA / float64(len(qs)),
		bakeAlpha:    g.FinalBakeAlpha,
		errBeta:      beta / 2 * (1 - allowanceShare),
		errAllowBeta: beta / 2 * allowanceShare,
		latBeta:      beta / 2 / float64(len(qs)) * (1 - allowanceShare),
		latAllowBeta: beta / 2 / float64(len(qs)) * allowanceShare,
		errAllowance: allowance / 100,
		latAllowance: p.LatencyAllowance() / 100,
		quantiles:    append([]float64(nil), qs...),
		tolerance:    p.LatencyTolerance() / 100,
		toleranceAbs: time.Duration(p.LatencyToleranceMS() * float64(time.Millisecond)),
	}
	for i := range p.Stages {
		m := p.StageMargin(i)
		if !slices.Contains(cfg.margins, m) {
			cfg.margins = append(cfg.margins, m)
		}
	}
	slices.Sort(cfg.margins)
	return cfg, nil
}

func newSequential(cfg seqConfig) (*sequential, error) {
	s := &sequential{cfg: cfg}
	var err error
	if s.errRollback, err = stats.NewRegressionTest(stats.RegressionConfig{Alpha: cfg.errAlpha, DetectChanges: true}); err != nil {
		return nil, fmt.Errorf("errors: %w", err)
	}
	if s.errAllowance, err = stats.NewNonInferiority(cfg.errAllowanceConfig()); err != nil {
		return nil, fmt.Errorf("errors allowance: %w", err)
	}
	for _, m := range cfg.margins {
		t, err := stats.NewMarginTest(stats.MarginConfig{Alpha: cfg.errBeta, Margin: m})
		if err != nil {
			return nil, fmt.Errorf("errors margin: %w", err)
		}
		s.errPromotion = append(s.errPromotion, t)
	}
	for range cfg.quantiles {
		t, err := stats.NewRegressionTest(stats.RegressionConfig{Alpha: cfg.latAlpha, DetectChanges: true})
		if err != nil {
			return nil, fmt.Errorf("latency: %w", err)
		}
		s.latRollback = append(s.latRollback, t)
		m, err := stats.NewMarginTest(cfg.latMarginConfig())
		if err != nil {
			return nil, fmt.Errorf("latency margin: %w", err)
		}
		s.latPromotion = append(s.latPromotion, m)
		a, err := stats.NewNonInferiority(cfg.latAllowanceConfig())
		if err != nil {
			return nil, fmt.Errorf("latency allowance: %w", err)
		}
		s.latAllowance = append(s.latAllowance, a)
	}
	return s, nil
}

func (c seqConfig) errAllowanceConfig() stats.NonInferiorityConfig {
	return stats.NonInferiorityConfig{Alpha: c.errAllowBeta, RelativeMargin: 1, AbsoluteMargin: c.errAllowance}
}

// latMarginConfig is the latency promotion test's: the canary's share
// slower than the tolerant threshold is less than the stable's share
// slower than its quantile.
func (c seqConfig) latMarginConfig() stats.MarginConfig {
	return stats.MarginConfig{Alpha: c.latBeta, Margin: 1}
}

func (c seqConfig) latAllowanceConfig() stats.NonInferiorityConfig {
	return stats.NonInferiorityConfig{Alpha: c.latAllowBeta, RelativeMargin: 1, AbsoluteMargin: c.latAllowance}
}

// marginIndex is the index of m in the config's margins.
func (c seqConfig) marginIndex(m float64) int {
	i, ok := slices.BinarySearch(c.margins, m)
	if !ok {
		return len(c.margins) - 1 // cannot happen: every stage's margin is there
	}
	return i
}

// StartStage begins a live stage at weight whose routing took effect at
// start. Slices starting before start are not stage evidence (the slice in
// which routing changed holds both weights); the rollout-wide tests still
// take them. It fixes the latency thresholds from stableRecent, the stable's
// Summary over a recent window before the stage (the last minute is
// recommended); with fewer than 100 latencies there, they are fixed from
// the stable's first 100 requests of the stage instead. It restarts the
// sample-ratio test.
func (a *Analyzer) StartStage(start time.Time, weight spec.Percent, stableRecent telemetry.Summary) {
	st := &stage{start: start, weight: weight, margin: a.stageMargin(weight)}
	srm, err := stats.NewSampleRatioTest(stats.DefaultSRMAlpha)
	if err != nil {
		panic(err) // a constant alpha: cannot fail
	}
	st.srm = srm
	if stableRecent.Latency.Count() >= minThresholdSample {
		a.fixThresholds(st, stableRecent.Latency, "stable_recent")
	}
	a.stage = st
	a.thresholds = nil // judged again on the new stage's window
	if q := a.seq; q != nil {
		q.newAllowances()
	}
}

// newAllowances starts the stage's allowance paths.
func (q *sequential) newAllowances() {
	var err error
	if q.errAllowance, err = stats.NewNonInferiority(q.cfg.errAllowanceConfig()); err != nil {
		panic(err) // from a configuration New accepted
	}
	for i := range q.latAllowance {
		if q.latAllowance[i], err = stats.NewNonInferiority(q.cfg.latAllowanceConfig()); err != nil {
			panic(err)
		}
	}
}

// stageMargin is the margin of the plan's stage at weight.
func (a *Analyzer) stageMargin(weight spec.Percent) float64 {
	for i, s := range a.plan.Stages {
		if s.Weight == weight {
			return a.plan.StageMargin(i)
		}
	}
	return a.plan.StageMargin(len(a.plan.Stages) - 1)
}

// RoutedAt tells the analyzer when the current stage's split took effect
// in the data plane. The controller decides a stage, then commits its split
// (a disk or etcd write, slow on a loaded machine): requests routed at the
// previous weight meanwhile are not held against the new one by the
// sample-ratio test, which judges only the slices that start from t on.
// The other tests take every slice of the stage, whose realised shares
// they use.
func (a *Analyzer) RoutedAt(t time.Time) {
	if a.stage != nil {
		a.stage.routed = t
	}
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

// fixThresholds sets the stage's latency thresholds from the stable's
// latencies: the stable's quantiles, and the canary's with the tolerance,
// the larger of relative and absolute.
func (a *Analyzer) fixThresholds(st *stage, stable telemetry.Sketch, source string) {
	qs := spec.DefaultLatencyQuantiles
	tol, abs := spec.DefaultLatencyTolerance/100, time.Duration(spec.DefaultLatencyToleranceMS*float64(time.Millisecond))
	if a.seq != nil {
		qs, tol, abs = a.seq.cfg.quantiles, a.seq.cfg.tolerance, a.seq.cfg.toleranceAbs
	}
	st.stable, st.canary = nil, nil
	for _, q := range qs {
		l := stable.Quantile(q)
		st.stable = append(st.stable, l)
		st.canary = append(st.canary, max(l+time.Duration(float64(l)*tol), l+abs))
	}
	st.thresholdSource = source
	st.pending = telemetry.Sketch{}
}

// Observe adds 1-second slices, or parts of them, in time order. Slices
// starting before the last one observed are ignored, and so is one starting
// at it unless that was an open part, so replaying an overlapping range
// after a restart counts nothing twice. Nothing is added when any slice is
// inconsistent (more split requests than requests, more errors than
// requests).
func (a *Analyzer) Observe(pairs []SlicePair) error {
	var errs []error
	for i, p := range pairs {
		if err := CheckSlice(p.Stable); err != nil {
			errs = append(errs, fmt.Errorf("pairs[%d] (%s) stable: %w", i, p.Start.UTC().Format(time.RFC3339), err))
		}
		if err := CheckSlice(p.Canary); err != nil {
			errs = append(errs, fmt.Errorf("pairs[%d] (%s) canary: %w", i, p.Start.UTC().Format(time.RFC3339), err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("analysis: observe: %w", err)
	}
	for _, p := range pairs {
		if a.observed && (p.Start.Before(a.last) || p.Start.Equal(a.last) && !a.lastOpen) {
			continue
		}
		a.observe(p)
		a.observed, a.last, a.lastOpen = true, p.Start, p.Open
	}
	return nil
}

// CheckSlice reports counts a slice cannot hold (more split requests than
// requests, more errors than requests).
func CheckSlice(s telemetry.Slice) error {
	if s.SplitRequests > s.Requests {
		return fmt.Errorf("%d split requests of %d requests", s.SplitRequests, s.Requests)
	}
	if s.SplitErrors > s.SplitRequests {
		return fmt.Errorf("%d split errors of %d split requests", s.SplitErrors, s.SplitRequests)
	}
	return nil
}

// observe adds one slice. The counts were checked, so the tests cannot fail.
func (a *Analyzer) observe(p SlicePair) {
	if a.bake != nil {
		a.bake.observe(p) // at 100% the stage's tests have nothing to compare
		return
	}
	st := a.stage
	inStage := st != nil && !p.Start.Before(st.start)
	if inStage && a.plan.FinalBake > 0 {
		st.stableSeen.Requests += p.Stable.SplitRequests
		st.stableSeen.SplitErrors += p.Stable.SplitErrors
		st.stableSeen.Latency.Merge(p.Stable.Latency)
		st.stableSeen.TTFB.Merge(p.Stable.TTFB)
	}
	span := p.Span.Seconds()
	if span == 0 {
		span = 1
	}
	errSlice := stats.Slice{
		CanaryRequests: int64(p.Canary.SplitRequests), CanaryBad: int64(p.Canary.SplitErrors),
		StableRequests: int64(p.Stable.SplitRequests), StableBad: int64(p.Stable.SplitErrors),
		Span: span,
	}
	if q := a.seq; q != nil {
		q.errRollback.Observe(errSlice)
		if inStage {
			q.errAllowance.Add(errSlice)
		}
		for _, t := range q.errPromotion {
			t.Observe(errSlice)
		}
	}
	if inStage && !p.Start.Before(st.routed) && !a.paused && st.weight > 0 && st.weight < spec.Full {
		s := errSlice
		s.Weight = st.weight.Fraction()
		st.srm.Observe(s)
	}
	if st == nil {
		return // no thresholds before the first stage
	}
	if st.stable == nil {
		if inStage {
			st.pending.Merge(p.Stable.Latency)
			if st.pending.Count() >= minThresholdSample {
				a.fixThresholds(st, st.pending, "stage_stable") // from the next slice on
			}
		}
		return
	}
	if inStage && !st.warm {
		// Judged from the first slice after the warm-up's requests, once
		// its time has passed.
		st.warm = st.canaryRequests >= int64(a.plan.WarmupRequests()) && !p.Start.Before(st.start.Add(a.plan.WarmupTime()))
		if !st.warm {
			st.canaryRequests += int64(p.Canary.SplitRequests)
			return
		}
	}
	if !inStage {
		return // the previous stage's last slice: its warm-up state is gone
	}
	if q := a.seq; q != nil {
		for i := range q.cfg.quantiles {
			s := exceedances(p, st.canary[i], st.stable[i])
			s.Span = span
			q.latRollback[i].Observe(s)
			q.latAllowance[i].Add(s)
			q.latPromotion[i].Observe(s)
		}
	}
}

// exceedances is the latency slice at one quantile: split requests, and the
// split requests slower than canaryAt (canary) or stableAt (stable).
func exceedances(p SlicePair, canaryAt, stableAt time.Duration) stats.Slice {
	cr, cb := slow(p.Canary, canaryAt)
	sr, sb := slow(p.Stable, stableAt)
	return stats.Slice{CanaryRequests: cr, CanaryBad: cb, StableRequests: sr, StableBad: sb}
}

// slow counts the split requests in s's latency sketch, and those in
// buckets whose representative value is above l. The sketch's own count,
// not SplitRequests: in a part of a second read while it filled, a request
// may be in one and not yet in the other (telemetry.Tail).
func slow(s telemetry.Slice, l time.Duration) (requests, bad int64) {
	var over uint64
	for v, c := range s.Latency.Buckets() {
		if v > l {
			over += c
		}
	}
	return int64(s.Latency.Count()), int64(over)
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
	LastSlice *time.Time `json:"last_slice,omitempty"`
	// The sequential gate's tests (absent without one): rollback on errors
	// and at each latency quantile; promotion on errors (one per distinct
	// stage margin, ascending), the errors' absolute allowance, and at each
	// latency quantile one per margin.
	Errors           *stats.SequentialState      `json:"errors,omitempty"`
	LatencyRollback  []stats.SequentialState     `json:"latency_rollback,omitempty"`
	ErrorsPromotion  []stats.SequentialState     `json:"errors_promotion,omitempty"`
	ErrorsAllowance  *stats.NonInferiorityState  `json:"errors_allowance,omitempty"`
	LatencyPromotion []stats.SequentialState     `json:"latency_promotion,omitempty"`
	LatencyAllowance []stats.NonInferiorityState `json:"latency_allowance,omitempty"`
	Stage            *StageState                 `json:"stage,omitempty"`
	FinalBake        *FinalBakeState             `json:"final_bake,omitempty"`
}

// StageState is the current stage's part of State.
type StageState struct {
	Start time.Time `json:"start"`
	// Routed is when the stage's split took effect (Analyzer.RoutedAt);
	// zero in states stored before it existed, or before the commit.
	Routed time.Time    `json:"routed,omitzero"`
	Weight spec.Percent `json:"weight"`
	// StableThresholdsNS and CanaryThresholdsNS are the latency thresholds
	// in nanoseconds, one per quantile; empty while not fixed.
	StableThresholdsNS []int64 `json:"stable_thresholds_ns,omitempty"`
	CanaryThresholdsNS []int64 `json:"canary_thresholds_ns,omitempty"`
	ThresholdSource    string  `json:"threshold_source,omitempty"`
	// Pending holds the stable's stage latencies while the thresholds wait
	// for enough of them.
	Pending     []Bucket              `json:"pending,omitempty"`
	SampleRatio stats.SequentialState `json:"sample_ratio"`
	// CanaryRequests counts the stage's canary split requests during the
	// warm-up; Warm is set once it is over.
	CanaryRequests int64 `json:"canary_requests,omitempty"`
	Warm           bool  `json:"warm,omitempty"`
	// StableSeen is the stable's measurements of the stage, the final
	// bake's baseline (plans with a final bake only).
	StableSeen *Baseline `json:"stable_seen,omitempty"`
}

// Bucket is one sketch bucket: its representative value and count.
type Bucket struct {
	ValueNS int64  `json:"value_ns"`
	Count   uint64 `json:"count"`
}

// ErrStateVersion is returned by Restore for a state of another layout
// version (saved by an older modelgate): the tests cannot be carried over.
var ErrStateVersion = errors.New("analysis state of another version")

// State returns the analyzer's state.
func (a *Analyzer) State() State {
	s := State{Version: stateVersion, Alpha: a.plan.Alpha}
	if a.observed {
		t := a.last
		s.LastSlice = &t
	}
	if q := a.seq; q != nil {
		e := q.errRollback.State()
		s.Errors = &e
		n := q.errAllowance.State()
		s.ErrorsAllowance = &n
		for _, t := range q.errPromotion {
			s.ErrorsPromotion = append(s.ErrorsPromotion, t.State())
		}
		for i, t := range q.latRollback {
			s.LatencyRollback = append(s.LatencyRollback, t.State())
			s.LatencyPromotion = append(s.LatencyPromotion, q.latPromotion[i].State())
			s.LatencyAllowance = append(s.LatencyAllowance, q.latAllowance[i].State())
		}
	}
	if st := a.stage; st != nil {
		ss := &StageState{
			Start:           st.start,
			Routed:          st.routed,
			Weight:          st.weight,
			ThresholdSource: st.thresholdSource,
			SampleRatio:     st.srm.State(),
			CanaryRequests:  st.canaryRequests,
			Warm:            st.warm,
		}
		for i := range st.stable {
			ss.StableThresholdsNS = append(ss.StableThresholdsNS, int64(st.stable[i]))
			ss.CanaryThresholdsNS = append(ss.CanaryThresholdsNS, int64(st.canary[i]))
		}
		for v, c := range st.pending.Buckets() {
			ss.Pending = append(ss.Pending, Bucket{ValueNS: int64(v), Count: c})
		}
		if a.plan.FinalBake > 0 {
			b := NewBaseline(st.stableSeen)
			ss.StableSeen = &b
		}
		s.Stage = ss
	}
	if b := a.bake; b != nil {
		s.FinalBake = b.state()
	}
	return s
}

// Restore rebuilds the analyzer of a rollout run by plan (the same plan
// given to New) from a saved State. A state of another layout version
// returns an error wrapping ErrStateVersion.
func Restore(plan spec.Plan, st State) (*Analyzer, error) {
	a, err := New(plan)
	if err != nil {
		return nil, err
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("analysis: restore: %w: version %d, want %d", ErrStateVersion, st.Version, stateVersion)
	}
	if st.Alpha != plan.Alpha {
		return nil, fmt.Errorf("analysis: restore: state was built with alpha %v, plan has %v", st.Alpha, plan.Alpha)
	}
	if st.LastSlice != nil {
		a.observed, a.last = true, *st.LastSlice
	}
	if a.seq != nil {
		if err := a.seq.restore(st); err != nil {
			return nil, fmt.Errorf("analysis: restore: %w", err)
		}
	} else if st.Errors != nil {
		return nil, fmt.Errorf("analysis: restore: state has sequential tests, the plan no sequential gate")
	}
	if ss := st.Stage; ss != nil {
		if a.stage, err = a.restoreStage(ss); err != nil {
			return nil, fmt.Errorf("analysis: restore stage: %w", err)
		}
	}
	if fb := st.FinalBake; fb != nil {
		if a.bake, err = a.restoreFinalBake(*fb); err != nil {
			return nil, fmt.Errorf("analysis: restore final bake: %w", err)
		}
	}
	return a, nil
}

func (q *sequential) restore(st State) error {
	cfg := q.cfg
	nq, nm := len(cfg.quantiles), len(cfg.margins)
	if st.Errors == nil || st.ErrorsAllowance == nil || len(st.ErrorsPromotion) != nm || len(st.LatencyRollback) != nq || len(st.LatencyPromotion) != nq || len(st.LatencyAllowance) != nq {
		return fmt.Errorf("state and plan disagree on the sequential gate's tests (%d quantiles, %d margins)", nq, nm)
	}
	var err error
	if q.errRollback, err = stats.RestoreRegressionTest(stats.RegressionConfig{Alpha: cfg.errAlpha, DetectChanges: true}, *st.Errors); err != nil {
		return fmt.Errorf("errors: %w", err)
	}
	if q.errAllowance, err = stats.RestoreNonInferiority(cfg.errAllowanceConfig(), *st.ErrorsAllowance); err != nil {
		return fmt.Errorf("errors allowance: %w", err)
	}
	for i, m := range cfg.margins {
		if q.errPromotion[i], err = stats.RestoreMarginTest(stats.MarginConfig{Alpha: cfg.errBeta, Margin: m}, st.ErrorsPromotion[i]); err != nil {
			return fmt.Errorf("errors margin %v: %w", m, err)
		}
	}
	for i := range cfg.quantiles {
		if q.latRollback[i], err = stats.RestoreRegressionTest(stats.RegressionConfig{Alpha: cfg.latAlpha, DetectChanges: true}, st.LatencyRollback[i]); err != nil {
			return fmt.Errorf("latency %s: %w", quantileName(cfg.quantiles[i]), err)
		}
		if q.latAllowance[i], err = stats.RestoreNonInferiority(cfg.latAllowanceConfig(), st.LatencyAllowance[i]); err != nil {
			return fmt.Errorf("latency %s allowance: %w", quantileName(cfg.quantiles[i]), err)
		}
		if q.latPromotion[i], err = stats.RestoreMarginTest(cfg.latMarginConfig(), st.LatencyPromotion[i]); err != nil {
			return fmt.Errorf("latency %s promotion: %w", quantileName(cfg.quantiles[i]), err)
		}
	}
	return nil
}

func (a *Analyzer) restoreStage(ss *StageState) (*stage, error) {
	nq := len(spec.DefaultLatencyQuantiles)
	if a.seq != nil {
		nq = len(a.seq.cfg.quantiles)
	}
	fixed := len(ss.StableThresholdsNS) > 0
	if ss.Weight < 0 || ss.Weight > spec.Full || len(ss.StableThresholdsNS) != len(ss.CanaryThresholdsNS) || fixed && len(ss.StableThresholdsNS) != nq {
		return nil, fmt.Errorf("weight %v, %d stable and %d canary thresholds for %d quantiles: inconsistent", ss.Weight, len(ss.StableThresholdsNS), len(ss.CanaryThresholdsNS), nq)
	}
	st := &stage{
		start:           ss.Start,
		routed:          ss.Routed,
		weight:          ss.Weight,
		margin:          a.stageMargin(ss.Weight),
		thresholdSource: ss.ThresholdSource,
		canaryRequests:  ss.CanaryRequests,
		warm:            ss.Warm,
	}
	if ss.CanaryRequests < 0 {
		return nil, fmt.Errorf("%d warm-up canary requests", ss.CanaryRequests)
	}
	for i := range ss.StableThresholdsNS {
		s, c := ss.StableThresholdsNS[i], ss.CanaryThresholdsNS[i]
		if s <= 0 || c < s {
			return nil, fmt.Errorf("latency thresholds %d ns (stable) and %d ns (canary): want positive, canary at least stable", s, c)
		}
		st.stable = append(st.stable, time.Duration(s))
		st.canary = append(st.canary, time.Duration(c))
	}
	for _, b := range ss.Pending {
		if b.ValueNS <= 0 {
			return nil, fmt.Errorf("pending bucket value %d ns", b.ValueNS)
		}
		st.pending.Add(time.Duration(b.ValueNS), b.Count)
	}
	if b := ss.StableSeen; b != nil {
		if err := b.check(); err != nil {
			return nil, err
		}
		st.stableSeen = b.summary()
	}
	var err error
	if st.srm, err = stats.RestoreSampleRatioTest(stats.DefaultSRMAlpha, ss.SampleRatio); err != nil {
		return nil, err
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
