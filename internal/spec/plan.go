package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Defaults of a rollout plan (see Plan).
const (
	DefaultBake             = 30 * time.Second
	DefaultMinRequests      = 100
	DefaultProgressDeadline = 10 * time.Minute
	DefaultAlpha            = 0.05
	DefaultShadowMinCompare = 200
	DefaultShadowMatchRate  = 0.95
	DefaultGateQuantile     = 0.99
	DefaultWebhookTimeout   = 5 * time.Second
	// DefaultPromotionError bounds the probability of promoting a canary
	// worse than the last stage's margin (see Plan.PromotionError).
	DefaultPromotionError = 0.05
	// DefaultFirstMargin and DefaultLastMargin are the graded margins of
	// the stages that set none: the first stage rules out a canary twice as
	// bad as the stable, the stage before 100% one 1.5 times as bad, and the
	// stages between are spaced evenly.
	DefaultFirstMargin = 2.0
	DefaultLastMargin  = 1.5
	// DefaultErrorAllowance is the absolute part of the error margin, in
	// percentage points: a canary within it of the stable's error rate is
	// within the margin whatever the ratio (it is what lets a canary of a
	// stable with no errors be promoted).
	DefaultErrorAllowance = 0.2
	// DefaultWarmupRequests and DefaultWarmupTime are how much of a new
	// stage's canary traffic is not judged on latency (see Warmup).
	DefaultWarmupRequests = 100
	DefaultWarmupTime     = 10 * time.Second
	// DefaultLatencyTolerance (percent) and DefaultLatencyToleranceMS are
	// how much slower than the stable's quantile a canary request may be
	// before it counts as slow: the larger of the two.
	DefaultLatencyTolerance   = 20.0
	DefaultLatencyToleranceMS = 2.0
	// DefaultLatencyAllowance is the absolute part of every latency margin,
	// in percentage points of requests (see LatencyPlan.Allowance).
	DefaultLatencyAllowance = 1.0
)

// DefaultLatencyQuantiles are the stable's quantiles the sequential gate
// judges latency at.
var DefaultLatencyQuantiles = []float64{0.5, 0.9, 0.99, 0.999}

// maxLatencyQuantiles bounds Plan.Latency.Quantiles; maxWarmupRequests
// and maxWarmupTime bound Plan.Warmup (a longer warm-up leaves latency
// unjudged for most of a stage).
const (
	maxLatencyQuantiles = 9
	maxWarmupRequests   = 100_000
	maxWarmupTime       = 10 * time.Minute
)

// DefaultStages are the canary weights of a plan that names none.
var DefaultStages = []Percent{500, 2500, 5000, Full}

// DeadlineAction is what a stage does when its progress deadline passes
// without a decision.
type DeadlineAction string

// Deadline actions.
const (
	// DeadlinePause pauses the rollout for a human (the default).
	DeadlinePause DeadlineAction = "pause"
	// DeadlineRollback rolls the canary back.
	DeadlineRollback DeadlineAction = "rollback"
)

// GateType names a check evaluated during a stage.
type GateType string

// Gate types.
const (
	// GateSequential is the anytime-valid sequential test of
	// internal/stats on errors and latency against the stable (the default).
	GateSequential GateType = "sequential"
	// GateErrorRate checks the canary's error rate: at most Max (a
	// fraction), and at most MaxIncrease percentage points over the stable.
	GateErrorRate GateType = "error_rate"
	// GateLatency checks a latency quantile: at most Max milliseconds, and
	// at most MaxIncrease percent over the stable's.
	GateLatency GateType = "latency"
	// GateTTFB is GateLatency on the time to first byte.
	GateTTFB GateType = "ttfb"
	// GateMatchRate checks the shadow comparison's match rate: at least Min.
	GateMatchRate GateType = "match_rate"
)

// GateTypes lists every valid GateType.
var GateTypes = []GateType{GateSequential, GateErrorRate, GateLatency, GateTTFB, GateMatchRate}

