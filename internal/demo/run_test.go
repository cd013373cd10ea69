package demo

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// scriptGateway plays rollouts from a script: each canary's rollout goes
// through its list of states, one per look, the last one repeating. Its
// data plane answers every request with a prediction.
type scriptGateway struct {
	srv *httptest.Server

	mu       sync.Mutex
	scripts  map[string][]rollout.Rollout
	current  string // canary of the rollout running
	looks    int    // looks at the current rollout
	starts   []rollout.StartRequest
	aborts   int
	startErr error
	// served counts the predictions answered; servedAtStart what it was at
	// each start.
	served        atomic.Uint64
	servedAtStart []uint64
	// onLook, when set, runs at every look with its number (1, 2, ...).
	onLook func(n int)
}

func newScriptGateway(t *testing.T, scripts map[string][]rollout.Rollout) *scriptGateway {
	t.Helper()
	g := &scriptGateway{scripts: scripts}
	g.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.served.Add(1)
		w.Write([]byte(`{"predictions":[1]}`))
	}))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *scriptGateway) state() rollout.Rollout {
	s := g.scripts[g.current]
	return s[min(g.looks, len(s)-1)]
}

func (g *scriptGateway) StartRollout(ctx context.Context, endpoint string, req rollout.StartRequest) (rollout.Rollout, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.starts = append(g.starts, req)
	g.servedAtStart = append(g.servedAtStart, g.served.Load())
	if g.startErr != nil {
		return rollout.Rollout{}, g.startErr
	}
	if _, ok := g.scripts[req.Canary]; !ok {
		return rollout.Rollout{}, errors.New("no script for " + req.Canary)
	}
	g.current, g.looks = req.Canary, 0
	return g.state(), nil
}

func (g *scriptGateway) Rollout(ctx context.Context, endpoint string) (rollout.Rollout, error) {
	g.mu.Lock()
	g.looks++
	n, r, hook := g.looks, g.state(), g.onLook
	g.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return r, nil
}

func (g *scriptGateway) AbortRollout(ctx context.Context, endpoint string) (rollout.Rollout, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.aborts++
	r := g.state()
	now := r.UpdatedAt
	r.Phase, r.Weight, r.Reason, r.FinishedAt = rollout.PhaseAborted, 0, "aborted by hand", &now
	g.scripts[g.current] = []rollout.Rollout{r}
	return r, nil
}

func (g *scriptGateway) Traffic(ctx context.Context, endpoint string) (spec.Weights, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.current == "" {
		return spec.Weights{"blue": spec.Full}, nil // before the first rollout
	}
	r := g.state()
	return r.Traffic(r.Weight), nil
}

func (g *scriptGateway) Metrics(ctx context.Context, endpoint string, window time.Duration) (telemetry.Report, error) {
	return sampleReport, nil
}

func (g *scriptGateway) Served(endpoint, deployment string, from, to time.Time) uint64 { return 321 }

func (g *scriptGateway) ProxyURL() string { return g.srv.URL }

// script builds a rollout's states from a start; each step changes a copy
// of the previous state.
func script(base rollout.Rollout, steps ...func(*rollout.Rollout)) []rollout.Rollout {
	out := []rollout.Rollout{base}
	for _, f := range steps {
		r := out[len(out)-1]
		r.Gates = append([]analysis.GateResult(nil), r.Gates...)
		f(&r)
		out = append(out, r)
	}
	return out
}

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func stage(i int, w spec.Percent) func(*rollout.Rollout) {
	return func(r *rollout.Rollout) {
		r.Phase, r.Stage, r.Weight = rollout.PhaseProgressing, i, w
		r.StageStarted = r.StartedAt.Add(time.Duration(i+1) * 5 * time.Second)
		r.Gates = []analysis.GateResult{
			{Gate: "sequential", Verdict: analysis.Inconclusive, Reason: "no regression"},
			{Gate: "error_rate", Verdict: analysis.Pass, Reason: "canary error rate 0.4% vs stable 0.5%"},
			{Gate: "latency p99", Verdict: analysis.Pass, Reason: "canary p99 9 ms vs stable 9 ms"},
		}
	}
}

func ended(phase rollout.Phase, w spec.Percent, after time.Duration, why string) func(*rollout.Rollout) {
	return func(r *rollout.Rollout) {
		end := r.StartedAt.Add(after)
		r.Phase, r.Weight, r.Reason, r.FinishedAt, r.UpdatedAt = phase, w, why, &end, end
	}
}

