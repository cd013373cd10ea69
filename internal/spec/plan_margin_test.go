package spec

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestStageMarginDefaults: the graded default margins go from 2 at the
// first stage to 1.5 at the stage before the last, evenly spaced; the
// last stage (usually 100%) and a plan of one or two stages have 1.5; a
// stage's own margin wins, and WithDefaults writes the margins into the
// stages.
func TestStageMarginDefaults(t *testing.T) {
	for _, tc := range []struct {
		weights []Percent
		want    []float64
	}{
		{[]Percent{Full}, []float64{1.5}},
		{[]Percent{5000, Full}, []float64{1.5, 1.5}},
		{[]Percent{500, 2500, 5000, Full}, []float64{2, 1.75, 1.5, 1.5}},
		{[]Percent{100, 500, 2500, 5000, Full}, []float64{2, 2 - 0.5/3, 2 - 1.0/3, 1.5, 1.5}},
	} {
		p := Plan{}
		for _, w := range tc.weights {
			p.Stages = append(p.Stages, Stage{Weight: w})
		}
		var got []float64
		for i := range p.Stages {
			got = append(got, p.StageMargin(i))
		}
		if !slices.EqualFunc(got, tc.want, func(a, b float64) bool { return math.Abs(a-b) < 1e-12 }) {
			t.Errorf("%d stages: margins %v, want %v", len(tc.weights), got, tc.want)
		}
		d := p.WithDefaults()
		for i, s := range d.Stages {
			if s.Margin != got[i] {
				t.Errorf("%d stages: WithDefaults stage %d margin %v, want %v", len(tc.weights), i, s.Margin, got[i])
			}
		}
	}
	if got := (Plan{}).WithDefaults(); len(got.Stages) != 4 || got.Stages[0].Margin != 2 || got.Stages[1].Margin != 1.75 || got.Stages[2].Margin != 1.5 {
		t.Errorf("default plan stages %+v, want 5, 25, 50, 100 with margins 2, 1.75, 1.5, 1.5", got.Stages)
	}
	own := Plan{Stages: []Stage{{Weight: 500, Margin: 1.2}, {Weight: 2500}, {Weight: 5000}, {Weight: Full}}}
	if m := own.StageMargin(0); m != 1.2 {
		t.Errorf("stage with margin 1.2: StageMargin = %v", m)
	}
	if m := own.StageMargin(1); m != 1.75 {
		t.Errorf("stage 1 without a margin next to one with: StageMargin = %v, want the graded 1.75", m)
	}
}

// TestSequentialAlphaShares: the sequential gate's errors_alpha and
// latency_alpha may add up to the plan's alpha, not more; WithDefaults
// fills in half of alpha each, or the rest of alpha for the one missing.
func TestSequentialAlphaShares(t *testing.T) {
	seq := func(alpha, errA, latA float64) Plan {
		return Plan{Alpha: alpha, Gates: []Gate{{Type: GateSequential, ErrorsAlpha: errA, LatencyAlpha: latA}}}
	}
	for _, tc := range []struct {
		name string
		plan Plan
		msg  string // "" for valid
	}{
		{"over the default alpha", seq(0, 0.03, 0.03), "errors_alpha 0.03 + latency_alpha 0.03 exceed the plan's alpha 0.05"},
		{"over alpha", seq(0.1, 0.06, 0.05), "errors_alpha 0.06 + latency_alpha 0.05 exceed the plan's alpha 0.1"},
		{"one share over alpha", seq(0.05, 0.06, 0), "errors_alpha 0.06 + latency_alpha 0 exceed the plan's alpha 0.05"},
		{"adding up to alpha", seq(0.05, 0.02, 0.03), ""},
		{"adding up to the default alpha", seq(0, 0.02, 0.03), ""},
		{"below alpha", seq(0.05, 0.01, 0.01), ""},
		{"defaults", seq(0.05, 0, 0), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			field := "gates[0]"
			if tc.msg == "" {
				field = ""
			}
			checkValidate(t, tc.plan, field, tc.msg)
		})
	}

	for _, tc := range []struct {
		plan       Plan
		errA, latA float64
	}{
		{seq(0, 0, 0), 0.025, 0.025},
		{seq(0.1, 0, 0), 0.05, 0.05},
		{Plan{}, 0.025, 0.025},
		{seq(0.05, 0.01, 0), 0.01, 0.04},
		{seq(0.05, 0, 0.02), 0.03, 0.02},
		{seq(0.05, 0.02, 0.03), 0.02, 0.03},
	} {
		d := tc.plan.WithDefaults()
		g := d.Gates[0]
		if g.Type != GateSequential || math.Abs(g.ErrorsAlpha-tc.errA) > 1e-12 || math.Abs(g.LatencyAlpha-tc.latA) > 1e-12 {
			t.Errorf("WithDefaults(alpha %v, errors_alpha %v, latency_alpha %v): %s %v/%v, want %v/%v",
				tc.plan.Alpha, gateField(tc.plan, true), gateField(tc.plan, false), g.Type, g.ErrorsAlpha, g.LatencyAlpha, tc.errA, tc.latA)
		}
	}
}

