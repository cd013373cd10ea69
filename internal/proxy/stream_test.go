package proxy

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// holdingBackend sends first, flushes, then waits for release (or the
// request to end) before sending rest.
func holdingBackend(t *testing.T, contentType, first, rest string, release <-chan struct{}) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, rest)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// readWithin reads from r until want has been read or d passes.
func readWithin(t *testing.T, r io.Reader, want string, d time.Duration) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, len(want))
		n, _ := io.ReadFull(r, buf)
		got <- string(buf[:n])
	}()
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("read %q, want %q", s, want)
		}
	case <-time.After(d):
		t.Fatalf("%q did not arrive within %v: the proxy buffers the stream", want, d)
	}
}

func TestStreamingPassesChunksThrough(t *testing.T) { forEachMode(t, testStreamingPassesChunksThrough) }

func testStreamingPassesChunksThrough(t *testing.T, opts Options) {
	tests := []struct {
		name        string
		contentType string
		first, rest string
	}{
		{"server-sent events", "text/event-stream", "data: {\"token\":\"Hel\"}\n\n", "data: {\"token\":\"lo\"}\n\ndata: [DONE]\n\n"},
		{"chunked JSON lines", "application/x-ndjson", "{\"token\":\"Hel\"}\n", "{\"token\":\"lo\"}\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			backend := holdingBackend(t, tc.contentType, tc.first, tc.rest, release)
			d := dep("llm", backend.URL)
			// The stream outlives the header timeout: it must bound only
			// the wait for headers.
			d.Timeout = spec.Duration(100 * time.Millisecond)
			gw := modeGateway(t, opts, mkEndpoint(t, "chat", nil, d))

			start := time.Now()
			resp, err := client.Get(gw.url + "/chat/v1/completions")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Model-Deployment") != "llm" || resp.Header.Get("X-Request-Id") == "" {
				t.Fatalf("got %d with headers %v", resp.StatusCode, resp.Header)
			}
			if ct := resp.Header.Get("Content-Type"); ct != tc.contentType {
				t.Errorf("Content-Type = %q, want %q", ct, tc.contentType)
			}
			// The backend is still holding the rest: the first chunk must
			// arrive anyway.
			readWithin(t, resp.Body, tc.first, 10*time.Second)
			<-time.After(time.Until(start.Add(2 * d.Timeout.D())))
			close(release)
			rest, err := io.ReadAll(resp.Body)
			if err != nil || string(rest) != tc.rest {
				t.Fatalf("rest = %q, %v; want %q", rest, err, tc.rest)
			}
			var obs []observation
			eventually(t, "the stream is recorded", func() bool {
				obs = gw.recs.observations("chat/llm")
				return len(obs) == 1
			})
			if o := obs[0]; o.Status != 200 || o.TTFB <= 0 || o.Latency <= d.Timeout.D() || o.TTFB >= o.Latency {
				t.Errorf("observation %+v: want 200, TTFB < Latency, Latency past the timeout", o)
			}
		})
	}
}

func TestStreamIdleTimeoutAbortsConnection(t *testing.T) {
	forEachMode(t, testStreamIdleTimeoutAbortsConnection)
}

func testStreamIdleTimeoutAbortsConnection(t *testing.T, opts Options) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	backend := holdingBackend(t, "text/event-stream", "data: 1\n\n", "data: 2\n\n", release)
	d := dep("llm", backend.URL)
	d.StreamIdleTimeout = spec.Duration(50 * time.Millisecond)
	gw := modeGateway(t, opts, mkEndpoint(t, "chat", nil, d))

	_, br, resp := rawGet(t, gw.url, "/chat/stream")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	readWithin(t, resp.Body, "data: 1\n\n", 10*time.Second)
	// The backend stalls past the idle timeout: the proxy must cut the
	// connection rather than end the chunked body as if it were complete.
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("stream ended cleanly with %q after the backend stalled; want the connection aborted", rest)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Errorf("connection still open after the abort")
	}
	eventually(t, "the stalled stream is recorded as 504", func() bool {
		obs := gw.recs.observations("chat/llm")
		return len(obs) == 1 && obs[0].Status == http.StatusGatewayTimeout
	})
}

func TestStreamBodyFailsMidway(t *testing.T) { forEachMode(t, testStreamBodyFailsMidway) }

func testStreamBodyFailsMidway(t *testing.T, opts Options) {
	// A known-length body the backend cuts short is aborted too.
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, "only part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler) // closes the connection
	}))
	t.Cleanup(backend.Close)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))
	resp, err := client.Get(gw.url + "/fraud/p")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatalf("truncated body read without error")
	}
	eventually(t, "the failed body is recorded as 502", func() bool {
		obs := gw.recs.observations("fraud/blue")
		return len(obs) == 1 && obs[0].Status == http.StatusBadGateway
	})
}

func TestClientGoneIsRecorded(t *testing.T) { forEachMode(t, testClientGoneIsRecorded) }

func testClientGoneIsRecorded(t *testing.T, opts Options) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := io.WriteString(w, "data: x\n\n"); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
			}
		}
	}))
	t.Cleanup(backend.Close)
	gw := modeGateway(t, opts, mkEndpoint(t, "chat", nil, dep("llm", backend.URL)))

	c, _, resp := rawGet(t, gw.url, "/chat/stream")
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "data: x") {
		t.Fatalf("first line %q, %v", line, err)
	}
	c.Close()
	eventually(t, "the departed client is recorded as 499", func() bool {
		obs := gw.recs.observations("chat/llm")
		return len(obs) == 1 && obs[0].Status == StatusClientClosed
	})
}

func TestShutdownDrainsInFlight(t *testing.T) { forEachMode(t, testShutdownDrainsInFlight) }

func testShutdownDrainsInFlight(t *testing.T, opts Options) {
	arrived, release := make(chan struct{}), make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	t.Cleanup(backend.Close)
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, dep("blue", backend.URL)))

	got := make(chan answer, 1)
	go func() { got <- get(t, gw.url+"/fraud/p") }()
	<-arrived
	shut := make(chan error, 1)
	go func() { shut <- gw.Shutdown(context.Background()) }()
	// New connections are refused once shutdown began, but the request in
	// flight is not cut, and Shutdown waits for it.
	waitListenerClosedWhileInFlight(t, gw, shut)
	close(release)
	if a := <-got; a.status != 200 || a.body != "done" {
		t.Fatalf("in-flight request got %d %q, want 200 done", a.status, a.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownCutsStreamsWhenContextEnds(t *testing.T) {
	forEachMode(t, testShutdownCutsStreamsWhenContextEnds)
}

func testShutdownCutsStreamsWhenContextEnds(t *testing.T, opts Options) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	backend := holdingBackend(t, "text/event-stream", "data: 1\n\n", "data: 2\n\n", release)
	gw := modeGateway(t, opts, mkEndpoint(t, "chat", nil, dep("llm", backend.URL)))

	_, _, resp := rawGet(t, gw.url, "/chat/stream")
	readWithin(t, resp.Body, "data: 1\n\n", 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the drain deadline has already passed
	if err := gw.Shutdown(ctx); err != context.Canceled {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	if rest, err := io.ReadAll(resp.Body); err == nil {
		t.Fatalf("stream ended cleanly (%q) after a cut shutdown; want it aborted", rest)
	}
}
