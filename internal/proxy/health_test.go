package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/spec"
)

// restartable is a backend that can be stopped and started again on the
// same port.
type restartable struct {
	t    *testing.T
	addr string
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func newRestartable(t *testing.T, name string) *restartable {
	r := &restartable{t: t, name: name}
	r.start("127.0.0.1:0")
	r.addr = r.srv.Listener.Addr().String()
	t.Cleanup(func() { r.srv.Close() })
	return r
}

func (r *restartable) url() string { return "http://" + r.addr }

func (r *restartable) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		r.t.Fatalf("listen %s: %v", addr, err)
	}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		_, _ = io.WriteString(w, r.name)
	}))
	r.srv.Listener = ln
	r.srv.Start()
}

func (r *restartable) stop()    { r.srv.Close() }
func (r *restartable) restart() { r.start(r.addr) }

func TestPassiveHealthFailoverAndRejoin(t *testing.T) {
	forEachMode(t, testPassiveHealthFailoverAndRejoin)
}

func testPassiveHealthFailoverAndRejoin(t *testing.T, opts Options) {
	a, b := newRestartable(t, "a"), newRestartable(t, "b")
	d := dep("blue", a.url(), b.url())
	d.MaxFails = 1
	d.FailTimeout = spec.Duration(200 * time.Millisecond)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, d))

	b.stop()
	for i := range 40 {
		if got := get(t, gw.url+"/fraud/p"); got.status != 200 || got.body != "a" {
			t.Fatalf("request %d with b down: got %d %q, want 200 from a", i, got.status, got.body)
		}
		health := gw.Health()["fraud"]["blue"]
		if !health[0].Healthy || (i > 0 && !strings.Contains(health[1].LastError, "connect")) {
			t.Fatalf("Health with b down = %+v, want a healthy, b with a connect error", health)
		}
	}

	b.restart()
	eventually(t, "b serves again after FailTimeout", func() bool {
		get(t, gw.url+"/fraud/p")
		return b.hits.Load() > 0
	})
	eventually(t, "b reported healthy", func() bool { return gw.Health()["fraud"]["blue"][1].Healthy })
}

func TestActiveHealthCheck(t *testing.T) { forEachMode(t, testActiveHealthCheck) }

func testActiveHealthCheck(t *testing.T, opts Options) {
	var bDown atomic.Bool
	var bHits atomic.Int64
	mk := func(name string, down *atomic.Bool, hits *atomic.Int64) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v2/health/ready" {
				if down != nil && down.Load() {
					w.WriteHeader(http.StatusServiceUnavailable)
				}
				return
			}
			if hits != nil {
				hits.Add(1)
			}
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	a, b := mk("a", nil, nil), mk("b", &bDown, &bHits)
	d := dep("blue", a.URL, b.URL)
	d.HealthCheck = &spec.HealthCheck{Path: "/v2/health/ready", Interval: spec.Duration(10 * time.Millisecond)}
	bDown.Store(true)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, d))

	eventually(t, "b is marked down by the health check", func() bool {
		h := gw.Health()["fraud"]["blue"]
		return h[0].Healthy && !h[1].Healthy && strings.Contains(h[1].LastError, "503")
	})
	for range 20 {
		if got := get(t, gw.url+"/fraud/p"); got.body != "a" {
			t.Fatalf("with b down, got %q, want a", got.body)
		}
	}
	if n := bHits.Load(); n != 0 {
		t.Errorf("b got %d live requests while down", n)
	}
	bDown.Store(false)
	eventually(t, "b back up", func() bool { return gw.Health()["fraud"]["blue"][1].Healthy })
	eventually(t, "b serves again", func() bool {
		get(t, gw.url+"/fraud/p")
		return bHits.Load() > 0
	})
}

func TestErrorMapping(t *testing.T) { forEachMode(t, testErrorMapping) }