func demoScripts() map[string][]rollout.Rollout {
	green := rollout.Rollout{Rollout: api.Rollout{ID: "fraud-1", Endpoint: "fraud", Stable: "blue", Canary: "green", Plan: demoPlan(),
		Phase: rollout.PhaseShadow, Stage: rollout.ShadowStage, StartedAt: t0, StageStarted: t0}}
	red := green
	red.ID, red.Stable, red.Canary, red.StartedAt = "fraud-2", "green", "red", t0.Add(time.Minute)
	return map[string][]rollout.Rollout{
		"green": script(green,
			func(r *rollout.Rollout) {
				r.Gates = []analysis.GateResult{{Gate: "shadow", Verdict: analysis.Pass, Reason: "match rate 96.8% over 212 compared copies"}}
			},
			func(r *rollout.Rollout) {
				stage(0, 500)(r)
				r.Reason = "shadow phase passed: match rate 97.1% over 250 compared copies"
			}, stage(1, 2500), stage(2, 5000),
			ended(rollout.PhaseSucceeded, spec.Full, 41*time.Second, "stage 3 (50%) passed every gate after 8s and 2,123 canary requests")),
		"red": script(red, stage(0, 500),
			ended(rollout.PhaseRolledBack, 0, 11*time.Second, "gate failed: sequential: canary error rate 8.1% vs stable 0.4% over 300 vs 5,700 requests")),
	}
}

// TestRunWarmsUpBeforeTheFirstRollout: the traffic runs its warm-up before
// the first rollout starts, so that the rollout's estimate reads the rate.
func TestRunWarmsUpBeforeTheFirstRollout(t *testing.T) {
	gw := newScriptGateway(t, demoScripts())
	var out bytes.Buffer
	if err := Run(t.Context(), &out, gw, RunOptions{Refresh: time.Millisecond, RPS: 200, WarmUp: 300 * time.Millisecond, Plain: true, Steps: DefaultSteps[:1]}); err != nil {
		t.Fatalf("Run() = %v\noutput:\n%s", err, out.String())
	}
	if len(gw.servedAtStart) != 1 || gw.servedAtStart[0] < 60 {
		t.Errorf("requests served when the rollout started: %v, want at least 60 (0.3 s at 200 requests/s)", gw.servedAtStart)
	}
}

func TestRunPromotesThenRollsBack(t *testing.T) {
	gw := newScriptGateway(t, demoScripts())
	var out bytes.Buffer
	if err := Run(t.Context(), &out, gw, RunOptions{Refresh: time.Millisecond, RPS: 100, WarmUp: 20 * time.Millisecond, Plain: true}); err != nil {
		t.Fatalf("Run() = %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	t.Logf("output:\n%s", got)
	if want := []rollout.StartRequest{{Canary: "green", Stable: "blue"}, {Canary: "red", Stable: "green"}}; len(gw.starts) != 2 ||
		gw.starts[0].Canary != want[0].Canary || gw.starts[0].Stable != want[0].Stable ||
		gw.starts[1].Canary != want[1].Canary || gw.starts[1].Stable != want[1].Stable {
		t.Errorf("rollouts started: %+v, want %+v", gw.starts, want)
	}
	for _, want := range []string{
		"sending 100 requests/s to " + gw.srv.URL + "/fraud/v1/models/fraud:predict\n\n",
		"rollout 1 of 2 (fraud-1): green replaces blue, the good canary",
		"  plan: shadow 50% (200 compared, match ≥ 85%) → 5% → 25% → 50% → 100%, bake 8s",
		"  shadow     green 50% mirrored, 0% live",
		"  gates     shadow  pass          match rate 96.8% over 212 compared copies\n",
		"SHADOW PASSED green after 5s: match rate 97.1% over 250 compared copies\n\n",
		"SHADOW PASSED red after 5s: at least 200 compared copies matched at least 85% of the time\n\n",
		"  stage 1/4  green    5%  [#-------------------]  baked 0s of 8s\n",
		"  stage 3/4  green   50%  [##########----------]",
		"            latency p99  pass ",
		"  DEPLOYMENT         WEIGHT    SHARE       RPM   ERRORS   P99 MS   (last ",
		"PROMOTED green to 100% of fraud after 41s: stage 3 (50%) passed every gate after 8s and 2,123 canary requests\n\n",
		"rollout 2 of 2 (fraud-2): red replaces green, the bad canary",
		"ROLLED BACK red after 11s, all traffic back on green: gate failed: sequential: canary error rate 8.1% vs stable 0.4% over 300 vs 5,700 requests\n\n",
		"summary\n",
		"  fraud-1    green    blue     promoted           41s              321\n",
		"  fraud-2    red      green    rolled back        11s              321\n",
		"  fraud-2: gate failed: sequential: canary error rate 8.1%",
		"\ngenerator: ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(got, "\n\n\n") {
		t.Error("output has two blank lines in a row, want one between blocks")
	}
	if strings.Contains(got, "\x1b[") {
		t.Error("output to a buffer has ANSI escapes, want plain blocks")
	}
	if strings.Contains(got, "interrupted") || gw.aborts != 0 {
		t.Errorf("output says interrupted, or the run aborted something (%d aborts)", gw.aborts)
	}
}

// TestRunKeepsTheGatewayUp: with Keep, Run prints the summary, says what
// stays up, and returns only once ctx is done, the traffic still running
// until then.
func TestRunKeepsTheGatewayUp(t *testing.T) {
	gw := newScriptGateway(t, demoScripts())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, out, gw, RunOptions{Refresh: time.Millisecond, RPS: 100, WarmUp: 20 * time.Millisecond, Plain: true, Keep: true})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "--keep: the gateway, the dashboard and 100 requests/s of traffic stay up until Ctrl-C\n") {
		select {
		case err := <-done:
			t.Fatalf("Run() with Keep returned %v before ctx was done\noutput:\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no --keep line within 10 s\noutput:\n%s", out.String())
		}
	}
	if got := out.String(); !strings.Contains(got, "summary\n") || !strings.Contains(got, "\ngenerator: ") {
		t.Errorf("the summary is not printed before --keep's wait:\n%s", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() after Ctrl-C = %v, want nil", err)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while Run writes to it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRunAbortsAPausedRollout(t *testing.T) {
	scripts := demoScripts()
	scripts["green"] = script(scripts["green"][0], stage(0, 500), func(r *rollout.Rollout) {
		r.Phase, r.PausedFrom, r.Reason = rollout.PhasePaused, rollout.PhaseProgressing, "sample ratio mismatch: canary served 1% of 2,000 split requests"
	})
	gw := newScriptGateway(t, scripts)
	var out bytes.Buffer
	if err := Run(t.Context(), &out, gw, RunOptions{Refresh: time.Millisecond, RPS: 100, WarmUp: 20 * time.Millisecond, Plain: true, Steps: DefaultSteps[:1]}); err != nil {
		t.Fatalf("Run() = %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"fraud-1 paused: sample ratio mismatch: canary served 1% of 2,000 split requests\nthe demo aborts it\n",
		"ABORTED green after ",
		"  fraud-1    green    blue     aborted ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\noutput:\n%s", want, got)
		}
	}
	if gw.aborts != 1 {
		t.Errorf("aborted %d times, want once", gw.aborts)
	}
}

// TestRunStopsOnCancel cancels the run at the third look at the first
// rollout: Run must return nil promptly, with a summary.
func TestRunStopsOnCancel(t *testing.T) {
	gw := newScriptGateway(t, demoScripts())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	gw.onLook = func(n int) {
		if n == 3 {
			cancel()
		}
	}
	var out bytes.Buffer
	if err := Run(ctx, &out, gw, RunOptions{Refresh: time.Millisecond, RPS: 100, WarmUp: 20 * time.Millisecond, Plain: true}); err != nil {
		t.Fatalf("Run() after cancel = %v, want nil", err)
	}
	got := out.String()
	for _, want := range []string{
		"\nstopped while fraud-1 was in stage ",
		"\ninterrupted after 0 of 2 rollouts\n",
		"  fraud-1    green    blue     interrupted ",
		"  fraud-1: stopped in stage ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\noutput:\n%s", want, got)
		}
	}
	if strings.Contains(got, "fraud-2") {
		t.Errorf("output shows the second rollout, which never started:\n%s", got)
	}
}

