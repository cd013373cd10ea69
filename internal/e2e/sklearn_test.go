package e2e_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

// sendAll sends inputs[i] through ep for every i from workers goroutines
// and returns the class each got and the deployment that answered it;
// anything but 200 fails the test.
func sendAll(t *testing.T, c *testenv.Client, ep string, inputs [][]float64, workers int) ([]int, []string) {
	t.Helper()
	classes := make([]int, len(inputs))
	deps := make([]string, len(inputs))
	var next, failed atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(inputs) {
					return
				}
				status, dep, class, err := predictV1(c, ep, inputs[i], nil)
				if err != nil || status != http.StatusOK {
					if failed.Add(1) <= 5 {
						t.Errorf("input %d: status %d, %v", i, status, err)
					}
					continue
				}
				classes[i], deps[i] = class, dep
			}
		}()
	}
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed", n, len(inputs))
	}
	return classes, deps
}

func TestSklearnShadowMatchRateIsScikitLearnsOwnAgreement(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	lr, lrReady := launchSklearn(t, "--model", "lr")
	rf, rfReady := launchSklearn(t, "--model", "rf")
	a := agreementOn2000(t)
	lrReady()
	rfReady()
	t.Logf("python ready after %s", time.Since(begin).Round(time.Millisecond))

	// Every request is mirrored to rf; the queue holds them all, so that
	// none is dropped and the report compares exactly the inputs sent.
	c := startDaemon(t, testenv.ConfigHeader(t.TempDir())+fmt.Sprintf(`  - name: cancer
    deployments:
      - name: lr
        backends: [%s]
      - name: rf
        backends: [%s]
    traffic: {lr: 100}
    mirror: {rf: 100}
    compare:
      protocol: kserve_v1
      comparator: label
      queue: 4000
`, lr.url, rf.url))

	start := time.Now()
	classes, deps := sendAll(t, c, "cancer", a.Inputs, 8)
	t.Logf("%d inputs sent in %s", a.N, time.Since(start).Round(time.Millisecond))
	for i := range a.Inputs {
		if deps[i] != "lr" || classes[i] != a.LR[i] {
			t.Fatalf("input %d: %s answered %d, want lr answering %d as scikit-learn did", i, deps[i], classes[i], a.LR[i])
		}
	}

	var rep = c.ShadowReport("cancer", "5m").Shadows["rf"]
	testenv.WaitFor(t, 60*time.Second, "every copy to rf compared or accounted for", func() bool {
		rep = c.ShadowReport("cancer", "5m").Shadows["rf"]
		return rep.Compared+rep.NotCompared+rep.Errors+rep.Timeouts+rep.Dropped+rep.Skipped >= uint64(a.N)
	})
	t.Logf("every copy accounted for %s after the first request", time.Since(start).Round(time.Millisecond))
	if rep.Mirrored != uint64(a.N) || rep.Compared != uint64(a.N) || rep.Dropped+rep.Skipped+rep.NotCompared+rep.Errors+rep.Timeouts != 0 {
		t.Fatalf("rf: mirrored %d, compared %d, dropped %d, skipped %d, not compared %d, errors %d, timeouts %d; want all %d compared",
			rep.Mirrored, rep.Compared, rep.Dropped, rep.Skipped, rep.NotCompared, rep.Errors, rep.Timeouts, a.N)
	}
	if rep.MatchRate == nil || rep.MatchRateCI95 == nil {
		t.Fatalf("rf: no match rate in the report")
	}
	ci := *rep.MatchRateCI95
	t.Logf("scikit-learn: lr and rf agree on %d of %d inputs (%.4f); modelgate: match rate %.4f, 95%% interval [%.4f, %.4f]",
		a.Matched, a.N, a.Agreement, *rep.MatchRate, ci[0], ci[1])
	if a.Agreement < ci[0] || a.Agreement > ci[1] {
		t.Errorf("scikit-learn's agreement %.4f is outside the report's 95%% interval [%.4f, %.4f]", a.Agreement, ci[0], ci[1])
	}
	// Both sides are deterministic and see the same inputs: the counts are
	// not just close, they are the same.
	if rep.Matched != uint64(a.Matched) {
		t.Errorf("report matched %d of %d, scikit-learn %d of %d", rep.Matched, rep.Compared, a.Matched, a.N)
	}
	if a.Matched == a.N {
		t.Fatalf("the two models agree on every input: the test cannot tell a comparison from none")
	}
	// The mismatch samples name the class each model gave.
	if len(rep.Mismatches) == 0 {
		t.Errorf("no mismatch sampled")
	}
	for _, m := range rep.Mismatches {
		if !strings.HasPrefix(m.Path, "predictions") || m.Live == m.Shadow {
			t.Errorf("mismatch %+v: want a predictions path with two different classes", m)
		}
	}
}

