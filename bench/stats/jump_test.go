package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// TestJumpReduced runs the jump suite's harness (jump.go) on a short setting: the
// real controller, control service, bbolt store and telemetry at 2,000 requests/s,
// requests one by one, with 20 healthy seconds instead of 5 minutes. It checks
// that the harness drives the controller as Run would and that a run is
// deterministic; it asserts no timings (only simulated time is checked).
func TestJumpReduced(t *testing.T) {
	cfg := defaultJumpConfig()
	cfg.warmup, cfg.healthy, cfg.horizon = 5*time.Second, 20*time.Second, 30*time.Second
	const runs, seed = 2, 16
	began := time.Now()
	outs, err := runJumps(context.Background(), cfg, runs, seed, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range outs {
		t.Logf("run %d (%d requests): %s after %.2f s (%s look), %d canary requests after the jump, %d moved + %d ticker looks over %.1f s",
			i, o.Requests, o.Phase, o.DecisionSec, o.DecidingLook, o.CanaryAfterJump, o.MovedLooks, o.TickLooks, o.RolloutSec)
		if o.FalseAlarm || !o.RolledBack {
			t.Errorf("run %d: false alarm %v, rolled back after the jump %v (phase %s: %s); want a rollback after the jump", i, o.FalseAlarm, o.RolledBack, o.Phase, o.Reason)
			continue
		}
		if o.DecisionSec <= 0 || o.DecisionSec > 10 {
			t.Errorf("run %d: decided %.2f s after the jump; want within (0, 10] s", i, o.DecisionSec)
		}
		// 5% of 2,000/s is 100 canary requests/s: a signal every 10 of
		// them, so about 10 LookMoved a second, and the ticker's 1.
		if r := float64(o.MovedLooks) / o.RolloutSec; r < 7 || r > 13 {
			t.Errorf("run %d: %.1f LookMoved per simulated second; want about 10", i, r)
		}
		if got, want := o.TickLooks, int(o.RolloutSec); got != want {
			t.Errorf("run %d: %d ticker looks in %.2f s; want %d", i, got, o.RolloutSec, want)
		}
		if o.CanaryAfterJump <= 0 || float64(o.CanaryAfterJump) > 100*o.DecisionSec+60 {
			t.Errorf("run %d: %d canary requests in the %.2f s after the jump; want about 100/s", i, o.CanaryAfterJump, o.DecisionSec)
		}
		if n := o.MovedLooks + o.TickLooks; len(o.LookWall) != n || len(o.LookCPU) != 0 && len(o.LookCPU) != n {
			t.Errorf("run %d: %d wall and %d CPU times for %d looks", i, len(o.LookWall), len(o.LookCPU), n)
		}
	}
	// The same seed gives the same simulated run (the wall times differ).
	dir, err := stateDir()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	again, err := runJump(context.Background(), cfg, seed, 1, dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := outs[1], again
	if a.DecisionSec != b.DecisionSec || a.CanaryAfterJump != b.CanaryAfterJump || a.Requests != b.Requests ||
		a.MovedLooks != b.MovedLooks || a.TickLooks != b.TickLooks {
		t.Errorf("run 1 twice: %.6f s, %d canary, %d requests, %d+%d looks, then %.6f s, %d, %d, %d+%d",
			a.DecisionSec, a.CanaryAfterJump, a.Requests, a.MovedLooks, a.TickLooks,
			b.DecisionSec, b.CanaryAfterJump, b.Requests, b.MovedLooks, b.TickLooks)
	}
	var buf bytes.Buffer
	reportJump(&buf, cfg, summarizeJumps(cfg, outs, seed, 2, time.Since(began)))
	if !strings.Contains(buf.String(), "| jump → rollback median ≤ 1 s |") {
		t.Errorf("report without the target row:\n%s", buf.String())
	}
	buf.Reset()
	if err := writeJumpJSON(&buf, summarizeJumps(cfg, outs, seed, 2, time.Since(began))); err != nil {
		t.Fatal(err)
	}
}

// TestQuantileCI checks the order-statistic interval: it covers the quantile's
// rank with at least 95% (Bin(n, q)), and a censored (+Inf) upper part shows.
func TestQuantileCI(t *testing.T) {
	for _, n := range []int{20, 200, 1000} {
		for _, q := range []float64{0.5, 0.95} {
			v := make([]float64, n)
			for i := range v {
				v[i] = float64(i + 1) // value = rank
			}
			ci := newQuantileCI(v, q)
			if ci.Lo > ci.V || ci.V > ci.Hi {
				t.Errorf("n %d q %v: %v outside [%v, %v]", n, q, ci.V, ci.Lo, ci.Hi)
			}
			l, u := int(math.Max(ci.Lo, 0)), n+1
			if !math.IsInf(ci.Hi, 1) {
				u = int(ci.Hi)
			}
			// P(l ≤ B < u) = F(u−1) − F(l−1).
			cover := binomCDF(u-1, n, q)
			if l >= 1 {
				cover -= binomCDF(l-1, n, q)
			}
			if cover < 0.95 {
				t.Errorf("n %d q %v: [X(%d), X(%d)] covers %.4f; want ≥ 0.95", n, q, l, u, cover)
			}
		}
	}
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, math.Inf(1)}
	if ci := newQuantileCI(v, 0.95); !math.IsInf(ci.V, 1) || !math.IsInf(ci.Hi, 1) {
		t.Errorf("p95 of 10 with one never: %+v; want never", ci)
	}
}
