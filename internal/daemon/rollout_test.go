package daemon_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/testenv"
	"github.com/modelgate/modelgate/internal/webhook"
)

// startRolloutDaemon starts the daemon with fraud's blue and green at the
// given backends, looking at rollouts every 100ms, and returns a client and
// the state dir.
func startRolloutDaemon(t *testing.T, blue, green string, extra string) (*testenv.Client, string) {
	t.Helper()
	dir := t.TempDir()
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(dir, blue, green, extra), testenv.RolloutInterval(100*time.Millisecond))
	return testenv.Connect(t, d), dir
}

// thresholdPlan advances as soon as a stage has its minimum sample.
const thresholdPlan = `"bake": "500ms", "min_requests": 40, "gates": [{"type": "error_rate", "max": 0.05}, {"type": "latency", "max": 2000}]`

func TestRolloutPromotesAGoodCanaryThroughEveryStage(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	c.StartLoad(8, "/fraud/p", nil)

	testenv.WaitFor(t, 10*time.Second, "a second of stable traffic", func() bool { return blue.Served() > 200 })
	started := c.StartRollout("fraud", `{"canary": "green", "stages": [5, 25, 50, 100], `+thresholdPlan+`}`)
	if e := started.Estimate; e == nil || len(e.Warnings) > 0 || !e.WithinDeadlines || e.Total.Seconds <= 0 {
		t.Errorf("the estimate at the start under load = %+v, want one within the deadlines, without warnings", e)
	}
	r := c.WaitPhase("fraud", 60*time.Second, rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhasePaused)
	if r.Phase != rollout.PhaseSucceeded {
		t.Fatalf("rollout ended %s: %s", r.Phase, r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"green": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after promotion (-want +got):\n%s", diff)
	}
	var weights []string
	for _, e := range c.Events("fraud") {
		if e.Type == control_trafficChanged && e.Actor == "rollout" {
			var d struct{ To spec.Weights }
			json.Unmarshal(e.Data, &d)
			weights = append(weights, d.To["green"].String())
		}
	}
	if diff := cmp.Diff([]string{"5", "25", "50", "100"}, weights); diff != "" {
		t.Errorf("green's weight over the rollout's traffic changes (-want +got):\n%s", diff)
	}
	// The old stable stays registered: undo brings it back at once.
	status, body := c.API("POST", "/api/v1/endpoints/fraud/rollout/undo", nil)
	if status != 200 {
		t.Fatalf("undo = %d %s", status, body)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after undo (-want +got):\n%s", diff)
	}
}

const control_trafficChanged = "traffic.changed"

func TestRolloutRollsBackAnErrorRegressionWithin300CanaryRequests(t *testing.T) {
	// Stable fails 1% of requests, the canary 10%, deterministically.
	blue, green := testenv.NewModel(t, testenv.Model{FailEvery: 100}), testenv.NewModel(t, testenv.Model{FailEvery: 10})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	c.StartLoad(8, "/fraud/p", nil)
	testenv.WaitFor(t, 10*time.Second, "stable traffic before the rollout", func() bool { return blue.Served() > 500 })

	c.StartRollout("fraud", `{"canary": "green"}`) // the default plan: sequential gate, 5% first
	r := c.WaitPhase("fraud", 60*time.Second, rollout.PhaseRolledBack, rollout.PhaseSucceeded, rollout.PhasePaused)
	canaryRequests := green.Served()
	if r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollout ended %s (%s), want rolled_back", r.Phase, r.Reason)
	}
	if canaryRequests > 300 {
		t.Errorf("rolled back after %d canary requests, want at most 300", canaryRequests)
	}
	if !strings.Contains(r.Reason, "sequential") || !strings.Contains(r.Reason, "error rate") {
		t.Errorf("rollback reason %q does not say which gate and why", r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after rollback (-want +got):\n%s", diff)
	}
	t.Logf("rolled back after %d canary requests: %s", canaryRequests, r.Reason)
}

func TestRolloutRollsBackALatencyRegressionWithin1000CanaryRequests(t *testing.T) {
	// The canary is twice as slow, across its whole distribution. Model
	// latencies are large next to the gateway's own (under -race) so that
	// the client sees the +100%.
	blue, green := testenv.NewModel(t, testenv.Model{Delay: 20 * time.Millisecond, Jitter: 20 * time.Millisecond}), testenv.NewModel(t, testenv.Model{Delay: 40 * time.Millisecond, Jitter: 40 * time.Millisecond})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	c.StartLoad(8, "/fraud/p", nil)
	// The stage's latency thresholds are the stable's p99 and p90 over the
	// last minute, which here is the daemon's whole life: warm up long
	// enough that the first requests of a cold, loaded daemon (new
	// connections, scheduling stalls) stay well under 1% of that window.
	// After only 300 requests they once set the stable's "p99" at 103 ms,
	// above nearly every canary request, and the gate could never decide.
	testenv.WaitFor(t, 60*time.Second, "stable traffic before the rollout", func() bool { return blue.Served() > 3000 })

	c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`) // bake time does not delay a rollback
	r := c.WaitPhase("fraud", 90*time.Second, rollout.PhaseRolledBack, rollout.PhaseSucceeded, rollout.PhasePaused)
	canaryRequests := green.Served()
	if r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollout ended %s (%s), want rolled_back", r.Phase, r.Reason)
	}
	if canaryRequests > 1000 {
		t.Errorf("rolled back after %d canary requests, want at most 1000", canaryRequests)
	}
	t.Logf("rolled back after %d canary requests: %s", canaryRequests, r.Reason)
}

func TestRolloutWithTooLittleTrafficIsInconclusiveThenTakesTheDeadlineAction(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")

	started := c.StartRollout("fraud", `{"canary": "green", "progress_deadline": "2s"}`) // default on_deadline: pause
	// Told up front: with no traffic, no stage can decide before its deadline.
	if e := started.Estimate; e == nil || len(e.Warnings) == 0 || !strings.Contains(e.Warnings[0], "no traffic") {
		t.Errorf("the estimate at the start of a rollout with no traffic = %+v, want a warning that no stage can decide", e)
	}
	testenv.WaitFor(t, 10*time.Second, "an inconclusive verdict", func() bool {
		r := c.Rollout("fraud")
		return len(r.Gates) > 0 && r.Gates[0].Verdict == "inconclusive"
	})
	r := c.WaitPhase("fraud", 15*time.Second, rollout.PhasePaused, rollout.PhaseRolledBack)
	if r.Phase != rollout.PhasePaused || !strings.Contains(r.Reason, "progress deadline") {
		t.Errorf("after the deadline: %s (%s), want paused for the progress deadline", r.Phase, r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"blue": 9500, "green": 500}, c.Traffic("fraud")); diff != "" {
		t.Errorf("a paused rollout keeps its stage's traffic (-want +got):\n%s", diff)
	}

	// With on_deadline: rollback, the same wait rolls back.
	c.API("POST", "/api/v1/endpoints/fraud/rollout/abort", nil)
	c.StartRollout("fraud", `{"canary": "green", "progress_deadline": "2s", "on_deadline": "rollback"}`)
	r = c.WaitPhase("fraud", 15*time.Second, rollout.PhaseRolledBack, rollout.PhasePaused)
	if r.Phase != rollout.PhaseRolledBack || !strings.Contains(r.Reason, "progress deadline") {
		t.Errorf("with on_deadline rollback: %s (%s)", r.Phase, r.Reason)
	}
}

func TestRolloutPausesOnSampleRatioMismatch(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "    sticky_header: X-User-Id\n")
	// One heavy user pins to one deployment: the canary's measured share
	// cannot match its 25% weight.
	c.StartLoad(8, "/fraud/p", map[string]string{"X-User-Id": "the-only-user"})
	c.StartRollout("fraud", `{"canary": "green", "stages": [25, 100], "bake": "1h"}`)
	r := c.WaitPhase("fraud", 60*time.Second, rollout.PhasePaused, rollout.PhaseRolledBack, rollout.PhaseSucceeded)
	if r.Phase != rollout.PhasePaused || !strings.Contains(r.Reason, "sample ratio") {
		t.Errorf("rollout %s (%s), want paused for a sample ratio mismatch", r.Phase, r.Reason)
	}
}

func TestRolloutActions(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	act := func(action string, wantStatus int) rollout.Rollout {
		t.Helper()
		status, body := c.API("POST", "/api/v1/endpoints/fraud/rollout/"+action, nil)
		if status != wantStatus {
			t.Fatalf("%s = %d %s, want %d", action, status, body, wantStatus)
		}
		var r rollout.Rollout
		json.Unmarshal(body, &r)
		return r
	}
	slow := `{"canary": "green", "stages": [5, 25, 50], "bake": "1h"}`
	c.StartRollout("fraud", slow)
	if status, body := c.API("POST", "/api/v1/endpoints/fraud/rollouts", slow); status != 409 {
		t.Errorf("a second rollout on the same endpoint = %d %s, want 409", status, body)
	}
	if r := act("pause", 200); r.Phase != rollout.PhasePaused {
		t.Errorf("pause: phase %s", r.Phase)
	}
	act("pause", 409)
	if r := act("resume", 200); r.Phase != rollout.PhaseProgressing {
		t.Errorf("resume: phase %s", r.Phase)
	}
	if r := act("promote", 200); r.Stage != 1 || r.Weight != 2500 {
		t.Errorf("promote: stage %d weight %s, want stage 1 at 25", r.Stage, r.Weight)
	}
	if diff := cmp.Diff(spec.Weights{"blue": 7500, "green": 2500}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after promote (-want +got):\n%s", diff)
	}
	if r := act("abort", 200); r.Phase != rollout.PhaseAborted {
		t.Errorf("abort: phase %s", r.Phase)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after abort (-want +got):\n%s", diff)
	}
	act("abort", 409)
	act("undo", 409) // only after a success
	if r := act("retry", 200); r.Phase != rollout.PhaseProgressing || r.Stage != 0 || r.ID == "fraud-1" {
		t.Errorf("retry: %s stage %d id %s, want a new rollout at stage 0", r.Phase, r.Stage, r.ID)
	}
	if r := act("promote-full", 200); r.Phase != rollout.PhaseSucceeded {
		t.Errorf("promote-full: phase %s", r.Phase)
	}
	if diff := cmp.Diff(spec.Weights{"green": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after promote-full (-want +got):\n%s", diff)
	}
	if r := act("undo", 200); r.Phase != rollout.PhaseUndone {
		t.Errorf("undo: phase %s", r.Phase)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after undo (-want +got):\n%s", diff)
	}
	_, body := c.API("GET", "/api/v1/endpoints/fraud/rollouts", nil)
	var hist struct{ Rollouts []rollout.Rollout }
	json.Unmarshal(body, &hist)
	if len(hist.Rollouts) != 2 || hist.Rollouts[0].Phase != rollout.PhaseUndone || hist.Rollouts[1].Phase != rollout.PhaseAborted {
		t.Errorf("history = %+v, want the undone retry then the aborted first rollout", hist.Rollouts)
	}

	// A traffic change by hand during a rollout (forced: it is refused
	// otherwise) pauses it, and says so.
	c.StartRollout("fraud", slow)
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic?force=true", map[string]float64{"blue": 80, "green": 20}); status != 200 {
		t.Fatalf("PUT traffic: %d %s", status, body)
	}
	r := c.WaitPhase("fraud", 10*time.Second, rollout.PhasePaused)
	if !strings.Contains(r.Reason, "traffic changed by hand") {
		t.Errorf("pause reason %q does not say traffic was changed by hand", r.Reason)
	}
	// Resume continues from the same stage with the rollout's own split,
	// and stays running.
	if r := act("resume", 200); r.Phase != rollout.PhaseProgressing || r.Stage != 0 {
		t.Errorf("resume after a hand change: %s at stage %d", r.Phase, r.Stage)
	}
	if diff := cmp.Diff(spec.Weights{"blue": 9500, "green": 500}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after resume (-want +got):\n%s", diff)
	}
	ld := c.StartLoad(4, "/fraud/p", nil)
	testenv.WaitFor(t, 10*time.Second, "a few looks after resume", func() bool { return c.Rollout("fraud").Baked.D() >= time.Second })
	ld.Stop()
	if r := c.Rollout("fraud"); r.Phase != rollout.PhaseProgressing {
		t.Errorf("after resume the rollout is %s (%s), want still progressing", r.Phase, r.Reason)
	}
}

func TestRolloutSurvivesSIGKILLMidStage(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "modelgate.yaml")
	plan := `    rollout:
      stages: [5, 50, 100]
      bake: 4s
      min_requests: 20
      gates: [{type: error_rate, max: 0.05}]
`
	writeConfig(t, cfgPath, testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), plan))
	p := startProcess(t, cfgPath)
	c := p.client(t, dir)
	ld := c.StartLoad(4, "/fraud/p", nil)
	c.StartRollout("fraud", `{"canary": "green"}`)
	testenv.WaitFor(t, 30*time.Second, "stage 2", func() bool { return c.Rollout("fraud").Stage == 1 })
	// Serve part of stage 2's bake before the crash.
	testenv.WaitFor(t, 30*time.Second, "1.5s of stage 2's bake", func() bool { return c.Rollout("fraud").Baked.D() >= 1500*time.Millisecond })
	ld.Stop()
	p.stop(t, syscall.SIGKILL)

	p = startProcess(t, cfgPath)
	c = p.client(t, dir)
	r := c.Rollout("fraud")
	if r.Phase != rollout.PhaseProgressing || r.Stage != 1 {
		t.Fatalf("after restart: %s at stage %d, want progressing at stage 1", r.Phase, r.Stage)
	}
	if r.Baked <= 0 || r.Baked.D() >= 4*time.Second {
		t.Errorf("baked time kept across the crash = %s, want part of the stage's 4s", r.Baked)
	}
	c.StartLoad(4, "/fraud/p", nil)
	r = c.WaitPhase("fraud", 60*time.Second, rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhasePaused)
	if r.Phase != rollout.PhaseSucceeded {
		t.Fatalf("after restart the rollout ended %s: %s", r.Phase, r.Reason)
	}
	// Every transition is in the log exactly once, in order.
	var got []string
	for _, e := range c.Events("fraud") {
		if strings.HasPrefix(e.Type, "rollout.") && e.Type != rollout.EventGate {
			got = append(got, e.Type)
		}
	}
	want := []string{rollout.EventStarted, rollout.EventStage, rollout.EventStage, rollout.EventSucceeded}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rollout transitions in the event log (-want +got):\n%s", diff)
	}
	p.stop(t, syscall.SIGTERM)
}

func TestRolloutWebhooksAreSignedRetriedAndConfirmThePromotion(t *testing.T) {
	const secret = "s3cret"
	var mu sync.Mutex
	var delivered []store.Event
	attempts := map[string]int{} // delivery id → attempts
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !webhook.Verify(secret, body, r.Header.Get("X-Modelgate-Signature")) {
			t.Errorf("webhook %s: signature %q does not verify", r.Header.Get("X-Modelgate-Event"), r.Header.Get("X-Modelgate-Signature"))
		}
		mu.Lock()
		defer mu.Unlock()
		id := r.Header.Get("X-Modelgate-Delivery")
		attempts[id]++
		if attempts[id] <= 2 { // fail twice: the sender must retry
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var e store.Event
		json.Unmarshal(body, &e)
		delivered = append(delivered, e)
	}))
	defer hook.Close()
	var confirmAsked atomic.Int64
	var confirmOK atomic.Bool
	confirm := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		confirmAsked.Add(1)
		if !confirmOK.Load() {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer confirm.Close()

	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	extra := fmt.Sprintf("    webhooks:\n      - url: %s\n        secret: %s\n", hook.URL, secret)
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), extra)
	c.StartLoad(4, "/fraud/p", nil)
	c.StartRollout("fraud", fmt.Sprintf(`{"canary": "green", "stages": [20, 100], %s, "confirm_promotion": {"url": %q}}`, thresholdPlan, confirm.URL))

	testenv.WaitFor(t, 30*time.Second, "the confirm-promotion call", func() bool { return confirmAsked.Load() > 0 })
	if r := c.Rollout("fraud"); r.Phase != rollout.PhaseProgressing || !r.AwaitingConfirmation || r.Weight != 2000 {
		t.Errorf("while the confirmation is refused: %s awaiting=%v weight %s, want progressing at 20%% awaiting", r.Phase, r.AwaitingConfirmation, r.Weight)
	}
	confirmOK.Store(true)
	r := c.WaitPhase("fraud", 30*time.Second, rollout.PhaseSucceeded)
	if !strings.Contains(r.Reason, "confirm") {
		t.Errorf("promotion reason %q does not mention the confirmation", r.Reason)
	}
	testenv.WaitFor(t, 30*time.Second, "the succeeded event at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(delivered) > 0 && delivered[len(delivered)-1].Type == rollout.EventSucceeded
	})
	mu.Lock()
	defer mu.Unlock()
	var prev uint64
	for _, e := range delivered {
		if e.Seq <= prev {
			t.Errorf("webhook events out of order or without seq: %d after %d", e.Seq, prev)
		}
		prev = e.Seq
	}
	for id, n := range attempts {
		if n > 3 {
			t.Errorf("delivery %s took %d attempts, want it delivered at the third and not sent again", id, n)
		}
	}
	if len(delivered) < 4 { // started, stage, gate verdicts, succeeded...
		t.Errorf("only %d events delivered", len(delivered))
	}
	if delivered[0].Type != rollout.EventStarted {
		t.Errorf("first webhook event = %s, want %s", delivered[0].Type, rollout.EventStarted)
	}
}

func TestRolloutOfAPrunedEndpointEnds(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	c, dir := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`)
	// Apply a file that no longer lists fraud, with --prune: the rollout
	// must end (recorded as aborted) rather than be looked at forever.
	other := strings.Replace(testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), ""), "name: fraud", "name: churn", 1)
	if status, body := c.API("POST", "/api/v1/apply?prune=true", other); status != 200 {
		t.Fatalf("apply --prune: %d %s", status, body)
	}
	testenv.WaitFor(t, 10*time.Second, "the rollout's abort event", func() bool {
		_, body := c.API("GET", "/api/v1/events?endpoint=fraud", nil)
		return strings.Contains(string(body), `"rollout.aborted"`) && strings.Contains(string(body), "was removed")
	})
	// A new endpoint with that name can run a rollout again.
	if status, body := c.API("POST", "/api/v1/apply", testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), "")); status != 200 {
		t.Fatalf("apply: %d %s", status, body)
	}
	if r := c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`); r.Phase != rollout.PhaseProgressing {
		t.Errorf("new rollout after the endpoint came back: %s", r.Phase)
	}
}

// TestCanaryConnectionsOpenBeforeItsFirstStage: when a rollout's first
// live stage starts, the gateway has already opened connections to the
// canary's backend, before the canary serves anything: its first requests
// pay for no connection setup, as the stable's never do.
func TestCanaryConnectionsOpenBeforeItsFirstStage(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	// The stable served clients on many connections, so that every event
	// loop holds one (a loop opens its own backend connections).
	for range 32 {
		if status, dep, err := c.Predict("/fraud/p", map[string]string{"Connection": "close"}); err != nil || status != 200 || dep != "blue" {
			t.Fatalf("request to the stable: %d from %q, %v", status, dep, err)
		}
	}
	if n := green.Conns(); n != 0 {
		t.Fatalf("the canary's backend accepted %d connections before the rollout", n)
	}
	c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`)
	if n, served := green.Conns(), green.Served(); n == 0 || served != 0 {
		t.Errorf("when the first stage started, the canary's backend had accepted %d connections and served %d requests; want connections open before any request", n, served)
	}
	opened := green.Conns()
	for range 20 {
		if status, _, err := c.Predict("/fraud/p", map[string]string{"X-Model-Deployment": "green"}); err != nil || status != 200 {
			t.Fatalf("pinned request to the canary: %d, %v", status, err)
		}
	}
	if n := green.Conns(); n != opened {
		t.Errorf("the canary's first 20 requests opened %d connections of their own, want none (%d were open)", n-opened, opened)
	}
}

