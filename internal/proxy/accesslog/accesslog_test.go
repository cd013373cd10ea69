package accesslog

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func entry() Entry {
	return Entry{
		Time:   time.Date(2026, 12, 7, 20, 10, 0, 123456789, time.UTC),
		Client: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 51234},
		Method: []byte("POST"), Path: []byte("/fraud/v1/models/m:predict"),
		Endpoint: "fraud", Deployment: "blue", Status: 200, Bytes: 23,
		Duration: 1234567 * time.Nanosecond, RequestID: []byte("rid-1"),
	}
}

func TestAppendLine(t *testing.T) {
	e := entry()
	text := string(AppendLine(nil, Text, &e))
	want := "time=2026-12-07T20:10:00.123Z level=INFO msg=access client=10.0.0.7:51234 method=POST path=/fraud/v1/models/m:predict endpoint=fraud deployment=blue status=200 bytes=23 duration_ms=1.235 request_id=rid-1\n"
	if text != want {
		t.Errorf("text line\n got %q\nwant %q", text, want)
	}
	js := string(AppendLine(nil, JSON, &e))
	want = `{"time":"2026-12-07T20:10:00.123456789Z","level":"INFO","msg":"access","client":"10.0.0.7:51234","method":"POST","path":"/fraud/v1/models/m:predict","endpoint":"fraud","deployment":"blue","status":200,"bytes":23,"duration_ms":1.235,"request_id":"rid-1"}` + "\n"
	if js != want {
		t.Errorf("json line\n got %q\nwant %q", js, want)
	}

	// What a client controls (path, method, request id) is quoted in text
	// and escaped in JSON: a line stays one line and valid JSON.
	e.Path = []byte("/a b\"c\\d\n\x01é\xff")
	e.RequestID = []byte(`x" "level":"ERROR`)
	e.Endpoint, e.Deployment, e.Client = "", "", nil
	text = string(AppendLine(nil, Text, &e))
	if strings.Count(text, "\n") != 1 || !strings.Contains(text, ` path="/a b\"c\\d\n\x01é\xff" `) ||
		!strings.Contains(text, ` client="" `) || !strings.Contains(text, ` endpoint="" deployment="" `) ||
		!strings.HasSuffix(text, ` request_id="x\" \"level\":\"ERROR"`+"\n") {
		t.Errorf("text line with odd values: %q", text)
	}
	line := AppendLine(nil, JSON, &e)
	var got map[string]any
	if bytes.Count(line, []byte("\n")) != 1 {
		t.Errorf("json line spans lines: %q", line)
	}
	if err := json.Unmarshal(line, &got); err != nil {
		t.Fatalf("json line %q: %v", line, err)
	}
	if got["path"] != "/a b\"c\\d\n\x01é\ufffd" || got["request_id"] != `x" "level":"ERROR` || got["level"] != "INFO" || got["endpoint"] != "" {
		t.Errorf("json line decodes to %v", got)
	}
}

func TestAppendLineAllocs(t *testing.T) {
	e := entry()
	buf := make([]byte, 0, 1024)
	for _, f := range []Format{Text, JSON} {
		if n := testing.AllocsPerRun(1000, func() { buf = AppendLine(buf[:0], f, &e) }); n != 0 {
			t.Errorf("AppendLine(%v) allocates %v times, want 0", f, n)
		}
	}
}

func TestParseFormat(t *testing.T) {
	if f, err := ParseFormat("json"); err != nil || f != JSON {
		t.Errorf("ParseFormat(json) = %v, %v", f, err)
	}
	if f, err := ParseFormat("text"); err != nil || f != Text {
		t.Errorf("ParseFormat(text) = %v, %v", f, err)
	}
	if _, err := ParseFormat("xml"); err == nil || err.Error() != `"xml": want text or json` {
		t.Errorf("ParseFormat(xml) = %v", err)
	}
}

// gate is a destination whose writes wait until it is opened; entered
// gets a value each time a write starts.
type gate struct {
	entered chan struct{}
	open    chan struct{}
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	g.entered <- struct{}{}
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

// TestDropWhenBehind: with the writer stuck, Add never waits; Buffer
// lines wait and the rest are dropped and counted; once the writer moves
// again the waiting lines are written.
func TestDropWhenBehind(t *testing.T) {
	g := &gate{entered: make(chan struct{}, 100), open: make(chan struct{})}
	l := New(g, Options{Buffer: 3})
	e := entry()
	l.Add(&e)
	select { // the writer holds the first line, stuck in Write
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the line added did not reach the writer")
	}
	for range 10 {
		l.Add(&e) // must not block
	}
	if d := l.Dropped(); d != 7 {
		t.Errorf("Dropped = %d with a buffer of 3 and 10 lines added behind a stuck writer, want 7", d)
	}
	close(g.open)
	l.Close()
	if w := l.Written(); w != 4 {
		t.Errorf("Written = %d, want 4 (the stuck line and the 3 that waited)", w)
	}
	if n := strings.Count(g.buf.String(), "\n"); n != 4 {
		t.Errorf("the destination got %d lines, want 4", n)
	}
	l.Add(&e)
	if d := l.Dropped(); d != 8 {
		t.Errorf("Dropped = %d after an Add past Close, want 8", d)
	}
}

type failing struct{}

func (failing) Write(p []byte) (int, error) { return 0, net.ErrClosed }

// TestWriteErrors: lines a failing destination did not take are counted
// as lost, and the failure is reported once.
func TestWriteErrors(t *testing.T) {
	var reports []error
	l := New(failing{}, Options{OnWriteError: func(err error) { reports = append(reports, err) }})
	e := entry()
	for range 3 {
		l.Add(&e)
	}
	l.Close()
	if l.Dropped() != 3 || l.Written() != 0 || len(reports) != 1 {
		t.Errorf("Dropped %d, Written %d, %d reports; want 3, 0, 1", l.Dropped(), l.Written(), len(reports))
	}
}

// BenchmarkAppendLine is the formatting of one line.
func BenchmarkAppendLine(b *testing.B) {
	e := entry()
	buf := make([]byte, 0, 1024)
	for _, f := range []Format{Text, JSON} {
		b.Run(f.String(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendLine(buf[:0], f, &e)
			}
		})
	}
}

// BenchmarkAdd is what a request pays for its line with the access log on
// (formatting and queueing), from parallel goroutines, the writer
// writing to io.Discard.
func BenchmarkAdd(b *testing.B) {
	for _, f := range []Format{Text, JSON} {
		b.Run(f.String(), func(b *testing.B) {
			l := New(io.Discard, Options{Format: f})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				e := entry()
				for pb.Next() {
					l.Add(&e)
				}
			})
			b.StopTimer()
			l.Close()
			b.ReportMetric(float64(l.Dropped())/float64(b.N), "dropped/op")
		})
	}
}
