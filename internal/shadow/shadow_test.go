package shadow

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
)

func TestAgreeingShadowMatchesAll(t *testing.T) {
	type seen struct {
		method, uri, id, shadow, user, ctype, body string
	}
	var mu sync.Mutex
	var got []seen
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, seen{r.Method, r.RequestURI, r.Header.Get("X-Request-Id"), r.Header.Get("X-Model-Shadow"),
			r.Header.Get("X-User-Id"), r.Header.Get("Content-Type"), string(b)})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, liveAnswer)
	})
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL+"/"))
	const n = 100
	for i := range n {
		if !m.Submit(newCopy(m, i)) {
			t.Fatalf("Submit(copy %d) = false, want true", i)
		}
	}
	waitOutcomes(t, m, n)

	r := report(t, m, 0)
	if r.Mirrored != n || r.Sent != n || r.Compared != n || r.Matched != n || r.Mismatched+r.Errors+r.Timeouts+r.Dropped != 0 {
		t.Errorf("report counts = %+v, want %d mirrored, sent, compared and matched, nothing else", r, n)
	}
	if r.MatchRate == nil || *r.MatchRate != 1 {
		t.Errorf("match rate = %v, want 1", r.MatchRate)
	}
	if ci := r.MatchRateCI95; ci == nil || ci[1] != 1 || ci[0] < 0.95 || ci[0] >= 1 {
		t.Errorf("match rate interval = %v, want [0.95.., 1]", ci)
	}
	if r.Protocol != "kserve_v1" {
		t.Errorf("protocol = %q, want kserve_v1", r.Protocol)
	}
	if r.LatencyMS.Shadow.P50 <= 0 || r.LatencyMS.Live.P50 < 19.8 || r.LatencyMS.Live.P50 > 20.2 {
		t.Errorf("latency = %+v, want shadow > 0 and live ≈ 20ms", r.LatencyMS)
	}
	mu.Lock()
	defer mu.Unlock()
	want := seen{"POST", "/v1/models/fraud:predict?x=1", "req-7", "true", "u7", "application/json", `{"instances":[[1,2]]}`}
	for _, s := range got {
		if s.id == "req-7" {
			if diff := cmp.Diff(want, s, cmp.AllowUnexported(seen{})); diff != "" {
				t.Errorf("shadow request (-want +got):\n%s", diff)
			}
			return
		}
	}
	t.Errorf("no shadow request with X-Request-Id req-7 among %d", len(got))
}

func TestDisagreeingShadowShowsItsShare(t *testing.T) {
	// Every 4th request (by id) gets a different prediction: a 75% match
	// rate, whatever order the workers take the copies in.
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if requestNumber(r)%4 == 0 {
			io.WriteString(w, `{"predictions":[0.25,0.5]}`)
			return
		}
		io.WriteString(w, liveAnswer)
	})
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL))
	const n = 400
	for i := range n {
		m.Submit(newCopy(m, i))
	}
	waitOutcomes(t, m, n)

	r := report(t, m, time.Minute)
	if r.Compared != n || r.Matched != 300 || r.Mismatched != 100 {
		t.Fatalf("compared, matched, mismatched = %d, %d, %d, want %d, 300, 100", r.Compared, r.Matched, r.Mismatched, n)
	}
	if r.MatchRate == nil || *r.MatchRate != 0.75 {
		t.Errorf("match rate = %v, want 0.75", r.MatchRate)
	}
	if ci := r.MatchRateCI95; ci == nil || !(ci[0] < 0.75 && 0.75 < ci[1]) || ci[1]-ci[0] > 0.1 {
		t.Errorf("match rate interval = %v, want it around 0.75 and narrower than 0.1", ci)
	}
	if len(r.Mismatches) != maxSamples {
		t.Fatalf("%d mismatch samples, want %d", len(r.Mismatches), maxSamples)
	}
	s := r.Mismatches[0]
	if s.Path != "predictions[1]" || s.Live != "0.75" || s.Shadow != "0.5" || !strings.HasPrefix(s.RequestID, "req-") ||
		requestNumber(&http.Request{Header: http.Header{"X-Request-Id": {s.RequestID}}})%4 != 0 {
		t.Errorf("mismatch sample = %+v, want predictions[1] 0.75 vs 0.5 of a request numbered 4k", s)
	}
	if want := `POST /v1/models/fraud:predict?x=1 {"instances":[[1,2]]}`; s.Request != want {
		t.Errorf("mismatch sample's request = %q, want %q", s.Request, want)
	}
	c := m.Counts("fraud", "green", time.Now().Add(-time.Minute))
	if want := (Counts{Compared: n, Matched: 300}); c != want {
		t.Errorf("Counts = %+v, want %+v", c, want)
	}
}

