package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/authtoken"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// partBackend answers a fixed metrics part and builds reports from parts
// as the control service does.
type partBackend struct {
	*admintest.Backend
	part control.MetricsPart
}

func (b *partBackend) MetricsPart(ctx context.Context, name string, window time.Duration) (control.MetricsPart, error) {
	if _, err := b.Backend.MetricsPart(ctx, name, window); err != nil {
		return control.MetricsPart{}, err
	}
	return b.part, nil
}

func (b *partBackend) MetricsReport(ctx context.Context, name string, window time.Duration, parts []control.MetricsPart) (telemetry.Report, error) {
	if _, err := b.Backend.MetricsReport(ctx, name, window, parts); err != nil {
		return telemetry.Report{}, err
	}
	return telemetry.BuildReport(name, window, "blue", []string{"blue", "green"}, control.MergeMetrics(parts)), nil
}

// bluePart is a part in which blue served n requests, each taking lat.
func bluePart(n uint64, lat time.Duration) control.MetricsPart {
	s := telemetry.Summary{Window: time.Minute, Requests: n}
	s.Status[2] = n
	s.Latency.Add(lat, n)
	s.TTFB.Add(lat/2, n)
	return control.MetricsPart{Deployments: map[string]telemetry.Summary{"blue": s}}
}

// fixedReplicas lists the fleet as given, marking self.
type fixedReplicas struct {
	self string
	list []api.Replica
}

func (f *fixedReplicas) Replicas(context.Context) ([]api.Replica, error) {
	out := make([]api.Replica, len(f.list))
	for i, r := range f.list {
		r.Self = r.ID == f.self
		out[i] = r
	}
	return out, nil
}

