package proxy

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// rawBackend is a TCP server that answers each request read on a
// connection with the next canned response, byte for byte, so that tests
// control the framing exactly. It counts connections and requests.
type rawBackend struct {
	ln        net.Listener
	responses []string
	next      atomic.Int32
	conns     atomic.Int32
	requests  atomic.Int32
}

func startRawBackend(t *testing.T, responses ...string) *rawBackend {
	t.Helper()
	rb := &rawBackend{responses: responses}
	rb.ln = listenTCP(t, &rb.conns, rb.serve)
	return rb
}

func (rb *rawBackend) url() string { return "http://" + rb.ln.Addr().String() }

func (rb *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		rb.requests.Add(1)
		i := int(rb.next.Add(1) - 1)
		if i >= len(rb.responses) {
			return
		}
		resp := rb.responses[i]
		if _, err := io.WriteString(c, resp); err != nil {
			return
		}
		if strings.Contains(resp, "Connection: close") || !strings.Contains(resp, "Content-Length") && !strings.Contains(resp, "chunked") && !strings.Contains(resp, " 204 ") {
			return // the body ends with the connection
		}
	}
}

func TestUpstreamBodyFramings(t *testing.T) { forEachMode(t, testUpstreamBodyFramings) }

func testUpstreamBodyFramings(t *testing.T, opts Options) {
	big := strings.Repeat("0123456789abcdef", 8<<10) // 128 KiB: more than the read buffer
	rb := startRawBackend(t,
		// Chunked, with a chunk extension and a trailer field.
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"+
			"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: 42\r\n\r\n",
		// Fixed length, larger than the buffer: streamed, not copied.
		"HTTP/1.1 200 OK\r\nContent-Length: "+fmt.Sprint(len(big))+"\r\n\r\n"+big,
		// Empty fixed-length body.
		"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		// No body by status, and an interim 100 Continue before the answer.
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		// Small fixed length: copied whole.
		"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
		// Neither length nor chunked: the body ends when the backend closes.
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
	)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", rb.url())))
	want := []struct {
		status int
		body   string
	}{{200, "hello, world"}, {200, big}, {200, ""}, {204, ""}, {201, "ok"}, {200, "until close"}}
	for i, w := range want {
		a := get(t, gw.url+"/fraud/p")
		if a.status != w.status || a.body != w.body {
			t.Fatalf("response %d: %d %.40q, want %d %.40q", i, a.status, a.body, w.status, w.body)
		}
		if a.header.Get("X-Checksum") != "" {
			t.Errorf("response %d: a trailer of the backend became a header", i)
		}
	}
	// Every body was read exactly to its end: the first five responses came
	// on one keep-alive connection.
	if n := rb.conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections for %d requests, want 1", n, rb.requests.Load())
	}
	obs := gw.recs.observations("fraud/blue")
	if len(obs) != len(want) {
		t.Fatalf("%d observations, want %d", len(obs), len(want))
	}
	for i, o := range obs {
		if o.Status != want[i].status {
			t.Errorf("observation %d: status %d, want %d", i, o.Status, want[i].status)
		}
	}
}

func TestUpstreamTruncatedBodyIsAFailure(t *testing.T) {
	forEachMode(t, testUpstreamTruncatedBodyIsAFailure)
}

func testUpstreamTruncatedBodyIsAFailure(t *testing.T, opts Options) {
	// The backend promises 100 bytes, sends 5 and closes: the client must
	// not get a short body presented as complete, and telemetry records a
	// gateway error.
	rb := startRawBackend(t, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nConnection: close\r\n\r\nhello")
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", rb.url())))
	resp, err := client.Get(gw.url + "/fraud/p")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("truncated body read without error")
	}
	eventually(t, "the request to be recorded", func() bool { return len(gw.recs.observations("fraud/blue")) == 1 })
	if o := gw.recs.observations("fraud/blue")[0]; o.Status != http.StatusBadGateway {
		t.Errorf("recorded status %d, want 502", o.Status)
	}
}

func TestUpstreamHTTPS(t *testing.T) { forEachMode(t, testUpstreamHTTPS) }

func testUpstreamHTTPS(t *testing.T, opts Options) {
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "over tls "+r.Host)
	}))
	var conns atomic.Int32
	backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	backend.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshake below
	backend.StartTLS()
	t.Cleanup(backend.Close)
	roots := x509.NewCertPool()
	roots.AddCert(backend.Certificate())
	gw := modeGatewayWith(t, opts, func(s *Server) { s.upstreamRoots = roots },
		mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
	host := strings.TrimPrefix(backend.URL, "https://")
	for range 3 {
		if a := get(t, gw.url+"/fraud/p"); a.status != 200 || a.body != "over tls "+host {
			t.Fatalf("https backend: %d %q", a.status, a.body)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d TLS connections for 3 requests, want 1 kept alive", n)
	}

	// Without the test CA the certificate is not trusted: 502, not a
	// silent insecure connection.
	untrusted := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
	if a := get(t, untrusted.url+"/fraud/p"); a.status != http.StatusBadGateway {
		t.Errorf("untrusted certificate: %d %q, want 502", a.status, a.body)
	}
}

func TestUpstreamConnectionLimitQueues(t *testing.T) {
	forEachMode(t, testUpstreamConnectionLimitQueues)
}

func testUpstreamConnectionLimitQueues(t *testing.T, opts Options) {
	// With one connection allowed, a second request waits for the first
	// one's connection instead of failing or opening another.
	release := make(chan struct{})
	var conns atomic.Int32
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	}))
	backend.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
	pool := gw.pools["fraud/blue"].backends[0].conns
	pool.mu.Lock() // the event loops read it on their own threads
	pool.max = 1
	pool.mu.Unlock()

	answers := make(chan answer, 2)
	go func() { answers <- get(t, gw.url+"/fraud/slow") }()
	eventually(t, "the slow request to hold the connection", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return pool.open == 1
	})
	go func() { answers <- get(t, gw.url+"/fraud/fast") }()
	eventually(t, "the second request to queue", func() bool {
		pool.mu.Lock()
		defer pool.mu.Unlock()
		return len(pool.waiters) == 1
	})
	close(release)
	got := map[string]int{}
	for range 2 {
		a := <-answers
		got[a.body] = a.status
	}
	if got["/slow"] != 200 || got["/fast"] != 200 {
		t.Errorf("answers %v, want both 200", got)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("backend saw %d connections, want 1", n)
	}
}

