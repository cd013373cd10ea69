package analysis

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// TestTooLittleData: with a handful of requests every gate is inconclusive,
// never a failure, and nothing passes.
func TestTooLittleData(t *testing.T) {
	plan := spec.Plan{Gates: []spec.Gate{
		{Type: spec.GateSequential},
		{Type: spec.GateErrorRate, Max: 0.05},
		{Type: spec.GateLatency, MaxIncrease: 20},
	}}.WithDefaults()
	for _, tc := range []struct {
		name    string
		seconds int
		recent  telemetry.Summary
	}{
		{"no data", 0, recent1},
		{"30 s at 2 rps", 30, recent1},
		{"30 s at 2 rps, no recent stable data", 30, telemetry.Summary{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := mustNew(t, plan)
			a.StartStage(t0, 500, tc.recent)
			bad := healthy
			bad.errRate = 0.5 // even a bad canary is not judged on a few requests by the threshold gates
			s := newSim(7, 2, 0.05, healthy, healthy)
			var w Window
			for range tc.seconds {
				p := s.next()
				if err := a.Observe([]SlicePair{p}); err != nil {
					t.Fatal(err)
				}
				accumulate(&w.Stable, p.Stable, true)
				accumulate(&w.Canary, p.Canary, true)
			}
			r := a.Evaluate(plan.Stages[0], w)
			if r.Failed || r.Passed || r.SampleRatioMismatch {
				t.Errorf("Evaluate: failed %v, passed %v, mismatch %v; want none", r.Failed, r.Passed, r.SampleRatioMismatch)
			}
			for _, g := range r.Gates {
				if g.Verdict != Inconclusive {
					t.Errorf("gate %s = %s (%s), want inconclusive", g.Gate, g.Verdict, g.Reason)
				}
			}
		})
	}
}

func sketch(values map[time.Duration]uint64) telemetry.Sketch {
	var s telemetry.Sketch
	for d, n := range values {
		s.Add(d, n)
	}
	return s
}

func summary(requests, override, splitErrors uint64, lat telemetry.Sketch) telemetry.Summary {
	return telemetry.Summary{Requests: requests, OverrideRequests: override, SplitErrors: splitErrors, Errors: splitErrors, Latency: lat, TTFB: lat}
}

