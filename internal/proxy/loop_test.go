package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/spec"
)

// Tests of the event loops (loop.go): what they serve themselves, what
// they hand to the goroutine path, and that a client sees the same thing
// either way.

// loopServed returns how many exchanges gw's event loops answered
// themselves.
func loopServed(t testing.TB, gw *gateway) uint64 {
	t.Helper()
	if gw.loops == nil {
		t.Fatal("the gateway runs without event loops")
	}
	return gw.loops.served.Load()
}

// ringSends is how many messages gw's loops sent through their send rings.
func ringSends(t testing.TB, gw *gateway) uint64 {
	t.Helper()
	if gw.loops == nil {
		t.Fatal("the gateway runs without event loops")
	}
	return gw.loops.ringSends.Load()
}

// sendModes are the two ways a loop sends: a batch's messages together
// through io_uring (the default; this machine's kernel has it), or each
// with a system call of its own (Options.DirectSends, and where io_uring
// is missing). Tests of what a send can meet run in both.
var sendModes = []struct {
	name string
	opts Options
}{
	{"ring", Options{}},
	{"direct", Options{DirectSends: true}},
}

// checkSendMode fails unless gw sent through its ring exactly when it has one.
func checkSendMode(t *testing.T, gw *gateway, before uint64) {
	t.Helper()
	n := ringSends(t, gw) - before
	if gw.loops.directSends && n != 0 {
		t.Errorf("%d messages went through a send ring with DirectSends", n)
	}
	if !gw.loops.directSends && n == 0 {
		t.Error("no message went through the loops' send ring")
	}
}

// loopDial opens a raw TCP connection to gw, closed when the test ends,
// with a generous deadline so that a gateway that never answers fails the
// test instead of hanging it.
func loopDial(t testing.TB, gw *gateway) (net.Conn, *bufio.Reader) {
	t.Helper()
	return safetyDial(t, gw, nil)
}

// loopWrite writes raw request bytes in one call.
func loopWrite(t testing.TB, c net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
}

// loopRead reads one response (to a request of the given method) and its
// whole body from br.
func loopRead(t testing.TB, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response to %s: %v", method, err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body of the response to %s: %v", method, err)
	}
	return resp, string(body)
}

// loopEcho is a backend that answers "METHOD URI BODY" and reports what
// it got in X-Got-* headers.
func loopEcho(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Got-Expect", r.Header.Get("Expect"))
		w.Header().Set("X-Got-Transfer-Encoding", strings.Join(r.TransferEncoding, ","))
		w.Header().Set("X-Got-Proto", r.Proto)
		_, _ = fmt.Fprintf(w, "%s %s %s", r.Method, r.RequestURI, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// loopPost sends a POST with body through the shared client.
func loopPost(t testing.TB, url, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	return do(t, req)
}

// loopPattern is n bytes that differ from one position to the next, so
// that a lost, repeated or moved piece of a body shows.
func loopPattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + (i*7+i/251)%26)
	}
	return b
}

