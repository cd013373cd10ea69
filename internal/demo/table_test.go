package demo

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

var sampleReport = telemetry.Report{
	Endpoint: "fraud",
	Deployments: map[string]telemetry.DeploymentReport{
		"blue": {Requests: 1520, Errors: 7, ErrorRate: 7.0 / 1520, RPM: 11400, Share: 0.95,
			LatencyMS: telemetry.Quantiles{P99: 9.87}},
		"green": {Requests: 80, Errors: 1, ErrorRate: 1.0 / 80, RPM: 600, Share: 0.05,
			LatencyMS: telemetry.Quantiles{P99: 12.1}},
		"canary-long-name": {},
	},
}

func TestFormatDeployments(t *testing.T) {
	got := formatDeployments(spec.Weights{"blue": 9500, "green": 500}, sampleReport, 8*time.Second)
	want := "" +
		"  DEPLOYMENT         WEIGHT    SHARE       RPM   ERRORS   P99 MS   (last 8s)\n" +
		"  blue                  95%    95.0%    11,400    0.46%      9.9\n" +
		"  canary-long-name       0%        -         -        -        -\n" +
		"  green                  5%     5.0%       600    1.25%     12.1\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("formatDeployments mismatch (-want +got):\n%s", diff)
	}
}

func TestTableRenderPlain(t *testing.T) {
	var out bytes.Buffer
	tab := NewTable(&out)
	if tab.Redraw {
		t.Fatal("NewTable(*bytes.Buffer).Redraw = true, want false")
	}
	for _, block := range []string{"one\ntwo\n", "three\n"} {
		if err := tab.Render(block); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := out.String(), "one\ntwo\n\nthree\n\n"; got != want {
		t.Errorf("plain output = %q, want %q", got, want)
	}
}

func TestTableRenderRedraw(t *testing.T) {
	var out bytes.Buffer
	tab := &Table{out: &out, Redraw: true}
	steps := []struct {
		block string
		keep  bool
		want  string
	}{
		// The first block is written as is.
		{"a\nb\nc\nd\n", false, "a\nb\nc\nd\n"},
		// The second goes back over those 4 lines and clears them.
		{"two\n", true, "\r\x1b[4A\x1b[Jtwo\n"},
		// After Keep the third starts below.
		{"three\n", false, "three\n"},
	}
	for i, step := range steps {
		out.Reset()
		if err := tab.Render(step.block); err != nil {
			t.Fatal(err)
		}
		if out.String() != step.want {
			t.Errorf("Render #%d wrote %q, want %q", i+1, out.String(), step.want)
		}
		if step.keep {
			tab.Keep()
		}
	}
}

func demoPlan() spec.Plan {
	return spec.Plan{
		Shadow: &spec.ShadowPhase{Mirror: 5000, MinCompared: 200, MinMatchRate: 0.85},
		Stages: []spec.Stage{{Weight: 500}, {Weight: 2500}, {Weight: 5000}, {Weight: spec.Full}},
		Gates: []spec.Gate{
			{Type: spec.GateSequential, RollbackOnly: true},
			{Type: spec.GateErrorRate, MaxIncrease: 3},
			{Type: spec.GateLatency, Quantile: 0.99, MaxIncrease: 50},
		},
		Bake: spec.Duration(8 * time.Second), MinRequests: 100, ProgressDeadline: spec.Duration(time.Minute),
		OnDeadline: spec.DeadlineRollback, Alpha: 0.01,
	}.WithDefaults()
}

func TestPlanText(t *testing.T) {
	want := "shadow 50% (200 compared, match ≥ 85%) → 5% → 25% → 50% → 100%, bake 8s, ≥ 100 canary requests a stage, " +
		"deadline 1m0s then rollback; gates: sequential (rollback only), error_rate (≤ +3 pp), latency (p99 ≤ +50%)"
	if got := PlanText(demoPlan()); got != want {
		t.Errorf("PlanText =\n%s\nwant\n%s", got, want)
	}
}

func TestFormatRollout(t *testing.T) {
	start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	r := rollout.Rollout{Rollout: api.Rollout{
		ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green", Plan: demoPlan(),
		Phase: rollout.PhaseShadow, Stage: rollout.ShadowStage, StartedAt: start, StageStarted: start,
	}}
	got := formatRollout(r, start.Add(2*time.Second), reasonWidth)
	want := "fraud-1: green replaces blue, shadow, 2s\n" +
		"  shadow     green 50% mirrored, 0% live    2s of deadline 1m0s\n" +
		"  gates      waiting for the first look\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shadow phase (-want +got):\n%s", diff)
	}

	r.Phase, r.Stage, r.Weight = rollout.PhaseProgressing, 1, 2500
	r.StageStarted, r.Baked = start.Add(10*time.Second), spec.Duration(3*time.Second)
	r.Gates = []analysis.GateResult{
		{Gate: "sequential", Verdict: analysis.Inconclusive, Reason: "no regression " + strings.Repeat("x", 200)},
		{Gate: "error_rate", Verdict: analysis.Pass, Reason: "canary error rate 0.4% vs stable 0.5%"},
		{Gate: "latency p99", Verdict: analysis.Fail, Reason: "canary latency p99 20 ms vs stable 9 ms"},
	}
	got = formatRollout(r, start.Add(14*time.Second), reasonWidth)
	want = "fraud-1: green replaces blue, progressing, 14s\n" +
		"  stage 2/4  green   25%  [#####---------------]  baked 3s of 8s\n" +
		"  gates     sequential   inconclusive  rollback only: no regression " + strings.Repeat("x", 95-len("rollback only: no regression ")) + "…\n" +
		"            error_rate   pass          canary error rate 0.4% vs stable 0.5%\n" +
		"            latency p99  fail          canary latency p99 20 ms vs stable 9 ms\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("live stage (-want +got):\n%s", diff)
	}
	// In a log (no width) the reason is whole: a line is never cut.
	if got := formatRollout(r, start.Add(14*time.Second), 0); !strings.Contains(got, "rollback only: no regression "+strings.Repeat("x", 200)+"\n") || strings.Contains(got, "…") {
		t.Errorf("log mode cut a reason:\n%s", got)
	}

	r.Phase, r.Weight = rollout.PhaseSucceeded, spec.Full
	r.Stage = 3
	got = formatRollout(r, start.Add(30*time.Second), reasonWidth)
	if !strings.HasPrefix(got, "fraud-1: green replaces blue, succeeded, 30s\n  stage 4/4  green  100%  [####################]\n") {
		t.Errorf("succeeded rollout:\n%s", got)
	}
}

