package rollout

import (
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
	"github.com/modelgate/modelgate/internal/telemetry"
)

type nopRouter struct{}

func (nopRouter) SetRoutes([]spec.Endpoint) error { return nil }

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// newMetricsController is a real controller over bbolt in a temp dir and
// a control service holding the endpoint fraud (blue 100%, green 0%).
func newMetricsController(t *testing.T) *Controller {
	t.Helper()
	return newControllerOver(t, func(b *bolt.Store) store.Store { return b }, nil)
}

// newControllerOver is newMetricsController with the store the control
// service and the controller use made by wrap from the bbolt store, and
// the controller's options changed by opts (nil: none).
func newControllerOver(t *testing.T, wrap func(*bolt.Store) store.Store, opts func(*Options)) *Controller {
	t.Helper()
	ctx := t.Context()
	b, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	st := wrap(b)
	clock := &fakeClock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	tel := telemetry.NewRegistry()
	svc := control.New(control.Options{Store: st, Router: nopRouter{}, Telemetry: tel, Now: clock.Now})
	if err := svc.Load(ctx); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse([]byte(`endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [http://127.0.0.1:9001]
      - name: green
        backends: [http://127.0.0.1:9002]
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.ApplyFile(ctx, f, false, "config"); err != nil {
		t.Fatal(err)
	}
	o := Options{Store: st, Endpoints: svc, Telemetry: tel, Now: clock.Now}
	if opts != nil {
		opts(&o)
	}
	return New(o)
}

// gatherRollouts registers c's collector on a pedantic registry and returns
// every sample as "name{label=value,...}" → value.
func gatherRollouts(t *testing.T, col prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(col); err != nil {
		t.Fatalf("Register: %v", err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if want := dto.MetricType_GAUGE; mf.GetName() == "modelgate_rollouts_total" && mf.GetType() != dto.MetricType_COUNTER ||
			mf.GetName() != "modelgate_rollouts_total" && mf.GetType() != want {
			t.Errorf("%s is a %s", mf.GetName(), mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(ls)
			v := m.GetGauge().GetValue()
			if mf.GetType() == dto.MetricType_COUNTER {
				v = m.GetCounter().GetValue()
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}

// phaseSeries are the seven phase series of rollout id, current set to 1.
func phaseSeries(id string, current Phase) map[string]float64 {
	out := map[string]float64{}
	for _, p := range phases {
		out["modelgate_rollout_phase{endpoint=fraud,phase="+string(p)+",rollout="+id+"}"] = one(p == current)
	}
	return out
}

// withTotals adds fraud's modelgate_rollouts_total series to m.
func withTotals(m map[string]float64, succeeded, rolledBack, aborted, undone float64) map[string]float64 {
	for res, n := range map[Phase]float64{PhaseSucceeded: succeeded, PhaseRolledBack: rolledBack, PhaseAborted: aborted, PhaseUndone: undone} {
		m["modelgate_rollouts_total{endpoint=fraud,result="+string(res)+"}"] = n
	}
	return m
}

func rolloutSeries(id string, phase Phase, stage, weight, baked float64) map[string]float64 {
	out := phaseSeries(id, phase)
	l := "{endpoint=fraud,rollout=" + id + "}"
	out["modelgate_rollout_stage"+l] = stage
	out["modelgate_rollout_canary_weight_percent"+l] = weight
	out["modelgate_rollout_stage_baked_seconds"+l] = baked
	return out
}

func TestCollector(t *testing.T) {
	ctx := t.Context()
	c := newMetricsController(t)
	col := c.Collector()

	if diff := cmp.Diff(withTotals(map[string]float64{}, 0, 0, 0, 0), gatherRollouts(t, col)); diff != "" {
		t.Errorf("no rollout yet: want the counts at 0 (-want +got):\n%s", diff)
	}

	r, err := c.Start(ctx, "fraud", StartRequest{Canary: "green", Plan: spec.Plan{Stages: []spec.Stage{{Weight: 1000}, {Weight: spec.Full}}}})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	want := withTotals(rolloutSeries(r.ID, PhaseProgressing, 0, 10, 0), 0, 0, 0, 0)
	if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
		t.Errorf("progressing (-want +got):\n%s", diff)
	}

	// Gates and bake time as the controller's loop records them; two
	// gates with one name get distinct series.
	c.mu.Lock()
	ru := c.runs["fraud"]
	ru.r.Baked = spec.Duration(12500 * time.Millisecond)
	ru.r.Gates = []analysis.GateResult{
		{Gate: "sequential", Verdict: analysis.Inconclusive},
		{Gate: "latency p99", Verdict: analysis.Pass},
		{Gate: "latency p99", Verdict: analysis.Fail},
	}
	c.mu.Unlock()
	want = withTotals(rolloutSeries(r.ID, PhaseProgressing, 0, 10, 12.5), 0, 0, 0, 0)
	for gate, verdict := range map[string]analysis.Verdict{"sequential": analysis.Inconclusive, "latency p99": analysis.Pass, "latency p99 #2": analysis.Fail} {
		for _, v := range verdicts {
			want["modelgate_rollout_gate_verdict{endpoint=fraud,gate="+gate+",rollout="+r.ID+",verdict="+string(v)+"}"] = one(v == verdict)
		}
	}
	if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
		t.Errorf("with gates (-want +got):\n%s", diff)
	}
	c.mu.Lock()
	ru.r.Gates, ru.r.Baked = nil, 0
	c.mu.Unlock()

	if _, err := c.Act(ctx, "fraud", ActionPause); err != nil {
		t.Fatalf("pause: %v", err)
	}
	if got := gatherRollouts(t, col); got["modelgate_rollout_phase{endpoint=fraud,phase=paused,rollout="+r.ID+"}"] != 1 {
		t.Errorf("paused: phase series %v", got)
	}

	// An ended rollout stays exposed with its final phase and weight.
	if _, err := c.Act(ctx, "fraud", ActionAbort); err != nil {
		t.Fatalf("abort: %v", err)
	}
	c.mu.Lock()
	_, running := c.runs["fraud"]
	c.mu.Unlock()
	if running {
		t.Fatal("the aborted rollout is still running")
	}
	want = withTotals(rolloutSeries(r.ID, PhaseAborted, 0, 0, 0), 0, 0, 1, 0)
	if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
		t.Errorf("aborted (-want +got):\n%s", diff)
	}

	// A retry is a new rollout: only it is exposed.
	r2, err := c.Act(ctx, "fraud", ActionRetry)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if r2.ID == r.ID {
		t.Fatalf("retry kept the id %s", r.ID)
	}
	want = withTotals(rolloutSeries(r2.ID, PhaseProgressing, 0, 10, 0), 0, 0, 1, 0)
	if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
		t.Errorf("retried (-want +got):\n%s", diff)
	}
	if _, err := c.Act(ctx, "fraud", ActionPromoteFull); err != nil {
		t.Fatalf("promote-full: %v", err)
	}
	want = withTotals(rolloutSeries(r2.ID, PhaseSucceeded, 1, 100, 0), 1, 0, 1, 0)
	if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
		t.Errorf("succeeded (-want +got):\n%s", diff)
	}
	if _, err := c.Act(ctx, "fraud", ActionUndo); err != nil {
		t.Fatalf("undo: %v", err)
	}
	want = withTotals(rolloutSeries(r2.ID, PhaseUndone, 1, 0, 0), 1, 0, 1, 1)
	if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
		t.Errorf("undone (-want +got):\n%s", diff)
	}
}

// TestCollectorConcurrent scrapes while actions change the rollout, for
// the race detector.
func TestCollectorConcurrent(t *testing.T) {
	ctx := t.Context()
	c := newMetricsController(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collector())
	if _, err := c.Start(ctx, "fraud", StartRequest{Canary: "green"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 50 {
			if _, err := reg.Gather(); err != nil {
				t.Errorf("Gather: %v", err)
				return
			}
		}
	})
	for _, a := range []Action{ActionPause, ActionResume, ActionPromote, ActionPause, ActionAbort, ActionRetry, ActionPromoteFull, ActionUndo} {
		if _, err := c.Act(ctx, "fraud", a); err != nil {
			t.Fatalf("%s: %v", a, err)
		}
	}
	wg.Wait()
}

// TestCollectorBetweenScrapes: a rollout that starts and ends before the
// first scrape is counted and shown, by the controller that drove it and
// by another over the same store that never drove it (a follower of a
// fleet, or the daemon after a restart).
func TestCollectorBetweenScrapes(t *testing.T) {
	ctx := t.Context()
	c := newMetricsController(t)
	r, err := c.Start(ctx, "fraud", StartRequest{Canary: "green"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Act(ctx, "fraud", ActionAbort); err != nil {
		t.Fatal(err)
	}
	follower := New(Options{Store: c.opts.Store, Endpoints: c.opts.Endpoints, Telemetry: c.opts.Telemetry, Now: c.opts.Now})
	want := withTotals(rolloutSeries(r.ID, PhaseAborted, 0, 0, 0), 0, 0, 1, 0)
	for name, col := range map[string]prometheus.Collector{"the leader": c.Collector(), "a follower": follower.Collector()} {
		if diff := cmp.Diff(want, gatherRollouts(t, col)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