// TestThresholdGates: the threshold gates on the stage window, table-driven.
func TestThresholdGates(t *testing.T) {
	fast := sketch(map[time.Duration]uint64{100 * time.Millisecond: 990, 200 * time.Millisecond: 10})
	slower := sketch(map[time.Duration]uint64{100 * time.Millisecond: 980, 300 * time.Millisecond: 20})
	for _, tc := range []struct {
		name   string
		gate   spec.Gate
		w      Window
		want   Verdict
		reason string // a substring of the reason
	}{
		{"error max: too few", spec.Gate{Type: spec.GateErrorRate, Max: 0.02}, Window{Canary: summary(99, 0, 50, fast), Stable: summary(2000, 0, 20, fast)}, Inconclusive, "99 of the 100"},
		{"error max: override requests do not count", spec.Gate{Type: spec.GateErrorRate, Max: 0.02}, Window{Canary: summary(150, 60, 1, fast), Stable: summary(2000, 0, 20, fast)}, Inconclusive, "90 of the 100"},
		{"error max: pass", spec.Gate{Type: spec.GateErrorRate, Max: 0.02}, Window{Canary: summary(200, 0, 4, fast), Stable: summary(4000, 0, 40, fast)}, Pass, "2.0% vs stable 1.0% over 200 vs 4,000"},
		{"error max: fail", spec.Gate{Type: spec.GateErrorRate, Max: 0.02}, Window{Canary: summary(200, 0, 5, fast), Stable: summary(4000, 0, 40, fast)}, Fail, "above the maximum 2.0%"},
		{"error increase: pass", spec.Gate{Type: spec.GateErrorRate, MaxIncrease: 1}, Window{Canary: summary(200, 0, 4, fast), Stable: summary(4000, 0, 40, fast)}, Pass, "1 points above the stable"},
		{"error increase: fail", spec.Gate{Type: spec.GateErrorRate, MaxIncrease: 1}, Window{Canary: summary(200, 0, 5, fast), Stable: summary(4000, 0, 40, fast)}, Fail, "1.5 points above the stable, more than the allowed 1"},
		{"error increase: no stable", spec.Gate{Type: spec.GateErrorRate, MaxIncrease: 1}, Window{Canary: summary(200, 0, 1, fast)}, Inconclusive, "no stable requests"},
		{"latency max: pass", spec.Gate{Type: spec.GateLatency, Quantile: 0.99, Max: 250}, Window{Canary: summary(1000, 0, 0, fast), Stable: summary(9000, 0, 0, fast)}, Pass, "latency p99"},
		{"latency max: fail", spec.Gate{Type: spec.GateLatency, Quantile: 0.99, Max: 250}, Window{Canary: summary(1000, 0, 0, slower), Stable: summary(9000, 0, 0, fast)}, Fail, "above the maximum 250 ms"},
		{"latency increase: fail", spec.Gate{Type: spec.GateLatency, Quantile: 0.99, MaxIncrease: 20}, Window{Canary: summary(1000, 0, 0, slower), Stable: summary(9000, 0, 0, fast)}, Fail, "more than the allowed 20%"},
		{"latency increase: pass", spec.Gate{Type: spec.GateLatency, Quantile: 0.99, MaxIncrease: 20}, Window{Canary: summary(1000, 0, 0, fast), Stable: summary(9000, 0, 0, fast)}, Pass, "0% above the stable"},
		{"latency p50 pass", spec.Gate{Type: spec.GateLatency, Quantile: 0.5, MaxIncrease: 20}, Window{Canary: summary(1000, 0, 0, slower), Stable: summary(9000, 0, 0, fast)}, Pass, "latency p50"},
		{"ttfb too few", spec.Gate{Type: spec.GateTTFB, Quantile: 0.99, Max: 250}, Window{Canary: summary(10, 0, 0, slower), Stable: summary(9000, 0, 0, fast)}, Inconclusive, "10 of the 100"},
		{"ttfb fail", spec.Gate{Type: spec.GateTTFB, Quantile: 0.99, Max: 250}, Window{Canary: summary(1000, 0, 0, slower), Stable: summary(9000, 0, 0, fast)}, Fail, "ttfb p99"},
		{"match rate: no shadow", spec.Gate{Type: spec.GateMatchRate, Min: 0.95}, Window{}, Inconclusive, "keep_mirror"},
		{"match rate: pass", spec.Gate{Type: spec.GateMatchRate, Min: 0.95}, Window{Shadow: &ShadowCounts{Compared: 400, Matched: 396}}, Pass, "99.0%"},
		{"match rate: fail", spec.Gate{Type: spec.GateMatchRate, Min: 0.95}, Window{Shadow: &ShadowCounts{Compared: 100, Matched: 70}}, Fail, "clearly below"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := spec.Plan{Gates: []spec.Gate{tc.gate}}.WithDefaults()
			a := mustNew(t, plan)
			a.StartStage(t0, 500, recent1)
			r := a.Evaluate(plan.Stages[0], tc.w)
			g := r.Gates[0]
			if g.Verdict != tc.want || !strings.Contains(g.Reason, tc.reason) {
				t.Errorf("%s = %s (%q), want %s with %q", g.Gate, g.Verdict, g.Reason, tc.want, tc.reason)
			}
			if r.Failed != (tc.want == Fail) || r.Passed != (tc.want == Pass) {
				t.Errorf("Result failed %v passed %v, want verdict %s", r.Failed, r.Passed, tc.want)
			}
			if _, err := json.Marshal(r); err != nil {
				t.Errorf("json.Marshal(Result): %v", err)
			}
		})
	}
}

// TestStageMinRequests: a stage's own minimum overrides the plan's.
func TestStageMinRequests(t *testing.T) {
	plan := spec.Plan{Gates: []spec.Gate{{Type: spec.GateErrorRate, Max: 0.05}}}.WithDefaults()
	a := mustNew(t, plan)
	w := Window{Canary: summary(150, 0, 1, telemetry.Sketch{}), Stable: summary(3000, 0, 30, telemetry.Sketch{})}
	if v := a.Evaluate(spec.Stage{Weight: 500}, w).Gates[0].Verdict; v != Pass {
		t.Errorf("plan minimum 100, 150 requests: %s, want pass", v)
	}
	if v := a.Evaluate(spec.Stage{Weight: 500, MinRequests: 500}, w).Gates[0].Verdict; v != Inconclusive {
		t.Errorf("stage minimum 500, 150 requests: %s, want inconclusive", v)
	}
}