func TestLoopServesPlainPostLikeGoroutines(t *testing.T) {
	type got struct {
		method, uri, body, contentType string
		fwdFor, fwdProto, fwdHost      string
		host                           string
	}
	var (
		mu   sync.Mutex
		seen []got
	)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, got{
			method: r.Method, uri: r.RequestURI, body: string(body), contentType: r.Header.Get("Content-Type"),
			fwdFor: r.Header.Get("X-Forwarded-For"), fwdProto: r.Header.Get("X-Forwarded-Proto"),
			fwdHost: r.Header.Get("X-Forwarded-Host"), host: r.Host,
		})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Model-Version", "7")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"predictions":[0.25]}`)
	}))
	t.Cleanup(backend.Close)
	ep := mkEndpoint(t, "fraud", nil, dep("blue", backend.URL+"/v2/"))
	loops := startGateway(t, Options{}, ep)
	direct := startGateway(t, Options{DirectSends: true}, ep)
	goroutines := startGateway(t, Options{GoroutinesOnly: true}, ep)
	if goroutines.loops != nil {
		t.Fatal("GoroutinesOnly gateway has event loops")
	}

	const reqBody = `{"instances":[[1,2,3]]}`
	post := func(gw *gateway) answer {
		req, err := http.NewRequest(http.MethodPost, gw.url+"/fraud/v1/models/m:predict?x=1", strings.NewReader(reqBody))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Host = "models.example.com"
		return do(t, req)
	}

	viaLoop, viaDirect := post(loops), post(direct)
	for _, gw := range []*gateway{loops, direct} {
		if n := loopServed(t, gw); n != 1 {
			t.Errorf("the loops served %d exchanges for one plain POST, want 1", n)
		}
	}
	// The request and the answer went through the ring (or not at all).
	if n := ringSends(t, loops); n != 2 {
		t.Errorf("the loops sent %d messages through their ring, want 2 (request and answer)", n)
	}
	checkSendMode(t, direct, 0)
	viaGoroutine := post(goroutines)

	for name, a := range map[string]answer{"loop": viaLoop, "direct": viaDirect, "goroutine": viaGoroutine} {
		if a.status != http.StatusCreated || a.body != `{"predictions":[0.25]}` {
			t.Errorf("%s: got %d %q, want 201 with the backend's body", name, a.status, a.body)
		}
		if ct := a.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", name, ct)
		}
		if a.deployment != "blue" {
			t.Errorf("%s: X-Model-Deployment %q, want blue", name, a.deployment)
		}
		if a.header.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", name)
		}
	}
	// The client cannot tell the two paths apart (the request ID and the
	// backend's Date aside).
	strip := func(h http.Header) http.Header {
		h = h.Clone()
		h.Del("Date")
		h.Del("X-Request-Id")
		return h
	}
	if diff := cmp.Diff(strip(viaGoroutine.header), strip(viaLoop.header)); diff != "" {
		t.Errorf("response headers differ between the goroutine path and the loop (-goroutine +loop):\n%s", diff)
	}
	if diff := cmp.Diff(strip(viaLoop.header), strip(viaDirect.header)); diff != "" {
		t.Errorf("response headers differ between the loop's send modes (-ring +direct):\n%s", diff)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 {
		t.Fatalf("backend got %d requests, want 3", len(seen))
	}
	want := got{
		method: http.MethodPost, uri: "/v2/v1/models/m:predict?x=1", body: reqBody, contentType: "application/json",
		fwdFor: "127.0.0.1", fwdProto: "http", fwdHost: "models.example.com",
		host: strings.TrimPrefix(backend.URL, "http://"),
	}
	for i, name := range []string{"loop", "direct", "goroutine"} {
		if seen[i] != want {
			t.Errorf("%s: backend got %+v, want %+v", name, seen[i], want)
		}
	}
}

func TestLoopPipelinedRequests(t *testing.T) {
	for _, mode := range sendModes {
		t.Run(mode.name, func(t *testing.T) { testLoopPipelinedRequests(t, mode.opts) })
	}
}

func testLoopPipelinedRequests(t *testing.T, opts Options) {
	gw := startGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", loopEcho(t).URL)))
	c, br := loopDial(t, gw)
	before := loopServed(t, gw)
	// Three requests in one write; the last asks to close the connection.
	loopWrite(t, c, ""+
		"POST /fraud/first HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"a\":[1]}"+
		"POST /fraud/second?q=2 HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n"+
		"POST /fraud/third HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nConnection: close\r\n\r\nthree")
	ids := map[string]bool{}
	for i, want := range []string{"POST /first {\"a\":[1]}", "POST /second?q=2 ", "POST /third three"} {
		resp, body := loopRead(t, br, "")
		if resp.StatusCode != 200 || body != want {
			t.Fatalf("response %d: %d %q, want 200 %q", i+1, resp.StatusCode, body, want)
		}
		if resp.ContentLength != int64(len(want)) {
			t.Errorf("response %d: Content-Length %d, want %d", i+1, resp.ContentLength, len(want))
		}
		id := resp.Header.Get("X-Request-Id")
		if id == "" || ids[id] {
			t.Errorf("response %d: X-Request-Id %q empty or repeated", i+1, id)
		}
		ids[id] = true
	}
	// Connection: close on the last request: the gateway closes after it,
	// with nothing more on the connection.
	if b, err := br.ReadByte(); err == nil {
		t.Errorf("byte %q after the answer to a Connection: close request; want the connection closed", b)
	}
	if n := loopServed(t, gw) - before; n != 3 {
		t.Errorf("the loops served %d of the 3 pipelined requests, want 3", n)
	}
	checkSendMode(t, gw, 0)
}

func TestLoopClientGoneIsRecorded499(t *testing.T) {
	backend, arrived, canceled := cancelWatchingBackend(t)
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))

	c, _ := loopDial(t, gw)
	loopWrite(t, c, "POST /fraud/slow HTTP/1.1\r\nHost: gw\r\nX-Request-Id: gone-1\r\nContent-Length: 2\r\n\r\n{}")
	<-arrived
	c.Close() // the client gives up while the model works
	eventually(t, "the departed client is recorded as 499", func() bool {
		obs := gw.recs.observations("fraud/blue")
		return len(obs) == 1 && obs[0].Status == StatusClientClosed
	})
	if n := gw.recs.inFlight("fraud/blue"); n != 0 {
		t.Errorf("%d requests still in flight after the client left", n)
	}
	// Nobody reads the answer anymore: the backend's connection is closed,
	// so the model sees the request canceled.
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend connection of the abandoned request was not closed")
	}
	before := loopServed(t, gw)
	for range 3 {
		if a := loopPost(t, gw.url+"/fraud/fast", "{}"); a.status != 200 || a.body != "fast" {
			t.Fatalf("after a client left: %d %q, want 200 fast", a.status, a.body)
		}
	}
	if n := loopServed(t, gw) - before; n != 3 {
		t.Errorf("the loops served %d of 3 requests after a client left, want 3", n)
	}
	obs := gw.recs.observations("fraud/blue")
	if len(obs) != 4 || obs[1].Status != 200 || obs[3].Status != 200 {
		t.Errorf("observations %+v, want a 499 then three 200", obs)
	}
}

