package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/testenv"
)

var updateWatch = flag.Bool("update-watch", false, "rewrite testdata/watch.golden from the current output")

// lastLine is the last line of out.
func lastLine(out string) string {
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestRolloutWatchExitCodes: rollout watch's exit code, its message and
// its -o json last line for every way a watch ends, as a golden file.
func TestRolloutWatchExitCodes(t *testing.T) {
	fastWatch(t)
	paused := func(reason string) rollout.Rollout {
		r := testRollout()
		r.Phase, r.PausedFrom, r.Reason = rollout.PhasePaused, rollout.PhaseProgressing, reason
		return r
	}
	aborted := rolledBack()
	aborted.Phase, aborted.Reason = rollout.PhaseAborted, "aborted by hand"
	undone := succeeded()
	undone.Phase, undone.Reason = rollout.PhaseUndone, "undone by hand: all traffic back on blue"
	tests := []struct {
		name  string
		looks []rollout.Rollout
		args  []string
	}{
		{"promoted", []rollout.Rollout{testRollout(), succeeded()}, nil},
		{"rolled back", []rollout.Rollout{testRollout(), rolledBack()}, nil},
		{"aborted", []rollout.Rollout{testRollout(), aborted}, nil},
		{"undone", []rollout.Rollout{undone}, nil},
		{"paused at the deadline", []rollout.Rollout{testRollout(), paused("stage 2 (25%) reached its progress deadline of 10m0s without a decision; resume gives it another 10m0s, promote moves on, abort gives blue everything")}, nil},
		{"paused by a sample-ratio halt", []rollout.Rollout{testRollout(), paused("green's share is 19% of 25% — sample ratio mismatch, the canary's measured share does not match its weight, so its numbers cannot be trusted: chi-square p < 0.001")}, nil},
		{"paused by a traffic change by hand", []rollout.Rollout{testRollout(), paused("traffic changed by hand (blue=50 green=50); resume to continue from this stage, or abort")}, nil},
		{"timed out", []rollout.Rollout{testRollout()}, []string{"--timeout", "30ms"}},
		{"no rollout", nil, nil},
		{"timeout out of bounds", nil, []string{"--timeout", "200h"}},
		{"negative timeout", nil, []string{"--timeout", "-1s"}},
	}
	var golden strings.Builder
	for _, tc := range tests {
		for _, output := range []string{"table", "json"} {
			f := &fakeRollouts{current: tc.looks}
			e := newRolloutEnv(t, f, nil)
			args := append([]string{"rollout", "watch", "fraud", "-o", output}, tc.args...)
			code, out, errOut := e.run(args...)
			last := lastLine(out)
			if output == "json" && code != ExitUsage {
				var res WatchResult
				if err := json.Unmarshal([]byte(last), &res); err != nil {
					t.Errorf("%s: the last line is not JSON: %v\n%s", tc.name, err, out)
				} else if res.ExitCode != code || (res.Rollout == nil || res.Rollout.ID != "fraud-3") != (res.Result == "error") {
					t.Errorf("%s: the JSON line says exit %d, rollout %v; watch exited %d", tc.name, res.ExitCode, res.Rollout, code)
				}
				// The rollout in it is tested above; the golden file
				// keeps the rest readable.
				last = strings.Join([]string{fmt.Sprint(res.Result), fmt.Sprint(res.ExitCode), res.Message}, " | ")
			}
			fmt.Fprintf(&golden, "== %s: %s\nexit %d\nstderr: %s\nlast line: %s\n\n", tc.name, strings.Join(args[3:], " "),
				code, strings.TrimRight(errOut, "\n"), last)
		}
	}
	path := filepath.Join("testdata", "watch.golden")
	if *updateWatch {
		if err := os.WriteFile(path, []byte(golden.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestRolloutWatchExitCodes -update-watch to write it)", err)
	}
	if got := golden.String(); got != string(want) {
		t.Errorf("watch's endings changed; diff testdata/watch.golden against:\n%s", got)
	}
}

// TestTrafficDuringRollout: on the real daemon, a traffic or mirror change
// of an endpoint a rollout is moving is refused (409 naming the rollout)
// without force; the CLI says so and exits 1; with --force it is made, its
// event says it was forced, the rollout pauses on it, and rollout watch
// exits 3 with the pause as its JSON last line. Before that, a watch with
// a --timeout shorter than the rollout exits 4.
func TestTrafficDuringRollout(t *testing.T) {
	old := watchInterval
	watchInterval = 10 * time.Millisecond
	t.Cleanup(func() { watchInterval = old })
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""), testenv.RolloutInterval(20*time.Millisecond))
	c := testenv.Connect(t, d)
	r := c.StartRollout("fraud", `{"canary": "green", "stages": [{"weight": 10}, {"weight": 100}], "bake": "1h"}`)
	e := &testEnv{t: t, vars: map[string]string{EnvAdmin: "http://" + d.AdminAddr(), EnvToken: d.Token()}, srv: nil}

	// The API: 409 without force, for traffic and mirror alike.
	for _, field := range []string{"traffic", "mirror"} {
		status, body := c.API(http.MethodPut, "/api/v1/endpoints/fraud/"+field, map[string]int{"blue": 50, "green": 50})
		if field == "mirror" {
			status, body = c.API(http.MethodPut, "/api/v1/endpoints/fraud/"+field, map[string]int{"green": 10})
		}
		want := fmt.Sprintf(`{"error":"rollout %s is progressing on fraud and sets its %s: steer it with modelgate rollout pause|promote|abort fraud, or set the %s anyway with --force (API: ?force=true)`, r.ID, field, field)
		if status != http.StatusConflict || !strings.HasPrefix(string(body), want) {
			t.Errorf("PUT %s during a rollout = %d %s, want 409 %s...", field, status, body, want)
		}
	}
	if status, body := c.API(http.MethodPut, "/api/v1/endpoints/fraud/traffic?force=yes", map[string]int{"blue": 50, "green": 50}); status != http.StatusBadRequest || !strings.Contains(string(body), "use force=true") {
		t.Errorf("PUT traffic?force=yes = %d %s, want 400 naming force=true", status, body)
	}

	// The CLI: the same refusal, exit 1.
	code, out, errOut := e.runDaemon("traffic", "set", "fraud", "green=50")
	wantErr := fmt.Sprintf("Error: rollout %s is progressing on fraud and sets its traffic: steer it with modelgate rollout pause|promote|abort fraud, or set the traffic anyway with --force (API: ?force=true) (the rollout then pauses until resumed)\n", r.ID)
	if code != ExitFailure || out != "" || errOut != wantErr {
		t.Errorf("traffic set during a rollout = %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, wantErr)
	}

	// A watch that times out first: exit 4, the rollout keeps running.
	code, out, errOut = e.runDaemon("rollout", "watch", "fraud", "--timeout", "100ms", "-o", "json")
	var res WatchResult
	if err := json.Unmarshal([]byte(lastLine(out)), &res); code != ExitTimedOut || err != nil || res.Result != "timed_out" ||
		!strings.HasPrefix(errOut, "Error: rollout "+r.ID+" of green on fraud is still progressing after --timeout 100ms; it keeps running") {
		t.Errorf("watch --timeout = %d (%v), stdout:\n%s\nstderr %q", code, err, out, errOut)
	}

	// --force: made, recorded as forced; the rollout pauses on it.
	if code, out, errOut := e.runDaemon("traffic", "set", "fraud", "green=50", "--force"); code != ExitOK || out != "traffic of fraud set to blue=50 green=50\n" {
		t.Fatalf("traffic set --force = %d, stdout %q, stderr %q", code, out, errOut)
	}
	var forced string
	for _, ev := range c.Events("fraud") {
		if ev.Type == "traffic.changed" && ev.Actor != "rollout" {
			forced = ev.Message
		}
	}
	if want := "traffic of fraud set to blue=50 green=50 (was blue=90 green=10) (forced during rollout " + r.ID + ", progressing)"; forced != want {
		t.Errorf("the forced change's event = %q, want %q", forced, want)
	}
	code, out, errOut = e.runDaemon("rollout", "watch", "fraud", "--timeout", "10s", "-o", "json")
	res = WatchResult{}
	if err := json.Unmarshal([]byte(lastLine(out)), &res); code != ExitPaused || err != nil || res.Result != "paused" || res.ExitCode != ExitPaused ||
		!strings.Contains(errOut, "traffic changed by hand") {
		t.Errorf("watch of the paused rollout = %d (%v), stdout:\n%s\nstderr %q", code, err, out, errOut)
	}
}

// runDaemon runs the command line against the daemon at e.vars' address.
func (e *testEnv) runDaemon(args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr strings.Builder
	code := run(e.t.Context(), args, &stdout, &stderr, func(k string) string { return e.vars[k] }, nil)
	return code, stdout.String(), stderr.String()
}
