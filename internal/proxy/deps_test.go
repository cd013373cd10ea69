package proxy

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDataPlaneImportsNoControl: the data plane depends on nothing above
// it. Statistics, the rollout analysis, the shadow workers, the control
// service, the store and the admin API are never linked into what serves
// requests (the types it shares with them live below it, as
// shadow/mirrored does), so that imports point down (docs/architecture.md).
func TestDataPlaneImportsNoControl(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const root = "github.com/modelgate/modelgate/internal/"
	forbidden := []string{"stats", "analysis", "shadow", "rollout", "control", "store", "admin", "daemon", "webhook", "cli"}
	for _, dep := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(dep, root)
		if !ok {
			continue
		}
		for _, f := range forbidden {
			if rel == f || strings.HasPrefix(rel, f+"/") && rel != "shadow/mirrored" && rel != "shadow/compare" {
				t.Errorf("the data plane imports %s", dep)
			}
		}
	}
}
