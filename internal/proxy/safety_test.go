package proxy

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/spec"
)

// Black-box regression tests of defects found in a safety review. Every
// test runs against each request engine (forEachMode); clients and, where
// the defect needs exact bytes, backends are raw TCP sockets.

// ---- raw backends ----

// safetyReq is a request as a raw backend received it.
type safetyReq struct {
	conn, n               int // connection number (from 1), request number on it (from 1)
	head                  string
	method, target, proto string
	header                [][2]string // in order, names as sent
	trailer               [][2]string
	body                  []byte
}

// values returns the values of every header line named name (any case).
func (r *safetyReq) values(name string) []string {
	var vs []string
	for _, kv := range r.header {
		if strings.EqualFold(kv[0], name) {
			vs = append(vs, kv[1])
		}
	}
	return vs
}

func (r *safetyReq) get(name string) string {
	if vs := r.values(name); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// path is the request target without its query.
func (r *safetyReq) path() string {
	p, _, _ := strings.Cut(r.target, "?")
	return p
}

func safetyFields(br *bufio.Reader, head *strings.Builder) ([][2]string, error) {
	var fields [][2]string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if head != nil {
			head.WriteString(line)
		}
		l := strings.TrimRight(line, "\r\n")
		if l == "" {
			return fields, nil
		}
		name, value, _ := strings.Cut(l, ":")
		fields = append(fields, [2]string{name, strings.TrimSpace(value)})
	}
}

// safetyReadReq reads one request (head, then a Content-Length or chunked
// body) as it is on the wire.
func safetyReadReq(br *bufio.Reader) (*safetyReq, error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return nil, err
	}
	r := &safetyReq{}
	parts := strings.SplitN(strings.TrimRight(line, "\r\n"), " ", 3)
	if len(parts) == 3 {
		r.method, r.target, r.proto = parts[0], parts[1], parts[2]
	}
	var head strings.Builder
	head.WriteString(line)
	if r.header, err = safetyFields(br, &head); err != nil {
		return nil, err
	}
	r.head = head.String()
	switch {
	case strings.EqualFold(r.get("Transfer-Encoding"), "chunked"):
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return nil, err
			}
			size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
			if err != nil {
				return nil, fmt.Errorf("chunk size %q: %w", line, err)
			}
			if size == 0 {
				r.trailer, err = safetyFields(br, nil)
				return r, err
			}
			chunk := make([]byte, size+2)
			if _, err := io.ReadFull(br, chunk); err != nil {
				return nil, err
			}
			r.body = append(r.body, chunk[:size]...)
		}
	case r.get("Content-Length") != "":
		n, err := strconv.Atoi(r.get("Content-Length"))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("content-length %q", r.get("Content-Length"))
		}
		r.body = make([]byte, n)
		_, err = io.ReadFull(br, r.body)
		return r, err
	}
	return r, nil
}

// safetyAfter is what a raw backend does once it wrote an answer.
type safetyAfter int

const (
	keepOpen  safetyAfter = iota // read the next request
	closeConn                    // close the connection (FIN)
	resetConn                    // close it with a reset (RST)
	goAway                       // stop listening and close every connection
)

// safetyBackend is a raw HTTP/1.1 backend: answer returns the raw bytes
// to write for each request (nothing when empty) and what to do next. It
// records every request it read, on any connection.
type safetyBackend struct {
	url    string
	ln     net.Listener
	nconns atomic.Int32

	mu    sync.Mutex
	reqs  []*safetyReq
	conns map[net.Conn]struct{}
}

func startSafetyBackend(t *testing.T, answer func(r *safetyReq) (string, safetyAfter)) *safetyBackend {
	t.Helper()
	return startSafetyListener(t, func(b *safetyBackend, id int, c net.Conn) {
		br := bufio.NewReader(c)
		for n := 1; ; n++ {
			r, err := safetyReadReq(br)
			if err != nil {
				return
			}
			r.conn, r.n = id, n
			b.mu.Lock()
			b.reqs = append(b.reqs, r)
			b.mu.Unlock()
			out, after := answer(r)
			if out != "" {
				if _, err := io.WriteString(c, out); err != nil {
					return
				}
			}
			switch after {
			case closeConn:
				return
			case resetConn:
				if tc, ok := c.(*net.TCPConn); ok {
					_ = tc.SetLinger(0)
				}
				return
			case goAway:
				b.closeAll()
				return
			}
		}
	})
}

// startSafetyListener serves each connection with serve until the test
// ends, when every connection still open is closed.
func startSafetyListener(t *testing.T, serve func(b *safetyBackend, id int, c net.Conn)) *safetyBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &safetyBackend{url: "http://" + ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	t.Cleanup(func() { b.closeAll(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns[c] = struct{}{}
			b.mu.Unlock()
			id := int(b.nconns.Add(1))
			wg.Go(func() {
				defer func() {
					b.mu.Lock()
					delete(b.conns, c)
					b.mu.Unlock()
					c.Close()
				}()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				serve(b, id, c)
			})
		}
	})
	return b
}

// closeAll stops listening and closes every open connection.
func (b *safetyBackend) closeAll() {
	b.ln.Close()
	b.mu.Lock()
	defer b.mu.Unlock()
	for c := range b.conns {
		c.Close()
	}
}

func (b *safetyBackend) requests() []*safetyReq {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*safetyReq(nil), b.reqs...)
}

// open is how many connections the backend holds open.
func (b *safetyBackend) open() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.conns)
}

// count is how many requests to path the backend read.
func (b *safetyBackend) count(path string) int {
	n := 0
	for _, r := range b.requests() {
		if r.path() == path {
			n++
		}
	}
	return n
}

// safetyOK is a 200 answer with body.
func safetyOK(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// ---- raw clients ----

// safetyDial connects to gw with the socket options control sets (nil:
// none), closed when the test ends, with a generous deadline.
func safetyDial(t testing.TB, gw *gateway, control func(fd int)) (net.Conn, *bufio.Reader) {
	t.Helper()
	d := net.Dialer{}
	if control != nil {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			return rc.Control(func(fd uintptr) { control(int(fd)) })
		}
	}
	c, err := d.Dial("tcp", gwAddr(gw))
	if err != nil {
		t.Fatal(err)
	}
	c = clientTLS(t, gw, c)
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

// safetyExchange sends raw on a new connection to gw and reads one
// response (to a request of method); err when none came.
func safetyExchange(t *testing.T, gw *gateway, raw, method string) (*http.Response, string, error) {
	t.Helper()
	c, br := loopDial(t, gw)
	defer c.Close()
	loopWrite(t, c, raw)
	return safetyRead(br, method)
}

func safetyRead(br *bufio.Reader, method string) (*http.Response, string, error) {
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body), err
}

