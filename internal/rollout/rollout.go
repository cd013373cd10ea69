// Package rollout moves a canary from shadow to 100% of traffic, stage by
// stage, on the verdicts of internal/analysis, and rolls it back on its own
// when a gate fails.
//
// The state machine is the pure function Next: it takes a rollout, what
// was observed (verdicts, counts, a manual action) and the time, and
// returns the new rollout and the effects to apply (traffic, mirror,
// events). It reads no clock and does no I/O. The Controller is the thin
// loop around it: it gathers inputs from telemetry, calls Next, commits the
// new state together with its traffic change and events in one store
// transaction, and looks again a second later.
package rollout

import (
	"fmt"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/spec"
)

// Phase and Action are the API's (api.Phase, api.Action); the names below
// keep the controller's code short.
type (
	Phase  = api.Phase
	Action = api.Action
)

// Phases and actions: see api.
const (
	PhaseShadow      = api.PhaseShadow
	PhaseProgressing = api.PhaseProgressing
	PhasePaused      = api.PhasePaused
	PhaseFinalBake   = api.PhaseFinalBake
	PhaseSucceeded   = api.PhaseSucceeded
	PhaseRolledBack  = api.PhaseRolledBack
	PhaseAborted     = api.PhaseAborted
	PhaseUndone      = api.PhaseUndone

	ActionPause       = api.ActionPause
	ActionResume      = api.ActionResume
	ActionPromote     = api.ActionPromote
	ActionPromoteFull = api.ActionPromoteFull
	ActionAbort       = api.ActionAbort
	ActionRetry       = api.ActionRetry
	ActionUndo        = api.ActionUndo
)

// Actions lists every Action.
var Actions = api.Actions

// ShadowStage is the Stage index of the shadow phase.
const ShadowStage = -1

// MaxTickGap is the longest gap between two looks that still counts as
// bake time; a longer one (the daemon was down, or stalled) does not.
const MaxTickGap = 5 * time.Second

// Rollout is one run that moves traffic from Stable to Canary, as stored:
// the API's view and the state of its sequential tests. It is persisted
// whole after every transition and every few seconds.
type Rollout struct {
	api.Rollout
	// Analysis is the state of the sequential tests. The API shows it
	// (api.RolloutAnswer) but does not define its form.
	Analysis *analysis.State `json:"analysis,omitempty"`
}

// Input is what the controller observed at one look.
type Input struct {
	Now time.Time
	// Action is a manual command, or empty.
	Action Action
	// Result holds the live stage's verdicts, also while a live stage is
	// paused (ignored in the shadow phase).
	Result analysis.Result
	// ShadowGate is the shadow phase's verdict (shadow phase only).
	ShadowGate *analysis.GateResult
	// CanaryRequests is the canary's split-routed requests in this stage.
	CanaryRequests uint64
	// Coverage says whose evidence the look used, in cluster mode (nil:
	// this gateway's alone, the only one).
	Coverage *fleet.Coverage
	// TrafficChanged is set when the endpoint's traffic is not what the
	// rollout last set: someone changed it by hand.
	TrafficChanged string
	// Confirmed reports the confirm-promotion webhook's answer when the
	// rollout awaits it: nil not asked or failed, true confirmed.
	Confirmed bool
	// NoHealthyBackend, set when none of the canary's backends may take a
	// request at the look, is that cause in words ("green had no healthy
	// backend: 27 requests answered 5xx"): a rollback names it first.
	NoHealthyBackend string
}

// Effect is what the controller must apply, atomically with the new state.
type Effect struct {
	// Traffic, when set, is the new split.
	Traffic spec.Weights
	// Mirror, when set, is the canary's new mirror percent.
	Mirror *spec.Percent
	// Events to record, with their evidence.
	Events []Event
	// StartStage asks the controller to fix the analysis' thresholds for
	// the stage now starting (at Weight).
	StartStage bool
	// AskConfirmation asks the controller to call the confirm-promotion
	// webhook.
	AskConfirmation bool
	// StartFinalBake asks the controller to start the analysis' final
	// bake, with the stable's measurements of the stage just left.
	StartFinalBake bool
}

// Event is a rollout event before it is stored.
type Event struct {
	Type    string
	Message string
	Data    any
}

