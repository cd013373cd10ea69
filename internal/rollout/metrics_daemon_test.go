package rollout_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/testenv"
)

// TestMetricsAfterARollbackBetweenScrapes: on the real daemon, a rollout
// rolled back before /metrics is first scraped shows on it: counted in
// modelgate_rollouts_total and as the endpoint's last rollout, so the
// documented alerts fire on the fastest rollbacks too.
func TestMetricsAfterARollbackBetweenScrapes(t *testing.T) {
	var broken atomic.Bool
	broken.Store(true)
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{Broken: &broken})
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""), testenv.RolloutInterval(20*time.Millisecond))
	c := testenv.Connect(t, d)
	c.StartLoad(4, "/fraud/p", nil)
	r := c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "bake": "1m", "min_requests": 20, "gates": [{"type": "error_rate", "max": 0.05}], "force": true}`)
	if r = c.WaitEnded("fraud", 5*time.Second); r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("the rollout ended %s, want rolled_back: %s", r.Phase, r.Reason)
	}
	status, body := c.API(http.MethodGet, "/metrics", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /metrics = %d %s", status, body)
	}
	for _, want := range []string{
		`modelgate_rollouts_total{endpoint="fraud",result="rolled_back"} 1`,
		`modelgate_rollouts_total{endpoint="fraud",result="succeeded"} 0`,
		`modelgate_rollout_phase{endpoint="fraud",phase="rolled_back",rollout="` + r.ID + `"} 1`,
		`modelgate_rollout_canary_weight_percent{endpoint="fraud",rollout="` + r.ID + `"} 0`,
	} {
		if !strings.Contains(string(body), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("the rollout series on /metrics:\n%s", grepLines(string(body), "modelgate_rollout"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