// TestPausedRolloutStillRollsBackABadCanary: a pause stops progress, not
// protection. A rollout paused by hand at its first stage keeps the canary
// serving 5%; when the canary starts failing half its requests, the gates,
// still judging every slice, roll it back without anyone resuming.
func TestPausedRolloutStillRollsBackABadCanary(t *testing.T) {
	var bad atomic.Bool
	var failed atomic.Int64
	green := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if bad.Load() && failed.Add(1)%2 == 0 {
			http.Error(w, `{"error":"model crashed"}`, http.StatusInternalServerError)
			return
		}
		io.WriteString(w, `{"predictions":[1]}`)
	}))
	t.Cleanup(green.Close)
	blue := testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL, "")
	c.StartLoad(8, "/fraud/p", nil)
	c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`)
	if status, body := c.API("POST", "/api/v1/endpoints/fraud/rollout/pause", nil); status != 200 {
		t.Fatalf("pause = %d %s", status, body)
	}
	// A few looks while paused and healthy: nothing moves.
	paused := c.Rollout("fraud").LastLook
	testenv.WaitFor(t, 10*time.Second, "the controller to look at the paused rollout", func() bool {
		return c.Rollout("fraud").LastLook.After(paused.Add(time.Second))
	})
	if r := c.Rollout("fraud"); r.Phase != rollout.PhasePaused {
		t.Fatalf("a healthy paused rollout is %s (%s), want paused", r.Phase, r.Reason)
	}

	bad.Store(true)
	r := c.WaitPhase("fraud", 30*time.Second, rollout.PhaseRolledBack)
	if !strings.Contains(r.Reason, "while paused") || !strings.Contains(r.Reason, "error rate") {
		t.Errorf("rollback reason %q, want a gate that failed on the errors while paused", r.Reason)
	}
	if failed.Load() == 0 {
		t.Errorf("rolled back before the canary failed a request")
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after the rollback (-want +got):\n%s", diff)
	}
	t.Logf("rolled back %d failed requests after the canary turned bad: %s", failed.Load()/2, r.Reason)
}

// TestResumeKeepsTheStagesRequests: a pause and resume do not send the
// stage's evidence back to zero: the canary requests its gates count go on
// from where they were (before, each resume restarted them, so a stage at
// low traffic could never reach min_requests).
func TestResumeKeepsTheStagesRequests(t *testing.T) {
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	load := c.StartLoad(4, "/fraud/p", nil)
	c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "bake": "1h", "min_requests": 1000000, "gates": [{"type": "error_rate", "max": 0.5}]}`)
	counted := func(r rollout.Rollout) float64 {
		for _, g := range r.Gates {
			if n, ok := g.Evidence["canary_requests"].(float64); ok {
				return n
			}
		}
		return 0
	}
	// A few whole seconds of the stage (a window counts whole seconds).
	testenv.WaitFor(t, 20*time.Second, "the stage's gate to count 200 canary requests over 2 s", func() bool {
		r := c.Rollout("fraud")
		return counted(r) >= 200 && r.Baked.D() >= 2*time.Second
	})
	load.Stop()
	stopped := time.Now()
	if status, body := c.API("POST", "/api/v1/endpoints/fraud/rollout/pause", nil); status != 200 {
		t.Fatalf("pause = %d %s", status, body)
	}
	// Resume once the last request is more than a second old, so that a
	// stage restarted by the resume would count none.
	testenv.WaitFor(t, 10*time.Second, "a look more than a second after the load", func() bool {
		return c.Rollout("fraud").LastLook.After(stopped.Add(1100 * time.Millisecond))
	})
	before := counted(c.Rollout("fraud"))
	if before < 200 {
		t.Fatalf("the paused stage's gate counts %v canary requests, want the stage's 200 or more", before)
	}
	if status, body := c.API("POST", "/api/v1/endpoints/fraud/rollout/resume", nil); status != 200 {
		t.Fatalf("resume = %d %s", status, body)
	}
	resumed := c.Rollout("fraud").LastLook
	testenv.WaitFor(t, 10*time.Second, "a look after the resume", func() bool { return c.Rollout("fraud").LastLook.After(resumed) })
	if after := counted(c.Rollout("fraud")); after < before {
		t.Errorf("the stage's gate counts %v canary requests after the resume, %v before: the stage's evidence restarted", after, before)
	}
}