// A fleet-wide read asks every replica listed for its part at once, with
// the caller's own token, and merges them: counts add and the quantiles
// are those of every request. A replica that does not answer within the
// timeout, or answers as another replica, is left out and named; the
// answer still comes. ?replica= answers for one replica, 404 for an id
// not listed, 502 for one that does not answer.
func TestFleetReadsMergeEveryReplica(t *testing.T) {
	tokens := func() *authtoken.Set {
		s := authtoken.New(0, nil)
		s.Put(authtoken.Admin, testToken)
		s.Put(authtoken.ReadOnly, viewerToken)
		return s
	}
	hung := nettest.Hung(t)

	list := &fixedReplicas{}
	parts := []control.MetricsPart{bluePart(1, time.Millisecond), bluePart(2, 10*time.Millisecond), bluePart(4, 100*time.Millisecond)}
	var (
		mu   sync.Mutex
		seen []string // the tokens the replicas' raw routes were called with
	)
	urls := make([]string, len(parts))
	handlers := make([]http.Handler, len(parts))
	for i, p := range parts {
		id := []string{"r0", "r1", "r2"}[i]
		h := New(Options{Backend: &partBackend{admintest.NewBackend(admintest.Fraud()), p}, Tokens: tokens(),
			Replicas: &fixedReplicas{self: id, list: nil}, Series: &fakeSeries{},
			FleetReads: FleetReads{Self: id, Peers: fleet.NewClient(nil, func() string { return "" }), Timeout: 300 * time.Millisecond}})
		handlers[i] = h
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/api/v1/fleet/") {
				mu.Lock()
				seen = append(seen, r.Header.Get("Authorization"))
				mu.Unlock()
			}
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	list.list = []api.Replica{{ID: "r0", AdminURL: urls[0]}, {ID: "r1", AdminURL: urls[1]}, {ID: "r2", AdminURL: urls[2]},
		{ID: "hung", AdminURL: "http://" + hung}, {ID: "liar", AdminURL: urls[2]}}
	list.self = "r0"
	h := New(Options{Backend: &partBackend{admintest.NewBackend(admintest.Fraud()), parts[0]}, Tokens: tokens(), Replicas: list,
		FleetReads: FleetReads{Self: "r0", Peers: fleet.NewClient(nil, func() string { return "" }), Timeout: 300 * time.Millisecond}})

	get := func(path string) (*httptest.ResponseRecorder, api.MetricsAnswer) {
		t.Helper()
		rec := do(t, h, viewerToken, call{"GET", path, ""})
		var a api.MetricsAnswer
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &a); err != nil {
				t.Fatal(err)
			}
		}
		return rec, a
	}
	start := time.Now()
	rec, a := get("/api/v1/endpoints/fraud/metrics?window=1m")
	if took := time.Since(start); took > time.Second {
		t.Errorf("the fleet's answer with a replica hung took %s, want about the 300ms timeout", took)
	}
	if rec.Code != 200 || rec.Header().Get(api.ReplicasHeader) != "3/5" || a.Replicas.Reporting != 3 || a.Replicas.Of != 5 {
		t.Fatalf("fleet metrics = %d %s %+v", rec.Code, rec.Header().Get(api.ReplicasHeader), a.Replicas)
	}
	missing := map[string]string{}
	for _, m := range a.Replicas.Missing {
		missing[m.ID] = m.Error
	}
	if len(missing) != 2 || !strings.Contains(missing["hung"], "no answer within 300ms") || !strings.Contains(missing["liar"], `answered as replica "r2"`) {
		t.Errorf("missing replicas %v", missing)
	}
	merged := control.MergeMetrics(parts)["blue"]
	blue := a.Deployments["blue"]
	if blue.Requests != 7 || blue.Status["2xx"] != 7 {
		t.Errorf("fleet blue requests %d (%v), want 7", blue.Requests, blue.Status)
	}
	// 1 at 1ms, 2 at 10ms, 4 at 100ms: the median is 100ms, which no
	// average of the replicas' medians gives.
	if want := float64(merged.Latency.Quantile(0.5)) / 1e6; blue.LatencyMS.P50 != want || want < 99 {
		t.Errorf("fleet p50 %.3f ms, want %.3f (the merged sketch's)", blue.LatencyMS.P50, want)
	}
	mu.Lock()
	for _, tok := range seen {
		if tok != "Bearer "+viewerToken {
			t.Errorf("a replica was called with %q, want the caller's read-only token", tok)
		}
	}
	if len(seen) < 3 {
		t.Errorf("%d calls to the replicas' raw routes, want r1, r2 and liar's", len(seen))
	}
	mu.Unlock()

	for _, tc := range []struct {
		replica  string
		status   int
		requests uint64
		err      string
	}{
		{"r0", 200, 1, ""},
		{"r2", 200, 4, ""},
		{"nope", 404, 0, `no replica \"nope\" in the fleet`},
		{"hung", 502, 0, "replica hung did not answer: no answer within 300ms"},
	} {
		rec, a := get("/api/v1/endpoints/fraud/metrics?window=1m&replica=" + tc.replica)
		if rec.Code != tc.status || a.Deployments["blue"].Requests != tc.requests || !strings.Contains(rec.Body.String(), tc.err) {
			t.Errorf("?replica=%s = %d %s, want %d with %d requests", tc.replica, rec.Code, rec.Body, tc.status, tc.requests)
		}
		if tc.status == 200 && (a.Replicas.Replica != tc.replica || rec.Header().Get(api.ReplicasHeader) != "1/1") {
			t.Errorf("?replica=%s: replicas %+v, header %q", tc.replica, a.Replicas, rec.Header().Get(api.ReplicasHeader))
		}
	}
	if rec := do(t, h, viewerToken, call{"GET", "/api/v1/endpoints/nope/metrics", ""}); rec.Code != 404 {
		t.Errorf("fleet metrics of an unknown endpoint = %d, want 404", rec.Code)
	}
	// A replica's raw route: its own part, named.
	rec = do(t, handlers[1], viewerToken, call{"GET", "/api/v1/fleet/endpoints/fraud/metrics?window=1m", ""})
	if p, err := DecodeMetricsPart(rec.Body.Bytes(), "r1"); err != nil || p.Deployments["blue"].Requests != 2 {
		t.Errorf("r1's raw part = %d %s: %v", rec.Code, rec.Body, err)
	}
	for _, q := range []string{"end=soon", "end=1", "window=1h&step=1s"} {
		if rec := do(t, handlers[1], viewerToken, call{"GET", "/api/v1/fleet/endpoints/fraud/series?" + q, ""}); rec.Code != 400 {
			t.Errorf("raw series ?%s = %d %s, want 400", q, rec.Code, rec.Body)
		}
	}
	if rec := do(t, handlers[1], viewerToken, call{"GET", "/api/v1/fleet/endpoints/fraud/series?window=10s&step=1s&end=1800000005", ""}); rec.Code != 200 {
		t.Errorf("raw series on another replica's grid = %d %s", rec.Code, rec.Body)
	}
}

// Without a fleet the answers are this gateway's (1 of 1), and ?replica=
// names it or nothing.
func TestFleetReadsAlone(t *testing.T) {
	h := New(Options{Backend: newFake(), Token: testToken, Replicas: &fixedReplicas{self: "me", list: []api.Replica{{ID: "me"}}},
		FleetReads: FleetReads{Self: "me"}})
	for _, tc := range []struct {
		query, header string
		status        int
	}{{"", "1/1", 200}, {"?replica=me", "1/1", 200}, {"?replica=other", "", 404}} {
		rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints/fraud/metrics" + tc.query, ""})
		if rec.Code != tc.status || rec.Header().Get(api.ReplicasHeader) != tc.header {
			t.Errorf("metrics%s = %d %q %s, want %d %q", tc.query, rec.Code, rec.Header().Get(api.ReplicasHeader), rec.Body, tc.status, tc.header)
		}
	}
}
