package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/router"
	"github.com/modelgate/modelgate/internal/spec"
)

func TestForwarding(t *testing.T) { forEachModeTLS(t, testForwarding) }

func testForwarding(t *testing.T, opts Options) {
	var got *http.Request
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(r.Context())
		// Hop-by-hop headers a backend might send must not reach the client.
		w.Header().Set("Connection", "X-Hop-Resp")
		w.Header().Set("X-Hop-Resp", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("Proxy-Authenticate", "Basic")
		w.Header().Set("X-End-To-End", "kept")
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL+"/base/")))

	tests := []struct {
		name, path, wantURI string
	}{
		{"path and query", "/fraud/v1/models/m:predict?x=1&y=%2F", "/base/v1/models/m:predict?x=1&y=%2F"},
		{"endpoint root", "/fraud", "/base/"},
		{"endpoint root with slash", "/fraud/", "/base/"},
		{"query only", "/fraud?q=1", "/base/?q=1"},
		{"encoded path kept", "/fraud/a%2Fb/c", "/base/a%2Fb/c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, gw.url+tc.path, strings.NewReader(`{"instances":[1]}`))
			req.Header.Set("Connection", "X-Hop-Req")
			req.Header.Set("X-Hop-Req", "secret")
			req.Header.Set("Proxy-Authorization", "Basic Zm9v")
			req.Header.Set("Te", "trailers")
			req.Header.Set("X-Forwarded-For", "10.1.2.3")
			req.Host = "models.example.com"
			a := do(t, req)
			if a.status != 200 || a.body != "ok" {
				t.Fatalf("got %d %q, want 200 ok", a.status, a.body)
			}
			if got.RequestURI != tc.wantURI {
				t.Errorf("backend got URI %q, want %q", got.RequestURI, tc.wantURI)
			}
			if got.Method != http.MethodPost {
				t.Errorf("backend got method %s", got.Method)
			}
			for _, h := range []string{"X-Hop-Req", "Proxy-Authorization", "Te"} {
				if v := got.Header.Get(h); v != "" {
					t.Errorf("backend got hop-by-hop header %s: %q", h, v)
				}
			}
			proto := "http"
			if isTLS(opts) {
				proto = "https"
			}
			wantFwd := map[string]string{
				"X-Forwarded-For":   "10.1.2.3, 127.0.0.1",
				"X-Forwarded-Proto": proto,
				"X-Forwarded-Host":  "models.example.com",
			}
			for h, want := range wantFwd {
				if v := got.Header.Get(h); v != want {
					t.Errorf("backend got %s %q, want %q", h, v, want)
				}
			}
			if want := strings.TrimPrefix(backend.URL, "http://"); got.Host != want {
				t.Errorf("backend got Host %q, want %q", got.Host, want)
			}
			for _, h := range []string{"X-Hop-Resp", "Keep-Alive", "Proxy-Authenticate"} {
				if v := a.header.Get(h); v != "" {
					t.Errorf("client got hop-by-hop header %s: %q", h, v)
				}
			}
			if v := a.header.Get("X-End-To-End"); v != "kept" {
				t.Errorf("client got X-End-To-End %q, want kept", v)
			}
			if a.deployment != "blue" {
				t.Errorf("X-Model-Deployment = %q, want blue", a.deployment)
			}
		})
	}
}

func TestRequestID(t *testing.T) { forEachModeTLS(t, testRequestID) }

func testRequestID(t *testing.T, opts Options) {
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", named(t, "blue").URL)))

	a := get(t, gw.url+"/fraud/x", "X-Request-Id", "abc-123")
	if got := a.header.Get("X-Request-Id"); got != "abc-123" {
		t.Errorf("X-Request-Id = %q, want the client's abc-123", got)
	}
	if got := a.header.Get("X-Got-Request-Id"); got != "abc-123" {
		t.Errorf("backend got X-Request-Id %q, want abc-123", got)
	}

	seen := map[string]bool{}
	for range 5 {
		a := get(t, gw.url+"/fraud/x")
		id := a.header.Get("X-Request-Id")
		if id == "" || seen[id] {
			t.Fatalf("generated X-Request-Id %q is empty or repeated", id)
		}
		seen[id] = true
		if got := a.header.Get("X-Got-Request-Id"); got != id {
			t.Errorf("backend got X-Request-Id %q, client got %q", got, id)
		}
	}
}