// describe is a response, or the error instead of one, for messages.
func describe(resp *http.Response, body string, err error) string {
	if err != nil {
		return "no answer: " + err.Error()
	}
	if len(body) > 80 {
		body = body[:80] + "..."
	}
	return fmt.Sprintf("%d %q", resp.StatusCode, body)
}

// ---- 1 ----

// A client pipelines requests the gateway answers itself (404) behind a
// slow one. The old loop served each buffered request from inside the
// answer to the previous one (next -> reply -> next): the stack grew with
// the number of pipelined requests until the process died of a stack
// overflow. The maximum stack is lowered so that a modest count shows it;
// a loop that serves them one after another needs a few KB whatever the
// count.
func TestSafety01PipelinedLocalAnswersDoNotRecurse(t *testing.T) {
	const (
		n        = 2000      // 600-900 B of loop stack each on the old code: 1.2-1.8 MB
		maxStack = 256 << 10 // plenty for any goroutine of the test
	)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		if r.URL.Path == "/slow" {
			time.Sleep(300 * time.Millisecond)
		}
		_, _ = io.WriteString(w, strings.TrimPrefix(r.URL.Path, "/"))
	}))
	t.Cleanup(backend.Close)
	forEachMode(t, func(t *testing.T, opts Options) {
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
		// A receive buffer that holds every answer: the gateway never
		// meets a full socket, so it writes all of them itself.
		c, br := safetyDial(t, gw, func(fd int) { _ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20) })
		var req strings.Builder
		req.WriteString("POST /fraud/slow HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
		for range n {
			req.WriteString("GET /nope/x HTTP/1.1\r\nHost: gw\r\n\r\n")
		}
		defer debug.SetMaxStack(debug.SetMaxStack(maxStack))
		loopWrite(t, c, req.String())
		if resp, body, err := safetyRead(br, http.MethodPost); err != nil || resp.StatusCode != 200 || body != "slow" {
			t.Fatalf("first (slow) request: %s, want 200 \"slow\"", describe(resp, body, err))
		}
		for i := range n {
			if resp, body, err := safetyRead(br, http.MethodGet); err != nil || resp.StatusCode != http.StatusNotFound {
				t.Fatalf("pipelined request %d of %d to an unknown endpoint: %s, want 404", i+1, n, describe(resp, body, err))
			}
		}
		if a := get(t, gw.url+"/fraud/after"); a.status != 200 || a.body != "after" {
			t.Errorf("request on a new connection afterwards: %d %q, want 200 \"after\"", a.status, a.body)
		}
	})
}

// ---- 2 ----

// While a request is in flight, the client keeps writing pipelined
// requests. The gateway must stop reading (TCP pushes back) rather than
// buffer whatever the client sends: the old loop let gnet read it all.
func TestSafety02PipelinedRequestsAreNotReadWithoutBound(t *testing.T) {
	const bound = 16 << 20 // far above socket buffers and one request's worth
	forEachMode(t, func(t *testing.T, opts Options) {
		arrived, release := make(chan struct{}, 1), make(chan struct{})
		backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			if r.URL.Path == "/slow" {
				arrived <- struct{}{}
				select {
				case <-release:
				case <-time.After(30 * time.Second):
				}
			}
			_, _ = io.WriteString(w, strings.TrimPrefix(r.URL.Path, "/"))
		}))
		t.Cleanup(backend.Close)
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
		c, br := safetyDial(t, gw, func(fd int) { _ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUF, 16<<10) })
		loopWrite(t, c, "POST /fraud/slow HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}")
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow request never reached the backend")
		}

		block := []byte(strings.Repeat("POST /fraud/fast HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}", 1000))
		pending, total, stalled := block, 0, 0
		var werr error
		// Write until past the bound, or until the writes made no progress
		// for 10 tries in a row (the gateway stopped reading).
		for end := time.Now().Add(10 * time.Second); total <= bound && stalled < 10 && time.Now().Before(end); {
			_ = c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := c.Write(pending)
			total += n
			if pending = pending[n:]; len(pending) == 0 {
				pending = block
			}
			if n == 0 {
				stalled++
			} else {
				stalled = 0
			}
			if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
				werr = err // the gateway closed the connection
				break
			}
		}
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		close(release)
		if total > bound {
			t.Errorf("the client wrote more than %d MiB of pipelined requests while one was in flight: the gateway reads without bound", bound>>20)
		} else {
			t.Logf("the client wrote %d KiB while a request was in flight (write error: %v)", total>>10, werr)
		}
		if resp, body, err := safetyRead(br, http.MethodPost); err != nil || resp.StatusCode != 200 || body != "slow" {
			t.Errorf("answer to the slow request: %s, want 200 \"slow\"", describe(resp, body, err))
		}
		if werr == nil {
			floodWhileServed(t, c, br, pending)
		}
		c.Close()
		if a := get(t, gw.url+"/fraud/after"); a.status != 200 || a.body != "after" {
			t.Errorf("request on a new connection afterwards: %d %q, want 200 \"after\"", a.status, a.body)
		}
	})
}

