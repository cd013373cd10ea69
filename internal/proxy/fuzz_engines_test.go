package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/proxy/policy"
)

// FuzzEngines is the differential fuzz target of the data plane: the same
// raw client bytes, answered by a backend with the same raw bytes, go
// through a gateway in each engine mode (engineModes, and TLS clients:
// tlsMode). Every mode must
// send the backend the same requests (header names compared without case,
// X-Request-Id left out) and give the client the same answers (status,
// headers but Date and X-Request-Id, body); or every mode must refuse the
// input itself (only 4xx/5xx answers, or none) with nothing reaching the
// backend.
//
// A sentinel request (unknown endpoint, Connection: close) follows the
// client's bytes, so that a well-framed input ends with the gateway
// closing the connection; an input that leaves the framing open ends at
// fuzzWait.
//
//	go test -run '^$' -fuzz '^FuzzEngines$' -fuzztime 30m ./internal/proxy/
func FuzzEngines(f *testing.F) {
	for _, seed := range engineSeeds {
		f.Add([]byte(seed.client), []byte(seed.backend))
	}
	backend := startFuzzBackend(f)
	// Passive health never takes the backend out: its state would carry
	// from one input to the next, at times that differ between gateways.
	blue, green := dep("blue", backend.url+"/base"), dep("green", backend.url+"/base")
	blue.MaxFails, green.MaxFails = 1<<30, 1<<30
	ep := mkEndpoint(f, "ep", nil, blue, green)
	// TLS clients too: the goroutine engine behind a TLS listener must
	// treat the same bytes alike (runEngine leaves out the one header that
	// differs, X-Forwarded-Proto: https).
	modes := append(slices.Clone(engineModes), tlsMode)
	gws := make([]*gateway, len(modes))
	for i, m := range modes {
		opts := m.opts
		opts.Logger = quietLogger()
		opts.Limits.SendTimeout = 2 * time.Second
		gws[i] = startGateway(f, opts, ep)
	}
	f.Fuzz(func(t *testing.T, client, answer []byte) {
		if len(client) > 64<<10 || len(answer) > 64<<10 {
			return
		}
		outcomes := make([]engineOutcome, len(gws))
		for i, gw := range gws {
			outcomes[i] = runEngine(t, gw, backend, client, answer)
		}
		for i := 1; i < len(outcomes); i++ {
			if outcomes[i].equal(outcomes[0]) {
				continue
			}
			if allRefused(outcomes) {
				return
			}
			var b strings.Builder
			for j, o := range outcomes {
				fmt.Fprintf(&b, "\n--- %s:\n%s", modes[j].name, o)
			}
			t.Fatalf("the engines disagree on client %q, backend answer %q:%s", client, answer, b.String())
		}
	})
}

// fuzzWait bounds one mode's run of an input that leaves its framing open.
const fuzzWait = 1500 * time.Millisecond

// fuzzSentinel ends every input: answered 404 (no such endpoint) with the
// connection closed, once the input before it was framed whole.
const fuzzSentinel = "GET /no-such-endpoint HTTP/1.1\r\nHost: end\r\nConnection: close\r\n\r\n"

type engineOutcome struct {
	backend []string // the requests the backend received, normalised
	client  []string // the answers the client received, normalised
	rest    string   // client bytes that did not parse as an answer
}

func (o engineOutcome) equal(p engineOutcome) bool {
	return slices.Equal(o.backend, p.backend) && slices.Equal(o.client, p.client) && o.rest == p.rest
}

func (o engineOutcome) String() string {
	return fmt.Sprintf("backend got %q\nclient got %q (then %q)", o.backend, o.client, o.rest)
}

// refused: nothing reached the backend and the client got only errors.
func (o engineOutcome) refused() bool {
	if len(o.backend) > 0 {
		return false
	}
	for _, a := range o.client {
		if st, _ := strconv.Atoi(a[:3]); st < 400 {
			return false
		}
	}
	return true
}

func allRefused(os []engineOutcome) bool {
	for _, o := range os {
		if !o.refused() {
			return false
		}
	}
	return true
}

// runEngine sends client (and the sentinel) to gw, its backend answering
// every request with answer, and returns what each side got.
func runEngine(t *testing.T, gw *gateway, backend *fuzzBackend, client, answer []byte) engineOutcome {
	backend.reset(answer)
	c, err := net.Dial("tcp", gwAddr(gw))
	if err != nil {
		t.Fatal(err)
	}
	c = clientTLS(t, gw, c)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(fuzzWait))
	go func() { _, _ = c.Write(append(slices.Clip(client), fuzzSentinel...)) }()
	got, _ := io.ReadAll(c)
	c.Close()
	var o engineOutcome
	br := bufio.NewReader(bytes.NewReader(got))
	// A HEAD's answer has no body: read each answer as the answer to the
	// method of the request it answers, as far as the client bytes say.
	methods := requestMethods(client)
	for i := 0; ; i++ {
		method := http.MethodGet
		if i < len(methods) {
			method = methods[i]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			break
		}
		if resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
			t.Fatalf("the gateway answered in %s, not HTTP/1.1, to client %q, backend answer %q", resp.Proto, client, answer)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			body = append(body, "<cut>"...)
		}
		o.client = append(o.client, normalAnswer(resp, body))
	}
	rest, _ := io.ReadAll(br)
	o.rest = string(rest)
	o.backend = backend.received()
	if strings.HasPrefix(gw.url, "https://") {
		// The one difference TLS makes: the gateway says so.
		for i, r := range o.backend {
			o.backend[i] = strings.Replace(r, "|x-forwarded-proto: https|", "|x-forwarded-proto: http|", 1)
		}
	}
	return o
}