// Event types of rollouts.
const (
	EventStarted    = "rollout.started"
	EventStage      = "rollout.stage"
	EventGate       = "rollout.gate"
	EventPaused     = "rollout.paused"
	EventResumed    = "rollout.resumed"
	EventSucceeded  = "rollout.succeeded"
	EventRolledBack = "rollout.rolled_back"
	EventAborted    = "rollout.aborted"
	EventUndone     = "rollout.undone"
)

// ErrAction is returned (wrapped) for an action the rollout's phase does
// not allow; the API answers 409.
type ErrAction struct {
	Action Action
	Phase  Phase
	Why    string
}

func (e *ErrAction) Error() string {
	return fmt.Sprintf("cannot %s a rollout that %s: %s", e.Action, e.Phase.Predicate(), e.Why)
}

// Next is the state machine: from r and what was observed at in.Now, the
// new rollout and what to apply. It is pure.
func Next(r Rollout, in Input) (Rollout, Effect, error) {
	r.Reason = withoutCoverage(r.Reason)
	next, eff, err := decide(r, in)
	if err != nil || in.Coverage == nil {
		return next, eff, err
	}
	next.Evidence = in.Coverage
	if w := coverageWords(*in.Coverage); w != "" {
		next.Reason += coverageSep + w
		for i := range eff.Events {
			eff.Events[i].Message += coverageSep + w
		}
	}
	return next, eff, nil
}

// coverageSep starts the words on whose evidence a look was made, at the
// end of a reason (taken off before the next look decides).
const coverageSep = "; judged on "

func withoutCoverage(reason string) string {
	w, _, _ := strings.Cut(reason, coverageSep)
	return w
}

// coverageWords says whose evidence a look used when some replica's is
// missing ("" when every replica's is in).
func coverageWords(c fleet.Coverage) string {
	if c.Reporting >= c.Of {
		return ""
	}
	missing := make([]string, 0, len(c.Missing))
	for _, m := range c.Missing {
		var w string
		switch {
		case m.LastAnswered.IsZero():
			w = m.ID + " has not answered"
		default:
			w = fmt.Sprintf("%s has not answered since %s", m.ID, m.LastAnswered.UTC().Format("15:04:05"))
		}
		if m.Gone {
			w += " and left the fleet's list"
		} else if m.Error != "" {
			w += " (" + m.Error + ")"
		}
		missing = append(missing, w)
	}
	return fmt.Sprintf("evidence from %d of %d replicas: %s", c.Reporting, c.Of, strings.Join(missing, "; "))
}

// decide is Next without the coverage words.
func decide(r Rollout, in Input) (Rollout, Effect, error) {
	var eff Effect
	r.Gates = append([]analysis.GateResult(nil), r.Gates...)
	now := in.Now
	// Bake time (and the final bake's) counts only while progressing and
	// looked at regularly.
	if gap := now.Sub(r.LastLook); (r.Phase == PhaseProgressing || r.Phase == PhaseFinalBake) && !r.LastLook.IsZero() && gap > 0 && gap <= MaxTickGap && !r.AwaitingConfirmation {
		r.Baked += spec.Duration(gap)
	}
	r.LastLook = now
	r.UpdatedAt = now

	if in.CanaryRequests > 0 && (r.Phase == PhaseProgressing || r.Phase == PhasePaused && r.PausedFrom == PhaseProgressing) {
		r.StageRequests = in.CanaryRequests
	}
	if in.Action != "" {
		return act(r, in, eff)
	}
	if r.Plan.Timeout > 0 && !r.TimedOut && !r.Phase.Terminal() && now.Sub(r.StartedAt) >= r.Plan.Timeout.D() {
		return timeout(r, eff)
	}
	switch r.Phase {
	case PhaseShadow:
		return stepShadow(r, in, eff)
	case PhaseProgressing:
		return stepLive(r, in, eff)
	case PhaseFinalBake:
		return stepFinalBake(r, in, eff)
	case PhasePaused:
		return stepPaused(r, in, eff)
	}
	return r, eff, nil
}