// Plan is how a rollout moves a canary from shadow to 100%. Every field
// has a default, so the zero Plan is the built-in plan: stages 5, 25, 50,
// 100 with the sequential gate.
type Plan struct {
	// Shadow, when set, runs a shadow phase before any live traffic.
	// Nil: no shadow phase.
	Shadow *ShadowPhase `yaml:"shadow,omitempty" json:"shadow,omitempty"`
	// Stages are the canary weights in order; the last is usually 100.
	// A stage is a number (the weight) or {weight, bake, min_requests}.
	// Empty: 5, 25, 50, 100.
	Stages []Stage `yaml:"stages,omitempty" json:"stages,omitempty"`
	// Bake is the minimum time a stage runs before it may advance, for
	// stages that do not set their own. Zero: 30s.
	Bake Duration `yaml:"bake,omitempty" json:"bake,omitempty"`
	// MinRequests is the minimum number of canary requests a stage needs
	// before it may advance, for stages that do not set their own. Zero: 100.
	MinRequests int `yaml:"min_requests,omitempty" json:"min_requests,omitempty"`
	// ProgressDeadline bounds how long one stage may wait for a decision.
	// Zero: 10m, unless ProgressDeadlineRequests is set (then none).
	ProgressDeadline Duration `yaml:"progress_deadline,omitempty" json:"progress_deadline,omitempty"`
	// ProgressDeadlineRequests bounds a stage by the canary requests it
	// serves without a decision instead of (or besides) by time: what a
	// stage at low or changing traffic needs, since its evidence grows
	// with requests, not seconds. Zero: none.
	ProgressDeadlineRequests int `yaml:"progress_deadline_requests,omitempty" json:"progress_deadline_requests,omitempty"`
	// OnDeadline is what happens when the deadline passes. Empty: pause.
	OnDeadline DeadlineAction `yaml:"on_deadline,omitempty" json:"on_deadline,omitempty"`
	// Alpha bounds the probability of rolling back a canary that is no
	// worse than the stable, over the whole rollout; it is split across
	// the metrics tested. Zero: 0.05.
	Alpha float64 `yaml:"alpha,omitempty" json:"alpha,omitempty"`
	// PromotionError bounds the probability that the sequential gate
	// promotes a canary worse than the last stage's margin, over the whole
	// rollout; it is split across the metrics as Alpha is. Zero: 0.05.
	PromotionError float64 `yaml:"promotion_error,omitempty" json:"promotion_error,omitempty"`
	// ErrorAllowance is the absolute part of every stage's error margin,
	// in percentage points. Zero: 0.2.
	ErrorAllowance float64 `yaml:"error_allowance,omitempty" json:"error_allowance,omitempty"`
	// Latency is how the sequential gate judges latency. Nil: the defaults.
	Latency *LatencyPlan `yaml:"latency,omitempty" json:"latency,omitempty"`
	// Warmup is the start of every live stage whose canary latency is not
	// judged: new connections and a server that has not served yet (or not
	// at this load) are slow for reasons a rollout should not act on.
	// Errors are always judged. Nil: the defaults.
	Warmup *Warmup `yaml:"warmup,omitempty" json:"warmup,omitempty"`
	// Gates are the checks of every live stage. Empty: one sequential gate.
	Gates []Gate `yaml:"gates,omitempty" json:"gates,omitempty"`
	// ConfirmPromotion, when set, is called before the last stage; the
	// rollout holds until it answers 2xx.
	ConfirmPromotion *Webhook `yaml:"confirm_promotion,omitempty" json:"confirm_promotion,omitempty"`
	// FinalBake keeps watching the canary this long after it reaches 100%
	// (the per-stage Bake is the wait before a stage may advance): with no
	// stable left to compare with, against the stable's measurements of
	// the last stage and the gates' absolute thresholds; a canary that
	// degrades gets all traffic back on the stable on its own. The rollout
	// succeeds when the period ends. Zero: no final bake (success at 100%).
	FinalBake Duration `yaml:"final_bake,omitempty" json:"final_bake,omitempty"`
	// Timeout bounds the whole rollout, from its start to its end (shadow,
	// stages, pauses and the final bake included). Zero: none.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
	// OnTimeout is what happens when Timeout passes: rollback (the
	// default) or pause (once: a resumed rollout is not timed out again).
	OnTimeout DeadlineAction `yaml:"on_timeout,omitempty" json:"on_timeout,omitempty"`
}

