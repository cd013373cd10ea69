package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/testenv"
)

// python is the interpreter the example is written for: Debian's, where
// python3-sklearn is installed (`make deps`). MODELGATE_PYTHON overrides it.
func python() string {
	if p := os.Getenv("MODELGATE_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// serverScript is examples/sklearn/server.py of this repository.
var serverScript = filepath.Join("..", "..", "examples", "sklearn", "server.py")

// sklearnServer is examples/sklearn/server.py running as a child process.
type sklearnServer struct {
	url    string
	banner string
	cmd    *exec.Cmd
}

var servingRE = regexp.MustCompile(`on (http://127\.0\.0\.1:\d+)`)

// launchSklearn starts the server and returns a func that waits until it
// is ready, so that several servers can train at the same time.
func launchSklearn(t *testing.T, args ...string) (*sklearnServer, func()) {
	t.Helper()
	s := &sklearnServer{cmd: exec.Command(python(), append([]string{serverScript, "--port", "0"}, args...)...)}
	var stderr testenv.SyncBuffer
	s.cmd.Stderr = &stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start %s %s: %v", python(), serverScript, err)
	}
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if servingRE.MatchString(sc.Text()) {
				ready <- sc.Text()
				break
			}
		}
		close(ready)
		io.Copy(io.Discard, stdout)
	}()
	return s, func() {
		t.Helper()
		select {
		case line, ok := <-ready:
			if !ok {
				t.Fatalf("%s %s exited before serving: %s", python(), strings.Join(s.cmd.Args[1:], " "), stderr.String())
			}
			s.banner = line
			s.url = servingRE.FindStringSubmatch(line)[1]
		case <-time.After(60 * time.Second):
			t.Fatalf("%s did not serve within 60s: %s", strings.Join(s.cmd.Args, " "), stderr.String())
		}
		t.Logf("%s", s.banner)
	}
}

// agreement is scikit-learn's own comparison of the two models, printed
// by server.py --agreement N --json.
type agreement struct {
	N         int
	Seed      int
	Matched   int
	Agreement float64
	Accuracy  map[string]float64
	Inputs    [][]float64
	LR        []int
	RF        []int
}

var (
	agreementOnce sync.Once
	agreementData agreement
	agreementErr  error
)

// agreementOn2000 runs server.py --agreement 2000 --json once for the
// package: the inputs every sklearn test sends, and both models' answers.
func agreementOn2000(t *testing.T) agreement {
	t.Helper()
	agreementOnce.Do(func() {
		cmd := exec.Command(python(), serverScript, "--agreement", "2000", "--json")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			agreementErr = fmt.Errorf("%s: %v: %s", strings.Join(cmd.Args, " "), err, stderr.String())
			return
		}
		agreementErr = json.Unmarshal(out, &agreementData)
	})
	if agreementErr != nil {
		t.Fatal(agreementErr)
	}
	if a := agreementData; len(a.Inputs) != a.N || len(a.LR) != a.N || len(a.RF) != a.N {
		t.Fatalf("agreement output: %d inputs, %d lr and %d rf predictions for n=%d", len(a.Inputs), len(a.LR), len(a.RF), a.N)
	}
	return agreementData
}

// v1Body is a KServe v1 request for one input.
func v1Body(x []float64) []byte {
	raw, _ := json.Marshal(map[string]any{"instances": [][]float64{x}})
	return raw
}

// predictV1 sends x through modelgate's endpoint ep and returns the status,
// the answering deployment and the predicted class (-1 without one).
func predictV1(c *testenv.Client, ep string, x []float64, hdr map[string]string) (int, string, int, error) {
	resp, err := c.Post("/"+ep+"/v1/models/cancer:predict", v1Body(x), hdr)
	if err != nil {
		return 0, "", -1, err
	}
	defer resp.Body.Close()
	var doc struct{ Predictions []int }
	body, _ := io.ReadAll(resp.Body)
	class := -1
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &doc); err != nil || len(doc.Predictions) != 1 {
			return resp.StatusCode, "", -1, fmt.Errorf("answer %s: want one prediction", body)
		}
		class = doc.Predictions[0]
	}
	return resp.StatusCode, resp.Header.Get("X-Model-Deployment"), class, nil
}
