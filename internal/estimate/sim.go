package estimate

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// epoch is the simulated clock's start; any fixed instant does.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// Limits: what a decided stage waited for last.
const (
	LimitBake        = "bake"         // its bake time: more traffic does not help
	LimitMinRequests = "min_requests" // its minimum canary requests
	LimitEvidence    = "evidence"     // the sequential tests' evidence (or another gate)
)

// sim is what every simulated rollout of one estimate shares.
type sim struct {
	plan     spec.Plan
	rate     float64 // split requests per second of the endpoint
	errRate  float64
	lat      model
	ttfb     model             // for ttfb gates only
	recent   telemetry.Summary // the stable's last minute, for the first stage
	maxStage time.Duration
	// fine is the longest slice that keeps about as few errors per slice
	// as the controller's looks every second at 200 requests/s and 1%
	// errors (two): see span.
	fine time.Duration
	// window: a threshold gate reads the stage window (the sequential
	// gate's verdict does not); full: one reads its whole latency
	// sketches, so the model is never collapsed; ttfbGate: one reads their
	// TTFB; match: a match_rate gate reads the stage's shadow counts,
	// copies of mirror of the split requests.
	window, full, ttfbGate, match bool
	mirror                        float64
	// judged is the number of stages the controller runs: all but a last
	// one at 100%, which the pass of the one before reaches by promotion.
	judged int
	notes  []string // assumptions made, for Estimate.Notes
}

// stageRun is one simulated rollout's stage.
type stageRun struct {
	decided bool
	dur     time.Duration // to the decision, or the time simulated
	end     time.Duration // the time simulated (dur, or the end of the slice it fell in)
	canary  int64         // canary split requests served in the stage
	limit   string        // decided: LimitBake, LimitMinRequests or LimitEvidence
}

// runResult is one simulated rollout: its stages up to the last one it
// reached (a stage that did not decide within maxStage ends it).
type runResult struct {
	stages    []stageRun
	failed    bool // rolled back (or halted on a sample-ratio mismatch)
	failStage int
	reason    string
}

// run simulates one rollout of an identical canary, seeded by (seed, n).
func (s *sim) run(seed uint64, n int) runResult {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	a, err := analysis.New(s.plan)
	if err != nil {
		panic(err) // the plan was checked by the caller
	}
	buf := make([]uint64, len(s.lat.atoms)+len(s.ttfb.atoms))
	var out runResult
	now := epoch
	prev := 0.0 // the previous stage's weight
	for i := range s.judged {
		st := s.plan.Stages[i]
		w := st.Weight.Fraction()
		recent := s.recent
		if i > 0 {
			// The stable's last minute, at the previous stage's share.
			sk, k := s.lat.draw(r, s.rate*(1-prev)*60, buf)
			recent = telemetry.Summary{Window: time.Minute, Requests: uint64(k), Latency: sk}
		}
		a.StartStage(now, st.Weight, recent)
		var sr stageRun
		var fail string
		a, sr, fail = s.stage(r, a, i, now, buf)
		out.stages = append(out.stages, sr)
		if fail != "" {
			out.failed, out.failStage, out.reason = true, i, fail
			return out
		}
		if !sr.decided {
			return out
		}
		now = now.Add(max(sr.end, sr.dur))
		prev = w
	}
	return out
}

