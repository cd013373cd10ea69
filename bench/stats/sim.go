package main

import (
	"math"
	"math/rand/v2"
	"sort"

	"github.com/modelgate/modelgate/internal/stats"
)

// Latency model: lognormal, median 100 ms, sigma 0.5.
const (
	latMu    = 4.605170185988092 // ln 100
	latSigma = 0.5
)

// scenario is one simulated rollout setting. Time advances in 1-second slices; in
// each slice the request counts, routing and outcomes are drawn per request (as exact
// binomials over the slice's requests).
type scenario struct {
	name       string
	regression bool    // truth: the canary is worse
	minutes    int     // horizon
	rate       float64 // mean total requests per second
	diurnal    bool    // rate × 3^sin(2πt/horizon): ×/÷3 swings
	weights    []float64
	pStable    float64
	pCanary    float64
	incident   bool    // both arms' error rate ×5 during minutes [20, 30)
	tailOnly   float64 // canary latencies above stable p90 multiplied by this (0: none)
}

// weightAt returns the configured canary weight at second sec (equal-length stages).
func (s scenario) weightAt(sec int) float64 {
	stage := sec * len(s.weights) / (s.minutes * 60)
	return s.weights[stage]
}

func (s scenario) errRates(sec int) (stable, canary float64) {
	stable, canary = s.pStable, s.pCanary
	if s.incident && sec >= 20*60 && sec < 30*60 {
		stable, canary = math.Min(1, 5*stable), math.Min(1, 5*canary)
	}
	return stable, canary
}

// stableQuantile and canaryQuantile are the latency quantile functions.
func stableQuantile(u float64) float64 { return math.Exp(latMu + latSigma*normQ(u)) }

func (s scenario) canaryQuantile(u float64) float64 {
	v := stableQuantile(u)
	if s.tailOnly > 0 && u > 0.9 {
		v *= s.tailOnly
	}
	return v
}

// exceed returns P(latency > L) for stable and canary.
func (s scenario) exceed(L float64) (stable, canary float64) {
	z := (math.Log(L) - latMu) / latSigma
	stable = normSF(z)
	canary = stable
	if s.tailOnly > 0 {
		q90 := stableQuantile(0.9)
		if L >= q90*s.tailOnly {
			canary = normSF((math.Log(L/s.tailOnly) - latMu) / latSigma)
		} else if L > q90 {
			canary = 0.1
		}
	}
	return stable, canary
}

func normSF(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }
func normQ(p float64) float64  { return -math.Sqrt2 * math.Erfcinv(2*p) }

// outcome of one method on one run.
type outcome struct {
	rolledBack     bool
	halted         bool // sample-ratio mismatch
	canaryReqs     int64
	seconds        int
	badServed      int64 // canary bad responses served before the decision
	promoted       bool
	promoteReqs    int64
	promoteSeconds int
}

// method is a decision rule fed the same telemetry.
type method interface {
	// second is called after every 1-second slice; minute at the end of every minute
	// with that minute's per-arm points. It returns true to roll back.
	second(sl slices) bool
	minute(m minutePoints) bool
}

// slices holds the 1-second telemetry for the metrics tested.
type slices struct {
	errors, slow99, slow90 stats.Slice
}

type minutePoints struct {
	index                  int
	canaryErr, stableErr   float64 // error rate in the minute (NaN if no requests)
	canaryP99, stableP99   float64 // p99 latency in the minute (NaN if no requests)
	canaryReqs, stableReqs int64
}

// config of modelgate's default rollout analysis.
type config struct {
	alpha      float64
	errors     bool
	latency    bool
	promoteMin int64 // minimum canary requests before promotion (0: none)
	// rollbackOnly runs only the rollback tests (no promotion evidence, no
	// sample-ratio check). Neither of those changes when modelgate rolls back (runs
	// continue after promotion, and an SRM halt is only recorded), so the rollback
	// outcomes are exactly those of the full configuration, at a fraction of the cost.
	rollbackOnly bool
}

