package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
)

// lastStage is a rollout of green over blue in its last stage before 100%,
// whose plan has a 10-minute final bake.
func lastStage(plan spec.Plan) Rollout {
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	plan.Stages = []spec.Stage{{Weight: 500}, {Weight: spec.Full}}
	return Rollout{Rollout: api.Rollout{ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green", Plan: plan.WithDefaults(),
		Phase: PhaseProgressing, StageStarted: start, StartedAt: start, LastLook: start, Weight: 500}}
}

// passing is every gate passing.
func passing() analysis.Result {
	r := gateVerdicts(false)
	r.Passed = true
	return r
}

// look is one look a second after the last.
func look(r Rollout, res analysis.Result) (Rollout, Effect) {
	next, eff, _ := Next(r, Input{Now: r.LastLook.Add(time.Second), Result: res, CanaryRequests: 1e6})
	return next, eff
}

// TestFinalBake: with a final bake, the promotion gives the canary 100% and
// keeps watching it: a gate that fails in the period gives the stable all
// traffic back, a paused final bake is still watched, and the end of the
// period succeeds; without one, the promotion succeeds at once.
func TestFinalBake(t *testing.T) {
	r := lastStage(spec.Plan{FinalBake: spec.Duration(10 * time.Minute), Bake: spec.Duration(time.Second)})
	r, eff := look(r, passing()) // baked 1 s: the last stage before 100% passes
	if r.Phase != PhaseFinalBake || r.Weight != spec.Full || !eff.StartFinalBake || r.FinishedAt != nil {
		t.Fatalf("after the last stage passed: %s at %s%%, start final bake %v; want final_bake at 100%%", r.Phase, r.Weight, eff.StartFinalBake)
	}
	if diff := cmp.Diff(spec.Weights{"green": spec.Full}, eff.Traffic); diff != "" {
		t.Errorf("traffic at the final bake (-want +got):\n%s", diff)
	}
	if !strings.Contains(r.Reason, "final bake") {
		t.Errorf("reason %q does not say the final bake runs", r.Reason)
	}
	baking := r

	// A regression at 100% rolls back at once.
	for range 30 {
		r, _ = look(r, gateVerdicts(false))
	}
	rolled, eff := look(r, gateVerdicts(true))
	if rolled.Phase != PhaseRolledBack || !strings.Contains(rolled.Reason, "degraded at 100% during the final bake: sequential: canary error rate 10%") {
		t.Errorf("a failing gate in the final bake: %s (%s), want rolled_back saying why", rolled.Phase, rolled.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, eff.Traffic); diff != "" {
		t.Errorf("traffic after a final-bake rollback (-want +got):\n%s", diff)
	}

	// Paused in the final bake: still watched.
	paused, _, err := Next(baking, Input{Now: baking.LastLook.Add(time.Second), Action: ActionPause})
	if err != nil || paused.Phase != PhasePaused || paused.PausedFrom != PhaseFinalBake {
		t.Fatalf("pause in the final bake: %s from %s, %v", paused.Phase, paused.PausedFrom, err)
	}
	if next, _ := look(paused, gateVerdicts(true)); next.Phase != PhaseRolledBack {
		t.Errorf("a failing gate while the final bake is paused: %s, want rolled_back", next.Phase)
	}

	// The period's end succeeds.
	r = baking
	for range 600 {
		r, _ = look(r, gateVerdicts(false))
	}
	if r.Phase != PhaseSucceeded || r.FinishedAt == nil || !strings.Contains(r.Reason, "final bake of 10m0s") {
		t.Errorf("after the final bake's 10 minutes: %s (%s), want succeeded", r.Phase, r.Reason)
	}

	// promote ends it by hand; without a final bake the promotion succeeds.
	if next, _, err := Next(baking, Input{Now: baking.LastLook.Add(time.Second), Action: ActionPromote}); err != nil || next.Phase != PhaseSucceeded {
		t.Errorf("promote in the final bake: %s, %v; want succeeded", next.Phase, err)
	}
	plain := lastStage(spec.Plan{Bake: spec.Duration(time.Second)})
	if plain, _ = look(plain, passing()); plain.Phase != PhaseSucceeded {
		t.Errorf("promotion without a final bake: %s, want succeeded", plain.Phase)
	}
}

// TestTimeout: the rollout-wide timeout rolls back by default, or pauses
// once (a resumed rollout is not paused again), from any running phase.
func TestTimeout(t *testing.T) {
	waiting := analysis.Result{Gates: []analysis.GateResult{{Gate: "sequential", Verdict: analysis.Inconclusive}}}
	r := lastStage(spec.Plan{Timeout: spec.Duration(time.Hour), ProgressDeadline: spec.Duration(48 * time.Hour)})
	at := func(r Rollout, d time.Duration) Rollout {
		next, _, _ := Next(r, Input{Now: r.StartedAt.Add(d), Result: waiting})
		return next
	}
	if next := at(r, time.Hour-time.Second); next.Phase != PhaseProgressing {
		t.Errorf("before the timeout: %s (%s)", next.Phase, next.Reason)
	}
	if next := at(r, time.Hour); next.Phase != PhaseRolledBack || !strings.Contains(next.Reason, "timeout of 1h0m0s passed (stage 1 of 2 at 5%)") {
		t.Errorf("at the timeout: %s (%s), want rolled_back saying so", next.Phase, next.Reason)
	}

	r.Plan.OnTimeout = spec.DeadlinePause
	paused := at(r, time.Hour)
	if paused.Phase != PhasePaused || !paused.TimedOut || !strings.Contains(paused.Reason, "timeout") {
		t.Fatalf("on_timeout pause: %s (%s), timed out %v", paused.Phase, paused.Reason, paused.TimedOut)
	}
	resumed, _, err := Next(paused, Input{Now: paused.LastLook.Add(time.Second), Action: ActionResume})
	if err != nil {
		t.Fatal(err)
	}
	if next := at(resumed, 2*time.Hour); next.Phase != PhaseProgressing {
		t.Errorf("a resumed rollout after its timeout paused it: %s (%s), want progressing", next.Phase, next.Reason)
	}
}
