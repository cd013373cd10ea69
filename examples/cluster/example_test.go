// Package cluster_test runs examples/cluster, the cluster-mode example, the
// way docs/cluster.md tells a reader to: its one command.
package cluster_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/testenv"
)

// TestExampleRollsOutThroughHAProxy runs `examples/cluster/run.sh --check`:
// three etcd members, three modelgate replicas, HAProxy in front and the
// stand-in models on a free range of loopback ports; traffic through
// HAProxy; green rolled out through a follower (the CLI sends it to the
// leader) and promoted, then red rolled back; everything stopped. The
// script checks what it can see (every replica routes the outcome, HAProxy
// spread the traffic, no request failed but red's); the test checks its
// exit status and its words, and that nothing it started outlives it.
func TestExampleRollsOutThroughHAProxy(t *testing.T) {
	out := &testenv.SyncBuffer{}
	cmd := exec.Command("bash", "run.sh", "--check")
	cmd.Stdout, cmd.Stderr = out, out
	// Every process the script starts inherits this mark, whatever its
	// session (the script puts each in one of its own): what is left of
	// them is found by it. Wait returns once the script has exited even if
	// something it started still holds its output.
	mark := fmt.Sprintf("MODELGATE_EXAMPLE_RUN=%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd.Env = append(os.Environ(), mark, "GOFLAGS="+strings.TrimSpace(os.Getenv("GOFLAGS")+" "+buildFlags))
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // what a failed run left
		for _, pid := range marked(mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// The run takes about 15 s; the limit leaves room for a cold build
	// cache (the script builds modelgate and the etcd member) and a loaded
	// machine. Past it the script is stopped as Ctrl-C would.
	limit := time.NewTimer(4 * time.Minute)
	defer limit.Stop()
	var err error
	select {
	case err = <-done:
	case <-limit.C:
		cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			<-done
		}
		t.Fatalf("run.sh --check did not end within 4 minutes; output:\n%s", out)
	}
	defer func() {
		if t.Failed() {
			t.Logf("run.sh --check output:\n%s", out)
		}
	}()
	if err != nil {
		t.Fatalf("run.sh --check: %v", err)
	}

	// Nothing it started is left running once it has exited.
	testenv.WaitFor(t, 5*time.Second, "every process of the example to exit", func() bool {
		return len(marked(mark)) == 0
	})

	text := out.String()
	for _, want := range []string{
		"HAProxy: http://127.0.0.1:",
		"Note: sent to the fleet's leader at", // started through a follower
		"rollout fraud-1 succeeded: green holds 100% of fraud",
		"CHECK: green promoted; every replica routes it",
		"rollout fraud-2 rolled back, green holds all traffic of fraud",
		"CHECK: red rolled back; every replica routes green again",
		"CHECK: passed (HAProxy spread the traffic over the three replicas)",
		"stopped; removed /tmp/modelgate-cluster.",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the output lacks %q", want)
		}
	}
	if strings.Contains(text, "FAILED") {
		t.Errorf("the output has a failure")
	}
}

// marked lists the live processes whose environment holds mark (NAME=value),
// zombies left out.
func marked(mark string) []int {
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", d.Name(), "environ"))
		if err != nil || !slices.Contains(strings.Split(string(env), "\x00"), mark) {
			continue
		}
		if stat, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat")); err == nil {
			// pid (comm) state ...: comm may hold spaces and parentheses.
			if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		pids = append(pids, pid)
	}
	return pids
}
