package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/store"
)

// sseMessage is one message read from an event stream.
type sseMessage struct {
	ID, Event, Data, Comment string
}

// sseReader parses server-sent events the way a browser does, enough
// for these tests: fields until a blank line.
type sseReader struct{ sc *bufio.Scanner }

func (r *sseReader) next(t *testing.T) sseMessage {
	t.Helper()
	var m sseMessage
	for r.sc.Scan() {
		line := r.sc.Text()
		if line == "" {
			return m
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "":
			m.Comment = value
		case "id":
			m.ID = value
		case "event":
			m.Event = value
		case "data":
			m.Data = value
		}
	}
	t.Fatalf("event stream ended: %v", r.sc.Err())
	return m
}

// nextEvent skips comments and decodes the next event, checking that its
// id and event fields agree with its data.
func (r *sseReader) nextEvent(t *testing.T) store.Event {
	t.Helper()
	for {
		m := r.next(t)
		if m.Comment != "" && m.Data == "" {
			continue
		}
		var ev store.Event
		if err := json.Unmarshal([]byte(m.Data), &ev); err != nil {
			t.Fatalf("data %q: %v", m.Data, err)
		}
		if want := ev.Type; m.Event != want {
			t.Errorf("event: %q, want %q", m.Event, want)
		}
		if want := jsonUint(ev.Seq); m.ID != want {
			t.Errorf("id: %q, want %q", m.ID, want)
		}
		return ev
	}
}

func jsonUint(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// openStream connects to the event stream; cancel ends the connection.
func openStream(t *testing.T, srv *httptest.Server, query string, header http.Header) (*sseReader, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/v1/events/stream"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("stream = %d, want 200", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q, want text/event-stream", ct)
	}
	return &sseReader{sc: bufio.NewScanner(resp.Body)}, cancel
}

func fakeWithEvents(n int) *admintest.Backend {
	f := newFake()
	for i := range n {
		ep := "fraud"
		if i%2 == 1 {
			ep = "other"
		}
		f.AddEvent(store.Event{Endpoint: ep, Type: "traffic.changed", Actor: "api", Message: "change"})
	}
	return f
}

func TestStreamResumes(t *testing.T) {
	tests := []struct {
		name      string
		query     string
		lastID    string
		wantFirst uint64
	}{
		{"from the start", "", "", 1},
		{"Last-Event-ID", "", "2", 3},
		{"since", "?since=3", "", 4},
		{"Last-Event-ID wins over since", "?since=1", "3", 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fakeWithEvents(4)
			srv := httptest.NewServer(New(Options{Backend: f, Token: testToken}))
			defer srv.Close()
			h := http.Header{}
			if tc.lastID != "" {
				h.Set("Last-Event-ID", tc.lastID)
			}
			r, cancel := openStream(t, srv, tc.query, h)
			for seq := tc.wantFirst; seq <= 4; seq++ {
				got := r.nextEvent(t)
				if diff := cmp.Diff(f.EventLog()[seq-1], got); diff != "" {
					t.Fatalf("event %d (-want +got):\n%s", seq, diff)
				}
			}
			// A new event reaches the open stream as soon as it is stored.
			f.AddEvent(store.Event{Endpoint: "fraud", Type: "mirror.changed", Message: "live"})
			got := r.nextEvent(t)
			if got.Seq != 5 || got.Message != "live" {
				t.Errorf("live event = %+v, want seq 5 live", got)
			}
			// The client goes: the handler lets go of its watch.
			cancel()
			f.WaitWatchers()
		})
	}
}

func TestStreamFiltersEndpoint(t *testing.T) {
	f := fakeWithEvents(5)
	srv := httptest.NewServer(New(Options{Backend: f, Token: testToken}))
	defer srv.Close()
	r, cancel := openStream(t, srv, "?endpoint=fraud", nil)
	defer cancel()
	for _, want := range []uint64{1, 3, 5} {
		if got := r.nextEvent(t); got.Seq != want || got.Endpoint != "fraud" {
			t.Errorf("event = %d %s, want %d fraud", got.Seq, got.Endpoint, want)
		}
	}
}

func TestStreamRewatchesWhenWatchEndsEarly(t *testing.T) {
	f := fakeWithEvents(5)
	f.WatchCloseAfter = 2
	srv := httptest.NewServer(New(Options{Backend: f, Token: testToken}))
	defer srv.Close()
	r, cancel := openStream(t, srv, "", nil)
	defer cancel()
	for want := uint64(1); want <= 5; want++ {
		if got := r.nextEvent(t); got.Seq != want {
			t.Fatalf("event seq = %d, want %d (each once, in order)", got.Seq, want)
		}
	}
	if watches := f.Watches(); watches != 3 {
		t.Errorf("watches = %d, want 3 (resumed twice)", watches)
	}
}

// flushRecorder is a ResponseWriter for a handler running inside a
// synctest bubble, where a real connection cannot be used.
type flushRecorder struct {
	mu     sync.Mutex
	header http.Header
	body   strings.Builder
	code   int
}

func (f *flushRecorder) Header() http.Header { return f.header }

func (f *flushRecorder) WriteHeader(code int) { f.code = code }

func (f *flushRecorder) Write(b []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body.Write(b)
}

func (f *flushRecorder) Flush() {}

func (f *flushRecorder) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.body.String()
}

func TestStreamKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		s := newServer(Options{Backend: f, Token: testToken})
		ctx, cancel := context.WithCancel(t.Context())
		req := httptest.NewRequest("GET", "/api/v1/events/stream", nil).WithContext(ctx)
		w := &flushRecorder{header: http.Header{}}
		done := make(chan struct{})
		go func() {
			s.stream(w, req)
			close(done)
		}()

		synctest.Wait()
		if got, want := w.String(), ": stream open\n\n"; got != want {
			t.Fatalf("stream start = %q, want %q", got, want)
		}
		time.Sleep(KeepAliveInterval - time.Second)
		synctest.Wait()
		if strings.Contains(w.String(), "keep-alive") {
			t.Fatalf("keep-alive sent before %v", KeepAliveInterval)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := strings.Count(w.String(), ": keep-alive\n\n"); got != 1 {
			t.Fatalf("after %v: %d keep-alives, want 1:\n%s", KeepAliveInterval, got, w.String())
		}
		f.AddEvent(store.Event{Endpoint: "fraud", Type: "traffic.changed", Message: "m"})
		synctest.Wait()
		if !strings.Contains(w.String(), "id: 1\nevent: traffic.changed\ndata: {\"seq\":1,") {
			t.Errorf("event not written:\n%s", w.String())
		}
		cancel()
		<-done
	})
}
