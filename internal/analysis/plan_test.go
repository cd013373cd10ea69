package analysis

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// The tests of this file prove the behaviours of the rollout-wide plan a
// user relies on: promotion and rollback evidence carried across stages,
// graded margins, tests that keep judging in a pause, the latency plan
// (quantiles and tolerance), the warm-up, the sequential gate's alpha
// shares, and State round trips of all of it. Each runs seeded
// simulations, so each result is the same on every run.

// quiet is the healthy arm without errors, for the tests of latency alone:
// an identical error rate is falsely failed in up to errors_alpha of the
// seeds, which is not what those tests are about.
var quiet = arm{median: healthy.median, sigma: healthy.sigma}

// maxFalseAlarms bounds the seeds of an identical canary falsely failed:
// up to alpha (0.05) of them are expected; a tenth plus one leaves room for
// chance (binomial: exceeded with probability 1.6% for 20 or 30 seeds,
// 3.6% for 15).
func maxFalseAlarms(seeds int) int { return seeds/10 + 1 }

// rolloutSim drives one seeded simulation through one or more analyzers
// the way the controller does: each stage starts with the latency
// thresholds fixed from the stable's last minute, and every slice goes to
// every analyzer.
type rolloutSim struct {
	t      testing.TB
	seed   uint64
	rps    float64
	stable arm
	s      *sim
	coarse bool
	stages uint64
}

// newRolloutSim returns a simulation of stable and canary at rps; coarse
// runs it in the sim's coarse mode (the analyzers' counts are those of
// full sketches, at a fraction of the cost).
func newRolloutSim(t testing.TB, seed uint64, rps float64, stable, canary arm, coarse bool) *rolloutSim {
	s := newSim(seed, rps, 0, stable, canary)
	s.sketches = !coarse
	return &rolloutSim{t: t, seed: seed, rps: rps, stable: stable, s: s, coarse: coarse}
}

// startStage starts a stage at weight on each analyzer from the next
// slice on, with the stable's last minute (drawn from a stream of its own)
// as the recent window, and routes that share of requests to the canary.
// In coarse mode latencies are then drawn against the union of the
// analyzers' thresholds.
func (r *rolloutSim) startStage(weight spec.Percent, as ...*Analyzer) {
	rec := recentWindow(r.rps, r.stable, (r.seed+r.stages)%recentWindows)
	r.stages++
	r.s.route = weight.Fraction()
	start := t0.Add(time.Duration(r.s.sec) * time.Second)
	var th []time.Duration
	for _, a := range as {
		a.StartStage(start, weight, rec)
		th = append(th, a.stage.stable...)
		th = append(th, a.stage.canary...)
	}
	if r.coarse {
		slices.Sort(th)
		r.s.coarse = slices.Compact(th)
	}
}

// recentWindows is how many different stable minutes each stable arm and
// rate has: building one costs more than a stage of coarse simulation, so
// they are shared between seeds.
const recentWindows = 4

var recentCache struct {
	sync.Mutex
	m map[recentKey]telemetry.Summary
}

type recentKey struct {
	rps    float64
	stable arm
	i      uint64
}

// recentWindow is the i-th stable minute of stable at rps (drawn from
// streams no simulation uses).
func recentWindow(rps float64, stable arm, i uint64) telemetry.Summary {
	recentCache.Lock()
	defer recentCache.Unlock()
	k := recentKey{rps, stable, i}
	if s, ok := recentCache.m[k]; ok {
		return s
	}
	if recentCache.m == nil {
		recentCache.m = map[recentKey]telemetry.Summary{}
	}
	s := recent(1<<40+i, rps, stable, 60)
	recentCache.m[k] = s
	return s
}

// step draws the next slice and gives it to each analyzer.
func (r *rolloutSim) step(as ...*Analyzer) SlicePair {
	p := r.s.next()
	for _, a := range as {
		if err := a.Observe([]SlicePair{p}); err != nil {
			r.t.Errorf("seed %d: Observe: %v", r.seed, err) // not Fatalf: runs in worker goroutines
		}
	}
	return p
}

// seededRuns runs f for seeds 0..n-1 with parallelSeeds and returns the
// results in seed order.
func seededRuns[T any](n int, f func(seed uint64) T) []T {
	out := make([]T, n)
	parallelSeeds(n, func(seed uint64) outcome {
		out[seed] = f(seed)
		return outcome{}
	})
	return out
}

// look evaluates the sequential-only plan's stage (the sequential gate
// ignores the window).
func look(a *Analyzer, stage spec.Stage) Result { return a.Evaluate(stage, Window{}) }

