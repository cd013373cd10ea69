package daemon_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/leaktest"
	"github.com/modelgate/modelgate/internal/testenv"
)

// binary is the modelgate binary built once for the tests that need a real
// process (SIGKILL, SIGHUP).
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelgate-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "modelgate")
	build := exec.Command("go", "build", "-race", "-o", binary, "github.com/modelgate/modelgate/cmd/modelgate")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build modelgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		if err := leaktest.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines outlived the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// process is `modelgate serve` running as a child process.
type process struct {
	cmd   *exec.Cmd
	proxy string
	admin string
	mu    sync.Mutex
	logs  strings.Builder
}

var servingRE = regexp.MustCompile(`data_plane=(\S+) admin=(\S+)`)

func startProcess(t *testing.T, configPath string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(binary, "serve", "--config", configPath)}
	p.cmd.Dir = filepath.Dir(configPath)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	addrs := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.logs.WriteString(line + "\n")
			p.mu.Unlock()
			if m := servingRE.FindStringSubmatch(line); m != nil {
				addrs <- m[1:]
			}
		}
	}()
	select {
	case a := <-addrs:
		p.proxy, p.admin = "http://"+a[0], "http://"+a[1]
	case <-time.After(30 * time.Second):
		t.Fatalf("modelgate serve did not start; logs:\n%s", p.log())
	}
	return p
}

func (p *process) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logs.String()
}

func (p *process) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	p.cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatalf("modelgate did not exit on %v", sig)
	}
}

func (p *process) client(t *testing.T, dir string) *testenv.Client {
	tok, err := os.ReadFile(filepath.Join(dir, "admin.token"))
	if err != nil {
		t.Fatalf("token file beside the state: %v", err)
	}
	return testenv.NewClient(t, p.proxy, p.admin, strings.TrimSpace(string(tok)))
}

// writeTwoDeploymentConfig writes testenv.TwoDeploymentConfig, its state in
// dir, to dir/modelgate.yaml and returns that path.
func writeTwoDeploymentConfig(t *testing.T, dir, blue, green string) string {
	t.Helper()
	path := filepath.Join(dir, "modelgate.yaml")
	writeConfig(t, path, testenv.TwoDeploymentConfig(dir, blue, green, ""))
	return path
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTrafficSurvivesRestartAndSIGKILL(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	cfgPath := writeTwoDeploymentConfig(t, dir, blue.URL(), green.URL())

	p := startProcess(t, cfgPath)
	if fi, err := os.Stat(filepath.Join(dir, "admin.token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token beside the state: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	c := p.client(t, dir)
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 70, "green": 30}); status != 200 {
		t.Fatalf("PUT traffic: %d %s", status, body)
	}
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/mirror", map[string]float64{"green": 10}); status != 200 {
		t.Fatalf("PUT mirror: %d %s", status, body)
	}
	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/deployments/canary", map[string]any{"backends": []string{green.URL()}}); status != 201 {
		t.Fatalf("PUT deployment: %d %s", status, body)
	}
	p.stop(t, syscall.SIGKILL)

	p = startProcess(t, cfgPath)
	c = p.client(t, dir)
	check := func(stage string) {
		t.Helper()
		_, traffic := c.API("GET", "/api/v1/endpoints/fraud/traffic", nil)
		_, mirror := c.API("GET", "/api/v1/endpoints/fraud/mirror", nil)
		if strings.TrimSpace(string(traffic)) != `{"blue":70,"green":30}` || strings.TrimSpace(string(mirror)) != `{"green":10}` {
			t.Errorf("%s: traffic %s mirror %s; want blue 70 green 30, mirror green 10", stage, traffic, mirror)
		}
		status, dep, err := c.Predict("/fraud/p", map[string]string{"X-Model-Deployment": "canary"})
		if err != nil || status != 200 || dep != "canary" {
			t.Errorf("%s: API-made deployment canary: %d %q %v", stage, status, dep, err)
		}
	}
	check("after SIGKILL")
	p.stop(t, syscall.SIGTERM)
	if p.cmd.ProcessState.ExitCode() != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0; logs:\n%s", p.cmd.ProcessState.ExitCode(), p.log())
	}
	p = startProcess(t, cfgPath)
	c = p.client(t, dir)
	check("after a graceful restart")
}

func TestSIGHUPAppliesAValidFileAndRefusesAnInvalidOne(t *testing.T) {
	blue, green, purple := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green"), testenv.NewEcho(t, "purple")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "modelgate.yaml")
	base := testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), "")
	writeConfig(t, cfgPath, base)
	p := startProcess(t, cfgPath)
	c := p.client(t, dir)
	_, before := c.API("GET", "/api/v1/endpoints/fraud", nil)

	writeConfig(t, cfgPath, strings.Replace(base, "traffic: {blue: 100}", "traffic: {blue: 99}\n    timeout: soon", 1))
	p.cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "the reload refusal in the log", func() bool { return strings.Contains(p.log(), "reload refused") })
	if _, after := c.API("GET", "/api/v1/endpoints/fraud", nil); string(after) != string(before) {
		t.Errorf("invalid file on SIGHUP changed the endpoint:\nbefore %s\nafter  %s", before, after)
	}
	if !strings.Contains(p.log(), "endpoints[0].timeout") {
		t.Errorf("reload refusal does not name the bad field; logs:\n%s", p.log())
	}

	writeConfig(t, cfgPath, strings.Replace(base, "    traffic: {blue: 100}",
		fmt.Sprintf("      - name: purple\n        backends: [%s]\n    traffic: {blue: 100}", purple.URL()), 1))
	p.cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "purple to be served after SIGHUP", func() bool {
		status, dep, _ := c.Predict("/fraud/p", map[string]string{"X-Model-Deployment": "purple"})
		return status == 200 && dep == "purple"
	})
	p.stop(t, syscall.SIGTERM)
}
