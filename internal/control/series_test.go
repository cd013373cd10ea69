package control_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// nopRouter accepts every routing table.
type nopRouter struct{}

func (nopRouter) SetRoutes([]spec.Endpoint) error { return nil }

// seriesFixture is a control service over a real bbolt store with the
// endpoint fraud (blue 100, green 0) and a clock the test moves.
type seriesFixture struct {
	svc *control.Service
	reg *telemetry.Registry
	now time.Time
}

// base is a whole second; the fixture's clock starts half a second later.
var base = time.Unix(1_800_000_000, 0)

func newSeriesFixture(t *testing.T) *seriesFixture {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &seriesFixture{reg: telemetry.NewRegistry(), now: base.Add(-2 * time.Hour)}
	f.svc = control.New(control.Options{Store: st, Router: nopRouter{}, Telemetry: f.reg,
		Now: func() time.Time { return f.now }})
	ctx := context.Background()
	if err := f.svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	file, err := config.Parse([]byte(`endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [http://127.0.0.1:9001]
      - name: green
        backends: [http://127.0.0.1:9002]
    traffic: {blue: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ApplyFile(ctx, file, false, "config"); err != nil {
		t.Fatal(err)
	}
	f.now = base.Add(500 * time.Millisecond)
	return f
}

// observe records n live requests of dep finishing at t.
func (f *seriesFixture) observe(dep string, t time.Time, n int, status int, latency time.Duration, override bool) {
	rc := f.reg.Recorder("fraud", dep)
	for range n {
		rc.Begin()
		rc.Observe(telemetry.Observation{Now: t.UnixNano(), Status: status, Latency: latency, TTFB: latency / 2, Override: override})
	}
}

func ms(x float64) *float64 { return &x }

func TestSeriesRecentSeconds(t *testing.T) {
	f := newSeriesFixture(t)
	// The last complete second is base-1s; the current one (base) is left out.
	at := base.Add(-3 * time.Second).Add(200 * time.Millisecond)
	f.observe("blue", at, 3, 200, 10*time.Millisecond, false)
	f.observe("blue", at, 1, 503, 40*time.Millisecond, false)
	f.observe("green", at, 1, 200, 20*time.Millisecond, false)
	f.observe("green", at, 5, 200, 20*time.Millisecond, true) // pinned: counted, not in the share
	f.observe("blue", base.Add(100*time.Millisecond), 7, 200, time.Millisecond, false)

	rep, err := f.svc.Series(context.Background(), "fraud", 10*time.Second, 2*time.Second)
	if err != nil {
		t.Fatalf("Series: %v", err)
	}
	if rep.Window != "10s" || rep.Step != "2s" || rep.StepSeconds != 2 || len(rep.Times) != 5 {
		t.Fatalf("window %q step %q (%d s), %d times; want 10s, 2s, 5", rep.Window, rep.Step, rep.StepSeconds, len(rep.Times))
	}
	if want := base.Add(-10 * time.Second).UTC(); !rep.Start.Equal(want) || !rep.Times[0].Equal(want) {
		t.Errorf("Start = %v, Times[0] = %v, want %v", rep.Start, rep.Times[0], want)
	}
	if want := base.UTC(); !rep.End.Equal(want) {
		t.Errorf("End = %v, want %v", rep.End, want)
	}
	if diff := cmp.Diff([]string{"blue", "green"}, rep.Order); diff != "" {
		t.Errorf("Order (-want +got):\n%s", diff)
	}
	// base-3s lies in the step [base-4s, base-2s), index 3.
	want := map[string]control.DeploymentSeries{
		"blue": {
			Requests:        []uint64{0, 0, 0, 4, 0},
			Errors:          []uint64{0, 0, 0, 1, 0},
			LatencyP50MS:    []*float64{nil, nil, nil, ms(10), nil},
			LatencyP99MS:    []*float64{nil, nil, nil, ms(40), nil},
			ConfiguredShare: []float64{1, 1, 1, 1, 1},
			MeasuredShare:   []*float64{nil, nil, nil, ms(0.8), nil},
		},
		"green": {
			Requests:        []uint64{0, 0, 0, 6, 0},
			Errors:          []uint64{0, 0, 0, 0, 0},
			LatencyP50MS:    []*float64{nil, nil, nil, ms(20), nil},
			LatencyP99MS:    []*float64{nil, nil, nil, ms(20), nil},
			ConfiguredShare: []float64{0, 0, 0, 0, 0},
			MeasuredShare:   []*float64{nil, nil, nil, ms(0.2), nil},
		},
	}
	// Quantiles are sketch values, within 1% of the exact ones.
	approx := cmp.Comparer(func(a, b float64) bool { return a == b || (a-b)/b < 0.01 && (b-a)/b < 0.01 })
	if diff := cmp.Diff(want, rep.Deployments, approx); diff != "" {
		t.Errorf("Deployments (-want +got):\n%s", diff)
	}
}

func TestSeriesOlderThanTenMinutes(t *testing.T) {
	f := newSeriesFixture(t)
	// 30 minutes ago, on a 10-s boundary: only the 10-s slices remember it.
	old := base.Add(-30 * time.Minute).Add(3 * time.Second)
	f.observe("blue", old, 50, 200, 100*time.Millisecond, false)
	f.observe("blue", old, 2, 500, 100*time.Millisecond, false)
	f.observe("green", old.Add(4*time.Second), 8, 200, 300*time.Millisecond, false)
	// 5 minutes ago: 1-s slices.
	recent := base.Add(-5 * time.Minute)
	f.observe("green", recent, 10, 200, 5*time.Millisecond, false)

	rep, err := f.svc.Series(context.Background(), "fraud", time.Hour, time.Minute)
	if err != nil {
		t.Fatalf("Series: %v", err)
	}
	if len(rep.Times) != 60 {
		t.Fatalf("%d points, want 60", len(rep.Times))
	}
	index := func(at time.Time) int {
		for k := len(rep.Times) - 1; k >= 0; k-- {
			if !rep.Times[k].After(at) {
				return k
			}
		}
		t.Fatalf("%v is before the series", at)
		return -1
	}
	blue, green := rep.Deployments["blue"], rep.Deployments["green"]
	k := index(old)
	var total uint64
	for _, n := range blue.Requests {
		total += n
	}
	if blue.Requests[k] != 52 || blue.Errors[k] != 2 || total != 52 {
		t.Errorf("blue step %d: %d requests (%d in all), %d errors; want 52 (52), 2", k, blue.Requests[k], total, blue.Errors[k])
	}
	if green.Requests[k] != 8 {
		t.Errorf("green step %d: %d requests, want 8", k, green.Requests[k])
	}
	if p := blue.LatencyP99MS[k]; p == nil || *p < 99 || *p > 101 {
		t.Errorf("blue p99 at step %d = %v, want about 100 ms", k, p)
	}
	if p := green.LatencyP50MS[k]; p == nil || *p < 297 || *p > 303 {
		t.Errorf("green p50 at step %d = %v, want about 300 ms", k, p)
	}
	if s := blue.MeasuredShare[k]; s == nil || *s != 52.0/60 {
		t.Errorf("blue measured share at step %d = %v, want %v", k, s, 52.0/60)
	}
	if r := index(recent); green.Requests[r] != 10 || blue.Requests[r] != 0 {
		t.Errorf("step %d: green %d, blue %d requests; want 10, 0", r, green.Requests[r], blue.Requests[r])
	}
}

func TestSeriesConfiguredShareFollowsTheEventLog(t *testing.T) {
	f := newSeriesFixture(t)
	ctx := context.Background()
	// blue=100 until base-25s, 90/10 until base-10s, 50/50 since.
	f.now = base.Add(-25 * time.Second)
	if _, err := f.svc.SetTraffic(ctx, "fraud", spec.Weights{"blue": 9000, "green": 1000}, "api"); err != nil {
		t.Fatal(err)
	}
	f.now = base.Add(-10 * time.Second)
	if _, err := f.svc.SetTraffic(ctx, "fraud", spec.Weights{"blue": 5000, "green": 5000}, "api"); err != nil {
		t.Fatal(err)
	}
	f.now = base.Add(500 * time.Millisecond)

	rep, err := f.svc.Series(ctx, "fraud", 40*time.Second, 10*time.Second)
	if err != nil {
		t.Fatalf("Series: %v", err)
	}
	// Steps: [-40,-30) [-30,-20) [-20,-10) [-10,0).
	want := map[string][]float64{
		"blue":  {1, 0.95, 0.9, 0.5},
		"green": {0, 0.05, 0.1, 0.5},
	}
	for dep, w := range want {
		if diff := cmp.Diff(w, rep.Deployments[dep].ConfiguredShare, cmp.Comparer(func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 })); diff != "" {
			t.Errorf("%s configured share (-want +got):\n%s", dep, diff)
		}
	}
}

func TestSeriesRejects(t *testing.T) {
	f := newSeriesFixture(t)
	tests := []struct {
		name         string
		window, step time.Duration
		fields       []string
	}{
		{"window too short", 5 * time.Second, time.Second, []string{"window"}},
		{"window too long", 2 * time.Hour, time.Minute, []string{"window"}},
		{"fractional window", 10500 * time.Millisecond, time.Second, []string{"window"}},
		{"step zero", time.Minute, 0, []string{"step"}},
		{"fractional step", time.Minute, 1500 * time.Millisecond, []string{"step"}},
		{"step over window", time.Minute, 2 * time.Minute, []string{"step"}},
		{"too many points", time.Hour, time.Second, []string{"step"}},
		{"both", 2 * time.Hour, 0, []string{"window", "step"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.Series(context.Background(), "fraud", tc.window, tc.step)
			var fields []string
			for _, p := range spec.Problems(err) {
				fields = append(fields, p.Field)
			}
			if diff := cmp.Diff(tc.fields, fields); diff != "" {
				t.Errorf("Series(%s, %s) problem fields (-want +got):\n%s\nerr: %v", tc.window, tc.step, diff, err)
			}
		})
	}
	if _, err := f.svc.Series(context.Background(), "nope", time.Minute, time.Second); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Series(nope) = %v, want ErrNotFound", err)
	}
	if err := control.ValidateSeries(time.Hour, 5*time.Second); err != nil {
		t.Errorf("ValidateSeries(1h, 5s) = %v, want nil (720 points)", err)
	}
}

// BenchmarkSeriesHour measures the dashboard's hour chart over an hour of
// recorded traffic.
func BenchmarkSeriesHour(b *testing.B) {
	st, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	reg := telemetry.NewRegistry()
	now := base
	svc := control.New(control.Options{Store: st, Router: nopRouter{}, Telemetry: reg, Now: func() time.Time { return now }})
	ctx := context.Background()
	if err := svc.Load(ctx); err != nil {
		b.Fatal(err)
	}
	file, _ := config.Parse([]byte("endpoints:\n  - name: fraud\n    deployments:\n      - name: blue\n        backends: [http://127.0.0.1:9001]\n    traffic: {blue: 100}\n"))
	if _, err := svc.ApplyFile(ctx, file, false, "config"); err != nil {
		b.Fatal(err)
	}
	rc := reg.Recorder("fraud", "blue")
	for s := time.Duration(0); s < time.Hour; s += time.Second {
		for i := range 20 {
			rc.Begin()
			rc.Observe(telemetry.Observation{Now: base.Add(-s).UnixNano(), Status: 200, Latency: time.Duration(i+1) * time.Millisecond})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.Series(ctx, "fraud", time.Hour, 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
}
