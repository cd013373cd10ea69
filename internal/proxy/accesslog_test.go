package proxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/proxy/accesslog"
	"github.com/modelgate/modelgate/internal/spec"
)

// lockedBuffer is an access log destination the test reads while the
// writer goroutine writes it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSuffix(b.buf.String(), "\n"), "\n")
}

type accessLine struct {
	Time       string  `json:"time"`
	Level      string  `json:"level"`
	Msg        string  `json:"msg"`
	Client     string  `json:"client"`
	Method     string  `json:"method"`
	Path       string  `json:"path"`
	Endpoint   string  `json:"endpoint"`
	Deployment string  `json:"deployment"`
	Status     int     `json:"status"`
	Bytes      int64   `json:"bytes"`
	DurationMS float64 `json:"duration_ms"`
	RequestID  string  `json:"request_id"`
}

// TestAccessLog: every request the data plane answers gets one line, the
// same in every engine: a whole answer, a streamed one (its bytes counted
// as they pass), a backend that is down, and a request refused before a
// deployment is picked.
func TestAccessLog(t *testing.T) {
	whole := named(t, "blue")
	chunks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			_, _ = w.Write([]byte("chunk"))
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(chunks.Close)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		out := &lockedBuffer{}
		log := accesslog.New(out, accesslog.Options{Format: accesslog.JSON})
		t.Cleanup(func() { log.Close() })
		opts.AccessLog = log
		gw := modeGateway(t, opts,
			mkEndpoint(t, "fraud", spec.Weights{"blue": spec.Full}, dep("blue", whole.URL)),
			mkEndpoint(t, "stream", spec.Weights{"green": spec.Full}, dep("green", chunks.URL)),
			mkEndpoint(t, "gone", spec.Weights{"red": spec.Full}, dep("red", down.URL)))

		req, _ := http.NewRequest(http.MethodPost, gw.url+"/fraud/v1/models/m:predict?secret=1", strings.NewReader(`{"instances":[1]}`))
		req.Header.Set("X-Request-Id", "rid-1")
		if a := do(t, req); a.status != 200 || a.body != "blue" {
			t.Fatalf("POST = %d %q", a.status, a.body)
		}
		if a := get(t, gw.url+"/stream/tokens"); a.status != 200 || a.body != "chunkchunkchunk" {
			t.Fatalf("GET stream = %d %q", a.status, a.body)
		}
		if a := get(t, gw.url+"/gone/x"); a.status != 502 {
			t.Fatalf("GET gone = %d %q, want 502", a.status, a.body)
		}
		unknown := get(t, gw.url+"/nope/x")
		if unknown.status != 404 {
			t.Fatalf("GET nope = %d, want 404", unknown.status)
		}
		eventually(t, "4 access log lines", func() bool { return log.Written() >= 4 })

		var got []accessLine
		for _, l := range out.lines() {
			var a accessLine
			if err := json.Unmarshal([]byte(l), &a); err != nil {
				t.Fatalf("access log line %q is not JSON: %v", l, err)
			}
			if a.Time == "" || a.Level != "INFO" || a.Msg != "access" || a.DurationMS < 0 || a.RequestID == "" {
				t.Errorf("line %q: want time, level INFO, msg access, a duration and a request id", l)
			}
			if host, _, err := net.SplitHostPort(a.Client); err != nil || host != "127.0.0.1" {
				t.Errorf("line %q: client %q, want 127.0.0.1:port", l, a.Client)
			}
			a.Time, a.Level, a.Msg, a.Client, a.DurationMS = "", "", "", "", 0
			got = append(got, a)
		}
		if len(got) != 4 {
			t.Fatalf("access log has %d lines, want 4:\n%s", len(got), strings.Join(out.lines(), "\n"))
		}
		want := []accessLine{
			{Method: "POST", Path: "/fraud/v1/models/m:predict", Endpoint: "fraud", Deployment: "blue", Status: 200, Bytes: 4, RequestID: "rid-1"},
			{Method: "GET", Path: "/stream/tokens", Endpoint: "stream", Deployment: "green", Status: 200, Bytes: 15, RequestID: got[1].RequestID},
			{Method: "GET", Path: "/gone/x", Endpoint: "gone", Deployment: "red", Status: 502, Bytes: got[2].Bytes, RequestID: got[2].RequestID},
			{Method: "GET", Path: "/nope/x", Status: 404, Bytes: int64(len(unknown.body)), RequestID: unknown.header.Get("X-Request-Id")},
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("line %d = %+v\nwant       %+v", i, got[i], want[i])
			}
		}
		if got[2].Bytes == 0 {
			t.Errorf("the 502's line counts no bytes of its error body")
		}
		if log.Dropped() != 0 {
			t.Errorf("dropped %d lines with a writer keeping up", log.Dropped())
		}
	})
}

// blockedWriter blocks every Write until released, counting the writes
// that started.
type blockedWriter struct {
	started chan struct{}
	release chan struct{}
}

func (w *blockedWriter) Write(p []byte) (int, error) {
	w.started <- struct{}{}
	<-w.release
	return len(p), nil
}

// TestAccessLogDropsWhenBlocked: a writer that stops writing never holds
// up a request; past the buffer its lines are dropped and counted.
func TestAccessLogDropsWhenBlocked(t *testing.T) {
	backend := named(t, "blue")
	forEachMode(t, func(t *testing.T, opts Options) {
		w := &blockedWriter{started: make(chan struct{}, 100), release: make(chan struct{})}
		log := accesslog.New(w, accesslog.Options{Buffer: 2})
		t.Cleanup(func() {
			close(w.release)
			log.Close()
		})
		opts.AccessLog = log
		gw := modeGateway(t, opts, mkEndpoint(t, "fraud", spec.Weights{"blue": spec.Full}, dep("blue", backend.URL)))
		if a := get(t, gw.url+"/fraud/x"); a.status != 200 {
			t.Fatalf("GET = %d", a.status)
		}
		select { // the writer holds the first line and is stuck
		case <-w.started:
		case <-time.After(10 * time.Second):
			t.Fatal("no access log line reached the writer")
		}
		const n = 6
		for i := range n {
			if a := get(t, gw.url+fmt.Sprintf("/fraud/%d", i)); a.status != 200 {
				t.Fatalf("GET %d = %d", i, a.status)
			}
		}
		// 2 lines wait in the buffer; the rest were dropped.
		eventually(t, "dropped lines counted", func() bool { return log.Dropped() == n-2 })
	})
}
