package analysis

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/stats"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Baseline is what the final bake compares the canary with once it holds
// 100% of traffic and no stable is left to serve beside it: the stable's
// split requests, errors and latencies over the last stage.
type Baseline struct {
	Requests int64    `json:"requests"`
	Errors   int64    `json:"errors"`
	Latency  []Bucket `json:"latency,omitempty"`
	TTFB     []Bucket `json:"ttfb,omitempty"`
}

// NewBaseline takes the baseline from the stable's Summary of the last stage.
func NewBaseline(s telemetry.Summary) Baseline {
	b := Baseline{Requests: int64(s.SplitRequests()), Errors: int64(s.SplitErrors)}
	b.Latency, b.TTFB = buckets(s.Latency), buckets(s.TTFB)
	return b
}

func buckets(s telemetry.Sketch) []Bucket {
	var out []Bucket
	for v, c := range s.Buckets() {
		out = append(out, Bucket{ValueNS: int64(v), Count: c})
	}
	return out
}

// summary is the baseline as a stable Summary, for the threshold gates.
func (b Baseline) summary() telemetry.Summary {
	s := telemetry.Summary{Requests: uint64(b.Requests), SplitErrors: uint64(b.Errors), Errors: uint64(b.Errors)}
	for _, k := range b.Latency {
		s.Latency.Add(time.Duration(k.ValueNS), k.Count)
	}
	for _, k := range b.TTFB {
		s.TTFB.Add(time.Duration(k.ValueNS), k.Count)
	}
	return s
}

func (b Baseline) check() error {
	if b.Requests < 0 || b.Errors < 0 || b.Errors > b.Requests {
		return fmt.Errorf("baseline of %d errors in %d requests", b.Errors, b.Requests)
	}
	for _, k := range append(append([]Bucket(nil), b.Latency...), b.TTFB...) {
		if k.ValueNS <= 0 {
			return fmt.Errorf("baseline latency bucket at %d ns", k.ValueNS)
		}
	}
	return nil
}

// finalBake is the watch over a canary at 100%: with the sequential gate,
// one-sample change detectors of its error rate and of its share of slow
// requests at each latency quantile against the baseline (alpha: the
// gate's final_bake_alpha, half to errors, half split across the
// quantiles); the threshold gates compare it with the baseline as if it
// were the stable.
type finalBake struct {
	start    time.Time
	baseline Baseline
	// errRate is the errors test's null rate: the stable's rate times the
	// last stage's margin, or plus the error allowance, whichever is
	// larger. latRates[i] the latency tests': the share of stable requests
	// above the quantile, plus the latency allowance; a canary request is
	// slow above thresholds[i], the stable's quantile plus the tolerance.
	errRate    float64
	errors     *stats.BaselineTest
	latRates   []float64
	thresholds []time.Duration
	latency    []*stats.BaselineTest
	// why, when the sequential gate has no baseline tests, says why.
	why string
}

// bakeErrAlpha and bakeLatAlpha are the final bake's alphas per test: half
// of final_bake_alpha to errors, half to latency split across the
// quantiles, and each of those halved again between the baseline's upper
// bound and the test.
func (c seqConfig) bakeErrAlpha() float64 { return c.bakeAlpha / 2 / 2 }
func (c seqConfig) bakeLatAlpha() float64 {
	return c.bakeAlpha / 2 / float64(len(c.quantiles)) / 2
}

// StageBaseline is the stable's measurements over the current stage as
// the analyzer saw them (plans with a final bake; kept in State, so a
// restart in the last stage keeps them), the final bake's baseline.
func (a *Analyzer) StageBaseline() Baseline {
	if a.stage == nil {
		return Baseline{}
	}
	return NewBaseline(a.stage.stableSeen)
}

// StartFinalBake starts watching the canary at 100% from start against
// baseline. The stage's tests stop: there is no stable to compare with.
func (a *Analyzer) StartFinalBake(start time.Time, baseline Baseline) {
	b, err := a.newFinalBake(start, baseline)
	if err != nil {
		panic(err) // rates and alpha come from a valid plan: cannot fail
	}
	a.bake = b
	a.thresholds = nil // judged again against the baseline
}

