package proxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/shadow/compare"
	"github.com/modelgate/modelgate/internal/shadow/mirrored"
	"github.com/modelgate/modelgate/internal/spec"
)

// fakeMirror records every submitted copy. Get returns fresh copies;
// onSubmit, when set, runs first in Submit.
type fakeMirror struct {
	onSubmit func(*mirrored.Copy)
	mu       sync.Mutex
	copies   []*mirrored.Copy
}

func (m *fakeMirror) Get() *mirrored.Copy { return new(mirrored.Copy) }

func (m *fakeMirror) Submit(c *mirrored.Copy) bool {
	if m.onSubmit != nil {
		m.onSubmit(c)
	}
	m.mu.Lock()
	m.copies = append(m.copies, c)
	m.mu.Unlock()
	return true
}

func (m *fakeMirror) submitted() []*mirrored.Copy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*mirrored.Copy(nil), m.copies...)
}

// waitCopies waits until n copies were submitted and returns them.
func (m *fakeMirror) waitCopies(t testing.TB, n int) []*mirrored.Copy {
	t.Helper()
	var got []*mirrored.Copy
	eventually(t, fmt.Sprintf("%d copies are submitted", n), func() bool {
		got = m.submitted()
		return len(got) >= n
	})
	if len(got) != n {
		t.Fatalf("%d copies submitted, want %d", len(got), n)
	}
	return got
}

// settled waits until no copy is parked or being handed off on gw, and
// returns every copy submitted. Call it once every live answer was read:
// a mirrored request is parked before its answer is flushed.
func (m *fakeMirror) settled(t testing.TB, gw *gateway) []*mirrored.Copy {
	t.Helper()
	eventually(t, "every copy is handed off", func() bool { return gw.nparked.Load() == 0 && gw.replying.Load() == 0 })
	return m.submitted()
}

// headerMap turns a copy's name, value pairs into a header.
func headerMap(t testing.TB, kv []string) http.Header {
	t.Helper()
	if len(kv)%2 != 0 {
		t.Fatalf("headers %q are not name, value pairs", kv)
	}
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// withMirror sets the mirror percents of ep and, when capBytes > 0, its
// capture cap.
func withMirror(ep spec.Endpoint, mirror spec.Weights, capBytes int64) spec.Endpoint {
	ep.Mirror = mirror
	if capBytes > 0 {
		ep.Compare = &spec.Compare{MaxBodyBytes: capBytes}
	}
	return ep
}

func TestMirrorCopy(t *testing.T) { forEachMode(t, testMirrorCopy) }

func testMirrorCopy(t *testing.T, opts Options) {
	backend := func(name string) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if r.Method == http.MethodDelete {
				w.WriteHeader(http.StatusNoContent)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			fmt.Fprintf(w, `{"from":%q,"got":%q}`, name, body)
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	blue, green := backend("blue"), backend("green")
	m := &fakeMirror{}
	opts.Mirror = m
	gw := modeGateway(t, opts, withMirror(
		mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, dep("blue", blue.URL), dep("green", green.URL)),
		spec.Weights{"green": 10000}, 0))

	tests := []struct {
		name, method, path, body string
		wantURI                  string
		wantStatus               int
		wantType                 string
	}{
		{"path and query", http.MethodPost, "/fraud/v1/models/m:predict?x=1&y=%2F", `{"instances":[[1,2]]}`,
			"/v1/models/m:predict?x=1&y=%2F", http.StatusCreated, "application/json"},
		{"query only", http.MethodPost, "/fraud?q=1", `{}`, "/?q=1", http.StatusCreated, "application/json"},
		{"endpoint root", http.MethodGet, "/fraud", "", "/", http.StatusCreated, "application/json"},
		{"no body answer", http.MethodDelete, "/fraud/item/7", "", "/item/7", http.StatusNoContent, ""},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, gw.url+tc.path, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("Authorization", "Bearer s3cret")
			req.Header.Set("X-Tenant", "acme")
			req.Header.Set("X-Forwarded-For", "10.1.2.3")
			req.Header.Set("X-Model-Shadow", "true")
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "1")
			req.Header.Set("Te", "trailers")
			req.Header.Set("Accept-Encoding", "gzip")
			a := do(t, req)
			if a.status != tc.wantStatus || a.deployment != "blue" {
				t.Fatalf("live answer %d from %q, want %d from blue", a.status, a.deployment, tc.wantStatus)
			}
			c := m.waitCopies(t, i+1)[i]
			want := &mirrored.Copy{
				Endpoint: "fraud", Deployment: "green", LiveDeployment: "blue",
				RequestID: a.header.Get("X-Request-Id"),
				Method:    tc.method,
				URI:       tc.wantURI,
				Body:      []byte(tc.body),
				Live:      compare.Response{Status: tc.wantStatus, ContentType: tc.wantType, Body: []byte(a.body)},
			}
			cmpOpts := cmp.Options{
				cmpopts.IgnoreFields(mirrored.Copy{}, "Headers", "LiveLatency", "LiveTTFB", "Start"),
				cmpopts.EquateEmpty(),
			}
			if diff := cmp.Diff(want, c, cmpOpts); diff != "" {
				t.Errorf("copy mismatch (-want +got):\n%s", diff)
			}
			h := headerMap(t, c.Headers)
			for name, v := range map[string]string{
				"Content-Type": "application/json", "Accept": "application/json",
				"Authorization": "Bearer s3cret", "X-Tenant": "acme",
			} {
				if got := h.Get(name); got != v {
					t.Errorf("copy header %s = %q, want %q", name, got, v)
				}
			}
			for _, name := range []string{"Host", "Content-Length", "X-Forwarded-For", "X-Forwarded-Proto",
				"X-Forwarded-Host", "X-Request-Id", "X-Model-Shadow", "X-Model-Deployment", "Connection", "X-Hop", "Te", "Accept-Encoding"} {
				if v, ok := h[name]; ok {
					t.Errorf("copy carries header %s: %q", name, v)
				}
			}
			if c.LiveTTFB <= 0 || c.LiveLatency < c.LiveTTFB {
				t.Errorf("LiveTTFB %v, LiveLatency %v: want 0 < TTFB <= latency", c.LiveTTFB, c.LiveLatency)
			}
			if c.Start.IsZero() || time.Since(c.Start) > time.Minute {
				t.Errorf("Start = %v", c.Start)
			}
		})
	}
}