func TestRunSkipsAStepWhoseStableWasNotPromoted(t *testing.T) {
	scripts := demoScripts()
	scripts["green"] = script(scripts["green"][0], stage(0, 500),
		ended(rollout.PhaseRolledBack, 0, 20*time.Second, "no decision within the progress deadline of 1m0s (shadow phase)"))
	gw := newScriptGateway(t, scripts)
	var out bytes.Buffer
	if err := Run(t.Context(), &out, gw, RunOptions{Refresh: time.Millisecond, RPS: 100, WarmUp: 20 * time.Millisecond, Plain: true}); err != nil {
		t.Fatalf("Run() = %v\noutput:\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{
		"ROLLED BACK green after 20s, all traffic back on blue: no decision within the progress deadline",
		"rollout 2 of 2 skipped: red would replace green, but green does not hold all traffic\n",
		"  fraud-1    green    blue     rolled back ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q\noutput:\n%s", want, got)
		}
	}
	if len(gw.starts) != 1 {
		t.Errorf("started %d rollouts, want only the first", len(gw.starts))
	}
}

func TestRunFailsWhenARolloutCannotStart(t *testing.T) {
	gw := newScriptGateway(t, demoScripts())
	gw.startErr = errors.New("endpoint \"fraud\" already has rollout fraud-1")
	var out bytes.Buffer
	err := Run(t.Context(), &out, gw, RunOptions{Refresh: time.Millisecond, RPS: 100, WarmUp: 20 * time.Millisecond, Plain: true})
	if err == nil || !strings.Contains(err.Error(), "demo rollout 1 (green): start: endpoint \"fraud\" already has rollout fraud-1") {
		t.Errorf("Run() = %v, want the start error", err)
	}
	if err := Run(t.Context(), &out, gw, RunOptions{Steps: []Step{{Canary: "blue", Stable: "blue"}}}); err == nil {
		t.Error("Run() with stable = canary succeeded, want an error")
	}
}