// modelgate is the method under test: one RegressionTest per metric for the whole
// rollout, alpha split between them, a sample-ratio test, and non-inferiority
// promotion evidence per metric.
type modelgate struct {
	cfg                   config
	errT, latT            *stats.RegressionTest
	srm                   *stats.SampleRatioTest
	niErr, niLat          *stats.NonInferiority
	promoted, haltedBySRM bool
}

func newModelgate(cfg config) *modelgate {
	n := 0
	if cfg.errors {
		n++
	}
	if cfg.latency {
		n++
	}
	alphas, err := stats.SplitAlpha(cfg.alpha, n)
	if err != nil {
		panic(err)
	}
	m := &modelgate{cfg: cfg}
	i := 0
	must := func(t *stats.RegressionTest, err error) *stats.RegressionTest {
		if err != nil {
			panic(err)
		}
		return t
	}
	mustNI := func(t *stats.NonInferiority, err error) *stats.NonInferiority {
		if err != nil {
			panic(err)
		}
		return t
	}
	if cfg.errors {
		m.errT = must(stats.NewRegressionTest(stats.RegressionConfig{Alpha: alphas[i]}))
		if !cfg.rollbackOnly {
			m.niErr = mustNI(stats.NewNonInferiority(stats.NonInferiorityConfig{Alpha: alphas[i]}))
		}
		i++
	}
	if cfg.latency {
		m.latT = must(stats.NewRegressionTest(stats.RegressionConfig{Alpha: alphas[i]}))
		if !cfg.rollbackOnly {
			// Promotion evidence for latency: exceedances of stable's p90, within 1.5x
			// (+2 points): see docs/analysis.md.
			m.niLat = mustNI(stats.NewNonInferiority(stats.NonInferiorityConfig{Alpha: alphas[i], AbsoluteMargin: 0.02}))
		}
	}
	if cfg.rollbackOnly {
		return m
	}
	var err2 error
	if m.srm, err2 = stats.NewSampleRatioTest(0); err2 != nil {
		panic(err2)
	}
	return m
}

func (m *modelgate) second(sl slices) bool {
	if m.cfg.rollbackOnly {
		rb := false
		if m.errT != nil {
			e, _ := m.errT.Observe(sl.errors)
			rb = e.Decision == stats.Reject
		}
		if m.latT != nil {
			e, _ := m.latT.Observe(sl.slow99)
			rb = rb || e.Decision == stats.Reject
		}
		return rb
	}
	if e, _ := m.srm.Observe(sl.errors); e.Decision == stats.Reject {
		m.haltedBySRM = true
	}
	rb := false
	promote := true
	if m.errT != nil {
		e, _ := m.errT.Observe(sl.errors)
		rb = rb || e.Decision == stats.Reject
		ne, _ := m.niErr.Observe(sl.errors)
		promote = promote && ne.Verdict == stats.Promote
	}
	if m.latT != nil {
		e, _ := m.latT.Observe(sl.slow99)
		rb = rb || e.Decision == stats.Reject
		ne, _ := m.niLat.Observe(sl.slow90)
		promote = promote && ne.Verdict == stats.Promote
	}
	m.promoted = promote
	return rb
}

func (m *modelgate) minute(minutePoints) bool { return false }

// argo: per 1-minute measurement, Failed when canary error rate > 2% or canary p99 >
// 1.2 × stable p99; rollback when failed > failureLimit (reference §4).
type argo struct {
	limit, failed int
	errors, lat   bool
}

func (a *argo) second(slices) bool { return false }
func (a *argo) minute(m minutePoints) bool {
	fail := (a.errors && m.canaryErr > 0.02) || (a.lat && m.canaryP99 > 1.2*m.stableP99)
	if fail {
		a.failed++
	}
	return a.failed > a.limit
}