// ShadowPhase is the part of a rollout where the canary only receives
// shadow copies and its answers are compared with the stable's.
type ShadowPhase struct {
	// Mirror is the percent of live requests copied to the canary.
	Mirror Percent `yaml:"mirror" json:"mirror"`
	// MinCompared is how many compared requests the phase needs. Zero: 200.
	MinCompared int `yaml:"min_compared,omitempty" json:"min_compared,omitempty"`
	// MinMatchRate is the lowest acceptable match rate (0..1). Zero: 0.95.
	MinMatchRate float64 `yaml:"min_match_rate,omitempty" json:"min_match_rate,omitempty"`
	// KeepMirror keeps mirroring to the canary during the live stages, so a
	// 5% canary is still compared on many more requests. False: the
	// mirror stops when the first live stage starts.
	KeepMirror bool `yaml:"keep_mirror,omitempty" json:"keep_mirror,omitempty"`
}

// LatencyPlan is how the sequential gate judges latency: at each of the
// stable's Quantiles (fixed when a stage starts, from the stable's last
// minute), a canary request is slow when it is slower than that quantile
// plus the tolerance, a stable request when it is slower than the quantile.
// The canary regresses at that quantile when its share of slow requests is
// higher than the stable's.
type LatencyPlan struct {
	// Quantiles of the stable's latency, each in (0, 1). Empty: 0.5, 0.9,
	// 0.99, 0.999 (the body, the tail, and the far tail where a few very
	// slow requests show first).
	Quantiles []float64 `yaml:"quantiles,omitempty" json:"quantiles,omitempty"`
	// Tolerance in percent of the stable's quantile. Zero: 20.
	Tolerance float64 `yaml:"tolerance,omitempty" json:"tolerance,omitempty"`
	// ToleranceMS in milliseconds; the larger tolerance applies, so that
	// sub-millisecond differences nobody can feel are not regressions.
	// Zero: 2.
	ToleranceMS float64 `yaml:"tolerance_ms,omitempty" json:"tolerance_ms,omitempty"`
	// Allowance is the absolute part of every stage's latency margin, in
	// percentage points of requests: a canary whose share of slow requests
	// is within it of the stable's is within the margin whatever the ratio.
	// It is what lets a tail the stable rarely reaches (a quantile fixed in
	// a slow minute) be shown. Zero: 1.
	Allowance float64 `yaml:"allowance,omitempty" json:"allowance,omitempty"`
}

// Warmup bounds the start of a stage whose latency is not judged: it ends
// once the stage's canary has served Requests split requests and Time has
// passed, whichever is later.
type Warmup struct {
	// Requests of the stage's canary. Zero: 100; -1: none.
	Requests int `yaml:"requests,omitempty" json:"requests,omitempty"`
	// Time since the stage started. Zero: 10s; negative: none.
	Time Duration `yaml:"time,omitempty" json:"time,omitempty"`
}

// WarmupRequests and WarmupTime are the plan's warm-up after defaults.
func (p Plan) WarmupRequests() int {
	switch {
	case p.Warmup == nil || p.Warmup.Requests == 0:
		return DefaultWarmupRequests
	case p.Warmup.Requests < 0:
		return 0
	}
	return p.Warmup.Requests
}

// WarmupTime is the plan's warm-up time after defaults.
func (p Plan) WarmupTime() time.Duration {
	switch {
	case p.Warmup == nil || p.Warmup.Time == 0:
		return DefaultWarmupTime
	case p.Warmup.Time < 0:
		return 0
	}
	return p.Warmup.Time.D()
}

// Stage is one step with live traffic.
type Stage struct {
	// Weight is the canary's share of live traffic.
	Weight Percent `yaml:"weight" json:"weight"`
	// Bake overrides Plan.Bake for this stage. Zero: the plan's.
	Bake Duration `yaml:"bake,omitempty" json:"bake,omitempty"`
	// MinRequests overrides Plan.MinRequests. Zero: the plan's.
	MinRequests int `yaml:"min_requests,omitempty" json:"min_requests,omitempty"`
	// Margin is the largest error regression this stage's promotion
	// evidence rules out: the canary leaves the stage only once shown to
	// have at most Margin times the stable's error rate (or at most the
	// plan's ErrorAllowance above it). (Latency's margin is its tolerance,
	// at every stage: see LatencyPlan.) Zero: graded from 2 at the first
	// stage to 1.5 at the stage before 100%.
	Margin float64 `yaml:"margin,omitempty" json:"margin,omitempty"`
}

