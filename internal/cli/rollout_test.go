package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/estimate"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
)

// fakeRollouts answers the admin API's rollout routes with canned
// rollouts: Current returns current[0], current[1], ... and then repeats
// the last, so a test scripts what watch sees look after look.
type fakeRollouts struct {
	mu       sync.Mutex
	current  []rollout.Rollout
	looks    int
	history  []rollout.Rollout
	started  []rollout.StartRequest
	acted    []rollout.Action
	actErr   error
	afterAct rollout.Rollout
}

func (f *fakeRollouts) Start(ctx context.Context, endpoint string, req rollout.StartRequest) (rollout.Rollout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.started = append(f.started, req)
	r := testRollout()
	r.Canary, r.Stage, r.Weight, r.Reason, r.Gates, r.Baked = req.Canary, 0, 500, "rollout started", nil, 0
	r.Plan = mergeForTest(req.Plan)
	// What the controller estimates at 2 requests/s: a warning to show.
	r.Estimate = &estimate.Estimate{Text: "about 3.1 h to 100% at 2 requests/s (stage 1 (5%) 2.8 h, stage 2 (25%) 16 min, stage 3 (50%) 29 min)",
		Warnings: []string{"stage 1 (5%) needs about 2.8 h at 2 requests/s, longer than its 10 min progress deadline: it will pause; raise progress_deadline or traffic"}}
	return r, nil
}

func mergeForTest(p spec.Plan) spec.Plan { return p.WithDefaults() }

func (f *fakeRollouts) Act(ctx context.Context, endpoint string, a rollout.Action) (rollout.Rollout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.acted = append(f.acted, a)
	if f.actErr != nil {
		return rollout.Rollout{}, f.actErr
	}
	return f.afterAct, nil
}

func (f *fakeRollouts) Current(ctx context.Context, endpoint string) (rollout.Rollout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if endpoint != "fraud" {
		return rollout.Rollout{}, fmt.Errorf("endpoint %q: %w", endpoint, store.ErrNotFound)
	}
	if len(f.current) == 0 {
		return rollout.Rollout{}, fmt.Errorf("endpoint %q has no rollout: %w", endpoint, store.ErrNotFound)
	}
	r := f.current[min(f.looks, len(f.current)-1)]
	f.looks++
	return r, nil
}

func (f *fakeRollouts) History(ctx context.Context, endpoint string) ([]rollout.Rollout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if endpoint != "fraud" {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, store.ErrNotFound)
	}
	return f.history, nil
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// testRollout is fraud-3 at stage 2 of 4 (25%), 12s into a 30s bake, with
// a gate of each kind of evidence.
func testRollout() rollout.Rollout {
	return rollout.Rollout{Rollout: api.Rollout{
		ID: "fraud-3", Endpoint: "fraud", Stable: "blue", Canary: "green",
		Plan:  spec.Plan{Stages: []spec.Stage{{Weight: 500}, {Weight: 2500}, {Weight: 5000}, {Weight: spec.Full}}}.WithDefaults(),
		Phase: rollout.PhaseProgressing, Stage: 1, Weight: 2500,
		StageStarted: t0, Baked: spec.Duration(12 * time.Second), LastLook: t0.Add(12 * time.Second),
		Reason: "stage 1 (5%) passed every gate after 30s and 1,203 canary requests",
		Gates: []analysis.GateResult{
			{Gate: "sequential", Verdict: analysis.Inconclusive, Reason: "no regression; promotion not shown yet",
				Summary: "waiting: needs about 2,400 more green requests to show green within 1.75× of blue's error rate",
				Evidence: map[string]any{
					"errors":  map[string]any{"canary_requests": 2130, "canary_rate": 0.0052, "stable_rate": 0.0048, "statistic": 0.81, "threshold": 40},
					"latency": map[string]any{"canary_rate": 0.011, "stable_rate": 0.01, "statistic": 1.3, "threshold": 40},
				}},
			{Gate: "error_rate", Verdict: analysis.Pass, Reason: "canary error rate 0.52% vs stable 0.48%: at most the maximum 2%",
				Evidence: map[string]any{"canary_requests": 213, "canary_errors": 1, "canary_rate": 0.0047, "stable_requests": 4032, "stable_errors": 19, "stable_rate": 0.0047}},
			{Gate: "latency p99", Verdict: analysis.Pass, Reason: "canary latency p99 52 ms vs stable 40 ms",
				Evidence: map[string]any{"quantile": 0.99, "canary_requests": 213, "canary_ms": 52, "stable_ms": 40}},
		},
		StartedAt: t0.Add(-time.Minute), UpdatedAt: t0.Add(12 * time.Second),
	}}
}