func TestEvaluateShadow(t *testing.T) {
	phase := spec.ShadowPhase{Mirror: 1000} // defaults: 200 compared, 95%
	for _, tc := range []struct {
		name string
		c    ShadowCounts
		want Verdict
	}{
		{"nothing yet", ShadowCounts{}, Inconclusive},
		{"good but too few", ShadowCounts{Compared: 150, Matched: 150}, Inconclusive},
		{"good", ShadowCounts{Compared: 250, Matched: 245}, Pass},
		{"exactly the minimum", ShadowCounts{Compared: 200, Matched: 190}, Pass},
		{"below but not clearly", ShadowCounts{Compared: 300, Matched: 282}, Inconclusive},
		{"clearly below, early", ShadowCounts{Compared: 40, Matched: 20}, Fail},
		{"clearly below", ShadowCounts{Compared: 2000, Matched: 1800}, Fail},
		{"errors count as mismatches", ShadowCounts{Compared: 250, Matched: 245, Errors: 100}, Fail},
		{"inconsistent", ShadowCounts{Compared: 10, Matched: 11}, Inconclusive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := EvaluateShadow(phase, tc.c, Names{})
			if g.Verdict != tc.want {
				t.Errorf("EvaluateShadow(%+v) = %s (%s), want %s", tc.c, g.Verdict, g.Reason, tc.want)
			}
			if _, err := json.Marshal(g); err != nil {
				t.Errorf("json.Marshal: %v", err)
			}
		})
	}
	// A shadow that agrees 99% of the time is never failed over a long run
	// looked at after every copy, thanks to the anytime-valid interval.
	g := EvaluateShadow(spec.ShadowPhase{Mirror: 1000, MinMatchRate: 0.97}, ShadowCounts{}, Names{})
	for n := uint64(1); n <= 5000; n++ {
		g = EvaluateShadow(spec.ShadowPhase{Mirror: 1000, MinMatchRate: 0.97}, ShadowCounts{Compared: n, Matched: n - n/100}, Names{})
		if g.Verdict == Fail {
			t.Fatalf("a 99%% shadow failed at %d compared: %s", n, g.Reason)
		}
	}
	if g.Verdict != Pass {
		t.Errorf("a 99%% shadow after 5,000 copies: %s, want pass", g.Verdict)
	}
}

// TestSampleRatioMismatch: with real Recorders, a 5% weight served at 10% is
// flagged, and Result then neither fails nor passes the canary (the
// controller pauses). A correct split is not flagged.
func TestSampleRatioMismatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		served   float64
		mismatch bool
	}{
		{"served 10%", 0.10, true},
		{"served 5%", 0.05, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := telemetry.NewRegistry()
			stable, canary := reg.Recorder("fraud", "blue"), reg.Recorder("fraud", "green")
			plan := defaultPlan()
			a := mustNew(t, plan)
			a.StartStage(t0, 500, recent1)
			s := newSim(11, 100, tc.served, healthy, healthy)
			const seconds = 120
			for range seconds {
				// Replay the simulated requests through the Recorders, spread
				// over their second.
				p := s.next()
				for _, arm := range []struct {
					rc *telemetry.Recorder
					sl telemetry.Slice
				}{{stable, p.Stable}, {canary, p.Canary}} {
					var i int64
					for d, n := range arm.sl.Latency.Buckets() {
						for range n {
							status := 200
							if uint64(i) < arm.sl.SplitErrors {
								status = 503
							}
							arm.rc.Begin()
							arm.rc.Observe(telemetry.Observation{Now: p.Start.UnixNano() + i*1e6, Status: status, Latency: d, TTFB: d / 2})
							i++
						}
					}
				}
			}
			end := t0.Add(seconds * time.Second)
			ss, cs := stable.Slices(t0.Add(-time.Second), end), canary.Slices(t0.Add(-time.Second), end)
			var pairs []SlicePair
			for i := range ss {
				pairs = append(pairs, SlicePair{Start: ss[i].Start, Stable: ss[i], Canary: cs[i]})
			}
			if err := a.Observe(pairs); err != nil {
				t.Fatal(err)
			}
			r := a.Evaluate(plan.Stages[0], Window{Stable: stable.Window(end, seconds*time.Second), Canary: canary.Window(end, seconds*time.Second)})
			if r.SampleRatioMismatch != tc.mismatch {
				t.Errorf("SampleRatioMismatch = %v (%s), want %v", r.SampleRatioMismatch, r.SampleRatio.Reason, tc.mismatch)
			}
			if tc.mismatch && (r.Failed || r.Passed || r.SampleRatio.Verdict != Fail) {
				t.Errorf("on a mismatch: failed %v passed %v sample ratio %s, want false, false, fail", r.Failed, r.Passed, r.SampleRatio.Verdict)
			}
			t.Logf("%s", r.SampleRatio.Reason)
			if tc.mismatch {
				a.ResetSampleRatio()
				if r := a.Evaluate(plan.Stages[0], Window{}); r.SampleRatioMismatch {
					t.Errorf("after ResetSampleRatio: still a mismatch")
				}
			}
		})
	}
}

