package rollout

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/spec"
)

// pausedAt is a rollout of green over blue paused by hand in its first
// live stage.
func pausedAt(t *testing.T, from Phase) Rollout {
	t.Helper()
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	r := Rollout{ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green",
		Plan:  spec.Plan{Stages: []spec.Stage{{Weight: 500}, {Weight: spec.Full}}}.WithDefaults(),
		Phase: from, StageStarted: start, StartedAt: start, LastLook: start, Weight: 500}
	next, _, err := Next(r, Input{Now: start.Add(time.Second), Action: ActionPause})
	if err != nil || next.Phase != PhasePaused {
		t.Fatalf("pause: %s, %v", next.Phase, err)
	}
	return next
}

func gateVerdicts(failed bool) analysis.Result {
	v := analysis.Pass
	if failed {
		v = analysis.Fail
	}
	return analysis.Result{Failed: failed, Gates: []analysis.GateResult{{Gate: "sequential", Verdict: v, Reason: "canary error rate 10% vs stable 1%"}}}
}

// TestPausedStageKeepsItsProtection: a pause stops progress, not the gates:
// a gate failing while a live stage is paused rolls the canary back at
// once, a passing one changes nothing, and a paused shadow phase (no live
// canary) is left alone.
func TestPausedStageKeepsItsProtection(t *testing.T) {
	r := pausedAt(t, PhaseProgressing)
	now := r.LastLook.Add(time.Hour)

	held, eff, err := Next(r, Input{Now: now, Result: gateVerdicts(false), CanaryRequests: 1e6})
	if err != nil || held.Phase != PhasePaused || eff.Traffic != nil || held.Stage != 0 {
		t.Errorf("passing gates while paused: %s at stage %d, traffic %v, %v; want still paused, nothing moved", held.Phase, held.Stage, eff.Traffic, err)
	}
	if len(held.Gates) != 1 || held.Gates[0].Verdict != analysis.Pass {
		t.Errorf("gates while paused %+v, want the latest verdicts shown", held.Gates)
	}

	rolled, eff, err := Next(held, Input{Now: now.Add(time.Second), Result: gateVerdicts(true)})
	if err != nil || rolled.Phase != PhaseRolledBack || rolled.PausedFrom != "" {
		t.Fatalf("a failing gate while paused: %s (paused from %q), %v; want rolled_back, no longer paused", rolled.Phase, rolled.PausedFrom, err)
	}
	if !strings.Contains(rolled.Reason, "gate failed while paused: sequential: canary error rate 10%") {
		t.Errorf("reason %q, want it to say a gate failed while paused, and which", rolled.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, eff.Traffic); diff != "" {
		t.Errorf("traffic on rollback while paused (-want +got):\n%s", diff)
	}

	shadow := pausedAt(t, PhaseShadow)
	if next, eff, _ := Next(shadow, Input{Now: now, Result: gateVerdicts(true)}); next.Phase != PhasePaused || eff.Traffic != nil {
		t.Errorf("a paused shadow phase: %s, traffic %v; want untouched (no live canary)", next.Phase, eff.Traffic)
	}
}

// TestResumeKeepsTheStageAndRestartsTheDeadline: resume gives the stage a
// new progress deadline but keeps its start, from which its requests and
// evidence count, so that a stage at low traffic is not sent back to zero
// by every pause.
func TestResumeKeepsTheStageAndRestartsTheDeadline(t *testing.T) {
	r := pausedAt(t, PhaseProgressing)
	started := r.StageStarted
	resumeAt := started.Add(time.Hour)
	r, _, err := Next(r, Input{Now: resumeAt, Action: ActionResume})
	if err != nil || r.Phase != PhaseProgressing {
		t.Fatalf("resume: %s, %v", r.Phase, err)
	}
	if !r.StageStarted.Equal(started) || !r.DeadlineFrom.Equal(resumeAt) {
		t.Errorf("after resume: stage_started %v, deadline_from %v; want %v (kept) and %v", r.StageStarted, r.DeadlineFrom, started, resumeAt)
	}
	limit := r.Plan.ProgressDeadline.D()
	waiting := analysis.Result{Gates: []analysis.GateResult{{Gate: "sequential", Verdict: analysis.Inconclusive}}}
	if next, _, _ := Next(r, Input{Now: resumeAt.Add(limit - time.Second), Result: waiting}); next.Phase != PhaseProgressing {
		t.Errorf("%s after the resume: %s (%s), want still progressing", limit-time.Second, next.Phase, next.Reason)
	}
	next, _, _ := Next(r, Input{Now: resumeAt.Add(limit), Result: waiting})
	if next.Phase != PhasePaused || !strings.Contains(next.Reason, "progress deadline") {
		t.Errorf("%s after the resume: %s (%s), want paused at the deadline", limit, next.Phase, next.Reason)
	}
}
