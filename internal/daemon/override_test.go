package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

// slowOnAsk is a model answering in 20 ms, or in a second when the
// request carries X-Slow.
func slowOnAsk(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := 20 * time.Millisecond
		if r.Header.Get("X-Slow") != "" {
			d = time.Second
		}
		select { // the model's own time, cut short if the client leaves
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"predictions":[1]}`))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestPinnedSlowRequestsMoveNoGate is the attack of issue 15: while a
// healthy canary bakes, 40 slow requests pinned to it with
// X-Model-Deployment, a few percent of its stage's requests, once made its
// stage p99 the pinned requests' latency and rolled it back. They are
// served and counted as override requests, but no gate reads them.
func TestPinnedSlowRequestsMoveNoGate(t *testing.T) {
	c, _ := startRolloutDaemon(t, slowOnAsk(t), slowOnAsk(t), "")
	c.StartLoad(8, "/fraud/p", nil)
	c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "bake": "1h", "min_requests": 200, "gates": [
		{"type": "error_rate", "max": 0.05},
		{"type": "latency", "max": 800},
		{"type": "ttfb", "max": 800}]}`)
	testenv.WaitFor(t, 20*time.Second, "the canary's stage to start", func() bool {
		r := c.Rollout("fraud")
		return r.Phase == rollout.PhaseProgressing && r.Weight == 50*spec.Full/100
	})

	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			status, dep, err := c.Predict("/fraud/p", map[string]string{"X-Model-Deployment": "green", "X-Slow": "1"})
			if err != nil || status != 200 || dep != "green" {
				t.Errorf("pinned request: %d from %q, %v", status, dep, err)
			}
		})
	}
	wg.Wait()
	// The controller reads whole seconds: wait until it looked at the
	// second after the last pinned request ended, with the gates past
	// their minimum sample.
	done := time.Now()
	testenv.WaitFor(t, 30*time.Second, "the controller to judge past the pinned requests", func() bool {
		r := c.Rollout("fraud")
		if r.Phase != rollout.PhaseProgressing {
			return true
		}
		if !r.LastLook.After(done.Add(1100 * time.Millisecond)) {
			return false
		}
		for _, g := range r.Gates {
			if g.Verdict == analysis.Inconclusive {
				return false
			}
		}
		return len(r.Gates) > 0
	})

	r := c.Rollout("fraud")
	if r.Phase != rollout.PhaseProgressing {
		t.Fatalf("rollout %s (%s), want it still progressing", r.Phase, r.Reason)
	}
	judged := map[string]bool{}
	for _, g := range r.Gates {
		judged[g.Gate] = true
		if g.Verdict == analysis.Fail {
			t.Errorf("gate %s failed: %s", g.Gate, g.Reason)
		}
		if ms, ok := g.Evidence["canary_ms"].(float64); ok && ms >= 800 {
			t.Errorf("gate %s reads the canary at %.0f ms: the pinned requests count", g.Gate, ms)
		}
	}
	for _, want := range []string{"latency p99", "ttfb p99"} {
		if !judged[want] {
			t.Errorf("gates %v: no %s gate judged", judged, want)
		}
	}
	m := c.Metrics("fraud", "1m")
	g := m.Deployments["green"]
	if g.OverrideRequests != 40 {
		t.Errorf("green override_requests = %d, want the 40 pinned", g.OverrideRequests)
	}
	if p99 := g.LatencyMS.P99; p99 >= 800 {
		t.Errorf("green latency p99 over the last minute %.0f ms: the pinned requests are in the window", p99)
	}
}

// TestOverrideSecretFileOnApply: an endpoint whose override secret file
// others can read is refused whole, naming the field and the fix; once the
// file is private, the same file applies, pins need the secret, and the
// secret is neither stored nor shown.
func TestOverrideSecretFileOnApply(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)
	_, before := c.API("GET", "/api/v1/endpoints/fraud", nil)

	secret := strings.Repeat("9f", 20)
	path := filepath.Join(dir, "pin.secret")
	if err := os.WriteFile(path, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	file := testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), fmt.Sprintf("    override: {secret_file: %s}\n", path))
	status, body := c.API("POST", "/api/v1/apply", file)
	if status != 400 || !strings.Contains(string(body), "endpoints[0].override.secret_file") || !strings.Contains(string(body), "chmod 600 "+path) {
		t.Fatalf("apply with a world-readable secret file = %d %s, want 400 naming the field and the fix", status, body)
	}
	if _, after := c.API("GET", "/api/v1/endpoints/fraud", nil); string(after) != string(before) {
		t.Errorf("a refused apply changed the endpoint:\nbefore %s\nafter  %s", before, after)
	}
	if st, dep, _ := c.Predict("/fraud/x", map[string]string{"X-Model-Deployment": "green"}); st != 200 || dep != "green" {
		t.Errorf("pin after the refused apply: %d %q, want green without a secret still", st, dep)
	}

	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if status, body := c.API("POST", "/api/v1/apply", file); status != 200 {
		t.Fatalf("apply with a private secret file = %d %s", status, body)
	}
	for _, tc := range []struct {
		secret string
		status int
	}{{"", 403}, {"wrong", 403}, {secret, 200}} {
		hdr := map[string]string{"X-Model-Deployment": "green"}
		if tc.secret != "" {
			hdr["X-Model-Deployment-Secret"] = tc.secret
		}
		if st, _, _ := c.Predict("/fraud/x", hdr); st != tc.status {
			t.Errorf("pin with secret %q: %d, want %d", tc.secret, st, tc.status)
		}
	}
	// The file going bad later blocks nothing: a traffic change (as a
	// rollback would make) is stored and served, and the secret read
	// before still holds.
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 50, "green": 50}); status != 200 {
		t.Fatalf("PUT traffic while the secret file is unusable = %d %s, want 200", status, body)
	}
	if diff := cmp.Diff(spec.Weights{"blue": 5000, "green": 5000}, c.Traffic("fraud")); diff != "" {
		t.Errorf("traffic after the change (-want +got):\n%s", diff)
	}
	if st, _, _ := c.Predict("/fraud/x", map[string]string{"X-Model-Deployment": "green", "X-Model-Deployment-Secret": secret}); st != 200 {
		t.Errorf("pin with the secret read before: %d, want 200", st)
	}
	// Rotating: write the new secret, apply the same file again.
	rotated := strings.Repeat("7e", 20)
	if err := os.WriteFile(path, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	if status, body := c.API("POST", "/api/v1/apply", file); status != 200 {
		t.Fatalf("apply after rotating = %d %s", status, body)
	}
	for s, want := range map[string]int{secret: 403, rotated: 200} {
		if st, _, _ := c.Predict("/fraud/x", map[string]string{"X-Model-Deployment": "green", "X-Model-Deployment-Secret": s}); st != want {
			t.Errorf("after rotating, pin with %q: %d, want %d", s[:6], st, want)
		}
	}

	_, ep := c.API("GET", "/api/v1/endpoints/fraud", nil)
	_, events := c.API("GET", "/api/v1/events", nil)
	var got struct{ Override *spec.Override }
	json.Unmarshal(ep, &got)
	if got.Override == nil || got.Override.SecretFile != path {
		t.Errorf("endpoint %s: want override.secret_file %s", ep, path)
	}
	if strings.Contains(string(ep), secret) || strings.Contains(string(events), secret) || strings.Contains(string(events), rotated) {
		t.Errorf("the secret itself is shown by the API")
	}
}