// UnmarshalJSON accepts the shorthand `5` as well as `{"weight": 5, "bake": "1m"}`.
func (s *Stage) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		var p Percent
		if err := p.UnmarshalJSON(b); err != nil {
			return err
		}
		*s = Stage{Weight: p}
		return nil
	}
	type plain Stage
	var full plain
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields() // as strict as the body around it (api.DecodeJSON)
	if err := dec.Decode(&full); err != nil {
		return err
	}
	*s = Stage(full)
	return nil
}

// Gate is one check of a live stage. Which fields apply depends on Type.
type Gate struct {
	// Type is the check; see the Gate* constants.
	Type GateType `yaml:"type" json:"type"`
	// Max: error_rate, the highest error rate (fraction 0..1);
	// latency/ttfb, the highest quantile in milliseconds. Zero: no bound.
	Max float64 `yaml:"max,omitempty" json:"max,omitempty"`
	// MaxIncrease: error_rate, percentage points over the stable;
	// latency/ttfb, percent over the stable's quantile. Zero: no bound.
	MaxIncrease float64 `yaml:"max_increase,omitempty" json:"max_increase,omitempty"`
	// Quantile for latency/ttfb, e.g. 0.99. Zero: 0.99.
	Quantile float64 `yaml:"quantile,omitempty" json:"quantile,omitempty"`
	// Min for match_rate: the lowest match rate (0..1).
	Min float64 `yaml:"min,omitempty" json:"min,omitempty"`
	// ErrorsAlpha and LatencyAlpha, for sequential: the shares of the
	// plan's Alpha given to the errors test and to the latency tests (split
	// equally across the quantiles). Together at most Alpha. Zero: half of
	// Alpha each.
	ErrorsAlpha  float64 `yaml:"errors_alpha,omitempty" json:"errors_alpha,omitempty"`
	LatencyAlpha float64 `yaml:"latency_alpha,omitempty" json:"latency_alpha,omitempty"`
	// FinalBakeAlpha, for sequential in a plan with a final_bake: the share
	// of Alpha given to the final bake's tests (the canary against the
	// stable's last measurements; half to errors, half to latency). With
	// none of the three set: errors and latency 40% of Alpha each, the final
	// bake 20%; a share left unset gets the rest in those proportions.
	FinalBakeAlpha float64 `yaml:"final_bake_alpha,omitempty" json:"final_bake_alpha,omitempty"`
	// RollbackOnly makes the gate able to roll the canary back, but never
	// hold a stage: its pass or inconclusive does not count for advancing.
	// Use it to keep the sequential test's fast rollback while threshold
	// gates decide when to move on. False: the gate must pass to advance.
	RollbackOnly bool `yaml:"rollback_only,omitempty" json:"rollback_only,omitempty"`
}

// Webhook is an HTTP receiver of rollout notifications.
type Webhook struct {
	// URL receives a JSON POST.
	URL string `yaml:"url" json:"url"`
	// Secret signs each body with HMAC-SHA256 (header
	// X-Modelgate-Signature: sha256=<hex>). Empty: unsigned.
	Secret string `yaml:"secret,omitempty" json:"secret,omitempty"`
	// Timeout of one delivery attempt. Zero: 5s.
	Timeout Duration `yaml:"timeout,omitempty" json:"timeout,omitempty"`
}

// Redacted is the plan with its confirm-promotion webhook redacted (see
// Webhook.Redacted): what may be shown to a reader without the right to
// change it, and what goes into events.
func (p Plan) Redacted() Plan {
	if p.ConfirmPromotion != nil {
		w := p.ConfirmPromotion.Redacted()
		p.ConfirmPromotion = &w
	}
	return p
}

