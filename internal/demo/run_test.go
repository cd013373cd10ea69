package demo

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// fakeGateway is a small but real gateway for one endpoint: a reverse
// proxy that strips /{endpoint}, splits requests by weight between
// deployments, and measures what each served.
type fakeGateway struct {
	endpoint string
	srv      *httptest.Server
	proxies  map[string]*httputil.ReverseProxy
	order    []string
	weights  atomic.Pointer[spec.Weights]

	mu   sync.Mutex
	rng  *rand.Rand
	log  []served
	sets []spec.Weights

	// onSetTraffic, when set, runs after every SetTraffic with its number (1, 2, ...).
	onSetTraffic func(n int)
}

type served struct {
	at         time.Time
	deployment string
	status     int
	latency    time.Duration
}

func newFakeGateway(t *testing.T, endpoint string, backends map[string]string) *fakeGateway {
	t.Helper()
	g := &fakeGateway{
		endpoint: endpoint,
		proxies:  map[string]*httputil.ReverseProxy{},
		rng:      rand.New(rand.NewPCG(3, 3)),
	}
	for name, backend := range backends {
		u, err := url.Parse(backend)
		if err != nil {
			t.Fatal(err)
		}
		p := httputil.NewSingleHostReverseProxy(u)
		p.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
			w.WriteHeader(http.StatusBadGateway) // a cancelled request at the end of a run; not logged
		}
		g.proxies[name] = p
		g.order = append(g.order, name)
	}
	slices.Sort(g.order)
	w := spec.Weights{g.order[0]: spec.Full}
	g.weights.Store(&w)
	g.srv = httptest.NewServer(g)
	t.Cleanup(g.srv.Close)
	return g
}

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/"+g.endpoint+"/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	r.URL.Path = "/" + rest
	dep := g.pick()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	start := time.Now()
	g.proxies[dep].ServeHTTP(rec, r)
	end := time.Now()
	if r.Context().Err() != nil {
		return // the client left: nobody saw an answer
	}
	g.mu.Lock()
	g.log = append(g.log, served{at: end, deployment: dep, status: rec.status, latency: end.Sub(start)})
	g.mu.Unlock()
}

