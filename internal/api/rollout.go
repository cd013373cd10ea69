package api

import (
	"encoding/json"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// Verdict is a gate's outcome.
type Verdict string

// GateResult is one gate's verdict: Summary, one sentence in plain words a
// person can act on ("green's error rate is 2.1× blue's ..."; a verdict
// that waits for data starts with "waiting: " and says for what); Reason,
// the statistics behind it; and the evidence as data (sample sizes,
// statistic, threshold, alpha, p-value...). Rates in the evidence are a
// stage's (one weight) or weight-adjusted (observed/expected), never
// pooled over stages of different weights. Evidence always encodes as
// JSON.
type GateResult struct {
	Gate     string         `json:"gate"`
	Verdict  Verdict        `json:"verdict"`
	Summary  string         `json:"summary"`
	Reason   string         `json:"reason"`
	Evidence map[string]any `json:"evidence"`
}

// Evidence says whose evidence a look used.
type Evidence struct {
	// Reporting counts the replicas whose evidence is in, this gateway
	// included; Of counts the fleet's replicas known in the stage.
	Reporting int `json:"reporting"`
	Of        int `json:"of"`
	// Missing are the replicas left out, with when they last answered.
	Missing []SilentReplica `json:"missing,omitempty"`
}

// SilentReplica is a replica whose evidence is not in.
type SilentReplica struct {
	ID string `json:"id"`
	// LastAnswered is zero when it never answered for this rollout.
	LastAnswered time.Time `json:"last_answered,omitzero"`
	// Gone is set when it is no longer in the fleet's list (stopped, or
	// its lease expired).
	Gone  bool   `json:"gone,omitempty"`
	Error string `json:"error,omitempty"`
}

// Phase is where a rollout is.
type Phase string

// Phases. The last four are terminal.
const (
	// PhaseShadow: the canary only receives shadow copies.
	PhaseShadow Phase = "shadow"
	// PhaseProgressing: the canary serves its stage's weight of live traffic.
	PhaseProgressing Phase = "progressing"
	// PhasePaused: waiting for a human (resume, promote, abort).
	PhasePaused Phase = "paused"
	// PhaseFinalBake: the canary holds 100% and is watched for the plan's
	// final_bake against the stable's last measurements; a regression
	// gives the stable all traffic back (rolled_back), the end of the
	// period succeeds.
	PhaseFinalBake Phase = "final_bake"
	// PhaseSucceeded: the canary holds 100% and is the new stable.
	PhaseSucceeded Phase = "succeeded"
	// PhaseRolledBack: a gate failed (or the deadline passed) and traffic
	// went back to the stable.
	PhaseRolledBack Phase = "rolled_back"
	// PhaseAborted: a human aborted it; traffic went back to the stable.
	PhaseAborted Phase = "aborted"
	// PhaseUndone: it had succeeded, and undo gave the old stable all
	// traffic back.
	PhaseUndone Phase = "undone"
)

// Predicate is the phase as the predicate of a sentence about a rollout:
// "has succeeded", "was rolled back", "is paused".
func (p Phase) Predicate() string {
	switch p {
	case PhaseShadow:
		return "is in the shadow phase"
	case PhaseFinalBake:
		return "is in its final bake"
	case PhaseSucceeded:
		return "has succeeded"
	case PhaseRolledBack:
		return "was rolled back"
	case PhaseAborted:
		return "was aborted"
	case PhaseUndone:
		return "was undone"
	}
	return "is " + string(p)
}

// Terminal reports whether the rollout has ended.
func (p Phase) Terminal() bool {
	switch p {
	case PhaseSucceeded, PhaseRolledBack, PhaseAborted, PhaseUndone:
		return true
	}
	return false
}

// Action is a manual command.
type Action string

// Actions a human can take (API and CLI).
const (
	ActionPause       Action = "pause"
	ActionResume      Action = "resume"
	ActionPromote     Action = "promote"
	ActionPromoteFull Action = "promote-full"
	ActionAbort       Action = "abort"
	ActionRetry       Action = "retry"
	ActionUndo        Action = "undo"
)

// Actions lists every Action.
var Actions = []Action{ActionPause, ActionResume, ActionPromote, ActionPromoteFull, ActionAbort, ActionRetry, ActionUndo}

// Rollout is one run that moves traffic from Stable to Canary, as the API
// shows it. The controller stores it with the state of its sequential
// tests (rollout.Rollout), whole, after every transition and every few
// seconds.
type Rollout struct {
	ID       string    `json:"id"`
	Endpoint string    `json:"endpoint"`
	Stable   string    `json:"stable"`
	Canary   string    `json:"canary"`
	Plan     spec.Plan `json:"plan"`
	Phase    Phase     `json:"phase"`
	// PausedFrom is the phase a paused rollout resumes to.
	PausedFrom Phase `json:"paused_from,omitempty"`
	// Stage is the index in Plan.Stages, or ShadowStage.
	Stage int `json:"stage"`
	// Weight is the canary's live weight the rollout last set.
	Weight spec.Percent `json:"weight"`
	// StageStarted is when the current stage (or shadow phase) began: its
	// evidence (requests, gates' windows) counts from here, across pauses.
	StageStarted time.Time `json:"stage_started"`
	// DeadlineFrom is when the stage's progress deadline started: the
	// stage's start, or the last resume. Zero in rollouts stored before it
	// existed: StageStarted (see DeadlineStart).
	DeadlineFrom time.Time `json:"deadline_from,omitempty"`
	// StageRequests is the canary's split requests in the stage so far,
	// across pauses and restarts; DeadlineRequestsFrom what it was when
	// the deadline in requests (progress_deadline_requests) last started.
	StageRequests        uint64 `json:"stage_requests,omitempty"`
	DeadlineRequestsFrom uint64 `json:"deadline_requests_from,omitempty"`
	// Baked is the time served in the current stage while progressing;
	// downtime and pauses do not count.
	Baked spec.Duration `json:"baked"`
	// LastLook is when the controller last looked (for Baked).
	LastLook time.Time `json:"last_look"`
	// AwaitingConfirmation is set while the final step waits for the
	// confirm-promotion webhook.
	AwaitingConfirmation bool `json:"awaiting_confirmation,omitempty"`
	// TimedOut is set once the plan's timeout has passed and its action
	// (pause) was taken: a resumed rollout is not paused for it again.
	TimedOut bool `json:"timed_out,omitempty"`
	// Reason says, in words, why the rollout is where it is.
	Reason string `json:"reason"`
	// Gates are the latest verdicts of the current stage.
	Gates []GateResult `json:"gates"`
	// Evidence says whose evidence the last look used, in cluster mode:
	// the replicas reporting of the fleet's (nil with one gateway).
	Evidence *Evidence `json:"evidence,omitempty"`
	// Estimate is how long the rollout was expected to take when it
	// started, at the endpoint's traffic then, with warnings when a stage
	// would not decide within its deadline. Nil when none could be made.
	Estimate *Estimate `json:"estimate,omitempty"`
	// MirrorBefore is the canary's mirror percent before the rollout, put
	// back when the rollout ends.
	MirrorBefore spec.Percent `json:"mirror_before"`
	StartedAt    time.Time    `json:"started_at"`
	UpdatedAt    time.Time    `json:"updated_at"`
	FinishedAt   *time.Time   `json:"finished_at,omitempty"`
	// SucceededAt, on an undone rollout, is when it had succeeded (its
	// FinishedAt then); the reason keeps why it had.
	SucceededAt *time.Time `json:"succeeded_at,omitempty"`
}

// DeadlineStart is when the current stage's progress deadline started.
func (r *Rollout) DeadlineStart() time.Time {
	if r.DeadlineFrom.IsZero() {
		return r.StageStarted
	}
	return r.DeadlineFrom
}

// StageWeight is the canary weight of stage i (100 after the last).
func (r *Rollout) StageWeight(i int) spec.Percent {
	if i < 0 {
		return 0
	}
	if i >= len(r.Plan.Stages) {
		return spec.Full
	}
	return r.Plan.Stages[i].Weight
}

// Traffic is the split the rollout wants: canary at w, stable the rest.
func (r *Rollout) Traffic(w spec.Percent) spec.Weights {
	t := spec.Weights{}
	if w < spec.Full {
		t[r.Stable] = spec.Full - w
	}
	if w > 0 {
		t[r.Canary] = w
	}
	return t
}

// StartRequest starts a rollout: the canary, optionally the stable, and
// overrides of the endpoint's plan.
type StartRequest struct {
	Canary string `yaml:"canary" json:"canary"`
	// Stable: empty means the deployment holding all live traffic.
	Stable string `yaml:"stable,omitempty" json:"stable,omitempty"`
	// Force starts the rollout even though the canary has no healthy
	// backend (Options.Health).
	Force bool `yaml:"force,omitempty" json:"force,omitempty"`
	// Plan fields given here replace the endpoint's plan's.
	spec.Plan `yaml:",inline"`
}

// RolloutList is the answer of GET .../rollouts.
type RolloutList struct {
	Rollouts []Rollout `json:"rollouts"`
}

// RolloutAnswer is the answer of GET .../rollout, of a start and of an
// action: the rollout and the state of its sequential tests. That state
// is the controller's (its form changes between versions; the gates'
// verdicts and evidence say what it shows), so the contract leaves it
// opaque.
type RolloutAnswer struct {
	Rollout
	Analysis json.RawMessage `json:"analysis,omitempty"`
}