// stage runs stage i from start until the controller's rule advances it
// (rollout.stepLive: every gate passed, baked at least the stage's bake,
// at least its minimum canary requests), the bound, or a failure (its
// reason). It returns the analyzer the rollout goes on with.
//
// Evaluate is most of the cost, so once the stage may advance it is
// judged at checkpoints (each evalGrowth times the stage's time before,
// or maxSince slices after), its state kept at each; when one passes, the
// slices since the previous checkpoint are observed again from its state
// and judged one by one, to find the first that passes. Evaluate changes
// nothing, a rollback test's rejection and a promotion claim's showing are
// final: this misses only a pass on an allowance bound that comes and
// goes again before the next checkpoint.
func (s *sim) stage(r *rand.Rand, a *analysis.Analyzer, i int, start time.Time, buf []uint64) (*analysis.Analyzer, stageRun, string) {
	st := s.plan.Stages[i]
	w := st.Weight.Fraction()
	bake, minReq := s.plan.StageBake(i), int64(s.plan.StageMinRequests(i))
	warm := s.plan.WarmupTime()
	m, fixed := s.stageModel(a)
	var (
		sr    stageRun
		shown stageShown    // the stage's window and shadow counts
		minAt time.Duration = -1
		seg   *segment      // since the last checkpoint; nil before the first
		next  time.Duration // the stage's time at the next checkpoint
	)
	for sr.dur < s.maxStage {
		span := s.span(sr.dur, bake, warm)
		p := s.pair(r, start.Add(sr.dur), span, w, m, buf)
		if err := a.Observe([]analysis.SlicePair{p}); err != nil {
			panic(err) // counts drawn consistent: cannot happen
		}
		if !fixed {
			m, fixed = s.stageModel(a)
		}
		sr.dur += span
		sr.canary += int64(p.Canary.SplitRequests)
		shown = s.add(r, shown, p)
		if minAt < 0 && sr.canary >= minReq {
			minAt = sr.dur
		}
		if sr.dur < bake || sr.canary < minReq {
			continue
		}
		if seg != nil {
			seg.add(a, p, sr, shown)
			if sr.dur < next && len(seg.pairs) < maxSince {
				continue
			}
		}
		res := a.Evaluate(st, shown.window())
		switch {
		case res.Failed:
			return a, sr, "gate failed: " + res.FailedReasons()
		case res.SampleRatioMismatch:
			return a, sr, "sample-ratio mismatch: " + res.SampleRatio.Reason
		case res.Passed && seg == nil:
			// The first look at which the stage may advance.
			sr.decided, sr.limit = true, LimitBake
			if minAt > bake {
				sr.limit = LimitMinRequests
			}
			return a, sr, ""
		case res.Passed:
			a, sr = s.first(st, seg)
			return a, sr, ""
		}
		seg = &segment{ckpt: a.State()}
		next = time.Duration(float64(sr.dur) * evalGrowth)
	}
	return a, sr, ""
}

// evalGrowth is the most a stage's time grows between two checkpoints,
// maxSince the most slices between them; a segment keeps the analysis'
// state every block slices.
const (
	evalGrowth = 2.0
	maxSince   = 16
	block      = 4
)

// segment is a stage since its last checkpoint: the analysis' state
// there; each slice since, with the stage and what it showed after it;
// the analysis' state after every block-th slice.
type segment struct {
	ckpt   analysis.State
	pairs  []analysis.SlicePair
	after  []stageRun
	showns []stageShown
	snaps  []analysis.State // snaps[j]: after pairs[(j+1)*block-1]
}

func (g *segment) add(a *analysis.Analyzer, p analysis.SlicePair, sr stageRun, sh stageShown) {
	g.pairs, g.after, g.showns = append(g.pairs, p), append(g.after, sr), append(g.showns, sh)
	if len(g.pairs)%block == 0 {
		g.snaps = append(g.snaps, a.State())
	}
}