func TestMirrorSelection(t *testing.T) { forEachMode(t, testMirrorSelection) }

func testMirrorSelection(t *testing.T, opts Options) {
	blue, green, red := named(t, "blue"), named(t, "green"), named(t, "red")
	deps := []spec.Deployment{dep("blue", blue.URL), dep("green", green.URL), dep("red", red.URL)}

	t.Run("override is not mirrored", func(t *testing.T) {
		m := &fakeMirror{}
		opts.Mirror = m
		gw := modeGateway(t, opts, withMirror(
			mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, deps...), spec.Weights{"green": 10000, "red": 10000}, 0))
		for _, d := range []string{"blue", "green"} {
			if a := get(t, gw.url+"/fraud/p", "X-Model-Deployment", d); a.status != 200 || a.deployment != d {
				t.Fatalf("override to %s: got %d from %q", d, a.status, a.deployment)
			}
		}
		get(t, gw.url+"/fraud/p")
		cs := m.settled(t, gw)
		if len(cs) != 2 {
			t.Fatalf("%d copies, want 2 (green and red, of the one split request)", len(cs))
		}
		for _, c := range cs {
			if c.LiveDeployment != "blue" || c.RequestID == "" {
				t.Errorf("copy to %s of live %s: want only the split request's copies", c.Deployment, c.LiveDeployment)
			}
		}
	})

	t.Run("not to the live deployment", func(t *testing.T) {
		m := &fakeMirror{}
		opts.Mirror = m
		gw := modeGateway(t, opts, withMirror(
			mkEndpoint(t, "fraud", spec.Weights{"blue": 5000, "green": 5000}, deps...), spec.Weights{"green": 10000}, 0))
		const n = 200
		onBlue := 0
		for range n {
			if get(t, gw.url+"/fraud/p").deployment == "blue" {
				onBlue++
			}
		}
		cs := m.settled(t, gw)
		if len(cs) != onBlue {
			t.Errorf("%d copies, want one per request served by blue (%d)", len(cs), onBlue)
		}
		for _, c := range cs {
			if c.Deployment != "green" || c.LiveDeployment != "blue" {
				t.Errorf("copy to %s of a request served by %s", c.Deployment, c.LiveDeployment)
			}
		}
	})

	t.Run("two shadows at 50%", func(t *testing.T) {
		m := &fakeMirror{}
		opts.Mirror = m
		gw := modeGateway(t, opts, withMirror(
			mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, deps...), spec.Weights{"green": 5000, "red": 5000}, 0))
		const n = 2000
		for range n {
			get(t, gw.url+"/fraud/p")
		}
		cs := m.settled(t, gw)
		count := map[string]int{}
		perRequest := map[string]map[string]*mirrored.Copy{}
		for _, c := range cs {
			count[c.Deployment]++
			if perRequest[c.RequestID] == nil {
				perRequest[c.RequestID] = map[string]*mirrored.Copy{}
			}
			perRequest[c.RequestID][c.Deployment] = c
		}
		for _, d := range []string{"green", "red"} {
			if got := count[d]; got < n/2-3 || got > n/2+3 {
				t.Errorf("%s got %d copies of %d requests, want %d±3", d, got, n, n/2)
			}
		}
		both := 0
		for _, p := range perRequest {
			if g, r := p["green"], p["red"]; g != nil && r != nil {
				both++
				// One capture, copied into each Copy: equal, not shared.
				if string(g.Live.Body) != string(r.Live.Body) || &g.Live.Body[0] == &r.Live.Body[0] {
					t.Fatalf("copies of one request: live bodies %q and %q, shared %v", g.Live.Body, r.Live.Body, &g.Live.Body[0] == &r.Live.Body[0])
				}
			}
		}
		// Independent samples: a quarter of requests go to both.
		if both < n/4-50 || both > n/4+50 {
			t.Errorf("%d of %d requests were copied to both shadows, want %d±50", both, n, n/4)
		}
	})

	t.Run("sticky key", func(t *testing.T) {
		m := &fakeMirror{}
		ep := withMirror(mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, deps...), spec.Weights{"green": 5000}, 0)
		ep.StickyHeader = "X-User-Id"
		opts.Mirror = m
		gw := modeGateway(t, opts, ep)
		const keys, repeats = 40, 3
		for i := range keys {
			for range repeats {
				get(t, gw.url+"/fraud/p", "X-User-Id", fmt.Sprintf("user-%d", i))
			}
		}
		perKey := map[string]int{}
		mirroredKeys := 0
		for _, c := range m.settled(t, gw) {
			h := headerMap(t, c.Headers)
			perKey[h.Get("X-User-Id")]++
		}
		for k, n := range perKey {
			if n != repeats {
				t.Errorf("key %s mirrored %d of %d times, want always or never", k, n, repeats)
			}
			mirroredKeys++
		}
		if mirroredKeys < keys/4 || mirroredKeys > 3*keys/4 {
			t.Errorf("%d of %d keys mirrored at 50%%", mirroredKeys, keys)
		}
	})
}