// RedactedSecret stands for a webhook's secret in what the read-only token
// reads.
const RedactedSecret = "(redacted)"

// Redacted is the hook as a reader without the right to change it may see
// it: its URL by scheme and host only (see [RedactURL]) and its secret, if
// any, as RedactedSecret.
func (w Webhook) Redacted() Webhook {
	w.URL = RedactURL(w.URL)
	if w.Secret != "" {
		w.Secret = RedactedSecret
	}
	return w
}

// RedactURL names a webhook by scheme and host only: webhook URLs (Slack's,
// for one) often carry their token in the path or query.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid url)"
	}
	return u.Scheme + "://" + u.Host
}

// StageBake is the bake time of stage i after defaults.
func (p Plan) StageBake(i int) time.Duration {
	if d := p.Stages[i].Bake; d > 0 {
		return d.D()
	}
	return p.Bake.D()
}

// StageMinRequests is the minimum canary requests of stage i after defaults.
func (p Plan) StageMinRequests(i int) int {
	if n := p.Stages[i].MinRequests; n > 0 {
		return n
	}
	return p.MinRequests
}

// StageMargin is the margin of stage i after defaults (see Stage.Margin).
func (p Plan) StageMargin(i int) float64 {
	if m := p.Stages[i].Margin; m > 0 {
		return m
	}
	return gradedMargin(i, len(p.Stages))
}

// gradedMargin is the default margin of stage i of n: the stages before
// the last (usually 100%, where nothing is promoted) go from
// DefaultFirstMargin down to DefaultLastMargin.
func gradedMargin(i, n int) float64 {
	judged := n - 1 // stages whose evidence moves the canary on
	if judged <= 1 || i >= judged-1 {
		return DefaultLastMargin
	}
	return DefaultFirstMargin - (DefaultFirstMargin-DefaultLastMargin)*float64(i)/float64(judged-1)
}

// LatencyQuantiles, LatencyTolerance and LatencyToleranceMS are the
// latency settings of the sequential gate after defaults.
func (p Plan) LatencyQuantiles() []float64 {
	if p.Latency != nil && len(p.Latency.Quantiles) > 0 {
		return p.Latency.Quantiles
	}
	return DefaultLatencyQuantiles
}

// LatencyTolerance is the relative latency tolerance in percent.
func (p Plan) LatencyTolerance() float64 {
	if p.Latency != nil && p.Latency.Tolerance > 0 {
		return p.Latency.Tolerance
	}
	return DefaultLatencyTolerance
}

// LatencyToleranceMS is the absolute latency tolerance in milliseconds.
func (p Plan) LatencyToleranceMS() float64 {
	if p.Latency != nil && p.Latency.ToleranceMS > 0 {
		return p.Latency.ToleranceMS
	}
	return DefaultLatencyToleranceMS
}

// LatencyAllowance is the absolute latency allowance in percentage points.
func (p Plan) LatencyAllowance() float64 {
	if p.Latency != nil && p.Latency.Allowance > 0 {
		return p.Latency.Allowance
	}
	return DefaultLatencyAllowance
}