// timeout takes the plan's on_timeout action once the rollout has run for
// its timeout: a rollback, or a pause (only once).
func timeout(r Rollout, eff Effect) (Rollout, Effect, error) {
	why := fmt.Sprintf("the rollout's timeout of %s passed (%s)", r.Plan.Timeout.D(), stageName(r))
	if r.Plan.OnTimeout != spec.DeadlinePause {
		return rollbackWith(r, eff, why)
	}
	r.TimedOut = true
	if r.Phase == PhasePaused {
		r.Reason = why + "; it was already paused: " + r.Reason
		eff.Events = append(eff.Events, Event{Type: EventPaused, Message: fmt.Sprintf("rollout of %s on %s stays paused (%s): %s", r.Canary, r.Endpoint, stageName(r), why)})
		return r, eff, nil
	}
	return pause(r, eff, why)
}

// stepFinalBake watches the canary at 100%: a failed gate gives the stable
// all traffic back; the end of the period succeeds.
func stepFinalBake(r Rollout, in Input, eff Effect) (Rollout, Effect, error) {
	if in.TrafficChanged != "" {
		return pause(r, eff, handChange(in))
	}
	recordGates(&r, &eff, in.Result.Gates)
	if in.Result.Failed {
		return rollbackWith(r, eff, failedWords(in)+" — degraded at 100% during the final bake: "+in.Result.FailedReasons())
	}
	if r.Baked.D() >= r.Plan.FinalBake.D() {
		return succeed(r, eff, in.Now, fmt.Sprintf("%s served 100%% for the final bake of %s with no regression", r.Canary, r.Plan.FinalBake.D()))
	}
	return r, eff, nil
}

// stepPaused keeps a paused live stage protected: a pause stops progress,
// never the gates. The controller judges every slice the canary serves
// while paused, and a gate that fails rolls it back as it would while
// progressing; nothing else moves until a human acts. A pause of the
// shadow phase has no live canary to protect.
func stepPaused(r Rollout, in Input, eff Effect) (Rollout, Effect, error) {
	if r.PausedFrom != PhaseProgressing && r.PausedFrom != PhaseFinalBake || len(in.Result.Gates) == 0 {
		return r, eff, nil
	}
	recordGates(&r, &eff, in.Result.Gates)
	if in.Result.Failed {
		r.PausedFrom = ""
		return rollbackWith(r, eff, failedWords(in)+" — gate failed while paused: "+in.Result.FailedReasons())
	}
	return r, eff, nil
}

func handChange(in Input) string {
	return "traffic changed by hand (" + in.TrafficChanged + "); resume to continue from this stage, or abort"
}

func stepShadow(r Rollout, in Input, eff Effect) (Rollout, Effect, error) {
	if in.TrafficChanged != "" {
		return pause(r, eff, handChange(in))
	}
	if in.ShadowGate == nil {
		return deadline(r, eff, in.Now)
	}
	g := *in.ShadowGate
	recordGates(&r, &eff, []analysis.GateResult{g})
	switch g.Verdict {
	case analysis.Fail:
		return rollbackWith(r, eff, g.Summary+", before any live traffic — shadow comparison failed before any live traffic: "+g.Reason)
	case analysis.Pass:
		return startLive(r, eff, in.Now, "shadow phase passed: "+g.Reason)
	}
	return deadline(r, eff, in.Now)
}

// startLive leaves the shadow phase for the first live stage.
func startLive(r Rollout, eff Effect, now time.Time, why string) (Rollout, Effect, error) {
	r = enterStage(r, 0, now, why)
	eff.Traffic = r.Traffic(r.Weight)
	eff.StartStage = true
	if r.Plan.Shadow != nil && !r.Plan.Shadow.KeepMirror {
		eff.Mirror = &r.MirrorBefore
	}
	eff.Events = append(eff.Events, Event{Type: EventStage,
		Message: fmt.Sprintf("%s: %s now at %s%% (stage 1 of %d)", why, r.Canary, r.Weight, len(r.Plan.Stages)),
		Data:    map[string]any{"stage": 0, "weight": r.Weight}})
	return r, eff, nil
}

