package stats

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestBaselineTest: at the null rate the test rejects at most alpha of the
// time over a long run; a canary that turns 10 times as bad after a healthy
// stretch is rejected within a minute; a restored test continues exactly.
func TestBaselineTest(t *testing.T) {
	const runs, alpha, rate = 400, 0.1, 0.01
	falseAlarms := 0
	for run := range runs {
		rng := rand.New(rand.NewPCG(uint64(run), 17))
		b, err := NewBaselineTest(BaselineConfig{Alpha: alpha, Rate: rate})
		if err != nil {
			t.Fatal(err)
		}
		for range 900 {
			if e, _ := b.Observe(100, binomial(rng, 100, rate), 1); e.Decision == Reject {
				falseAlarms++
				break
			}
		}
	}
	if r := float64(falseAlarms) / runs; r > 0.15 { // 3.3 sigma above alpha
		t.Errorf("rejected %d of %d runs at the null rate (%.3f), want ≤ alpha %v", falseAlarms, runs, r, alpha)
	}

	rng := rand.New(rand.NewPCG(3, 4))
	b, _ := NewBaselineTest(BaselineConfig{Alpha: 0.01, Rate: rate})
	at := -1
	for sec := range 600 + 60 {
		p := rate / 2
		if sec >= 600 {
			p = 10 * rate
		}
		if e, _ := b.Observe(100, binomial(rng, 100, p), 1); e.Decision == Reject {
			at = sec - 600
			break
		}
	}
	if at < 0 {
		t.Errorf("a canary 10x as bad after 10 healthy minutes was not rejected within a minute (rejected at %d s after the jump; -1: never)", at)
	}

	cfg := BaselineConfig{Alpha: 0.05, Rate: 0.02}
	a, _ := NewBaselineTest(cfg)
	for range 50 {
		a.Observe(40, binomial(rng, 40, 0.03), 0.5)
	}
	raw, _ := json.Marshal(a.State())
	var st SequentialState
	json.Unmarshal(raw, &st)
	c, err := RestoreBaselineTest(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		n := binomial(rng, 40, 0.05)
		ea, _ := a.Observe(40, n, 0.5)
		ec, _ := c.Observe(40, n, 0.5)
		if ea != ec {
			t.Fatalf("restored test diverged: %+v vs %+v", ec, ea)
		}
	}
	if _, err := NewBaselineTest(BaselineConfig{Alpha: 0.05, Rate: 0}); err == nil {
		t.Errorf("rate 0 accepted")
	}
	if _, err := b.Observe(1, 2, 1); err == nil {
		t.Errorf("more bad than requests accepted")
	}
}

// TestObservedOverExpectedIsWeightAdjusted: identical arms whose common
// error rate changes between a 5% and a 50% stage show different pooled
// rates (Simpson's paradox: the canary served most of its requests in the
// stage with fewer errors), while the test's observed/expected stays near 1.
func TestObservedOverExpectedIsWeightAdjusted(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	reg, _ := NewRegressionTest(RegressionConfig{Alpha: 0.05, DetectChanges: true})
	for sec := range 1200 {
		w, p := 0.05, 0.03
		if sec >= 600 {
			w, p = 0.5, 0.005
		}
		reg.Observe(sliceAt(rng, 400, w, p, p))
	}
	e := reg.Evidence()
	c := e.Counts
	pooledCanary := float64(c.CanaryBad) / float64(c.CanaryRequests)
	pooledStable := float64(c.StableBad) / float64(c.StableRequests)
	if ratio := pooledCanary / pooledStable; ratio > 0.7 {
		t.Fatalf("pooled canary/stable error rate %.2f: the scenario should show Simpson's paradox (want < 0.7)", ratio)
	}
	if r := float64(e.Observed) / e.Expected; r < 0.9 || r > 1.1 {
		t.Errorf("observed/expected canary errors %d/%.1f = %.2f, want about 1 for identical arms", e.Observed, e.Expected, r)
	}
}
