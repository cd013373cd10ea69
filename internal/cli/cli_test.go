package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// testToken is as long as a token file must hold (secretfile.MinLength).
const testToken = "cli-test-token-0123456789abcdef!!"

// testEnv is a real admin API (admin.New over an in-memory backend) on
// an httptest server, and the environment the CLI sees.
type testEnv struct {
	t       *testing.T
	backend *admintest.Backend
	srv     *httptest.Server
	vars    map[string]string
}

func newTestEnv(t *testing.T, endpoints ...spec.Endpoint) *testEnv {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = []spec.Endpoint{admintest.Fraud()}
	}
	b := admintest.NewBackend(endpoints...)
	srv := httptest.NewServer(admin.New(admin.Options{Backend: b, Token: testToken}))
	t.Cleanup(srv.Close)
	return &testEnv{t: t, backend: b, srv: srv, vars: map[string]string{
		EnvAdmin: srv.URL,
		EnvToken: testToken,
	}}
}

// run runs the command line and returns its exit code and output.
func (e *testEnv) run(args ...string) (code int, stdout, stderr string) {
	e.t.Helper()
	return e.runContext(e.t.Context(), nil, args...)
}

func (e *testEnv) runContext(ctx context.Context, out io.Writer, args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	if out == nil {
		out = &stdout
	}
	getenv := func(k string) string { return e.vars[k] }
	code := run(ctx, args, out, &stderr, getenv, e.srv.Client())
	return code, stdout.String(), stderr.String()
}

func threeDeployments() spec.Endpoint {
	ep := admintest.Fraud()
	ep.Deployments = append(ep.Deployments, spec.Deployment{Name: "red", Backends: []string{"http://127.0.0.1:9003"}})
	return ep
}

func TestEndpoints(t *testing.T) {
	e := newTestEnv(t)
	code, out, errOut := e.run("endpoints")
	if code != 0 {
		t.Fatalf("endpoints = %d, stderr %s", code, errOut)
	}
	want := "ENDPOINT  DEPLOYMENTS  TRAFFIC   MIRROR\n" +
		"fraud     blue,green   blue=100  none\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("endpoints table (-want +got):\n%s", diff)
	}

	code, out, _ = e.run("endpoints", "-o", "json")
	if code != 0 {
		t.Fatalf("endpoints -o json = %d", code)
	}
	want = `{
  "endpoints": [
    {
      "name": "fraud",
      "deployments": [
        {
          "name": "blue",
          "backends": [
            "http://127.0.0.1:9001"
          ]
        },
        {
          "name": "green",
          "backends": [
            "http://127.0.0.1:9002"
          ]
        }
      ],
      "traffic": {
        "blue": 100
      },
      "mirror": {}
    }
  ]
}
`
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("endpoints -o json (-want +got):\n%s", diff)
	}
}