func TestLoopBackendTimeout504(t *testing.T) {
	backend, arrived, canceled := cancelWatchingBackend(t)
	d := dep("blue", backend.URL)
	d.Timeout = spec.Duration(150 * time.Millisecond)
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, d))

	c, br := loopDial(t, gw)
	loopWrite(t, c, "POST /fraud/slow HTTP/1.1\r\nHost: gw\r\nX-Request-Id: slow-1\r\nContent-Length: 2\r\n\r\n{}")
	resp, body := loopRead(t, br, http.MethodPost)
	<-arrived
	a := answer{status: resp.StatusCode, body: body, header: resp.Header, deployment: resp.Header.Get("X-Model-Deployment")}
	if a.status != http.StatusGatewayTimeout {
		t.Fatalf("slow backend: %d %q, want 504", a.status, a.body)
	}
	if msg := jsonError(t, a); msg != "backend timed out" {
		t.Errorf("error %q, want backend timed out", msg)
	}
	if a.deployment != "blue" || a.header.Get("X-Request-Id") != "slow-1" {
		t.Errorf("504 headers %v, want X-Model-Deployment blue and X-Request-Id slow-1", a.header)
	}
	eventually(t, "the timeout is recorded as 504", func() bool {
		obs := gw.recs.observations("fraud/blue")
		return len(obs) == 1 && obs[0].Status == http.StatusGatewayTimeout
	})
	// The late answer would come on a connection nobody reads: it is closed.
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		t.Fatal("the backend connection of the timed-out request was not closed")
	}
	// The same client connection, and a new one, still get answers.
	before := loopServed(t, gw)
	loopWrite(t, c, "POST /fraud/fast HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
	if resp, body := loopRead(t, br, http.MethodPost); resp.StatusCode != 200 || body != "fast" {
		t.Errorf("same connection after the 504: %d %q, want 200 fast", resp.StatusCode, body)
	}
	if a := loopPost(t, gw.url+"/fraud/fast", "{}"); a.status != 200 || a.body != "fast" {
		t.Errorf("new connection after the 504: %d %q, want 200 fast", a.status, a.body)
	}
	if n := loopServed(t, gw) - before; n != 2 {
		t.Errorf("the loops served %d of 2 requests after the 504, want 2", n)
	}
}

// loopClosingBackend is a raw HTTP backend that answers the first request
// of each connection with a keep-alive answer (Content-Length, no
// Connection: close) and then closes the connection: at once
// (closeAfterAnswer), or when the next request arrives, without answering
// it, as a server whose idle timeout fired just as the request came.
type loopClosingBackend struct {
	ln               net.Listener
	closeAfterAnswer bool
	conns, requests  atomic.Int32
	answered         atomic.Int32
}

func startLoopClosingBackend(t *testing.T, closeAfterAnswer bool) *loopClosingBackend {
	t.Helper()
	b := &loopClosingBackend{closeAfterAnswer: closeAfterAnswer}
	b.ln = listenTCP(t, &b.conns, b.serve)
	return b
}

func (b *loopClosingBackend) url() string { return "http://" + b.ln.Addr().String() }

func (b *loopClosingBackend) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for i := 0; ; i++ {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		b.requests.Add(1)
		if i > 0 {
			return // closed "while idle": the request is lost
		}
		out := fmt.Sprintf("%s %s", req.URL.Path, body)
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(out), out); err != nil {
			return
		}
		b.answered.Add(1)
		if b.closeAfterAnswer {
			return
		}
	}
}