func TestUnknownEndpointAndDeployment(t *testing.T) {
	forEachModeTLS(t, testUnknownEndpointAndDeployment)
}

func testUnknownEndpointAndDeployment(t *testing.T, opts Options) {
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", named(t, "blue").URL)))
	tests := []struct {
		name       string
		path       string
		headers    []string
		wantStatus int
		wantDep    string
	}{
		{"unknown endpoint", "/nope/v1", nil, 404, ""},
		{"no segment", "/", nil, 404, ""},
		{"prefix of an endpoint", "/frau/v1", nil, 404, ""},
		{"unknown deployment", "/fraud/v1", []string{"X-Model-Deployment", "green"}, 400, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := get(t, gw.url+tc.path, tc.headers...)
			if a.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", a.status, tc.wantStatus, a.body)
			}
			jsonError(t, a)
			if a.header.Get("X-Request-Id") == "" {
				t.Errorf("no X-Request-Id on a proxy error")
			}
			if a.deployment != tc.wantDep {
				t.Errorf("X-Model-Deployment = %q, want %q", a.deployment, tc.wantDep)
			}
		})
	}
}

func TestSplit(t *testing.T) { forEachModeTLS(t, testSplit) }

func testSplit(t *testing.T, opts Options) {
	blue, green := named(t, "blue"), named(t, "green")
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", spec.Weights{"blue": 9500, "green": 500},
		dep("blue", blue.URL), dep("green", green.URL)))
	const n = 2000
	counts := map[string]int{}
	for range n {
		a := get(t, gw.url+"/fraud/predict")
		if a.status != 200 || a.body != a.deployment {
			t.Fatalf("got %d from %q with body %q", a.status, a.deployment, a.body)
		}
		counts[a.deployment]++
	}
	// The pick sequence interleaves: 2000 picks hold 100±2 for 5%.
	if g := counts["green"]; g < 98 || g > 102 {
		t.Errorf("green got %d of %d requests, want 100±2", g, n)
	}
	obs := gw.recs.observations("fraud/green")
	if len(obs) != counts["green"] {
		t.Errorf("telemetry has %d green observations, want %d", len(obs), counts["green"])
	}
	for _, o := range obs {
		if o.Status != 200 || o.Override || o.TTFB <= 0 || o.Latency < o.TTFB || o.Now == 0 {
			t.Fatalf("observation %+v: want status 200, no override, 0 < TTFB <= Latency", o)
		}
	}
}

func TestOverride(t *testing.T) { forEachModeTLS(t, testOverride) }

func testOverride(t *testing.T, opts Options) {
	blue, green := named(t, "blue"), named(t, "green")
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", spec.Weights{"blue": 10000},
		dep("blue", blue.URL), dep("green", green.URL)))
	for range 10 {
		a := get(t, gw.url+"/fraud/predict", "X-Model-Deployment", "green")
		if a.status != 200 || a.deployment != "green" || a.body != "green" {
			t.Fatalf("override: got %d from %q (%q), want green", a.status, a.deployment, a.body)
		}
	}
	obs := gw.recs.observations("fraud/green")
	if len(obs) != 10 {
		t.Fatalf("green observations = %d, want 10", len(obs))
	}
	for _, o := range obs {
		if !o.Override {
			t.Errorf("override request recorded with Override=false")
		}
	}
}

func TestSticky(t *testing.T) { forEachModeTLS(t, testSticky) }