func TestTrafficGet(t *testing.T) {
	e := newTestEnv(t)
	e.run("traffic", "set", "fraud", "green=5.5")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"traffic", "get", "fraud"}, "DEPLOYMENT  TRAFFIC\nblue        94.5%\ngreen       5.5%\n"},
		{[]string{"traffic", "get", "fraud", "-o", "json"}, "{\n  \"blue\": 94.5,\n  \"green\": 5.5\n}\n"},
		{[]string{"mirror", "get", "fraud"}, "DEPLOYMENT  MIRROR\nblue        0%\ngreen       0%\n"},
		{[]string{"mirror", "get", "fraud", "--output=json"}, "{}\n"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, out, errOut := e.run(tc.args...)
			if code != 0 {
				t.Fatalf("exit %d, stderr %s", code, errOut)
			}
			if diff := cmp.Diff(tc.want, out); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrafficSet(t *testing.T) {
	tests := []struct {
		name        string
		endpoint    spec.Endpoint
		args        []string
		wantCode    int
		wantTraffic spec.Weights // nil: unchanged
		wantOut     string
		wantErr     []string // each must be in stderr
	}{
		{
			name: "two deployments, one given: the other gets the rest", endpoint: admintest.Fraud(),
			args: []string{"fraud", "green=5"}, wantTraffic: spec.Weights{"blue": 9500, "green": 500},
			wantOut: "traffic of fraud set to blue=95 green=5\n",
		},
		{
			name: "two deployments, decimals", endpoint: admintest.Fraud(),
			args: []string{"fraud", "blue=99.75"}, wantTraffic: spec.Weights{"blue": 9975, "green": 25},
			wantOut: "traffic of fraud set to blue=99.75 green=0.25\n",
		},
		{
			name: "two deployments, both given", endpoint: admintest.Fraud(),
			args: []string{"fraud", "blue=50", "green=50"}, wantTraffic: spec.Weights{"blue": 5000, "green": 5000},
			wantOut: "traffic of fraud set to blue=50 green=50\n",
		},
		{
			name: "comma separated", endpoint: admintest.Fraud(),
			args: []string{"fraud", "blue=25,green=75"}, wantTraffic: spec.Weights{"blue": 2500, "green": 7500},
			wantOut: "traffic of fraud set to blue=25 green=75\n",
		},
		{
			name: "three deployments, all given", endpoint: threeDeployments(),
			args: []string{"fraud", "blue=90", "green=5", "red=5"}, wantTraffic: spec.Weights{"blue": 9000, "green": 500, "red": 500},
			wantOut: "traffic of fraud set to blue=90 green=5 red=5\n",
		},
		{
			name: "three deployments, one missing", endpoint: threeDeployments(),
			args: []string{"fraud", "green=5", "red=5"}, wantCode: 2,
			wantErr: []string{"endpoint fraud has 3 deployments: give a weight for each (missing: blue)"},
		},
		{
			name: "server refuses the sum", endpoint: admintest.Fraud(),
			args: []string{"fraud", "blue=90", "green=5"}, wantCode: 1,
			wantErr: []string{"Error: invalid request: traffic: weights sum to 95, they must sum to 100\n"},
		},
		{
			name: "unknown deployment: its deployments listed, no knock-on sum", endpoint: threeDeployments(),
			args: []string{"fraud", "blue=90", "green=5", "red=1", "nope=1"}, wantCode: 1,
			wantErr: []string{
				"Error: invalid request: traffic.nope: unknown deployment \"nope\" in endpoint \"fraud\" (its deployments: blue, green, red)\n",
			},
		},
		{
			name: "unknown deployment with two", endpoint: admintest.Fraud(),
			args: []string{"fraud", "red=5"}, wantCode: 1,
			wantErr: []string{"traffic.red: unknown deployment \"red\" in endpoint \"fraud\""},
		},
		{
			name: "unknown endpoint", endpoint: admintest.Fraud(),
			args: []string{"nope", "green=5"}, wantCode: 1,
			wantErr: []string{"Error: endpoint \"nope\": not found\n"},
		},
		{
			name: "malformed assignment is a usage error", endpoint: admintest.Fraud(),
			args: []string{"fraud", "green=5.555", "blue"}, wantCode: 2,
			wantErr: []string{"invalid percent \"5.555\"", "\"blue\": expected DEPLOYMENT=PERCENT", "Run 'modelgate traffic set --help' for usage."},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, tc.endpoint)
			before, _ := e.backend.Snapshot()
			code, out, errOut := e.run(append([]string{"traffic", "set"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("traffic set %v = %d, want %d; stderr:\n%s", tc.args, code, tc.wantCode, errOut)
			}
			if diff := cmp.Diff(tc.wantOut, out); diff != "" {
				t.Errorf("stdout (-want +got):\n%s", diff)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr = %q, want it to contain %q", errOut, w)
				}
			}
			after, _ := e.backend.Snapshot()
			want := before["fraud"].Traffic
			if tc.wantTraffic != nil {
				want = tc.wantTraffic
			}
			if diff := cmp.Diff(want, after["fraud"].Traffic); diff != "" {
				t.Errorf("traffic after (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMirrorSetKeepsOthers(t *testing.T) {
	e := newTestEnv(t, threeDeployments())
	for _, args := range [][]string{
		{"mirror", "set", "fraud", "green=10"},
		{"mirror", "set", "fraud", "red=2.5"},
		{"mirror", "set", "fraud", "green=0"},
	} {
		if code, _, errOut := e.run(args...); code != 0 {
			t.Fatalf("%v = %d: %s", args, code, errOut)
		}
	}
	snap, _ := e.backend.Snapshot()
	if diff := cmp.Diff(spec.Weights{"red": 250}, snap["fraud"].Mirror); diff != "" {
		t.Errorf("mirror (-want +got):\n%s", diff)
	}
	code, out, _ := e.run("mirror", "set", "fraud", "blue=1")
	if code != 0 || out != "mirror of fraud set to blue=1 red=2.5\n" {
		t.Errorf("mirror set = %d %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	tests := [][]string{
		{"bogus"},
		{"--bogus"},
		{"traffic", "sett"},
		{"traffic", "get"},
		{"traffic", "get", "a", "b"},
		{"traffic", "set", "fraud"},
		{"mirror", "set"},
		{"endpoints", "extra"},
		{"endpoints", "-o", "yaml"},
		{"metrics"},
		{"metrics", "fraud", "--window", "soon"},
		{"apply"},
		{"apply", "-f"},
		{"config", "validate"},
		{"events", "--since", "x"},
		{"events", "--limit", "-1"},
		{"events", "-f", "--limit", "3"},
		{"demo", "now"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			e := newTestEnv(t)
			code, out, errOut := e.run(args...)
			if code != 2 {
				t.Errorf("%v = %d, want 2; stdout %q stderr %q", args, code, out, errOut)
			}
			if !strings.HasPrefix(errOut, "Error: ") || !strings.Contains(errOut, "--help' for usage.") {
				t.Errorf("stderr = %q, want the error and where to find usage", errOut)
			}
			if _, changes := e.backend.Snapshot(); changes != 0 {
				t.Errorf("a usage error changed the backend")
			}
		})
	}
}

func TestHelpExitsZero(t *testing.T) {
	e := newTestEnv(t)
	for _, args := range [][]string{{}, {"--help"}, {"traffic"}, {"traffic", "set", "--help"}, {"help", "metrics"}} {
		code, out, errOut := e.run(args...)
		if code != 0 || !strings.Contains(out, "Usage:") || errOut != "" {
			t.Errorf("%v = %d, stdout %q, stderr %q; want 0 and usage", args, code, out, errOut)
		}
	}
}

func TestExecuteExitCodes(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := Execute([]string{"nonsense"}, &out, &errOut); code != ExitUsage {
		t.Errorf("Execute(nonsense) = %d, want %d", code, ExitUsage)
	}
	if code := Execute([]string{"--help"}, &out, &errOut); code != ExitOK {
		t.Errorf("Execute(--help) = %d, want %d", code, ExitOK)
	}
}

func TestTokenAndAddress(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.token")
	bad := filepath.Join(dir, "bad.token")
	empty := filepath.Join(dir, "empty.token")
	short := filepath.Join(dir, "short.token")
	writeFile(t, good, testToken+"\n")
	writeFile(t, bad, "not-the-token-0123456789abcdef!!!\n")
	writeFile(t, empty, "\n")
	writeFile(t, short, "not-it\n")
	open := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		writeFile(t, p, testToken+"\n")
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	others, group := open("others.token", 0o644), open("group.token", 0o640)

	tests := []struct {
		name     string
		env      map[string]string // overrides; "" deletes
		args     []string
		wantCode int
		wantErr  string
	}{
		{"env token", nil, nil, 0, ""},
		{"token file", map[string]string{EnvToken: ""}, []string{"--token-file", good}, 0, ""},
		{"explicit --token-file wins over env", nil, []string{"--token-file", bad}, 1, "Error: invalid bearer token: read the token from its file again (a replaced token is refused once admin.token_overlap has passed)\n"},
		{"env token used without --token-file", nil, nil, 0, ""},
		{"wrong token file", map[string]string{EnvToken: ""}, []string{"--token-file", bad}, 1, "Error: invalid bearer token: read the token from its file again (a replaced token is refused once admin.token_overlap has passed)\n"},
		{"wrong env token", map[string]string{EnvToken: "nope"}, nil, 1, "Error: invalid bearer token: read the token from its file again (a replaced token is refused once admin.token_overlap has passed)\n"},
		{"empty token file", map[string]string{EnvToken: ""}, []string{"--token-file", empty}, 1, "token file " + empty + " holds 0 characters"},
		{"short token file", map[string]string{EnvToken: ""}, []string{"--token-file", short}, 1, "token file " + short + " holds 6 characters, at least 32"},
		{"token file readable by others", map[string]string{EnvToken: ""}, []string{"--token-file", others}, 1, "token file " + others + " is open to group or others (mode 0644): run chmod 600 " + others},
		{"token file readable by the group", map[string]string{EnvToken: ""}, []string{"--token-file", group}, 1, "(mode 0640): run chmod 600 " + group},
		{"missing token file", map[string]string{EnvToken: ""}, []string{"--token-file", filepath.Join(dir, "none")}, 1, "no admin token: set MODELGATE_TOKEN or --token-file"},
		{"default token file is ./admin.token", map[string]string{EnvToken: ""}, nil, 1, "open admin.token: no such file"},
		{"--admin wins over env", map[string]string{EnvAdmin: "127.0.0.1:1"}, []string{"--admin", "SRV"}, 0, ""},
		{"env address used", map[string]string{EnvAdmin: "127.0.0.1:1"}, nil, 1, "cannot reach the admin API at 127.0.0.1:1"},
		{"bad address", nil, []string{"--admin", "ftp://x"}, 1, "admin address \"ftp://x\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			for k, v := range tc.env {
				e.vars[k] = v
			}
			args := []string{"endpoints"}
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "SRV", e.srv.URL))
			}
			// Run where no admin.token exists, so the default file is missing.
			t.Chdir(t.TempDir())
			code, _, errOut := e.run(args...)
			if code != tc.wantCode {
				t.Errorf("exit = %d, want %d; stderr %q", code, tc.wantCode, errOut)
			}
			if !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr = %q, want it to contain %q", errOut, tc.wantErr)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func testReport() telemetry.Report {
	pp, p50, p99, rpm := 1.67, 7.1, 29.0, -94.7
	return telemetry.Report{
		Endpoint: "fraud", Window: "5m", Baseline: "blue",
		Deployments: map[string]telemetry.DeploymentReport{
			"blue": {Requests: 9500, InFlight: 3, Status: map[string]uint64{"2xx": 9448, "4xx": 40, "5xx": 12},
				Errors: 12, ErrorRate: 0.00126, ClientErrors: 40, RPM: 1900, Share: 0.95,
				LatencyMS: telemetry.Quantiles{P50: 11.2, P90: 19.8, P95: 24.1, P99: 40.3},
				TTFBMS:    telemetry.Quantiles{P50: 11.0, P90: 19.5, P95: 23.9, P99: 40.0}},
			"green": {Requests: 500, Status: map[string]uint64{"2xx": 489, "4xx": 2, "5xx": 9},
				Errors: 9, ErrorRate: 0.018, ClientErrors: 2, RPM: 100, Share: 0.05,
				LatencyMS: telemetry.Quantiles{P50: 12.0, P90: 21.0, P95: 27.5, P99: 52.0},
				TTFBMS:    telemetry.Quantiles{P50: 11.8, P90: 20.7, P95: 27.1, P99: 51.0}},
			"red": {},
		},
		Differences: map[string]telemetry.DifferenceReport{
			"green": {ErrorRatePP: &pp, LatencyP50Pct: &p50, LatencyP99Pct: &p99, RPMPct: &rpm},
			"red":   {},
		},
	}
}

func TestMetrics(t *testing.T) {
	e := newTestEnv(t)
	e.backend.Report = testReport()
	code, out, errOut := e.run("metrics", "fraud")
	if code != 0 {
		t.Fatalf("metrics = %d: %s", code, errOut)
	}
	want := "endpoint fraud, window 5m, baseline blue\n" +
		"DEPLOYMENT  SHARE   RPM   REQUESTS  ERROR RATE   CLIENT ERRORS  P50     P99     TTFB P99  Δ ERROR RATE  Δ P50   Δ P99    Δ RPM\n" +
		"blue        95.00%  1900  9500      0.13%        40             11.2ms  40.3ms  40.0ms    baseline      -       -        -\n" +
		"green       5.00%   100   500       1.80%        2              12.0ms  52.0ms  51.0ms    +1.67pp       +7.10%  +29.00%  -94.70%\n" +
		"red         0.00%   0     0         no requests  0              -       -       -         n/a           n/a     n/a      n/a\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("metrics table (-want +got):\n%s", diff)
	}
	if got := e.backend.LastWindow().String(); got != "5m0s" {
		t.Errorf("default window = %s, want 5m0s", got)
	}

	code, out, _ = e.run("metrics", "fraud", "-o", "json", "--window", "30s")
	if code != 0 {
		t.Fatalf("metrics -o json = %d", code)
	}
	if got := e.backend.LastWindow().String(); got != "30s" {
		t.Errorf("window = %s, want 30s", got)
	}
	var got telemetry.Report
	if err := jsonUnmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(testReport(), got); diff != "" {
		t.Errorf("metrics -o json (-want +got):\n%s", diff)
	}
	if !strings.Contains(out, "\n  \"endpoint\": \"fraud\",\n") {
		t.Errorf("metrics -o json is not indented:\n%s", out)
	}

	code, _, errOut = e.run("metrics", "fraud", "--window", "2h")
	if code != 1 || !strings.Contains(errOut, "window: \"2h\" is not a window from 10s to 1h") {
		t.Errorf("metrics --window 2h = %d %q, want 1 and the window problem", code, errOut)
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

func TestApply(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "modelgate.yaml")
	writeFile(t, file, "endpoints: []\n")

	e := newTestEnv(t)
	e.backend.ApplyResult = control.ApplyResult{Created: []string{"churn"}, Updated: []string{"fraud/green", "fraud/blue"}}
	code, out, errOut := e.run("apply", "-f", file, "--prune")
	if code != 0 {
		t.Fatalf("apply = %d: %s", code, errOut)
	}
	want := "created:    churn\nupdated:    fraud/green, fraud/blue\nunchanged:  none\nremoved:    none\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("apply output (-want +got):\n%s", diff)
	}
	if got, prune := e.backend.LastApply(); string(got) != "endpoints: []\n" || !prune {
		t.Errorf("Apply(%q, prune=%v), want the file and prune", got, prune)
	}

	e.backend.ApplyErr = errors.Join(
		spec.Problemf("endpoints[0].traffic", "weights sum to 99, they must sum to 100 (line 9)"),
		spec.Problemf("endpoints[0].deployments[1].backends[0]", `"x" is not a valid URL (line 7)`),
	)
	code, _, errOut = e.run("apply", "-f", file)
	wantErr := "Error: invalid request: 2 problems\n" +
		"  endpoints[0].traffic: weights sum to 99, they must sum to 100 (line 9)\n" +
		"  endpoints[0].deployments[1].backends[0]: \"x\" is not a valid URL (line 7)\n"
	if code != 1 || errOut != wantErr {
		t.Errorf("apply invalid = %d, stderr (-want +got):\n%s", code, cmp.Diff(wantErr, errOut))
	}

	code, _, errOut = e.run("apply", "-f", filepath.Join(dir, "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "read config") {
		t.Errorf("apply missing file = %d %q", code, errOut)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeFile(t, good, `endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [http://127.0.0.1:9001]
      - name: green
        backends: [http://127.0.0.1:9002]
    traffic: {blue: 95, green: 5}
`)
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, `endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [ftp://127.0.0.1:9001]
        timeuot: 5s
    traffic: {blue: 99}
`)
	e := newTestEnv(t)
	// No daemon is needed: point the CLI nowhere.
	e.vars[EnvAdmin] = "127.0.0.1:1"

	code, out, errOut := e.run("config", "validate", good)
	if code != 0 || out != good+" is valid: 1 endpoint\n" {
		t.Errorf("validate good = %d %q %q", code, out, errOut)
	}
	code, out, errOut = e.run("config", "validate", bad)
	if code != 1 || out != "" {
		t.Errorf("validate bad = %d, stdout %q", code, out)
	}
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	if len(lines) < 4 || !strings.HasPrefix(lines[0], "Error: "+bad+" is invalid: ") {
		t.Fatalf("validate bad stderr:\n%s\nwant a summary and every problem", errOut)
	}
	for _, field := range []string{"endpoints[0].deployments[0].timeuot", "endpoints[0].deployments[0].backends[0]", "endpoints[0].traffic"} {
		if !strings.Contains(errOut, "\n  "+field) {
			t.Errorf("validate bad stderr lacks %s:\n%s", field, errOut)
		}
	}
	code, _, errOut = e.run("config", "validate", filepath.Join(dir, "none.yaml"))
	if code != 1 || !strings.Contains(errOut, "none.yaml") {
		t.Errorf("validate missing = %d %q", code, errOut)
	}
}

func addEvents(b *admintest.Backend) {
	b.AddEvent(store.Event{Endpoint: "fraud", Type: "traffic.changed", Actor: "api", Message: "traffic of fraud set to blue=95 green=5 (was blue=100)"})
	b.AddEvent(store.Event{Endpoint: "churn", Type: "endpoint.created", Actor: "config", Message: "endpoint churn created"})
	b.AddEvent(store.Event{Endpoint: "fraud", Type: "mirror.changed", Actor: "api", Message: "mirror of fraud set to green=10 (was none)"})
}

func TestEvents(t *testing.T) {
	e := newTestEnv(t)
	addEvents(e.backend)
	code, out, errOut := e.run("events", "--endpoint", "fraud")
	if code != 0 {
		t.Fatalf("events = %d: %s", code, errOut)
	}
	want := "SEQ  TIME                  ENDPOINT  TYPE             ACTOR  MESSAGE\n" +
		"1    2025-01-02T03:04:05Z  fraud     traffic.changed  api    traffic of fraud set to blue=95 green=5 (was blue=100)\n" +
		"3    2025-01-02T03:04:05Z  fraud     mirror.changed   api    mirror of fraud set to green=10 (was none)\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("events table (-want +got):\n%s", diff)
	}

	code, out, _ = e.run("events", "--since", "1", "--limit", "1", "-o", "json")
	if code != 0 {
		t.Fatalf("events -o json = %d", code)
	}
	if diff := cmp.Diff(store.EventFilter{Since: 1, Limit: 1}, e.backend.LastFilter()); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	var got struct{ Events []store.Event }
	if err := jsonUnmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(e.backend.EventLog()[1:2], got.Events); diff != "" {
		t.Errorf("events -o json (-want +got):\n%s", diff)
	}
}

// lineReader hands the lines a followed command prints to the test as
// they come, so that it can act on them without sleeping. finish drains
// the rest while the command ends, then closes the pipe.
func lineReader(t *testing.T) (w io.Writer, next func() string, finish func(wait func())) {
	pr, pw := io.Pipe()
	sc := bufio.NewScanner(pr)
	next = func() string {
		t.Helper()
		if !sc.Scan() {
			t.Fatalf("output ended: %v", sc.Err())
		}
		return sc.Text()
	}
	finish = func(wait func()) {
		drained := make(chan struct{})
		go func() {
			io.Copy(io.Discard, pr)
			close(drained)
		}()
		wait()
		pw.Close()
		<-drained
	}
	return pw, next, finish
}

func TestEventsFollow(t *testing.T) {
	for _, tc := range []struct {
		name       string
		closeAfter int
		json       bool
	}{
		{"table", 0, false},
		{"json lines", 0, true},
		{"watch ends early: no loss, no repeat", 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.backend.WatchCloseAfter = tc.closeAfter
			addEvents(e.backend)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			w, next, finish := lineReader(t)
			args := []string{"events", "-f", "--since", "1"}
			if tc.json {
				args = append(args, "-o", "json")
			}
			result := make(chan int, 1)
			go func() {
				code, _, _ := e.runContext(ctx, w, args...)
				result <- code
			}()
			if !tc.json {
				if got := next(); got != eventHeader {
					t.Errorf("header = %q, want %q", got, eventHeader)
				}
			}
			check := func(want store.Event) {
				t.Helper()
				got := next()
				if tc.json {
					var ev store.Event
					if err := jsonUnmarshal(got, &ev); err != nil {
						t.Fatal(err)
					}
					if diff := cmp.Diff(want, ev); diff != "" {
						t.Errorf("followed event (-want +got):\n%s", diff)
					}
					return
				}
				if want := eventLine(want); got != want {
					t.Errorf("followed line = %q, want %q", got, want)
				}
			}
			log := e.backend.EventLog()
			check(log[1])
			check(log[2])
			check(e.backend.AddEvent(store.Event{Endpoint: "fraud", Type: "traffic.changed", Actor: "api", Message: "live"}))
			cancel()
			finish(func() {
				if code := <-result; code != 0 {
					t.Errorf("events -f ended with %d after interrupt, want 0", code)
				}
			})
		})
	}
}

func TestServeAndDemoHooks(t *testing.T) {
	oldServe, oldDemo := Serve, Demo
	t.Cleanup(func() { Serve, Demo = oldServe, oldDemo })

	var gotPath string
	Serve = func(ctx context.Context, opts ServeOptions, stdout, stderr io.Writer) error {
		gotPath = opts.ConfigPath
		if ctx == nil {
			return errors.New("no context")
		}
		io.WriteString(stdout, "serving\n")
		return nil
	}
	var gotKeep bool
	Demo = func(ctx context.Context, stdout io.Writer, opts DemoOptions) error {
		gotKeep = opts.Keep
		return errors.New("demo backend refused")
	}
	e := newTestEnv(t)
	if code, out, errOut := e.run("serve", "--config", "mg.yaml"); code != 0 || out != "serving\n" || gotPath != "mg.yaml" {
		t.Errorf("serve = %d %q %q, path %q", code, out, errOut, gotPath)
	}
	if code, _, errOut := e.run("demo"); code != 1 || errOut != "Error: demo backend refused\n" {
		t.Errorf("demo = %d %q, want 1 and the error", code, errOut)
	}
	if code, _, _ := e.run("demo", "--keep"); code != 1 || !gotKeep {
		t.Errorf("demo --keep = %d, keep %v: want the flag passed on", code, gotKeep)
	}
	// serve lists every problem of an invalid file, as config validate does.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	writeFile(t, bad, "listen: nowhere\nendpoints:\n  - name: Fraud\n")
	Serve = func(ctx context.Context, opts ServeOptions, stdout, stderr io.Writer) error {
		_, err := config.Load(opts.ConfigPath)
		return err
	}
	code, _, errOut := e.run("serve", "--config", bad)
	if lines := strings.Split(errOut, "\n  "); code != 1 || !strings.HasPrefix(errOut, "Error: "+bad+" is invalid: ") || len(lines) < 3 {
		t.Errorf("serve invalid = %d, stderr:\n%s\nwant 1, a summary and every problem", code, errOut)
	}

	Serve, Demo = nil, nil
	if code, _, errOut := e.run("serve", "-c", "x.yaml"); code != 1 || !strings.Contains(errOut, "not available") {
		t.Errorf("serve without hook = %d %q", code, errOut)
	}
}

func TestAPIErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  *APIError
		want string
	}{
		{"summary only", &APIError{Status: 404, Message: `endpoint "x": not found`}, `endpoint "x": not found`},
		{"one problem in the summary", &APIError{Status: 400, Message: "invalid request: traffic: sum", Problems: []spec.Problem{{Field: "traffic", Message: "sum"}}}, "invalid request: traffic: sum"},
		{"several problems", &APIError{Status: 400, Message: "invalid request: 2 problems", Problems: []spec.Problem{{Field: "a", Message: "x"}, {Message: "y"}}}, "invalid request: 2 problems\n  a: x\n  y"},
		{"no message", &APIError{Status: 502}, "Bad Gateway"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%s: Error() = %q, want %q", tc.name, got, tc.want)
		}
	}
	if err := error(&APIError{Status: 404}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("404 is not store.ErrNotFound")
	}
	if err := error(&APIError{Status: 409}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("409 is not store.ErrConflict")
	}
	var p *spec.Problem
	if err := error(&APIError{Status: 400, Problems: []spec.Problem{{Field: "f", Message: "m"}}}); !errors.As(err, &p) || p.Field != "f" {
		t.Errorf("400 problems are not *spec.Problem")
	}
}