// samePairs is n one-second slice pairs from t0 on, each with the counts
// of canary and stable.
func samePairs(n int, canary, stable telemetry.Slice) []SlicePair {
	pairs := make([]SlicePair, n)
	for i := range pairs {
		start := t0.Add(time.Duration(i) * time.Second)
		c, s := canary, stable
		c.Start, s.Start = start, start
		pairs[i] = SlicePair{Start: start, Stable: s, Canary: c}
	}
	return pairs
}

// TestOverrideRequestsExcluded: errors of override-routed requests are not
// judged, slow ones cannot be (telemetry keeps them out of the sketches,
// whose counts the latency tests take as their requests).
func TestOverrideRequestsExcluded(t *testing.T) {
	plan := defaultPlan()
	plan.Warmup = &spec.Warmup{Requests: -1, Time: -1} // every slice is judged
	a := mustNew(t, plan)
	a.StartStage(t0, 500, recent1)
	l := recent1.Latency.Quantile(0.99)
	// 20 override requests failed: counted in Requests and Errors only.
	pairs := samePairs(300,
		telemetry.Slice{Requests: 25, SplitRequests: 5, Errors: 20, SplitErrors: 0,
			Latency: sketch(map[time.Duration]uint64{l / 2: 5})},
		telemetry.Slice{Requests: 95, SplitRequests: 95, Errors: 1, SplitErrors: 1,
			Latency: sketch(map[time.Duration]uint64{l / 2: 94, 3 * l: 1})})
	if err := a.Observe(pairs); err != nil {
		t.Fatal(err)
	}
	st := a.State()
	if st.Errors.CanaryBad != 0 || st.Errors.CanaryRequests != 1500 {
		t.Errorf("errors test counted canary %d bad of %d, want 0 of 1500", st.Errors.CanaryBad, st.Errors.CanaryRequests)
	}
	if st.LatencyRollback[2].CanaryBad != 0 || st.LatencyRollback[2].CanaryRequests != 1500 {
		t.Errorf("latency test counted canary %d slow of %d, want 0 of 1500", st.LatencyRollback[2].CanaryBad, st.LatencyRollback[2].CanaryRequests)
	}
}