// flagger: per 1-minute check, fails when success rate < 99% or p99 > a fixed max
// (1.2 × stable p99 before the stage); rollback when failedChecks ≥ threshold (5).
type flagger struct {
	threshold, failed int
	maxP99            float64
	errors, lat       bool
}

func (f *flagger) second(slices) bool { return false }
func (f *flagger) minute(m minutePoints) bool {
	fail := (f.errors && 1-m.canaryErr < 0.99) || (f.lat && m.canaryP99 > f.maxP99)
	if fail {
		f.failed++
	}
	return f.failed >= f.threshold
}

// kayenta: every minute, judge all per-minute points so far with NetflixACAJudge's
// Mann-Whitney classifier (98% Hodges-Lehmann interval, ±25% band, meanRatio ≥ 1);
// with two metrics a single High gives score 50 < marginal 75: fail.
type kayenta struct {
	cErr, sErr, cLat, sLat []float64
	errors, lat            bool
}

func (k *kayenta) second(slices) bool { return false }
func (k *kayenta) minute(m minutePoints) bool {
	if !math.IsNaN(m.canaryErr) && !math.IsNaN(m.stableErr) {
		k.cErr, k.sErr = append(k.cErr, m.canaryErr), append(k.sErr, m.stableErr)
		k.cLat, k.sLat = append(k.cLat, m.canaryP99), append(k.sLat, m.stableP99)
	}
	if len(k.cErr) < 3 {
		return false
	}
	return (k.errors && kayentaHigh(k.cErr, k.sErr)) || (k.lat && kayentaHigh(k.cLat, k.sLat))
}

func kayentaHigh(canary, baseline []float64) bool {
	if equalSorted(canary, baseline) || allEqual(canary, baseline) {
		return false
	}
	s, err := stats.HodgesLehmann(canary, baseline, 0.98)
	if err != nil {
		return false
	}
	effect := mean(canary) / mean(baseline)
	if math.IsNaN(effect) || math.IsInf(effect, 0) {
		effect = math.NaN()
	}
	return s.Lower > 0.25*math.Abs(s.Estimate) && (math.IsNaN(effect) || effect >= 1)
}

func mean(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func equalSorted(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]float64(nil), a...), append([]float64(nil), b...)
	sort.Float64s(x)
	sort.Float64s(y)
	for i := range x {
		if x[i] != y[i] {
			return false
		}
	}
	return true
}

func allEqual(a, b []float64) bool {
	v := a[0]
	for _, s := range [][]float64{a, b} {
		for _, x := range s {
			if x != v {
				return false
			}
		}
	}
	return true
}

