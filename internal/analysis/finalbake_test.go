package analysis

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// TestFinalBake: at 100% the canary is judged against the stable's
// measurements of the last stage: one as good as the stable is not failed
// in ten minutes (rates belong in bench/stats: this shows it is not failed
// as a rule), one whose error rate triples is, and so is one twice as
// slow; the state round-trips mid-bake.
func TestFinalBake(t *testing.T) {
	plan := spec.Plan{FinalBake: spec.Duration(time.Hour)}.WithDefaults()
	run := func(seed uint64, canary arm, seconds int) (failedAt int, reason string, a *Analyzer) {
		a = mustNew(t, plan)
		a.StartStage(t0, 5000, recent1)
		// The last stage: half of 200 requests/s each; its stable is the baseline.
		s := newSim(seed, 200, 0.5, healthy, healthy)
		var stable telemetry.Summary
		for range 200 {
			p := s.next()
			a.Observe([]SlicePair{p})
			stable.AddSlice(p.Stable)
		}
		bakeStart := t0.Add(200 * time.Second)
		a.StartFinalBake(bakeStart, NewBaseline(stable))
		s.route, s.canary = 1, canary
		var w telemetry.Summary
		for sec := 1; sec <= seconds; sec++ {
			p := s.next()
			if err := a.Observe([]SlicePair{p}); err != nil {
				t.Fatal(err)
			}
			w.AddSlice(p.Canary)
			if r := a.EvaluateFinalBake(Window{Canary: w}); r.Failed {
				return sec, r.Gates[0].Reason, a
			}
		}
		return -1, "", a
	}
	falseAlarms := 0
	for seed := range uint64(3) {
		if at, why, _ := run(seed, healthy, 600); at >= 0 {
			falseAlarms++
			t.Logf("seed %d: a healthy canary failed after %d s: %s", seed, at, why)
		}
	}
	if falseAlarms > 1 { // alpha is 0.01 here
		t.Errorf("a canary as good as the stable failed its final bake in %d of 3 seeds", falseAlarms)
	}
	worse := healthy
	worse.errRate = 3 * healthy.errRate
	at, why, _ := run(1, worse, 300)
	if at < 0 || at > 300 || !strings.Contains(why, "final bake: canary error rate") {
		t.Errorf("a canary with 3x the errors at 100%%: failed after %d s (%q), want within 5 minutes for its error rate", at, why)
	}
	slow := healthy
	slow.median *= 2
	if at, why, _ := run(2, slow, 60); at < 0 || at > 60 || !strings.Contains(why, "slower than") {
		t.Errorf("a canary twice as slow at 100%%: failed after %d s (%q), want within a minute for its latency", at, why)
	}

	_, _, a := run(3, healthy, 30)
	raw, err := json.Marshal(a.State())
	if err != nil {
		t.Fatal(err)
	}
	var st State
	json.Unmarshal(raw, &st)
	b, err := Restore(plan, st)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a.State(), b.State()); diff != "" || st.FinalBake == nil {
		t.Errorf("final bake state after a round trip (-saved +restored):\n%s", diff)
	}
}