func (a *Analyzer) newFinalBake(start time.Time, baseline Baseline) (*finalBake, error) {
	b := &finalBake{start: start, baseline: baseline}
	q := a.seq
	if q == nil {
		return b, nil
	}
	if !(q.cfg.bakeAlpha > 0) {
		b.why = "the plan gives the final bake no alpha (final_bake_alpha)"
		return b, nil
	}
	if baseline.Requests < minThresholdSample {
		b.why = fmt.Sprintf("not judged: the stable served %s requests in the last stage, fewer than the %d a baseline needs", num(baseline.Requests), minThresholdSample)
		return b, nil
	}
	// The baseline is a measurement: its rates are taken at an upper
	// confidence bound (half of each test's alpha), so that a canary as good
	// as the stable is rolled back with probability at most alpha however
	// few requests the baseline holds.
	margin := a.plan.StageMargin(len(a.plan.Stages) - 1)
	_, stable := stats.BinomialConfidenceSequence(baseline.Errors, baseline.Requests, q.cfg.bakeErrAlpha(), stats.DefaultPriorA, stats.DefaultPriorB)
	b.errRate = math.Min(math.Max(margin*stable, stable+q.cfg.errAllowance), 0.999)
	var err error
	if b.errors, err = stats.NewBaselineTest(stats.BaselineConfig{Alpha: q.cfg.bakeErrAlpha(), Rate: b.errRate}); err != nil {
		return nil, err
	}
	lat := baseline.summary().Latency
	if lat.Count() < minThresholdSample {
		b.why = fmt.Sprintf("latency not judged: the stable served %s requests in the last stage, fewer than the %d needed for its quantiles", num(int64(lat.Count())), minThresholdSample)
		return b, nil
	}
	for _, qu := range q.cfg.quantiles {
		l := lat.Quantile(qu)
		b.thresholds = append(b.thresholds, max(l+time.Duration(float64(l)*q.cfg.tolerance), l+q.cfg.toleranceAbs))
		var above uint64
		for v, c := range lat.Buckets() {
			if v > l {
				above += c
			}
		}
		_, share := stats.BinomialConfidenceSequence(int64(above), int64(lat.Count()), q.cfg.bakeLatAlpha(), stats.DefaultPriorA, stats.DefaultPriorB)
		r := math.Min(share+q.cfg.latAllowance, 0.999)
		b.latRates = append(b.latRates, r)
		t, err := stats.NewBaselineTest(stats.BaselineConfig{Alpha: q.cfg.bakeLatAlpha(), Rate: r})
		if err != nil {
			return nil, err
		}
		b.latency = append(b.latency, t)
	}
	return b, nil
}

// observe feeds the canary's part of a slice of the bake (the slice in
// which it started holds the last stage's traffic: left out).
func (b *finalBake) observe(p SlicePair) {
	if p.Start.Before(b.start) || b.errors == nil {
		return
	}
	span := p.Span.Seconds()
	if span == 0 {
		span = 1
	}
	b.errors.Observe(int64(p.Canary.SplitRequests), int64(p.Canary.SplitErrors), span)
	for i, t := range b.latency {
		n, slow := slow(p.Canary, b.thresholds[i])
		t.Observe(n, slow, span)
	}
}

// EvaluateFinalBake judges the canary at 100% since the final bake began
// (w.Canary: its Summary since then; w.Stable is not read): the plan's
// threshold gates against the baseline, the sequential gate's baseline
// tests. Failed: roll back. Match-rate gates are not judged (no shadow
// runs at 100%). Before StartFinalBake it judges nothing.
func (a *Analyzer) EvaluateFinalBake(w Window) Result {
	var r Result
	b := a.bake
	if b == nil {
		return r
	}
	w = Window{Stable: b.baseline.summary(), Canary: w.Canary}
	for i, g := range a.plan.Gates {
		var gr GateResult
		switch g.Type {
		case spec.GateSequential:
			gr = a.finalBakeGate()
		case spec.GateErrorRate, spec.GateLatency, spec.GateTTFB:
			gr = a.thresholdGate(i, g, w, a.plan.MinRequests)
		default:
			continue
		}
		r.Gates = append(r.Gates, gr)
		r.Failed = r.Failed || gr.Verdict == Fail
	}
	r.Passed = !r.Failed && len(r.Gates) > 0
	return r
}

