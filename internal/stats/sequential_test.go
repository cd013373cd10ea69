package stats

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// binomial draws Binomial(n, p) by inversion (fine for the small means used here).
func binomial(rng *rand.Rand, n int64, p float64) int64 {
	if n <= 0 || p <= 0 {
		return 0
	}
	if p >= 1 {
		return n
	}
	if p > 0.5 {
		return n - binomial(rng, n, 1-p)
	}
	if float64(n)*p > 50 { // normal approximation is plenty for the large means here
		v := math.Round(float64(n)*p + math.Sqrt(float64(n)*p*(1-p))*rng.NormFloat64())
		return int64(math.Max(0, math.Min(float64(n), v)))
	}
	q := 1 - p
	pk := math.Pow(q, float64(n))
	u := rng.Float64()
	var k int64
	for u > pk && k < n {
		u -= pk
		pk *= float64(n-k) / float64(k+1) * p / q
		k++
	}
	return k
}

// zTestRejects is the naive fixed-sample one-sided two-proportion z-test at level alpha.
func zTestRejects(c Counts, alpha float64) bool {
	n1, n2 := float64(c.CanaryRequests), float64(c.StableRequests)
	if n1 == 0 || n2 == 0 {
		return false
	}
	p1, p2 := float64(c.CanaryBad)/n1, float64(c.StableBad)/n2
	p := float64(c.CanaryBad+c.StableBad) / (n1 + n2)
	se := math.Sqrt(p * (1 - p) * (1/n1 + 1/n2))
	if se == 0 {
		return false
	}
	return (p1-p2)/se > normalQuantile(1-alpha)
}

// TestRegressionFalseAlarmUnderNull: under the null (identical versions), the
// sequential test's false rollback rate stays ≤ alpha whether it looks after every
// request, every second or every minute, while the fixed-sample z-test looked at as
// often exceeds alpha.
func TestRegressionFalseAlarmUnderNull(t *testing.T) {
	const (
		alpha   = 0.05
		w       = 0.05
		p       = 0.02
		horizon = 100_000 // requests per run: about 2,000 bad events
		runs    = 400
	)
	tests := []struct {
		name      string
		slice     int64 // requests per slice (one look per slice)
		zMinRate  float64
		configure bool
	}{
		{"every request", 1, 0.15, true},
		{"every second", 100, 0.15, false},
		{"every minute", 6000, 0.10, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(7, uint64(tc.slice)))
			seqFalse, zFalse := 0, 0
			for range runs {
				rt, err := NewRegressionTest(RegressionConfig{Alpha: alpha, UseConfiguredWeight: tc.configure})
				if err != nil {
					t.Fatal(err)
				}
				var c Counts
				zHit := false
				for done := int64(0); done < horizon; {
					var s Slice
					if tc.slice == 1 {
						// Per-request looks: between two bad requests nothing changes
						// for either test, so jump from one bad request to the next.
						gap := int64(math.Floor(math.Log(1-rng.Float64())/math.Log(1-p))) + 1
						nc := binomial(rng, gap-1, w)
						c.CanaryRequests += nc
						c.StableRequests += gap - 1 - nc
						done += gap
						s = Slice{Weight: w}
						if rng.Float64() < w {
							s.CanaryRequests, s.CanaryBad = 1, 1
						} else {
							s.StableRequests, s.StableBad = 1, 1
						}
					} else {
						nc := binomial(rng, tc.slice, w)
						s = Slice{CanaryRequests: nc, StableRequests: tc.slice - nc, Weight: w}
						s.CanaryBad = binomial(rng, nc, p)
						s.StableBad = binomial(rng, tc.slice-nc, p)
						done += tc.slice
					}
					c.CanaryRequests += s.CanaryRequests
					c.StableRequests += s.StableRequests
					c.CanaryBad += s.CanaryBad
					c.StableBad += s.StableBad
					if _, err := rt.Observe(s); err != nil {
						t.Fatal(err)
					}
					zHit = zHit || zTestRejects(c, alpha)
				}
				if rt.Evidence().Decision == Reject {
					seqFalse++
				}
				if zHit {
					zFalse++
				}
			}
			seq, z := float64(seqFalse)/runs, float64(zFalse)/runs
			t.Logf("false rollback: sequential %.3f, peeking z-test %.3f", seq, z)
			if seq > alpha {
				t.Errorf("sequential false rollback rate %.3f > alpha %v", seq, alpha)
			}
			if z <= tc.zMinRate {
				t.Errorf("peeking z-test false rollback rate %.3f, want > %v (it should exceed alpha)", z, tc.zMinRate)
			}
		})
	}
}