// ev walks the evidence maps: ev(g.Evidence, "errors", "promotion").
func ev(m map[string]any, path ...string) map[string]any {
	for _, k := range path {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}

// promotionCount is the canary requests counted by the promotion test of
// the gate's current margin: errors, or the latency quantile name.
func promotionCount(r Result, what string) int64 {
	g := r.Gates[0].Evidence
	if what == "errors" {
		n, _ := ev(g, "errors", "promotion")["canary_requests"].(int64)
		return n
	}
	n, _ := ev(g, "latency", what, "promotion")["canary_requests"].(int64)
	return n
}

// TestPromotionEvidenceCarried: an identical canary's promotion evidence
// built at 5% still counts after the stage changes to 25%: the 25% stage's
// tests (margin 1.75) hold every canary request of the rollout, and the
// stage passes sooner than a fresh analyzer started at 25% on the same
// slices, in every seed (but the few in which the identical canary is
// falsely failed, as alpha allows).
func TestPromotionEvidenceCarried(t *testing.T) {
	const seeds, maxSec = 20, 1200
	plan := defaultPlan()
	type run struct {
		// Seconds to pass: the 5% stage, the 25% stage with the evidence
		// carried (0: not within maxSec), and fresh (0: not passed by
		// the time the carried one did).
		stage1, carried, fresh int
		// At the first look of the 25% stage: canary requests of the
		// rollout, and the errors promotion counts of both analyzers;
		// the p50 promotion count of the 5% stage's last look and of both
		// analyzers.
		total, carriedErr, freshErr     int64
		stage1Lat, carriedLat, freshLat int64
		margin                          float64
		falseAlarm                      bool
	}
	runs := seededRuns(seeds, func(seed uint64) run {
		var x run
		a := mustNew(t, plan)
		r := newRolloutSim(t, 100+seed, 200, healthy, healthy, true)
		r.startStage(plan.Stages[0].Weight, a)
		for sec := 1; sec <= maxSec; sec++ {
			x.total += int64(r.step(a).Canary.SplitRequests)
			res := look(a, plan.Stages[0])
			if res.Failed {
				x.falseAlarm = true
				return x
			}
			if res.Passed {
				x.stage1, x.stage1Lat = sec, promotionCount(res, "p50")
				break
			}
		}
		if x.stage1 == 0 {
			return x
		}
		fresh := mustNew(t, plan)
		r.startStage(plan.Stages[1].Weight, a, fresh)
		for sec := 1; sec <= maxSec && x.carried == 0; sec++ {
			p := r.step(a, fresh)
			ra, rf := look(a, plan.Stages[1]), look(fresh, plan.Stages[1])
			if sec == 1 {
				x.total += int64(p.Canary.SplitRequests)
				x.carriedErr, x.freshErr = promotionCount(ra, "errors"), promotionCount(rf, "errors")
				x.carriedLat, x.freshLat = promotionCount(ra, "p50"), promotionCount(rf, "p50")
				x.margin, _ = ra.Gates[0].Evidence["margin"].(float64)
			}
			if ra.Failed {
				x.falseAlarm = true
				return x
			}
			if ra.Passed && x.carried == 0 {
				x.carried = sec
			}
			if rf.Passed && x.fresh == 0 {
				x.fresh = sec
			}
		}
		return x
	})
	var stage1, carried []float64
	falseAlarms, sooner := 0, 0
	for i, x := range runs {
		seed := 100 + i
		if x.falseAlarm {
			falseAlarms++
			continue
		}
		if x.stage1 == 0 {
			t.Errorf("seed %d: the identical canary did not pass the 5%% stage in %d s", seed, maxSec)
			continue
		}
		if x.margin != 1.75 {
			t.Errorf("seed %d: margin of the 25%% stage = %v, want 1.75", seed, x.margin)
		}
		if x.carriedErr != x.total || x.freshErr >= x.total {
			t.Errorf("seed %d: errors promotion counts %d canary requests (fresh analyzer %d), want all %d of the rollout", seed, x.carriedErr, x.freshErr, x.total)
		}
		// The 25% stage's first slice is in its warm-up: the p50 evidence is
		// exactly the 5% stage's.
		if x.carriedLat != x.stage1Lat || x.stage1Lat == 0 || x.freshLat != 0 {
			t.Errorf("seed %d: p50 promotion counts %d canary requests at the 25%% stage's first look (fresh analyzer %d), want the 5%% stage's %d", seed, x.carriedLat, x.freshLat, x.stage1Lat)
		}
		// Never later; sooner unless the stage's own allowance paths (the
		// same in both) decided first.
		if x.carried == 0 || x.fresh != 0 && x.carried > x.fresh {
			t.Errorf("seed %d: 25%% stage passed after %d s with the evidence carried (0: not in %d s), fresh after %d s; want carried first", seed, x.carried, maxSec, x.fresh)
		}
		if x.fresh == 0 || x.carried < x.fresh {
			sooner++
		}
		stage1, carried = append(stage1, float64(x.stage1)), append(carried, float64(x.carried))
	}
	t.Logf("identical canary, 200 req/s: the 5%% stage passed after a median of %v s, the 25%% stage %v s later with its evidence carried, before a fresh analyzer in %d of %d seeds; falsely failed in %d of %d seeds", median(stage1), median(carried), sooner, seeds, falseAlarms, seeds)
	if sooner < (seeds-falseAlarms)*3/4 {
		t.Errorf("the carried evidence passed the 25%% stage sooner in %d of %d seeds, want most", sooner, seeds-falseAlarms)
	}
	if falseAlarms > maxFalseAlarms(seeds) {
		t.Errorf("identical canary falsely failed in %d of %d seeds, want at most %d", falseAlarms, seeds, maxFalseAlarms(seeds))
	}
}

// TestRollbackEvidenceCarried: a canary with twice the stable's error
// rate whose evidence is split across two stages is rolled back: the 5%
// stage ends once the rollback statistic reaches e² ≈ 7.4 (its threshold
// is 40: not failed, unless one slice took it past both, which a few
// seeds may do), StartStage leaves the test as it was, and the 25% stage
// fails the canary in every other seed, never later than a fresh analyzer
// started at 25% on the same slices and sooner in most seeds.
func TestRollbackEvidenceCarried(t *testing.T) {
	const seeds, split = 30, 2.0 // split: ln of the statistic at the stage change
	plan := defaultPlan()
	worse := healthy
	worse.errRate = 2 * healthy.errRate
	type run struct {
		stage1, carried, fresh int // seconds; carried and fresh: to fail, 0 never
		failedEarly, reset     bool
	}
	runs := seededRuns(seeds, func(seed uint64) run {
		var x run
		a := mustNew(t, plan)
		r := newRolloutSim(t, 200+seed, 200, healthy, worse, true)
		r.startStage(plan.Stages[0].Weight, a)
		for x.stage1 < 1200 && a.State().Errors.LogStatistic < split {
			r.step(a)
			x.stage1++
		}
		x.failedEarly = look(a, plan.Stages[0]).Failed
		before := a.State().Errors
		fresh := mustNew(t, plan)
		r.startStage(plan.Stages[1].Weight, a, fresh)
		x.reset = !cmp.Equal(before, a.State().Errors)
		for sec := 1; sec <= 300 && (x.carried == 0 || x.fresh == 0); sec++ {
			r.step(a, fresh)
			if x.carried == 0 && look(a, plan.Stages[1]).Failed {
				x.carried = sec
			}
			if x.fresh == 0 && look(fresh, plan.Stages[1]).Failed {
				x.fresh = sec
			}
		}
		return x
	})
	sooner, early := 0, 0
	var carried, fresh []float64
	for i, x := range runs {
		seed := 200 + i
		if x.reset {
			t.Errorf("seed %d: StartStage changed the errors test", seed)
		}
		if x.failedEarly {
			early++
			continue
		}
		if x.carried == 0 {
			t.Errorf("seed %d: not rolled back in 300 s at 25%% after %d s at 5%%", seed, x.stage1)
			continue
		}
		if x.fresh != 0 && x.fresh < x.carried {
			t.Errorf("seed %d: failed after %d s at 25%% with the 5%% stage's evidence, %d s without", seed, x.carried, x.fresh)
		}
		if x.fresh == 0 || x.carried < x.fresh {
			sooner++
		}
		f := float64(x.fresh)
		if x.fresh == 0 {
			f = math.Inf(1)
		}
		carried, fresh = append(carried, float64(x.carried)), append(fresh, f)
	}
	t.Logf("2x errors: rolled back after a median of %v s at 25%% with the evidence of the 5%% stage, %v s without; sooner in %d of %d seeds", median(carried), median(fresh), sooner, seeds)
	if early > seeds/10 {
		t.Errorf("%d of %d seeds failed in the 5%% stage in the slice that took the statistic past e², want at most 10%%", early, seeds)
	}
	if sooner < (seeds-early)*9/10 {
		t.Errorf("the carried evidence failed the canary sooner in %d of %d seeds, want ≥ 90%%", sooner, seeds-early)
	}
}

// TestGradedMargins: with the default plan's graded margins (2, 1.75, 1.5
// for 5, 25, 50%), a canary with 1.6 times the stable's error rate (1% vs
// 1.6%, 200 req/s) can pass the 5% stage but never passes the 50% one, and
// a plan whose 5% stage has margin 1.2 is stricter there: it passes none
// of the 1.6x canaries the default passes, and an identical canary later.
func TestGradedMargins(t *testing.T) {
	const seeds, maxSec = 30, 1800
	plan := defaultPlan()
	strict := spec.Plan{Stages: []spec.Stage{{Weight: 500, Margin: 1.2}, {Weight: 2500}, {Weight: 5000}, {Weight: spec.Full}}}.WithDefaults()
	worse := healthy
	worse.errRate = 1.6 * healthy.errRate

	type run struct {
		passed      [3]bool    // default plan, stages 5, 25, 50%
		margins     [3]float64 // the gate's margin at each stage run
		strictPass  bool       // the 5% stage with margin 1.2
		fresh50Pass bool       // a fresh analyzer at 50%
		reached     int        // stages run
	}
	runs := seededRuns(seeds, func(seed uint64) run {
		var x run
		// The 5% stage of both plans on the same slices (two copies of the
		// seeded simulation), each until it fails or passes.
		b := mustNew(t, strict)
		r := newRolloutSim(t, 300+seed, 200, healthy, worse, true)
		r.startStage(500, b)
		for sec := 1; sec <= maxSec; sec++ {
			r.step(b)
			if sec%5 != 0 {
				continue // a look every 5 s: verdicts are final
			}
			if res := look(b, strict.Stages[0]); res.Passed || res.Failed {
				x.strictPass = res.Passed
				break
			}
		}
		a := mustNew(t, plan)
		r = newRolloutSim(t, 300+seed, 200, healthy, worse, true)
		r.startStage(500, a)
		for sec := 1; sec <= maxSec; sec++ {
			r.step(a)
			if sec%5 != 0 {
				continue
			}
			res := look(a, plan.Stages[0])
			x.margins[0], _ = res.Gates[0].Evidence["margin"].(float64)
			if res.Passed || res.Failed {
				x.passed[0] = res.Passed
				break
			}
		}
		x.reached = 1
		// The default plan's rollout goes on while it passes.
		for i := 1; i < 3 && x.passed[i-1]; i++ {
			x.reached++
			r.startStage(plan.Stages[i].Weight, a)
			for sec := 1; sec <= maxSec; sec++ {
				r.step(a)
				if sec%5 != 0 {
					continue
				}
				res := look(a, plan.Stages[i])
				x.margins[i], _ = res.Gates[0].Evidence["margin"].(float64)
				if res.Passed || res.Failed {
					x.passed[i] = res.Passed
					break
				}
			}
		}
		// A fresh analyzer at 50% on traffic of its own.
		f := mustNew(t, plan)
		r = newRolloutSim(t, 400+seed, 200, healthy, worse, true)
		r.startStage(5000, f)
		for sec := 1; sec <= maxSec; sec++ {
			r.step(f)
			if sec%5 != 0 {
				continue
			}
			res := look(f, plan.Stages[2])
			if res.Passed || res.Failed {
				x.fresh50Pass = res.Passed
				break
			}
		}
		return x
	})
	wantMargins := [3]float64{2, 1.75, 1.5}
	var passed [3]int
	strictPassed, reached50 := 0, 0
	for i, x := range runs {
		for s := range x.reached {
			if x.margins[s] != wantMargins[s] {
				t.Errorf("seed %d: stage %d margin %v, want %v", 300+i, s, x.margins[s], wantMargins[s])
			}
			if x.passed[s] {
				passed[s]++
			}
		}
		if x.reached == 3 {
			reached50++
		}
		if x.strictPass {
			strictPassed++
		}
		if x.fresh50Pass {
			t.Errorf("seed %d: a 1.6x canary passed a fresh 50%% stage (margin 1.5)", 400+i)
		}
	}
	t.Logf("1.6x errors: passed the 5%% stage (margin 2) in %d of %d seeds, 25%% (1.75) in %d, 50%% (1.5) in %d of %d that reached it; margin 1.2 at 5%%: %d", passed[0], seeds, passed[1], passed[2], reached50, strictPassed)
	if passed[0] == 0 {
		t.Errorf("a 1.6x canary never passed the 5%% stage (margin 2) in %d seeds, want it can", seeds)
	}
	// Showing a 1.6x canary within 1.5x is a promotion error, bounded by
	// the errors' share of promotion_error (0.025) per rollout: about 0.75
	// expected in 30 rollouts.
	if passed[2] > 2 {
		t.Errorf("a 1.6x canary passed the 50%% stage (margin 1.5) in %d of %d seeds, want at most 2 (promotion error 0.025 per rollout)", passed[2], seeds)
	}
	if strictPassed != 0 {
		t.Errorf("a 1.6x canary passed a 5%% stage of margin 1.2 in %d seeds, want never", strictPassed)
	}

	// An identical canary: the margin-1.2 errors claim has not been shown
	// yet when the default one (2) is, in every seed.
	type pair struct {
		dflt, strict int
		margin       float64
		falseAlarm   bool
	}
	pairs := seededRuns(20, func(seed uint64) pair {
		var x pair
		a, b := mustNew(t, plan), mustNew(t, strict)
		r := newRolloutSim(t, 500+seed, 200, healthy, healthy, true)
		r.startStage(500, a, b)
		for sec := 1; sec <= maxSec && x.dflt == 0; sec++ {
			r.step(a, b)
			ra, res := look(a, plan.Stages[0]), look(b, strict.Stages[0])
			if ra.Failed || res.Failed {
				x.falseAlarm = true
				break
			}
			if errorsShown(ra) {
				x.dflt = sec
			}
			x.margin, _ = res.Gates[0].Evidence["margin"].(float64)
			if errorsShown(res) && x.strict == 0 {
				x.strict = sec
			}
		}
		return x
	})
	falseAlarms := 0
	for i, x := range pairs {
		if x.falseAlarm {
			falseAlarms++
			continue
		}
		if x.margin != 1.2 {
			t.Errorf("seed %d: the strict plan's 5%% stage has margin %v, want 1.2", 500+i, x.margin)
		}
		if x.dflt == 0 || x.strict != 0 {
			t.Errorf("seed %d: identical canary at 5%%: errors shown within the default margin after %d s, within 1.2 after %d s (0: not yet); want the default first", 500+i, x.dflt, x.strict)
		}
	}
	if falseAlarms > maxFalseAlarms(len(pairs)) {
		t.Errorf("identical canary falsely failed in %d of %d seeds, want at most %d", falseAlarms, len(pairs), maxFalseAlarms(len(pairs)))
	}
}

// errorsShown reports whether the sequential gate's errors promotion
// claim at the stage's margin has been shown.
func errorsShown(r Result) bool {
	ev, _ := r.Gates[0].Evidence["errors"].(map[string]any)
	p, _ := ev["promotion"].(map[string]any)
	shown, _ := p["shown"].(bool)
	return shown
}

// TestPausedTestsKeepJudging: a pause stops progress, not protection.
// With the rollout paused (5% weight, 200 req/s), a jump of the canary's
// errors from 1% to 10% after 10 minutes of healthy traffic fails the gate
// within 60 s in every seed; and when the pause follows a sample-ratio
// mismatch (routing broken, the canary served 10% for a 5% weight), the
// mismatch on record does not hold the failure back.
func TestPausedTestsKeepJudging(t *testing.T) {
	const healthySec, within = 600, 60
	plan := defaultPlan()
	bad := healthy
	bad.errRate = 0.10
	for _, tc := range []struct {
		name     string
		seeds    int
		route    float64 // the canary's real share
		mismatch bool    // the pause follows a sample-ratio mismatch
	}{
		{"paused", 30, 0.05, false},
		{"paused after a sample-ratio mismatch", 15, 0.10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type run struct {
				failedBefore, mismatched, held bool
				after                          int // seconds from the jump to the failure; 0: none
			}
			runs := seededRuns(tc.seeds, func(seed uint64) run {
				var x run
				a := mustNew(t, plan)
				r := newRolloutSim(t, 600+seed, 200, healthy, healthy, true)
				r.startStage(500, a)
				r.s.route = tc.route
				a.SetPaused(!tc.mismatch)
				for sec := 1; sec <= healthySec; sec++ {
					r.step(a)
					if tc.mismatch && !x.mismatched {
						// The controller pauses at the mismatch.
						if res := look(a, plan.Stages[0]); res.SampleRatioMismatch {
							x.mismatched = true
							a.SetPaused(true)
						}
					}
					if sec%10 == 0 && look(a, plan.Stages[0]).Failed {
						x.failedBefore = true
						return x
					}
				}
				r.s.canary = bad
				for sec := 1; sec <= within; sec++ {
					r.step(a)
					res := look(a, plan.Stages[0])
					if res.SampleRatioMismatch || tc.mismatch && res.SampleRatio.Verdict != Fail {
						x.held = true
					}
					if res.Failed {
						x.after = sec
						break
					}
				}
				return x
			})
			var after []float64
			worst, falseAlarms := 0, 0
			for i, x := range runs {
				seed := 600 + i
				switch {
				case x.failedBefore:
					falseAlarms++ // an identical canary, failed as alpha allows
				case tc.mismatch && !x.mismatched:
					t.Errorf("seed %d: routing at %v for a 5%% weight never flagged a sample-ratio mismatch", seed, tc.route)
				case x.after == 0:
					t.Errorf("seed %d: paused, errors 1%% to 10%% after %d s: not failed within %d s", seed, healthySec, within)
				}
				if x.held {
					t.Errorf("seed %d: paused: a sample-ratio mismatch was reported (or the one on record vanished)", seed)
				}
				if !x.failedBefore {
					after = append(after, float64(x.after))
					worst = max(worst, x.after)
				}
			}
			t.Logf("%s: failed a median of %v s after the jump, at most %d s; %d of %d seeds falsely failed before it", tc.name, median(after), worst, falseAlarms, tc.seeds)
			if falseAlarms > maxFalseAlarms(tc.seeds) {
				t.Errorf("identical canary falsely failed in %d of %d seeds, want at most %d", falseAlarms, tc.seeds, maxFalseAlarms(tc.seeds))
			}
		})
	}
}