func gateField(p Plan, errors bool) float64 {
	if len(p.Gates) == 0 {
		return 0
	}
	if errors {
		return p.Gates[0].ErrorsAlpha
	}
	return p.Gates[0].LatencyAlpha
}

// TestValidatePlanFields: each bad value of the plan's promotion, latency
// and warm-up fields is one problem at its field path, and the values at
// the bounds are accepted.
func TestValidatePlanFields(t *testing.T) {
	nine := []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9}
	for _, tc := range []struct {
		name  string
		plan  Plan
		field string // "" for valid
		msg   string
	}{
		{"promotion_error negative", Plan{PromotionError: -0.1}, "promotion_error", "between 0 and 1"},
		{"promotion_error 1", Plan{PromotionError: 1}, "promotion_error", "between 0 and 1"},
		{"promotion_error 0.2", Plan{PromotionError: 0.2}, "", ""},
		{"error_allowance negative", Plan{ErrorAllowance: -0.2}, "error_allowance", "percentage points"},
		{"error_allowance 100", Plan{ErrorAllowance: 100}, "error_allowance", "percentage points"},
		{"error_allowance 5", Plan{ErrorAllowance: 5}, "", ""},
		{"quantile 0", Plan{Latency: &LatencyPlan{Quantiles: []float64{0}}}, "latency.quantiles[0]", "between 0 and 1"},
		{"quantile 1", Plan{Latency: &LatencyPlan{Quantiles: []float64{0.5, 1}}}, "latency.quantiles[1]", "1: must be between 0 and 1"},
		{"quantile 99", Plan{Latency: &LatencyPlan{Quantiles: []float64{0.5, 0.9, 99}}}, "latency.quantiles[2]", "99: must be between 0 and 1"},
		{"quantile negative", Plan{Latency: &LatencyPlan{Quantiles: []float64{-0.5}}}, "latency.quantiles[0]", "between 0 and 1"},
		{"quantile NaN", Plan{Latency: &LatencyPlan{Quantiles: []float64{math.NaN()}}}, "latency.quantiles[0]", "between 0 and 1"},
		{"10 quantiles", Plan{Latency: &LatencyPlan{Quantiles: append(slices.Clone(nine), 0.95)}}, "latency.quantiles", "10 quantiles: at most 9"},
		{"9 quantiles", Plan{Latency: &LatencyPlan{Quantiles: nine}}, "", ""},
		{"tolerance negative", Plan{Latency: &LatencyPlan{Tolerance: -5}}, "latency.tolerance", "must not be negative"},
		{"tolerance_ms negative", Plan{Latency: &LatencyPlan{ToleranceMS: -0.5}}, "latency.tolerance_ms", "must not be negative"},
		{"tolerances", Plan{Latency: &LatencyPlan{Tolerance: 1, ToleranceMS: 0.01}}, "", ""},
		{"warmup requests -2", Plan{Warmup: &Warmup{Requests: -2}}, "warmup.requests", "-2: must be from 0 to 100000"},
		{"warmup requests 100001", Plan{Warmup: &Warmup{Requests: 100_001}}, "warmup.requests", "100001"},
		{"warmup requests 100000", Plan{Warmup: &Warmup{Requests: 100_000}}, "", ""},
		{"no warmup", Plan{Warmup: &Warmup{Requests: -1, Time: Duration(-time.Second)}}, "", ""},
		{"warmup time 11m", Plan{Warmup: &Warmup{Time: Duration(11 * time.Minute)}}, "warmup.time", "11m0s: must be at most 10m0s"},
		{"warmup time 10m", Plan{Warmup: &Warmup{Time: Duration(10 * time.Minute)}}, "", ""},
		{"margin 1", Plan{Stages: []Stage{{Weight: 500, Margin: 1}}}, "stages[0].margin", "must be above 1 and at most 10"},
		{"margin below 1", Plan{Stages: []Stage{{Weight: 500}, {Weight: Full, Margin: 0.5}}}, "stages[1].margin", "0.5: must be above 1"},
		{"margin negative", Plan{Stages: []Stage{{Weight: 500, Margin: -2}}}, "stages[0].margin", "must be above 1"},
		{"margin 11", Plan{Stages: []Stage{{Weight: 500, Margin: 11}}}, "stages[0].margin", "11: must be above 1 and at most 10"},
		{"margin 10", Plan{Stages: []Stage{{Weight: 500, Margin: 10}}}, "", ""},
		{"margin 1.01", Plan{Stages: []Stage{{Weight: 500, Margin: 1.01}}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkValidate(t, tc.plan, tc.field, tc.msg)
		})
	}
}