// TestRegressionWeightChanges: the realised share per slice keeps the test valid when
// the weight moves 1% → 5% → 25% → 50% and traffic swings, and a shared incident
// (both arms' error rate up 5x) does not trigger it.
func TestRegressionWeightChanges(t *testing.T) {
	const alpha, runs = 0.05, 400
	rng := rand.New(rand.NewPCG(11, 12))
	weights := []float64{0.01, 0.05, 0.25, 0.5}
	falseRB := 0
	for range runs {
		rt, err := NewRegressionTest(RegressionConfig{Alpha: alpha})
		if err != nil {
			t.Fatal(err)
		}
		for sec := range 2400 {
			w := weights[sec/600]
			n := int64(100 * math.Pow(3, math.Sin(2*math.Pi*float64(sec)/2400)))
			p := 0.01
			if sec >= 900 && sec < 1200 {
				p = 0.05 // shared incident
			}
			nc := binomial(rng, n, w)
			s := Slice{CanaryRequests: nc, StableRequests: n - nc, Weight: w}
			s.CanaryBad, s.StableBad = binomial(rng, nc, p), binomial(rng, n-nc, p)
			if _, err := rt.Observe(s); err != nil {
				t.Fatal(err)
			}
		}
		if rt.Evidence().Decision == Reject {
			falseRB++
		}
	}
	if rate := float64(falseRB) / runs; rate > alpha {
		t.Errorf("false rollback rate with weight changes %.3f > %v", rate, alpha)
	}
}

// TestRegressionDetects: errors 1% → 2% at a 5% canary are rolled back, in a median
// of about 1,000 canary requests (the reference measured 888 for this grid).
func TestRegressionDetects(t *testing.T) {
	const runs = 300
	rng := rand.New(rand.NewPCG(3, 4))
	var at []float64
	for range runs {
		rt, err := NewRegressionTest(RegressionConfig{Alpha: 0.05})
		if err != nil {
			t.Fatal(err)
		}
		for sec := 0; sec < 20000; sec++ {
			nc := binomial(rng, 100, 0.05)
			s := Slice{CanaryRequests: nc, StableRequests: 100 - nc, Weight: 0.05}
			s.CanaryBad, s.StableBad = binomial(rng, nc, 0.02), binomial(rng, 100-nc, 0.01)
			e, err := rt.Observe(s)
			if err != nil {
				t.Fatal(err)
			}
			if e.Decision == Reject {
				at = append(at, float64(e.Counts.CanaryRequests))
				break
			}
		}
	}
	if len(at) < runs*99/100 {
		t.Fatalf("detected in %d of %d runs", len(at), runs)
	}
	med := median(at)
	t.Logf("median canary requests to rollback: %.0f", med)
	if med > 1200 {
		t.Errorf("median canary requests to rollback %.0f > 1200", med)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sortFloats(s)
	return s[len(s)/2]
}

func TestRegressionEvidence(t *testing.T) {
	tests := []struct {
		name   string
		slices []Slice
		want   Decision
	}{
		{"no events", []Slice{{CanaryRequests: 50, StableRequests: 950}}, Continue},
		{"balanced", []Slice{{CanaryRequests: 500, StableRequests: 9500, CanaryBad: 5, StableBad: 95}}, Continue},
		{"all bad on canary", []Slice{{CanaryRequests: 500, StableRequests: 9500, CanaryBad: 10, StableBad: 0}}, Reject},
		{"canary-only slice carries nothing", []Slice{{CanaryRequests: 10, CanaryBad: 10}}, Continue},
		{"reject is final", []Slice{
			{CanaryRequests: 500, StableRequests: 9500, CanaryBad: 10},
			{CanaryRequests: 5000, StableRequests: 95000, StableBad: 2000},
		}, Reject},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := NewRegressionTest(RegressionConfig{Alpha: 0.05})
			if err != nil {
				t.Fatal(err)
			}
			var e Evidence
			for _, s := range tc.slices {
				if e, err = rt.Observe(s); err != nil {
					t.Fatal(err)
				}
			}
			if e.Decision != tc.want {
				t.Errorf("Decision = %v, want %v (evidence %+v)", e.Decision, tc.want, e)
			}
			if e.Threshold != 20 || e.Alpha != 0.05 {
				t.Errorf("Threshold, Alpha = %v, %v, want 20, 0.05", e.Threshold, e.Alpha)
			}
			if (e.Decision == Reject) != (e.PValue <= e.Alpha) {
				t.Errorf("Decision %v inconsistent with PValue %v", e.Decision, e.PValue)
			}
		})
	}
}