// TestLatencyPlan: the latency tolerance and quantiles of the plan.
func TestLatencyPlan(t *testing.T) {
	plan := defaultPlan()
	stage25 := spec.Stage{Weight: 2500}

	// A canary 5% slower everywhere is within the 20% tolerance: passed,
	// and never failed over 5 minutes at 25%. (No errors in the latency
	// tests: see quiet.)
	t.Run("x1.05 passes", func(t *testing.T) {
		slower := quiet
		slower.median = quiet.median * 105 / 100
		type run struct{ failed, passed int }
		runs := seededRuns(20, func(seed uint64) run {
			var x run
			a := mustNew(t, plan)
			r := newRolloutSim(t, 700+seed, 200, quiet, slower, true)
			r.startStage(stage25.Weight, a)
			for sec := 1; sec <= 300; sec++ {
				r.step(a)
				res := look(a, stage25)
				if res.Failed {
					x.failed = sec
					break
				}
				if res.Passed && x.passed == 0 {
					x.passed = sec
				}
			}
			return x
		})
		var passed []float64
		for i, x := range runs {
			if x.failed != 0 || x.passed == 0 {
				t.Errorf("seed %d: latency x1.05: failed after %d s, passed after %d s (0: never); want passed, never failed", 700+i, x.failed, x.passed)
			}
			passed = append(passed, float64(x.passed))
		}
		t.Logf("latency x1.05 at 25%%: passed after a median of %v s, never failed", median(passed))
	})

	// Sub-millisecond latencies (stable median 0.45 ms): a canary 0.3 ms
	// slower is within the absolute tolerance of 2 ms; with tolerance_ms
	// 0.01 and tolerance 1% it is failed. Full sketches: the thresholds
	// are a bucket or two apart.
	t.Run("absolute tolerance", func(t *testing.T) {
		stable := arm{median: 450 * time.Microsecond, sigma: 0.08}
		canary := stable
		canary.shift = 300 * time.Microsecond
		tight := spec.Plan{Latency: &spec.LatencyPlan{ToleranceMS: 0.01, Tolerance: 1}}.WithDefaults()
		type run struct {
			dflt, tight int // seconds to fail; 0: not failed
			dfltPassed  bool
			maxCanaryMS float64
		}
		runs := seededRuns(10, func(seed uint64) run {
			var x run
			a, b := mustNew(t, plan), mustNew(t, tight)
			r := newRolloutSim(t, 800+seed, 200, stable, canary, false)
			r.startStage(stage25.Weight, a, b)
			for sec := 1; sec <= 120; sec++ {
				p := r.step(a, b)
				x.maxCanaryMS = max(x.maxCanaryMS, ms(p.Canary.Latency.Quantile(1)))
				if res := look(a, stage25); res.Failed && x.dflt == 0 {
					x.dflt = sec
				} else if res.Passed {
					x.dfltPassed = true
				}
				if x.tight == 0 && look(b, stage25).Failed {
					x.tight = sec
				}
			}
			return x
		})
		for i, x := range runs {
			if x.maxCanaryMS >= 1 {
				t.Errorf("seed %d: a canary latency of %v ms, want all sub-millisecond", 800+i, x.maxCanaryMS)
			}
			if x.dflt != 0 || !x.dfltPassed {
				t.Errorf("seed %d: canary +0.3 ms on a 0.45 ms stable with the default tolerance (2 ms): failed after %d s (0: never), passed %v; want passed, never failed", 800+i, x.dflt, x.dfltPassed)
			}
			if x.tight == 0 {
				t.Errorf("seed %d: canary +0.3 ms on a 0.45 ms stable not failed in 120 s with tolerance_ms 0.01, tolerance 1%%", 800+i)
			}
		}
	})

	// A slower body (x1.3 up to the stable's median, tapering to x1 at its
	// p90, the tail unchanged) is failed at p50, and only there; a plan
	// judging p99 only does not see it, and its evidence holds p99 only.
	t.Run("body shift and quantiles", func(t *testing.T) {
		body := quiet
		body.bodyScale = 1.3
		p99 := spec.Plan{Latency: &spec.LatencyPlan{Quantiles: []float64{0.99}}}.WithDefaults()
		stage50 := spec.Stage{Weight: 5000}
		const maxSec = 600
		type run struct {
			failed, p99Failed int
			p99Passed         bool
			reason            string
			rejected          []string // quantiles whose rollback test rejected
			p99Keys           []string
		}
		runs := seededRuns(20, func(seed uint64) run {
			var x run
			a, b := mustNew(t, plan), mustNew(t, p99)
			r := newRolloutSim(t, 900+seed, 200, quiet, body, true)
			r.startStage(stage50.Weight, a, b)
			for sec := 1; sec <= maxSec; sec++ {
				if x.failed == 0 {
					r.step(a, b)
				} else {
					r.step(b)
				}
				if x.failed == 0 && sec%5 == 0 {
					if res := look(a, stage50); res.Failed {
						x.failed, x.reason = sec, res.Gates[0].Reason
						for q, m := range ev(res.Gates[0].Evidence, "latency") {
							if m, ok := m.(map[string]any); ok && m["decision"] == "reject" {
								x.rejected = append(x.rejected, q)
							}
						}
					}
				}
				if x.p99Failed == 0 && sec%5 == 0 {
					res := look(b, stage50)
					if res.Failed {
						x.p99Failed = sec
					}
					x.p99Passed = x.p99Passed || res.Passed
				}
			}
			for k := range ev(look(b, stage50).Gates[0].Evidence, "latency") {
				x.p99Keys = append(x.p99Keys, k)
			}
			slices.Sort(x.p99Keys)
			return x
		})
		var secs []float64
		for i, x := range runs {
			seed := 900 + i
			if x.failed == 0 {
				t.Errorf("seed %d: body x1.3 at 50%% not failed in %d s", seed, maxSec)
			} else if !slices.Equal(x.rejected, []string{"p50"}) || !strings.Contains(x.reason, "slower than the stable's p50") ||
				strings.Contains(x.reason, "p90") || strings.Contains(x.reason, "p99") {
				t.Errorf("seed %d: failed at %v: %q; want p50 only, named in the reason", seed, x.rejected, x.reason)
			}
			if x.p99Failed != 0 || !x.p99Passed {
				t.Errorf("seed %d: the p99-only plan: failed after %d s (0: never), passed %v; want the body shift unseen: passed, never failed", seed, x.p99Failed, x.p99Passed)
			}
			if !slices.Equal(x.p99Keys, []string{"p99"}) {
				t.Errorf("seed %d: latency evidence of the p99-only plan has %v, want [p99]", seed, x.p99Keys)
			}
			secs = append(secs, float64(x.failed))
		}
		t.Logf("body x1.3 at 50%%, 200 req/s: failed at p50 after a median of %v s; the p99-only plan passed it, never failed", median(secs))
	})
}

