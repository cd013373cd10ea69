package rollout

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

var update = flag.Bool("update", false, "rewrite testdata/words.golden from the current texts")

// arm is one deployment's traffic in a words scenario: requests a second,
// errors every so many seconds, and its latencies (a spread of five values
// around lat, the same every second).
type arm struct {
	requests, errorsPerTen int
	lat                    time.Duration
}

func (a arm) slice(start time.Time, sec int) telemetry.Slice {
	s := telemetry.Slice{Start: start, Span: time.Second, Requests: uint64(a.requests), SplitRequests: uint64(a.requests)}
	// errorsPerTen errors every ten seconds, spread evenly.
	s.SplitErrors = uint64((sec+1)*a.errorsPerTen/10 - sec*a.errorsPerTen/10)
	s.Errors = s.SplitErrors
	for i, f := range []float64{0.6, 0.8, 1, 1.2, 1.6} {
		n := a.requests / 5
		if i == 2 {
			n += a.requests % 5
		}
		s.Latency.Add(time.Duration(float64(a.lat)*f), uint64(n))
	}
	return s
}

// scenario runs a rollout of green over blue at its first stage (5%) for
// seconds, every second one slice and one look through the real analyzer
// and Next, and stops at the first transition; it returns the rollout and
// the last result.
// With a final bake, bakeCanary is the canary's traffic at 100%.
// add records a text for the golden file; TestPlainWords sets it.
var add func(name string, r Rollout, res analysis.Result)

func scenario(t *testing.T, plan spec.Plan, stable, canary arm, seconds int, tweak func(sec int, in *Input), bakeCanary ...arm) (Rollout, analysis.Result) {
	t.Helper()
	plan = plan.WithDefaults()
	a, err := analysis.New(plan)
	if err != nil {
		t.Fatal(err)
	}
	a.SetNames(analysis.Names{Stable: "blue", Canary: "green"})
	start := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	recent := telemetry.Summary{}
	for sec := range 60 {
		sl := stable.slice(start, sec)
		recent.AddSlice(sl)
	}
	r := Rollout{Rollout: api.Rollout{ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green", Plan: plan,
		Phase: PhaseProgressing, Weight: plan.Stages[0].Weight, StageStarted: start, DeadlineFrom: start, StartedAt: start, LastLook: start, Reason: "rollout started"}}
	a.StartStage(start, r.Weight, recent)
	var w analysis.Window
	var res analysis.Result
	for sec := range seconds {
		at := start.Add(time.Duration(sec) * time.Second)
		p := analysis.SlicePair{Start: at, Span: time.Second, Stable: stable.slice(at, sec), Canary: canary.slice(at, sec)}
		if r.Phase == PhaseFinalBake {
			p.Stable, p.Canary = telemetry.Slice{}, bakeCanary[0].slice(at, sec)
		}
		if err := a.Observe([]analysis.SlicePair{p}); err != nil {
			t.Fatal(err)
		}
		w.Stable.AddSlice(p.Stable)
		w.Canary.AddSlice(p.Canary)
		if r.Phase == PhaseFinalBake {
			res = a.EvaluateFinalBake(w)
		} else {
			res = a.Evaluate(plan.Stages[0], w)
		}
		in := Input{Now: at.Add(time.Second), Result: res, CanaryRequests: w.Canary.SplitRequests()}
		if tweak != nil {
			tweak(sec, &in)
		}
		next, eff, err := Next(r, in)
		if err != nil {
			t.Fatal(err)
		}
		if eff.StartFinalBake {
			a.StartFinalBake(in.Now, analysis.NewBaseline(w.Stable))
			w = analysis.Window{}
			add("final bake: promoted to 100%", next, res)
			r = next
			continue
		}
		if next.Phase != r.Phase || next.Stage != r.Stage {
			return next, res
		}
		r = next
	}
	return r, res
}