// TestWithDefaultsPlanFields: WithDefaults fills in the promotion error,
// the error allowance, the latency plan and the warm-up, and keeps what
// the plan sets; the accessors read the same values either way.
func TestWithDefaultsPlanFields(t *testing.T) {
	d := Plan{}.WithDefaults()
	if d.PromotionError != DefaultPromotionError || d.ErrorAllowance != DefaultErrorAllowance {
		t.Errorf("promotion_error %v, error_allowance %v; want %v, %v", d.PromotionError, d.ErrorAllowance, DefaultPromotionError, DefaultErrorAllowance)
	}
	if l := d.Latency; l == nil || !slices.Equal(l.Quantiles, []float64{0.5, 0.9, 0.99, 0.999}) || l.Tolerance != 20 || l.ToleranceMS != 2 || l.Allowance != 1 {
		t.Errorf("latency %+v, want quantiles 0.5, 0.9, 0.99, 0.999, tolerance 20%%, 2 ms, allowance 1 point", d.Latency)
	}
	if w := d.Warmup; w == nil || w.Requests != 100 || w.Time.D() != 10*time.Second {
		t.Errorf("warmup %+v, want 100 requests, 10s", d.Warmup)
	}
	for _, p := range []Plan{{}, d} {
		if !slices.Equal(p.LatencyQuantiles(), []float64{0.5, 0.9, 0.99, 0.999}) || p.LatencyTolerance() != 20 || p.LatencyToleranceMS() != 2 ||
			p.WarmupRequests() != 100 || p.WarmupTime() != 10*time.Second {
			t.Errorf("accessors: %v, %v%%, %v ms, warm-up %d requests %v", p.LatencyQuantiles(), p.LatencyTolerance(), p.LatencyToleranceMS(), p.WarmupRequests(), p.WarmupTime())
		}
	}

	own := Plan{
		Latency: &LatencyPlan{Quantiles: []float64{0.99}, Tolerance: 1, ToleranceMS: 0.01},
		Warmup:  &Warmup{Requests: -1, Time: Duration(-time.Second)},
	}
	od := own.WithDefaults()
	if !slices.Equal(od.LatencyQuantiles(), []float64{0.99}) || od.LatencyTolerance() != 1 || od.LatencyToleranceMS() != 0.01 {
		t.Errorf("own latency plan after defaults: %v, %v%%, %v ms", od.LatencyQuantiles(), od.LatencyTolerance(), od.LatencyToleranceMS())
	}
	if od.WarmupRequests() != 0 || od.WarmupTime() != 0 {
		t.Errorf("no warm-up after defaults: %d requests, %v; want none", od.WarmupRequests(), od.WarmupTime())
	}
	od.Latency.Quantiles[0] = 0.5
	if own.Latency.Quantiles[0] != 0.99 {
		t.Errorf("WithDefaults shares the latency quantiles with the plan")
	}
}