func TestWriteSummary(t *testing.T) {
	start := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	end1, end2 := start.Add(41*time.Second), start.Add(52*time.Second)
	outcomes := []Outcome{
		{Rollout: rollout.Rollout{Rollout: api.Rollout{ID: "fraud-1", Stable: "blue", Canary: "green", Phase: rollout.PhaseSucceeded,
			StartedAt: start, FinishedAt: &end1, Reason: "stage 3 (50%) passed every gate"}}, CanaryRequests: 6512},
		{Rollout: rollout.Rollout{Rollout: api.Rollout{ID: "fraud-2", Stable: "green", Canary: "red", Phase: rollout.PhaseRolledBack,
			StartedAt: end1, FinishedAt: &end2, Reason: "gate failed: error_rate: 8% vs 0.5%"}}, CanaryRequests: 312},
	}
	var out bytes.Buffer
	if err := WriteSummary(&out, outcomes, GenStats{Sent: 14000, OK: 13806, Failed: 193}); err != nil {
		t.Fatal(err)
	}
	want := "summary\n" +
		"  ROLLOUT    CANARY   STABLE   RESULT        DURATION  CANARY REQUESTS\n" +
		"  fraud-1    green    blue     promoted           41s            6,512\n" +
		"  fraud-2    red      green    rolled back        11s              312\n" +
		"  fraud-1: stage 3 (50%) passed every gate\n" +
		"  fraud-2: gate failed: error_rate: 8% vs 0.5%\n" +
		"generator: 14,000 sent, 13,806 ok, 193 failed (1.38%)\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("summary mismatch (-want +got):\n%s", diff)
	}
}

func TestThousands(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1,000"}, {12345, "12,345"}, {123456, "123,456"}, {1234567, "1,234,567"},
	}
	for _, tc := range tests {
		if got := thousands(tc.n); got != tc.want {
			t.Errorf("thousands(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}
