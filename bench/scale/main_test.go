package main

import (
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary serve as the gateway child too: measure
// re-executes the running binary with gatewayEnv set.
func TestMain(m *testing.M) {
	if path, ok := os.LookupEnv(gatewayEnv); ok {
		serveGateway(path)
		return
	}
	os.Exit(m.Run())
}

// TestScaleSmoke runs the whole bench at N = 3 with 2 of the 6 deployments
// active, and checks that every field was measured and is consistent.
// Timings are never asserted: the benchmark is `go run ./bench/scale`.
func TestScaleSmoke(t *testing.T) {
	o := options{ns: []int{3}, active: 1.0 / 3, maxFillMiB: 4096, perSecond: 16, minLat: time.Microsecond, maxLat: time.Hour,
		reps: 2, reapplies: 2, changes: 4, probe: 3, output: "table"}
	res, err := run(o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var rep strings.Builder
	report(&rep, o, res)
	t.Log("\n" + rep.String())
	if len(res) != 1 {
		t.Fatalf("%d results, want 1", len(res))
	}
	r := res[0]
	if r.Endpoints != 3 || r.Deployments != 6 || r.ActiveWanted != 2 || r.Filled != 2 {
		t.Errorf("endpoints %d, deployments %d, active %d, filled %d; want 3, 6, 2, 2", r.Endpoints, r.Deployments, r.ActiveWanted, r.Filled)
	}
	for name, v := range map[string]float64{"validate": r.ValidateMs, "apply": r.ApplyMs, "re-apply": r.ReapplyMs,
		"compile": r.CompileMs, "recompile": r.RecompileMs, "fill": r.FillMs, "change API": r.ChangeAPIMs, "change live": r.ChangeLiveMs,
		"scrape": r.ScrapeMs, "list": r.ListMs, "metrics 5m": r.Metrics5mMs, "metrics 1h": r.Metrics1hMs, "series": r.Series1hMs} {
		if !(v > 0 && v < 60_000) {
			t.Errorf("%s: %v ms, want a duration", name, v)
		}
	}
	if r.ChangeAPIMaxMs < r.ChangeAPIMs || r.ChangeLiveMaxMs < r.ChangeLiveMs {
		t.Errorf("routing change: max below the median: API %v < %v or live %v < %v", r.ChangeAPIMaxMs, r.ChangeAPIMs, r.ChangeLiveMaxMs, r.ChangeLiveMs)
	}
	// The exposition names every deployment; the list every endpoint.
	if r.ScrapeBytes < 6*1000 || r.ListBytes < 3*100 {
		t.Errorf("scrape %d bytes, list %d bytes: too small to hold 6 deployments", r.ScrapeBytes, r.ListBytes)
	}
	// The points are in order; the fill cost something, and less than a
	// dense Recorder did before issue 22 (8.7 MiB; with 2 deployments the
	// runtime's own growth is most of the figure).
	for _, p := range []string{"started", "applied", "filled", "end"} {
		m, ok := r.Points[p]
		if !ok || m.RSS == 0 || m.HWM < m.RSS || m.HeapInuse == 0 {
			t.Errorf("memory at %q: %+v", p, m)
		}
	}
	if r.PeakRSS != r.Points["end"].HWM || r.PeakRSS < r.Points["filled"].RSS {
		t.Errorf("peak RSS %d, end %+v, filled %+v", r.PeakRSS, r.Points["end"], r.Points["filled"])
	}
	// Under -race every page written costs its shadow memory too.
	if r.PerActive <= 0 || !raceEnabled && r.PerActive > 8<<20 {
		t.Errorf("RSS per active deployment %.2f MiB, want more than 0 and less than 8 MiB", mib(r.PerActive))
	}
	// An idle deployment allocates no slices: what apply allocates per
	// deployment is its config and routing, far below the 8.5 MiB a
	// Recorder was before issue 22.
	if r.HeapPerIdle > 1<<20 {
		t.Errorf("heap per deployment %.2f MiB after the applies, want well under 1 MiB (an idle Recorder is %.0f bytes)", mib(r.HeapPerIdle), recorderBytes())
	}
	if r.PeakExtrapolated != 0 {
		t.Errorf("extrapolated peak %d without a cap", r.PeakExtrapolated)
	}
	for _, s := range []string{"peak RSS", "N = 3", "routing change live"} {
		if !strings.Contains(rep.String(), s) {
			t.Errorf("report has no %q", s)
		}
	}
}

// TestScaleCapped checks the cap: with -max-fill-mib below two fills,
// one is filled and the peak is extrapolated to the others.
func TestScaleCapped(t *testing.T) {
	o := options{ns: []int{2}, active: 1, maxFillMiB: 1.5, perSecond: 1, minLat: time.Millisecond, maxLat: time.Second,
		reps: 1, reapplies: 1, changes: 2, probe: 1, output: "json"}
	res, err := run(o, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := res[0]
	if r.ActiveWanted != 4 || r.Filled != 1 {
		t.Fatalf("active %d, filled %d; want 4 and 1", r.ActiveWanted, r.Filled)
	}
	if want := r.PeakRSS + uint64(3*r.PerActive); r.PeakExtrapolated != want || r.PerActive <= 0 {
		t.Errorf("extrapolated peak %d, want %d (peak %d + 3 x %.0f)", r.PeakExtrapolated, want, r.PeakRSS, r.PerActive)
	}
}