// TestPlainWords: the texts a person reads for each kind of verdict, golden
// (go test ./internal/rollout -run TestPlainWords -update rewrites them).
// Each must start with what happened or what the rollout waits for.
func TestPlainWords(t *testing.T) {
	healthy := arm{requests: 950, errorsPerTen: 95, lat: 20 * time.Millisecond}
	same := arm{requests: 50, errorsPerTen: 5, lat: 20 * time.Millisecond}
	var b strings.Builder
	add = func(name string, r Rollout, res analysis.Result) {
		fmt.Fprintf(&b, "## %s\nphase: %s\nreason: %s\n", name, r.Phase, r.Reason)
		for _, g := range res.Gates {
			fmt.Fprintf(&b, "gate %s (%s): %s\n", g.Gate, g.Verdict, g.Summary)
		}
		b.WriteString("\n")
	}

	worse := same
	worse.errorsPerTen = 50 // 10%
	r, res := scenario(t, spec.Plan{}, healthy, worse, 120, nil)
	add("rolled back: errors", r, res)

	slow := same
	slow.lat *= 2
	r, res = scenario(t, spec.Plan{}, healthy, slow, 120, nil)
	add("rolled back: latency", r, res)

	r, res = scenario(t, spec.Plan{}, healthy, same, 20, nil)
	add("waiting: the evidence grows", r, res)

	notGrowing := same
	notGrowing.errorsPerTen = 8 // 1.6%: near the first stage's 2x margin
	r, res = scenario(t, spec.Plan{Bake: spec.Duration(time.Second)}, healthy, notGrowing, 15, nil)
	add("waiting: too early to tell how long", r, res)

	r, res = scenario(t, spec.Plan{}, healthy, same, 1800, nil)
	add("advanced", r, res)

	r, res = scenario(t, spec.Plan{ProgressDeadline: spec.Duration(30 * time.Second)}, healthy, same, 60, nil)
	add("paused: progress deadline", r, res)

	r, res = scenario(t, spec.Plan{}, arm{requests: 800, errorsPerTen: 80, lat: 20 * time.Millisecond}, arm{requests: 200, errorsPerTen: 20, lat: 20 * time.Millisecond}, 120, nil)
	add("paused: sample ratio mismatch", r, res)

	r, res = scenario(t, spec.Plan{}, healthy, same, 5, func(sec int, in *Input) {
		if sec == 4 {
			in.TrafficChanged = "blue=50 green=50"
		}
	})
	add("paused: traffic changed by hand", r, res)

	r, res = scenario(t, spec.Plan{Timeout: spec.Duration(10 * time.Second)}, healthy, same, 20, nil)
	add("rolled back: timeout", r, res)

	thresholds := spec.Plan{Gates: []spec.Gate{{Type: spec.GateSequential, RollbackOnly: true}, {Type: spec.GateErrorRate, Max: 0.02}}}
	r, res = scenario(t, thresholds, healthy, worse, 120, nil)
	add("rolled back: a threshold gate", r, res)
	r, res = scenario(t, thresholds, healthy, same, 3, nil)
	add("waiting: a threshold gate's sample, a rollback-only gate", r, res)

	dead := arm{requests: 50, errorsPerTen: 500, lat: time.Millisecond} // every request answered 503
	r, res = scenario(t, spec.Plan{}, healthy, dead, 120, func(sec int, in *Input) {
		in.NoHealthyBackend = fmt.Sprintf("green had no healthy backend: %d requests answered 5xx", 50*(sec+1)) // the controller's words
	})
	add("rolled back: the canary had no healthy backend", r, res)

	bake := spec.Plan{Stages: []spec.Stage{{Weight: 500}, {Weight: spec.Full}}, FinalBake: spec.Duration(time.Hour)}
	r, res = scenario(t, bake, healthy, same, 3000, nil, arm{requests: 1000, errorsPerTen: 400, lat: 20 * time.Millisecond})
	add("rolled back: in the final bake", r, res)

	shadow := analysis.EvaluateShadow(spec.ShadowPhase{Mirror: 1000}, analysis.ShadowCounts{Compared: 400, Matched: 300}, analysis.Names{Stable: "blue", Canary: "green"})
	sr := Rollout{Rollout: api.Rollout{ID: "fraud-2", Endpoint: "fraud", Stable: "blue", Canary: "green", Phase: PhaseShadow, Stage: ShadowStage,
		Plan: spec.Plan{Shadow: &spec.ShadowPhase{Mirror: 1000}}.WithDefaults()}}
	sr, _, _ = Next(sr, Input{Now: time.Date(2026, 12, 7, 9, 1, 0, 0, time.UTC), ShadowGate: &shadow})
	add("rolled back: shadow comparison", sr, analysis.Result{Gates: []analysis.GateResult{shadow}})

	got := b.String()
	for _, block := range strings.Split(strings.TrimSpace(got), "\n\n") {
		lines := strings.Split(block, "\n")
		reason := strings.TrimPrefix(lines[2], "reason: ")
		if strings.Contains(strings.SplitN(reason, " — ", 2)[0], "statistic") || strings.HasPrefix(reason, "gate failed") {
			t.Errorf("%s: the reason does not start with plain words: %s", lines[0], reason)
		}
	}
	const golden = "testdata/words.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read %s (go test -run TestPlainWords -update writes it): %v", golden, err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("plain words (-%s +now):\n%s", golden, diff)
	}
}