// TestRolloutFinalBakeUndoesACanaryThatDegradesAtFullTraffic: with a final
// bake, the promoted canary keeps being watched at 100%; when it breaks,
// the stable gets all traffic back on its own. A rollout-wide timeout
// rolls a rollout that cannot finish back.
func TestRolloutFinalBakeUndoesACanaryThatDegradesAtFullTraffic(t *testing.T) {
	broken := new(atomic.Bool)
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{Broken: broken})
	c, _ := startRolloutDaemon(t, blue.URL(), green.URL(), "")
	c.StartLoad(8, "/fraud/p", nil)

	c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "final_bake": "1h", `+thresholdPlan+`}`)
	r := c.WaitPhase("fraud", 60*time.Second, rollout.PhaseFinalBake, rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhasePaused)
	if r.Phase != rollout.PhaseFinalBake {
		t.Fatalf("after the last stage: %s (%s), want final_bake", r.Phase, r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"green": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic in the final bake (-want +got):\n%s", diff)
	}
	broken.Store(true)
	r = c.WaitPhase("fraud", 30*time.Second, rollout.PhaseRolledBack, rollout.PhaseSucceeded, rollout.PhasePaused)
	if r.Phase != rollout.PhaseRolledBack || !strings.Contains(r.Reason, "final bake") || !strings.Contains(r.Reason, "error rate") {
		t.Errorf("a canary broken at 100%%: %s (%s), want rolled_back in the final bake for its error rate", r.Phase, r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"blue": spec.Full}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after the final bake's rollback (-want +got):\n%s", diff)
	}

	broken.Store(false)
	c.StartRollout("fraud", `{"canary": "green", "bake": "1h", "timeout": "2s"}`)
	r = c.WaitPhase("fraud", 15*time.Second, rollout.PhaseRolledBack, rollout.PhaseSucceeded, rollout.PhasePaused)
	if r.Phase != rollout.PhaseRolledBack || !strings.Contains(r.Reason, "timeout of 2s passed") {
		t.Errorf("a rollout past its timeout: %s (%s), want rolled_back for the timeout", r.Phase, r.Reason)
	}

	// The stable, at 0% in the final bake, removed by hand: no rollback is
	// possible any more, and the rollout ends saying so instead of failing
	// at every look.
	c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "final_bake": "1h", `+thresholdPlan+`}`)
	c.WaitPhase("fraud", 60*time.Second, rollout.PhaseFinalBake)
	if status, body := c.API("DELETE", "/api/v1/endpoints/fraud/deployments/blue", nil); status != 200 && status != 204 {
		t.Fatalf("remove blue in the final bake = %d %s", status, body)
	}
	r = c.WaitPhase("fraud", 15*time.Second, rollout.PhaseAborted, rollout.PhaseRolledBack, rollout.PhaseSucceeded)
	if r.Phase != rollout.PhaseAborted || !strings.Contains(r.Reason, "deployment blue was removed") {
		t.Errorf("the stable removed in the final bake: %s (%s), want aborted saying so", r.Phase, r.Reason)
	}
}