func TestLoopStaleKeepAliveRetried(t *testing.T) {
	for _, tc := range []struct {
		name             string
		closeAfterAnswer bool
	}{
		{"backend closes right after answering", true},
		{"backend closes when the next request arrives", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := startLoopClosingBackend(t, tc.closeAfterAnswer)
			gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", backend.url())))
			// One client connection: its loop holds the idle backend
			// connection the next request is sent on.
			c, br := loopDial(t, gw)
			before := loopServed(t, gw)
			for i := range 4 {
				body := fmt.Sprintf(`{"n":%d}`, i)
				// A POST that reached a backend which then closed is sent
				// again only when the client marked it idempotent
				// (policy.Replayable).
				loopWrite(t, c, fmt.Sprintf("POST /fraud/p%d HTTP/1.1\r\nHost: gw\r\nIdempotency-Key: k%d\r\nContent-Length: %d\r\n\r\n%s", i, i, len(body), body))
				resp, got := loopRead(t, br, http.MethodPost)
				if want := fmt.Sprintf("/p%d %s", i, body); resp.StatusCode != 200 || got != want {
					t.Fatalf("request %d after the backend closed its keep-alive connection: %d %q, want 200 %q", i, resp.StatusCode, got, want)
				}
			}
			if n := loopServed(t, gw) - before; n != 4 {
				t.Errorf("the loops served %d of 4 requests, want 4", n)
			}
			if !tc.closeAfterAnswer {
				// Each request after the first went out on the closed
				// connection first, then again on a new one.
				// The backend counts an answer after writing it, so the counts
				// may trail the client by a moment.
				eventually(t, "3 requests lost on 4 connections (each retried once)", func() bool {
					return backend.requests.Load()-backend.answered.Load() == 3 && backend.conns.Load() == 4
				})
			}
			for _, o := range gw.recs.observations("fraud/blue") {
				if o.Status != 200 {
					t.Errorf("recorded status %d, want only 200", o.Status)
				}
			}
			if h := gw.Health()["fraud"]["blue"][0]; !h.Healthy {
				t.Errorf("backend reported down after stale connections: %+v", h)
			}
		})
	}
}

func TestLoopConnectFailureRetriedOnAnotherBackend(t *testing.T) {
	refused := nettest.ClosedURL(t)
	live := named(t, "live")
	d := dep("blue", refused, live.URL)
	d.MaxFails = 100 // the refusing backend stays in rotation
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, d))
	before := loopServed(t, gw)
	const n = 6
	for i := range n {
		req, _ := http.NewRequest(http.MethodPost, gw.url+"/fraud/p", strings.NewReader(`{"x":1}`))
		if a := do(t, req); a.status != 200 || a.body != "live" {
			t.Fatalf("request %d: %d %q, want 200 from the live backend", i, a.status, a.body)
		}
	}
	if got := loopServed(t, gw) - before; got != n {
		t.Errorf("the loops served %d of %d requests, want all", got, n)
	}
	h := gw.Health()["fraud"]["blue"]
	if !strings.Contains(h[0].LastError, "connection refused") {
		t.Errorf("refusing backend's health %+v: want its connect error (it was tried)", h[0])
	}
	for _, o := range gw.recs.observations("fraud/blue") {
		if o.Status != 200 {
			t.Errorf("recorded status %d, want only 200", o.Status)
		}
	}
}

func TestLoopLargeAndStreamedAnswers(t *testing.T) {
	big := loopPattern(loopMaxBody + 300<<10) // too large for a loop
	pieces := []string{"{\"token\":\"a\"}\n", "{\"token\":\"bc\"}\n", string(loopPattern(40 << 10)), "{\"done\":true}\n"}
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			_, _ = w.Write(big)
		case "/chunked":
			w.Header().Set("Content-Type", "application/x-ndjson")
			for _, p := range pieces {
				_, _ = io.WriteString(w, p)
				w.(http.Flusher).Flush()
			}
		default:
			_, _ = io.WriteString(w, "small "+r.URL.Path)
		}
	}))
	t.Cleanup(backend.Close)
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))

	for _, tc := range []struct {
		path, wantCT, wantTE string
		want                 []byte
	}{
		{"/big", "application/octet-stream", "", big},
		{"/chunked", "application/x-ndjson", "chunked", []byte(strings.Join(pieces, ""))},
	} {
		t.Run(tc.path[1:], func(t *testing.T) {
			// A client of its own: one connection, reused.
			tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1}
			t.Cleanup(tr.CloseIdleConnections)
			cl := &http.Client{Transport: tr}
			// POSTs with a body: the loops serve them (or hand over the
			// answer) rather than handing the request over.
			fetch := func(path string) (*http.Response, []byte, bool) {
				t.Helper()
				var reused bool
				trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused }}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, gw.url+"/fraud"+path, strings.NewReader("{}"))
				resp, err := cl.Do(req)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatalf("GET %s: body: %v", path, err)
				}
				return resp, body, reused
			}

			before := loopServed(t, gw)
			if resp, body, _ := fetch("/before"); resp.StatusCode != 200 || string(body) != "small /before" {
				t.Fatalf("first request: %d %q", resp.StatusCode, body)
			}
			if n := loopServed(t, gw) - before; n != 1 {
				t.Errorf("the loops served %d exchanges for a small answer, want 1", n)
			}
			resp, body, reused := fetch(tc.path)
			if resp.StatusCode != 200 || !bytes.Equal(body, tc.want) {
				t.Fatalf("POST %s: %d with %d bytes, want 200 with the backend's %d bytes intact", tc.path, resp.StatusCode, len(body), len(tc.want))
			}
			if !reused {
				t.Errorf("GET %s did not reuse the keep-alive connection", tc.path)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.wantCT {
				t.Errorf("GET %s: Content-Type %q, want %q", tc.path, ct, tc.wantCT)
			}
			if te := strings.Join(resp.TransferEncoding, ","); te != tc.wantTE {
				t.Errorf("GET %s: Transfer-Encoding %q, want %q", tc.path, te, tc.wantTE)
			}
			if resp.Header.Get("X-Model-Deployment") != "blue" || resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("GET %s: headers %v, want X-Model-Deployment and X-Request-Id", tc.path, resp.Header)
			}
			for i := range 2 {
				resp, body, reused := fetch("/after")
				if resp.StatusCode != 200 || string(body) != "small /after" {
					t.Fatalf("request %d after the large answer: %d %q", i, resp.StatusCode, body)
				}
				if !reused {
					t.Errorf("request %d after GET %s did not reuse the keep-alive connection", i, tc.path)
				}
			}

			// Pipelined behind the large answer: the next request, read by
			// the loop before it handed the connection over, is answered.
			c, br := loopDial(t, gw)
			loopWrite(t, c, "POST /fraud"+tc.path+" HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"+
				"POST /fraud/next HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
			if resp, body := loopRead(t, br, http.MethodPost); resp.StatusCode != 200 || body != string(tc.want) {
				t.Fatalf("pipelined GET %s: %d with %d bytes, want 200 with %d bytes intact", tc.path, resp.StatusCode, len(body), len(tc.want))
			}
			if resp, body := loopRead(t, br, http.MethodPost); resp.StatusCode != 200 || body != "small /next" {
				t.Fatalf("request pipelined behind GET %s: %d %q, want 200 small /next", tc.path, resp.StatusCode, body)
			}
		})
	}
	eventually(t, "every request is recorded", func() bool { return len(gw.recs.observations("fraud/blue")) == 2*6 })
	for _, o := range gw.recs.observations("fraud/blue") {
		if o.Status != 200 {
			t.Errorf("recorded status %d, want only 200", o.Status)
		}
	}
}

