//go:build rollouts_e2e

// The tests of this file each drive a whole rollout with the default plan
// at 200 requests/s: about five minutes. They run in `make test-rollouts`,
// not in `make test`.

package daemon_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/demo"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/testenv"
)

// standInEnv makes the test binary a stand-in model server (serveStandIn)
// instead of running the tests: a fresh process, cold as a newly deployed
// model server is.
const standInEnv = "MODELGATE_TEST_STAND_IN"

func init() {
	if os.Getenv(standInEnv) != "" {
		os.Exit(serveStandIn())
	}
}

// serveStandIn serves the demo model v1 with 1% errors and no added
// latency (it answers in well under a millisecond), prints its URL on
// stdout and serves until stdin closes.
func serveStandIn() int {
	m, err := demo.StartModel(context.Background(), demo.ModelOptions{Name: "fraud", Version: "v1", ErrorRate: 0.01, Seed: uint64(os.Getpid())})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(m.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	m.Close()
	return 0
}

// startStandIn starts a stand-in model process and returns its URL.
func startStandIn(t *testing.T) string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), standInEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("stand-in model did not start: %v", err)
	}
	return strings.TrimSpace(line)
}

// untilPromoted waits for the rollout of ep to end. The statistics allow
// what a user would see now and then with identical versions, and the test
// does what that user would do, once: retry after a rollback on errors
// (the errors test's false-rollback bound is 2.5% per rollout) and resume
// after a stage's deadline (a stage rarely needs more than 10 minutes at
// 200 requests/s); bench/stats measures how often. A rollback for latency
// is what this test exists to rule out: it is never retried.
func untilPromoted(t *testing.T, c *testenv.Client, ep string) rollout.Rollout {
	t.Helper()
	retried, resumed := false, false
	for {
		r := c.WaitEnded(ep, 12*time.Minute)
		switch {
		case r.Phase == rollout.PhaseRolledBack && !retried && strings.HasPrefix(r.Reason, "gate failed: sequential: canary error rate") && !strings.Contains(r.Reason, "slower"):
			t.Logf("%s: rolled back on errors (a false rollback, allowed at alpha), retrying: %s", ep, r.Reason)
			retried = true
			if status, body := c.API("POST", "/api/v1/endpoints/"+ep+"/rollout/retry", nil); status != http.StatusOK && status != http.StatusCreated {
				t.Fatalf("retry %s: %d %s", ep, status, body)
			}
		case r.Phase == rollout.PhasePaused && !resumed && strings.Contains(r.Reason, "progress deadline"):
			t.Logf("%s: paused at a deadline, resuming: %s", ep, r.Reason)
			resumed = true
			if status, body := c.API("POST", "/api/v1/endpoints/"+ep+"/rollout/resume", nil); status != http.StatusOK {
				t.Fatalf("resume %s: %d %s", ep, status, body)
			}
		default:
			return r
		}
	}
}

// TestIdenticalCanaryPromotesFromCold is a user's first rollout, end to
// end with the real binary: two identical stand-in models (1% errors,
// sub-millisecond answers) in their own processes, 200 requests/s, and
// `rollout start` with the default plan. Two endpoints run it at once:
// "cold", whose canary has served nothing before its first stage (new
// connections, a server that has not run yet), and "warm", whose canary
// was sent 3,000 pinned requests just before, so that only the lightly
// loaded backend answering a little later than the busy one remains. Both
// canaries must promote, with nobody warming or resuming anything: a cold
// start and differences of a fraction of a millisecond are not regressions.
func TestIdenticalCanaryPromotesFromCold(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString(testenv.ConfigHeader(dir))
	for _, ep := range []string{"cold", "warm"} {
		fmt.Fprintf(&cfg, "  - name: %s\n    deployments:\n      - name: blue\n        backends: [%s]\n      - name: green\n        backends: [%s]\n    traffic: {blue: 100}\n",
			ep, startStandIn(t), startStandIn(t))
	}
	path := filepath.Join(dir, "modelgate.yaml")
	writeConfig(t, path, cfg.String())
	p := startProcess(t, path)
	c := p.client(t, dir)

	body := []byte(`{"instances": [[0.2, 1.5, -0.3, 0.8]]}`)
	var failed atomic.Int64
	predict := func(ep string, hdr map[string]string) {
		resp, err := c.Post("/"+ep+"/v1/models/fraud:predict", body, hdr)
		if err != nil {
			failed.Add(1)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusInternalServerError {
			failed.Add(1)
		}
	}
	// 200 requests/s to each endpoint: 10 workers, one request every 50 ms.
	for _, ep := range []string{"cold", "warm"} {
		testenv.StartLoad(t, 10, 50*time.Millisecond, func() { predict(ep, nil) })
	}
	warmUp := testenv.StartLoad(t, 10, 0, func() { predict("warm", map[string]string{"X-Model-Deployment": "green"}) })
	testenv.WaitFor(t, 30*time.Second, "3,000 pinned requests to warm's green", func() bool { return warmUp.Sent() >= 3000 })
	warmUp.Stop()
	started := time.Now()
	for _, ep := range []string{"cold", "warm"} {
		c.StartRollout(ep, `{"canary": "green"}`)
	}
	for _, ep := range []string{"cold", "warm"} {
		r := untilPromoted(t, c, ep)
		t.Logf("%s: %s after %s: %s", ep, r.Phase, time.Since(started).Round(time.Second), r.Reason)
		if r.Phase != rollout.PhaseSucceeded {
			t.Errorf("the identical canary of %q ended %s: %s", ep, r.Phase, r.Reason)
		}
	}
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed other than by the models' own 500s", n)
	}
}