func TestFailingShadows(t *testing.T) {
	slow := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select { // the shadow under test is a slow model server
		case <-time.After(50 * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, liveAnswer)
	})
	hanging := hangingServer(t)
	down := server(t, agree)
	down.Close() // its port now refuses connections

	const n = 8
	tests := []struct {
		name    string
		url     string
		timeout time.Duration
		check   func(t *testing.T, r ShadowReport)
	}{
		{"slow", slow.URL, 5 * time.Second, func(t *testing.T, r ShadowReport) {
			if r.Matched != n || r.Errors+r.Timeouts != 0 {
				t.Errorf("matched, errors, timeouts = %d, %d, %d, want %d, 0, 0", r.Matched, r.Errors, r.Timeouts, n)
			}
			if r.LatencyMS.Shadow.P50 < 49 {
				t.Errorf("shadow p50 = %vms, want at least 50ms (within 1%%)", r.LatencyMS.Shadow.P50)
			}
		}},
		{"hanging", hanging.URL, 50 * time.Millisecond, func(t *testing.T, r ShadowReport) {
			if r.Timeouts != n || r.Errors+r.Compared != 0 {
				t.Errorf("timeouts, errors, compared = %d, %d, %d, want %d, 0, 0", r.Timeouts, r.Errors, r.Compared, n)
			}
			if r.LastError == nil || !strings.Contains(r.LastError.Error, "within the shadow timeout of 50ms") {
				t.Errorf("last error = %+v, want the shadow timeout named", r.LastError)
			}
		}},
		{"down", down.URL, 5 * time.Second, func(t *testing.T, r ShadowReport) {
			if r.Errors != n || r.Timeouts+r.Compared != 0 {
				t.Errorf("errors, timeouts, compared = %d, %d, %d, want %d, 0, 0", r.Errors, r.Timeouts, r.Compared, n)
			}
			if r.LastError == nil || !strings.Contains(r.LastError.Error, "refused") {
				t.Errorf("last error = %+v, want connection refused", r.LastError)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, nil)
			setShadows(t, m, endpoint(settings(100, 4, tc.timeout), tc.url))
			for i := range n {
				if !m.Submit(newCopy(m, i)) {
					t.Fatalf("Submit(copy %d) = false, want true", i)
				}
			}
			waitOutcomes(t, m, n)
			r := report(t, m, 0)
			if r.Mirrored != n || r.Sent != n {
				t.Errorf("mirrored, sent = %d, %d, want %d, %d", r.Mirrored, r.Sent, n, n)
			}
			tc.check(t, r)
			if tc.name != "slow" {
				// Gate rule: a copy without an answer counts as a mismatch.
				if r.MatchRate == nil || *r.MatchRate != 0 {
					t.Errorf("match rate = %v, want 0", r.MatchRate)
				}
				if c := m.Counts("fraud", "green", time.Now().Add(-time.Minute)); c != (Counts{Errors: n}) {
					t.Errorf("Counts = %+v, want %d errors", c, n)
				}
			}
		})
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	srv := hangingServer(t)
	m := newManager(t, nil)
	setShadows(t, m, endpoint(settings(2, 1, time.Minute), srv.URL))

	const n = 100
	accepted := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if m.Submit(newCopy(m, i)) {
				accepted++
			}
		}
	}()
	// Were Submit to wait for the hanging shadow, this would time out.
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Submit blocked on a full queue")
	}
	// The worker holds at most one copy and the queue two.
	if accepted < 2 || accepted > 3 {
		t.Errorf("%d copies accepted, want 2 or 3 (queue 2, one worker)", accepted)
	}
	sh := m.table.Load().active[key{"fraud", "green"}]
	if l := len(sh.pool.Load().queue); l > 2 {
		t.Errorf("queue holds %d copies, want at most 2", l)
	}
	r := report(t, m, 0)
	if r.Mirrored != n || r.Dropped != uint64(n-accepted) {
		t.Errorf("mirrored, dropped = %d, %d, want %d, %d", r.Mirrored, r.Dropped, n, n-accepted)
	}

	// Memory stays bounded: dropping allocates nothing.
	c := m.Get()
	allocs := testing.AllocsPerRun(1000, func() {
		c.Endpoint, c.Deployment = "fraud", "green"
		m.Submit(c)
		c = m.Get()
	})
	if allocs != 0 {
		t.Errorf("Submit to a full queue allocates %v times, want 0", allocs)
	}
}

