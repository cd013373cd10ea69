package rollout_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/testenv"
)

// TestMetricsAfterARollbackBetweenScrapes: on the real daemon, a rollout
// rolled back before /metrics is first scraped shows on it: counted in
// modelgate_rollouts_total and as the endpoint's last rollout, so the
// documented alerts fire on the fastest rollbacks too.
func TestMetricsAfterARollbackBetweenScrapes(t *testing.T) {
	// Green fails one request in three: the error_rate gate rolls it back
	// at its first look with 20 canary requests.
	blue, green := testenv.NewModel(t, testenv.Model{}), testenv.NewModel(t, testenv.Model{FailEvery: 3})
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""), testenv.RolloutInterval(20*time.Millisecond))
	c := testenv.Connect(t, d)
	c.StartLoad(4, "/fraud/p", nil)
	r := c.StartRollout("fraud", `{"canary": "green", "stages": [50, 100], "bake": "1m", "min_requests": 20, "gates": [{"type": "error_rate", "max": 0.05}]}`)
	if r = c.WaitEnded("fraud", 15*time.Second); r.Phase != rollout.PhaseRolledBack {
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

// TestMetricsAreTheSameOnEveryReplica: two gateways sharing etcd, one
// leading the rollouts. A rollout moving the endpoint refuses a traffic
// change sent to either (409 naming it); once it ended, both expose it as
// the endpoint's last rollout and count it, though only one drove it.
func TestMetricsAreTheSameOnEveryReplica(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	gw := []*testenv.Client{
		testenv.Connect(t, testenv.StartDaemon(t, testenv.ClusterConfig(t.TempDir(), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))),
		testenv.Connect(t, testenv.StartDaemon(t, testenv.ClusterConfig(t.TempDir(), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))),
	}
	body := `{"canary": "green", "stages": [10, 100], "bake": "1h"}`
	var leader *testenv.Client
	testenv.WaitFor(t, 10*time.Second, "a gateway to lead and start the rollout", func() bool {
		for _, c := range gw {
			if status, _ := c.API(http.MethodPost, "/api/v1/endpoints/fraud/rollouts", body); status == http.StatusCreated {
				leader = c
				return true
			}
		}
		return false
	})
	id := leader.Rollout("fraud").ID
	for i, c := range gw {
		testenv.WaitFor(t, 10*time.Second, "every gateway to see the rollout", func() bool { return c.Rollout("fraud").ID == id })
		status, resp := c.API(http.MethodPut, "/api/v1/endpoints/fraud/traffic", map[string]int{"blue": 50, "green": 50})
		if status != http.StatusConflict || !strings.Contains(string(resp), "rollout "+id+" is progressing on fraud") {
			t.Errorf("gateway %d: PUT traffic during the rollout = %d %s, want 409 naming %s", i, status, resp, id)
		}
	}
	if status, resp := leader.API(http.MethodPost, "/api/v1/endpoints/fraud/rollout/abort", nil); status != http.StatusOK {
		t.Fatalf("abort = %d %s", status, resp)
	}
	for i, c := range gw {
		var metrics string
		testenv.WaitFor(t, 10*time.Second, "every gateway to expose the aborted rollout", func() bool {
			_, b := c.API(http.MethodGet, "/metrics", nil)
			metrics = string(b)
			return strings.Contains(metrics, `modelgate_rollout_phase{endpoint="fraud",phase="aborted",rollout="`+id+`"} 1`)
		})
		if want := `modelgate_rollouts_total{endpoint="fraud",result="aborted"} 1` + "\n"; !strings.Contains(metrics, want) {
			t.Errorf("gateway %d lacks %s; its rollout series:\n%s", i, want, grepLines(metrics, "modelgate_rollout"))
		}
	}
}
