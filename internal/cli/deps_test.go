package cli

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestCLIImportsOnlyTheContract: the CLI speaks to the daemon through the
// API's wire types (internal/api), never through the server's packages,
// so that a change of the server's insides cannot change what the CLI
// reads without changing the contract.
func TestCLIImportsOnlyTheContract(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	const root = "github.com/modelgate/modelgate/internal/"
	// config (for `config validate`) brings the small readers of the
	// files a config names: secretfile, tlsconf, authtoken.
	allowed := []string{"api", "spec", "config", "secretfile", "version", "tlsconf", "authtoken", "cli"}
	var seen []string
	for _, dep := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(dep, root)
		if !ok {
			continue
		}
		seen = append(seen, rel)
		if !slices.Contains(allowed, rel) {
			t.Errorf("the CLI imports %s", dep)
		}
	}
	if !slices.Contains(seen, "api") {
		t.Errorf("go list -deps lists no internal/api among %v: the check sees nothing", seen)
	}
}