// TestStreamEventsReconnects serves one event per connection, as a server
// that drops streams would, and checks that the client resumes with
// Last-Event-ID, missing and repeating nothing.
func TestStreamEventsReconnects(t *testing.T) {
	var (
		mu      sync.Mutex
		lastIDs []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Last-Event-ID")
		mu.Lock()
		lastIDs = append(lastIDs, id)
		mu.Unlock()
		var n uint64
		if id != "" {
			fmt.Sscan(id, &n)
		}
		w.Header().Set("Content-Type", "text/event-stream")
		if n >= 3 {
			w.WriteHeader(200)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return
		}
		fmt.Fprintf(w, ": hello\n\nid: %d\nevent: t\ndata: {\"seq\":%d,\"type\":\"t\"}\n\n", n+1, n+1)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, "tok", srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var seqs []uint64
	err = c.StreamEvents(ctx, EventFilter{}, func(ev api.Event) error {
		seqs = append(seqs, ev.Seq)
		if ev.Seq == 3 {
			cancel()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("StreamEvents = %v", err)
	}
	if diff := cmp.Diff([]uint64{1, 2, 3}, seqs); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"", "1", "2"}, lastIDs[:3]); diff != "" {
		t.Errorf("Last-Event-ID sent (-want +got):\n%s", diff)
	}
}
