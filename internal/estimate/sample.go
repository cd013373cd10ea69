package estimate

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/modelgate/modelgate/internal/telemetry"
)

// atom is one latency value of a model and its probability.
type atom struct {
	v time.Duration
	p float64
}

// model is a latency distribution on a few values: the buckets of the
// stable's sketch (each at its representative value, as telemetry records
// it), or those merged between the thresholds the analysis compares with
// (collapse). cum[i] is the probability of atoms[0..i].
type model struct {
	atoms []atom
	cum   []float64
}

func newModel(atoms []atom) model {
	var total float64
	for _, a := range atoms {
		total += a.p
	}
	m := model{atoms: make([]atom, len(atoms)), cum: make([]float64, len(atoms))}
	var c float64
	for i, a := range atoms {
		a.p /= total
		c += a.p
		m.atoms[i], m.cum[i] = a, c
	}
	if n := len(m.cum); n > 0 {
		m.cum[n-1] = 1
	}
	return m
}

// modelOf is the distribution of the latencies in s: resampling from it
// is resampling the stable's recorded latencies.
func modelOf(s telemetry.Sketch) model {
	var atoms []atom
	for v, c := range s.Buckets() {
		atoms = append(atoms, atom{v, float64(c)})
	}
	return newModel(atoms)
}

// lognormalModel is a lognormal distribution of the given median and
// sigma, on 400 equally likely values (for a stable whose summary has too
// few latencies to resample).
func lognormalModel(median time.Duration, sigma float64) model {
	const n = 400
	var s telemetry.Sketch
	for i := range n {
		z := math.Sqrt2 * math.Erfinv(2*(float64(i)+0.5)/n-1)
		s.Add(time.Duration(float64(median)*math.Exp(sigma*z)), 1)
	}
	return modelOf(s)
}

// collapse merges the atoms between consecutive cuts (ascending) into one
// atom each, at the value of the interval's largest atom: the analysis
// only asks whether a latency is above each cut, which every value of an
// interval answers alike.
func (m model) collapse(cuts []time.Duration) model {
	var atoms []atom
	last := -1
	for _, a := range m.atoms {
		g := groupOf(a.v, cuts)
		if g == last {
			atoms[len(atoms)-1] = atom{a.v, atoms[len(atoms)-1].p + a.p}
			continue
		}
		atoms, last = append(atoms, a), g
	}
	return newModel(atoms)
}

// groupOf is the interval of v between cuts: k for v in (cuts[k-1], cuts[k]].
func groupOf(v time.Duration, cuts []time.Duration) int {
	k, _ := slices.BinarySearch(cuts, v) // first cut >= v
	return k
}

// draw records a Poisson number of requests of mean mean, each with a
// latency drawn from m; it returns their sketch and number. Per value, the
// counts are independent Poisson draws; with fewer requests expected than
// values, the number is drawn first and each request's value after (the
// same distribution, cheaper).
func (m model) draw(r *rand.Rand, mean float64, counts []uint64) (telemetry.Sketch, int64) {
	if mean <= 0 || len(m.atoms) == 0 {
		return telemetry.Sketch{}, 0
	}
	counts = counts[:len(m.atoms)]
	clear(counts)
	var n int64
	if mean < float64(len(m.atoms))/4 {
		n = poisson(r, mean)
		for range n {
			i, _ := slices.BinarySearch(m.cum, r.Float64())
			counts[min(i, len(counts)-1)]++
		}
	} else {
		for i, a := range m.atoms {
			k := poisson(r, mean*a.p)
			counts[i] = uint64(k)
			n += k
		}
	}
	return m.sketch(counts), n
}

// sketch builds the sketch of counts[i] values m.atoms[i].v by merging
// halves, so that the copying stays n log n in the number of values.
func (m model) sketch(counts []uint64) telemetry.Sketch {
	var build func(lo, hi int) telemetry.Sketch
	build = func(lo, hi int) telemetry.Sketch {
		if hi-lo == 1 {
			var s telemetry.Sketch
			s.Add(m.atoms[lo].v, counts[lo])
			return s
		}
		mid := (lo + hi) / 2
		s := build(lo, mid)
		s.Merge(build(mid, hi))
		return s
	}
	// Skip the empty ends: a slice at low traffic holds a few values.
	lo, hi := 0, len(counts)
	for lo < hi && counts[lo] == 0 {
		lo++
	}
	for hi > lo && counts[hi-1] == 0 {
		hi--
	}
	if lo == hi {
		return telemetry.Sketch{}
	}
	return build(lo, hi)
}

// poisson draws from the Poisson distribution of mean lam: by inversion
// below 30, else by Hörmann's transformed rejection (PTRS), both exact.
func poisson(r *rand.Rand, lam float64) int64 {
	switch {
	case lam <= 0:
		return 0
	case lam < 30:
		u := r.Float64()
		p := math.Exp(-lam)
		c := p
		var k int64
		for u > c {
			k++
			p *= lam / float64(k)
			c += p
			if p == 0 { // the tail has underflowed: u was within rounding of 1
				break
			}
		}
		return k
	}
	slam, loglam := math.Sqrt(lam), math.Log(lam)
	b := 0.931 + 2.53*slam
	a := -0.059 + 0.02483*b
	invAlpha := 1.1239 + 1.1328/(b-3.4)
	vr := 0.9277 - 3.6224/(b-2)
	for {
		u := r.Float64() - 0.5
		v := r.Float64()
		us := 0.5 - math.Abs(u)
		k := math.Floor((2*a/us+b)*u + lam + 0.43)
		if us >= 0.07 && v <= vr {
			return int64(k)
		}
		if k < 0 || us < 0.013 && v > us {
			continue
		}
		lg, _ := math.Lgamma(k + 1)
		if math.Log(v)+math.Log(invAlpha)-math.Log(a/(us*us)+b) <= -lam+k*loglam-lg {
			return int64(k)
		}
	}
}

// binomial draws the number of successes in n trials of probability p:
// exactly (trial by trial, or by geometric gaps when successes or failures
// are rare), or by the normal approximation when both are expected more
// than 30 times.
func binomial(r *rand.Rand, n int64, p float64) int64 {
	switch {
	case n <= 0 || p <= 0:
		return 0
	case p >= 1:
		return n
	case p > 0.5:
		return n - binomial(r, n, 1-p)
	case n <= 32:
		var k int64
		for range n {
			if r.Float64() < p {
				k++
			}
		}
		return k
	case float64(n)*p < 30:
		// Gaps between successes are geometric: count how many fit in n.
		lq := math.Log1p(-p)
		var k, i int64
		for {
			i += int64(math.Floor(math.Log(1-r.Float64())/lq)) + 1
			if i > n {
				return k
			}
			k++
		}
	}
	mean := float64(n) * p
	k := math.Round(mean + math.Sqrt(mean*(1-p))*r.NormFloat64())
	return int64(min(max(k, 0), float64(n)))
}
