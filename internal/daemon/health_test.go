package daemon_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/testenv"
)

// startWithDownCanary starts the daemon with fraud's blue serving and
// green's one backend on a closed port, both checked every 50ms, logging
// into logs.
func startWithDownCanary(t *testing.T, blue, green string, logs io.Writer) *testenv.Client {
	t.Helper()
	// blue's backend twice: one series on /metrics.
	yaml := testenv.ConfigHeader(t.TempDir()) + testenv.CheckedEndpoint(blue+", "+blue, green)
	d := testenv.StartDaemon(t, yaml, testenv.RolloutInterval(100*time.Millisecond), func(o *daemon.Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
	})
	return testenv.Connect(t, d)
}

func TestABackendThatIsDownIsShownLoggedAndRefusesACanary(t *testing.T) {
	blue := testenv.NewModel(t, testenv.Model{})
	green := nettest.ClosedURL(t)
	var logs testenv.SyncBuffer
	c := startWithDownCanary(t, blue.URL(), green, &logs)

	// /metrics: modelgate_backend_up per backend.
	downLine := fmt.Sprintf(`modelgate_backend_up{backend=%q,deployment="green",endpoint="fraud"} 0`, green)
	upLine := fmt.Sprintf(`modelgate_backend_up{backend=%q,deployment="blue",endpoint="fraud"} 1`, blue.URL())
	var metrics string
	testenv.WaitFor(t, 5*time.Second, "green down in /metrics", func() bool {
		resp, err := c.HTTP.Get(c.Admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
		return strings.Contains(metrics, downLine)
	})
	if !strings.Contains(metrics, upLine) {
		t.Errorf("/metrics lacks %s", upLine)
	}

	// The API.
	var h api.EndpointHealth
	c.Get("/api/v1/endpoints/fraud/health", &h)
	if len(h.Deployments) != 2 || h.Deployments[0].Name != "blue" || !h.Deployments[0].Healthy || h.Deployments[1].Name != "green" || h.Deployments[1].Healthy {
		t.Fatalf("health = %+v, want blue healthy, green not", h)
	}
	if b := h.Deployments[1].Backends; len(b) != 1 || b[0].URL != green || !strings.Contains(b[0].LastError, "health check") {
		t.Errorf("green's backends = %+v, want %s with its health check's error", b, green)
	}
	if status, body := c.API(http.MethodGet, "/api/v1/endpoints/nope/health", nil); status != http.StatusNotFound {
		t.Errorf("health of an unknown endpoint = %d %s, want 404", status, body)
	}

	// The log names the backend (once per change: TestHealthChangesAreLoggedOnce).
	testenv.WaitFor(t, 5*time.Second, "the down backend logged", func() bool {
		return strings.Contains(logs.String(), "backend down") && strings.Contains(logs.String(), "backend="+green)
	})

	// The start refusal, naming the backend and why, and the fix.
	status, body := c.API(http.MethodPost, "/api/v1/endpoints/fraud/rollouts", `{"canary": "green"}`)
	if status != http.StatusConflict {
		t.Fatalf("start with a down canary = %d %s, want 409", status, body)
	}
	for _, want := range []string{`canary \"green\" of \"fraud\" has no healthy backend`, green, "health check", "--force"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("refusal %s lacks %q", body, want)
		}
	}
	r := c.StartRollout("fraud", `{"canary": "green", "force": true}`)
	if r.Canary != "green" {
		t.Errorf("forced start = %+v", r)
	}
}

func TestACanaryWhoseBackendDiesIsRolledBackNamingThatCause(t *testing.T) {
	blue := testenv.NewModel(t, testenv.Model{})
	var greenServed atomic.Int64
	green := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		greenServed.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"predictions":[1]}`)
	}))
	t.Cleanup(green.Close)
	var logs testenv.SyncBuffer
	c := startWithDownCanary(t, blue.URL(), green.URL, &logs)
	c.StartLoad(8, "/fraud/p", nil)

	testenv.WaitFor(t, 5*time.Second, "stable traffic", func() bool { return blue.Served() > 50 })
	// A long bake holds the first stage: only the gates can end it.
	c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "bake": "1m", "min_requests": 40, "gates": [{"type": "error_rate", "max": 0.05}]}`)
	testenv.WaitFor(t, 5*time.Second, "green serving its stage", func() bool { return greenServed.Load() > 20 })
	green.Close() // the canary's model server dies

	r := c.WaitEnded("fraud", 15*time.Second)
	if r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollout ended %s: %s", r.Phase, r.Reason)
	}
	t.Logf("reason: %s", r.Reason)
	if !strings.HasPrefix(r.Reason, "green had no healthy backend: ") || !strings.Contains(r.Reason, " requests answered 5xx (503 while none may take one; its backends: http://") {
		t.Errorf("rollback reason = %q, want it to start with green had no healthy backend: N requests answered 5xx", r.Reason)
	}
}

func TestApplyWarnsOfADeploymentWithNoHealthyBackend(t *testing.T) {
	blue := testenv.NewModel(t, testenv.Model{})
	var logs testenv.SyncBuffer
	c := startWithDownCanary(t, blue.URL(), blue.URL(), &logs)
	red := nettest.ClosedURL(t)
	// red is new: the apply waits for its first health check's verdict.
	file := "endpoints:\n" + strings.Replace(testenv.CheckedEndpoint(blue.URL(), blue.URL()), "    traffic:",
		fmt.Sprintf("      - name: red\n        backends: [%s]\n        health_check: {path: /, interval: 1m}\n    traffic:", red), 1)
	req, _ := http.NewRequest(http.MethodPost, c.Admin+"/api/v1/apply", strings.NewReader(file))
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("apply = %d %s", resp.StatusCode, body)
	}
	w := resp.Header.Values("Warning")
	if len(w) != 1 || !strings.Contains(w[0], "deployment red of fraud has no healthy backend: "+red) || !strings.Contains(w[0], "modelgate health fraud") {
		t.Errorf("apply's warnings = %q, want one naming red and %s", w, red)
	}
}