// requestMethods returns the methods of the request lines in raw, in order
// (a rough split: enough to read HEAD answers right).
func requestMethods(raw []byte) []string {
	var ms []string
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if f := bytes.Fields(line); len(f) == 3 && bytes.HasPrefix(f[2], []byte("HTTP/")) {
			ms = append(ms, string(f[0]))
		}
	}
	return ms
}

func normalAnswer(resp *http.Response, body []byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%03d", resp.StatusCode)
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		if k != "Date" && k != "X-Request-Id" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%q", strings.ToLower(k), resp.Header[k])
	}
	fmt.Fprintf(&b, " body=%q", body)
	return b.String()
}

// fuzzBackend answers every request, on each connection, with the raw
// bytes set for the input, then closes the connection; it records the
// requests it read, normalised.
type fuzzBackend struct {
	url string

	mu     sync.Mutex
	answer []byte
	got    []string
}

func startFuzzBackend(tb testing.TB) *fuzzBackend {
	b := &fuzzBackend{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	var wg sync.WaitGroup
	tb.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { b.serve(c) })
		}
	})
	return b
}

func (b *fuzzBackend) reset(answer []byte) {
	b.mu.Lock()
	b.answer, b.got = answer, nil
	b.mu.Unlock()
}

func (b *fuzzBackend) received() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.got)
}

// serve reads one request (its head, then a Content-Length or chunked
// body), records it and answers it.
func (b *fuzzBackend) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(fuzzWait))
	var in []byte
	buf := make([]byte, 16<<10)
	for !requestComplete(in) {
		n, err := c.Read(buf)
		in = append(in, buf[:n]...)
		if err != nil {
			break
		}
	}
	if len(in) == 0 {
		return
	}
	b.mu.Lock()
	b.got = append(b.got, normalRequest(in))
	answer := b.answer
	b.mu.Unlock()
	_, _ = c.Write(answer)
}

// requestComplete reports whether raw holds a whole request as the
// gateway frames the ones it sends (Content-Length or chunked).
func requestComplete(raw []byte) bool {
	end := policy.HeadEnd(raw)
	if end < 0 {
		return false
	}
	head := strings.ToLower(string(raw[:end]))
	if strings.Contains(head, "\ntransfer-encoding:") {
		return bytes.HasSuffix(raw, []byte("0\r\n\r\n"))
	}
	if i := strings.Index(head, "\ncontent-length:"); i >= 0 {
		v := head[i+len("\ncontent-length:"):]
		v = strings.TrimSpace(v[:strings.IndexByte(v, '\n')])
		n, err := strconv.Atoi(v)
		return err != nil || len(raw)-end >= n
	}
	return true
}

// normalRequest is a received request with header names in lower case and
// X-Request-Id left out (a generated one differs from run to run).
func normalRequest(raw []byte) string {
	end := policy.HeadEnd(raw)
	if end < 0 {
		return "incomplete: " + string(raw)
	}
	lines := strings.Split(strings.TrimRight(string(raw[:end]), "\r\n"), "\n")
	var b strings.Builder
	b.WriteString(strings.TrimRight(lines[0], "\r"))
	for _, l := range lines[1:] {
		l = strings.TrimRight(l, "\r")
		name, value, _ := strings.Cut(l, ":")
		if strings.EqualFold(name, "X-Request-Id") {
			continue
		}
		fmt.Fprintf(&b, "|%s:%s", strings.ToLower(name), value)
	}
	fmt.Fprintf(&b, "|body=%q", raw[end:])
	return b.String()
}

// engineSeeds: request smuggling and framing cases, and backend answers
// that try to desynchronise the connection.
var engineSeeds = []struct{ client, backend string }{
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	// CL.TE, TE.CL and TE.TE obfuscations.
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \tchunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	// Duplicate and signed Content-Length; chunk-size overflow.
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nbody", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nContent-Length: +4\r\n\r\nbody", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff1\r\na\r\n0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	// obs-fold, bare LF, NUL, a space in a name.
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n 2\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/x HTTP/1.1\nHost: a\n\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\nX-A: a\x00b\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	// Trailers, pipelining, dot segments, versions, forwarded headers.
	{"POST /ep/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Model-Deployment: green\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/a HTTP/1.1\r\nHost: a\r\n\r\nGET /ep/b HTTP/1.1\r\nHost: a\r\n\r\nGET /nope/c HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/a/../../admin HTTP/1.1\r\nHost: a\r\n\r\nGET /ep/a/%2e%2E/b HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/x HTTP/1.0\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/x HTTP/9.9\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\nX-Forwarded-For: 5.6.7.8\r\nX-Forwarded-Host: evil\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
	// HEAD and 204 with bodies, answers with extra bytes, both framings,
	// an unasked upgrade, a chunked answer, an answer until close.
	{"HEAD /ep/x HTTP/1.1\r\nHost: a\r\n\r\nGET /ep/y HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 204 No Content\r\n\r\nEVIL"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\nGET /ep/y HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\nuntil close"},
	{"GET /ep/x HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"},
}

// quietLogger drops the proxy's logs: fuzzing logs an error per input.
func quietLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
