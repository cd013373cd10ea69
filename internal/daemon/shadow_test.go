package daemon_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/shadow"
	"github.com/modelgate/modelgate/internal/testenv"
)

// predictionBackend answers KServe v1 predictions; disagreeEvery > 0 makes
// every n-th answer differ from the stable's.
func predictionBackend(t *testing.T, disagreeEvery int64, delay time.Duration) *testenv.Backend {
	t.Helper()
	return testenv.NewModel(t, testenv.Model{Answer: `{"predictions":[0.1, 0.9]}`,
		DisagreeEvery: disagreeEvery, Disagree: `{"predictions":[0.9, 0.1]}`, Delay: delay})
}

func TestShadowAgreeingAndDisagreeingShadowsAreCounted(t *testing.T) {
	blue := predictionBackend(t, 0, 0)
	same := predictionBackend(t, 0, 0)
	quarter := predictionBackend(t, 4, 0) // every 4th answer differs
	cfg := testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), same.URL(), "")
	cfg = strings.Replace(cfg, "    traffic: {blue: 100}", fmt.Sprintf("      - name: red\n        backends: [%s]\n    traffic: {blue: 100}\n    mirror: {green: 100, red: 100}", quarter.URL()), 1)
	d := testenv.StartDaemon(t, cfg)
	c := testenv.Connect(t, d)

	const n = 2000
	counts := sendConcurrently(t, c, n, 8, nil)
	if counts["blue"] != n {
		t.Fatalf("live answers %v, want all %d from blue", counts, n)
	}
	var rep shadow.Report
	testenv.WaitFor(t, 20*time.Second, "every copy compared", func() bool {
		rep = c.ShadowReport("fraud", "5m")
		return rep.Shadows["green"].Matched+rep.Shadows["green"].Mismatched == n && rep.Shadows["red"].Matched+rep.Shadows["red"].Mismatched == n
	})
	g, r := rep.Shadows["green"], rep.Shadows["red"]
	if g.MatchRate == nil || *g.MatchRate != 1 {
		t.Errorf("agreeing shadow match rate = %v, want 1", g.MatchRate)
	}
	if r.MatchRate == nil || r.MatchRateCI95 == nil || 0.75 < r.MatchRateCI95[0] || 0.75 > r.MatchRateCI95[1] {
		t.Errorf("shadow disagreeing on 1 in 4: match rate %v, interval %v; want 0.75 inside the interval", r.MatchRate, r.MatchRateCI95)
	}
	if len(r.Mismatches) == 0 || r.Mismatches[0].RequestID == "" {
		t.Errorf("no mismatch sample with a request id: %+v", r.Mismatches)
	}
	// The CLI shows the same report.
	var stdout, stderr bytes.Buffer
	code := cli.Execute([]string{"--admin", d.AdminAddr(), "--token-file", d.TokenPath(), "shadow", "report", "fraud"}, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "100.00%") || !strings.Contains(stdout.String(), "red") {
		t.Errorf("modelgate shadow report fraud: exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	// Shadow copies are never in live telemetry.
	_, body := c.API("GET", "/api/v1/endpoints/fraud/metrics", nil)
	var m struct {
		Deployments map[string]struct{ Requests uint64 }
	}
	json.Unmarshal(body, &m)
	if m.Deployments["green"].Requests != 0 || m.Deployments["red"].Requests != 0 || m.Deployments["blue"].Requests != n {
		t.Errorf("live metrics %+v, want only blue's %d requests", m.Deployments, n)
	}
}

func TestShadowFailuresNeverTouchTheLiveAnswer(t *testing.T) {
	blue := predictionBackend(t, 0, 0)
	slow := predictionBackend(t, 0, 50*time.Millisecond)
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // net/http notices the client leaving only once the body is read
		<-r.Context().Done()
	}))
	defer hang.Close()
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()

	cfg := testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), slow.URL(), "")
	cfg = strings.Replace(cfg, "    traffic: {blue: 100}", fmt.Sprintf(`      - name: hang
        backends: [%s]
      - name: down
        backends: [%s]
    traffic: {blue: 100}
    mirror: {green: 100, hang: 100, down: 100}
    compare: {shadow_timeout: 300ms, queue: 50, workers: 2}`, hang.URL, downURL), 1)
	d := testenv.StartDaemon(t, cfg)
	c := testenv.Connect(t, d)

	const n = 600
	start := time.Now()
	counts := sendConcurrently(t, c, n, 8, nil) // fails the test on any non-200
	elapsed := time.Since(start)
	if counts["blue"] != n {
		t.Fatalf("live answers %v, want all %d from blue", counts, n)
	}
	var rep shadow.Report
	// The hanging shadow's copies time out 300 ms after they were sent, so
	// wait for every outcome to be counted rather than for the first one.
	testenv.WaitFor(t, 20*time.Second, "every shadow's outcome counted", func() bool {
		rep = c.ShadowReport("fraud", "5m")
		h, dn := rep.Shadows["hang"], rep.Shadows["down"]
		return rep.Shadows["green"].Matched > 0 && h.Timeouts > 0 && h.Dropped > 0 && dn.Errors > 0 &&
			h.Mirrored == n && dn.Mirrored == n
	})
	h, dn := rep.Shadows["hang"], rep.Shadows["down"]
	if h.Timeouts == 0 || h.Dropped == 0 {
		t.Errorf("hanging shadow: timeouts %d dropped %d; want both counted (queue 50 fills)", h.Timeouts, h.Dropped)
	}
	if dn.Errors == 0 {
		t.Errorf("down shadow: errors %d, want counted", dn.Errors)
	}
	if h.Mirrored != n || dn.Mirrored != n {
		t.Errorf("mirrored hang=%d down=%d, want %d each", h.Mirrored, dn.Mirrored, n)
	}
	t.Logf("%d live requests in %s with a hanging, a down and a 50 ms slower shadow", n, elapsed)
}

