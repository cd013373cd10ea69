package shadow

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/shadow/compare"
	"github.com/modelgate/modelgate/internal/shadow/mirrored"
	"github.com/modelgate/modelgate/internal/spec"
)

// clock is an injected clock that moves only when told.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := new(clock)
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 500_000_000, time.UTC).UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// quiet discards the Manager's log lines.
var quiet = slog.New(slog.DiscardHandler)

// newManager returns a Manager closed at the end of the test.
func newManager(t testing.TB, now func() time.Time) *Manager {
	t.Helper()
	m := NewManager(Options{Now: now, Logger: quiet})
	t.Cleanup(m.Close)
	return m
}

// endpoint declares endpoint "fraud" with a live deployment "blue" and a
// shadow "green" at backends, mirrored 100%.
func endpoint(cmp *spec.Compare, backends ...string) spec.Endpoint {
	return spec.Endpoint{
		Name: "fraud",
		Deployments: []spec.Deployment{
			{Name: "blue", Backends: []string{"http://127.0.0.1:1"}},
			{Name: "green", Backends: backends},
		},
		Traffic: spec.Weights{"blue": spec.Full},
		Mirror:  spec.Weights{"green": spec.Full},
		Compare: cmp,
	}
}

// settings is a compare section with the given queue, workers and timeout.
func settings(queue, workers int, timeout time.Duration) *spec.Compare {
	return &spec.Compare{Queue: queue, Workers: workers, ShadowTimeout: spec.Duration(timeout)}
}

// setShadows configures eps or fails the test.
func setShadows(t testing.TB, m *Manager, eps ...spec.Endpoint) {
	t.Helper()
	if err := m.SetShadows(eps); err != nil {
		t.Fatalf("SetShadows: %v", err)
	}
}

// liveAnswer is what the fake live deployment answered.
const liveAnswer = `{"predictions":[0.25,0.75]}`

// newCopy fills a pooled Copy for shadow fraud/green as the data plane
// would, with request id "req-<i>".
func newCopy(m *Manager, i int) *mirrored.Copy {
	c := m.Get()
	c.Endpoint, c.Deployment, c.LiveDeployment = "fraud", "green", "blue"
	c.RequestID = "req-" + strconv.Itoa(i)
	c.Method, c.URI = http.MethodPost, "/v1/models/fraud:predict?x=1"
	c.Headers = append(c.Headers, "Content-Type", "application/json", "X-User-Id", "u7")
	c.Body = append(c.Body, `{"instances":[[1,2]]}`...)
	c.Live = compare.Response{Status: 200, ContentType: "application/json", Body: append(c.Live.Body, liveAnswer...)}
	c.LiveLatency, c.LiveTTFB = 20*time.Millisecond, 19*time.Millisecond
	c.Start = time.Now()
	return c
}

// server starts a shadow backend answering with h, closed at the end of
// the test.
func server(t testing.TB, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// agree answers every request with the live answer.
func agree(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, liveAnswer)
}

// hangingServer starts a shadow backend that never answers: it reads the
// request and waits until the client gives up or the test ends.
func hangingServer(t testing.TB) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		// Reading the body to its end lets the server notice the client
		// closing the connection, which cancels r.Context().
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	return srv
}

// requestNumber is i of an X-Request-Id "req-<i>".
func requestNumber(r *http.Request) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(r.Header.Get("X-Request-Id"), "req-"))
	return n
}

// outcomes is how many copies of shadow fraud/green reached an end.
func outcomes(m *Manager) uint64 {
	st := m.stats(key{"fraud", "green"})
	if st == nil {
		return 0
	}
	var n uint64
	for _, k := range []kind{kindDropped, kindSkipped, kindMatched, kindMismatched, kindNotCompared, kindError, kindTimeout} {
		n += st.total[k].Load()
	}
	return n
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitOutcomes waits until n copies of fraud/green reached an end.
func waitOutcomes(t testing.TB, m *Manager, n uint64) {
	t.Helper()
	waitFor(t, strconv.FormatUint(n, 10)+" outcomes", func() bool { return outcomes(m) >= n })
}

// report is m.Report of fraud over window, failing the test on error.
func report(t testing.TB, m *Manager, window time.Duration) ShadowReport {
	t.Helper()
	rep, err := m.Report("fraud", window)
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	return rep.Shadows["green"]
}
