package stats

import (
	"math"
	"math/rand/v2"
	"testing"
)

// slicesAt draws one second of traffic: n requests, canary share w, the
// stable's bad rate ps and the canary's pc.
func sliceAt(rng *rand.Rand, n int64, w, ps, pc float64) Slice {
	cn := binomial(rng, n, w)
	sn := n - cn
	return Slice{CanaryRequests: cn, CanaryBad: binomial(rng, cn, pc), StableRequests: sn, StableBad: binomial(rng, sn, ps)}
}

// TestChangeDetectorCatchesALateRegression: after an hour of identical
// traffic, a cumulative test's statistic sits far below 1 and a jump from 1%
// to 10% errors on 5% of 200 requests/s takes it much longer to see than the
// change detector, which sees it within a minute in every seeded run.
func TestChangeDetectorCatchesALateRegression(t *testing.T) {
	const runs, healthy = 40, 3600
	var cumulative, changes []float64
	falseAlarms := 0
	for run := range runs {
		rng := rand.New(rand.NewPCG(uint64(run), 7))
		cum, _ := NewRegressionTest(RegressionConfig{Alpha: 0.025})
		det, _ := NewRegressionTest(RegressionConfig{Alpha: 0.025, DetectChanges: true})
		var cumAt, detAt float64
		for sec := 0; sec < healthy+600 && (cumAt == 0 || detAt == 0); sec++ {
			pc := 0.01
			if sec >= healthy {
				pc = 0.10
			}
			s := sliceAt(rng, 200, 0.05, 0.01, pc)
			if e, _ := cum.Observe(s); e.Decision == Reject && cumAt == 0 {
				cumAt = float64(sec - healthy)
			}
			if e, _ := det.Observe(s); e.Decision == Reject && detAt == 0 {
				detAt = float64(sec - healthy)
			}
		}
		if detAt < 0 || cumAt < 0 {
			falseAlarms++ // at alpha 0.025, about one run in 40: judged below
			continue
		}
		if detAt == 0 || detAt > 60 {
			t.Errorf("run %d: the change detector took %v s after the jump (0: never in 10 min), want ≤ 60", run, detAt)
		}
		cumulative, changes = append(cumulative, cumAt), append(changes, detAt)
	}
	if falseAlarms > 4 { // P(> 4 of 40 | rate 0.05) < 0.05
		t.Errorf("%d of %d runs rejected during the healthy hour, want about alpha", falseAlarms, runs)
	}
	if c, d := median(cumulative), median(changes); !(d < c/1.5) {
		t.Errorf("median seconds to reject after the jump: change detector %v, cumulative %v: want the detector clearly faster", d, c)
	}
}

// TestChangeDetectorFalseAlarms: with identical arms the change detector
// rejects at most alpha of the time over a long run, as the cumulative test
// does (Ville's inequality holds for the mixture over starts).
func TestChangeDetectorFalseAlarms(t *testing.T) {
	const runs, alpha = 400, 0.1
	rejects := 0
	for run := range runs {
		rng := rand.New(rand.NewPCG(uint64(run), 11))
		det, _ := NewRegressionTest(RegressionConfig{Alpha: alpha, DetectChanges: true})
		for range 1800 {
			if e, _ := det.Observe(sliceAt(rng, 40, 0.2, 0.02, 0.02)); e.Decision == Reject {
				rejects++
				break
			}
		}
	}
	// 400 runs at a true rate ≤ 0.1: above 0.15 is a 3.3-sigma event.
	if r := float64(rejects) / runs; r > 0.15 {
		t.Errorf("change detector rejected %d of %d identical runs (%.3f), want ≤ alpha %v", rejects, runs, r, alpha)
	}
}

// TestMarginTest: the margin test shows an identical canary within a 2×
// margin across weight changes and traffic swings, never shows a canary at
// the margin (its rate 2× the stable's at every moment, whatever the load)
// more than alpha of the time, and continues exactly after a restore.
func TestMarginTest(t *testing.T) {
	const runs, alpha = 300, 0.05
	weights := []float64{0.05, 0.25, 0.5}
	run := func(seed uint64, ratio float64) (shownAt int, state SequentialState) {
		rng := rand.New(rand.NewPCG(seed, 3))
		m, err := NewMarginTest(MarginConfig{Alpha: alpha, Margin: 2})
		if err != nil {
			t.Fatal(err)
		}
		for sec := range 1800 {
			load := 1 + 0.75*math.Sin(2*math.Pi*float64(sec)/600) // swings move both arms' rates
			ps := 0.01 * load
			s := sliceAt(rng, int64(200*load), weights[min(sec/600, 2)], ps, ratio*ps)
			if e, _ := m.Observe(s); e.Shown {
				return sec, m.State()
			}
		}
		return -1, m.State()
	}
	var identical []float64
	atMargin := 0
	for i := range runs {
		if sec, _ := run(uint64(i), 1); sec < 0 {
			t.Errorf("run %d: an identical canary was not shown within 2× in 30 minutes", i)
		} else {
			identical = append(identical, float64(sec))
		}
		if sec, _ := run(uint64(i), 2); sec >= 0 {
			atMargin++
		}
	}
	if r := float64(atMargin) / runs; r > 0.09 { // 3 sigma above alpha at 300 runs
		t.Errorf("a canary at the margin was shown within it in %d of %d runs (%.3f), want ≤ alpha %v", atMargin, runs, r, alpha)
	}
	t.Logf("identical canary shown within 2× after a median %v s; canary at the margin shown in %d of %d runs", median(identical), atMargin, runs)

	// A restored test continues like the original.
	rng := rand.New(rand.NewPCG(1, 1))
	a, _ := NewMarginTest(MarginConfig{Alpha: alpha, Margin: 1.5})
	for range 100 {
		a.Observe(sliceAt(rng, 200, 0.05, 0.01, 0.01))
	}
	b, err := RestoreMarginTest(MarginConfig{Alpha: alpha, Margin: 1.5}, jsonRoundTrip(t, a.State()))
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		s := sliceAt(rng, 200, 0.25, 0.01, 0.01)
		ea, _ := a.Observe(s)
		eb, _ := b.Observe(s)
		if ea != eb {
			t.Fatalf("restored test diverged: %+v vs %+v", eb, ea)
		}
	}
}