// TestWarmup: the latency of a stage's first canary requests is not
// judged, their errors are.
func TestWarmup(t *testing.T) {
	noWarmup := defaultPlan()
	noWarmup.Warmup = &spec.Warmup{Requests: -1, Time: spec.Duration(-time.Second)}
	coldStart := arm{median: time.Second} // every request takes 1 s
	const seeds, stageSec = 20, 120

	// Each stage's first 50 canary requests take 1 s (new servers), then
	// the canary is the stable. Default warm-up (100 requests, 10 s): never
	// failed, at 5% then at 25%; no warm-up: failed at 5%.
	t.Run("cold start", func(t *testing.T) {
		type run struct {
			failed     [2]int // seconds to fail; 0: not failed
			noWarmFail int
			reason     string
		}
		runs := seededRuns(seeds, func(seed uint64) run {
			var x run
			a, b := mustNew(t, defaultPlan()), mustNew(t, noWarmup)
			r := newRolloutSim(t, 1000+seed, 200, quiet, quiet, true)
			for i, w := range []spec.Percent{500, 2500} {
				if i == 0 {
					r.startStage(w, a, b)
				} else {
					r.startStage(w, a)
				}
				r.s.cold, r.s.coldArm = 50, coldStart
				for sec := 1; sec <= stageSec; sec++ {
					if i == 0 && x.noWarmFail == 0 {
						r.step(a, b)
						if res := look(b, spec.Stage{Weight: w}); res.Failed {
							x.noWarmFail, x.reason = sec, res.Gates[0].Reason
						}
					} else {
						r.step(a)
					}
					if look(a, spec.Stage{Weight: w}).Failed {
						x.failed[i] = sec
						return x
					}
				}
			}
			return x
		})
		for i, x := range runs {
			seed := 1000 + i
			if x.failed != [2]int{} {
				t.Errorf("seed %d: a cold start of 50 requests failed the canary with the default warm-up (seconds into the 5%%, 25%% stages: %v)", seed, x.failed)
			}
			if x.noWarmFail == 0 {
				t.Errorf("seed %d: a cold start of 50 requests not failed without a warm-up", seed)
			} else if !strings.Contains(x.reason, "canary requests slower than the stable's") {
				t.Errorf("seed %d: without a warm-up, failed for %q, want latency", seed, x.reason)
			}
		}
	})

	// Errors are judged in the warm-up: 50% errors in the canary's first
	// 100 requests fail it before the warm-up is over.
	t.Run("errors judged", func(t *testing.T) {
		errs := healthy
		errs.errRate = 0.5
		type run struct {
			failed int
			warm   bool
			reason string
		}
		runs := seededRuns(seeds, func(seed uint64) run {
			var x run
			a := mustNew(t, defaultPlan())
			r := newRolloutSim(t, 1100+seed, 200, healthy, healthy, true)
			r.startStage(500, a)
			r.s.cold, r.s.coldArm = 100, errs
			for sec := 1; sec <= stageSec; sec++ {
				r.step(a)
				if res := look(a, spec.Stage{Weight: 500}); res.Failed {
					x.failed, x.reason, x.warm = sec, res.Gates[0].Reason, a.State().Stage.Warm
					break
				}
			}
			return x
		})
		for i, x := range runs {
			if x.failed == 0 || x.warm || !strings.HasPrefix(x.reason, "canary error rate") {
				t.Errorf("seed %d: 50%% errors in the first 100 canary requests: failed after %d s (0: never), warm-up over %v, reason %q; want failed on errors in the warm-up", 1100+i, x.failed, x.warm, x.reason)
			}
		}
	})
}