func TestSliceValidate(t *testing.T) {
	tests := []struct {
		s    Slice
		want string
	}{
		{Slice{CanaryRequests: 1, CanaryBad: 2}, "canary bad 2 > canary requests 1"},
		{Slice{StableRequests: 1, StableBad: 2, Weight: 1}, "stable bad 2 > stable requests 1\nweight 1 not in [0, 1)"},
		{Slice{CanaryRequests: -1}, "negative count"},
		{Slice{Span: -0.5}, "span -0.5, want finite and >= 0"},
		{Slice{Span: math.Inf(1)}, "span +Inf"},
	}
	for _, tc := range tests {
		err := tc.s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.s, err, tc.want)
		}
	}
	if err := (Slice{CanaryRequests: 3, StableRequests: 5, Weight: 0.5}).Validate(); err != nil {
		t.Errorf("Validate(valid) = %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []RegressionConfig{{}, {Alpha: 1}, {Alpha: 0.05, Tolerance: 0.5}, {Alpha: 0.05, Ratios: []float64{0.9}}} {
		if _, err := NewRegressionTest(cfg); err == nil {
			t.Errorf("NewRegressionTest(%+v): no error", cfg)
		}
	}
	if _, err := NewSampleRatioTest(2); err == nil {
		t.Error("NewSampleRatioTest(2): no error")
	}
	for _, cfg := range []NonInferiorityConfig{{}, {Alpha: 0.05, RelativeMargin: 0.5}, {Alpha: 0.05, PriorA: -1}} {
		if _, err := NewNonInferiority(cfg); err == nil {
			t.Errorf("NewNonInferiority(%+v): no error", cfg)
		}
	}
}

func TestSplitAlpha(t *testing.T) {
	got, err := SplitAlpha(0.05, 2)
	if err != nil || got[0] != 0.025 || got[1] != 0.025 {
		t.Errorf("SplitAlpha(0.05, 2) = %v, %v, want [0.025 0.025]", got, err)
	}
	got, err = SplitAlpha(0.04, 2, 3, 1)
	if err != nil || math.Abs(got[0]-0.03) > 1e-15 || math.Abs(got[1]-0.01) > 1e-15 {
		t.Errorf("SplitAlpha(0.04, 2, 3, 1) = %v, %v, want [0.03 0.01]", got, err)
	}
	if _, err := SplitAlpha(0.05, 2, 1); err == nil {
		t.Error("SplitAlpha with 1 weight for 2 metrics: no error")
	}
}

// TestSampleRatio: a 5% weight served at 7% is flagged within 10,000 requests in ≥ 95%
// of runs; a true 5% stays silent (over 100,000 requests) in ≥ 99% of runs.
func TestSampleRatio(t *testing.T) {
	const runs = 1000
	tests := []struct {
		name     string
		real     float64
		requests int64
		minRate  float64 // minimum flag rate
		maxRate  float64 // maximum flag rate
	}{
		{"served at 7%", 0.07, 10_000, 0.95, 1},
		{"served at 3%", 0.03, 10_000, 0.95, 1},
		{"true 5%", 0.05, 100_000, 0, 0.01},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(5, uint64(tc.real*1000)))
			flagged := 0
			for range runs {
				srm, err := NewSampleRatioTest(0)
				if err != nil {
					t.Fatal(err)
				}
				for n := int64(0); n < tc.requests; n += 100 {
					nc := binomial(rng, 100, tc.real)
					if _, err := srm.Observe(Slice{CanaryRequests: nc, StableRequests: 100 - nc, Weight: 0.05}); err != nil {
						t.Fatal(err)
					}
				}
				if srm.Evidence().Decision == Reject {
					flagged++
				}
			}
			rate := float64(flagged) / runs
			t.Logf("flagged %.3f", rate)
			if rate < tc.minRate || rate > tc.maxRate {
				t.Errorf("flag rate %.3f not in [%v, %v]", rate, tc.minRate, tc.maxRate)
			}
		})
	}
}