func TestMirrorStreamCapturedWhole(t *testing.T) { forEachMode(t, testMirrorStreamCapturedWhole) }

func testMirrorStreamCapturedWhole(t *testing.T, opts Options) {
	const first, rest = "data: {\"token\":\"Hel\"}\n\n", "data: {\"token\":\"lo\"}\n\ndata: [DONE]\n\n"
	release := make(chan struct{})
	live := holdingBackend(t, "text/event-stream", first, rest, release)
	m := &fakeMirror{}
	opts.Mirror = m
	gw := modeGateway(t, opts, withMirror(
		mkEndpoint(t, "chat", spec.Weights{"blue": 10000}, dep("blue", live.URL), dep("green", named(t, "green").URL)),
		spec.Weights{"green": 10000}, 0))

	resp, err := client.Get(gw.url + "/chat/v1/chat/completions")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The first chunk reaches the client while the backend still holds
	// the rest: capturing does not buffer the stream.
	readWithin(t, resp.Body, first, 10*time.Second)
	if n := len(m.submitted()); n != 0 {
		t.Fatalf("%d copies submitted before the live stream ended", n)
	}
	close(release)
	got, err := io.ReadAll(resp.Body)
	if err != nil || string(got) != rest {
		t.Fatalf("rest = %q, %v; want %q", got, err, rest)
	}
	c := m.waitCopies(t, 1)[0]
	want := compare.Response{Status: 200, ContentType: "text/event-stream", Body: []byte(first + rest)}
	if diff := cmp.Diff(want, c.Live); diff != "" {
		t.Errorf("captured live answer mismatch (-want +got):\n%s", diff)
	}
	if c.LiveTTFB <= 0 || c.LiveLatency <= c.LiveTTFB {
		t.Errorf("LiveTTFB %v, LiveLatency %v: want the stream's end after its first byte", c.LiveTTFB, c.LiveLatency)
	}
}