// first finds the segment's first slice after which the stage passes (its
// last one does), and returns the analyzer there: by bisection over the
// block ends kept, then slice by slice within the block.
func (s *sim) first(st spec.Stage, g *segment) (*analysis.Analyzer, stageRun) {
	n := len(g.pairs)
	snaps := g.snaps
	if len(snaps)*block >= n { // the last slice's: known to pass
		snaps = snaps[:len(snaps)-1]
	}
	lo, hi := 0, len(snaps) // the first block whose end passes (len: the last block)
	for lo < hi {
		mid := (lo + hi) / 2
		if s.restore(snaps[mid]).Evaluate(st, g.showns[(mid+1)*block-1].window()).Passed {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	from := g.ckpt
	if lo > 0 {
		from = snaps[lo-1]
	}
	a := s.restore(from)
	end := min((lo+1)*block, n) - 1
	k := lo * block
	for ; ; k++ {
		if err := a.Observe([]analysis.SlicePair{g.pairs[k]}); err != nil {
			panic(err)
		}
		if k == end || a.Evaluate(st, g.showns[k].window()).Passed {
			break
		}
	}
	sr := g.after[k]
	sr.decided, sr.limit, sr.end = true, LimitEvidence, sr.dur
	// The controller looks every second: the pass came at one of the
	// slice's seconds, on average its middle one.
	sr.dur -= ((g.pairs[k].Span - time.Second) / 2).Round(time.Second)
	return a, sr
}

func (s *sim) restore(st analysis.State) *analysis.Analyzer {
	a, err := analysis.Restore(s.plan, st)
	if err != nil {
		panic(err) // a state the same plan's analyzer saved
	}
	return a
}

// stageShown is what the stage's gates read beside the analysis' tests:
// the stage window of both deployments (threshold gates) and the shadow
// comparison (match_rate gates). Its sketches are values: a copy is a
// snapshot.
type stageShown struct {
	win      analysis.Window
	compared uint64
	match    bool
}

// add adds slice p to what the stage shows, drawing its compared copies.
func (s *sim) add(r *rand.Rand, sh stageShown, p analysis.SlicePair) stageShown {
	if s.window {
		sh.win.Stable.AddSlice(p.Stable)
		sh.win.Canary.AddSlice(p.Canary)
	}
	if s.match {
		sh.match = true
		sh.compared += uint64(binomial(r, int64(p.Stable.SplitRequests+p.Canary.SplitRequests), s.mirror))
	}
	return sh
}

func (sh stageShown) window() analysis.Window {
	w := sh.win
	if sh.match {
		w.Shadow = &analysis.ShadowCounts{Compared: sh.compared, Matched: sh.compared}
	}
	return w
}

// span is the length of the next slice of a stage at elapsed, in whole
// seconds: a second at first, as the controller looks, and never more
// than s.fine while a 1/sliceStep of the time elapsed is more; in a long
// stage, a 1/sliceStepLong of it. So a decision time is quantised to a
// few percent at most, the slices carry about as many errors as the
// controller's looks while that matters (a sequential test's statistic is
// computed once per slice: it crosses its threshold between two looks
// only if someone looks), and a stage of 24 h takes a few hundred slices.
// Slices end exactly at the warm-up's time and at the bake.
func (s *sim) span(elapsed, bake, warm time.Duration) time.Duration {
	d := min(elapsed/sliceStep, max(s.fine, elapsed/sliceStepLong))
	d = max(time.Second, d.Truncate(time.Second))
	for _, at := range []time.Duration{warm, bake} {
		if elapsed < at && elapsed+d > at {
			d = at - elapsed
		}
	}
	return min(d, s.maxStage-elapsed)
}

// stageModel is the latency model of the current stage: the stable's
// whole distribution while the thresholds are not fixed (or a gate reads
// whole sketches), else the distribution collapsed on them.
func (s *sim) stageModel(a *analysis.Analyzer) (model, bool) {
	st := a.State().Stage
	if st == nil || len(st.StableThresholdsNS) == 0 {
		return s.lat, false
	}
	if s.full {
		return s.lat, true
	}
	var cuts []time.Duration
	for _, ns := range append(slices.Clone(st.StableThresholdsNS), st.CanaryThresholdsNS...) {
		cuts = append(cuts, time.Duration(ns))
	}
	slices.Sort(cuts)
	return s.lat.collapse(slices.Compact(cuts)), true
}

// pair draws one slice of both deployments: requests at the endpoint's
// rate split at the canary's weight w, each an error with the stable's
// error rate and a latency from m, the same for both (an identical
// canary).
func (s *sim) pair(r *rand.Rand, start time.Time, span time.Duration, w float64, m model, buf []uint64) analysis.SlicePair {
	arm := func(share float64) telemetry.Slice {
		sk, n := m.draw(r, s.rate*share*span.Seconds(), buf)
		e := uint64(binomial(r, n, s.errRate))
		sl := telemetry.Slice{Start: start, Span: span, Requests: uint64(n), SplitRequests: uint64(n), Errors: e, SplitErrors: e, Latency: sk, TTFB: sk}
		if s.ttfbGate {
			sl.TTFB = s.ttfb.drawN(r, n, buf)
		}
		return sl
	}
	return analysis.SlicePair{Start: start, Span: span, Stable: arm(1 - w), Canary: arm(w)}
}

// drawN is the sketch of exactly n values drawn from m: a multinomial, drawn
// atom by atom as binomials of what is left (O(atoms), not O(n): a long bake
// at a high rate must not make the estimate cost seconds).
func (m model) drawN(r *rand.Rand, n int64, buf []uint64) telemetry.Sketch {
	if n <= 0 || len(m.atoms) == 0 {
		return telemetry.Sketch{}
	}
	counts := buf[:len(m.atoms)]
	clear(counts)
	left, mass := n, 1.0
	for i, a := range m.atoms {
		if left == 0 {
			break
		}
		k := left
		if i < len(m.atoms)-1 && mass > 0 {
			k = binomial(r, left, math.Min(a.p/mass, 1))
		}
		counts[i] = uint64(k)
		left -= k
		mass -= a.p
	}
	return m.sketch(counts)
}