// WithDefaults returns a deep copy of p with every default filled in.
func (p Plan) WithDefaults() Plan {
	out := p.Clone()
	if len(out.Stages) == 0 {
		for _, w := range DefaultStages {
			out.Stages = append(out.Stages, Stage{Weight: w})
		}
	}
	if out.Bake == 0 {
		out.Bake = Duration(DefaultBake)
	}
	if out.MinRequests == 0 {
		out.MinRequests = DefaultMinRequests
	}
	if out.ProgressDeadline == 0 && out.ProgressDeadlineRequests == 0 {
		out.ProgressDeadline = Duration(DefaultProgressDeadline)
	}
	if out.OnDeadline == "" {
		out.OnDeadline = DeadlinePause
	}
	if out.Alpha == 0 {
		out.Alpha = DefaultAlpha
	}
	if out.PromotionError == 0 {
		out.PromotionError = DefaultPromotionError
	}
	if out.ErrorAllowance == 0 {
		out.ErrorAllowance = DefaultErrorAllowance
	}
	if out.Latency == nil {
		out.Latency = &LatencyPlan{}
	}
	if len(out.Latency.Quantiles) == 0 {
		out.Latency.Quantiles = append([]float64(nil), DefaultLatencyQuantiles...)
	}
	if out.Latency.Tolerance == 0 {
		out.Latency.Tolerance = DefaultLatencyTolerance
	}
	if out.Latency.ToleranceMS == 0 {
		out.Latency.ToleranceMS = DefaultLatencyToleranceMS
	}
	if out.Latency.Allowance == 0 {
		out.Latency.Allowance = DefaultLatencyAllowance
	}
	if out.Warmup == nil {
		out.Warmup = &Warmup{}
	}
	if out.Warmup.Requests == 0 {
		out.Warmup.Requests = DefaultWarmupRequests
	}
	if out.Warmup.Time == 0 {
		out.Warmup.Time = Duration(DefaultWarmupTime)
	}
	for i := range out.Stages {
		out.Stages[i].Margin = out.StageMargin(i)
	}
	if len(out.Gates) == 0 {
		out.Gates = []Gate{{Type: GateSequential}}
	}
	for i := range out.Gates {
		g := &out.Gates[i]
		if (g.Type == GateLatency || g.Type == GateTTFB) && g.Quantile == 0 {
			g.Quantile = DefaultGateQuantile
		}
		if g.Type == GateSequential {
			g.splitAlpha(out.Alpha, out.FinalBake > 0)
		}
	}
	if s := out.Shadow; s != nil {
		if s.MinCompared == 0 {
			s.MinCompared = DefaultShadowMinCompare
		}
		if s.MinMatchRate == 0 {
			s.MinMatchRate = DefaultShadowMatchRate
		}
	}
	if w := out.ConfirmPromotion; w != nil && w.Timeout == 0 {
		w.Timeout = Duration(DefaultWebhookTimeout)
	}
	if out.OnTimeout == "" {
		out.OnTimeout = DeadlineRollback
	}
	return out
}

// splitAlpha gives the sequential gate's unset alpha shares what is left of
// alpha, in the default proportions: errors and latency equal, the final
// bake (when the plan has one) half of either.
func (g *Gate) splitAlpha(alpha float64, finalBake bool) {
	shares := []*float64{&g.ErrorsAlpha, &g.LatencyAlpha}
	weights := []float64{2, 2}
	if finalBake {
		shares, weights = append(shares, &g.FinalBakeAlpha), append(weights, 1)
	}
	left, unset := alpha, 0.0
	for i, s := range shares {
		if *s == 0 {
			unset += weights[i]
		}
		left -= *s
	}
	if unset == 0 || left <= 0 {
		return // Validate explains
	}
	for i, s := range shares {
		if *s == 0 {
			*s = left * weights[i] / unset
		}
	}
}

// Clone returns a deep copy.
func (p *Plan) Clone() Plan {
	if p == nil {
		return Plan{}
	}
	out := *p
	out.Stages = append([]Stage(nil), p.Stages...)
	out.Gates = append([]Gate(nil), p.Gates...)
	if p.Shadow != nil {
		s := *p.Shadow
		out.Shadow = &s
	}
	if p.ConfirmPromotion != nil {
		w := *p.ConfirmPromotion
		out.ConfirmPromotion = &w
	}
	if p.Warmup != nil {
		w := *p.Warmup
		out.Warmup = &w
	}
	if p.Latency != nil {
		l := *p.Latency
		l.Quantiles = append([]float64(nil), p.Latency.Quantiles...)
		out.Latency = &l
	}
	return out
}