func TestMirrorCaptureCap(t *testing.T) { forEachMode(t, testMirrorCaptureCap) }

func testMirrorCaptureCap(t *testing.T, opts Options) {
	const capBytes = 16
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	t.Cleanup(echo.Close)
	m := &fakeMirror{}
	opts.Mirror = m
	gw := modeGateway(t, opts, withMirror(
		mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, dep("blue", echo.URL), dep("green", echo.URL)),
		spec.Weights{"green": 10000}, capBytes))
	tests := []struct {
		name      string
		body      string
		truncated bool
	}{
		{"under the cap", strings.Repeat("a", capBytes-1), false},
		{"at the cap", strings.Repeat("b", capBytes), false},
		{"over the cap", strings.Repeat("c", capBytes+1), true},
		{"far over the cap", strings.Repeat("d", 100*capBytes), true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, gw.url+"/fraud/echo", strings.NewReader(tc.body))
			if a := do(t, req); a.status != 200 || a.body != tc.body {
				t.Fatalf("live answer %d with %d bytes, want the whole %d-byte echo", a.status, len(a.body), len(tc.body))
			}
			c := m.waitCopies(t, i+1)[i]
			want := tc.body[:min(len(tc.body), capBytes)]
			if string(c.Body) != want || c.BodyTruncated != tc.truncated {
				t.Errorf("request body %q, truncated %v; want %q, %v", c.Body, c.BodyTruncated, want, tc.truncated)
			}
			if string(c.Live.Body) != want || c.Live.Truncated != tc.truncated {
				t.Errorf("live body %q, truncated %v; want %q, %v", c.Live.Body, c.Live.Truncated, want, tc.truncated)
			}
		})
	}
}

// TestMirrorSubmitAfterLiveAnswer blocks Submit until the client has read
// the whole live answer: if a copy were handed off before the answer was
// flushed, the client would never get it.
func TestMirrorSubmitAfterLiveAnswer(t *testing.T) { forEachMode(t, testMirrorSubmitAfterLiveAnswer) }