// floodWhileServed writes the rest of pending, then goes on pipelining
// requests with 16 KiB bodies on c
// while their answers are read, 24 MiB in all, and fails if the heap grew
// by more than 16 MiB meanwhile: a gateway that reads a little more than it
// serves at each answer (the loops once resumed reading after every
// answer) piles the rest up.
func floodWhileServed(t *testing.T, c net.Conn, br *bufio.Reader, pending []byte) {
	t.Helper()
	const total, bound = 24 << 20, 16 << 20
	body := strings.Repeat("x", 16<<10)
	one := fmt.Sprintf("POST /fraud/fast HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	block := []byte(strings.Repeat(one, 16))
	answers := make(chan error, 1)
	go func() {
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				answers <- err
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	before := heapInUse()
	peak := before
	_ = c.SetWriteDeadline(time.Now().Add(60 * time.Second))
	if len(pending) > 0 && len(pending) < len(block) { // the rest of a block written in part
		if _, err := c.Write(pending); err != nil {
			t.Errorf("pipelining while answers are read: %v", err)
			return
		}
	}
	for sent := 0; sent < total; sent += len(block) {
		if _, err := c.Write(block); err != nil {
			t.Errorf("pipelining while answers are read: %v", err)
			return
		}
		if sent%(8<<20) == 0 {
			peak = max(peak, heapInUse())
		}
	}
	peak = max(peak, heapInUse())
	if grown := int64(peak) - int64(before); grown > bound {
		t.Errorf("the heap grew by %d MiB while %d MiB of pipelined requests were served: the gateway reads faster than it serves", grown>>20, total>>20)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	select {
	case <-answers:
	case <-time.After(60 * time.Second):
		t.Error("the answers to the pipelined requests did not end")
	}
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// ---- 3 ----

// A declared Content-Length is a claim, not a need: 200 connections each
// declaring 10 MiB and sending 1 byte must not make the gateway allocate
// 200 × 10 MiB (the old goroutine engine, where the loops hand such
// requests, allocated each declared body up front).
func TestSafety03DeclaredBodiesAreNotPreallocated(t *testing.T) {
	const (
		conns = 200
		limit = 100 << 20
	)
	backend := named(t, "blue")
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		opts.MaxRequestBytes = 10 << 20
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
		heap := func() int64 {
			runtime.GC()
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			return int64(m.HeapInuse)
		}
		before := heap()
		growth := func() int64 { return heap() - before }
		sent := 0
		for sent < conns {
			c, _ := loopDial(t, gw)
			loopWrite(t, c, "POST /fraud/big HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{")
			// Stop early once the defect shows: no need for gigabytes.
			if sent++; sent%20 == 0 && growth() > limit {
				break
			}
		}
		// Let the gateway read what was sent.
		g := growth()
		for end := time.Now().Add(time.Second); g <= limit && time.Now().Before(end); g = growth() {
			time.Sleep(50 * time.Millisecond)
		}
		if g > limit {
			t.Errorf("the Go heap grew by %d MiB after %d connections each declared a 10 MiB body and sent 1 byte; want < %d MiB", g>>20, sent, limit>>20)
		}
		if a := get(t, gw.url+"/fraud/ok"); a.status != 200 || a.body != "blue" {
			t.Errorf("a normal request meanwhile: %d %q, want 200 \"blue\"", a.status, a.body)
		}
	})
}

// ---- 4 ----

// A backend that sends more than one answer's worth of bytes (or a body
// where there is none) must not leave them on a connection the gateway
// reuses: a later, unrelated request would get them as its answer. And
// answers whose framing cannot be trusted are 502.
func TestSafety04UpstreamDesync(t *testing.T) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
	answer := func(r *safetyReq) (string, safetyAfter) {
		kind, id, _ := strings.Cut(strings.TrimPrefix(r.path(), "/"), "/")
		switch kind {
		case "extra": // a correct answer, then a whole second one
			return safetyOK(id) + evil, keepOpen
		case "head": // a HEAD answered with a body
			return fmt.Sprintf("HTTP/1.1 200 OK\r\nX-Id: %s\r\nContent-Length: %d\r\n\r\n%s", id, len(evil), evil), keepOpen
		case "nocontent": // a 204 with a body
			return fmt.Sprintf("HTTP/1.1 204 No Content\r\nX-Id: %s\r\n\r\n%s", id, evil), keepOpen
		case "both": // Content-Length and chunked
			return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", keepOpen
		case "upgrade": // 101 to a request that did not ask to upgrade
			return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: evil\r\n\r\n", closeConn
		case "barelf": // header lines ending in a bare LF
			return "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", keepOpen
		case "blankfirst": // an empty line before the status line (ignored)
			return "\r\n" + safetyOK(id), keepOpen
		case "http10": // an HTTP/1.0 answer whose body ends when the backend closes
			return "HTTP/1.0 200 OK\r\nX-Id: " + id + "\r\n\r\n" + id, closeConn
		case "badstatus": // neither HTTP/1.x nor a status 100-599
			return "HTTP/0.1 000 x\r\nContent-Length: 2\r\n\r\nok", keepOpen
		}
		return safetyOK(id), keepOpen
	}
	// How a request is sent: plain (the loops serve it themselves) or with
	// a chunked body (the loops hand it to the goroutine engine, whose
	// backend connections are its own).
	send := map[string]func(method, path string) string{
		"plain": func(method, path string) string {
			return fmt.Sprintf("%s /fraud%s HTTP/1.1\r\nHost: gw\r\n\r\n", method, path)
		},
		"handed-over": func(method, path string) string {
			return fmt.Sprintf("%s /fraud%s HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", method, path)
		},
	}
	cases := []struct {
		name, how, method, path string
		status                  int
		body                    string
	}{
		{"extra bytes after the answer", "plain", "GET", "/extra/t1", 200, "t1"},
		{"extra bytes after the answer, handed over", "handed-over", "POST", "/extra/t2", 200, "t2"},
		{"HEAD answered with a body", "plain", "HEAD", "/head/t3", 200, ""},
		{"204 with a body", "plain", "GET", "/nocontent/t4", 204, ""},
		{"204 with a body, handed over", "handed-over", "POST", "/nocontent/t5", 204, ""},
		{"Content-Length and chunked", "plain", "GET", "/both/t6", 502, ""},
		{"Content-Length and chunked, handed over", "handed-over", "POST", "/both/t7", 502, ""},
		{"101 without an upgrade request", "plain", "GET", "/upgrade/t8", 502, ""},
		{"101 without an upgrade request, handed over", "handed-over", "POST", "/upgrade/t9", 502, ""},
		{"an answer with bare-LF lines", "plain", "GET", "/barelf/t10", 502, ""},
		{"an answer with bare-LF lines, handed over", "handed-over", "POST", "/barelf/t11", 502, ""},
		{"an empty line before the answer", "plain", "GET", "/blankfirst/t12", 200, "t12"},
		{"an empty line before the answer, handed over", "handed-over", "POST", "/blankfirst/t13", 200, "t13"},
		// The client gets the answer in HTTP/1.1, framed (chunked), not
		// an HTTP/1.0 status line over a chunked body.
		{"an HTTP/1.0 answer until close", "plain", "GET", "/http10/t14", 200, "t14"},
		{"an HTTP/1.0 answer until close, handed over", "handed-over", "POST", "/http10/t16", 200, "t16"},
		{"an answer with a malformed status line", "plain", "GET", "/badstatus/t15", 502, ""},
	}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				backend := startSafetyBackend(t, answer)
				gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
				// The answer itself: the backend's (status and body), or 502
				// when the gateway rejects what came with it.
				resp, body, err := safetyExchange(t, gw, send[tc.how](tc.method, tc.path), tc.method)
				if err == nil && resp.ProtoMinor != 1 {
					t.Errorf("%s %s: answered in %s, want HTTP/1.1", tc.method, tc.path, resp.Proto)
				}
				// An answer the gateway has no reason to refuse must come
				// through as it is.
				exact := strings.HasPrefix(tc.path, "/http10/") || strings.HasPrefix(tc.path, "/blankfirst/")
				if err != nil || (exact || resp.StatusCode != 502) && (resp.StatusCode != tc.status || body != tc.body) {
					want := strconv.Itoa(tc.status)
					if tc.status != 502 {
						want += fmt.Sprintf(" %q (or 502)", tc.body)
					}
					t.Errorf("%s %s: %s, want %s", tc.method, tc.path, describe(resp, body, err), want)
				}
				// Later requests, each on a new client connection, by
				// both engines, get their own answers.
				for i, how := range []string{"plain", "handed-over", "plain", "handed-over"} {
					id := fmt.Sprintf("later%d", i+1)
					method := map[string]string{"plain": "GET", "handed-over": "POST"}[how]
					resp, body, err := safetyExchange(t, gw, send[how](method, "/echo/"+id), method)
					if err != nil || resp.StatusCode != 200 || body != id {
						t.Errorf("later %s request %s (%s): %s, want 200 %q", how, method, id, describe(resp, body, err), id)
						return
					}
				}
			})
		}
	})
}