func TestSkippedAndUnknown(t *testing.T) {
	srv := server(t, agree)
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL))

	c := newCopy(m, 1)
	c.BodyTruncated = true
	if !m.Submit(c) {
		t.Errorf("Submit(truncated copy) = false, want true")
	}
	c = newCopy(m, 2)
	c.Deployment = "red"
	if m.Submit(c) {
		t.Errorf("Submit(copy for an unknown shadow) = true, want false")
	}
	r := report(t, m, 0)
	if r.Mirrored != 1 || r.Skipped != 1 || r.Sent != 0 {
		t.Errorf("mirrored, skipped, sent = %d, %d, %d, want 1, 1, 0", r.Mirrored, r.Skipped, r.Sent)
	}
	if got := m.orphans.Load(); got != 1 {
		t.Errorf("orphaned copies = %d, want 1", got)
	}
}

func TestNotCompared(t *testing.T) {
	srv := server(t, agree)
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL))
	c := newCopy(m, 1)
	c.Live.Truncated = true // the live body was over the capture cap
	m.Submit(c)
	waitOutcomes(t, m, 1)
	r := report(t, m, 0)
	if r.NotCompared != 1 || r.Sent != 1 || r.Compared != 0 || r.MatchRate != nil || r.MatchRateCI95 != nil {
		t.Errorf("report = %+v, want 1 sent, not compared, no match rate", r)
	}
}

func TestShadowStatusMismatchIsNotAnError(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "model crashed", http.StatusInternalServerError)
	})
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL))
	m.Submit(newCopy(m, 1))
	waitOutcomes(t, m, 1)
	r := report(t, m, 0)
	if r.Mismatched != 1 || r.Errors != 0 || len(r.Mismatches) != 1 || r.Mismatches[0].Path != "status" {
		t.Errorf("report = %+v, want one status mismatch, no error", r)
	}
}