func testMirrorSubmitAfterLiveAnswer(t *testing.T, opts Options) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"known length", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"predictions":[1]}`)
		}},
		{"chunked stream", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			for i := range 3 {
				fmt.Fprintf(w, "data: %d\n\n", i)
				w.(http.Flusher).Flush()
			}
		}},
		{"no body", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			live := httptest.NewServer(tc.handler)
			t.Cleanup(live.Close)
			read := make(chan struct{})
			var once sync.Once
			t.Cleanup(func() { once.Do(func() { close(read) }) })
			m := &fakeMirror{onSubmit: func(*mirrored.Copy) { <-read }}
			opts.Mirror = m
			gw := modeGateway(t, opts, withMirror(
				mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, dep("blue", live.URL), dep("green", live.URL)),
				spec.Weights{"green": 10000}, 0))

			got := make(chan answer, 1)
			go func() { got <- get(t, gw.url+"/fraud/p") }()
			select {
			case a := <-got:
				if a.status/100 != 2 {
					t.Fatalf("live answer %d %q", a.status, a.body)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the live answer did not arrive while Submit was blocked: the copy was handed off before the answer was written")
			}
			once.Do(func() { close(read) })
			m.waitCopies(t, 1)
		})
	}
}

func TestMirrorLiveFailureNotSubmitted(t *testing.T) {
	forEachMode(t, testMirrorLiveFailureNotSubmitted)
}

func testMirrorLiveFailureNotSubmitted(t *testing.T, opts Options) {
	cutShort := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "only part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	}))
	t.Cleanup(cutShort.Close)
	tests := []struct {
		name    string
		backend string
	}{
		{"refused before headers (502)", nettest.ClosedURL(t)},
		{"body cut short (502 after headers)", cutShort.URL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &fakeMirror{}
			opts.Mirror = m
			gw := modeGateway(t, opts, withMirror(
				mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, dep("blue", tc.backend), dep("green", named(t, "green").URL)),
				spec.Weights{"green": 10000}, 0))
			resp, err := client.Get(gw.url + "/fraud/p")
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode < 500 {
					t.Fatalf("live request got %d, want a failure", resp.StatusCode)
				}
			}
			// The decision is made before the client sees the failure (the
			// error answer or the cut connection): nothing is parked.
			eventually(t, "the failure is recorded", func() bool { return len(gw.recs.observations("fraud/blue")) == 1 })
			if n := len(m.submitted()); n != 0 || gw.nparked.Load() != 0 {
				t.Errorf("%d copies submitted, %d parked for a failed live request, want none", n, gw.nparked.Load())
			}
		})
	}
}

func TestMirrorNilOrZero(t *testing.T) { forEachMode(t, testMirrorNilOrZero) }

func testMirrorNilOrZero(t *testing.T, opts Options) {
	blue, green := named(t, "blue"), named(t, "green")
	ep := mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, dep("blue", blue.URL), dep("green", green.URL))
	t.Run("nil Mirror", func(t *testing.T) {
		gw := modeGateway(t, opts, withMirror(ep, spec.Weights{"green": 10000}, 0))
		if a := get(t, gw.url+"/fraud/p"); a.status != 200 {
			t.Fatalf("status %d", a.status)
		}
	})
	t.Run("0%", func(t *testing.T) {
		m := &fakeMirror{}
		opts.Mirror = m
		gw := modeGateway(t, opts, withMirror(ep, spec.Weights{"green": 0}, 0))
		for range 20 {
			get(t, gw.url+"/fraud/p")
		}
		if n := len(m.submitted()); n != 0 || gw.nparked.Load() != 0 {
			t.Errorf("%d copies submitted, %d parked with a 0%% mirror", n, gw.nparked.Load())
		}
	})
}

func TestMirrorShutdownHandsOffParked(t *testing.T) { forEachMode(t, testMirrorShutdownHandsOffParked) }

func testMirrorShutdownHandsOffParked(t *testing.T, opts Options) {
	// A copy parked on a connection that closes instead of going idle
	// (Connection: close) is handed off too.
	m := &fakeMirror{}
	opts.Mirror = m
	gw := modeGateway(t, opts, withMirror(
		mkEndpoint(t, "fraud", spec.Weights{"blue": 10000}, dep("blue", named(t, "blue").URL), dep("green", named(t, "green").URL)),
		spec.Weights{"green": 10000}, 0))
	req, _ := http.NewRequest(http.MethodGet, gw.url+"/fraud/p", nil)
	req.Close = true
	if a := do(t, req); a.status != 200 {
		t.Fatalf("status %d", a.status)
	}
	m.waitCopies(t, 1)
	eventually(t, "nothing stays parked", func() bool { return gw.nparked.Load() == 0 })
}

// discardMirror pools its copies like the shadow manager does, and drops
// them at once.
type discardMirror struct{ pool sync.Pool }

func (m *discardMirror) Get() *mirrored.Copy {
	if c, ok := m.pool.Get().(*mirrored.Copy); ok {
		return c
	}
	return new(mirrored.Copy)
}

func (m *discardMirror) Submit(c *mirrored.Copy) bool {
	c.Reset()
	m.pool.Put(c)
	return true
}

// BenchmarkProxyMirror is BenchmarkProxy with a Mirror: "off" has none,
// "0%" a mirror percent of zero, "100%" copies every request to green and
// "2x100%" to green and red (one capture, two copies).
func BenchmarkProxyMirror(b *testing.B) {
	for _, tc := range []struct {
		name   string
		mirror Mirror
		pct    spec.Weights
	}{
		{"off", nil, spec.Weights{"green": 10000}},
		{"0%", &discardMirror{}, spec.Weights{"green": 0}},
		{"100%", &discardMirror{}, spec.Weights{"green": 10000}},
		{"2x100%", &discardMirror{}, spec.Weights{"green": 10000, "red": 10000}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ep := benchEndpoint()
			ep.Deployments = append(ep.Deployments, dep("red", "http://red:9003"))
			ep.Traffic = spec.Weights{"blue": 10000}
			ep = ep.WithDefaults()
			ep.Mirror = tc.pct
			benchProxyWith(b, Options{Mirror: tc.mirror}, predict, ep, func(r *fasthttp.Response) bool {
				return r.StatusCode() == 200
			})
		})
	}
}