func testSticky(t *testing.T, opts Options) {
	blue, green := named(t, "blue"), named(t, "green")
	ep := mkEndpoint(t, "fraud", spec.Weights{"blue": 5000, "green": 5000}, dep("blue", blue.URL), dep("green", green.URL))
	ep.StickyHeader = "X-User-Id"
	gw := modeGateway(t, opts, ep)
	table, err := router.Compile(ep)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		key := fmt.Sprintf("user-%d", i)
		want := ep.Deployments[table.PickKey([]byte(key))].Name
		for range 3 {
			if a := get(t, gw.url+"/fraud/p", "X-User-Id", key); a.deployment != want {
				t.Fatalf("key %s went to %q, want %q", key, a.deployment, want)
			}
		}
	}
}

func TestBodyTooLarge(t *testing.T) { forEachModeTLS(t, testBodyTooLarge) }

func testBodyTooLarge(t *testing.T, opts Options) {
	opts.MaxRequestBytes = 1024
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", named(t, "blue").URL)))
	req, _ := http.NewRequest(http.MethodPost, gw.url+"/fraud/p", strings.NewReader(strings.Repeat("x", 2048)))
	req.Header.Set("X-Request-Id", "big-1")
	a := do(t, req)
	if a.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status = %d, want 413", a.status)
	}
	jsonError(t, a)
	if got := a.header.Get("X-Request-Id"); got != "big-1" {
		t.Errorf("X-Request-Id = %q, want big-1", got)
	}
	// A body under the limit still passes.
	req, _ = http.NewRequest(http.MethodPost, gw.url+"/fraud/p", strings.NewReader(strings.Repeat("x", 512)))
	if a := do(t, req); a.status != 200 {
		t.Errorf("small body: status %d, want 200", a.status)
	}
}

func TestHead(t *testing.T) { forEachModeTLS(t, testHead) }

func testHead(t *testing.T, opts Options) {
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", named(t, "blue").URL)))
	req, _ := http.NewRequest(http.MethodHead, gw.url+"/fraud/p", nil)
	a := do(t, req)
	if a.status != 200 || a.deployment != "blue" || a.body != "" {
		t.Errorf("HEAD: got %d %q body %q", a.status, a.deployment, a.body)
	}
	eventually(t, "HEAD is recorded", func() bool { return len(gw.recs.observations("fraud/blue")) == 1 })
}

// TestHealthReport runs in one mode only: it serves no request, and the
// report is the pools' whatever the engine.
func TestHealthReport(t *testing.T) {
	b1, b2 := named(t, "b1"), named(t, "b2")
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", b1.URL, b2.URL)))
	want := map[string]map[string][]BackendHealth{
		"fraud": {"blue": {{URL: b1.URL, Healthy: true}, {URL: b2.URL, Healthy: true}}},
	}
	if diff := cmp.Diff(want, gw.Health()); diff != "" {
		t.Errorf("Health() mismatch (-want +got):\n%s", diff)
	}
}

// rawGet sends a request on a fresh TCP connection and returns the
// connection and a reader positioned after the response headers.
func rawGet(t *testing.T, gwURL, path string) (net.Conn, *bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(gwURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: test\r\n\r\n", path)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, br, resp
}

func FuzzSplitEndpoint(f *testing.F) {
	for _, s := range []string{"/fraud/v1/models/m:predict?x=1", "/fraud", "/fraud?x", "/", "", "*", "http://h/x", "//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		x := &exchange{}
		name := splitEndpoint([]byte(uri), x)
		if len(uri) == 0 || uri[0] != '/' {
			if name != nil || len(x.rest) != 0 {
				t.Fatalf("splitEndpoint(%q) = %q, rest %q; want nothing", uri, name, x.rest)
			}
			return
		}
		if got := "/" + string(name) + string(x.rest); got != uri {
			t.Fatalf("splitEndpoint(%q) = %q + %q, which rebuilds %q", uri, name, x.rest, got)
		}
		if strings.ContainsAny(string(name), "/?") {
			t.Fatalf("endpoint segment %q of %q holds a separator", name, uri)
		}
		if len(x.rest) > 0 && x.rest[0] != '/' && x.rest[0] != '?' {
			t.Fatalf("rest %q of %q starts with neither / nor ?", x.rest, uri)
		}
	})
}