// Validate checks a plan (before or after defaults) and returns every
// problem with its field path.
func (p *Plan) Validate() error {
	if p == nil {
		return nil
	}
	var errs []error
	var prev Percent
	for i, s := range p.Stages {
		f := fmt.Sprintf("stages[%d]", i)
		if s.Weight <= 0 || s.Weight > Full {
			errs = append(errs, Problemf(f+".weight", "must be more than 0 and at most 100"))
		} else if s.Weight <= prev {
			errs = append(errs, Problemf(f+".weight", "%s is not above the previous stage's %s: stages must increase", s.Weight, prev))
		}
		prev = s.Weight
		if s.Bake < 0 {
			errs = append(errs, Problemf(f+".bake", "must not be negative"))
		}
		if s.MinRequests < 0 {
			errs = append(errs, Problemf(f+".min_requests", "must not be negative"))
		}
		if s.Margin != 0 && !(s.Margin > 1 && s.Margin <= 10) {
			errs = append(errs, Problemf(f+".margin", "%v: must be above 1 and at most 10 (e.g. 1.5: rule out a canary 1.5 times as bad as the stable)", s.Margin))
		}
	}
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"bake", p.Bake < 0}, {"min_requests", p.MinRequests < 0}, {"progress_deadline", p.ProgressDeadline < 0},
		{"progress_deadline_requests", p.ProgressDeadlineRequests < 0}, {"final_bake", p.FinalBake < 0}, {"timeout", p.Timeout < 0},
	} {
		if f.negative {
			errs = append(errs, Problemf(f.name, "must not be negative"))
		}
	}
	for _, f := range []struct {
		name string
		v    DeadlineAction
	}{{"on_deadline", p.OnDeadline}, {"on_timeout", p.OnTimeout}} {
		switch f.v {
		case "", DeadlinePause, DeadlineRollback:
		default:
			errs = append(errs, Problemf(f.name, "%q is not one of pause, rollback", f.v))
		}
	}
	if p.Alpha < 0 || p.Alpha >= 1 {
		errs = append(errs, Problemf("alpha", "must be between 0 and 1 (e.g. 0.05)"))
	}
	if p.PromotionError < 0 || p.PromotionError >= 1 {
		errs = append(errs, Problemf("promotion_error", "must be between 0 and 1 (e.g. 0.05)"))
	}
	if p.ErrorAllowance < 0 || p.ErrorAllowance >= 100 {
		errs = append(errs, Problemf("error_allowance", "must be from 0 to 100 percentage points (e.g. 0.2)"))
	}
	if l := p.Latency; l != nil {
		for i, q := range l.Quantiles {
			if !(q > 0 && q < 1) {
				errs = append(errs, Problemf(fmt.Sprintf("latency.quantiles[%d]", i), "%v: must be between 0 and 1, e.g. 0.9", q))
			}
		}
		if len(l.Quantiles) > maxLatencyQuantiles {
			errs = append(errs, Problemf("latency.quantiles", "%d quantiles: at most %d (each takes a share of alpha)", len(l.Quantiles), maxLatencyQuantiles))
		}
		if l.Tolerance < 0 {
			errs = append(errs, Problemf("latency.tolerance", "must not be negative (percent)"))
		}
		if l.ToleranceMS < 0 {
			errs = append(errs, Problemf("latency.tolerance_ms", "must not be negative (milliseconds)"))
		}
		if l.Allowance < 0 || l.Allowance >= 100 {
			errs = append(errs, Problemf("latency.allowance", "must be from 0 to 100 percentage points (e.g. 0.5)"))
		}
	}
	if w := p.Warmup; w != nil {
		if w.Requests < -1 || w.Requests > maxWarmupRequests {
			errs = append(errs, Problemf("warmup.requests", "%d: must be from 0 to %d canary requests (-1: no warm-up by requests)", w.Requests, maxWarmupRequests))
		}
		if w.Time.D() > maxWarmupTime {
			errs = append(errs, Problemf("warmup.time", "%s: must be at most %s (negative: no warm-up by time)", w.Time.D(), maxWarmupTime))
		}
	}
	alpha := p.Alpha
	if alpha == 0 {
		alpha = DefaultAlpha
	}
	for i, g := range p.Gates {
		f := fmt.Sprintf("gates[%d]", i)
		errs = append(errs, Prefix(f, g.Validate()))
		if g.Type == GateSequential && g.ErrorsAlpha+g.LatencyAlpha+g.FinalBakeAlpha > alpha*(1+1e-9) {
			shares := fmt.Sprintf("errors_alpha %v + latency_alpha %v", g.ErrorsAlpha, g.LatencyAlpha)
			if g.FinalBakeAlpha != 0 || p.FinalBake > 0 {
				shares += fmt.Sprintf(" + final_bake_alpha %v", g.FinalBakeAlpha)
			}
			errs = append(errs, Problemf(f, "%s exceed the plan's alpha %v: the shares of the false-rollback bound must add up to at most alpha", shares, alpha))
		}
		if g.Type == GateSequential && p.FinalBake > 0 && g.FinalBakeAlpha == 0 && g.ErrorsAlpha+g.LatencyAlpha >= alpha*(1-1e-9) {
			errs = append(errs, Problemf(f+".final_bake_alpha", "the final bake has no share of alpha left (errors_alpha %v + latency_alpha %v = alpha %v): lower one of them, or set final_bake_alpha and lower them to make room",
				g.ErrorsAlpha, g.LatencyAlpha, alpha))
		}
		if g.Type == GateSequential && g.FinalBakeAlpha > 0 && p.FinalBake == 0 {
			errs = append(errs, Problemf(f+".final_bake_alpha", "is set but the plan has no final_bake: set final_bake (e.g. 10m) or remove it"))
		}
	}
	if s := p.Shadow; s != nil {
		if s.Mirror <= 0 || s.Mirror > Full {
			errs = append(errs, Problemf("shadow.mirror", "must be more than 0 and at most 100"))
		}
		if s.MinCompared < 0 {
			errs = append(errs, Problemf("shadow.min_compared", "must not be negative"))
		}
		if s.MinMatchRate < 0 || s.MinMatchRate > 1 {
			errs = append(errs, Problemf("shadow.min_match_rate", "must be a fraction from 0 to 1"))
		}
	}
	if w := p.ConfirmPromotion; w != nil {
		errs = append(errs, Prefix("confirm_promotion", w.Validate()))
	}
	return errors.Join(errs...)
}

