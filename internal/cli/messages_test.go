package cli

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/telemetry"
)

// Golden tests of the CLI's error messages (issue 21, item 4): each names
// the cause and the fix, compared whole.

const invalidToken = "Error: invalid bearer token: read the token from its file again (a replaced token is refused once admin.token_overlap has passed)\n"

// TestRefusedTokenNamesItsSource: after a 401 the CLI says which source the
// token came from (MODELGATE_TOKEN, --token-file, the default file) and
// which other sources are present.
func TestRefusedTokenNamesItsSource(t *testing.T) {
	const wrong = "not-the-token-0123456789abcdef!!!"
	tests := []struct {
		name string
		env  string // MODELGATE_TOKEN
		file string // ./admin.token's content; "" none
		args []string
		want string
	}{
		{"stale env over a good file", wrong, testToken, nil,
			"The token sent was MODELGATE_TOKEN's; the token file admin.token is present too but is read only without MODELGATE_TOKEN: unset MODELGATE_TOKEN, or pass --token-file admin.token.\n"},
		{"env alone", wrong, "", nil,
			"The token sent was MODELGATE_TOKEN's (no token file admin.token here): set MODELGATE_TOKEN to the daemon's token, or pass --token-file with the daemon's token file (admin.token_file; by default admin.token beside the state file).\n"},
		{"--token-file over env", testToken, wrong, []string{"--token-file", "admin.token"},
			"The token sent was read from --token-file admin.token (it wins over MODELGATE_TOKEN, which is set too): point --token-file at the daemon's token file (admin.token_file; by default admin.token beside the state file).\n"},
		{"--token-file alone", "", wrong, []string{"--token-file", "admin.token"},
			"The token sent was read from --token-file admin.token (MODELGATE_TOKEN is not set): point --token-file at the daemon's token file (admin.token_file; by default admin.token beside the state file).\n"},
		{"default file", "", wrong, nil,
			"The token sent was read from the token file admin.token (the default; MODELGATE_TOKEN is not set): pass --token-file with the daemon's token file (admin.token_file; by default admin.token beside the state file), or set MODELGATE_TOKEN.\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.vars[EnvToken] = tc.env
			dir := t.TempDir()
			if tc.file != "" {
				writeFile(t, filepath.Join(dir, "admin.token"), tc.file+"\n")
			}
			t.Chdir(dir)
			code, _, errOut := e.run(append([]string{"endpoints"}, tc.args...)...)
			if code != ExitFailure {
				t.Errorf("exit = %d, want %d", code, ExitFailure)
			}
			if diff := cmp.Diff(invalidToken+tc.want, errOut); diff != "" {
				t.Errorf("stderr (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDurationFlagMessage: a duration flag Go cannot parse gets the config
// file's message for the same mistake, with the flag's name.
func TestDurationFlagMessage(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollout", "start", "fraud", "green", "--bake", "5 minutes"},
			"Error: --bake: invalid duration \"5 minutes\": use a number with a unit, e.g. 500ms, 10s, 1m\nRun 'modelgate rollout start --help' for usage.\n"},
		{[]string{"metrics", "fraud", "-w", "10"},
			"Error: --window: invalid duration \"10\": use a number with a unit, e.g. 500ms, 10s, 1m\nRun 'modelgate metrics --help' for usage.\n"},
	} {
		code, _, errOut := e.run(tc.args...)
		if code != ExitUsage {
			t.Errorf("%v: exit = %d, want %d", tc.args, code, ExitUsage)
		}
		if diff := cmp.Diff(tc.want, errOut); diff != "" {
			t.Errorf("%v: stderr (-want +got):\n%s", tc.args, diff)
		}
	}
}

// TestServeSuggestsConfigFlag: a config file given as an argument is
// answered with the command line that takes it.
func TestServeSuggestsConfigFlag(t *testing.T) {
	e := newTestEnv(t)
	code, _, errOut := e.run("serve", "modelgate.yaml")
	want := "Error: serve takes the config file with --config: modelgate serve --config modelgate.yaml\nRun 'modelgate serve --help' for usage.\n"
	if code != ExitUsage {
		t.Errorf("exit = %d, want %d", code, ExitUsage)
	}
	if diff := cmp.Diff(want, errOut); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

// TestMetricsWithoutTraffic: a window with no requests says so instead of
// showing 0.00% and 0.0ms as if they were measured.
func TestMetricsWithoutTraffic(t *testing.T) {
	e := newTestEnv(t)
	e.backend.Report = telemetry.Report{Endpoint: "fraud", Window: "5m", Baseline: "blue",
		Deployments: map[string]telemetry.DeploymentReport{"blue": {}, "green": {}},
		Differences: map[string]telemetry.DifferenceReport{"green": {}}}
	code, out, errOut := e.run("metrics", "fraud")
	if code != 0 {
		t.Fatalf("metrics = %d: %s", code, errOut)
	}
	want := "endpoint fraud, window 5m, baseline blue\n" +
		"DEPLOYMENT  SHARE  RPM  REQUESTS  ERROR RATE   CLIENT ERRORS  P50  P99  TTFB P99  Δ ERROR RATE  Δ P50  Δ P99  Δ RPM\n" +
		"blue        -      0    0         no requests  0              -    -    -         baseline      -      -      -\n" +
		"green       -      0    0         no requests  0              -    -    -         n/a           n/a    n/a    n/a\n" +
		"no requests in the last 5m: nothing measured yet\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
}

// TestEnvTokenNotAToken: MODELGATE_TOKEN holding more than a token (two
// lines, a space) is refused before any call, not reported as a daemon
// that cannot be reached.
func TestEnvTokenNotAToken(t *testing.T) {
	e := newTestEnv(t)
	e.vars[EnvToken] = testToken + "\n" + testToken
	code, _, errOut := e.run("endpoints")
	want := "Error: MODELGATE_TOKEN holds a character that is not visible ASCII at offset 33 ('\\n'): it must hold the token alone, one line; e.g. export MODELGATE_TOKEN=$(cat admin.token)\n"
	if code != ExitFailure {
		t.Errorf("exit = %d, want %d", code, ExitFailure)
	}
	if diff := cmp.Diff(want, errOut); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}