// TestAlphaShares: the sequential gate's tests are built with the plan's
// errors_alpha and latency_alpha (the latter split equally across the
// quantiles), half of alpha each by default, and with the promotion error
// split across the same tests; New refuses shares above alpha.
func TestAlphaShares(t *testing.T) {
	near := func(x, y float64) bool { return math.Abs(x-y) < 1e-12 }
	num := func(m map[string]any, k string) float64 { f, _ := m[k].(float64); return f }
	for _, tc := range []struct {
		name       string
		plan       spec.Plan
		errA, latA float64 // per test
	}{
		{"defaults", defaultPlan(), 0.025, 0.025 / 4},
		{"errors_alpha 0.02, latency_alpha 0.03, promotion_error 0.1",
			spec.Plan{PromotionError: 0.1, Gates: []spec.Gate{{Type: spec.GateSequential, ErrorsAlpha: 0.02, LatencyAlpha: 0.03}}}.WithDefaults(), 0.02, 0.03 / 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustNew(t, tc.plan)
			a.StartStage(t0, 500, recent1)
			g := look(a, tc.plan.Stages[0]).Gates[0].Evidence
			if e := ev(g, "errors"); !near(num(e, "alpha"), tc.errA) || !near(num(e, "threshold"), 1/tc.errA) {
				t.Errorf("errors test: alpha %v, threshold %v; want %v, %v", e["alpha"], e["threshold"], tc.errA, 1/tc.errA)
			}
			promotion := num(ev(g, "errors", "promotion"), "alpha") + num(ev(g, "errors", "allowance"), "alpha")
			for _, q := range []string{"p50", "p90", "p99", "p99.9"} {
				if got := num(ev(g, "latency", q), "alpha"); !near(got, tc.latA) {
					t.Errorf("latency %s test: alpha %v, want %v", q, got, tc.latA)
				}
				promotion += num(ev(g, "latency", q, "promotion"), "alpha") + num(ev(g, "latency", q, "allowance"), "alpha")
			}
			if !near(promotion, tc.plan.PromotionError) {
				t.Errorf("the stage's promotion tests' alphas add up to %v, want promotion_error %v", promotion, tc.plan.PromotionError)
			}
		})
	}

	over := spec.Plan{Gates: []spec.Gate{{Type: spec.GateSequential, ErrorsAlpha: 0.03, LatencyAlpha: 0.03}}}.WithDefaults()
	if _, err := New(over); err == nil || !strings.Contains(err.Error(), "errors_alpha 0.03 + latency_alpha 0.03 exceed the plan's alpha 0.05") {
		t.Errorf("New(errors_alpha 0.03, latency_alpha 0.03, alpha 0.05) = %v, want the shares refused", err)
	}
}

