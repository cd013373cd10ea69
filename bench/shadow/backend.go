package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/bench/internal/benchproc"
)

// backendEnv, when set in the environment, turns this binary (or the test
// binary, see TestMain) into a stand-in model backend: the value is the
// delay before each answer, e.g. "2ms". The backend listens on a free
// loopback port and prints it on its first stdout line.
const backendEnv = "MODELGATE_SHADOW_BENCH_BACKEND"

// answer is the KServe v1 answer of both backends: the shadow agrees with
// the live deployment, so every compared copy should match.
const answer = `{"predictions":[0.12,0.88]}`

// serveBackend runs the backend of backendEnv until killed. GET /__count
// answers the number of predictions served so far (without the delay).
func serveBackend(delaySpec string) {
	delay, err := time.ParseDuration(delaySpec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend: bad delay %q: %v\n", delaySpec, err)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(1)
	}
	var served atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/__count" {
			fmt.Fprintln(w, served.Load())
			return
		}
		io.Copy(io.Discard, r.Body)
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(answer)))
		io.WriteString(w, answer)
	})
	fmt.Printf("%d\n", ln.Addr().(*net.TCPAddr).Port)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintf(os.Stderr, "backend: %v\n", err)
		os.Exit(1)
	}
}

// startBackend re-executes this binary as a backend with the given delay
// and returns it with its port.
func startBackend(name string, delay time.Duration, logPath string) (*benchproc.Proc, int, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, 0, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), backendEnv+"="+delay.String())
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, 0, err
	}
	p, err := benchproc.Start(name, cmd, nil)
	if err != nil {
		return nil, 0, err
	}
	line := make(chan string, 1)
	go func() {
		var b strings.Builder
		buf := make([]byte, 1)
		for {
			n, err := out.Read(buf)
			if n == 1 {
				if buf[0] == '\n' {
					break
				}
				b.WriteByte(buf[0])
			}
			if err != nil {
				break
			}
		}
		line <- b.String()
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-line:
		port, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil {
			p.Stop()
			return nil, 0, fmt.Errorf("%s backend did not start (see %s)", name, logPath)
		}
		return p, port, nil
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, 0, fmt.Errorf("%s backend did not start within 30 s", name)
	}
}