// pick draws a deployment by the current weights.
func (g *fakeGateway) pick() string {
	w := *g.weights.Load()
	g.mu.Lock()
	x := spec.Percent(g.rng.IntN(int(spec.Full)))
	g.mu.Unlock()
	for _, name := range g.order {
		if x < w[name] {
			return name
		}
		x -= w[name]
	}
	panic(fmt.Sprintf("weights %v do not sum to 100", w))
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (g *fakeGateway) SetTraffic(ctx context.Context, endpoint string, w spec.Weights) error {
	if endpoint != g.endpoint {
		return fmt.Errorf("unknown endpoint %q", endpoint)
	}
	if w.Sum() != spec.Full {
		return fmt.Errorf("traffic sums to %s, want 100", w.Sum())
	}
	for name := range w {
		if g.proxies[name] == nil {
			return fmt.Errorf("traffic.%s: unknown deployment", name)
		}
	}
	w = w.Clone()
	g.weights.Store(&w)
	g.mu.Lock()
	g.sets = append(g.sets, w)
	n := len(g.sets)
	g.mu.Unlock()
	if g.onSetTraffic != nil {
		g.onSetTraffic(n)
	}
	return ctx.Err()
}

// Metrics measures the requests completed within the window, as the
// daemon's telemetry does (nearest-rank p99, error = 5xx).
func (g *fakeGateway) Metrics(ctx context.Context, endpoint string, window time.Duration) (telemetry.Report, error) {
	if endpoint != g.endpoint {
		return telemetry.Report{}, fmt.Errorf("unknown endpoint %q", endpoint)
	}
	since := time.Now().Add(-window)
	g.mu.Lock()
	var recent []served
	for _, s := range g.log {
		if s.at.After(since) {
			recent = append(recent, s)
		}
	}
	g.mu.Unlock()
	r := telemetry.Report{Endpoint: endpoint, Window: window.String(), Deployments: map[string]telemetry.DeploymentReport{}}
	for _, name := range g.order {
		var d telemetry.DeploymentReport
		var lat []time.Duration
		for _, s := range recent {
			if s.deployment != name {
				continue
			}
			d.Requests++
			if s.status >= 500 {
				d.Errors++
			}
			lat = append(lat, s.latency)
		}
		if d.Requests > 0 {
			d.ErrorRate = float64(d.Errors) / float64(d.Requests)
			d.Share = float64(d.Requests) / float64(len(recent))
			d.RPM = float64(d.Requests) / window.Minutes()
			slices.Sort(lat)
			rank := (99*len(lat) + 99) / 100 // nearest rank: ceil(0.99 n)
			d.LatencyMS.P99 = float64(lat[rank-1]) / float64(time.Millisecond)
		}
		r.Deployments[name] = d
	}
	return r, ctx.Err()
}

func (g *fakeGateway) ProxyURL() string { return g.srv.URL }

// startDemo starts the demo models and a fake gateway in front of them.
func startDemo(t *testing.T) *fakeGateway {
	t.Helper()
	blue, green, err := StartModels(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { blue.Close(); green.Close() })
	return newFakeGateway(t, "fraud", map[string]string{"blue": blue.URL(), "green": green.URL()})
}

func TestRun(t *testing.T) {
	gw := startDemo(t)
	var out bytes.Buffer
	opts := RunOptions{StageDuration: 500 * time.Millisecond, Refresh: 100 * time.Millisecond, RPS: 400, Seed: 1}
	if err := Run(t.Context(), &out, gw, opts); err != nil {
		t.Fatalf("Run() = %v\noutput:\n%s", err, out.String())
	}
	t.Logf("output:\n%s", out.String())
	got := squeeze(out.String())

	wantSets := []spec.Weights{
		{"blue": 9500, "green": 500},
		{"blue": 7500, "green": 2500},
		{"blue": 5000, "green": 5000},
		{"blue": 0, "green": spec.Full},
	}
	gw.mu.Lock()
	sets := slices.Clone(gw.sets)
	log := slices.Clone(gw.log)
	gw.mu.Unlock()
	if len(sets) != len(wantSets) {
		t.Fatalf("SetTraffic called with %v, want %v", sets, wantSets)
	}
	for i := range sets {
		if !sets[i].Equal(wantSets[i]) {
			t.Errorf("SetTraffic #%d = %v, want %v", i+1, sets[i], wantSets[i])
		}
	}

	for _, want := range []string{
		"sending 400 requests/s to " + gw.ProxyURL() + "/fraud/v1/models/fraud:predict\n",
		"shifting traffic from blue to green: 5% → 25% → 50% → 100%, 500ms per stage\n",
		"stage 1/4: green 5% (",
		"stage 2/4: green 25% (",
		"stage 3/4: green 50% (",
		"stage 4/4: green 100% (",
		"(500ms of 500ms)\n DEPLOYMENT WEIGHT SHARE RPM ERRORS P99 MS\n",
		"\n\nsummary\n STAGE DEPLOYMENT WEIGHT REQUESTS ERRORS P99 MS\n",
		"\n  green 5%    blue            95%",
		"\n              green            5%",
		"\n  green 25%   blue            75%",
		"\n  green 50%   blue            50%",
		"\n  green 100%  blue             0%",
		"\n              green          100%",
		"\ngenerator: ",
	} {
		if !strings.Contains(got, squeeze(want)) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(got, "\n\n\n") {
		t.Error("output has two blank lines in a row, want one between blocks")
	}
	if strings.Contains(got, "\x1b[") {
		t.Error("output to a buffer has ANSI escapes, want plain blocks")
	}
	if strings.Contains(got, "interrupted") {
		t.Error("output says interrupted; the run completed")
	}

	// Whatever the gateway served, the demo's models answered as they
	// should: mostly 200, the odd injected 500, nothing else.
	status := map[int]int{}
	for _, s := range log {
		status[s.status]++
	}
	if status[200] < 100 || status[200]+status[500] != len(log) {
		t.Errorf("gateway served statuses %v, want many 200s and otherwise only 500s", status)
	}
	if rate := float64(status[500]) / float64(len(log)); rate > 0.05 {
		t.Errorf("error rate through the gateway = %.3f, want about 1%%", rate)
	}
}

// TestRunStopsOnCancel cancels the run when the second stage sets its
// traffic: Run must return nil promptly, with a summary of the first.
func TestRunStopsOnCancel(t *testing.T) {
	gw := startDemo(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	gw.onSetTraffic = func(n int) {
		if n == 2 {
			cancel()
		}
	}
	var out bytes.Buffer
	// A long refresh: only the stage's end renders, so the output is fixed.
	opts := RunOptions{StageDuration: 200 * time.Millisecond, Refresh: time.Hour, RPS: 200}
	if err := Run(ctx, &out, gw, opts); err != nil {
		t.Fatalf("Run() after cancel = %v, want nil", err)
	}
	got := squeeze(out.String())
	for _, want := range []string{
		"stage 1/4: green 5% (200ms of 200ms)",
		"\ninterrupted after 1 of 4 stages\n",
		"\n  green 5%    blue            95%",
	} {
		if !strings.Contains(got, squeeze(want)) {
			t.Errorf("output lacks %q\noutput:\n%s", want, out.String())
		}
	}
	if strings.Contains(got, "stage 2/4") || strings.Contains(got, "green 25% ") {
		t.Errorf("output shows stage 2, which was cancelled before it measured anything:\n%s", got)
	}
}

func TestRunFailsOnGatewayError(t *testing.T) {
	gw := startDemo(t)
	var out bytes.Buffer
	// The fake gateway has no deployment "red".
	err := Run(t.Context(), &out, gw, RunOptions{Canary: "red", StageDuration: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "traffic.red: unknown deployment") {
		t.Errorf("Run() with an unknown canary = %v, want the gateway's error", err)
	}
	if err := Run(t.Context(), &out, gw, RunOptions{Canary: "blue"}); err == nil {
		t.Error("Run() with stable = canary succeeded, want an error")
	}
}

// squeeze collapses runs of spaces, so that checks on the output do not
// depend on column widths.
func squeeze(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ' ' }), " ")
}