// ---- 5 ----

// X-Forwarded-* sent by the client more than once: the backend sees one
// of each, X-Forwarded-For holding every value the client sent and then
// the peer address, Proto and Host set by the gateway.
func TestSafety05ForwardedHeadersNotSpoofable(t *testing.T) {
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		backend := startSafetyBackend(t, func(*safetyReq) (string, safetyAfter) { return safetyOK("ok"), keepOpen })
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
		for _, method := range []string{"GET", "POST"} {
			raw := method + " /fraud/p HTTP/1.1\r\nHost: models.example.com\r\n" +
				"X-Forwarded-For: 10.0.0.1\r\nx-forwarded-for: 10.0.0.2, 10.0.0.3\r\n" +
				"X-Forwarded-Proto: https\r\nx-forwarded-proto: wss\r\n" +
				"X-Forwarded-Host: evil1.example\r\nx-forwarded-host: evil2.example\r\n" +
				"Forwarded: for=6.6.6.6;proto=https\r\nX-Real-IP: 6.6.6.6\r\n"
			if method == "POST" {
				raw += "Content-Length: 2\r\n\r\n{}"
			} else {
				raw += "\r\n"
			}
			before := len(backend.requests())
			if resp, body, err := safetyExchange(t, gw, raw, method); err != nil || resp.StatusCode != 200 {
				t.Fatalf("%s: %s, want 200", method, describe(resp, body, err))
			}
			reqs := backend.requests()
			if len(reqs) != before+1 {
				t.Fatalf("%s: the backend got %d requests, want 1", method, len(reqs)-before)
			}
			r := reqs[len(reqs)-1]
			proto := "http" // the client's wss and https are not taken
			if isTLS(opts) {
				proto = "https" // the client's connection was TLS
			}
			for _, want := range []struct{ name, value string }{
				{"X-Forwarded-For", "10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"},
				{"X-Forwarded-Proto", proto},
				{"X-Forwarded-Host", "models.example.com"},
			} {
				if got := r.values(want.name); len(got) != 1 || got[0] != want.value {
					t.Errorf("%s: backend got %s %q, want exactly one: %q", method, want.name, got, want.value)
				}
			}
			// What a backend might trust and the gateway does not set.
			for _, name := range []string{"Forwarded", "X-Real-IP"} {
				if got := r.values(name); len(got) != 0 {
					t.Errorf("%s: backend got the client's %s %q, want none", method, name, got)
				}
			}
		}
	})
}

// ---- 6 ----

// Trailer fields of a chunked request are not headers: they neither route
// the request (X-Model-Deployment) nor name it (X-Request-Id), and are not
// forwarded as headers.
func TestSafety06TrailersDoNotRouteRequests(t *testing.T) {
	type seen struct{ deployment, requestID string }
	var (
		mu   sync.Mutex
		got  = map[string][]seen{}
		deps []spec.Deployment
	)
	for _, name := range []string{"blue", "green"} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.ReadAll(r.Body)
			mu.Lock()
			got[name] = append(got[name], seen{strings.Join(r.Header.Values("X-Model-Deployment"), ","), strings.Join(r.Header.Values("X-Request-Id"), ",")})
			mu.Unlock()
			_, _ = io.WriteString(w, name)
		}))
		t.Cleanup(srv.Close)
		deps = append(deps, dep(name, srv.URL))
	}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", spec.Weights{"blue": spec.Full, "green": 0}, deps...))
		for _, declared := range []bool{true, false} {
			mu.Lock()
			clear(got)
			mu.Unlock()
			raw := "POST /fraud/p HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
			if declared {
				raw += "Trailer: X-Model-Deployment, X-Request-Id\r\n"
			}
			raw += "\r\n2\r\n{}\r\n0\r\nX-Model-Deployment: green\r\nX-Request-Id: evil-id\r\n\r\n"
			what := fmt.Sprintf("chunked POST with trailers (declared in Trailer: %v)", declared)
			resp, body, err := safetyExchange(t, gw, raw, http.MethodPost)
			if err != nil {
				t.Errorf("%s: %v", what, err)
				continue
			}
			if resp.StatusCode != 200 || body != "blue" || resp.Header.Get("X-Model-Deployment") != "blue" {
				t.Errorf("%s: %d %q from deployment %q, want 200 from blue (traffic blue 100, green 0)", what, resp.StatusCode, body, resp.Header.Get("X-Model-Deployment"))
			}
			if id := resp.Header.Get("X-Request-Id"); id == "evil-id" {
				t.Errorf("%s: the answer's X-Request-Id is the trailer's %q", what, id)
			}
			mu.Lock()
			for name, reqs := range got {
				for _, s := range reqs {
					if s.deployment != "" || strings.Contains(s.requestID, "evil-id") {
						t.Errorf("%s: backend %s got headers X-Model-Deployment %q, X-Request-Id %q; want no X-Model-Deployment and not the trailer's id", what, name, s.deployment, s.requestID)
					}
				}
			}
			mu.Unlock()
		}
	})
}

// ---- 7 ----