func TestShadowAnswerOverCapIsNotCompared(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"predictions":[`+strings.Repeat("0.1,", 100)+`0.1]}`)
	})
	m := newManager(t, nil)
	setShadows(t, m, endpoint(&spec.Compare{MaxBodyBytes: 64}, srv.URL))
	m.Submit(newCopy(m, 1))
	waitOutcomes(t, m, 1)
	if r := report(t, m, 0); r.NotCompared != 1 {
		t.Errorf("not compared = %d, want 1 (shadow body over the 64-byte cap)", r.NotCompared)
	}
}

func TestRoundRobinBackends(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	h := func(name string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			hits[name]++
			mu.Unlock()
			agree(w, r)
		}
	}
	a, b := server(t, h("a")), server(t, h("b"))
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, a.URL, b.URL))
	for i := range 10 {
		m.Submit(newCopy(m, i))
	}
	waitOutcomes(t, m, 10)
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff(map[string]int{"a": 5, "b": 5}, hits); diff != "" {
		t.Errorf("hits per backend (-want +got):\n%s", diff)
	}
}

func TestSetShadowsReconfigureKeepsStatsRemovalStopsWorkers(t *testing.T) {
	srv := server(t, agree)
	before := runtime.NumGoroutine()
	m := NewManager(Options{Logger: quiet})
	defer m.Close()
	setShadows(t, m, endpoint(settings(10, 2, time.Second), srv.URL))
	m.Submit(newCopy(m, 1))
	waitOutcomes(t, m, 1)

	// New comparison settings, same queue and workers: same pool.
	p := m.table.Load().active[key{"fraud", "green"}].pool.Load()
	setShadows(t, m, endpoint(&spec.Compare{Queue: 10, Workers: 2, ShadowTimeout: spec.Duration(time.Second), Comparator: spec.ComparatorExact}, srv.URL))
	if got := m.table.Load().active[key{"fraud", "green"}].pool.Load(); got != p {
		t.Errorf("pool replaced although queue and workers are unchanged")
	}
	// A bigger queue and more workers: a new pool, the same statistics.
	setShadows(t, m, endpoint(settings(50, 3, time.Second), srv.URL))
	if got := m.table.Load().active[key{"fraud", "green"}].pool.Load(); got == p || cap(got.queue) != 50 {
		t.Errorf("pool not replaced with a queue of 50")
	}
	m.Submit(newCopy(m, 2))
	waitOutcomes(t, m, 2)
	if r := report(t, m, 0); r.Matched != 2 || !r.Active {
		t.Errorf("matched = %d, active = %v after reconfiguring, want 2, true", r.Matched, r.Active)
	}

	// Mirror 0: the shadow goes, its workers and connections with it.
	ep := endpoint(nil, srv.URL)
	ep.Mirror = spec.Weights{"green": 0}
	setShadows(t, m, ep)
	waitFor(t, "the shadow's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if m.Submit(newCopy(m, 3)) {
		t.Errorf("Submit to a removed shadow = true, want false")
	}
	r := report(t, m, 0)
	if r.Active || r.Matched != 2 || r.Mirrored != 3 || r.Dropped != 1 {
		t.Errorf("report of the removed shadow = %+v, want inactive, 2 matched, 3 mirrored, 1 dropped", r)
	}

	// Back again: its statistics continue.
	setShadows(t, m, endpoint(nil, srv.URL))
	m.Submit(newCopy(m, 4))
	waitOutcomes(t, m, 4)
	if r := report(t, m, 0); r.Matched != 3 || !r.Active {
		t.Errorf("matched = %d, active = %v after coming back, want 3, true", r.Matched, r.Active)
	}
	m.Close()
	waitFor(t, "Close to end every goroutine", func() bool { return runtime.NumGoroutine() <= before })
}

func TestSetShadowsRejectsAndChangesNothing(t *testing.T) {
	srv := server(t, agree)
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL))

	bad := endpoint(&spec.Compare{RTol: new(-1.0), Queue: -1}, "ftp://x")
	bad.Mirror["purple"] = 100
	dup := endpoint(nil, srv.URL)
	err := m.SetShadows([]spec.Endpoint{bad, dup})
	if err == nil {
		t.Fatal("SetShadows(invalid) = nil, want problems")
	}
	var got []string
	for _, p := range spec.Problems(err) {
		got = append(got, p.Field)
	}
	want := []string{"endpoints[0].compare.rtol", "endpoints[0].compare.queue", "endpoints[0].deployments[1].backends[0]",
		"endpoints[0].mirror.purple", "endpoints[1].name"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problem fields (-want +got):\n%s\nerror: %v", diff, err)
	}
	if m.table.Load().active[key{"fraud", "green"}] == nil {
		t.Errorf("the existing shadow is gone after a rejected SetShadows")
	}
}

func TestReportWindows(t *testing.T) {
	// Every odd request mismatches.
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		if requestNumber(r)%2 == 1 {
			io.WriteString(w, `{"predictions":[1,0]}`)
			return
		}
		agree(w, r)
	})
	clk := newClock()
	m := newManager(t, clk.Now)
	setShadows(t, m, endpoint(nil, srv.URL))
	submit := func(from, to int) {
		for i := from; i < to; i++ {
			m.Submit(newCopy(m, i))
		}
		waitOutcomes(t, m, uint64(to))
	}
	start := clk.Now()
	submit(0, 10) // 5 matched, 5 mismatched at start
	clk.Advance(2 * time.Minute)
	submit(10, 14) // 2 matched, 2 mismatched two minutes later

	tests := []struct {
		name              string
		advance           time.Duration // before reading
		window            time.Duration
		matched, mismatch uint64
		samples           int
	}{
		{"last minute", 0, time.Minute, 2, 2, 2},
		{"five minutes", 0, 5 * time.Minute, 7, 7, 7},
		{"exactly to the first second", 0, 2 * time.Minute, 2, 2, 2}, // the first copies' second starts before the window
		{"just past the first second", 0, 2*time.Minute + 501*time.Millisecond, 7, 7, 7},
		{"later, 5m window", 20 * time.Minute, 5 * time.Minute, 0, 0, 0},
		{"later, 30m window from 10-s slices", 0, 30 * time.Minute, 7, 7, 7},
		{"an hour later", 40 * time.Minute, time.Hour, 0, 0, 0},
	}
	for _, tc := range tests {
		clk.Advance(tc.advance)
		r := report(t, m, tc.window)
		if r.Matched != tc.matched || r.Mismatched != tc.mismatch || len(r.Mismatches) != tc.samples {
			t.Errorf("%s: matched, mismatched, samples = %d, %d, %d, want %d, %d, %d",
				tc.name, r.Matched, r.Mismatched, len(r.Mismatches), tc.matched, tc.mismatch, tc.samples)
		}
	}

	// Counts since: the slices that start after since.
	clk.ns.Store(start.Add(3 * time.Minute).UnixNano())
	for _, tc := range []struct {
		since time.Time
		want  Counts
	}{
		{start.Add(-time.Second), Counts{Compared: 14, Matched: 7}},
		{start, Counts{Compared: 4, Matched: 2}}, // start's own second began before start
		{start.Add(2 * time.Minute), Counts{}},
	} {
		if got := m.Counts("fraud", "green", tc.since); got != tc.want {
			t.Errorf("Counts(since %v) = %+v, want %+v", tc.since.Sub(start), got, tc.want)
		}
	}
	if got := m.Counts("fraud", "nope", start); got != (Counts{}) {
		t.Errorf("Counts(unknown shadow) = %+v, want zero", got)
	}
}

func TestReportShape(t *testing.T) {
	m := newManager(t, newClock().Now)
	rep, err := m.Report("fraud", 0)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	if want := `{"endpoint":"fraud","window":"5m","shadows":{}}`; string(b) != want {
		t.Errorf("empty report = %s, want %s", b, want)
	}
	for _, w := range []time.Duration{-time.Second, time.Millisecond, 2 * time.Hour} {
		if _, err := m.Report("fraud", w); err == nil {
			t.Errorf("Report(window %v) = nil error, want out of range", w)
		}
	}

	srv := server(t, agree)
	setShadows(t, m, endpoint(nil, srv.URL))
	rep, _ = m.Report("fraud", time.Minute)
	b, _ = json.Marshal(rep)
	want := `{"endpoint":"fraud","window":"1m","shadows":{"green":{"active":true,"mirrored":0,"dropped":0,"skipped":0,"sent":0,` +
		`"compared":0,"matched":0,"mismatched":0,"not_compared":0,"errors":0,"timeouts":0,"match_rate":null,"match_rate_ci95":null,` +
		`"latency_ms":{"shadow":{"p50":0,"p90":0,"p95":0,"p99":0},"live":{"p50":0,"p90":0,"p95":0,"p99":0}},"protocol":"","mismatches":[]}}}`
	if string(b) != want {
		t.Errorf("report without data =\n%s\nwant\n%s", b, want)
	}
}

func TestWilson(t *testing.T) {
	for _, tc := range []struct {
		k, n   uint64
		lo, hi float64
	}{
		{75, 100, 0.6569, 0.8245},
		{0, 10, 0, 0.2775},
		{10, 10, 0.7225, 1},
	} {
		lo, hi := wilson(tc.k, tc.n)
		if math.Abs(lo-tc.lo) > 1e-4 || math.Abs(hi-tc.hi) > 1e-4 {
			t.Errorf("wilson(%d, %d) = %.4f, %.4f, want %.4f, %.4f", tc.k, tc.n, lo, hi, tc.lo, tc.hi)
		}
	}
}

func TestCollectorCountsExactly(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch requestNumber(r) % 3 {
		case 0:
			agree(w, r)
		case 1:
			io.WriteString(w, `{"predictions":[1]}`)
		default:
			io.WriteString(w, `not json`)
		}
	})
	m := newManager(t, nil)
	setShadows(t, m, endpoint(nil, srv.URL))
	for i := range 30 {
		m.Submit(newCopy(m, i))
	}
	c := newCopy(m, 99)
	c.BodyTruncated = true
	m.Submit(c)
	waitOutcomes(t, m, 31)

	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			labels := ""
			for _, l := range mt.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue() + ","
			}
			name := mf.GetName() + "{" + labels + "}"
			switch {
			case mt.GetCounter() != nil:
				got[name] = mt.GetCounter().GetValue()
			case mt.GetGauge() != nil:
				got[name] = mt.GetGauge().GetValue()
			case mt.GetHistogram() != nil:
				got[name+"_count"] = float64(mt.GetHistogram().GetSampleCount())
			}
		}
	}
	l := func(result string) string {
		return fmt.Sprintf("modelgate_shadow_requests_total{deployment=green,endpoint=fraud,result=%s,}", result)
	}
	want := map[string]float64{
		l("mirrored"): 31, l("dropped"): 0, l("skipped"): 1, l("matched"): 10, l("mismatched"): 20,
		l("not_compared"): 0, l("error"): 0, l("timeout"): 0,
		"modelgate_shadow_duration_seconds{deployment=green,endpoint=fraud,}_count": 30,
		"modelgate_shadow_queue_length{deployment=green,endpoint=fraud,}":           0,
		"modelgate_shadow_orphaned_total{}":                                         0,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("collected series (-want +got):\n%s", diff)
	}
}

func TestCloseDropsLaterCopies(t *testing.T) {
	srv := hangingServer(t)
	m := NewManager(Options{Logger: quiet})
	setShadows(t, m, endpoint(settings(10, 1, time.Minute), srv.URL))
	for i := range 5 {
		m.Submit(newCopy(m, i))
	}
	m.Close() // aborts the hanging request, drops the queued copies
	if m.Submit(newCopy(m, 5)) {
		t.Errorf("Submit after Close = true, want false")
	}
	r := report(t, m, 0)
	if r.Mirrored != 6 || r.Dropped != 6 {
		t.Errorf("mirrored, dropped = %d, %d, want 6, 6", r.Mirrored, r.Dropped)
	}
	if err := m.SetShadows(nil); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("SetShadows after Close = %v, want an error", err)
	}
}

func BenchmarkSubmit(b *testing.B) {
	for _, bc := range []struct {
		name   string
		server func(testing.TB) *httptest.Server
		queue  int
	}{
		{"queued", func(t testing.TB) *httptest.Server { return server(t, agree) }, 1 << 16},
		{"full", hangingServer, 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			srv := bc.server(b)
			m := newManager(b, nil)
			setShadows(b, m, endpoint(settings(bc.queue, 4, time.Minute), srv.URL))
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c := m.Get()
					c.Endpoint, c.Deployment, c.RequestID = "fraud", "green", "req-1"
					c.Method, c.URI = http.MethodPost, "/v1/models/fraud:predict"
					c.Body = append(c.Body, `{"instances":[[1,2]]}`...)
					c.Live.Status = 200
					c.Live.Body = append(c.Live.Body, liveAnswer...)
					m.Submit(c)
				}
			})
		})
	}
}

// TestMismatchRequestsSampledOrNot: a mismatch keeps its request's start,
// cut at a character after api.MismatchRequestBytes of body; with
// compare.sample_requests false it keeps no request data.
func TestMismatchRequestsSampledOrNot(t *testing.T) {
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"predictions":[0]}`)
	})
	long := `{"text":"` + strings.Repeat("é", api.MismatchRequestBytes) + `"}`
	for _, tc := range []struct {
		name string
		keep *bool
		want string
	}{
		// 9 bytes of {"text":" then 2-byte é's: the cut at 256 would split
		// one, so it comes a byte before.
		{"by default", nil, "POST /v1/models/fraud:predict?x=1 " + long[:api.MismatchRequestBytes-1] + "…"},
		{"sample_requests false", new(bool), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, nil)
			setShadows(t, m, endpoint(&spec.Compare{SampleRequests: tc.keep}, srv.URL))
			c := newCopy(m, 1)
			c.Body = append(c.Body[:0], long...)
			m.Submit(c)
			waitOutcomes(t, m, 1)
			r := report(t, m, time.Minute)
			if len(r.Mismatches) != 1 || r.Mismatches[0].Request != tc.want {
				t.Errorf("mismatches %+v, want one with the request %q", r.Mismatches, tc.want)
			}
		})
	}
}