func TestRolloutShadowPhase(t *testing.T) {
	blue := predictionBackend(t, 0, 0)
	agrees := predictionBackend(t, 0, 0)
	disagrees := predictionBackend(t, 2, 0) // every 2nd answer differs
	cfg := testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), agrees.URL(), "")
	cfg = strings.Replace(cfg, "    traffic: {blue: 100}", fmt.Sprintf("      - name: red\n        backends: [%s]\n    traffic: {blue: 100}", disagrees.URL()), 1)
	d := testenv.StartDaemon(t, cfg, testenv.RolloutInterval(100*time.Millisecond))
	c := testenv.Connect(t, d)
	ld := c.StartLoad(8, "/fraud/p", nil)
	plan := `"shadow": {"mirror": 50, "min_compared": 100, "min_match_rate": 0.9}, "stages": [10, 100], ` + thresholdPlan

	// A shadow that disagrees on half the requests stops the rollout
	// before it serves a single live request.
	c.StartRollout("fraud", `{"canary": "red", `+plan+`}`)
	r := c.WaitPhase("fraud", 60*time.Second, rollout.PhaseRolledBack, rollout.PhaseProgressing, rollout.PhaseSucceeded, rollout.PhasePaused)
	if r.Phase != rollout.PhaseRolledBack || r.Stage != rollout.ShadowStage || !strings.Contains(r.Reason, "shadow") {
		t.Fatalf("disagreeing shadow: %s at stage %d (%s), want rolled back in the shadow phase", r.Phase, r.Stage, r.Reason)
	}
	_, body := c.API("GET", "/api/v1/endpoints/fraud/metrics", nil)
	var m struct {
		Deployments map[string]struct{ Requests uint64 }
	}
	json.Unmarshal(body, &m)
	if live := m.Deployments["red"].Requests; live != 0 || disagrees.Served() == 0 {
		t.Errorf("red served %d live requests (and %d shadow copies); want shadow copies only", live, disagrees.Served())
	}
	if _, body := c.API("GET", "/api/v1/endpoints/fraud/mirror", nil); strings.Contains(string(body), "red") {
		t.Errorf("mirror after the rollback = %s, want red's mirror removed", body)
	}

	// A shadow that agrees passes the shadow phase, then goes live.
	c.StartRollout("fraud", `{"canary": "green", `+plan+`}`)
	r = c.WaitPhase("fraud", 60*time.Second, rollout.PhaseSucceeded, rollout.PhaseRolledBack, rollout.PhasePaused)
	if r.Phase != rollout.PhaseSucceeded {
		t.Fatalf("agreeing shadow: rollout ended %s (%s)", r.Phase, r.Reason)
	}
	ld.Stop()
	var types []string
	for _, e := range c.Events("fraud") {
		if strings.HasPrefix(e.Type, "rollout.") && e.Type != rollout.EventGate && strings.Contains(string(e.Data), `"fraud-2"`) {
			types = append(types, e.Type)
		}
	}
	if len(types) < 3 || types[0] != rollout.EventStarted || !strings.Contains(strings.Join(types, " "), rollout.EventStage) {
		t.Errorf("second rollout's transitions = %v", types)
	}
	if agrees.Served() == 0 {
		t.Errorf("green never served")
	}
}