// Dot segments cannot climb out of the endpoint's backend path: such a
// request is refused (400, nothing forwarded) or forwarded with a path
// under the backend's prefix and no dot segment left.
func TestSafety07DotSegmentsStayUnderTheBackendPath(t *testing.T) {
	// hasDotSegment reports a "." or ".." segment, percent-encoded or not.
	hasDotSegment := func(p string) bool {
		for seg := range strings.SplitSeq(p, "/") {
			if dec, err := url.PathUnescape(seg); err == nil {
				seg = dec
			}
			if seg == "." || seg == ".." {
				return true
			}
		}
		return false
	}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		backend := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) { return safetyOK(r.target), keepOpen })
		gw := safetyGateway(t, opts, mkEndpoint(t, "ep", nil, dep("blue", backend.url+"/models/fraud")))
		for _, path := range []string{"/ep/../../admin", "/ep/%2e%2e/%2E%2E/admin", "/ep/.%2e/admin", "/ep/a/../../admin",
			// Dot segments a backend may see where the gateway sees none.
			"/ep/..%2f..%2fadmin", "/ep/..%5C..%5Cadmin", "/ep/..;/..;/admin", "/ep/a\\..\\..\\admin"} {
			before := len(backend.requests())
			resp, body, err := safetyExchange(t, gw, "GET "+path+" HTTP/1.1\r\nHost: gw\r\n\r\n", http.MethodGet)
			if err != nil {
				t.Errorf("GET %s: %v", path, err)
				continue
			}
			reqs := backend.requests()[before:]
			switch {
			case resp.StatusCode == http.StatusBadRequest:
				if len(reqs) != 0 {
					t.Errorf("GET %s: answered 400, but the backend got %q", path, reqs[0].target)
				}
			case len(reqs) != 1:
				t.Errorf("GET %s: %s and the backend got %d requests; want 400 and none, or one request under /models/fraud/", path, describe(resp, body, err), len(reqs))
			case !strings.HasPrefix(reqs[0].path(), "/models/fraud/") || hasDotSegment(reqs[0].path()):
				t.Errorf("GET %s: the backend got %q, want 400 (climbs above the endpoint) or a path under /models/fraud/ without dot segments", path, reqs[0].target)
			}
		}
		// Dot segments that stay under the endpoint are resolved; the
		// query is kept as it came.
		for _, c := range []struct{ path, want string }{
			{"/ep/a/../b", "/models/fraud/b"},
			{"/ep/./a/.", "/models/fraud/a/"},
			{"/ep/a/b/..", "/models/fraud/a/"},
			{"/ep/a/%2E/b/...?q=/../x", "/models/fraud/a/b/...?q=/../x"},
			{"/ep?q=1", "/models/fraud/?q=1"},
		} {
			before := len(backend.requests())
			resp, body, err := safetyExchange(t, gw, "GET "+c.path+" HTTP/1.1\r\nHost: gw\r\n\r\n", http.MethodGet)
			reqs := backend.requests()[before:]
			if err != nil || resp.StatusCode != 200 || len(reqs) != 1 || reqs[0].target != c.want {
				var targets []string
				for _, r := range reqs {
					targets = append(targets, r.target)
				}
				t.Errorf("GET %s: %s, backend got %q; want 200 and exactly %q", c.path, describe(resp, body, err), targets, c.want)
			}
		}
	})
}

// ---- 8 ----

// Malformed requests are refused with the right status, and nothing of
// them reaches a backend.
func TestSafety08MalformedRequestsRefused(t *testing.T) {
	cases := []struct {
		name, raw string
		status    int
	}{
		{"space in a header name", "GET /fraud/x HTTP/1.1\r\nHost: gw\r\nBad Name: x\r\n\r\n", http.StatusBadRequest},
		{"HTTP/9.9", "GET /fraud/x HTTP/9.9\r\nHost: gw\r\n\r\n", http.StatusHTTPVersionNotSupported},
		// A head with bare-LF header lines, followed by another request
		// (fasthttp parses it only when more bytes follow; see below).
		{"bare LF line ends", "GET /fraud/x HTTP/1.1\nHost: gw\n\nGET /fraud/y HTTP/1.1\r\nHost: gw\r\n\r\n", http.StatusBadRequest},
		{"a bare LF inside the head", "GET /fraud/x HTTP/1.1\r\nHost: gw\nX: 1\r\n\r\nGET /fraud/y HTTP/1.1\r\nHost: gw\r\n\r\n", http.StatusBadRequest},
		{"a folded header line", "GET /fraud/x HTTP/1.1\r\nHost: gw\r\nX: 1\r\n 2\r\n\r\n", http.StatusBadRequest},
		{"Content-Length and Transfer-Encoding", "POST /fraud/x HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", http.StatusBadRequest},
		{"a request target over the limit", "GET /fraud/" + strings.Repeat("a", DefaultMaxURIBytes) + " HTTP/1.1\r\nHost: gw\r\n\r\n", http.StatusRequestURITooLong},
		{"a header name that is not ASCII", "GET /fraud/x HTTP/1.1\r\nHost: gw\r\nNa\xffme: x\r\n\r\n", http.StatusBadRequest},
		{"a long malformed header name", "GET /fraud/x HTTP/1.1\r\nHost: gw\r\n" + strings.Repeat("n", 100) + " x: 1\r\n\r\n", http.StatusBadRequest},
		{"too many header fields", "GET /fraud/x HTTP/1.1\r\nHost: gw\r\n" + strings.Repeat("X-A: 1\r\n", DefaultMaxHeaders) + "\r\n", http.StatusRequestHeaderFieldsTooLarge},
	}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		backend := startSafetyBackend(t, func(*safetyReq) (string, safetyAfter) { return safetyOK("forwarded"), keepOpen })
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
		for _, tc := range cases {
			before := len(backend.requests())
			c, br := loopDial(t, gw)
			// The old gateway waits for more after a bare-LF request:
			// 10 s is long enough for an answer that needs no backend.
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			loopWrite(t, c, tc.raw)
			resp, body, err := safetyRead(br, http.MethodGet)
			c.Close()
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				err = errors.New("none within 10 s")
			}
			if err != nil || resp.StatusCode != tc.status {
				t.Errorf("%s: %s, want %d", tc.name, describe(resp, body, err), tc.status)
			}
			if reqs := backend.requests()[before:]; len(reqs) != 0 {
				t.Errorf("%s: the backend got %q, want nothing", tc.name, strings.SplitN(reqs[0].head, "\r\n", 2)[0])
			}
		}
	})
}

// ---- 9 ----