// predictLoad sends the agreement inputs through an endpoint from workers
// until stopped, counting answers by deployment and status.
type predictLoad struct {
	*testenv.Load
	mu   sync.Mutex
	seen map[string]int // "deployment status"
}

func startPredictLoad(t *testing.T, c *testenv.Client, ep string, inputs [][]float64, workers int) *predictLoad {
	l := &predictLoad{seen: map[string]int{}}
	var next atomic.Int64
	l.Load = testenv.StartLoad(t, workers, 0, func() {
		i := int(next.Add(1)) % len(inputs)
		status, dep, _, err := predictV1(c, ep, inputs[i], nil)
		if err != nil {
			return // the daemon is shutting down at the test's end
		}
		l.mu.Lock()
		l.seen[fmt.Sprintf("%s %d", dep, status)]++
		l.mu.Unlock()
	})
	return l
}

// gatedPlan is a quick plan with threshold gates, the sequential gate
// only able to roll back. The latency bound only catches a model that
// hangs: on a loaded test machine a Python server's p99 reaches seconds.
const gatedPlan = `"stages": [20, 50, 100], "bake": "1s", "min_requests": 50,
	"gates": [{"type": "error_rate", "max": 0.05}, {"type": "latency", "quantile": 0.99, "max": 5000},
	          {"type": "sequential", "rollback_only": true}]`