// run simulates one rollout of scenario s with seed and feeds every method.
func run(s scenario, seed uint64, methods []method) []outcome {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	out := make([]outcome, len(methods))
	done := make([]bool, len(methods))
	// Thresholds fixed at stage start from a 10-minute pre-stage window of stable
	// latencies (≈ 57,000 requests at 100 rps): their p99 and p90 are sampled as the
	// window's order statistics.
	const window = 57000
	l99 := stableQuantile(orderStat(rng, window, 0.99))
	l90 := stableQuantile(orderStat(rng, window, 0.90))
	s99, c99 := s.exceed(l99)
	s90, c90 := s.exceed(l90)
	var mp minutePoints
	var mReq [2]int64
	var mBad [2]int64
	var cum [2]int64 // canary requests, canary bad so far
	for sec := 0; sec < s.minutes*60; sec++ {
		rate := s.rate
		if s.diurnal {
			rate *= math.Pow(3, math.Sin(2*math.Pi*float64(sec)/float64(s.minutes*60)))
		}
		n := poisson(rng, rate)
		w := s.weightAt(sec)
		nc := binomial(rng, n, w)
		ns := n - nc
		ps, pc := s.errRates(sec)
		cb, sb := binomial(rng, nc, pc), binomial(rng, ns, ps)
		// Exceedances drawn jointly: slow99 ⊂ slow90.
		c90n := binomial(rng, nc, c90)
		s90n := binomial(rng, ns, s90)
		c99n := binomial(rng, c90n, c99/c90)
		s99n := binomial(rng, s90n, s99/s90)
		sl := slices{
			errors: stats.Slice{CanaryRequests: nc, CanaryBad: cb, StableRequests: ns, StableBad: sb, Weight: w},
			slow99: stats.Slice{CanaryRequests: nc, CanaryBad: c99n, StableRequests: ns, StableBad: s99n, Weight: w},
			slow90: stats.Slice{CanaryRequests: nc, CanaryBad: c90n, StableRequests: ns, StableBad: s90n, Weight: w},
		}
		cum[0] += nc
		cum[1] += cb + c99n
		mReq[0] += nc
		mReq[1] += ns
		mBad[0] += cb
		mBad[1] += sb
		endMinute := (sec+1)%60 == 0
		if endMinute {
			mp = minutePoints{index: sec / 60, canaryReqs: mReq[0], stableReqs: mReq[1]}
			mp.canaryErr, mp.stableErr = ratio(mBad[0], mReq[0]), ratio(mBad[1], mReq[1])
			mp.canaryP99, mp.stableP99 = math.NaN(), math.NaN()
			if mReq[0] > 0 {
				mp.canaryP99 = s.canaryQuantile(orderStat(rng, mReq[0], 0.99))
			}
			if mReq[1] > 0 {
				mp.stableP99 = stableQuantile(orderStat(rng, mReq[1], 0.99))
			}
			mReq, mBad = [2]int64{}, [2]int64{}
		}
		for i, m := range methods {
			if done[i] {
				continue
			}
			rb := m.second(sl)
			if endMinute {
				rb = m.minute(mp) || rb
			}
			if mg, ok := m.(*modelgate); ok {
				if mg.haltedBySRM && !out[i].halted {
					out[i].halted = true
				}
				if mg.promoted && !out[i].promoted && cum[0] >= mg.cfg.promoteMin {
					out[i].promoted, out[i].promoteReqs, out[i].promoteSeconds = true, cum[0], sec+1
				}
			}
			if rb {
				done[i] = true
				out[i].rolledBack, out[i].canaryReqs, out[i].seconds, out[i].badServed = true, cum[0], sec+1, cum[1]
			}
		}
	}
	return out
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return math.NaN()
	}
	return float64(a) / float64(b)
}

// orderStat samples the uniform order statistic U_(k), k = ceil(q·n), of n uniforms:
// Beta(k, n+1−k). The q-quantile of n latencies is then a quantile function at it.
func orderStat(rng *rand.Rand, n int64, q float64) float64 {
	k := math.Ceil(q * float64(n))
	if k < 1 {
		k = 1
	}
	x := gamma(rng, k)
	y := gamma(rng, float64(n)+1-k)
	return x / (x + y)
}

// gamma draws Gamma(a, 1) (Marsaglia and Tsang).
func gamma(rng *rand.Rand, a float64) float64 {
	if a < 1 {
		return gamma(rng, a+1) * math.Pow(rng.Float64(), 1/a)
	}
	d := a - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := rng.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := rng.Float64()
		if math.Log(u) < 0.5*x*x+d-d*v+d*math.Log(v) {
			return d * v
		}
	}
}

// binomial draws Binomial(n, p): by inversion for small means, else by a normal
// approximation with continuity (means above 30 only occur for request counts).
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
	mu := float64(n) * p
	if mu > 30 {
		v := math.Floor(mu + math.Sqrt(mu*(1-p))*rng.NormFloat64() + 0.5)
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

// poisson draws Poisson(mu), normal approximation above 30.
func poisson(rng *rand.Rand, mu float64) int64 {
	if mu > 30 {
		return int64(math.Max(0, math.Floor(mu+math.Sqrt(mu)*rng.NormFloat64()+0.5)))
	}
	l, k, p := math.Exp(-mu), int64(0), 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