func TestLoopHandsOverUnusualRequests(t *testing.T) {
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", loopEcho(t).URL)))

	t.Run("chunked request body", func(t *testing.T) {
		c, br := loopDial(t, gw)
		// A plain request follows in the same write: the bytes the loop
		// read past the chunked request go with the connection.
		loopWrite(t, c, "POST /fraud/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"+
			"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"+
			"GET /fraud/after HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, body := loopRead(t, br, http.MethodPost)
		if resp.StatusCode != 200 || body != "POST /echo hello world" {
			t.Fatalf("chunked POST: %d %q, want 200 with the whole body echoed", resp.StatusCode, body)
		}
		if resp, body := loopRead(t, br, http.MethodGet); resp.StatusCode != 200 || body != "GET /after " {
			t.Fatalf("request after the chunked one: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("Expect 100-continue", func(t *testing.T) {
		c, br := loopDial(t, gw)
		loopWrite(t, c, "POST /fraud/echo HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 7\r\n\r\n")
		interim, err := http.ReadResponse(br, nil)
		if err != nil || interim.StatusCode != http.StatusContinue {
			t.Fatalf("before the body: %v %v, want 100 Continue", interim, err)
		}
		loopWrite(t, c, "payload")
		resp, body := loopRead(t, br, http.MethodPost)
		if resp.StatusCode != 200 || body != "POST /echo payload" {
			t.Fatalf("POST with Expect: %d %q", resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Got-Expect"); got != "" {
			t.Errorf("backend got Expect %q; the gateway answered it", got)
		}
		loopWrite(t, c, "GET /fraud/after HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := loopRead(t, br, http.MethodGet); resp.StatusCode != 200 || body != "GET /after " {
			t.Fatalf("request after the Expect one: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("HEAD", func(t *testing.T) {
		c, br := loopDial(t, gw)
		// Behind a request the loop serves, in one write: its answer goes
		// out before the connection is handed over for HEAD.
		before := loopServed(t, gw)
		loopWrite(t, c, "POST /fraud/first HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\n\r\n1"+
			"HEAD /fraud/echo HTTP/1.1\r\nHost: gw\r\n\r\n"+
			"GET /fraud/after HTTP/1.1\r\nHost: gw\r\n\r\n")
		if resp, body := loopRead(t, br, http.MethodPost); resp.StatusCode != 200 || body != "POST /first 1" {
			t.Fatalf("request before HEAD: %d %q", resp.StatusCode, body)
		}
		if n := loopServed(t, gw) - before; n != 1 {
			t.Errorf("the loops served %d exchanges, want the POST before HEAD", n)
		}
		resp, body := loopRead(t, br, http.MethodHead)
		if resp.StatusCode != 200 || body != "" || resp.Header.Get("X-Model-Deployment") != "blue" {
			t.Fatalf("HEAD: %d %q %v, want 200 without a body", resp.StatusCode, body, resp.Header)
		}
		// No stray body bytes: the next answer is read cleanly.
		if resp, body := loopRead(t, br, http.MethodGet); resp.StatusCode != 200 || body != "GET /after " {
			t.Fatalf("request after HEAD: %d %q", resp.StatusCode, body)
		}
	})

	t.Run("HTTP/1.0", func(t *testing.T) {
		c, br := loopDial(t, gw)
		loopWrite(t, c, "POST /fraud/echo HTTP/1.0\r\nHost: gw\r\nContent-Length: 3\r\n\r\nold")
		resp, body := loopRead(t, br, http.MethodPost)
		if resp.StatusCode != 200 || body != "POST /echo old" || resp.Header.Get("X-Model-Deployment") != "blue" {
			t.Fatalf("HTTP/1.0 POST: %d %q %v", resp.StatusCode, body, resp.Header)
		}
		// An HTTP/1.0 client without keep-alive reads to the close.
		if b, err := br.ReadByte(); err == nil {
			t.Errorf("byte %q after the answer to an HTTP/1.0 request; want the connection closed", b)
		}
	})

	eventually(t, "every request is recorded", func() bool { return len(gw.recs.observations("fraud/blue")) == 8 })
	for _, o := range gw.recs.observations("fraud/blue") {
		if o.Status != 200 {
			t.Errorf("recorded status %d, want only 200", o.Status)
		}
	}
}

func TestLoopShutdownWaitsForInFlight(t *testing.T) {
	arrived, release := make(chan struct{}, 1), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(backend.Close)
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))

	c, br := loopDial(t, gw)
	before := loopServed(t, gw)
	loopWrite(t, c, "POST /fraud/p HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
	<-arrived
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- gw.Shutdown(ctx) }()
	waitListenerClosedWhileInFlight(t, gw, shut)
	close(release)
	if resp, body := loopRead(t, br, http.MethodPost); resp.StatusCode != 200 || body != "done" {
		t.Fatalf("in-flight request: %d %q, want 200 done", resp.StatusCode, body)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Shutdown did not return within its context")
	}
	if n := loopServed(t, gw) - before; n != 1 {
		t.Errorf("the loops served %d exchanges, want the in-flight one", n)
	}
	// Drained: the client's connection is closed once its answer went out.
	if b, err := br.ReadByte(); err == nil {
		t.Errorf("byte %q on the client connection after Shutdown", b)
	}
}

func TestLoopRequestBodies(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// A short answer that proves the body came intact (a long one
		// would be streamed on the goroutine path).
		sum := sha256.Sum256(body)
		_, _ = fmt.Fprintf(w, "%d %x", len(body), sum)
	}))
	t.Cleanup(backend.Close)
	for _, mode := range sendModes {
		t.Run(mode.name, func(t *testing.T) {
			gw := startGateway(t, mode.opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
			testLoopRequestBodies(t, gw)
			checkSendMode(t, gw, 0)
		})
	}
}

// A request body larger than the backend connection takes at once goes on
// through gnet's buffer when the ring's send was short.
func TestLoopRequestBodyToSlowBackend(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(body)
		_, _ = fmt.Fprintf(w, "%d %x", len(body), sum)
	}))
	t.Cleanup(backend.Close)
	// Backend connections with the send buffer of a real network's (on
	// loopback it starts at about a megabyte).
	smallSendBuffer := func(s *Server) {
		s.dial = func(addr string, timeout time.Duration) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout, Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<10) })
			}}
			return d.Dial("tcp", addr)
		}
	}
	body := loopPattern(200 << 10)
	sum := sha256.Sum256(body)
	want := fmt.Sprintf("%d %x", len(body), sum)
	for _, mode := range sendModes {
		t.Run(mode.name, func(t *testing.T) {
			gw := startGatewayWith(t, mode.opts, smallSendBuffer, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
			for i := range 3 {
				if a := loopPost(t, gw.url+"/fraud/p", string(body)); a.status != 200 || a.body != want {
					t.Fatalf("request %d: %d %q, want 200 %q", i+1, a.status, a.body, want)
				}
			}
			if n := loopServed(t, gw); n != 3 {
				t.Errorf("the loops served %d of 3 requests, want 3", n)
			}
			checkSendMode(t, gw, 0)
			if short := gw.loops.ringShort.Load(); !gw.loops.directSends && short == 0 {
				t.Error("no ring send was short: the test did not fill the backend's socket")
			}
		})
	}
}