// finalBakeGate is the sequential gate during the final bake.
func (a *Analyzer) finalBakeGate() GateResult {
	b := a.bake
	gr := GateResult{Gate: string(spec.GateSequential), Evidence: map[string]any{"final_bake": true}}
	stable := rate(b.baseline.Errors, b.baseline.Requests)
	gr.Evidence["baseline"] = map[string]any{"stable_requests": b.baseline.Requests, "stable_errors": b.baseline.Errors, "stable_rate": stable}
	nm := a.names
	if b.errors == nil {
		gr.Verdict, gr.Reason = Inconclusive, "final bake: not judged: "+b.why
		gr.Summary = "not judged in the final bake: " + b.why
		return gr
	}
	var fails, oks, worse []string
	ev := b.errors.Evidence()
	em := seqEvidence(ev, b.errors.State().MaxLogStatistic)
	em["null_rate"] = b.errRate
	gr.Evidence["errors"] = em
	c := ev.Counts
	text := fmt.Sprintf("canary error rate %s over %s requests vs the stable's %s in the last stage (allowed up to %s)",
		pct(rate(c.CanaryBad, c.CanaryRequests)), num(c.CanaryRequests), pct(stable), pct(b.errRate))
	if ev.Decision == stats.Reject {
		fails = append(fails, text+": "+rejectText(ev, b.errors.State().MaxLogStatistic))
		worse = append(worse, fmt.Sprintf("%s's error rate at 100%% is %s, above the %s allowed from %s's %s in the last stage",
			nm.canary(), pct(rate(c.CanaryBad, c.CanaryRequests)), pct(b.errRate), nm.stable(), pct(stable)))
	} else {
		oks = append(oks, text)
	}
	lat := map[string]any{}
	gr.Evidence["latency"] = lat
	for i, t := range b.latency {
		name := quantileName(a.seq.cfg.quantiles[i])
		ev := t.Evidence()
		m := seqEvidence(ev, t.State().MaxLogStatistic)
		m["canary_threshold_ms"], m["null_rate"] = ms(b.thresholds[i]), b.latRates[i]
		lat[name] = m
		c := ev.Counts
		text := fmt.Sprintf("%s of canary requests slower than %s (the stable's %s in the last stage plus the tolerance; allowed up to %s)",
			pct(rate(c.CanaryBad, c.CanaryRequests)), fmtDur(b.thresholds[i]), name, pct(b.latRates[i]))
		if ev.Decision == stats.Reject {
			fails = append(fails, text+": "+rejectText(ev, t.State().MaxLogStatistic))
			worse = append(worse, fmt.Sprintf("%s is slower at 100%% than %s was in the last stage at %s: %s of its requests slower than %s, where at most %s are allowed",
				nm.canary(), nm.stable(), name, pct(rate(c.CanaryBad, c.CanaryRequests)), fmtDur(b.thresholds[i]), pct(b.latRates[i])))
		}
	}
	if b.why != "" {
		oks = append(oks, b.why)
	}
	if len(fails) > 0 {
		gr.Verdict, gr.Reason = Fail, "final bake: "+strings.Join(fails, "; ")
		gr.Summary = strings.Join(worse, "; ")
		return gr
	}
	gr.Verdict, gr.Reason = Pass, "final bake: no regression so far: "+strings.Join(oks, "; ")
	c = ev.Counts
	gr.Summary = fmt.Sprintf("no regression at 100%% so far: %s's error rate %s over %s requests (%s's was %s in the last stage)",
		nm.canary(), pct(rate(c.CanaryBad, c.CanaryRequests)), num(c.CanaryRequests), nm.stable(), pct(stable))
	return gr
}

// FinalBakeState is the final bake's part of State. The null rates and
// thresholds are computed again from the baseline and the plan.
type FinalBakeState struct {
	Start    time.Time               `json:"start"`
	Baseline Baseline                `json:"baseline"`
	Errors   *stats.SequentialState  `json:"errors,omitempty"`
	Latency  []stats.SequentialState `json:"latency,omitempty"`
}

func (b *finalBake) state() *FinalBakeState {
	s := &FinalBakeState{Start: b.start, Baseline: b.baseline}
	if b.errors != nil {
		e := b.errors.State()
		s.Errors = &e
	}
	for _, t := range b.latency {
		s.Latency = append(s.Latency, t.State())
	}
	return s
}

func (a *Analyzer) restoreFinalBake(fs FinalBakeState) (*finalBake, error) {
	if err := fs.Baseline.check(); err != nil {
		return nil, err
	}
	b, err := a.newFinalBake(fs.Start, fs.Baseline)
	if err != nil {
		return nil, err
	}
	if (b.errors == nil) != (fs.Errors == nil) || len(b.latency) != len(fs.Latency) {
		return nil, fmt.Errorf("state and plan disagree on the final bake's tests")
	}
	if b.errors != nil {
		if b.errors, err = stats.RestoreBaselineTest(stats.BaselineConfig{Alpha: a.seq.cfg.bakeErrAlpha(), Rate: b.errRate}, *fs.Errors); err != nil {
			return nil, fmt.Errorf("errors: %w", err)
		}
	}
	for i := range b.latency {
		cfg := stats.BaselineConfig{Alpha: a.seq.cfg.bakeLatAlpha(), Rate: b.latRates[i]}
		if b.latency[i], err = stats.RestoreBaselineTest(cfg, fs.Latency[i]); err != nil {
			return nil, fmt.Errorf("latency %s: %w", quantileName(a.seq.cfg.quantiles[i]), err)
		}
	}
	return b, nil
}
