package proxy

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/testcert"
)

// recorders collects telemetry per "endpoint/deployment".
type recorders struct {
	mu     sync.Mutex
	begins map[string]int
	obs    map[string][]telemetry.Observation
}

func newRecorders() *recorders {
	return &recorders{begins: map[string]int{}, obs: map[string][]telemetry.Observation{}}
}

func (r *recorders) get(ep, dep string) Recorder { return &fakeRecorder{r: r, key: ep + "/" + dep} }

func (r *recorders) observations(key string) []telemetry.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]telemetry.Observation(nil), r.obs[key]...)
}

func (r *recorders) inFlight(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.begins[key] - len(r.obs[key])
}

type observation = telemetry.Observation

type fakeRecorder struct {
	r   *recorders
	key string
}

func (f *fakeRecorder) Begin() {
	f.r.mu.Lock()
	f.r.begins[f.key]++
	f.r.mu.Unlock()
}

func (f *fakeRecorder) Observe(o telemetry.Observation) {
	f.r.mu.Lock()
	f.r.obs[f.key] = append(f.r.obs[f.key], o)
	f.r.mu.Unlock()
}

// testLogger sends the proxy's logs to the test log until the test ends;
// handlers cut by a forced shutdown may still log after that, which
// testing forbids.
func testLogger(t testing.TB) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// gateway is a proxy serving on a real TCP listener.
type gateway struct {
	*Server
	url  string
	recs *recorders
}

func startGateway(t testing.TB, opts Options, eps ...spec.Endpoint) *gateway {
	t.Helper()
	return startGatewayWith(t, opts, nil, eps...)
}

// startGatewayWith is startGateway with prepare run on the Server before
// its first SetRoutes.
func startGatewayWith(t testing.TB, opts Options, prepare func(*Server), eps ...spec.Endpoint) *gateway {
	t.Helper()
	recs := newRecorders()
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	opts.Recorders = recs.get
	s := New(opts)
	if prepare != nil {
		prepare(s)
	}
	if err := s.SetRoutes(eps); err != nil {
		t.Fatalf("SetRoutes: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	scheme := "http://"
	if opts.TLS != nil {
		scheme = "https://"
	}
	return &gateway{Server: s, url: scheme + ln.Addr().String(), recs: recs}
}

// named starts a backend that answers with its name and echoes what it
// received in headers, so tests can check what was forwarded.
func named(t *testing.T, name string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Got-Uri", r.RequestURI)
		w.Header().Set("X-Got-Request-Id", r.Header.Get("X-Request-Id"))
		_, _ = io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func dep(name string, backends ...string) spec.Deployment {
	return spec.Deployment{Name: name, Backends: backends}
}

// mkEndpoint builds a defaulted, validated endpoint.
func mkEndpoint(t testing.TB, name string, traffic spec.Weights, deps ...spec.Deployment) spec.Endpoint {
	t.Helper()
	ep := spec.Endpoint{Name: name, Deployments: deps, Traffic: traffic}.WithDefaults()
	if err := ep.Validate(); err != nil {
		t.Fatalf("endpoint %s: %v", name, err)
	}
	return ep
}

type answer struct {
	status     int
	body       string
	header     http.Header
	deployment string
}

var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, TLSClientConfig: &tls.Config{RootCAs: testCA.Pool}}}

// testCA signs the certificate of the tls mode's gateways (engineModes),
// which the test clients trust.
var (
	testCA        = testcert.NewCA(testcert.Panicking{}, "modelgate test CA")
	testServerTLS = &tls.Config{Certificates: []tls.Certificate{testCA.Server(testcert.Panicking{}, "gateway").TLS}, MinVersion: tls.VersionTLS12}
)

// gwAddr is the gateway's host:port.
func gwAddr(gw *gateway) string {
	return strings.TrimPrefix(strings.TrimPrefix(gw.url, "http://"), "https://")
}

// clientTLS wraps a raw client connection to gw in TLS when gw serves
// TLS (the tls mode), with the handshake done.
func clientTLS(t testing.TB, gw *gateway, c net.Conn) net.Conn {
	t.Helper()
	if !strings.HasPrefix(gw.url, "https://") {
		return c
	}
	tc := tls.Client(c, &tls.Config{RootCAs: testCA.Pool, ServerName: "localhost"})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake with the gateway: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

func do(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header, deployment: resp.Header.Get("X-Model-Deployment")}
}

func get(t testing.TB, url string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

// jsonError decodes {"error": "..."} or fails the test.
func jsonError(t testing.TB, a answer) string {
	t.Helper()
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == "" {
		t.Errorf("error body %q is not {\"error\": ...}: %v", a.body, err)
	}
	return e.Error
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out waiting until %s", what)
		case <-tick.C:
		}
	}
}

