package main

// Scenarios of the rollouts suite (issue 16, item 6): the traffic both versions
// serve, second by second, while the real rollout controller runs the default plan.

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// Base latency of a model server (both arms, every scenario but the Pareto one):
// lognormal, median 20 ms, sigma 0.4 (p90 33 ms, p99 51 ms, p99.9 69 ms). TTFB is
// the latency (a model server answers in one piece).
const (
	rLatMedianMS = 20.0
	rLatSigma    = 0.4
	// Pareto scenario: x_m = 14 ms, shape 2 (median 19.8 ms, p90 44 ms, p99
	// 140 ms, p99.9 443 ms; infinite variance).
	rParetoXmMS  = 14.0
	rParetoShape = 2.0
)

// rolloutScenario is one setting of the rollouts suite. Times are seconds since the
// rollout started (negative during the warm-up of the stable alone).
type rolloutScenario struct {
	id   string // R1..R18, accepted by -only
	slug string // short name, accepted by -only
	name string // description for the tables
	// runs is the default number of runs in the full suite.
	runs int
	// horizon is how long a run lasts after the start (pause scenarios: after the
	// jump) unless the rollout ends first.
	horizon time.Duration
	// rate is the mean total request rate (Poisson per second); swings replaces it
	// with the daily sinusoid.
	rate   float64
	swings bool
	// pStable and pCanary are the error rates at rate 200 (swings scale them with
	// load). canaryRatio > 0 makes the canary's rate canaryRatio × the stable's at
	// every moment instead of pCanary.
	pStable, pCanary, canaryRatio float64
	incident                      bool // shared: errors 10%, latency ×3, 2 minutes, uniform start in [0, 20 min)
	pareto                        bool // both arms Pareto instead of lognormal
	// canary latency changes
	canaryScale float64 // × every canary latency (0: 1)
	bodyShift   bool    // canary latency = Q(u)·f(u), f 1.3 up to u 0.5, linear to 1 at u 0.9
	tailShare   float64 // this share of canary requests gets +tailAdd
	tailAdd     time.Duration
	// pause scenarios: paused by hand right after the start; the canary's error
	// rate jumps to jumpTo at jumpAfter.
	pauseAtStart bool
	jumpAfter    time.Duration
	jumpTo       float64
	// regression is the truth: the canary is worse (for the reader; no check
	// depends on it).
	regression bool
	// plan, when it has any key, is the rollout's plan instead of the default
	// one (its stages must be the default ones: the tables name them).
	plan spec.Plan
	// fleet, when set, serves the traffic from several replicas, the
	// leader judging them all (fleet.go); nil: one gateway.
	fleet *fleetSetup
}

// rolloutScenarios is the suite: the default plan (5, 25, 50, 100, default gate),
// 200 requests/s and 1% errors unless said, 60-minute horizon.
func rolloutScenarios() []rolloutScenario {
	base := rolloutScenario{runs: 500, horizon: 60 * time.Minute, rate: 200, pStable: 0.01, pCanary: 0.01}
	with := func(id, slug, name string, f func(*rolloutScenario)) rolloutScenario {
		s := base
		s.id, s.slug, s.name = id, slug, name
		f(&s)
		return s
	}
	return append([]rolloutScenario{
		with("R1", "aa-steady", "identical, 200 req/s", func(*rolloutScenario) {}),
		with("R2", "aa-2rps", "identical, 2 req/s", func(s *rolloutScenario) { s.rate = 2 }),
		with("R3", "aa-incident", "identical, shared incident (10% errors, latency ×3, 2 min)", func(s *rolloutScenario) { s.incident = true }),
		with("R4", "aa-swings", "identical, daily swings 50–400 req/s", func(s *rolloutScenario) { s.swings = true }),
		with("R5", "aa-pareto", "identical, Pareto latencies", func(s *rolloutScenario) { s.pareto = true }),
		with("R6", "err-2pct", "errors 1%→2%", func(s *rolloutScenario) { s.pCanary, s.runs, s.regression = 0.02, 1000, true }),
		with("R7", "tail-600ms", "tail: 2% of canary requests +600 ms", func(s *rolloutScenario) {
			s.tailShare, s.tailAdd, s.regression = 0.02, 600*time.Millisecond, true
		}),
		with("R8", "body-shift", "body shift: ×1.3 up to the median, tapering to ×1 at p90", func(s *rolloutScenario) { s.bodyShift, s.regression = true, true }),
		with("R9", "slow-1.05", "canary latency ×1.05", func(s *rolloutScenario) { s.canaryScale = 1.05 }),
		with("R10", "better", "better canary: 0.5% errors, latency ×0.9", func(s *rolloutScenario) { s.pCanary, s.canaryScale = 0.005, 0.9 }),
		with("R11", "margin", "canary errors 1.5× the stable's (the final margin)", func(s *rolloutScenario) { s.canaryRatio, s.runs, s.regression = 1.5, 1000, true }),
		with("R12", "margin-swings", "canary errors 1.5× the stable's, daily swings", func(s *rolloutScenario) {
			s.canaryRatio, s.swings, s.runs, s.regression = 1.5, true, 1000, true
		}),
		with("R13", "pause-10m", "paused at 5% by hand, 10 min healthy, then canary errors 1%→10%", func(s *rolloutScenario) {
			s.pauseAtStart, s.jumpAfter, s.jumpTo, s.horizon, s.regression = true, 10*time.Minute, 0.10, 10*time.Minute, true
		}),
		with("R14", "pause-60m", "paused at 5% by hand, 60 min healthy, then canary errors 1%→10%", func(s *rolloutScenario) {
			s.pauseAtStart, s.jumpAfter, s.jumpTo, s.horizon, s.regression = true, 60*time.Minute, 0.10, 10*time.Minute, true
		}),
		with("R15", "err-10pct", "errors 1%→10%", func(s *rolloutScenario) { s.pCanary, s.regression = 0.10, true }),
	}, fleetScenarios(base)...)
}