// The backend read a POST and closed its (reused) connection without
// answering: it may have run it. The gateway must not send it again (502);
// a GET may be retried.
func TestSafety09NoDoubleExecution(t *testing.T) {
	cases := []struct {
		method string
		after  safetyAfter
		status int
	}{
		{"POST", closeConn, 502},
		{"POST", resetConn, 502},
		{"GET", closeConn, 200},
		{"GET", resetConn, 200},
	}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s %s", tc.method, map[safetyAfter]string{closeConn: "EOF", resetConn: "RST"}[tc.after]), func(t *testing.T) {
				// The backend answers its first request keep-alive, reads
				// the second (on the same connection, which the gateway
				// reuses) and goes away without answering; it answers any
				// later one.
				var nreq atomic.Int32
				backend := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) {
					if nreq.Add(1) == 2 {
						return "", tc.after
					}
					return safetyOK(r.path()), keepOpen
				})
				gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
				// One client connection: in loop modes its loop holds the
				// idle backend connection the second request goes on.
				c, br := loopDial(t, gw)
				request := func(path string) string {
					if tc.method == "GET" {
						return "GET /fraud" + path + " HTTP/1.1\r\nHost: gw\r\n\r\n"
					}
					return "POST /fraud" + path + " HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"
				}
				loopWrite(t, c, request("/one"))
				if resp, body, err := safetyRead(br, tc.method); err != nil || resp.StatusCode != 200 || body != "/one" {
					t.Fatalf("first %s: %s, want 200 \"/one\"", tc.method, describe(resp, body, err))
				}
				loopWrite(t, c, request("/two"))
				resp, body, err := safetyRead(br, tc.method)
				if err != nil || resp.StatusCode != tc.status {
					t.Errorf("%s the backend read and dropped: %s, want %d", tc.method, describe(resp, body, err), tc.status)
				}
				if n := backend.count("/two"); tc.method == "POST" && n != 1 {
					t.Errorf("the backend received the POST %d times, want exactly once", n)
				}
			})
		}
	})
}

// ---- 10 ----

// A client that stops reading a stream must not hold the gateway's
// connections (and the backend's stream) forever: past
// Options.Limits.SendTimeout without progress writing to the client, the
// gateway gives up and closes the backend connection. (At 380c3f7 there is
// no such limit: writes to a client wait forever.)
func TestSafety10SendTimeout(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		opts.Limits.SendTimeout = 500 * time.Millisecond
		done := make(chan struct{})
		var closeOnce sync.Once
		gone := make(chan error, 1) // the gateway closed the backend connection
		backend := startSafetyListener(t, func(_ *safetyBackend, _ int, c net.Conn) {
			if _, err := safetyReadReq(bufio.NewReader(c)); err != nil {
				return
			}
			signal := func(err error) {
				select {
				case <-done:
				default:
					closeOnce.Do(func() { gone <- err })
				}
			}
			go func() {
				var b [1]byte
				if _, err := c.Read(b[:]); err != nil {
					signal(err)
				}
			}()
			chunk := []byte(fmt.Sprintf("%x\r\ndata: %s\n\n\r\n", 16<<10+8, bytes.Repeat([]byte("x"), 16<<10)))
			pending := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			for {
				select {
				case <-done:
					return
				default:
				}
				if len(pending) == 0 {
					time.Sleep(time.Millisecond)
					pending = chunk
				}
				_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
				n, err := c.Write(pending)
				pending = pending[n:]
				if ne, ok := err.(net.Error); err != nil && !(ok && ne.Timeout()) {
					signal(err)
					return
				}
			}
		})
		t.Cleanup(func() { close(done) })
		gw := safetyGateway(t, opts, mkEndpoint(t, "chat", nil, dep("llm", backend.url)))
		c, br := safetyDial(t, gw, func(fd int) { _ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		loopWrite(t, c, "GET /chat/stream HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream: %v %v, want 200", resp, err)
		}
		// The client reads nothing more.
		select {
		case err := <-gone:
			t.Logf("the gateway closed the backend connection: %v", err)
		case <-time.After(20 * time.Second):
			t.Error("20 s after the client stopped reading (SendTimeout 500ms), the gateway still holds the backend's stream open")
		}
	})
}

// ---- 11 ----

// A deployment of two backends, A and B; A goes away (closes its
// connection and stops listening). A request that would have gone to A is
// answered the same by every engine.
func TestSafety11SameAnswerInEveryMode(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		for _, method := range []string{"GET", "POST"} {
			request := func(path string) string {
				if method == "GET" {
					return "GET /fraud" + path + " HTTP/1.1\r\nHost: gw\r\n\r\n"
				}
				return "POST /fraud" + path + " HTTP/1.1\r\nHost: gw\r\nContent-Length: 2\r\n\r\n{}"
			}
			// A closes its connection, idle, after its first answer: A
			// never reads a request that comes for it later, which goes to
			// B.
			t.Run(method+" after A went away", func(t *testing.T) {
				a := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) { return safetyOK("A" + r.path()), goAway })
				b := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) { return safetyOK("B" + r.path()), keepOpen })
				gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", a.url, b.url)))
				c, br := loopDial(t, gw)
				loopWrite(t, c, request("/0"))
				if resp, body, err := safetyRead(br, method); err != nil || resp.StatusCode != 200 || body != "A/0" {
					t.Fatalf("first %s: %s, want 200 \"A/0\"", method, describe(resp, body, err))
				}
				// A has closed its side (on loopback its FIN is queued at
				// the gateway when close returns) before the next request.
				eventually(t, "A to close its connection", func() bool { return a.open() == 0 })
				for i := 1; i <= 4; i++ {
					path := fmt.Sprintf("/%d", i)
					loopWrite(t, c, request(path))
					if resp, body, err := safetyRead(br, method); err != nil || resp.StatusCode != 200 || body != "B"+path {
						t.Fatalf("%s %d after A went away: %s, want 200 %q", method, i, describe(resp, body, err), "B"+path)
					}
				}
			})
			// A reads the next request on its kept-alive connection and
			// goes away without answering: a GET goes to B; a POST that A
			// read may have run there, so it is not sent again: 502.
			t.Run(method+" as A went away", func(t *testing.T) {
				a := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) {
					if r.n == 1 && r.conn == 1 {
						return safetyOK("A" + r.path()), keepOpen
					}
					return "", goAway
				})
				b := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) { return safetyOK("B" + r.path()), keepOpen })
				gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", a.url, b.url)))
				c, br := loopDial(t, gw)
				for i := range 4 {
					path := fmt.Sprintf("/%d", i)
					loopWrite(t, c, request(path))
					resp, body, err := safetyRead(br, method)
					want, wantStatus := "B"+path, 200
					switch {
					case i == 0:
						want = "A/0"
					case i == 2 && method == "POST": // for A, which read it
						want, wantStatus = "", 502
					}
					if err != nil || resp.StatusCode != wantStatus || (wantStatus == 200 && body != want) {
						t.Errorf("%s /%d: %s, want %d %q", method, i, describe(resp, body, err), wantStatus, want)
					}
					if err != nil || resp.Close {
						c, br = loopDial(t, gw)
					}
				}
				if method == "POST" {
					if n := a.count("/2") + b.count("/2"); n != 1 {
						t.Errorf("POST /2 reached the backends %d times, want once", n)
					}
				}
			})
		}
	})
}