func rolledBack() rollout.Rollout {
	r := testRollout()
	r.Phase, r.Weight = rollout.PhaseRolledBack, 0
	r.Reason = "gate failed: error_rate: canary error rate 9.8% vs stable 1%: above the maximum 2%"
	r.Gates[1].Verdict = analysis.Fail
	fin := t0.Add(20 * time.Second)
	r.FinishedAt, r.UpdatedAt = &fin, fin
	return r
}

func succeeded() rollout.Rollout {
	r := testRollout()
	r.Phase, r.Stage, r.Weight = rollout.PhaseSucceeded, 3, spec.Full
	r.Reason = "stage 3 (50%) passed every gate after 30s and 2,000 canary requests"
	fin := t0.Add(3 * time.Minute)
	r.FinishedAt, r.UpdatedAt = &fin, fin
	return r
}

// newRolloutEnv is newTestEnv with the rollout routes answered by f;
// drop, when set, says which API calls (counted from 1) have their
// connection closed without an answer, as a restarting daemon would.
func newRolloutEnv(t *testing.T, f *fakeRollouts, drop func(n int) bool) *testEnv {
	t.Helper()
	b := admintest.NewBackend(admintest.Fraud())
	h := admin.New(admin.Options{Backend: b, Rollouts: f, Token: testToken})
	var (
		mu sync.Mutex
		n  int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		cut := drop != nil && drop(n)
		mu.Unlock()
		if cut {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &testEnv{t: t, backend: b, srv: srv, vars: map[string]string{EnvAdmin: srv.URL, EnvToken: testToken}}
}

// fastWatch makes watch look every millisecond for the test.
func fastWatch(t *testing.T) {
	old := watchInterval
	watchInterval = time.Millisecond
	t.Cleanup(func() { watchInterval = old })
}

func TestRolloutStatus(t *testing.T) {
	f := &fakeRollouts{current: []rollout.Rollout{testRollout()}}
	e := newRolloutEnv(t, f, nil)
	code, out, errOut := e.run("rollout", "status", "fraud")
	if code != 0 {
		t.Fatalf("rollout status = %d: %s", code, errOut)
	}
	want := `rollout:          fraud-3
phase:            progressing
stable → canary:  blue → green
stage:            2/4 at 25%  (5 → [25] → 50 → 100)
weights:          blue=75 green=25
baked:            12s of 30s (18s left), needs 100 canary requests
deadline:         9m48s left, then pause
started:          2026-01-02T03:03:05Z
reason:           stage 1 (5%) passed every gate after 30s and 1,203 canary requests

GATE         VERDICT       SUMMARY
sequential   inconclusive  waiting: needs about 2,400 more green requests to show green within 1.75× of blue's error rate
error_rate   pass          canary error rate 0.52% vs stable 0.48%: at most the maximum 2%
latency p99  pass          canary latency p99 52 ms vs stable 40 ms

sequential statistics: no regression; promotion not shown yet
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("rollout status (-want +got):\n%s", diff)
	}

	code, out, _ = e.run("rollout", "status", "fraud", "-o", "json")
	if code != 0 {
		t.Fatalf("rollout status -o json = %d", code)
	}
	var got rollout.Rollout
	if err := jsonUnmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != "fraud-3" || got.Phase != rollout.PhaseProgressing || len(got.Gates) != 3 || got.Gates[2].Evidence["canary_ms"] != 52.0 {
		t.Errorf("rollout status -o json = %+v", got)
	}
	if !strings.Contains(out, "\n  \"phase\": \"progressing\",\n") {
		t.Errorf("rollout status -o json is not the indented rollout:\n%s", out)
	}

	// Ended: the finish time, no bake countdown, no deadline.
	f.current = []rollout.Rollout{rolledBack()}
	f.looks = 0
	_, out, _ = e.run("rollout", "status", "fraud")
	for _, s := range []string{"phase:            rolled_back\n", "weights:          blue=100\n", "finished:         2026-01-02T03:04:25Z\n", "error_rate   fail"} {
		if !strings.Contains(out, s) {
			t.Errorf("rolled back status lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "deadline") || strings.Contains(out, "baked") {
		t.Errorf("rolled back status shows a deadline or bake time:\n%s", out)
	}

	code, _, errOut = e.run("rollout", "status", "nope")
	if code != 1 || errOut != "Error: endpoint \"nope\": not found\n" {
		t.Errorf("status of an unknown endpoint = %d %q", code, errOut)
	}
	f.current = nil
	code, _, errOut = e.run("rollout", "status", "fraud")
	if code != 1 || !strings.Contains(errOut, "has no rollout") {
		t.Errorf("status without a rollout = %d %q", code, errOut)
	}
}

func TestRolloutHistory(t *testing.T) {
	f := &fakeRollouts{history: []rollout.Rollout{testRollout(), rolledBack()}}
	f.history[1].ID = "fraud-2"
	e := newRolloutEnv(t, f, nil)
	code, out, errOut := e.run("rollout", "history", "fraud")
	if code != 0 {
		t.Fatalf("rollout history = %d: %s", code, errOut)
	}
	want := "ID       PHASE        STABLE  CANARY  STAGE  WEIGHT  STARTED               FINISHED              REASON\n" +
		"fraud-3  progressing  blue    green   2/4    25%     2026-01-02T03:03:05Z  -                     stage 1 (5%) passed every gate after 30s and 1,203 canary requests\n" +
		"fraud-2  rolled_back  blue    green   2/4    0%      2026-01-02T03:03:05Z  2026-01-02T03:04:25Z  gate failed: error_rate: canary error rate 9.8% vs stable 1%: above the maximum 2%\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("rollout history (-want +got):\n%s", diff)
	}

	code, out, _ = e.run("rollout", "history", "fraud", "-o", "json")
	var got struct{ Rollouts []rollout.Rollout }
	if err := jsonUnmarshal(out, &got); code != 0 || err != nil {
		t.Fatalf("rollout history -o json = %d, %v", code, err)
	}
	if len(got.Rollouts) != 2 || got.Rollouts[0].ID != "fraud-3" || got.Rollouts[1].ID != "fraud-2" {
		t.Errorf("rollout history -o json = %+v", got)
	}

	f.history = nil
	if code, out, _ := e.run("rollout", "history", "fraud"); code != 0 || out != "no rollouts\n" {
		t.Errorf("empty history = %d %q", code, out)
	}
	if code, out, _ := e.run("rollout", "history", "fraud", "-o", "json"); code != 0 || out != "{\n  \"rollouts\": []\n}\n" {
		t.Errorf("empty history -o json = %d %q", code, out)
	}
}

func TestRolloutStart(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "plan.yaml")
	writeFile(t, plan, `canary: red
stable: blue
shadow: {mirror: 20, min_compared: 500}
stages: [10, {weight: 50, bake: 2m}, 100]
bake: 45s
gates:
  - type: error_rate
    max: 0.02
`)
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "canary: green\nstagez: [5]\nbake: soon\n")

	tests := []struct {
		name string
		args []string
		want rollout.StartRequest
	}{
		{"canary only", []string{"--canary", "green"}, rollout.StartRequest{Canary: "green"}},
		{"every flag", []string{"--canary", "green", "--stable", "blue", "--stages", "5, 25,50.5,100", "--bake", "1m", "--min-requests", "300",
			"--deadline", "20m", "--on-deadline", "rollback", "--shadow", "10", "--keep-mirror"},
			rollout.StartRequest{Canary: "green", Stable: "blue", Plan: spec.Plan{
				Shadow: &spec.ShadowPhase{Mirror: 1000, KeepMirror: true},
				Stages: []spec.Stage{{Weight: 500}, {Weight: 2500}, {Weight: 5050}, {Weight: spec.Full}},
				Bake:   spec.Duration(time.Minute), MinRequests: 300, ProgressDeadline: spec.Duration(20 * time.Minute), OnDeadline: spec.DeadlineRollback,
			}}},
		{"plan file", []string{"-f", plan}, rollout.StartRequest{Canary: "red", Stable: "blue", Plan: spec.Plan{
			Shadow: &spec.ShadowPhase{Mirror: 2000, MinCompared: 500},
			Stages: []spec.Stage{{Weight: 1000}, {Weight: 5000, Bake: spec.Duration(2 * time.Minute)}, {Weight: spec.Full}},
			Bake:   spec.Duration(45 * time.Second),
			Gates:  []spec.Gate{{Type: spec.GateErrorRate, Max: 0.02}},
		}}},
		{"flags over the plan file", []string{"-f", plan, "--canary", "green", "--shadow", "5", "--keep-mirror", "--stages", "50,100"},
			rollout.StartRequest{Canary: "green", Stable: "blue", Plan: spec.Plan{
				Shadow: &spec.ShadowPhase{Mirror: 500, MinCompared: 500, KeepMirror: true},
				Stages: []spec.Stage{{Weight: 5000}, {Weight: spec.Full}},
				Bake:   spec.Duration(45 * time.Second),
				Gates:  []spec.Gate{{Type: spec.GateErrorRate, Max: 0.02}},
			}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRollouts{}
			e := newRolloutEnv(t, f, nil)
			code, out, errOut := e.run(append([]string{"rollout", "start", "fraud"}, tc.args...)...)
			if code != 0 {
				t.Fatalf("rollout start = %d: %s", code, errOut)
			}
			if len(f.started) != 1 {
				t.Fatalf("started %d rollouts, want 1", len(f.started))
			}
			if diff := cmp.Diff(tc.want, f.started[0]); diff != "" {
				t.Errorf("start request (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(out, "rollout fraud-3 started on fraud: blue → "+tc.want.Canary+", plan ") ||
				!strings.Contains(out, "\nrollout fraud-3 is progressing at stage 1/") ||
				!strings.Contains(out, "\nexpected: about 3.1 h to 100% at 2 requests/s (stage 1 (5%) 2.8 h,") ||
				!strings.Contains(out, "\nwarning: stage 1 (5%) needs about 2.8 h at 2 requests/s, longer than its 10 min progress deadline") ||
				!strings.HasSuffix(out, "follow it with: modelgate rollout watch fraud\n") {
				t.Errorf("rollout start printed:\n%s", out)
			}
		})
	}

	t.Run("invalid plan file", func(t *testing.T) {
		f := &fakeRollouts{}
		e := newRolloutEnv(t, f, nil)
		code, _, errOut := e.run("rollout", "start", "fraud", "-f", bad)
		if code != 1 || !strings.HasPrefix(errOut, "Error: "+bad+" is invalid: 2 problems\n") ||
			!strings.Contains(errOut, "\n  stagez: unknown key") || !strings.Contains(errOut, "\n  bake: invalid duration \"soon\"") {
			t.Errorf("start with an invalid plan = %d, stderr:\n%s", code, errOut)
		}
		if len(f.started) != 0 {
			t.Errorf("an invalid plan file started a rollout")
		}
	})
}

func TestRolloutActions(t *testing.T) {
	paused := testRollout()
	paused.Phase, paused.PausedFrom, paused.Reason = rollout.PhasePaused, rollout.PhaseProgressing, "paused by hand"
	for _, a := range rollout.Actions {
		t.Run(string(a), func(t *testing.T) {
			f := &fakeRollouts{afterAct: paused}
			e := newRolloutEnv(t, f, nil)
			code, out, errOut := e.run("rollout", string(a), "fraud")
			if code != 0 {
				t.Fatalf("rollout %s = %d: %s", a, code, errOut)
			}
			if diff := cmp.Diff([]rollout.Action{a}, f.acted); diff != "" {
				t.Errorf("actions sent (-want +got):\n%s", diff)
			}
			if want := "rollout fraud-3 is paused at stage 2/4 (25%), weights blue=75 green=25: paused by hand\n"; out != want {
				t.Errorf("rollout %s printed %q, want %q", a, out, want)
			}
		})
	}

	// Outside a live stage: the shadow phase, and ended.
	for _, tc := range []struct {
		r    func(*rollout.Rollout)
		want string
	}{
		{func(r *rollout.Rollout) {
			r.Phase, r.Stage, r.Weight, r.Reason = rollout.PhaseShadow, -1, 0, "shadow phase"
		},
			"rollout fraud-3 is in the shadow phase, weights blue=100: shadow phase"},
		{func(r *rollout.Rollout) {
			r.Phase, r.Stage, r.Weight, r.Reason = rollout.PhasePaused, -1, 0, "paused by hand"
		},
			"rollout fraud-3 is paused in the shadow phase, weights blue=100: paused by hand"},
		{func(r *rollout.Rollout) { r.Phase, r.Weight, r.Reason = rollout.PhaseUndone, 0, "undone by hand" },
			"rollout fraud-3 was undone, weights blue=100: undone by hand"},
		{func(r *rollout.Rollout) { r.AwaitingConfirmation = true },
			"rollout fraud-3 is progressing (waiting for the confirm-promotion webhook) at stage 2/4 (25%), weights blue=75 green=25: stage 1 (5%) passed every gate after 30s and 1,203 canary requests"},
	} {
		r := testRollout()
		tc.r(&r)
		if got := outcome(r.Rollout); got != tc.want {
			t.Errorf("outcome = %q, want %q", got, tc.want)
		}
	}

	f := &fakeRollouts{actErr: fmt.Errorf("%w: %w", &rollout.ErrAction{Action: rollout.ActionResume, Phase: rollout.PhaseProgressing, Why: "only a paused rollout can be resumed"}, store.ErrConflict)}
	e := newRolloutEnv(t, f, nil)
	code, out, errOut := e.run("rollout", "resume", "fraud")
	if want := "Error: cannot resume a rollout that is progressing: only a paused rollout can be resumed\n"; code != 1 || out != "" || errOut != want {
		t.Errorf("refused resume = %d, %q, stderr %q; want 1 and %q", code, out, errOut, want)
	}
}

func TestRolloutUsageErrors(t *testing.T) {
	tests := [][]string{
		{"rollout", "bogus", "fraud"},
		{"rollout", "start"},
		{"rollout", "start", "fraud"},
		{"rollout", "start", "fraud", "green"},
		{"rollout", "start", "fraud", "--canary", "green", "--stages", "5,x,0,100"},
		{"rollout", "start", "fraud", "--canary", "green", "--on-deadline", "explode"},
		{"rollout", "start", "fraud", "--canary", "green", "--shadow", "lots"},
		{"rollout", "start", "fraud", "--canary", "green", "--keep-mirror"},
		{"rollout", "start", "fraud", "--canary", "green", "--bake", "soon"},
		{"rollout", "status"},
		{"rollout", "status", "fraud", "extra"},
		{"rollout", "status", "fraud", "-o", "yaml"},
		{"rollout", "history", "fraud", "-o", "wide"},
		{"rollout", "watch"},
		{"rollout", "pause"},
		{"rollout", "promote-full", "a", "b"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			f := &fakeRollouts{current: []rollout.Rollout{testRollout()}}
			e := newRolloutEnv(t, f, nil)
			code, out, errOut := e.run(args...)
			if code != 2 {
				t.Errorf("%v = %d, want 2; stdout %q stderr %q", args, code, out, errOut)
			}
			if !strings.HasPrefix(errOut, "Error: ") || !strings.Contains(errOut, "--help' for usage.") {
				t.Errorf("stderr = %q, want the error and where to find usage", errOut)
			}
			if len(f.started) != 0 || len(f.acted) != 0 || f.looks != 0 {
				t.Errorf("a usage error reached the daemon")
			}
		})
	}
}

func TestRolloutWatch(t *testing.T) {
	fastWatch(t)
	next := testRollout()
	next.Stage, next.Weight, next.Baked, next.Reason = 2, 5000, 0, "stage 2 (25%) passed every gate after 30s and 4,100 canary requests"
	next.StageStarted = next.UpdatedAt
	same := testRollout()
	same.Baked, same.UpdatedAt = spec.Duration(13*time.Second), same.UpdatedAt.Add(time.Second) // only the clock moved: no new block

	tests := []struct {
		name      string
		looks     []rollout.Rollout
		drop      func(n int) bool
		wantCode  int
		wantOut   []string // in this order
		wantErr   string
		wantLooks int
	}{
		{
			name: "promoted", looks: []rollout.Rollout{testRollout(), same, next, succeeded()},
			wantOut: []string{
				"rollout fraud-3 on fraud: blue → green (as of 2026-01-02T03:04:17Z)\n",
				"stage     2/4 at 25%   5 → [25] → 50 → 100\n",
				"canary    [██████████░░░░░░░░░░░░░░░░░░░░░░░░░░░░░░] 25%\n",
				"weights   blue=75 green=25\n",
				"bake      12s of 30s (18s left), needs 100 canary requests\n",
				"deadline  9m48s left, then pause\n",
				"gates\n",
				"  sequential   inconclusive  2,130 canary requests; errors 0.52% vs 0.48%, statistic 0.81 of 40; slow requests 1.1% vs 1%, statistic 1.3 of 40\n",
				"  error_rate   pass          canary 0.47% of 213 vs stable 0.47% of 4,032\n",
				"  latency p99  pass          canary 52 ms vs stable 40 ms over 213 requests\n",
				"  sequential: waiting: needs about 2,400 more green requests to show green within 1.75× of blue's error rate\n",
				"\nrollout fraud-3 on fraud",
				"stage     3/4 at 50%   5 → 25 → [50] → 100\n",
				"canary    [████████████████████░░░░░░░░░░░░░░░░░░░░] 50%\n",
				"\nrollout fraud-3 on fraud",
				"phase     succeeded\n",
				"canary    [████████████████████████████████████████] 100%\n",
				"rollout fraud-3 succeeded: green holds 100% of fraud: stage 3 (50%) passed every gate after 30s and 2,000 canary requests\n",
			},
			wantLooks: 4,
		},
		{
			name: "rolled back", looks: []rollout.Rollout{testRollout(), rolledBack()}, wantCode: 1,
			wantOut:   []string{"phase     progressing\n", "\nrollout fraud-3 on fraud", "phase     rolled_back\n", "  error_rate   fail "},
			wantErr:   "Error: rollout fraud-3 rolled back, blue holds all traffic of fraud: gate failed: error_rate: canary error rate 9.8% vs stable 1%: above the maximum 2%\n",
			wantLooks: 2,
		},
		{
			name: "already ended", looks: []rollout.Rollout{succeeded()},
			wantOut:   []string{"phase     succeeded\n", "rollout fraud-3 succeeded"},
			wantLooks: 1,
		},
		{
			name: "daemon restarts in between", looks: []rollout.Rollout{testRollout(), rolledBack()}, wantCode: 1,
			drop:      func(n int) bool { return n == 2 || n == 3 },
			wantOut:   []string{"phase     progressing\n", "daemon unreachable, still trying: ", "daemon reachable again\n", "phase     rolled_back\n"},
			wantErr:   "Error: rollout fraud-3 rolled back",
			wantLooks: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeRollouts{current: tc.looks}
			e := newRolloutEnv(t, f, tc.drop)
			code, out, errOut := e.run("rollout", "watch", "fraud")
			if code != tc.wantCode {
				t.Errorf("rollout watch = %d, want %d; stderr %q", code, tc.wantCode, errOut)
			}
			rest := out
			for _, w := range tc.wantOut {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("output lacks %q (in order); output:\n%s", w, out)
					break
				}
				rest = rest[i+len(w):]
			}
			if !strings.HasPrefix(errOut, tc.wantErr) || (tc.wantErr == "" && errOut != "") {
				t.Errorf("stderr = %q, want %q", errOut, tc.wantErr)
			}
			if strings.Count(out, "rollout fraud-3 on fraud") != strings.Count(out, "\nrollout fraud-3 on fraud")+1 {
				t.Errorf("blocks are not separated by a blank line:\n%s", out)
			}
			if f.looks != tc.wantLooks {
				t.Errorf("watch looked %d times, want %d", f.looks, tc.wantLooks)
			}
		})
	}
}

// TestRolloutWatchRetried: the watched rollout rolled back and a retry
// started between two looks; watch reports how its own rollout ended.
func TestRolloutWatchRetried(t *testing.T) {
	fastWatch(t)
	retry := testRollout()
	retry.ID, retry.Stage, retry.Weight = "fraud-4", 0, 500
	f := &fakeRollouts{current: []rollout.Rollout{testRollout(), retry}, history: []rollout.Rollout{retry, rolledBack()}}
	e := newRolloutEnv(t, f, nil)
	code, out, errOut := e.run("rollout", "watch", "fraud")
	if code != 1 || !strings.HasPrefix(errOut, "Error: rollout fraud-3 rolled back") || strings.Contains(out, "fraud-4") {
		t.Errorf("watch across a retry = %d, stdout:\n%s\nstderr %q", code, out, errOut)
	}
}

func TestRolloutWatchInterrupt(t *testing.T) {
	fastWatch(t)
	f := &fakeRollouts{current: []rollout.Rollout{testRollout()}}
	e := newRolloutEnv(t, f, nil)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	w, next, _ := lineReader(t)
	result := make(chan int, 1)
	go func() {
		code, _, _ := e.runContext(ctx, w, "rollout", "watch", "fraud")
		w.(io.Closer).Close() // next fails instead of waiting forever
		result <- code
	}()
	if got := next(); !strings.HasPrefix(got, "rollout fraud-3 on fraud") {
		t.Fatalf("first line = %q", got)
	}
	cancel()
	for {
		if got := next(); strings.HasPrefix(got, "stopped watching") {
			if want := "stopped watching; rollout fraud-3 keeps running (progressing)"; got != want {
				t.Errorf("last line = %q, want %q", got, want)
			}
			break
		}
	}
	if code := <-result; code != 0 {
		t.Errorf("watch ended with %d after interrupt, want 0", code)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.acted) != 0 {
		t.Errorf("interrupting watch acted on the rollout: %v", f.acted)
	}
}

// TestRolloutWatchTerminal: on a terminal, each look redraws the whole view.
func TestRolloutWatchTerminal(t *testing.T) {
	fastWatch(t)
	old := isTerminal
	isTerminal = func(io.Writer) bool { return true }
	t.Cleanup(func() { isTerminal = old })
	same := testRollout()
	same.Baked = spec.Duration(13 * time.Second)
	f := &fakeRollouts{current: []rollout.Rollout{testRollout(), same, succeeded()}}
	e := newRolloutEnv(t, f, nil)
	code, out, _ := e.run("rollout", "watch", "fraud")
	if code != 0 {
		t.Fatalf("watch = %d", code)
	}
	if n := strings.Count(out, clearScreen); n != 3 {
		t.Errorf("redrew %d times, want 3 (one per look):\n%q", n, out)
	}
	if !strings.Contains(out, "bake      13s of 30s (17s left)") {
		t.Errorf("the redraw lacks the new bake time:\n%s", out)
	}
}

// TestWatchKeyIgnoresNumbers: a waiting reason's counts change at every
// look; the plain-mode watch prints a block when its words change.
func TestWatchKeyIgnoresNumbers(t *testing.T) {
	r := testRollout()
	r.Reason = "waiting: needs about 2,400 more green requests (~4 min at the current 10 requests/s)"
	a := watchKey(r.Rollout)
	r.Reason = "waiting: needs about 2,300 more green requests (~3 min at the current 12 requests/s)"
	if b := watchKey(r.Rollout); a != b {
		t.Errorf("keys differ on numbers alone:\n%s\n%s", a, b)
	}
	r.Reason = "waiting: the stage bakes for 30s (12s served)"
	if c := watchKey(r.Rollout); c == a {
		t.Errorf("keys equal for different words")
	}
}