func TestSklearnRolloutPromotesTheHealthyModelAndRollsBackTheDegradedOne(t *testing.T) {
	t.Parallel()
	// v1, in production, is the random forest; v2 the logistic regression,
	// as accurate and much cheaper to run; v3 the same regression on a
	// server that fails 20% of its predictions. (The other way round, the
	// sequential gate rightly rolls the forest back: it is slower.)
	v1, v1Ready := launchSklearn(t, "--model", "rf")
	v2, v2Ready := launchSklearn(t, "--model", "lr")
	v3, v3Ready := launchSklearn(t, "--model", "lr", "--error-rate", "0.2")
	a := agreementOn2000(t)
	v1Ready()
	v2Ready()
	v3Ready()
	c := startDaemon(t, testenv.ConfigHeader(t.TempDir())+fmt.Sprintf(`  - name: cancer
    deployments:
      - name: v1
        backends: [%s]
        health_check: {path: /v2/health/ready, interval: 1s}
      - name: v2
        backends: [%s]
        health_check: {path: /v2/health/ready, interval: 1s}
      - name: v3
        backends: [%s]
        health_check: {path: /v2/health/ready, interval: 1s}
    traffic: {v1: 100}
`, v1.url, v2.url, v3.url))

	// Both wire formats pass through: OIP v2 FP32 rows, answered by the
	// deployment the override header names, as scikit-learn predicts them.
	for _, tc := range []struct {
		dep  string
		want []int
	}{{"v1", a.RF[:50]}, {"v2", a.LR[:50]}} {
		if got := inferV2(t, c, "cancer", tc.dep, a.Inputs[:50]); !cmp.Equal(tc.want, got) {
			t.Errorf("OIP v2 infer of 50 rows on %s = %v, want %v", tc.dep, got, tc.want)
		}
	}

	// v3 has served nothing yet: its server's first predictions are slow
	// (first calls into scikit-learn, new connections). Nobody warms it by
	// hand: the plan's warm-up and latency tolerance keep a cold start from
	// reading as a regression, and its errors still roll it back.

	ld := startPredictLoad(t, c, "cancer", a.Inputs, 4)
	c.StartRollout("cancer", `{"canary": "v2", `+gatedPlan+`}`)
	r := c.WaitEnded("cancer", 45*time.Second)
	if r.Phase != rollout.PhaseSucceeded {
		t.Fatalf("rollout of the healthy lr ended %s: %s", r.Phase, r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"v2": spec.Full}, c.Traffic("cancer")); diff != "" {
		t.Errorf("traffic after promoting v2 (-want +got):\n%s", diff)
	}
	t.Logf("v1 → v2 (healthy lr): %s: %s", r.Phase, r.Reason)

	c.StartRollout("cancer", `{"canary": "v3", `+gatedPlan+`}`)
	r = c.WaitEnded("cancer", 45*time.Second)
	ld.Stop()
	if r.Phase != rollout.PhaseRolledBack {
		t.Fatalf("rollout of lr failing 20%% of requests ended %s: %s", r.Phase, r.Reason)
	}
	if !strings.Contains(r.Reason, "error") {
		t.Errorf("rollback reason %q does not say the errors were the cause", r.Reason)
	}
	if diff := cmp.Diff(spec.Weights{"v2": spec.Full}, c.Traffic("cancer")); diff != "" {
		t.Errorf("traffic after rolling v3 back (-want +got):\n%s", diff)
	}
	t.Logf("v2 → v3 (lr failing 20%%): %s: %s", r.Phase, r.Reason)
	m := c.Metrics("cancer", "1m")
	t.Logf("last minute: v1 %d requests, v2 %d (error rate %.3f), v3 %d (error rate %.3f); answers seen %v",
		m.Deployments["v1"].Requests, m.Deployments["v2"].Requests, m.Deployments["v2"].ErrorRate,
		m.Deployments["v3"].Requests, m.Deployments["v3"].ErrorRate, ld.seen)
	// (v3's errors in the window include the warm-up's, so the reason
	// checked above, computed from split traffic only, names the cause.)
}

// postV2 sends rows as one OIP v2 FP32 request with id, pinned to dep.
func postV2(t *testing.T, c *testenv.Client, ep, dep, id string, rows [][]float64) *http.Response {
	t.Helper()
	var flat []float64
	for _, r := range rows {
		flat = append(flat, r...)
	}
	body, _ := json.Marshal(map[string]any{"id": id, "inputs": []any{map[string]any{
		"name": "input-0", "datatype": "FP32", "shape": []int{len(rows), len(rows[0])}, "data": flat}}})
	resp, err := c.Post("/"+ep+"/v2/models/cancer/infer", body, map[string]string{"X-Model-Deployment": dep})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// inferV2 sends rows as one OIP v2 FP32 request pinned to dep and returns
// the predicted classes.
func inferV2(t *testing.T, c *testenv.Client, ep, dep string, rows [][]float64) []int {
	t.Helper()
	resp := postV2(t, c, ep, dep, "e2e", rows)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var doc struct {
		ID      string
		Outputs []struct {
			Name, Datatype string
			Shape          []int
			Data           []int
		}
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(raw, &doc) != nil || len(doc.Outputs) != 1 {
		t.Fatalf("OIP v2 infer on %s = %d %s", dep, resp.StatusCode, raw)
	}
	o := doc.Outputs[0]
	if got := resp.Header.Get("X-Model-Deployment"); got != dep || doc.ID != "e2e" || o.Name != "predict" || o.Datatype != "INT64" || !cmp.Equal(o.Shape, []int{len(rows)}) {
		t.Errorf("OIP v2 answer from %s: id %q, output %s %s %v; want %s, id e2e, predict INT64 [%d]", got, doc.ID, o.Name, o.Datatype, o.Shape, dep, len(rows))
	}
	return o.Data
}
