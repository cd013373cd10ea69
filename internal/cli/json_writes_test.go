package cli

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
)

// decodeOut decodes a command's standard output, which -o json makes one
// JSON document, strictly: the CLI prints the API's own answer.
func decodeOut[T any](t *testing.T, args []string, code int, out, errOut string) T {
	t.Helper()
	var v T
	if code != 0 {
		t.Fatalf("%v = %d: %s", args, code, errOut)
	}
	if err := api.DecodeJSON([]byte(out), &v); err != nil {
		t.Fatalf("%v -o json printed what %T does not hold: %v\n%s", args, v, err, out)
	}
	return v
}

// TestWritesPrintJSON: every command that changes something prints, with
// -o json, what the API answered (the stored split, the apply's result, the
// rollout), and config validate its verdict with every problem.
func TestWritesPrintJSON(t *testing.T) {
	e := newTestEnv(t)
	args := []string{"traffic", "set", "fraud", "green=5", "-o", "json"}
	code, out, errOut := e.run(args...)
	if w := decodeOut[spec.Weights](t, args, code, out, errOut); !cmp.Equal(w, spec.Weights{"blue": 9500, "green": 500}) {
		t.Errorf("traffic set -o json = %v", w)
	}
	args = []string{"mirror", "set", "fraud", "green=10", "-o", "json"}
	code, out, errOut = e.run(args...)
	if w := decodeOut[spec.Weights](t, args, code, out, errOut); !cmp.Equal(w, spec.Weights{"green": 1000}) {
		t.Errorf("mirror set -o json = %v", w)
	}

	dir := t.TempDir()
	file := filepath.Join(dir, "apply.yaml")
	writeFile(t, file, "endpoints:\n  - name: churn\n    deployments:\n      - name: v1\n        backends: [http://127.0.0.1:9005]\n")
	e.backend.ApplyResult = api.ApplyResult{Created: []string{"churn", "churn/v1"}} // what the daemon answers
	args = []string{"apply", "-f", file, "-o", "json"}
	code, out, errOut = e.run(args...)
	if res := decodeOut[api.ApplyResult](t, args, code, out, errOut); !cmp.Equal(res.Created, []string{"churn", "churn/v1"}) {
		t.Errorf("apply -o json = %+v, want churn and churn/v1 created", res)
	}

	args = []string{"config", "validate", file, "-o", "json"}
	code, out, errOut = e.run(args...)
	if v := decodeOut[ValidateResult](t, args, code, out, errOut); !v.Valid || v.Endpoints != 1 || len(v.Problems) != 0 || v.Path != file {
		t.Errorf("config validate -o json of a good file = %+v", v)
	}
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "endpoints:\n  - name: churn\n    deployments:\n      - name: v1\n        backends: [ftp://x]\n        timeuot: 5s\n")
	code, out, _ = e.run("config", "validate", bad, "-o", "json")
	var v ValidateResult
	if err := api.DecodeJSON([]byte(out), &v); err != nil || code != 1 || v.Valid || len(v.Problems) != 2 {
		t.Errorf("config validate -o json of a bad file = %d, %+v (%v), want exit 1 and its two problems:\n%s", code, v, err, out)
	}

	f := &fakeRollouts{afterAct: testRollout()}
	re := newRolloutEnv(t, f, nil)
	args = []string{"rollout", "start", "fraud", "--canary", "green", "-o", "json"}
	code, out, errOut = re.run(args...)
	if r := decodeOut[api.RolloutAnswer](t, args, code, out, errOut); r.Canary != "green" || r.Estimate == nil || len(r.Estimate.Warnings) != 1 {
		t.Errorf("rollout start -o json = %+v", r.Rollout)
	}
	f.afterAct.Phase, f.afterAct.PausedFrom = rollout.PhasePaused, rollout.PhaseProgressing
	args = []string{"rollout", "pause", "fraud", "-o", "json"}
	code, out, errOut = re.run(args...)
	if r := decodeOut[api.RolloutAnswer](t, args, code, out, errOut); r.Phase != api.PhasePaused || r.ID != "fraud-3" {
		t.Errorf("rollout pause -o json = %+v", r.Rollout)
	}
}