func stepLive(r Rollout, in Input, eff Effect) (Rollout, Effect, error) {
	if in.TrafficChanged != "" {
		return pause(r, eff, handChange(in))
	}
	recordGates(&r, &eff, in.Result.Gates)
	if in.Result.Failed {
		return rollbackWith(r, eff, failedWords(in)+" — gate failed: "+in.Result.FailedReasons())
	}
	// The gates keep watching while the final step waits for confirmation.
	if r.AwaitingConfirmation {
		if in.Confirmed {
			r.AwaitingConfirmation = false
			return promoteFull(r, eff, in.Now, "promotion confirmed by the confirm-promotion webhook")
		}
		eff.AskConfirmation = true
		return deadline(r, eff, in.Now)
	}
	if in.Result.SampleRatioMismatch {
		return pause(r, eff, in.Result.SampleRatio.Summary+" — sample ratio mismatch, the canary's measured share does not match its weight, so its numbers cannot be trusted: "+in.Result.SampleRatio.Reason)
	}
	bake := r.Plan.StageBake(r.Stage)
	minReq := r.Plan.StageMinRequests(r.Stage)
	if in.Result.Passed && r.Baked.D() >= bake && in.CanaryRequests >= uint64(minReq) {
		return advance(r, eff, in.Now, fmt.Sprintf("stage %d (%s%%) passed every gate after %s and %s canary requests: %s", r.Stage+1, r.Weight, r.Baked.D().Round(time.Second), analysis.Count(int64(in.CanaryRequests)), passedWords(in.Result)))
	}
	r.Reason = waiting(r, in)
	return deadline(r, eff, in.Now)
}

// passedWords is what the gates showed, in their words.
func passedWords(res analysis.Result) string {
	var parts []string
	for _, g := range res.Gates {
		parts = append(parts, g.Summary)
	}
	return strings.Join(parts, "; ")
}

// failedWords is the rollback's plain words: the canary's lack of a
// healthy backend first, when that was the case, then the failed gates'
// summaries.
func failedWords(in Input) string {
	var parts []string
	if in.NoHealthyBackend != "" {
		parts = append(parts, in.NoHealthyBackend)
	}
	for _, g := range in.Result.Gates {
		if g.Verdict == analysis.Fail {
			parts = append(parts, g.Summary)
		}
	}
	return strings.Join(parts, "; ")
}

// waiting says, in words, what a live stage that did not advance waits
// for: each gate that has not passed, then the bake time and min_requests,
// with the time the most canary requests asked for take at the stage's
// rate so far, and a warning when that is past the progress deadline.
func waiting(r Rollout, in Input) string {
	var gates, stage []string
	var more int64
	for _, g := range in.Result.Gates {
		if g.Verdict == analysis.Pass {
			continue
		}
		gates = append(gates, strings.TrimPrefix(g.Summary, analysis.Waiting))
		if n, ok := g.Evidence["more_canary_requests"].(int64); ok {
			more = max(more, n)
		}
	}
	if minReq := uint64(r.Plan.StageMinRequests(r.Stage)); in.CanaryRequests < minReq {
		n := int64(minReq - in.CanaryRequests)
		more = max(more, n)
		stage = append(stage, fmt.Sprintf("the stage needs %s more %s requests (min_requests %s)", analysis.Count(n), r.Canary, analysis.Count(int64(minReq))))
	}
	if bake := r.Plan.StageBake(r.Stage); r.Baked.D() < bake {
		stage = append(stage, fmt.Sprintf("the stage bakes for %s (%s served)", bake, r.Baked.D().Round(time.Second)))
	}
	if r.AwaitingConfirmation {
		stage = append(stage, "the confirm-promotion webhook has not confirmed yet")
	}
	if len(gates)+len(stage) == 0 {
		return r.Reason
	}
	eta := ""
	if more > 0 && in.CanaryRequests > 0 && r.Baked > 0 {
		perSecond := float64(in.CanaryRequests) / r.Baked.D().Seconds()
		d := time.Duration(min(float64(more)/perSecond, 1e8) * float64(time.Second)) // at most ~3 years: no overflow
		eta = fmt.Sprintf(" (~%s at the current %s requests/s)", analysis.Roughly(d), fmtRate(perSecond))
		if limit := r.Plan.ProgressDeadline.D(); limit > 0 {
			if left := limit - in.Now.Sub(r.DeadlineStart()); d > left {
				eta += fmt.Sprintf(deadlineFirst+"(%s) comes first, then the rollout will %s", limit, r.Plan.OnDeadline)
			}
		}
		if n := int64(r.Plan.ProgressDeadlineRequests); n > 0 && eta != "" && !strings.Contains(eta, deadlineFirst) {
			if left := n - int64(r.StageRequests-min(r.DeadlineRequestsFrom, r.StageRequests)); more > left {
				eta += fmt.Sprintf(deadlineFirst+"(%s canary requests) comes first, then the rollout will %s", analysis.Count(n), r.Plan.OnDeadline)
			}
		}
	}
	if len(gates) > 0 {
		gates[len(gates)-1] += eta
	} else {
		stage[0] += eta
	}
	return analysis.Waiting + strings.Join(append(gates, stage...), "; ")
}