// TestEvidenceHasNoPooledRates: across a stage change from 5% to 25%, with
// the common error rate different in each stage, no gate's evidence holds
// a rate of counts pooled over both weights: rates appear only for the
// stage (one weight) and as the tests' weight-adjusted observed/expected.
// The allowance paths, which compare each arm's totals, count the stage's.
func TestEvidenceHasNoPooledRates(t *testing.T) {
	plan := spec.Plan{Gates: []spec.Gate{{Type: spec.GateSequential}, {Type: spec.GateErrorRate, Max: 0.5}}}.WithDefaults()
	a := mustNew(t, plan)
	a.StartStage(t0, 500, recent1)
	noisy, calm := healthy, healthy
	noisy.errRate, calm.errRate = 0.03, 0.005
	s := newSim(4, 400, 0.05, noisy, noisy)
	for range 300 {
		a.Observe([]SlicePair{s.next()})
	}
	a.StartStage(t0.Add(300*time.Second), 2500, recent1)
	s.route, s.stable, s.canary = 0.25, calm, calm
	var w Window
	for range 300 {
		p := s.next()
		a.Observe([]SlicePair{p})
		w.Stable.AddSlice(p.Stable)
		w.Canary.AddSlice(p.Canary)
	}
	res := a.Evaluate(plan.Stages[1], w)
	var walk func(path string, v any)
	walk = func(path string, v any) {
		m, ok := v.(map[string]any)
		if !ok {
			return
		}
		for k, x := range m {
			p := path + "." + k
			if strings.HasSuffix(k, "_rate") && !strings.Contains(path, ".stage") && k != "null_rate" {
				t.Errorf("%s = %v: a rate outside the stage's own evidence", p, x)
			}
			walk(p, x)
		}
	}
	walk("sequential", res.Gates[0].Evidence)
	// The threshold gates judge the stage window: their rates are the stage's.
	if got := res.Gates[1].Evidence["canary_requests"]; got != w.Canary.SplitRequests() {
		t.Errorf("error_rate gate counts %v canary requests, want the stage's %d", got, w.Canary.SplitRequests())
	}
	seq := res.Gates[0].Evidence["errors"].(map[string]any)
	// The allowance path compares each arm's totals: over this stage only.
	allow := seq["allowance"].(map[string]any)
	if got, stage := allow["canary_requests"], res.Gates[0].Evidence["stage"].(map[string]any)["canary_requests"]; got != int64(stage.(uint64)) && got != stage {
		t.Errorf("the error allowance counts %v canary requests, want the stage's %v", got, stage)
	}
	if r := float64(seq["observed_canary_bad"].(int64)) / seq["expected_canary_bad"].(float64); r < 0.8 || r > 1.25 {
		t.Errorf("identical arms: observed/expected canary errors %v, want about 1", r)
	}
}

// TestThresholdGatesOncePerSecond: with the look's time set, a threshold
// gate is judged at most once a wall second: a look in the same second
// keeps its verdict whatever the window, the next second judges again.
func TestThresholdGatesOncePerSecond(t *testing.T) {
	plan := spec.Plan{Gates: []spec.Gate{{Type: spec.GateErrorRate, Max: 0.05}}, MinRequests: 10}.WithDefaults()
	a := mustNew(t, plan)
	a.StartStage(t0, 500, recent1)
	good := Window{Canary: telemetry.Summary{Requests: 100}, Stable: telemetry.Summary{Requests: 1900}}
	bad := good
	bad.Canary.SplitErrors, bad.Canary.Errors = 50, 50
	a.SetLook(t0.Add(1200 * time.Millisecond))
	if r := a.Evaluate(plan.Stages[0], good); r.Failed {
		t.Fatalf("a good window failed: %+v", r.Gates)
	}
	a.SetLook(t0.Add(1900 * time.Millisecond))
	if r := a.Evaluate(plan.Stages[0], bad); r.Failed {
		t.Errorf("a second look in the same second judged the threshold gate again")
	}
	a.SetLook(t0.Add(2100 * time.Millisecond))
	if r := a.Evaluate(plan.Stages[0], bad); !r.Failed {
		t.Errorf("the next second's look kept the old verdict: %+v", r.Gates)
	}
}

// TestStageBaselineSurvivesARestore: the last stage's stable measurements,
// the final bake's baseline, are part of the analysis state.
func TestStageBaselineSurvivesARestore(t *testing.T) {
	plan := spec.Plan{FinalBake: spec.Duration(time.Hour)}.WithDefaults()
	a := mustNew(t, plan)
	a.StartStage(t0, 5000, recent1)
	s := newSim(6, 100, 0.5, healthy, healthy)
	for range 60 {
		a.Observe([]SlicePair{s.next()})
	}
	raw, _ := json.Marshal(a.State())
	var st State
	json.Unmarshal(raw, &st)
	b, err := Restore(plan, st)
	if err != nil {
		t.Fatal(err)
	}
	want, got := a.StageBaseline(), b.StageBaseline()
	if want.Requests < 2000 || !cmp.Equal(want, got) {
		t.Errorf("stage baseline %d requests before the restore, after: %+v", want.Requests, cmp.Diff(want, got))
	}
}