// TestObserveReplayIdempotent: replaying overlapping ranges counts each slice
// once, and a bad slice changes nothing.
func TestObserveReplayIdempotent(t *testing.T) {
	s := newSim(3, 100, 0.05, healthy, healthy)
	var pairs []SlicePair
	for range 200 {
		pairs = append(pairs, s.next())
	}
	once := mustNew(t, defaultPlan())
	once.StartStage(t0, 500, recent1)
	if err := once.Observe(pairs); err != nil {
		t.Fatal(err)
	}
	replay := mustNew(t, defaultPlan())
	replay.StartStage(t0, 500, recent1)
	for _, r := range [][2]int{{0, 100}, {50, 150}, {0, 10}, {100, 200}, {199, 200}} {
		if err := replay.Observe(pairs[r[0]:r[1]]); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(once.State(), replay.State()); diff != "" {
		t.Errorf("state after replays (-once +replay):\n%s", diff)
	}
	before := replay.State()
	bad := s.next()
	bad.Canary.SplitErrors = bad.Canary.SplitRequests + 1
	if err := replay.Observe([]SlicePair{s.next(), bad}); err == nil {
		t.Errorf("Observe(inconsistent slice) = nil error, want an error")
	}
	if diff := cmp.Diff(before, replay.State()); diff != "" {
		t.Errorf("a rejected batch changed the state (-before +after):\n%s", diff)
	}
}

// TestObserveParts: a second observed in open parts then its rest counts
// what the whole second does; a part of a second already closed is not
// counted again, and a restored analyzer goes on from the next second (the
// rest of a second it saw part of is lost, never counted twice).
func TestObserveParts(t *testing.T) {
	s := newSim(5, 400, 0.05, healthy, healthy)
	whole, parted := mustNew(t, defaultPlan()), mustNew(t, defaultPlan())
	whole.StartStage(t0, 500, recent1)
	parted.StartStage(t0, 500, recent1)
	var last SlicePair
	for range 30 {
		p := s.next()
		if err := whole.Observe([]SlicePair{p}); err != nil {
			t.Fatal(err)
		}
		// The same second as an open part and its rest: the counts split
		// in two, the latencies all in the first.
		half := func(s telemetry.Slice) (a, b telemetry.Slice) {
			a = telemetry.Slice{Requests: s.Requests / 2, SplitRequests: s.SplitRequests / 2, SplitErrors: s.SplitErrors / 2, Latency: s.Latency}
			b = telemetry.Slice{Requests: s.Requests - a.Requests, SplitRequests: s.SplitRequests - a.SplitRequests, SplitErrors: s.SplitErrors - a.SplitErrors}
			return a, b
		}
		s1, s2 := half(p.Stable)
		c1, c2 := half(p.Canary)
		first := SlicePair{Start: p.Start, Stable: s1, Canary: c1, Span: 400 * time.Millisecond, Open: true}
		rest := SlicePair{Start: p.Start, Stable: s2, Canary: c2, Span: 600 * time.Millisecond}
		if err := parted.Observe([]SlicePair{first, rest, first}); err != nil { // the repeat: a closed second
			t.Fatal(err)
		}
		last = p
	}
	w, pt := whole.State(), parted.State()
	if w.Errors.CanaryRequests == 0 || (w.Errors.CanaryRequests != pt.Errors.CanaryRequests || w.Errors.StableRequests != pt.Errors.StableRequests ||
		w.Errors.CanaryBad != pt.Errors.CanaryBad || w.Errors.StableBad != pt.Errors.StableBad) {
		t.Errorf("errors test counted canary %d/%d stable %d/%d in parts, %d/%d and %d/%d whole",
			pt.Errors.CanaryBad, pt.Errors.CanaryRequests, pt.Errors.StableBad, pt.Errors.StableRequests,
			w.Errors.CanaryBad, w.Errors.CanaryRequests, w.Errors.StableBad, w.Errors.StableRequests)
	}
	if pt.Errors.Units > w.Errors.Units+1e-9 || pt.Errors.Units == 0 {
		t.Errorf("informative time: %v s in parts, %v whole; want the parts' no more (a part without events of both arms carries none)", pt.Errors.Units, w.Errors.Units)
	}

	next := s.next()
	open := SlicePair{Start: next.Start, Stable: next.Stable, Canary: next.Canary, Span: 500 * time.Millisecond, Open: true}
	if err := parted.Observe([]SlicePair{open}); err != nil {
		t.Fatal(err)
	}
	restored, err := Restore(defaultPlan(), parted.State())
	if err != nil {
		t.Fatal(err)
	}
	before := restored.State()
	if err := restored.Observe([]SlicePair{{Start: next.Start, Stable: next.Stable, Canary: next.Canary, Span: 500 * time.Millisecond}, {Start: last.Start, Stable: last.Stable}}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, restored.State()); diff != "" {
		t.Errorf("a restored analyzer counted the rest of a second it saw part of (-before +after):\n%s", diff)
	}
}

// TestStateRoundTrip: an Analyzer restored from the JSON of its State at any
// point (before the thresholds are fixed, mid-stage, across a stage change)
// gives exactly the results of the original on every later look.
func TestStateRoundTrip(t *testing.T) {
	plan := spec.Plan{Gates: []spec.Gate{{Type: spec.GateSequential}, {Type: spec.GateErrorRate, MaxIncrease: 2}}}.WithDefaults()
	bad := healthy
	bad.errRate = 0.03
	for _, cut := range []int{0, 1, 20, 150, 299, 300, 301, 450} {
		s := newSim(21, 100, 0.05, healthy, bad)
		orig := mustNew(t, plan)
		// Stage 1 starts without recent stable data: thresholds are fixed
		// from the stage's own stable requests; stage 2 starts at 300 s.
		orig.StartStage(t0, 500, telemetry.Summary{})
		var restored *Analyzer
		var w Window
		for sec := range 600 {
			if sec == cut {
				b, err := json.Marshal(orig.State())
				if err != nil {
					t.Fatalf("cut %d: marshal: %v", cut, err)
				}
				var st State
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatalf("cut %d: unmarshal: %v", cut, err)
				}
				if restored, err = Restore(plan, st); err != nil {
					t.Fatalf("cut %d: Restore: %v", cut, err)
				}
			}
			if sec == 300 {
				s.route = 0.25
				w = Window{}
				for _, a := range []*Analyzer{orig, restored} {
					if a != nil {
						a.StartStage(t0.Add(300*time.Second), 2500, recent1)
					}
				}
			}
			p := s.next()
			accumulate(&w.Stable, p.Stable, false)
			accumulate(&w.Canary, p.Canary, false)
			if err := orig.Observe([]SlicePair{p}); err != nil {
				t.Fatal(err)
			}
			if restored == nil {
				continue
			}
			if err := restored.Observe([]SlicePair{p}); err != nil {
				t.Fatal(err)
			}
			stage := plan.Stages[0]
			if sec >= 300 {
				stage = plan.Stages[1]
			}
			if diff := cmp.Diff(orig.Evaluate(stage, w), restored.Evaluate(stage, w)); diff != "" {
				t.Fatalf("cut %d, second %d: results differ (-orig +restored):\n%s", cut, sec, diff)
			}
		}
		if restored == nil {
			t.Fatalf("cut %d never reached", cut)
		}
		if diff := cmp.Diff(orig.State(), restored.State()); diff != "" {
			t.Errorf("cut %d: final states differ (-orig +restored):\n%s", cut, diff)
		}
	}
}