func testLoopRequestBodies(t *testing.T, gw *gateway) {
	for _, tc := range []struct {
		name     string
		size     int
		wantLoop bool
	}{
		{"empty", 0, true},
		{"larger than a read", 200 << 10, true},
		{"at the loop's limit", loopMaxBody, true},
		{"over the loop's limit", loopMaxBody + 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := loopPattern(tc.size)
			c, br := loopDial(t, gw)
			before := loopServed(t, gw)
			// Headers and body in separate writes: the loop waits for the
			// rest of the body.
			loopWrite(t, c, fmt.Sprintf("POST /fraud/echo HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n", len(body)))
			loopWrite(t, c, string(body))
			loopWrite(t, c, "POST /fraud/after HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nafter")
			resp, got := loopRead(t, br, http.MethodPost)
			sum := sha256.Sum256(body)
			if want := fmt.Sprintf("%d %x", len(body), sum); resp.StatusCode != 200 || got != want {
				t.Fatalf("a %d-byte body: %d %q, want 200 %q", len(body), resp.StatusCode, got, want)
			}
			afterSum := sha256.Sum256([]byte("after"))
			if resp, got := loopRead(t, br, http.MethodPost); resp.StatusCode != 200 || got != fmt.Sprintf("5 %x", afterSum) {
				t.Fatalf("request after the %d-byte body: %d %q", len(body), resp.StatusCode, got)
			}
			if served := loopServed(t, gw) - before; tc.wantLoop && served != 2 {
				t.Errorf("the loops served %d of 2 requests, want 2", served)
			}
		})
	}
}