// end is the last second (exclusive) simulated after the start.
func (s rolloutScenario) end() int {
	if s.pauseAtStart {
		return int((s.jumpAfter + s.horizon) / time.Second)
	}
	return int(s.horizon / time.Second)
}

// world is one run's draw of a scenario: the random phase of the swings and the
// random time of the incident.
type world struct {
	s        rolloutScenario
	phase    float64 // swings: radians
	incident int     // second the incident starts
}

func newWorld(s rolloutScenario, rng *rand.Rand) world {
	w := world{s: s, incident: -1}
	if s.swings {
		w.phase = 2 * math.Pi * rng.Float64()
	}
	if s.incident {
		w.incident = rng.IntN(20 * 60)
	}
	return w
}

// rate is the mean total request rate in second t.
func (w world) rate(t int) float64 {
	if !w.s.swings {
		return w.s.rate
	}
	return 225 + 175*math.Sin(2*math.Pi*float64(t)/3600+w.phase)
}

func (w world) inIncident(t int) bool {
	return w.s.incident && t >= w.incident && t < w.incident+120
}

// errRates are both arms' error rates in second t.
func (w world) errRates(t int) (stable, canary float64) {
	stable, canary = w.s.pStable, w.s.pCanary
	if w.s.swings {
		load := w.rate(t) / 200
		stable, canary = stable*load, canary*load
	}
	if w.s.canaryRatio > 0 {
		canary = w.s.canaryRatio * stable
	}
	if w.s.pauseAtStart && t >= int(w.s.jumpAfter/time.Second) {
		canary = w.s.jumpTo
	}
	if w.inIncident(t) {
		stable, canary = 0.10, 0.10
	}
	return min(stable, 1), min(canary, 1)
}

// latencyFactor is the shared multiplier of both arms' latencies in second t.
func (w world) latencyFactor(t int) float64 {
	f := 1.0
	if w.s.swings {
		f *= 1 + 0.3*(w.rate(t)/200-1)
	}
	if w.inIncident(t) {
		f *= 3
	}
	return f
}

// baseQuantile is the stable's latency quantile function in milliseconds.
func (w world) baseQuantile(u float64) float64 {
	if w.s.pareto {
		return rParetoXmMS * math.Pow(1-u, -1/rParetoShape)
	}
	return rLatMedianMS * math.Exp(rLatSigma*normQ(u))
}

// request draws one request of second t at the canary's weight: its arm, its
// status, its latency (in this order of draws).
func (w world) request(rng *rand.Rand, t int, weight, ps, pc float64) (canary bool, status int, lat time.Duration) {
	canary = weight > 0 && rng.Float64() < weight
	p := ps
	if canary {
		p = pc
	}
	status = 200
	if rng.Float64() < p {
		status = 500
	}
	return canary, status, w.latency(rng, t, canary)
}

// latency draws one request's latency in second t.
func (w world) latency(rng *rand.Rand, t int, canary bool) time.Duration {
	u := rng.Float64()
	for u == 0 {
		u = rng.Float64()
	}
	ms := w.baseQuantile(u) * w.latencyFactor(t)
	var add time.Duration
	if canary {
		if w.s.canaryScale > 0 {
			ms *= w.s.canaryScale
		}
		if w.s.bodyShift {
			ms *= bodyShiftFactor(u)
		}
		if w.s.tailShare > 0 && rng.Float64() < w.s.tailShare {
			add = w.s.tailAdd
		}
	}
	return time.Duration(ms*float64(time.Millisecond)) + add
}

// bodyShiftFactor is f(u): 1.3 up to the median, a linear taper to 1.0 at u = 0.9,
// 1.0 above.
func bodyShiftFactor(u float64) float64 {
	switch {
	case u <= 0.5:
		return 1.3
	case u < 0.9:
		return 1.3 - 0.3*(u-0.5)/0.4
	}
	return 1
}