// TestStateRoundTripCarried: an analyzer restored from the JSON of its
// State in the 25% stage of a rollout (warm-up running or over, the
// thresholds fixed, the margin tests carrying the 5% stage's counts)
// gives exactly the original's results over the next slices; a state of
// version 1 is refused.
func TestStateRoundTripCarried(t *testing.T) {
	plan := defaultPlan()
	// A warm-up of 20 s at 25% (1,000 canary requests at 50 req/s): a
	// restored analyzer must carry on the count, not restart it.
	plan.Warmup = &spec.Warmup{Requests: 1000, Time: spec.Duration(10 * time.Second)}
	worse := healthy
	worse.errRate = 0.015
	for _, tc := range []struct {
		name string
		cut  int // second of the 25% stage
		warm bool
	}{{"in the warm-up", 3, false}, {"warm", 60, true}} {
		t.Run(tc.name, func(t *testing.T) {
			orig := mustNew(t, plan)
			r := newRolloutSim(t, 1200, 200, healthy, worse, true)
			r.startStage(500, orig)
			var stage1 int64
			for range 150 {
				stage1 += int64(r.step(orig).Canary.SplitRequests)
			}
			r.startStage(2500, orig)
			for range tc.cut {
				r.step(orig)
			}
			st := orig.State()
			if ss := st.Stage; ss == nil || ss.Warm != tc.warm || len(ss.StableThresholdsNS) != len(spec.DefaultLatencyQuantiles) || ss.Weight != 2500 {
				t.Fatalf("state at the cut: stage %+v; want the 25%% stage, warm %v, a threshold per default quantile", st.Stage, tc.warm)
			}
			for i, m := range []float64{1.5, 1.75, 2} {
				if c := st.ErrorsPromotion[i].CanaryRequests; c <= stage1 {
					t.Errorf("errors margin %v test counted %d canary requests, want more than the 5%% stage's %d", m, c, stage1)
				}
			}
			if c := st.LatencyPromotion[0].CanaryRequests; c == 0 {
				t.Errorf("p50 promotion test counted no canary requests, want the 5%% stage's")
			}
			b, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			var back State
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			restored, err := Restore(plan, back)
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			for sec := range 240 {
				r.step(orig, restored)
				if diff := cmp.Diff(look(orig, plan.Stages[1]), look(restored, plan.Stages[1])); diff != "" {
					t.Fatalf("second %d after the restore: results differ (-orig +restored):\n%s", sec, diff)
				}
			}
			if diff := cmp.Diff(orig.State(), restored.State()); diff != "" {
				t.Errorf("final states differ (-orig +restored):\n%s", diff)
			}

			old := orig.State()
			old.Version = 1
			if _, err := Restore(plan, old); !errors.Is(err, ErrStateVersion) {
				t.Errorf("Restore(version 1) = %v, want an error wrapping ErrStateVersion", err)
			}
		})
	}
}