// A request without a body (GET) is served by a loop too.
func TestLoopServesRequestsWithoutBody(t *testing.T) {
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", named(t, "blue").URL)))
	before := loopServed(t, gw)
	if a := get(t, gw.url+"/fraud/v1/models/m"); a.status != 200 || a.body != "blue" {
		t.Fatalf("GET: %d %q", a.status, a.body)
	}
	if n := loopServed(t, gw) - before; n != 1 {
		t.Errorf("the loops served %d of 1 plain GET, want 1", n)
	}
}

// slowReader dials with a small receive buffer and does not read until told.
func slowReader(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

func bigBackend(t *testing.T, size int, heads chan<- struct{}) *httptest.Server {
	big := loopPattern(size)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.Method == http.MethodHead {
			heads <- struct{}{}
			return
		}
		// Headers and body in one write, so that the answer reaches the
		// gateway whole, as a loop answers it.
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		// A fresh socket's send buffer (16 KiB) would let the answer out
		// in pieces as acks come back, and a loop hands an answer that is
		// not whole over to a goroutine. (The kernel also pushes what it
		// has once a write passes half the peer's window, 32 KiB on a new
		// loopback connection: the tests that need the loop to answer keep
		// their answers below that.)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(4 << 20)
		}
		_, _ = conn.Write(append([]byte(fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", len(big))), big...))
	}))
	t.Cleanup(srv.Close)
	return srv
}

// readPatternAnswer reads answer i from br and fails the test unless its
// body is bigBackend's whole pattern of size bytes.
func readPatternAnswer(t *testing.T, br *bufio.Reader, i, size int) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response %d: %v", i, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, loopPattern(size)) {
		t.Fatalf("response %d: %d of %d bytes, intact %v, %v", i, len(body), size, bytes.Equal(body, loopPattern(size)), err)
	}
	return resp
}