func TestMarginConfigErrors(t *testing.T) {
	for _, c := range []MarginConfig{{Alpha: 0, Margin: 2}, {Alpha: 0.05, Margin: 0.9}, {Alpha: 0.05, Margin: 2, Ratios: []float64{1.2}}} {
		if _, err := NewMarginTest(c); err == nil {
			t.Errorf("NewMarginTest(%+v) accepted", c)
		}
	}
}

// TestChangeDetectorStateRoundTrip: a change detector restored from its
// JSON state, before and after its first informative slice, continues
// exactly like the original.
func TestChangeDetectorStateRoundTrip(t *testing.T) {
	cfg := RegressionConfig{Alpha: 0.025, DetectChanges: true}
	rng := rand.New(rand.NewPCG(5, 5))
	a, _ := NewRegressionTest(cfg)
	for step := range 3 {
		b, err := RestoreRegressionTest(cfg, jsonRoundTrip(t, a.State()))
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		for range 200 {
			s := sliceAt(rng, 100, 0.1, 0.01, 0.02)
			ea, _ := a.Observe(s)
			eb, _ := b.Observe(s)
			if ea != eb {
				t.Fatalf("step %d: restored detector diverged: %+v vs %+v", step, eb, ea)
			}
		}
	}
}

// TestChangeDetectorPriorIsOverTime: the prior over starts is a
// distribution over informative time whatever the batches' spans (the
// starts' weights and the weight of those not begun sum to 1), so looking
// more often spreads it no thinner: a jump after five healthy minutes at
// 2,000 requests/s, read in tenths of a second, is rejected within about
// the same evidence as in whole seconds, and sooner after the jump, since
// a batch no longer waits for its second to end.
func TestChangeDetectorPriorIsOverTime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var u, mass float64
	for range 10000 {
		s := []float64{1, 0.5, 0.01, 1e-6, 3}[rng.IntN(5)]
		mass += math.Exp(logStartPrior(u, s))
		u += s
	}
	if total := mass + 1/math.Log(u+math.E); math.Abs(total-1) > 1e-9 {
		t.Errorf("starts' prior weights plus the rest = %v, want 1", total)
	}

	const runs, healthy = 40, 300
	var whole, tenths []float64
	for run := range runs {
		rng := rand.New(rand.NewPCG(uint64(run), 9))
		w, _ := NewRegressionTest(RegressionConfig{Alpha: 0.025, DetectChanges: true})
		p, _ := NewRegressionTest(RegressionConfig{Alpha: 0.025, DetectChanges: true})
		var wAt, pAt float64
		var second Slice
		for tenth := 0; tenth < (healthy+60)*10 && (wAt == 0 || pAt == 0); tenth++ {
			pc := 0.01
			if tenth >= healthy*10 {
				pc = 0.10
			}
			s := sliceAt(rng, 200, 0.05, 0.01, pc)
			s.Span = 0.1
			if e, _ := p.Observe(s); e.Decision == Reject && pAt == 0 {
				pAt = float64(tenth+1)/10 - healthy
			}
			// The whole-second detector sees the same tenths, summed.
			second.CanaryRequests += s.CanaryRequests
			second.CanaryBad += s.CanaryBad
			second.StableRequests += s.StableRequests
			second.StableBad += s.StableBad
			if tenth%10 == 9 {
				if e, _ := w.Observe(second); e.Decision == Reject && wAt == 0 {
					wAt = float64(tenth+1)/10 - healthy
				}
				second = Slice{}
			}
		}
		if wAt <= 0 || pAt <= 0 {
			continue // a false alarm (about alpha) or no rejection: judged by the other tests
		}
		whole, tenths = append(whole, wAt), append(tenths, pAt)
	}
	if len(whole) < runs*9/10 {
		t.Fatalf("only %d of %d runs rejected after the jump", len(whole), runs)
	}
	if w, p := median(whole), median(tenths); !(p < w) || p > 3 {
		t.Errorf("median seconds from the jump to rejection: %v read in tenths, %v in whole seconds; want tenths faster and within 3 s", p, w)
	}
	t.Logf("median seconds from the jump to rejection: %.2f read in tenths of a second, %.2f in whole seconds", median(tenths), median(whole))
}
