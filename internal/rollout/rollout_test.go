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

// pausedAt is a rollout of green over blue paused by hand in its first
// live stage.
func pausedAt(t *testing.T, from Phase) Rollout {
	t.Helper()
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	r := Rollout{Rollout: api.Rollout{ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green",
		Plan:  spec.Plan{Stages: []spec.Stage{{Weight: 500}, {Weight: spec.Full}}}.WithDefaults(),
		Phase: from, StageStarted: start, StartedAt: start, LastLook: start, Weight: 500}}
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

// TestDeadlineInRequests: a plan bounded by canary requests instead of
// time has no time deadline, takes its deadline action after the stage
// served that many requests without a decision, and a resume gives it as
// many again; the stage's requests are kept in the record across pauses.
func TestDeadlineInRequests(t *testing.T) {
	start := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	plan := spec.Plan{ProgressDeadlineRequests: 1000}.WithDefaults()
	if plan.ProgressDeadline != 0 {
		t.Fatalf("a plan bounded by requests got a time deadline of %s", plan.ProgressDeadline)
	}
	r := Rollout{Rollout: api.Rollout{ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green", Plan: plan,
		Phase: PhaseProgressing, StageStarted: start, DeadlineFrom: start, StartedAt: start, LastLook: start, Weight: 500}}
	waiting := analysis.Result{Gates: []analysis.GateResult{{Gate: "sequential", Verdict: analysis.Inconclusive, Summary: "waiting: needs about 2,000 more green requests"}}}
	at := func(r Rollout, d time.Duration, requests uint64) Rollout {
		next, _, err := Next(r, Input{Now: start.Add(d), Result: waiting, CanaryRequests: requests})
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	if next := at(r, 48*time.Hour, 999); next.Phase != PhaseProgressing || next.StageRequests != 999 {
		t.Fatalf("two days and 999 requests: %s (%s), stage requests %d; want still progressing", next.Phase, next.Reason, next.StageRequests)
	}
	paused := at(r, time.Hour, 1000)
	if paused.Phase != PhasePaused || !strings.Contains(paused.Reason, "progress deadline of 1,000 canary requests") || !strings.Contains(paused.Reason, "resume gives it another 1,000 canary requests") {
		t.Fatalf("at 1,000 requests: %s (%s), want paused for the deadline in requests", paused.Phase, paused.Reason)
	}
	resumed, _, err := Next(paused, Input{Now: start.Add(2 * time.Hour), Action: ActionResume, CanaryRequests: 1200})
	if err != nil || resumed.DeadlineRequestsFrom != 1200 {
		t.Fatalf("resume: %v, deadline requests from %d, want 1200", err, resumed.DeadlineRequestsFrom)
	}
	if next := at(resumed, 3*time.Hour, 2100); next.Phase != PhaseProgressing {
		t.Errorf("900 requests after the resume: %s (%s), want progressing", next.Phase, next.Reason)
	}
	if next := at(resumed, 3*time.Hour, 2200); next.Phase != PhasePaused {
		t.Errorf("1,000 requests after the resume: %s, want paused again", next.Phase)
	}
}