func TestNewAndRestoreRefuseBadInput(t *testing.T) {
	if _, err := New(spec.Plan{}); err == nil {
		t.Errorf("New(plan without defaults) = nil error, want an error")
	}
	if _, err := New(spec.Plan{Alpha: 2}.WithDefaults()); err == nil {
		t.Errorf("New(alpha 2) = nil error, want an error")
	}
	a := mustNew(t, defaultPlan())
	a.StartStage(t0, 500, recent1)
	st := a.State()
	other := defaultPlan()
	other.Alpha = 0.1
	if _, err := Restore(other, st); err == nil {
		t.Errorf("Restore(plan with another alpha) = nil error, want an error")
	}
	noSeq := spec.Plan{Gates: []spec.Gate{{Type: spec.GateErrorRate, Max: 0.1}}}.WithDefaults()
	if _, err := Restore(noSeq, st); err == nil {
		t.Errorf("Restore(plan without the sequential gate) = nil error, want an error")
	}
	st.Version = 99
	if _, err := Restore(defaultPlan(), st); err == nil {
		t.Errorf("Restore(version 99) = nil error, want an error")
	}
}

// TestReasonReadsWell pins the wording of a sequential failure.
func TestReasonReadsWell(t *testing.T) {
	bad := healthy
	bad.errRate = 0.10
	o := runStage(t, 5, 500, 100, healthy, bad, 600, 1, false, false)
	if !o.failed || !strings.HasPrefix(o.failedGate, "canary error rate ") || !strings.Contains(o.failedGate, "sequential test statistic") ||
		!strings.Contains(o.failedGate, "≥ threshold 40 (alpha 0.025)") {
		t.Errorf("reason = %q, want like %q", o.failedGate, "canary error rate 9.8% vs stable 1.0% over 212 vs 4,030 requests: sequential test statistic 41.2 ≥ threshold 40 (alpha 0.025)")
	}
	t.Log(o.failedGate)
}