// chunkedReader returns a bodyReader over a chunked body in buf, as the
// proxy reads it after the response headers.
func chunkedReader(buf []byte) *bodyReader {
	c := &upConn{br: bufio.NewReaderSize(bytes.NewReader(buf), 64)}
	c.body = bodyReader{c: c, mode: bodyChunked}
	return &c.body
}

func TestChunkedBodyLeavesTheNextResponse(t *testing.T) {
	var enc bytes.Buffer
	w := httputil.NewChunkedWriter(&enc)
	for _, piece := range []string{"a", strings.Repeat("b", 300), "", "cd"} {
		_, _ = io.WriteString(w, piece)
	}
	_ = w.Close()
	enc.WriteString("Trailer-Field: 1\r\n\r\nHTTP/1.1 200 OK\r\n")
	b := chunkedReader(enc.Bytes())
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "a"+strings.Repeat("b", 300)+"cd" {
		t.Fatalf("decoded %q, %v", got, err)
	}
	rest, _ := io.ReadAll(b.c.br)
	if !b.done || string(rest) != "HTTP/1.1 200 OK\r\n" {
		t.Errorf("done %v, left on the connection %q; want the next response intact", b.done, rest)
	}
}

func TestChunkedBodyErrors(t *testing.T) {
	for name, body := range map[string]string{
		"bad size":        "zz\r\nhello\r\n0\r\n\r\n",
		"no CRLF":         "5\r\nhelloX\r\n0\r\n\r\n",
		"size too large":  "1000000000000000\r\n",
		"cut in data":     "a\r\nhello",
		"cut in trailers": "0\r\nX: 1\r\n",
		"empty size":      "\r\n",
	} {
		got, err := io.ReadAll(chunkedReader([]byte(body)))
		if err == nil {
			t.Errorf("%s: decoded %q without error", name, got)
		}
	}
}

func FuzzChunkedBody(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n"))
	f.Add([]byte("ffffffff\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		b := chunkedReader(body)
		got, err := io.ReadAll(b)
		if err == nil && !b.done {
			t.Fatalf("EOF before the last chunk")
		}
		if err != nil {
			return
		}
		// Whatever decodes must re-encode to a body that decodes the same.
		var enc bytes.Buffer
		w := httputil.NewChunkedWriter(&enc)
		_, _ = w.Write(got)
		_ = w.Close()
		enc.WriteString("\r\n")
		again, err := io.ReadAll(chunkedReader(enc.Bytes()))
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("re-encoded body decoded to %q, %v; want %q", again, err, got)
		}
	})
}

func TestUpstreamConnectionLimitShedsAfterTheTimeout(t *testing.T) {
	forEachMode(t, testUpstreamConnectionLimitShedsAfterTheTimeout)
}

func testUpstreamConnectionLimitShedsAfterTheTimeout(t *testing.T, opts Options) {
	// The only connection is held by a streamed answer (its headers came, so
	// the deployment timeout no longer applies to it). A second request
	// waits for a connection for the deployment timeout, then gets 503 with
	// a message that says why, and is recorded.
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: first\n\n")
			w.(http.Flusher).Flush()
			<-release
			_, _ = io.WriteString(w, "data: last\n\n")
			return
		}
		_, _ = io.WriteString(w, "fast")
	}))
	t.Cleanup(backend.Close)
	d := dep("blue", backend.URL)
	d.Timeout = spec.Duration(200 * time.Millisecond)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, d))
	pool := gw.pools["fraud/blue"].backends[0].conns
	pool.mu.Lock() // the event loops read it on their own threads
	pool.max = 1
	pool.mu.Unlock()

	resp, err := client.Get(gw.url + "/fraud/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	first := make([]byte, len("data: first\n\n"))
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first event: %v", err)
	}

	a := get(t, gw.url+"/fraud/fast")
	if a.status != http.StatusServiceUnavailable || jsonError(t, a) != "backend connection limit reached" {
		t.Errorf("while the only connection streams: %d %q, want 503 backend connection limit reached", a.status, a.body)
	}
	close(release)
	if rest, err := io.ReadAll(resp.Body); err != nil || string(rest) != "data: last\n\n" {
		t.Errorf("the streamed answer after the shed request: %q, %v", rest, err)
	}
	// Once the stream ended its connection serves again.
	if a := get(t, gw.url+"/fraud/fast"); a.status != 200 || a.body != "fast" {
		t.Errorf("after the stream: %d %q", a.status, a.body)
	}
	eventually(t, "all three requests recorded", func() bool { return len(gw.recs.observations("fraud/blue")) == 3 })
	statuses := map[int]int{}
	for _, o := range gw.recs.observations("fraud/blue") {
		statuses[o.Status]++
	}
	if statuses[200] != 2 || statuses[503] != 1 {
		t.Errorf("recorded statuses %v, want two 200 and one 503", statuses)
	}
}