// deadlineFirst starts the warning of a waiting reason whose estimate is
// past the progress deadline.
const deadlineFirst = "; the progress deadline "

func fmtRate(x float64) string {
	if x >= 10 {
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2g", x)
}

// deadline applies the plan's deadline action when the stage has waited
// too long without a decision.
func deadline(r Rollout, eff Effect, now time.Time) (Rollout, Effect, error) {
	limit := r.Plan.ProgressDeadline.D()
	byTime := limit > 0 && now.Sub(r.DeadlineStart()) >= limit
	n := uint64(r.Plan.ProgressDeadlineRequests)
	byRequests := n > 0 && r.Stage != ShadowStage && r.StageRequests-min(r.DeadlineRequestsFrom, r.StageRequests) >= n
	if !byTime && !byRequests {
		return r, eff, nil
	}
	why := fmt.Sprintf("no decision within the progress deadline of %s (%s)", limit, stageName(r))
	again := limit.String()
	if byRequests {
		why = fmt.Sprintf("no decision within the progress deadline of %s canary requests (%s)", analysis.Count(int64(n)), stageName(r))
		again = analysis.Count(int64(n)) + " canary requests"
	}
	if strings.HasPrefix(r.Reason, analysis.Waiting) {
		w, _, _ := strings.Cut(r.Reason, deadlineFirst)
		why += "; it was " + w
	}
	if r.Plan.OnDeadline == spec.DeadlineRollback {
		return rollbackWith(r, eff, why)
	}
	return pause(r, eff, why+fmt.Sprintf("; resume gives it another %s, promote moves on, abort gives %s everything", again, r.Stable))
}

func stageName(r Rollout) string {
	if r.Stage == ShadowStage {
		return "shadow phase"
	}
	return fmt.Sprintf("stage %d of %d at %s%%", r.Stage+1, len(r.Plan.Stages), r.Weight)
}

// recordGates keeps the latest verdicts and emits an event for every gate
// whose verdict changed.
func recordGates(r *Rollout, eff *Effect, gates []analysis.GateResult) {
	prev := map[string]analysis.Verdict{}
	for _, g := range r.Gates {
		prev[g.Gate] = g.Verdict
	}
	for _, g := range gates {
		if old, ok := prev[g.Gate]; !ok || old != g.Verdict {
			eff.Events = append(eff.Events, Event{Type: EventGate,
				Message: fmt.Sprintf("gate %s: %s (%s): %s — %s", g.Gate, g.Verdict, stageName(*r), g.Summary, g.Reason),
				Data:    map[string]any{"stage": r.Stage, "weight": r.Weight, "gate": g}})
		}
	}
	r.Gates = append([]analysis.GateResult(nil), gates...)
}

func enterStage(r Rollout, i int, now time.Time, why string) Rollout {
	r.Stage = i
	r.Phase = PhaseProgressing
	r.Weight = r.StageWeight(i)
	r.StageStarted = now
	r.DeadlineFrom = now
	r.StageRequests, r.DeadlineRequestsFrom = 0, 0
	r.Baked = 0
	r.Reason = why
	r.Gates = nil
	return r
}

// advance moves to the next stage, or to the promotion after the last one.
func advance(r Rollout, eff Effect, now time.Time, why string) (Rollout, Effect, error) {
	next := r.Stage + 1
	if next >= len(r.Plan.Stages) || r.StageWeight(next) >= spec.Full {
		if r.Plan.ConfirmPromotion != nil {
			r.AwaitingConfirmation = true
			r.Reason = why + "; waiting for the confirm-promotion webhook before going to 100%"
			eff.AskConfirmation = true
			eff.Events = append(eff.Events, Event{Type: EventStage, Message: r.Reason, Data: map[string]any{"stage": r.Stage, "weight": r.Weight, "awaiting_confirmation": true}})
			return r, eff, nil
		}
		return promoteFull(r, eff, now, why)
	}
	r = enterStage(r, next, now, why)
	eff.Traffic = r.Traffic(r.Weight)
	eff.StartStage = true
	eff.Events = append(eff.Events, Event{Type: EventStage,
		Message: fmt.Sprintf("%s: %s now at %s%% (stage %d of %d)", why, r.Canary, r.Weight, next+1, len(r.Plan.Stages)),
		Data:    map[string]any{"stage": next, "weight": r.Weight}})
	return r, eff, nil
}

// promoteFull gives the canary 100%: it becomes the stable, at once or
// after the plan's final bake. The old stable stays registered, so undo
// (and a rollback in the final bake) is instant.
func promoteFull(r Rollout, eff Effect, now time.Time, why string) (Rollout, Effect, error) {
	r.PausedFrom = ""
	r.Weight = spec.Full
	r.Stage = len(r.Plan.Stages) - 1
	r.AwaitingConfirmation = false
	eff.Traffic = r.Traffic(spec.Full)
	eff.Mirror = &r.MirrorBefore
	if fb := r.Plan.FinalBake.D(); fb > 0 {
		r.Phase = PhaseFinalBake
		r.StageStarted, r.DeadlineFrom, r.Baked, r.Gates = now, now, 0, nil
		r.Reason = fmt.Sprintf("%s; final bake: %s holds 100%% and is watched for %s against %s's last measurements", why, r.Canary, fb, r.Stable)
		eff.StartFinalBake = true
		eff.Events = append(eff.Events, Event{Type: EventStage,
			Message: fmt.Sprintf("%s now at 100%% of %s: %s; final bake for %s, %s stays registered and gets all traffic back if %s degrades", r.Canary, r.Endpoint, why, fb, r.Stable, r.Canary),
			Data:    map[string]any{"stage": r.Stage, "weight": r.Weight, "final_bake": fb.String()}})
		return r, eff, nil
	}
	return succeed(r, eff, now, why)
}

// succeed ends the rollout with the canary at 100%.
func succeed(r Rollout, eff Effect, now time.Time, why string) (Rollout, Effect, error) {
	r.Phase = PhaseSucceeded
	r.Reason = why
	r.FinishedAt = &now
	eff.Events = append(eff.Events, Event{Type: EventSucceeded,
		Message: fmt.Sprintf("%s promoted to 100%% of %s: %s; %s stays registered for undo", r.Canary, r.Endpoint, why, r.Stable),
		Data:    map[string]any{"stable": r.Stable, "canary": r.Canary}})
	return r, eff, nil
}

// rollbackWith puts all traffic back on the stable in one routing change.
func rollbackWith(r Rollout, eff Effect, why string) (Rollout, Effect, error) {
	return end(r, eff, PhaseRolledBack, EventRolledBack, why, fmt.Sprintf("rolled back %s on %s: %s", r.Canary, r.Endpoint, why))
}

func end(r Rollout, eff Effect, phase Phase, typ, why, msg string) (Rollout, Effect, error) {
	now := r.UpdatedAt
	r.Phase = phase
	r.Weight = 0
	r.Reason = why
	r.AwaitingConfirmation = false
	r.FinishedAt = &now
	eff.Traffic = r.Traffic(0)
	eff.Mirror = &r.MirrorBefore
	eff.Events = append(eff.Events, Event{Type: typ, Message: msg, Data: map[string]any{"stage": r.Stage, "gates": r.Gates}})
	return r, eff, nil
}

func pause(r Rollout, eff Effect, why string) (Rollout, Effect, error) {
	r.PausedFrom = r.Phase
	r.Phase = PhasePaused
	r.Reason = why
	eff.Events = append(eff.Events, Event{Type: EventPaused, Message: fmt.Sprintf("rollout of %s on %s paused (%s): %s", r.Canary, r.Endpoint, stageName(r), why)})
	return r, eff, nil
}

// act applies a manual action.
func act(r Rollout, in Input, eff Effect) (Rollout, Effect, error) {
	refuse := func(why string) (Rollout, Effect, error) {
		return r, Effect{}, &ErrAction{Action: in.Action, Phase: r.Phase, Why: why}
	}
	switch in.Action {
	case ActionPause:
		if r.Phase != PhaseShadow && r.Phase != PhaseProgressing && r.Phase != PhaseFinalBake {
			return refuse("only a running rollout can be paused")
		}
		return pause(r, eff, "paused by hand")
	case ActionResume:
		if r.Phase != PhasePaused {
			return refuse("only a paused rollout can be resumed")
		}
		r.Phase = r.PausedFrom
		r.PausedFrom = ""
		// The deadline starts again from the resume, so that a human who
		// resumes a stage that ran out of time gives it another period;
		// the stage's requests and evidence so far still count (a stage
		// at low traffic would otherwise never reach min_requests).
		r.DeadlineFrom = in.Now
		r.DeadlineRequestsFrom = r.StageRequests
		r.Reason = "resumed by hand"
		if in.TrafficChanged != "" {
			// Resume re-asserts the rollout's split over a hand change.
			eff.Traffic = r.Traffic(r.Weight)
		}
		eff.Events = append(eff.Events, Event{Type: EventResumed, Message: fmt.Sprintf("rollout of %s on %s resumed (%s)", r.Canary, r.Endpoint, stageName(r))})
		return r, eff, nil
	case ActionPromote:
		if r.Phase.Terminal() {
			return refuse("the rollout has ended")
		}
		if r.Phase == PhasePaused {
			r.Phase = r.PausedFrom
			r.PausedFrom = ""
		}
		if r.Phase == PhaseShadow {
			return startLive(r, eff, in.Now, "promoted by hand out of the shadow phase")
		}
		if r.Phase == PhaseFinalBake {
			return succeed(r, eff, in.Now, "final bake ended by hand")
		}
		r.AwaitingConfirmation = false
		if r.Stage+1 >= len(r.Plan.Stages) || r.StageWeight(r.Stage+1) >= spec.Full {
			return promoteFull(r, eff, in.Now, "promoted by hand past the last stage")
		}
		return advance(r, eff, in.Now, "promoted by hand")
	case ActionPromoteFull:
		if r.Phase.Terminal() {
			return refuse("the rollout has ended")
		}
		if r.Phase == PhaseFinalBake || r.Phase == PhasePaused && r.PausedFrom == PhaseFinalBake {
			r.PausedFrom = ""
			return succeed(r, eff, in.Now, "final bake ended by hand")
		}
		return promoteFull(r, eff, in.Now, "promoted to 100% by hand")
	case ActionAbort:
		if r.Phase.Terminal() {
			return refuse("the rollout has ended; use undo after a success")
		}
		return end(r, eff, PhaseAborted, EventAborted, "aborted by hand", fmt.Sprintf("aborted %s on %s by hand: all traffic back on %s", r.Canary, r.Endpoint, r.Stable))
	case ActionUndo:
		if r.Phase != PhaseSucceeded {
			return refuse("only a succeeded rollout can be undone")
		}
		now := in.Now
		// The history keeps that it had succeeded, when and why.
		r.SucceededAt = r.FinishedAt
		r.Reason = "undone by hand; it had succeeded: " + r.Reason
		r.Phase = PhaseUndone
		r.Weight = 0
		r.FinishedAt = &now
		eff.Traffic = r.Traffic(0)
		eff.Events = append(eff.Events, Event{Type: EventUndone, Message: fmt.Sprintf("undid the rollout of %s on %s: all traffic back on %s", r.Canary, r.Endpoint, r.Stable)})
		return r, eff, nil
	case ActionRetry:
		return refuse("retry starts a new rollout; the controller handles it")
	}
	return refuse(fmt.Sprintf("unknown action %q", in.Action))
}
