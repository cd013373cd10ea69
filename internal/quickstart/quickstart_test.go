package quickstart_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/testenv"
)

// marker is the line before each block of docs/quickstart.md the test runs.
const marker = "<!-- quickstart: run -->"

// docPorts are the ports the quickstart's commands use; the test replaces
// each with a free one in the blocks' text, as a reader whose port is taken
// would.
var docPorts = []string{"8080", "8081", "9001", "9002"}

// TestQuickstartAsWritten runs the marked sh blocks of docs/quickstart.md, in
// order, as one bash script (set -e) from the root of the checkout, with HOME
// a temporary folder (the install's PREFIX=$HOME/.local and the example's
// folder under it) and the doc's ports replaced with free ones
// (MODELGATE_ADMIN names the new admin port for the CLI's default). The
// script installs modelgate, starts the two scikit-learn models and the
// gateway, sends a prediction and steady traffic, moves traffic by hand, then
// rolls v2 out with the page's short plan: `rollout watch` exits 0 only once
// v2 is promoted. The install gets 4 minutes (a cold build cache), the rest
// 60 s; the last block stops what the others started, and nothing may be
// left running.
func TestQuickstartAsWritten(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	blocks := runBlocks(t, filepath.Join(root, "docs", "quickstart.md"))

	ports := map[string]string{}
	for _, p := range docPorts {
		ports[p] = strconv.Itoa(freePort(t))
	}
	re := regexp.MustCompile(`\b(` + strings.Join(docPorts, "|") + `)\b`)
	script := "set -e\n" + re.ReplaceAllStringFunc(strings.Join(blocks, "\n"), func(p string) string { return ports[p] })

	home := t.TempDir()
	env := []string{"HOME=" + home, "MODELGATE_ADMIN=127.0.0.1:" + ports["8081"]}
	// Go's caches stay the test's own, not the temporary HOME's (a cold
	// build would take minutes).
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOPATH"} {
		out, err := exec.Command("go", "env", v).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", v, err)
		}
		env = append(env, v+"="+strings.TrimSpace(string(out)))
	}
	goFlags := strings.TrimSpace(os.Getenv("GOFLAGS") + " " + goflags)
	env = append(env, "GOFLAGS="+goFlags)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "HOME", "MODELGATE_ADMIN", "MODELGATE_TOKEN", "GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS":
		default:
			env = append(env, kv)
		}
	}

	out := &testenv.SyncBuffer{}
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir, cmd.Env = root, env
	cmd.Stdout, cmd.Stderr = out, out
	// Everything the script starts in the background stays in its process
	// group: what is left of it is stopped by the group.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
	defer func() {
		if t.Failed() {
			t.Logf("script:\n%s\noutput:\n%s", script, out)
			for _, log := range []string{"v1.log", "v2.log", "modelgate.log", "load.log"} {
				b, _ := os.ReadFile(filepath.Join(home, "modelgate-quickstart", log))
				t.Logf("%s:\n%s", log, b)
			}
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// The install's build gets its own allowance (under make test its
	// packages are in the build cache, but a cold cache takes minutes); the
	// quickstart proper, from `modelgate version`'s line on, gets 60 s.
	installed := regexp.MustCompile(`(?m)^modelgate \S+ \(go`)
	installLimit := time.Now().Add(4 * time.Minute)
	var since time.Time
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for done != nil {
		select {
		case err = <-done:
			done = nil
			continue
		case <-tick.C:
		}
		now := time.Now()
		if since.IsZero() && installed.MatchString(out.String()) {
			since = now
			t.Logf("installed in %v", now.Sub(start).Round(time.Millisecond))
		}
		if (since.IsZero() && now.After(installLimit)) || (!since.IsZero() && now.Sub(since) > 60*time.Second) {
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-done
			t.Fatalf("the quickstart did not end in time (install %v, then 60 s)", installLimit.Sub(start))
		}
	}
	if err != nil {
		t.Fatalf("the quickstart's commands failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
	}
	if since.IsZero() {
		t.Fatalf("the quickstart never printed modelgate's version after the install")
	}
	t.Logf("the quickstart after the install ran in %v", time.Since(since).Round(time.Millisecond))

	got := out.String()
	for _, want := range []string{
		"X-Model-Deployment: v1",     // the prediction, answered by v1
		`"predictions": [`,           // with the model's answer
		"rollout cancer-1 succeeded", // watch's last line: v2 promoted
		"dashboard: http://127.0.0.1:" + ports["8081"] + "/",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the output has no %q", want)
		}
	}
	// The last block stopped what the others started.
	testenv.WaitFor(t, 10*time.Second, "every process the quickstart started to exit", func() bool {
		return errors.Is(syscall.Kill(-pgid, 0), syscall.ESRCH)
	})
}

// runBlocks returns the sh blocks of the doc that follow the marker line.
func runBlocks(t *testing.T, doc string) []string {
	t.Helper()
	f, err := os.Open(doc)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var blocks []string
	var block strings.Builder
	state := 0 // 0 text, 1 after the marker, 2 in a marked block
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case state == 0 && strings.TrimSpace(line) == marker:
			state = 1
		case state == 1:
			if line != "```sh" {
				t.Fatalf("%s:%d: %s is not followed by a ```sh block", doc, n, marker)
			}
			state = 2
		case state == 2 && line == "```":
			blocks = append(blocks, block.String())
			block.Reset()
			state = 0
		case state == 2:
			block.WriteString(line + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if state != 0 || len(blocks) == 0 {
		t.Fatalf("%s: no complete %s blocks", doc, marker)
	}
	return blocks
}

// freePort returns a port no one listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