// ---- found in review ----

// A stream the loops hand over carries what the loop had read of the
// backend in a reader under the upConn's buffer: bytes past the answer
// there must close the connection as bytes in the buffer do (16384 is the
// size at which the answer ends exactly where the buffer stops).
func TestSafety12StreamHandoffLeavesNoBytes(t *testing.T) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nHACKED"
	forEachMode(t, func(t *testing.T, opts Options) {
		for _, size := range []int{1000, 16384, 40000} {
			t.Run(fmt.Sprint(size), func(t *testing.T) {
				answer := func(r *safetyReq) (string, safetyAfter) {
					if strings.HasPrefix(r.path(), "/sse") {
						body := strings.Repeat("d", size)
						return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: %d\r\n\r\n%s%s", size, body, evil), keepOpen
					}
					id := strings.TrimPrefix(r.path(), "/echo/")
					return safetyOK(id), keepOpen
				}
				backend := startSafetyBackend(t, answer)
				gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
				resp, body, err := safetyExchange(t, gw, "GET /fraud/sse HTTP/1.1\r\nHost: gw\r\n\r\n", "GET")
				if err != nil || resp.StatusCode != 200 || len(body) != size {
					t.Fatalf("sse: %v %d", err, len(body))
				}
				// The connection that carried bytes past the answer is
				// closed, never pooled.
				eventually(t, "the gateway to close the connection with bytes past the answer", func() bool { return backend.open() == 0 })
				// Another client, served by the goroutine path (HTTP/1.0 is handed over).
				for i := 0; i < 3; i++ {
					id := fmt.Sprint("later", i)
					resp, body, err = safetyExchange(t, gw, "GET /fraud/echo/"+id+" HTTP/1.0\r\nHost: gw\r\n\r\n", "GET")
					if err != nil || body != id {
						t.Errorf("other client %s got %s", id, describe(resp, body, err))
					}
				}
			})
		}
	})
}

// Every way a client connection ends gives its slot back exactly once.
func TestSafety13ConnectionSlotsBalanced(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		answer := func(r *safetyReq) (string, safetyAfter) {
			if strings.HasPrefix(r.path(), "/sse") {
				return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", keepOpen
			}
			if strings.HasPrefix(r.path(), "/slow") {
				time.Sleep(300 * time.Millisecond)
			}
			return safetyOK("ok"), keepOpen
		}
		backend := startSafetyBackend(t, answer)
		opts.Limits.MaxConnections = 3
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
		raws := []string{
			"GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n",
			"GET /fraud/x HTTP/1.1\r\nHost: gw\nX: y\r\n\r\n",
			"GET /fraud/x HTTP/1.0\r\nHost: gw\r\n\r\n",
			"GET /fraud/sse HTTP/1.1\r\nHost: gw\r\n\r\n",
			"GET /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n",
			"GET /fraud/x HTTP/1.1\r\nHost: gw\r\nX: " + strings.Repeat("a", 20000) + "\r\n\r\n",
			"GET /fraud/slow HTTP/1.1\r\nHost: gw\r\n\r\n" + strings.Repeat("GET /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n", 5000),
			"GARBAGE\r\n\r\n",
			"GET /fraud/%2e%2e/%2e%2e/x HTTP/1.1\r\nHost: gw\r\n\r\n",
		}
		for round := 0; round < 3; round++ {
			for _, raw := range raws {
				c, br := loopDial(t, gw)
				loopWrite(t, c, raw)
				_, _, _ = safetyRead(br, "GET")
				c.Close()
			}
			// a client that closes while its request is in flight and it is paused
			c, _ := loopDial(t, gw)
			slow := backend.count("/slow")
			loopWrite(t, c, raws[6])
			eventually(t, "the paused client's request to reach the backend", func() bool { return backend.count("/slow") > slow })
			c.Close()
		}
		// The waiting Accept holds one slot.
		eventually(t, "every slot back after every client closed", func() bool { return len(gw.slots) <= 1 })
		// MaxConnections clients at once are all served.
		for i := 0; i < 3; i++ {
			c, br := loopDial(t, gw)
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			loopWrite(t, c, "GET /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n")
			resp, body, err := safetyRead(br, "GET")
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("client %d after: %s", i, describe(resp, body, err))
			}
		}
	})
}

// Bytes a backend sent after its answer, in the gateway's socket before
// the next request is sent on that idle connection, must never become the
// answer to the next client's request: a loop drops such a connection when
// its event comes, and peeks at an idle connection before reusing it in
// case the client's event comes first in the batch. (Bytes that arrive
// after the next request went out cannot be told from its answer, by any
// proxy; a backend that sends them is broken.) One loop is kept busy with
// pipelined local answers so that both events meet in one batch. Every
// engine mode: the loops with either send path peek (idleQuiet), the
// goroutine path does its own (upConn.quiet).
func TestSafety14LoopIdleBackendBytesNeverAnAnswer(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		opts.EventLoops = 1
		idleBackendBytes(t, opts)
	})
}

