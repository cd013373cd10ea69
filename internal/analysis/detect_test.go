package analysis

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

var (
	healthy = arm{errRate: 0.01, median: 100 * time.Millisecond, sigma: 0.5}
	recent1 = recent(1, 100, healthy, 60) // the stable's last minute before the stage
)

func defaultPlan() spec.Plan { return spec.Plan{}.WithDefaults() }

func mustNew(t testing.TB, plan spec.Plan) *Analyzer {
	t.Helper()
	a, err := New(plan)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

// outcome is how one simulated stage ended.
type outcome struct {
	failed, passed bool
	canaryRequests uint64
	seconds        int
	failedGate     string
	srmMismatch    bool
}

// runStage runs one seeded stage of the default plan at weight until the
// first failure (or first pass, with stopOnPass) or maxSeconds, and returns
// whether it failed, whether it passed, and the canary split requests seen
// by then. every is how often (in seconds) it evaluates: a sequential test's
// rejection is final and happens in Observe, so evaluating less often
// changes when a failure is seen, never whether it happens.
//
// coarse runs the simulation in coarse mode (see sim.coarse).
func runStage(t testing.TB, seed uint64, weight spec.Percent, rps float64, stable, canary arm, maxSeconds, every int, stopOnPass, coarse bool) outcome {
	t.Helper()
	plan := defaultPlan()
	a := mustNew(t, plan)
	a.StartStage(t0, weight, recent1)
	s := newSim(seed, rps, weight.Fraction(), stable, canary)
	if coarse {
		s.coarse = slices.Sorted(slices.Values(slices.Concat(a.stage.stable, a.stage.canary)))
		s.coarse = slices.Compact(s.coarse)
	}
	var w Window
	var o outcome
	for sec := 1; sec <= maxSeconds; sec++ {
		p := s.next()
		if err := a.Observe([]SlicePair{p}); err != nil {
			t.Errorf("seed %d: Observe: %v", seed, err) // not Fatalf: runs in worker goroutines
			return o
		}
		accumulate(&w.Stable, p.Stable, false)
		accumulate(&w.Canary, p.Canary, false)
		o.canaryRequests += p.Canary.SplitRequests
		o.seconds = sec
		if sec%every != 0 && sec != maxSeconds {
			continue
		}
		r := a.Evaluate(plan.Stages[0], w)
		if r.SampleRatioMismatch {
			o.srmMismatch = true
		}
		if r.Failed {
			o.failed = true
			for _, g := range r.Gates {
				if g.Verdict == Fail {
					o.failedGate = g.Reason
				}
			}
			return o
		}
		if r.Passed && !o.passed {
			o.passed = true
			if stopOnPass {
				return o
			}
		}
	}
	return o
}

// TestRegressionDetection is the Done-when at the analysis level: at a
// 5% canary with the default plan (errors and latency, alpha 0.05 split
// 0.025/0.025), 100 requests/s, an error regression 1% → 10% fails within 300
// canary requests, and a p99 regression of +100% (every canary latency ×2)
// within 1,000, in the median and in at least 90% of seeds. Bake time plays no
// part: the gate fails at the first look that shows it.
func TestRegressionDetection(t *testing.T) {
	slow := healthy
	slow.median *= 2
	tail := healthy
	tail.tailScale = 2
	bad := healthy
	bad.errRate = 0.10
	for _, tc := range []struct {
		name   string
		canary arm
		limit  uint64 // canary requests
	}{
		{"errors 1% to 10%", bad, 300},
		{"latency x2", slow, 1000},
		{"p99 x2, tail only", tail, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const seeds = 200
			var reqs []float64
			within := 0
			outcomes := parallelSeeds(seeds, func(seed uint64) outcome {
				return runStage(t, seed, 500, 100, healthy, tc.canary, 600, 1, false, false)
			})
			for seed, o := range outcomes {
				if !o.failed {
					reqs = append(reqs, 1e9)
					continue
				}
				reqs = append(reqs, float64(o.canaryRequests))
				if o.canaryRequests <= tc.limit {
					within++
				}
				if o.passed {
					t.Errorf("seed %d: the stage passed before failing", seed)
				}
			}
			med := median(reqs)
			t.Logf("%s: failed within %d canary requests in %d of %d seeds; median %v canary requests", tc.name, tc.limit, within, seeds, med)
			if med > float64(tc.limit) {
				t.Errorf("median canary requests to fail = %v, want ≤ %d", med, tc.limit)
			}
			if within < seeds*9/10 {
				t.Errorf("failed within %d canary requests in %d of %d seeds, want ≥ 90%%", tc.limit, within, seeds)
			}
		})
	}
}

// TestIdenticalCanary: an identical canary (1% errors, same latency) at 5% is
// failed in at most alpha of seeded 10-minute stages (3,000 canary requests
// each) although the gate is looked at every second; at 50% it is passed
// (promotion evidence for errors and latency) in every seed.
func TestIdenticalCanary(t *testing.T) {
	t.Run("false fail rate", func(t *testing.T) {
		const seeds = 300
		fails, srm := 0, 0
		outcomes := parallelSeeds(seeds, func(seed uint64) outcome {
			return runStage(t, 1000+seed, 500, 100, healthy, healthy, 600, 10, false, true)
		})
		for _, o := range outcomes {
			if o.failed {
				fails++
			}
			if o.srmMismatch {
				srm++
			}
		}
		rate := float64(fails) / seeds
		t.Logf("identical canary failed in %d of %d seeds (%.3f; alpha %v)", fails, seeds, rate, spec.DefaultAlpha)
		if rate > spec.DefaultAlpha {
			t.Errorf("false fail rate %.3f, want ≤ alpha %v", rate, spec.DefaultAlpha)
		}
		// The sample-ratio test's alpha is 0.001 per stage: about 0.3 false
		// halts expected in 300 stages.
		t.Logf("sample-ratio mismatch on a correct split in %d of %d seeds", srm, seeds)
		if srm > 3 {
			t.Errorf("sample-ratio mismatch on a correct 5%% split in %d of %d seeds, want ≤ 3 (alpha 0.001)", srm, seeds)
		}
	})
	t.Run("eventually passes", func(t *testing.T) {
		const seeds = 10
		var secs []float64
		for seed := range uint64(seeds) {
			o := runStage(t, 2000+seed, 5000, 200, healthy, healthy, 1200, 1, true, false)
			if o.failed || !o.passed {
				t.Errorf("seed %d: failed %v, passed %v after %d s, want a pass", 2000+seed, o.failed, o.passed, o.seconds)
				continue
			}
			secs = append(secs, float64(o.seconds))
		}
		t.Logf("identical canary at 50%%, 200 rps: passed after a median of %v s", median(secs))
	})
}

// parallelSeeds runs f for seeds 0..n-1 on every CPU and returns the
// outcomes in seed order: the result does not depend on scheduling.
func parallelSeeds(n int, f func(seed uint64) outcome) []outcome {
	out := make([]outcome, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := range next {
				out[i] = f(uint64(i))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}