// Validate checks one gate.
func (g Gate) Validate() error {
	var errs []error
	switch g.Type {
	case GateSequential:
		if g.ErrorsAlpha < 0 || g.ErrorsAlpha >= 1 {
			errs = append(errs, Problemf("errors_alpha", "must be between 0 and 1"))
		}
		if g.LatencyAlpha < 0 || g.LatencyAlpha >= 1 {
			errs = append(errs, Problemf("latency_alpha", "must be between 0 and 1"))
		}
		if g.FinalBakeAlpha < 0 || g.FinalBakeAlpha >= 1 {
			errs = append(errs, Problemf("final_bake_alpha", "must be between 0 and 1"))
		}
	case GateErrorRate:
		if g.Max == 0 && g.MaxIncrease == 0 {
			errs = append(errs, Problemf("", "error_rate needs max (a fraction) or max_increase (percentage points)"))
		}
		if g.Max < 0 || g.Max > 1 {
			errs = append(errs, Problemf("max", "must be a fraction from 0 to 1"))
		}
	case GateLatency, GateTTFB:
		if g.Max == 0 && g.MaxIncrease == 0 {
			errs = append(errs, Problemf("", "%s needs max (milliseconds) or max_increase (percent)", g.Type))
		}
		if g.Max < 0 {
			errs = append(errs, Problemf("max", "must not be negative"))
		}
		if g.Quantile < 0 || g.Quantile >= 1 {
			errs = append(errs, Problemf("quantile", "must be between 0 and 1, e.g. 0.99"))
		}
	case GateMatchRate:
		if g.Min <= 0 || g.Min > 1 {
			errs = append(errs, Problemf("min", "must be a fraction above 0 and at most 1"))
		}
	case "":
		errs = append(errs, Problemf("type", "is required: one of sequential, error_rate, latency, ttfb, match_rate"))
	default:
		errs = append(errs, Problemf("type", "%q is not one of sequential, error_rate, latency, ttfb, match_rate", g.Type))
	}
	if g.MaxIncrease < 0 {
		errs = append(errs, Problemf("max_increase", "must not be negative"))
	}
	return errors.Join(errs...)
}

// Validate checks one webhook.
func (w Webhook) Validate() error {
	var errs []error
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, Problemf("url", "%q is not an http or https URL", w.URL))
	}
	if w.Timeout < 0 {
		errs = append(errs, Problemf("timeout", "must not be negative"))
	}
	return errors.Join(errs...)
}
