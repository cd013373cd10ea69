package estimate

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// stableMinute is a stable's last minute at rate requests/s: errors at
// errRate, latencies lognormal (median 20 ms, sigma 0.4), recorded into a
// telemetry.Recorder and read as the controller reads it.
func stableMinute(rate, errRate float64, seed uint64) telemetry.Summary {
	r := rand.New(rand.NewPCG(seed, 7))
	rec := telemetry.NewRegistry().Recorder("model", "blue")
	start := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	for sec := range 60 {
		at := start.Add(time.Duration(sec) * time.Second).UnixNano()
		for range poisson(r, rate) {
			status := 200
			if r.Float64() < errRate {
				status = 500
			}
			lat := time.Duration(20 * math.Exp(0.4*r.NormFloat64()) * float64(time.Millisecond))
			rec.Begin()
			rec.Observe(telemetry.Observation{Now: at + r.Int64N(int64(time.Second)), Status: status, Latency: lat, TTFB: lat})
		}
	}
	return rec.Window(start.Add(time.Minute), time.Minute)
}

// estimates caches the default plan's estimates by rate: several tests
// read the same ones (the race detector makes each cost about a second).
var estimates sync.Map

func defaultEstimate(t testing.TB, rate float64) Estimate {
	if e, ok := estimates.Load(rate); ok {
		return e.(Estimate)
	}
	e, err := Rollout(spec.Plan{}, FromSummary(stableMinute(rate, 0.01, 1)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	estimates.Store(rate, e)
	return e
}

// BenchmarkEstimate is the cost of an estimate of the default plan at 2,
// 20, 200 and 2,000 requests/s (run it with -cpu 1: cpu-ms/op is then
// one estimate's CPU time).
func BenchmarkEstimate(b *testing.B) {
	for _, rate := range []float64{2, 20, 200, 2000} {
		tr := FromSummary(stableMinute(rate, 0.01, 1))
		b.Run(fmt.Sprintf("%grps", rate), func(b *testing.B) {
			cpu0, ok := cpuTime()
			for b.Loop() {
				if _, err := Rollout(spec.Plan{}, tr, Options{}); err != nil {
					b.Fatal(err)
				}
			}
			// CPU per estimate: with -cpu 1, the estimate's own cost
			// even on a machine others share.
			if cpu1, _ := cpuTime(); ok {
				b.ReportMetric(float64(cpu1-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
			}
		})
	}
}

func TestDeterministic(t *testing.T) {
	tr := FromSummary(stableMinute(200, 0.01, 2))
	a, err := Rollout(spec.Plan{}, tr, Options{Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Rollout(spec.Plan{}, tr, Options{Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, b) {
		t.Errorf("two estimates of the same inputs differ:\n%+v\n%+v", a, b)
	}
	c, err := Rollout(spec.Plan{}, tr, Options{Runs: 3, Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	if reflect.DeepEqual(a.Stages, c.Stages) {
		t.Errorf("another seed gave the same stages: %+v", a.Stages)
	}
}

func TestMoreTrafficIsFaster(t *testing.T) {
	var prev Estimate
	for i, rate := range []float64{20, 200, 2000} {
		e := defaultEstimate(t, rate)
		t.Logf("%g requests/s: stages %v s, total %v s", rate, stageSeconds(e), e.Total.Seconds)
		if e.Runs != DefaultRuns || e.Total.Undecided || e.Total.Decided != e.Runs {
			t.Fatalf("%g requests/s: %d runs, total %+v: want %d runs, all promoted", rate, e.Runs, e.Total, DefaultRuns)
		}
		if i > 0 && !(e.Total.Seconds < prev.Total.Seconds && e.Stages[0].Time.Seconds < prev.Stages[0].Time.Seconds) {
			t.Errorf("%g requests/s: total %v s and stage 1 %v s, not shorter than %v s and %v s at %g requests/s",
				rate, e.Total.Seconds, e.Stages[0].Time.Seconds, prev.Total.Seconds, prev.Stages[0].Time.Seconds, prev.RequestsPerSecond)
		}
		for _, s := range e.Stages {
			if s.Promotion {
				continue
			}
			if s.Time.Seconds < s.BakeSeconds || s.Time.LowSeconds > s.Time.Seconds || s.Time.HighSeconds < s.Time.Seconds {
				t.Errorf("%g requests/s, stage %d: %+v: want bake ≤ low ≤ median ≤ high", rate, s.Stage, s.Time)
			}
		}
		prev = e
	}
	// At 2,000 requests/s every stage waits only for its bake.
	for _, s := range defaultEstimate(t, 2000).Stages[:3] {
		if s.Time.Seconds != 30 || s.LimitedBy != LimitBake {
			t.Errorf("2,000 requests/s, stage %d: %v s, limited by %q: want 30 s, the bake", s.Stage, s.Time.Seconds, s.LimitedBy)
		}
	}
}

func stageSeconds(e Estimate) []float64 {
	var out []float64
	for _, s := range e.Stages {
		out = append(out, s.Time.Seconds)
	}
	return out
}

func TestDeadlineWarning(t *testing.T) {
	slow := defaultEstimate(t, 2)
	t.Logf("2 requests/s: %v", slow.Warnings)
	s1 := slow.Stages[0]
	if s1.WithinDeadline || slow.WithinDeadlines || s1.Time.Seconds <= 600 {
		t.Errorf("2 requests/s: stage 1 %+v within its deadline", s1)
	}
	for _, want := range []string{"stage 1 (5%) needs about ", " at 1.9 requests/s", "longer than its 10 min progress deadline: it will pause; raise progress_deadline or traffic"} {
		if !strings.Contains(s1.Warning, want) {
			t.Errorf("2 requests/s: stage 1's warning %q does not say %q", s1.Warning, want)
		}
	}
	if len(slow.Warnings) == 0 || slow.Warnings[0] != s1.Warning {
		t.Errorf("2 requests/s: warnings %q do not start with stage 1's", slow.Warnings)
	}
	fast := defaultEstimate(t, 200)
	if len(fast.Warnings) > 0 || !fast.WithinDeadlines {
		t.Errorf("200 requests/s: warnings %q, within deadlines %v: want none, true", fast.Warnings, fast.WithinDeadlines)
	}
	// The deadline's action is the plan's.
	plan := spec.Plan{OnDeadline: spec.DeadlineRollback}
	e, err := Rollout(plan, FromSummary(stableMinute(2, 0.01, 1)), Options{Runs: 1, MaxStage: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if w := e.Stages[0].Warning; !strings.Contains(w, "does not decide within 1 h") || !strings.Contains(w, "it will be rolled back") {
		t.Errorf("a stage beyond the bound, on_deadline rollback: warning %q", w)
	}
}

func TestZeroTraffic(t *testing.T) {
	began := time.Now()
	e, err := Rollout(spec.Plan{}, Traffic{}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("an estimate without traffic took %v", d)
	}
	if e.Runs != 0 || e.WithinDeadlines || !e.Total.Undecided {
		t.Errorf("no traffic: %+v", e)
	}
	for _, s := range e.Stages[:3] {
		if !s.Time.Undecided || s.WithinDeadline || s.Time.Seconds != DefaultMaxStage.Seconds() {
			t.Errorf("no traffic, stage %d: %+v: want undecided after the bound", s.Stage, s)
		}
	}
	if len(e.Warnings) != 1 || !strings.HasPrefix(e.Warnings[0], "no traffic (0 requests/s): no stage can ever decide") {
		t.Errorf("no traffic: warnings %q", e.Warnings)
	}
	if _, err := json.Marshal(e); err != nil {
		t.Errorf("no traffic: the estimate does not encode as JSON: %v", err)
	}
	// A trickle: bounded, every stage undecided.
	began = time.Now()
	e, err = Rollout(spec.Plan{}, Traffic{RequestsPerSecond: 1e-6, ErrorRate: 0.01}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d > 2*time.Second || !e.Stages[0].Time.Undecided || !strings.Contains(e.Stages[0].Warning, "does not decide within 24 h") {
		t.Errorf("a trickle of traffic: %v, stage 1 %+v", d, e.Stages[0])
	}
	if _, err := Rollout(spec.Plan{}, Traffic{RequestsPerSecond: math.NaN()}, Options{}); err == nil {
		t.Errorf("NaN requests/s accepted")
	}
	if _, err := Rollout(spec.Plan{}, Traffic{RequestsPerSecond: 1, ErrorRate: 2}, Options{}); err == nil {
		t.Errorf("an error rate of 2 accepted")
	}
}

func TestLongBake(t *testing.T) {
	plan := spec.Plan{
		Bake:             spec.Duration(20 * time.Minute),
		ProgressDeadline: spec.Duration(30 * time.Minute),
		Stages:           []spec.Stage{{Weight: 500}, {Weight: 2500, Bake: spec.Duration(40 * time.Minute)}, {Weight: 5000}, {Weight: spec.Full}},
	}
	e, err := Rollout(plan, FromSummary(stableMinute(200, 0.01, 3)), Options{Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stages %v s, total %v s; %q", stageSeconds(e), e.Total.Seconds, e.Warnings)
	var sum float64
	for i, s := range e.Stages[:3] {
		bake := plan.WithDefaults().StageBake(i).Seconds()
		if s.Time.LowSeconds < bake || s.BakeSeconds != bake {
			t.Errorf("stage %d: %+v, bake %v s: want at least the bake", s.Stage, s.Time, bake)
		}
		sum += bake
	}
	if e.Total.LowSeconds < sum {
		t.Errorf("total %+v: want at least the bakes' %v s", e.Total, sum)
	}
	if w := e.Stages[1].Warning; !strings.Contains(w, "stage 2 (25%) bakes for 40 min, longer than its 30 min progress deadline: it will pause; raise progress_deadline or lower the bake") {
		t.Errorf("stage 2's warning %q", w)
	}
	if e.Stages[0].Warning != "" || e.Stages[2].Warning != "" {
		t.Errorf("warnings on stages within their deadline: %q, %q", e.Stages[0].Warning, e.Stages[2].Warning)
	}
}

func TestShadowFinalBakeTimeout(t *testing.T) {
	plan := spec.Plan{
		Shadow:           &spec.ShadowPhase{Mirror: 1000, MinCompared: 200},
		FinalBake:        spec.Duration(5 * time.Minute),
		Timeout:          spec.Duration(4 * time.Minute),
		ConfirmPromotion: &spec.Webhook{URL: "http://127.0.0.1:9/confirm"},
	}
	tr := FromSummary(stableMinute(20, 0.01, 4))
	tr.RequestsPerSecond = 20
	e, err := Rollout(plan, tr, Options{Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if sh := e.Shadow; sh == nil || sh.Seconds != 100 || !sh.WithinDeadline || sh.Warning != "" {
		t.Errorf("shadow at 20 requests/s, 10%% mirrored, 200 compared: %+v, want 100 s", sh)
	}
	if e.FinalBakeSeconds != 300 || e.EndSeconds != e.Shadow.Seconds+e.Total.Seconds+300 {
		t.Errorf("final bake %v s, end %v s: want 300 s, shadow + total + final bake", e.FinalBakeSeconds, e.EndSeconds)
	}
	if !slicesContain(e.Warnings, "longer than its 4 min timeout: it will be rolled back then") {
		t.Errorf("no timeout warning in %q", e.Warnings)
	}
	if !slicesContain(e.Notes, "confirm-promotion webhook") {
		t.Errorf("no note of the confirm-promotion webhook in %q", e.Notes)
	}
	slow, err := Rollout(spec.Plan{Shadow: &spec.ShadowPhase{Mirror: 100}}, FromSummary(stableMinute(2, 0.01, 4)), Options{Runs: 1, MaxStage: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if sh := slow.Shadow; sh == nil || sh.WithinDeadline || !strings.HasPrefix(slow.Warnings[0], "the shadow phase needs about") {
		t.Errorf("shadow at 2 requests/s, 1%% mirrored: %+v, warnings %q", sh, slow.Warnings)
	}
}

func slicesContain(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// A gate the stable itself fails rolls back an identical canary: the
// estimate says so instead of a time.
func TestGateFailsIdenticalCanary(t *testing.T) {
	plan := spec.Plan{Gates: []spec.Gate{{Type: spec.GateSequential}, {Type: spec.GateErrorRate, Max: 0.002}}}
	e, err := Rollout(plan, FromSummary(stableMinute(200, 0.01, 5)), Options{Runs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if e.Runs != 0 || !slicesContain(e.Warnings, "a canary as good as the stable would likely be rolled back") || !slicesContain(e.Warnings, "error_rate") {
		t.Errorf("error_rate gate below the stable's rate: runs %d, warnings %q", e.Runs, e.Warnings)
	}
}

func TestFewLatencies(t *testing.T) {
	sum := stableMinute(0.2, 0, 6) // about 12 requests
	e, err := Rollout(spec.Plan{}, FromSummary(sum), Options{Runs: 1, MaxStage: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !slicesContain(e.Notes, "latencies assumed lognormal") {
		t.Errorf("notes %q: want the lognormal stand-in said", e.Notes)
	}
}

func TestSampling(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 20000
	for _, lam := range []float64{0.3, 4, 29.5, 30, 300, 5000} {
		var s, s2 float64
		for range n {
			k := float64(poisson(r, lam))
			s, s2 = s+k, s2+k*k
		}
		mean, vr := s/n, s2/n-(s/n)*(s/n)
		if math.Abs(mean-lam) > 5*math.Sqrt(lam/n) || math.Abs(vr/lam-1) > 0.06 {
			t.Errorf("poisson(%v): mean %v, variance %v", lam, mean, vr)
		}
	}
	for _, c := range []struct {
		n int64
		p float64
	}{{20, 0.3}, {1000, 0.01}, {1000, 0.5}, {100000, 0.01}, {50, 0.97}} {
		var s float64
		for range n {
			k := binomial(r, c.n, c.p)
			if k < 0 || k > c.n {
				t.Fatalf("binomial(%d, %v) = %d", c.n, c.p, k)
			}
			s += float64(k)
		}
		want := float64(c.n) * c.p
		if sd := math.Sqrt(want * (1 - c.p) / n); math.Abs(s/n-want) > 5*sd+0.5/n {
			t.Errorf("binomial(%d, %v): mean %v, want %v", c.n, c.p, s/n, want)
		}
	}
}

func TestCollapse(t *testing.T) {
	m := lognormalModel(20*time.Millisecond, 0.4)
	cuts := []time.Duration{15 * time.Millisecond, 20 * time.Millisecond, 33 * time.Millisecond}
	c := m.collapse(cuts)
	if len(c.atoms) != len(cuts)+1 {
		t.Fatalf("%d atoms collapsed on %d cuts: %v", len(c.atoms), len(cuts), c.atoms)
	}
	for k, a := range c.atoms {
		var p float64
		for _, b := range m.atoms {
			if groupOf(b.v, cuts) == k {
				p += b.p
			}
		}
		if groupOf(a.v, cuts) != k || math.Abs(a.p-p) > 1e-12 {
			t.Errorf("interval %d: atom %v with %v, want a value in it with %v", k, a.v, a.p, p)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	sk, k := c.draw(r, 5000, make([]uint64, len(c.atoms)))
	if sk.Count() != uint64(k) || k < 4500 || k > 5500 {
		t.Errorf("drew %d requests, sketch of %d", k, sk.Count())
	}
}

func TestText(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{rateText(0.05), "0.05"}, {rateText(2), "2"}, {rateText(33.3), "33"}, {rateText(2000), "2,000"}, {rateText(199.6), "200"},
		{words(10 * time.Minute), "10 min"}, {words(30 * time.Second), "30 s"}, {words(90 * time.Second), "90 s"},
		{words(24 * time.Hour), "24 h"}, {words(90 * time.Minute), "90 min"},
		{analysis.Roughly(41 * time.Second), "41 s"}, {analysis.Roughly(41*time.Minute + 20*time.Second), "41 min"}, {analysis.Roughly(5*time.Hour + 12*time.Minute), "5.2 h"},
		{analysis.Roughly(150 * time.Hour), "150 h"}, {analysis.Count(2437), "2,437"}, {analysis.About(2437), "about 2,400"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}

// TestDeadlineInRequests: a plan bounded by canary requests has no time
// deadline to warn about at 20 requests/s: it warns only when a stage needs
// more canary requests than its bound, saying which key to raise.
func TestDeadlineInRequests(t *testing.T) {
	tr := FromSummary(stableMinute(20, 0.01, 1))
	roomy, err := Rollout(spec.Plan{ProgressDeadlineRequests: 100000}, tr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(roomy.Warnings) > 0 || !roomy.WithinDeadlines {
		t.Errorf("20 requests/s, deadline 100,000 canary requests: warnings %q, within %v; want none", roomy.Warnings, roomy.WithinDeadlines)
	}
	tight, err := Rollout(spec.Plan{ProgressDeadlineRequests: 50}, tr, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w := tight.Stages[0].Warning; !strings.Contains(w, "more than its progress deadline of 50 canary requests") || !strings.Contains(w, "raise progress_deadline_requests") {
		t.Errorf("20 requests/s, deadline 50 canary requests: stage 1's warning %q", w)
	}
}
