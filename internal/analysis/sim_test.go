package analysis

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/modelgate/modelgate/internal/telemetry"
)

// t0 is the synthetic start of every simulation: tests read no clock.
var t0 = time.Unix(1_750_000_000, 0)

// arm is one deployment's behaviour in a simulation.
type arm struct {
	errRate float64 // probability of a 5xx
	median  time.Duration
	sigma   float64 // lognormal shape of latency
	// tailScale, when set, multiplies the latencies above the arm's p90:
	// 2 doubles the p99 and leaves the body of the distribution alone.
	tailScale float64
	// bodyScale, when set, multiplies the latencies up to the arm's median
	// by it, tapering linearly (in the normal score) to ×1 at its p90: a
	// slower body with the tail unchanged.
	bodyScale float64
	// shift, when set, is added to every latency.
	shift time.Duration
}

// z90 is the standard normal's 0.9 quantile.
const z90 = 1.2815515655446004

func (a arm) latency(rng *rand.Rand) time.Duration {
	z := rng.NormFloat64()
	d := float64(a.median) * math.Exp(a.sigma*z)
	if a.tailScale > 0 && z > z90 {
		d *= a.tailScale
	}
	if a.bodyScale > 0 && z < z90 {
		d *= a.bodyScale - (a.bodyScale-1)*max(z, 0)/z90
	}
	return time.Duration(d) + a.shift
}

// sim draws per-request traffic: Poisson arrivals at rps, each routed to the
// canary with probability route, erroring and taking a lognormal latency
// independently. It builds telemetry slices the way the Recorder would for
// split-routed requests.
type sim struct {
	rng            *rand.Rand
	rps            float64
	route          float64 // the canary's real routing probability
	stable, canary arm
	sec            int64 // next slice: t0 + sec seconds
	sketches       bool  // build latency sketches (off for counts-only runs)
	// coarse, when set, holds the latency thresholds the analyzer fixed
	// (ascending) and replaces each latency by one value per interval
	// between them. The analyzer's counts are then the same as with full
	// sketches (up to the bucket edges of the thresholds, treated alike for
	// both arms) at a fraction of the cost of building a sketch of every
	// request.
	coarse []time.Duration
	// cold, when set, is how many of the next canary requests behave like
	// coldArm instead of canary (a cold start: new servers of a stage).
	cold    int
	coldArm arm
}

func newSim(seed uint64, rps, route float64, stable, canary arm) *sim {
	return &sim{rng: rand.New(rand.NewPCG(seed, 0x5eed)), rps: rps, route: route, stable: stable, canary: canary, sketches: true}
}

// poisson draws Poisson(mean) by counting exponential arrivals in [0, 1).
func poisson(rng *rand.Rand, mean float64) int {
	n, t := 0, rng.ExpFloat64()/mean
	for t < 1 {
		n++
		t += rng.ExpFloat64() / mean
	}
	return n
}

// next returns the next 1-second slice pair.
func (s *sim) next() SlicePair {
	start := t0.Add(time.Duration(s.sec) * time.Second)
	s.sec++
	p := SlicePair{Start: start, Stable: telemetry.Slice{Start: start}, Canary: telemetry.Slice{Start: start}}
	var lat [2][]time.Duration
	var classes [2][16]uint64 // len(coarse)+1 ≤ 16
	for range poisson(s.rng, s.rps) {
		i, a, sl := 0, s.stable, &p.Stable
		if s.rng.Float64() < s.route {
			i, a, sl = 1, s.canary, &p.Canary
			if s.cold > 0 {
				s.cold--
				a = s.coldArm
			}
		}
		sl.Requests++
		sl.SplitRequests++
		if s.rng.Float64() < a.errRate {
			sl.Errors++
			sl.SplitErrors++
		}
		switch d := a.latency(s.rng); {
		case s.coarse != nil:
			k, _ := slices.BinarySearch(s.coarse, d) // thresholds below d (a value equal to one is not above it)
			classes[i][k]++
		case s.sketches:
			lat[i] = append(lat[i], d)
		}
	}
	if c := s.coarse; c != nil {
		for k := range len(c) + 1 {
			var v time.Duration
			switch {
			case k == 0:
				v = c[0] * 2 / 3
			case k == len(c):
				v = c[k-1] * 3 / 2
			default:
				v = time.Duration(math.Sqrt(float64(c[k-1]) * float64(c[k])))
			}
			p.Stable.Latency.Add(v, classes[0][k])
			p.Canary.Latency.Add(v, classes[1][k])
		}
		return p
	}
	p.Stable.Latency = sketchOf(lat[0])
	p.Canary.Latency = sketchOf(lat[1])
	return p
}

// sketchOf builds a sketch of the values by merging halves, so that building
// costs O(buckets × log n) rather than O(buckets × n).
func sketchOf(v []time.Duration) telemetry.Sketch {
	switch len(v) {
	case 0:
		return telemetry.Sketch{}
	case 1:
		var s telemetry.Sketch
		s.Add(v[0], 1)
		return s
	}
	s := sketchOf(v[:len(v)/2])
	s.Merge(sketchOf(v[len(v)/2:]))
	return s
}

// recent returns a stable-only Summary of n seconds, as the controller would
// read the stable's last minute before a stage.
func recent(seed uint64, rps float64, stable arm, seconds int) telemetry.Summary {
	s := newSim(seed, rps, 0, stable, stable)
	var sum telemetry.Summary
	sum.Window = time.Duration(seconds) * time.Second
	for range seconds {
		p := s.next()
		sum.Requests += p.Stable.Requests
		sum.SplitErrors += p.Stable.SplitErrors
		sum.Errors += p.Stable.Errors
		sum.Latency.Merge(p.Stable.Latency)
	}
	return sum
}

// accumulate adds a slice to a stage-to-date Summary (counts, and the
// latency sketch when withSketch).
func accumulate(sum *telemetry.Summary, s telemetry.Slice, withSketch bool) {
	sum.Requests += s.Requests
	sum.OverrideRequests += s.Requests - s.SplitRequests
	sum.Errors += s.Errors
	sum.SplitErrors += s.SplitErrors
	if withSketch {
		sum.Latency.Merge(s.Latency)
		sum.TTFB.Merge(s.TTFB)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
