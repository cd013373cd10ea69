package daemon_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/testenv"
)

// changeState gives the running gateway traffic changes, a mirror, a
// paused rollout and the events of all of them.
func changeState(t *testing.T, c *testenv.Client) {
	t.Helper()
	for i := range 30 {
		w := map[string]float64{"blue": float64(100 - i), "green": float64(i)}
		if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", w); status != 200 {
			t.Fatalf("PUT traffic: %d %s", status, body)
		}
	}
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100}); status != 200 {
		t.Fatalf("PUT traffic: %d %s", status, body)
	}
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/mirror", map[string]float64{"green": 10}); status != 200 {
		t.Fatalf("PUT mirror: %d %s", status, body)
	}
	c.StartRollout("fraud", `{"canary": "green", "bake": "1h"}`)
	if status, body := c.API("POST", "/api/v1/endpoints/fraud/rollout/pause", nil); status != 200 {
		t.Fatalf("pause the rollout: %d %s", status, body)
	}
}

// serveUntilExit runs `modelgate serve` on cfgPath to its end and returns
// its exit code and standard error.
func serveUntilExit(t *testing.T, cfgPath string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "serve", "--config", cfgPath)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("modelgate serve on a damaged state file was still running after 60s; stderr:\n%s", stderr.String())
	}
	if err != nil && cmd.ProcessState == nil {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestServeRefusesADamagedStateFile damages a state file a real gateway
// wrote (traffic changes, a mirror, a rollout, their events) in the three
// ways of issue "Trust boundaries": emptied, cut to half, cut to 12 KiB.
// `modelgate serve` must refuse each with the file and the way out, exit 1
// and leave the file as it was: no panic, no fresh start.
func TestServeRefusesADamagedStateFile(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	cfgPath := writeTwoDeploymentConfig(t, dir, blue.URL(), green.URL())
	p := startProcess(t, cfgPath)
	changeState(t, p.client(t, dir))
	p.stop(t, syscall.SIGTERM)
	real, err := os.ReadFile(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	if len(real) <= 24<<10 {
		t.Fatalf("the gateway's state file has %d bytes; half of it must differ from 12 KiB", len(real))
	}

	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "the file is empty"},
		{"half", real[:len(real)/2], "the file is cut short"},
		{"12 KiB", real[:12<<10], "the file is cut short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := writeTwoDeploymentConfig(t, dir, blue.URL(), green.URL())
			state := filepath.Join(dir, "state.db")
			if err := os.WriteFile(state, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			code, stderr := serveUntilExit(t, cfgPath)
			if code != 1 {
				t.Errorf("exit code %d, want 1; stderr:\n%s", code, stderr)
			}
			for _, want := range []string{
				fmt.Sprintf("Error: open state: state file %q is damaged: %s", state, tc.want),
				"Restore a backup", "modelgate state backup", "Backup and restore",
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not contain %q:\n%s", want, stderr)
				}
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("serve panicked:\n%s", stderr)
			}
			if after, _ := os.ReadFile(state); !bytes.Equal(after, tc.data) {
				t.Errorf("serve changed the state file it refused (%d bytes, now %d)", len(tc.data), len(after))
			}
		})
	}
}

// TestBackupRestoresTrafficRolloutsAndEvents backs up a running gateway
// with the CLI, then starts a new gateway on the backup: it serves the
// same traffic, mirror, rollout and event log, and its event Seqs go on.
func TestBackupRestoresTrafficRolloutsAndEvents(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	cfgPath := writeTwoDeploymentConfig(t, dir, blue.URL(), green.URL())
	p := startProcess(t, cfgPath)
	c := p.client(t, dir)
	changeState(t, c)

	type view struct {
		Traffic, Mirror, Rollout string
		Events                   []store.Event
	}
	read := func(c *testenv.Client) view {
		t.Helper()
		var v view
		for path, into := range map[string]*string{"traffic": &v.Traffic, "mirror": &v.Mirror, "rollout": &v.Rollout} {
			status, body := c.API("GET", "/api/v1/endpoints/fraud/"+path, nil)
			if status != 200 {
				t.Fatalf("GET %s: %d %s", path, status, body)
			}
			*into = string(body)
		}
		var events struct{ Events []store.Event }
		c.Get("/api/v1/events", &events)
		v.Events = events.Events
		return v
	}
	before := read(c)

	backup := filepath.Join(t.TempDir(), "backup.db")
	out, err := exec.Command(binary, "--admin", p.admin, "--token-file", filepath.Join(dir, "admin.token"), "state", "backup", backup).CombinedOutput()
	if err != nil {
		t.Fatalf("modelgate state backup: %v\n%s", err, out)
	}
	lastSeq := before.Events[len(before.Events)-1].Seq
	if want := fmt.Sprintf("last event seq %d)", lastSeq); !strings.Contains(string(out), want) {
		t.Errorf("state backup said %q, want it to end with %q", out, want)
	}
	// A change after the backup is not in it (forced: the rollout paused
	// in the state refuses a hand change otherwise).
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/mirror?force=true", map[string]float64{"green": 20}); status != 200 {
		t.Fatalf("PUT mirror: %d %s", status, body)
	}
	p.stop(t, syscall.SIGTERM)

	// Restore: the backup becomes the state file of a new gateway.
	restored := t.TempDir()
	data, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(restored, "state.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	cfgPath = writeTwoDeploymentConfig(t, restored, blue.URL(), green.URL())
	p = startProcess(t, cfgPath)
	c = p.client(t, restored)
	after := read(c)
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("gateway on the backup (-before the backup +restored):\n%s", diff)
	}
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/mirror?force=true", map[string]float64{"green": 30}); status != 200 {
		t.Fatalf("PUT mirror after restore: %d %s", status, body)
	}
	evs := c.Events("fraud")
	if last := evs[len(evs)-1]; last.Seq != lastSeq+1 {
		t.Errorf("first event after restore has seq %d, want %d (the log goes on from the backup)", last.Seq, lastSeq+1)
	}
	p.stop(t, syscall.SIGTERM)
}