func testErrorMapping(t *testing.T, opts Options) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hold:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)

	slowDep := dep("slow", slow.URL)
	slowDep.Timeout = spec.Duration(50 * time.Millisecond)
	refused := dep("refused", nettest.ClosedURL(t))
	refused.MaxFails = 100 // stays in rotation: every request sees the refusal
	gone := dep("gone", nettest.ClosedURL(t))
	gone.MaxFails = 1
	gone.FailTimeout = spec.Duration(time.Hour)
	ep := mkEndpoint(t, "fraud", spec.Weights{"slow": 10000}, slowDep, refused, gone)
	gw := modeGateway(t, opts, ep)

	// The first request to "gone" fails to connect (502) and takes its only
	// backend out; the next one finds no healthy backend (503).
	tests := []struct {
		name       string
		deployment string
		want       int
	}{
		{"timeout to headers", "slow", http.StatusGatewayTimeout},
		{"refused", "refused", http.StatusBadGateway},
		{"refused, backend taken out", "gone", http.StatusBadGateway},
		{"no healthy backend", "gone", http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, gw.url+"/fraud/p", "X-Model-Deployment", tc.deployment, "X-Request-Id", "rid-"+tc.deployment)
			if a.status != tc.want {
				t.Fatalf("status = %d, want %d (body %q)", a.status, tc.want, a.body)
			}
			jsonError(t, a)
			if a.deployment != tc.deployment {
				t.Errorf("X-Model-Deployment = %q, want %q", a.deployment, tc.deployment)
			}
			if got := a.header.Get("X-Request-Id"); got != "rid-"+tc.deployment {
				t.Errorf("X-Request-Id = %q", got)
			}
			obs := gw.recs.observations("fraud/" + tc.deployment)
			if len(obs) == 0 || obs[len(obs)-1].Status != tc.want {
				t.Errorf("last observation %v, want status %d", obs, tc.want)
			}
		})
	}
	// The backend taken out (for an hour) is reported down, with its error.
	if h := gw.Health()["fraud"]["gone"][0]; h.Healthy || !strings.Contains(h.LastError, "connection refused") {
		t.Errorf("Health of the ejected backend = %+v, want down with its connect error", h)
	}
	if h := gw.Health()["fraud"]["refused"][0]; !h.Healthy {
		t.Errorf("Health of a backend under MaxFails = %+v, want healthy", h)
	}
}

func TestStaleKeepAliveConnectionRetried(t *testing.T) {
	forEachMode(t, testStaleKeepAliveConnectionRetried)
}

func testStaleKeepAliveConnectionRetried(t *testing.T, opts Options) {
	// The backend closes idle keep-alive connections (as uvicorn does after
	// 5 s). A POST sent on such a pooled connection must not become a 502.
	closed := make(chan struct{}, 16)
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- struct{}{}
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))

	post := func() answer {
		req, _ := http.NewRequest(http.MethodPost, gw.url+"/fraud/p", strings.NewReader("{}"))
		return do(t, req)
	}
	if a := post(); a.status != 200 {
		t.Fatalf("first POST: %d", a.status)
	}
	backend.CloseClientConnections() // the pooled upstream connection dies idle
	<-closed
	for i := range 3 {
		if a := post(); a.status != 200 {
			t.Fatalf("POST %d after the backend closed the idle connection: %d %q", i, a.status, a.body)
		}
	}
}

// A backend is reported unchecked until its deployment's first active
// check answers; without an active check, never.
func TestHealthReportsUncheckedUntilTheFirstCheck(t *testing.T) {
	forEachMode(t, testHealthReportsUncheckedUntilTheFirstCheck)
}

func testHealthReportsUncheckedUntilTheFirstCheck(t *testing.T, opts Options) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ready" {
			<-release
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	checked, plain := dep("blue", srv.URL), dep("green", srv.URL)
	checked.HealthCheck = &spec.HealthCheck{Path: "/ready", Interval: spec.Duration(time.Minute), Timeout: spec.Duration(time.Minute)}
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, checked, plain))
	h := gw.Health()["fraud"]
	if b := h["blue"][0]; !b.Unchecked || !b.Healthy {
		t.Errorf("blue before its first check = %+v, want unchecked and healthy", b)
	}
	if g := h["green"][0]; g.Unchecked {
		t.Errorf("green, without an active check = %+v, want not unchecked", g)
	}
	close(release)
	eventually(t, "blue's first verdict", func() bool {
		b := gw.Health()["fraud"]["blue"][0]
		return !b.Unchecked && b.Healthy
	})
}