// checkValidate: with field empty, plan and its defaults are valid;
// otherwise Validate reports one problem, at field, saying msg.
func checkValidate(t *testing.T, plan Plan, field, msg string) {
	t.Helper()
	err := plan.Validate()
	if field == "" {
		if err != nil {
			t.Errorf("Validate = %v, want nil", err)
		}
		d := plan.WithDefaults()
		if err := d.Validate(); err != nil {
			t.Errorf("Validate after WithDefaults = %v, want nil", err)
		}
		return
	}
	ps := Problems(err)
	if len(ps) != 1 || ps[0].Field != field || !strings.Contains(ps[0].Message, msg) {
		t.Errorf("Validate = %v, want one problem at %s saying %q", err, field, msg)
	}
}

// TestFinalBakeAndTimeout: a final bake takes its share of alpha (20% by
// default, the rest of whatever is set otherwise), a share for a final bake
// the plan does not have is refused, and the timeout's keys are checked.
func TestFinalBakeAndTimeout(t *testing.T) {
	bake := func(errA, latA, fbA float64) Plan {
		return Plan{Alpha: 0.05, FinalBake: Duration(10 * time.Minute),
			Gates: []Gate{{Type: GateSequential, ErrorsAlpha: errA, LatencyAlpha: latA, FinalBakeAlpha: fbA}}}
	}
	for _, tc := range []struct {
		plan          Plan
		errA, latA, f float64
	}{
		{bake(0, 0, 0), 0.02, 0.02, 0.01},
		{bake(0.03, 0, 0), 0.03, 0.02 * 2 / 3, 0.02 / 3},
		{bake(0, 0, 0.02), 0.015, 0.015, 0.02},
		{bake(0.02, 0.02, 0), 0.02, 0.02, 0.01},
		{Plan{Alpha: 0.05, Gates: []Gate{{Type: GateSequential}}}, 0.025, 0.025, 0},
	} {
		g := tc.plan.WithDefaults().Gates[0]
		if math.Abs(g.ErrorsAlpha-tc.errA) > 1e-12 || math.Abs(g.LatencyAlpha-tc.latA) > 1e-12 || math.Abs(g.FinalBakeAlpha-tc.f) > 1e-12 {
			t.Errorf("WithDefaults(%+v) shares %v/%v/%v, want %v/%v/%v", tc.plan.Gates[0], g.ErrorsAlpha, g.LatencyAlpha, g.FinalBakeAlpha, tc.errA, tc.latA, tc.f)
		}
		if d := tc.plan.WithDefaults(); d.Validate() != nil {
			err := d.Validate()
			t.Errorf("Validate(WithDefaults(%+v)) = %v", tc.plan.Gates[0], err)
		}
	}
	if d := (Plan{}).WithDefaults(); d.OnTimeout != DeadlineRollback || d.Timeout != 0 || d.FinalBake != 0 {
		t.Errorf("defaults: timeout %v on_timeout %q final_bake %v, want none, rollback, none", d.Timeout, d.OnTimeout, d.FinalBake)
	}
	checkValidate(t, bake(0.03, 0.02, 0.01), "gates[0]", "errors_alpha 0.03 + latency_alpha 0.02 + final_bake_alpha 0.01 exceed the plan's alpha 0.05")
	checkValidate(t, Plan{Gates: []Gate{{Type: GateSequential, FinalBakeAlpha: 0.01}}}, "gates[0].final_bake_alpha", "the plan has no final_bake")
	checkValidate(t, Plan{FinalBake: Duration(-time.Second)}, "final_bake", "must not be negative")
	checkValidate(t, bake(0.025, 0.025, 0), "gates[0].final_bake_alpha", "the final bake has no share of alpha left")
	checkValidate(t, Plan{Timeout: Duration(-time.Second)}, "timeout", "must not be negative")
	checkValidate(t, Plan{OnTimeout: "promote"}, "on_timeout", `"promote" is not one of pause, rollback`)
}
