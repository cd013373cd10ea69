// Package testenv runs the real modelgate daemon for end-to-end tests and
// talks to it: the daemon in-process on :0 ports with its state in a temp
// dir, a client for the admin API and the data plane, load generators,
// simple model backends and polling.
//
// It is imported only by tests (internal/daemon, internal/e2e,
// internal/dashboardtest, bench/cluster); every helper takes the test and cleans up after
// it.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
)

// Option changes how StartDaemon runs the daemon.
type Option func(*daemon.Options)

// RolloutInterval makes the daemon look at rollouts every d instead of
// every second.
func RolloutInterval(d time.Duration) Option {
	return func(o *daemon.Options) { o.RolloutInterval = d }
}

// StartDaemon runs the real daemon in-process with the config yaml (whose
// listeners should be on :0 ports) and shuts it down when the test ends.
func StartDaemon(t testing.TB, yaml string, opts ...Option) *daemon.Daemon {
	t.Helper()
	f, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config.Parse: %v\n%s", err, yaml)
	}
	return start(t, daemon.Options{Config: f}, opts)
}

// StartDaemonFile is StartDaemon with the config in the file at path,
// which the daemon's Reload (SIGHUP) reads again.
func StartDaemonFile(t testing.TB, path string, opts ...Option) *daemon.Daemon {
	t.Helper()
	f, err := config.Load(path)
	if err != nil {
		t.Fatalf("config.Load: %v", err)
	}
	return start(t, daemon.Options{Config: f, ConfigPath: path}, opts)
}

func start(t testing.TB, o daemon.Options, opts []Option) *daemon.Daemon {
	t.Helper()
	for _, opt := range opts {
		opt(&o)
	}
	d, err := daemon.New(context.Background(), o)
	if err != nil {
		t.Fatalf("daemon.New: %v", err)
	}
	if err := d.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	})
	return d
}

// ConfigHeader is the start of a config: both listeners on 127.0.0.1:0,
// the state in dir, and the endpoints key, for the caller's endpoints.
func ConfigHeader(dir string) string {
	return fmt.Sprintf("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstate:\n  path: %s\nendpoints:\n",
		filepath.Join(dir, "state.db"))
}

// ClusterConfig is a gateway of a fleet (cluster mode) keeping its state
// under prefix in the etcd cluster at endpoints: the endpoint "fraud" with
// blue and green (all traffic on blue), both listeners on :0 ports, the
// admin token in fleet.token in dir's parent (shared by the fleet's
// gateways in sibling directories), calls to etcd bounded by 1 s and a
// 2-second lease, so that tests see outages and takeovers quickly.
func ClusterConfig(dir string, endpoints []string, prefix, blue, green string) string {
	eps, _ := json.Marshal(endpoints)
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  token_file: %s
state:
  path: %s
  etcd:
    endpoints: %s
    prefix: %s
    dial_timeout: 1s
    lease_ttl: 2s
endpoints:
  - name: fraud
    deployments:
      - {name: blue, backends: [%s]}
      - {name: green, backends: [%s]}
    traffic: {blue: 100}
`, filepath.Join(filepath.Dir(dir), "fleet.token"), filepath.Join(dir, "state.db"), eps, prefix, blue, green)
}

// ReadToken is the token in the file at path.
func ReadToken(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// CheckedEndpoint is the endpoint "fraud" of a config's endpoints list:
// blue and green at the given backends (comma-separated URLs), each
// health-checked at / every 50ms, all traffic on blue.
func CheckedEndpoint(blue, green string) string {
	return fmt.Sprintf(`  - name: fraud
    deployments:
      - name: blue
        backends: [%s]
        health_check: {path: /, interval: 50ms}
      - name: green
        backends: [%s]
        health_check: {path: /, interval: 50ms}
    traffic: {blue: 100}
`, blue, green)
}

// TwoDeploymentConfig is a config with the endpoint "fraud": deployments
// blue and green at the given backends (comma-separated URLs), all traffic
// on blue, and extra lines appended to the endpoint.
func TwoDeploymentConfig(dir, blue, green, extra string) string {
	return ConfigHeader(dir) + fmt.Sprintf(`  - name: fraud
    deployments:
      - name: blue
        backends: [%s]
      - name: green
        backends: [%s]
    traffic: {blue: 100}
%s`, blue, green, extra)
}

// WaitFor polls cond every 20ms until it holds, and fails the test if it
// does not within timeout; what says what was awaited.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		case <-tick.C:
		}
	}
}