// listenTCP listens on a local port until the test ends and serves every
// connection with serve on a goroutine of its own, counting them in conns.
func listenTCP(t *testing.T, conns *atomic.Int32, serve func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			wg.Go(func() { serve(c) })
		}
	})
	return ln
}

// waitListenerClosedWhileInFlight waits until Shutdown (running, its
// result to come on shut) closed gw's listener, and fails the test if
// Shutdown already returned: a request is still in flight.
func waitListenerClosedWhileInFlight(t *testing.T, gw *gateway, shut <-chan error) {
	t.Helper()
	eventually(t, "the listener is closed", func() bool {
		c, err := net.Dial("tcp", gwAddr(gw))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
}

// ---- the engine matrix ----

// engineModes are the ways the gateway serves a request: the event loops
// sending through io_uring, the event loops sending with a system call per
// message, and the goroutine engine alone.
var engineModes = []struct {
	name string
	opts Options
}{
	{"loops-ring", Options{}},
	{"loops-direct", Options{DirectSends: true}},
	{"goroutines", Options{GoroutinesOnly: true}},
}

// tlsMode serves TLS clients: the listener terminates TLS and the
// goroutine engine serves the connections (the loops read plain sockets
// only), through the same policy. forEachModeTLS adds it to the engine
// modes.
var tlsMode = struct {
	name string
	opts Options
}{"tls", Options{TLS: testServerTLS}}

// forEachModeTLS is forEachMode with TLS clients as a fourth mode, for
// the tests of the request policy: what a client may send and what the
// backend gets does not depend on the transport. (Tests of the engines'
// own machinery, raw sockets timing or socket options, stay in
// forEachMode: the TLS connections always take the goroutine path.)
func forEachModeTLS(t *testing.T, f func(t *testing.T, opts Options)) {
	t.Helper()
	forEachMode(t, f)
	t.Run(tlsMode.name, func(t *testing.T) { f(t, tlsMode.opts) })
}

// isTLS reports whether a test's gateway serves TLS.
func isTLS(opts Options) bool { return opts.TLS != nil }

// forEachMode runs f as a subtest per engine mode, as net/http runs its
// tests under each mode. A data-plane test runs in every mode: it sets what
// it needs on the mode's opts (Mirror, MaxRequestBytes, ...) and starts
// its gateways with modeGateway. The ring mode fails, never skips, where
// io_uring cannot be set up: it would silently test the direct sends twice.
func forEachMode(t *testing.T, f func(t *testing.T, opts Options)) {
	t.Helper()
	for _, m := range engineModes {
		t.Run(m.name, func(t *testing.T) {
			if m.name == "loops-ring" {
				r, err := newSendRing(8)
				if err != nil {
					t.Fatalf("loops-ring mode needs io_uring: %v", err)
				}
				r.close()
			}
			f(t, m.opts)
		})
	}
}

// modeGateway starts a gateway and checks it runs the engine opts asks
// for: event loops unless GoroutinesOnly and, in the ring mode, loops
// that sent through their send rings if they served anything (checked
// when the test ends: a ring a loop failed to set up is no silent
// fallback to direct sends).
func modeGateway(t *testing.T, opts Options, eps ...spec.Endpoint) *gateway {
	t.Helper()
	return modeGatewayWith(t, opts, nil, eps...)
}

// modeGatewayWith is modeGateway with prepare run on the Server before
// its first SetRoutes (startGatewayWith).
func modeGatewayWith(t *testing.T, opts Options, prepare func(*Server), eps ...spec.Endpoint) *gateway {
	t.Helper()
	gw := startGatewayWith(t, opts, prepare, eps...)
	if opts.GoroutinesOnly {
		return gw
	}
	if gw.loops == nil {
		t.Fatal("the gateway runs without event loops in a loop mode")
	}
	if !opts.DirectSends {
		t.Cleanup(func() { // before the gateway's Shutdown
			if gw.loops.served.Load() > 0 && gw.loops.ringSends.Load() == 0 {
				t.Error("the loops served requests in the ring mode without sending through a send ring")
			}
		})
	}
	return gw
}

// safetyGateway is modeGateway (safety_test.go's name).
func safetyGateway(t *testing.T, opts Options, eps ...spec.Endpoint) *gateway {
	t.Helper()
	return modeGateway(t, opts, eps...)
}
