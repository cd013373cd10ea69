package api

import (
	"github.com/modelgate/modelgate/internal/spec"
)

// Estimate is how long a rollout of the plan takes at the given traffic.
type Estimate struct {
	RequestsPerSecond float64 `json:"requests_per_second"`
	ErrorRate         float64 `json:"error_rate"`
	// Stages are the plan's stages in order. A last stage at 100% is not
	// run: the pass of the one before promotes (Promotion, no time).
	Stages []StageEstimate `json:"stages"`
	// Total is the live stages' time, from the start of the first to 100%:
	// per run, its stages' times summed (the shadow phase and the final
	// bake are not included).
	Total Span `json:"total"`
	// Shadow is the plan's shadow phase, when it has one.
	Shadow *ShadowEstimate `json:"shadow,omitempty"`
	// FinalBakeSeconds is the plan's final bake: the canary is watched at
	// 100% this long before the rollout succeeds.
	FinalBakeSeconds float64 `json:"final_bake_seconds,omitempty"`
	// EndSeconds is the median time from the start to the rollout's end:
	// the shadow phase, Total and the final bake; Undecided with Total or
	// Shadow.
	EndSeconds float64 `json:"end_seconds"`
	// WithinDeadlines is set when every stage (and the shadow phase)
	// decides within the progress deadline in the median run.
	WithinDeadlines bool `json:"within_deadlines"`
	// Text is the estimate in one line (Summary).
	Text string `json:"summary"`
	// Warnings are what the user should act on before starting, in words.
	Warnings []string `json:"warnings,omitempty"`
	// Notes qualify the estimate (assumptions, left-out runs).
	Notes []string `json:"notes,omitempty"`
	// Runs is the number of simulated rollouts the numbers come from.
	Runs int `json:"runs"`
	// MaxStageSeconds is the bound on each stage's simulated time.
	MaxStageSeconds float64 `json:"max_stage_seconds"`
}

// Span is a time estimate in seconds: the median over the runs, and the
// runs' 10th and 90th percentiles. A run whose stage did not decide within
// the bound counts as that bound: when the median one did not, Undecided
// is set and Seconds is a lower bound.
type Span struct {
	Seconds     float64 `json:"seconds"`
	LowSeconds  float64 `json:"low_seconds"`
	HighSeconds float64 `json:"high_seconds"`
	Undecided   bool    `json:"undecided,omitempty"`
	// Decided counts the runs that decided (or promoted, for the total).
	Decided int `json:"decided_runs"`
}

// StageEstimate is one stage's estimate.
type StageEstimate struct {
	// Stage is the stage's number, from 1, as the controller names it.
	Stage  int          `json:"stage"`
	Weight spec.Percent `json:"weight"`
	// Promotion marks a last stage at 100%: reached by promotion, not run.
	Promotion bool `json:"promotion,omitempty"`
	Time      Span `json:"time"`
	// CanaryRequests is the median number of canary requests the stage
	// serves until it decides (over the runs that decided it).
	CanaryRequests int64 `json:"canary_requests"`
	// CanaryPerSecond is the canary's split requests per second in the
	// stage.
	CanaryPerSecond float64 `json:"canary_requests_per_second"`
	// LimitedBy is what the stage waited for last in most runs: "bake"
	// (more traffic would not shorten it), "min_requests" or "evidence";
	// empty when it does not decide.
	LimitedBy   string  `json:"limited_by,omitempty"`
	BakeSeconds float64 `json:"bake_seconds"`
	MinRequests int     `json:"min_requests"`
	// DeadlineSeconds is the plan's progress deadline (0: none),
	// DeadlineRequests its deadline in canary requests (0: none);
	// WithinDeadline is set when the median run decides within both.
	DeadlineSeconds  float64 `json:"progress_deadline_seconds"`
	DeadlineRequests int     `json:"progress_deadline_requests,omitempty"`
	WithinDeadline   bool    `json:"within_deadline"`
	// Warning says, when set, why the stage will likely stop at its
	// deadline and what to change.
	Warning string `json:"warning,omitempty"`
}

// ShadowEstimate is the shadow phase's time: until it has compared its
// minimum number of copies at the plan's mirror rate, assuming a match
// rate above the minimum.
type ShadowEstimate struct {
	Seconds         float64 `json:"seconds"`
	Compared        int     `json:"compared"`
	Undecided       bool    `json:"undecided,omitempty"` // no traffic to copy
	DeadlineSeconds float64 `json:"progress_deadline_seconds"`
	WithinDeadline  bool    `json:"within_deadline"`
	Warning         string  `json:"warning,omitempty"`
}