// TestPausedSkipsOnlyTheSampleRatio: while the rollout is paused, a split a
// human set (here the canary at 50% of a 5% stage) is not a sample-ratio
// mismatch and does not hold back the error test, which goes on judging
// every slice; unpaused, the same slices are a mismatch that holds the
// canary unjudged.
func TestPausedSkipsOnlyTheSampleRatio(t *testing.T) {
	l := recent1.Latency.Quantile(0.99)
	pairs := samePairs(120,
		telemetry.Slice{Requests: 50, SplitRequests: 50, Errors: 10, SplitErrors: 10,
			Latency: sketch(map[time.Duration]uint64{l / 2: 50})},
		telemetry.Slice{Requests: 50, SplitRequests: 50, Errors: 1, SplitErrors: 1,
			Latency: sketch(map[time.Duration]uint64{l / 2: 50})})
	stage := spec.Stage{Weight: 500}
	for _, paused := range []bool{true, false} {
		a := mustNew(t, defaultPlan())
		a.StartStage(t0, 500, recent1)
		a.SetPaused(paused)
		if err := a.Observe(pairs); err != nil {
			t.Fatal(err)
		}
		r := a.Evaluate(stage, Window{})
		if paused && (!r.Failed || r.SampleRatioMismatch || r.SampleRatio.Verdict == Fail) {
			t.Errorf("paused: failed %v, mismatch %v (%s); want the error regression judged and no mismatch", r.Failed, r.SampleRatioMismatch, r.SampleRatio.Reason)
		}
		if !paused && (r.Failed || !r.SampleRatioMismatch) {
			t.Errorf("running: failed %v, mismatch %v; want the mismatch to hold the canary unjudged", r.Failed, r.SampleRatioMismatch)
		}
	}
}

// TestSampleRatioFromTheRouting: the slices before the stage's split took
// effect (RoutedAt: the controller commits it after deciding the stage)
// are routed at the previous weight; the sample-ratio test does not hold
// them against the new one, and judges the slices after it as ever. A
// state saved and restored keeps when the split took effect.
func TestSampleRatioFromTheRouting(t *testing.T) {
	l := recent1.Latency.Quantile(0.99)
	lat := sketch(map[time.Duration]uint64{l / 2: 50})
	// The first 3 seconds of a 50% stage: every request still on the
	// stable (the commit was slow); then the split as set.
	before := samePairs(3, telemetry.Slice{Requests: 0, SplitRequests: 0},
		telemetry.Slice{Requests: 50, SplitRequests: 50, Latency: lat})
	after := samePairs(3, telemetry.Slice{Requests: 25, SplitRequests: 25, Latency: sketch(map[time.Duration]uint64{l / 2: 25})},
		telemetry.Slice{Requests: 25, SplitRequests: 25, Latency: sketch(map[time.Duration]uint64{l / 2: 25})})
	for i := range after {
		after[i].Start = after[i].Start.Add(3 * time.Second)
	}
	stage := spec.Stage{Weight: 5000}
	for _, routed := range []bool{true, false} {
		a := mustNew(t, defaultPlan())
		a.StartStage(t0, 5000, recent1)
		if routed {
			a.RoutedAt(t0.Add(3 * time.Second))
			st := a.State() // saved and restored between the commit and the slices
			var err error
			if a, err = Restore(defaultPlan(), st); err != nil {
				t.Fatal(err)
			}
		}
		if err := a.Observe(append(before, after...)); err != nil {
			t.Fatal(err)
		}
		r := a.Evaluate(stage, Window{})
		if r.SampleRatioMismatch != !routed {
			t.Errorf("routed at %v: mismatch %v (%s); want it only when the slices before the routing count", routed, r.SampleRatioMismatch, r.SampleRatio.Reason)
		}
	}
}