func idleBackendBytes(t *testing.T, opts Options) {
	const evil = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nHACKED"
	for attempt := range 3 {
		fire, written := make(chan struct{}), make(chan struct{})
		backend := startSafetyListener(t, func(b *safetyBackend, id int, c net.Conn) {
			br := bufio.NewReader(c)
			for {
				r, err := safetyReadReq(br)
				if err != nil {
					return
				}
				if strings.HasPrefix(r.path(), "/extra") {
					_, _ = io.WriteString(c, safetyOK("a"))
					<-fire
					_, _ = io.WriteString(c, evil)
					close(written)
					continue
				}
				_, _ = io.WriteString(c, safetyOK(strings.TrimPrefix(r.path(), "/echo/")))
			}
		})
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
		cb, brb := loopDial(t, gw)
		resp, body, err := safetyExchange(t, gw, "GET /fraud/extra HTTP/1.1\r\nHost: gw\r\n\r\n", "GET")
		if err != nil || body != "a" {
			t.Fatalf("extra: %s", describe(resp, body, err))
		}
		// Keep the one loop busy with pipelined local answers.
		flood := []byte(strings.Repeat("GET /nope HTTP/1.1\r\nHost: gw\r\n\r\n", 30000))
		for range 16 {
			c, _ := loopDial(t, gw)
			go func() { _, _ = io.Copy(io.Discard, c) }()
			go func() { _, _ = c.Write(flood) }()
		}
		close(fire)
		<-written // the stray bytes are on their way before the request is
		loopWrite(t, cb, "GET /fraud/echo/b HTTP/1.1\r\nHost: gw\r\n\r\n")
		resp, body, err = safetyRead(brb, "GET")
		if err != nil || resp.StatusCode != 200 || body != "b" {
			t.Errorf("attempt %d: client B got %s, want 200 \"b\" (its own answer)", attempt, describe(resp, body, err))
		}
	}
}

// Beyond Limits.MaxConnections the gateway stops accepting: a further
// client waits (in the listen backlog) until one of the others closes, and
// is then served.
func TestSafety15ConnectionLimit(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		backend := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) { return safetyOK("ok"), keepOpen })
		opts.Limits.MaxConnections = 2
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
		held := make([]net.Conn, 2)
		for i := range held {
			c, br := loopDial(t, gw)
			resp, body, err := safetyExchangeOn(c, br, "GET /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n")
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("client %d of 2: %s, want 200", i, describe(resp, body, err))
			}
			held[i] = c
		}
		third, br := loopDial(t, gw)
		loopWrite(t, third, "GET /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n")
		_ = third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if resp, body, err := safetyRead(br, http.MethodGet); err == nil {
			t.Fatalf("a third client was served while 2 (the limit) were open: %s", describe(resp, body, err))
		}
		held[0].Close()
		_ = third.SetReadDeadline(time.Now().Add(10 * time.Second))
		if resp, body, err := safetyRead(br, http.MethodGet); err != nil || resp.StatusCode != 200 {
			t.Errorf("the third client after one closed: %s, want 200", describe(resp, body, err))
		}
	})
}

// safetyExchangeOn sends raw on c and reads one answer to a GET from br.
func safetyExchangeOn(c net.Conn, br *bufio.Reader, raw string) (*http.Response, string, error) {
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, "", err
	}
	return safetyRead(br, http.MethodGet)
}

// Hop-by-hop headers (RFC 9110 section 7.6.1) and those a Connection
// header names never cross the gateway, in either direction, whatever
// else the message carries (cookies, a Trailer announcement).
func TestSafety16HopByHopHeadersStayOnTheirHop(t *testing.T) {
	hop := []string{"Keep-Alive", "Proxy-Authorization", "Proxy-Authenticate", "Proxy-Connection", "Te", "Upgrade", "Trailer", "X-Hop", "Expect"}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		backend := startSafetyBackend(t, func(r *safetyReq) (string, safetyAfter) {
			return "HTTP/1.1 200 OK\r\nConnection: X-Hop, keep-alive\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n" +
				"Proxy-Authenticate: Basic\r\nTrailer: X-Sum\r\nUpgrade: h2c\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok", keepOpen
		})
		gw := safetyGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.url)))
		for _, raw := range []string{
			// With and without cookies: a request with cookies takes the
			// scan per header name.
			"GET /fraud/x HTTP/1.1\r\nHost: gw\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\n" +
				"Proxy-Authorization: Basic Zm9v\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n",
			"GET /fraud/x HTTP/1.1\r\nHost: gw\r\nCookie: a=1\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n" +
				"Proxy-Authorization: Basic Zm9v\r\nX-Kept: yes\r\n\r\n",
			"POST /fraud/x HTTP/1.1\r\nHost: gw\r\nTrailer: X-Sum\r\nConnection: X-Hop\r\nX-Hop: 1\r\nX-Kept: yes\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
		} {
			before := len(backend.requests())
			resp, body, err := safetyExchange(t, gw, raw, http.MethodGet)
			if err != nil || resp.StatusCode != 200 || body != "ok" {
				t.Fatalf("%q: %s, want 200 \"ok\"", raw, describe(resp, body, err))
			}
			for _, name := range hop {
				if v := resp.Header.Values(name); len(v) > 0 {
					t.Errorf("the client got the backend's %s %q", name, v)
				}
			}
			if resp.Header.Get("X-Kept") != "yes" {
				t.Errorf("the client did not get the backend's X-Kept")
			}
			reqs := backend.requests()[before:]
			if len(reqs) != 1 {
				t.Fatalf("%q: the backend got %d requests, want 1", raw, len(reqs))
			}
			for _, name := range hop {
				if v := reqs[0].values(name); len(v) > 0 {
					t.Errorf("%q: the backend got the client's %s %q", raw, name, v)
				}
			}
			if reqs[0].get("X-Kept") != "yes" {
				t.Errorf("%q: the backend did not get X-Kept", raw)
			}
			if strings.Contains(raw, "Cookie: a=1") && reqs[0].get("Cookie") != "a=1" {
				t.Errorf("%q: the backend got Cookie %q, want \"a=1\"", raw, reqs[0].get("Cookie"))
			}
		}
	})
}

// A deployment mixing http and https backends: a request whose connect to
// the http one fails goes to the https one, in every engine (the loops,
// which speak plain HTTP only, once failed it with 502 instead).
func TestSafety17RetryAcrossSchemes(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "over tls")
		}))
		t.Cleanup(backend.Close)
		roots := x509.NewCertPool()
		roots.AddCert(backend.Certificate())
		refused := nettest.ClosedURL(t)
		gw := modeGatewayWith(t, opts, func(s *Server) { s.upstreamRoots = roots },
			mkEndpoint(t, "fraud", nil, dep("blue", refused, backend.URL)))
		// Round-robin: within two requests one is first sent to the refused
		// backend, and must be retried on the https one.
		for i := range 4 {
			resp, body, err := safetyExchange(t, gw, "GET /fraud/x HTTP/1.1\r\nHost: gw\r\n\r\n", http.MethodGet)
			if err != nil || resp.StatusCode != 200 || body != "over tls" {
				t.Fatalf("request %d: %s, want 200 \"over tls\"", i, describe(resp, body, err))
			}
		}
	})
}
