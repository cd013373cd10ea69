package cli

import (
	"bytes"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/testenv"
)

var updateHealth = flag.Bool("update-health", false, "rewrite testdata/health.golden from the current output")

// TestHealthMessages runs health, apply and rollout start against the real
// daemon with a canary whose one backend is down (a closed port), and
// compares what they print with testdata/health.golden (-update-health rewrites
// it; addresses are replaced by BLUE, GREEN and PORT).
func TestHealthMessages(t *testing.T) {
	blue := testenv.NewModel(t, testenv.Model{})
	green := nettest.ClosedURL(t)
	dir := t.TempDir()
	endpoints := testenv.CheckedEndpoint(blue.URL(), green)
	d := testenv.StartDaemon(t, testenv.ConfigHeader(dir)+endpoints)
	file := filepath.Join(dir, "apply.yaml")
	if err := os.WriteFile(file, []byte("endpoints:\n"+endpoints), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{EnvAdmin: "http://" + d.AdminAddr(), EnvToken: d.Token()}
	var out strings.Builder
	cli := func(args ...string) {
		var stdout, stderr bytes.Buffer
		code := run(t.Context(), args, &stdout, &stderr, func(k string) string { return env[k] }, &http.Client{Timeout: 10 * time.Second})
		text := stdout.String()
		if args[0] == "endpoints" || args[0] == "metrics" {
			// Their tables are other tests' business: the health lines alone.
			var keep []string
			for _, l := range strings.SplitAfter(text, "\n") {
				if strings.HasPrefix(l, "warning: ") || strings.HasPrefix(l, "note: ") {
					keep = append(keep, l)
				}
			}
			text = "[table]\n" + strings.Join(keep, "")
		} else if args[len(args)-1] == "--force" {
			// The rest (the outcome, the estimate) is the rollout tests' business.
			text, _, _ = strings.Cut(text, "\n")
			text += "\n[...]\n"
		}
		fmt.Fprintf(&out, "$ modelgate %s\n%s%s(exit %d)\n\n", strings.Join(args, " "), text, stderr.String(), code)
	}
	// The first checks answer at once; wait for green's verdict.
	testenv.WaitFor(t, 5*time.Second, "green's first health check", func() bool {
		c, err := NewClient(env[EnvAdmin], env[EnvToken], &http.Client{Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		h, err := c.Health(t.Context(), "fraud", "")
		return err == nil && len(h.Deployments) == 2 && !h.Deployments[1].Healthy
	})
	cli("health", "fraud")
	cli("endpoints")
	cli("metrics", "fraud", "-w", "10s")
	cli("apply", "-f", file)
	cli("rollout", "start", "fraud", "--canary", "green")
	cli("rollout", "start", "fraud", "--canary", "green", "--stages", "50,100", "--force")

	got := strings.NewReplacer(blue.URL(), "BLUE", green, "GREEN", strings.TrimPrefix(green, "http://"), "GREEN_ADDR", dir, "DIR").Replace(out.String())
	const golden = "testdata/health.golden"
	if *updateHealth {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read %s (go test -run TestHealthMessages -update-health writes it): %v", golden, err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("messages (-%s +now):\n%s", golden, diff)
	}
}