// A Connection: close answer to a slow reader arrives whole before the
// connection closes.
func TestLoopSlowClientGetsWholeAnswerBeforeClose(t *testing.T) {
	const size = 20 << 10 // comes whole in one read: the loop answers it
	gw := startSmallSendBufferGateway(t, Options{}, bigBackend(t, size, nil).URL)
	c, br := slowReader(t, strings.TrimPrefix(gw.url, "http://"))
	loopWrite(t, c, "POST /fraud/big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
	eventually(t, "the loop answered and closed the connection", func() bool {
		return loopServed(t, gw) == 1 && gw.loops.fronts.Load() == 0
	})
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || !bytes.Equal(body, loopPattern(size)) {
		t.Fatalf("answer to a Connection: close request: %d of %d bytes, %v", len(body), size, err)
	}
}

// A client that takes part of a keep-alive answer leaves the loop, in both
// send modes: a goroutine writes the rest and serves its next request.
func TestLoopSlowClientKeepAlive(t *testing.T) {
	const size = 20 << 10
	backend := bigBackend(t, size, nil)
	for _, mode := range sendModes {
		t.Run(mode.name, func(t *testing.T) {
			gw := startSmallSendBufferGateway(t, mode.opts, backend.URL)
			c, br := slowReader(t, strings.TrimPrefix(gw.url, "http://"))
			loopWrite(t, c, "POST /fraud/big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
			eventually(t, "the loop answered and handed the slow client over", func() bool {
				return loopServed(t, gw) == 1 && gw.loops.fronts.Load() == 0
			})
			checkSendMode(t, gw, 0)
			for i := range 2 {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("answer %d: %v", i+1, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || !bytes.Equal(body, loopPattern(size)) {
					t.Fatalf("answer %d: %d of %d bytes, %v", i+1, len(body), size, err)
				}
				if i == 0 {
					// The connection lives on: the goroutine path serves the next request.
					loopWrite(t, c, "POST /fraud/big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
				}
			}
		})
	}
}

// startSmallSendBufferGateway starts a gateway in front of backendURL whose
// client connections have a 4 KiB send buffer, as a connection over a real
// network has (loopback's grows to MBs): an answer of some KiB to a client
// that does not read fits only in part.
func startSmallSendBufferGateway(t *testing.T, opts Options, backendURL string) *gateway {
	t.Helper()
	opts.Logger = testLogger(t)
	s := New(opts)
	if err := s.SetRoutes([]spec.Endpoint{mkEndpoint(t, "fraud", nil, dep("blue", backendURL))}); err != nil {
		t.Fatal(err)
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { _ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<10) })
	}}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return &gateway{Server: s, url: "http://" + ln.Addr().String()}
}

// Answers a slow reader has not taken yet stay whole and in order when the
// connection is handed over for a request the loop does not serve.
func TestLoopHandOverAfterPipelinedAnswersKeepsThemWhole(t *testing.T) {
	const size, n = 48 << 10, 60 // 2.9 MB: more than loopback's send buffer
	heads := make(chan struct{}, 1)
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", bigBackend(t, size, heads).URL)))
	c, br := slowReader(t, strings.TrimPrefix(gw.url, "http://"))
	loopWrite(t, c, strings.Repeat("POST /fraud/big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", n)+
		"HEAD /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n")
	for i := range n {
		readPatternAnswer(t, br, i, size)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	if err != nil {
		t.Fatalf("HEAD after the answers: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Errorf("HEAD after the answers: %d", resp.StatusCode)
	}
	select {
	case <-heads:
	case <-time.After(10 * time.Second):
		t.Error("the HEAD request never reached the backend")
	}
}

// Shutdown does not cut answers already written to a slow reader.
func TestLoopShutdownKeepsAnswersWritten(t *testing.T) {
	const size, n = 20 << 10, 150 // each comes whole in one read: the loop answers it
	gw := startGateway(t, Options{}, mkEndpoint(t, "fraud", nil, dep("blue", bigBackend(t, size, nil).URL)))
	c, br := slowReader(t, strings.TrimPrefix(gw.url, "http://"))
	loopWrite(t, c, strings.Repeat("POST /fraud/big HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", n))
	// The reader is slow: the first answers wait in socket buffers (the
	// rest is written as it reads) when Shutdown begins.
	eventually(t, "the loop answered", func() bool { return loopServed(t, gw) > 0 })
	shut := make(chan error, 1)
	go func() { shut <- gw.Shutdown(context.Background()) }()
	// Every answer the client gets is whole; the one that carries
	// Connection: close (the gateway stops there, as fasthttp's server does
	// on shutdown) is the last, and the client knows to retry the rest.
	for i := range n {
		resp := readPatternAnswer(t, br, i, size)
		if resp.Close {
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the answer with Connection: close: %v, want EOF", err)
			}
			break
		}
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
}

// Shutdown waits for a stream a loop handed over, as for any stream.
func TestLoopShutdownWaitsForHandedOverStream(t *testing.T) {
	for _, goroutinesOnly := range []bool{false, true} {
		t.Run(fmt.Sprint("goroutinesOnly=", goroutinesOnly), func(t *testing.T) {
			release := make(chan struct{})
			backend := holdingBackend(t, "text/event-stream", "data: 1\n\n", "data: 2\n\n", release)
			gw := startGateway(t, Options{GoroutinesOnly: goroutinesOnly}, mkEndpoint(t, "chat", nil, dep("llm", backend.URL)))
			c, br := loopDial(t, gw)
			loopWrite(t, c, "POST /chat/stream HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			readWithin(t, resp.Body, "data: 1\n\n", 10*time.Second)
			shut := make(chan error, 1)
			go func() { shut <- gw.Shutdown(context.Background()) }()
			select {
			case err := <-shut:
				close(release)
				t.Fatalf("Shutdown returned %v while a stream was in flight", err)
			case <-time.After(time.Second):
			}
			close(release)
			if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "data: 2\n\n" {
				t.Errorf("rest %q %v", rest, err)
			}
			if err := <-shut; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// cancelWatchingBackend answers "fast" at once, except /slow, which it holds
// (up to 30 s) until the gateway gives up on it: arrived gets a value when
// /slow came in, canceled when its request was abandoned.
func cancelWatchingBackend(t *testing.T) (backend *httptest.Server, arrived, canceled chan struct{}) {
	arrived, canceled = make(chan struct{}, 1), make(chan struct{}, 1)
	backend = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read the body: net/http watches for the client going away only
		// once it has.
		_, _ = io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			arrived <- struct{}{}
			select {
			case <-r.Context().Done():
				canceled <- struct{}{}
			case <-time.After(30 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "fast")
	}))
	t.Cleanup(backend.Close)
	return backend, arrived, canceled
}
