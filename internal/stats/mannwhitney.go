package stats

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// Alternative is the alternative hypothesis of a two-sample test.
type Alternative int

const (
	// TwoSided tests whether the distributions of x and y differ.
	TwoSided Alternative = iota
	// Less tests whether x is stochastically less than y.
	Less
	// Greater tests whether x is stochastically greater than y.
	Greater
)

// String returns the scipy name of the alternative ("two-sided", "less", "greater").
func (a Alternative) String() string {
	switch a {
	case TwoSided:
		return "two-sided"
	case Less:
		return "less"
	case Greater:
		return "greater"
	}
	return fmt.Sprintf("Alternative(%d)", int(a))
}

// Method says how a Mann-Whitney p-value was computed.
type Method int

const (
	// Exact uses the exact null distribution of U (small samples, no ties).
	Exact Method = iota
	// Asymptotic uses the normal approximation with tie and continuity correction.
	Asymptotic
)

// String returns "exact" or "asymptotic".
func (m Method) String() string {
	if m == Exact {
		return "exact"
	}
	return "asymptotic"
}

// MannWhitneyResult is the outcome of [MannWhitneyU].
type MannWhitneyResult struct {
	// U is the Mann-Whitney statistic of x, as scipy defines it: the sum of the
	// (average) ranks of x in the pooled sample minus n1(n1+1)/2. U counts the
	// pairs with x_i > y_j, ties counting one half.
	U float64
	// P is the p-value for the requested alternative, in [0, 1].
	P float64
	// Method is the way P was computed (the same choice as scipy's method="auto").
	Method Method
	// Z is the standardised statistic used by the asymptotic method (with continuity
	// correction, for the statistic the p-value is the upper tail of); NaN for Exact.
	Z float64
	// N1 and N2 are the sample sizes of x and y.
	N1, N2 int
}

// ErrEmptySample is returned when a sample has no observations.
var ErrEmptySample = errors.New("empty sample")

// ErrNaN is returned when a sample contains NaN.
var ErrNaN = errors.New("sample contains NaN")

// MannWhitneyU performs the Mann-Whitney U rank test of x against y, the same test as
// scipy.stats.mannwhitneyu(x, y, use_continuity=True, alternative=alt, method="auto"):
// when both samples have more than 8 observations, or there are ties, it uses the
// normal approximation with tie correction and continuity correction; otherwise the
// exact distribution of U. Infinite values are allowed; NaN is an error.
func MannWhitneyU(x, y []float64, alt Alternative) (MannWhitneyResult, error) {
	if err := checkSamples(x, y); err != nil {
		return MannWhitneyResult{}, fmt.Errorf("mann-whitney u: %w", err)
	}
	if alt != TwoSided && alt != Less && alt != Greater {
		return MannWhitneyResult{}, fmt.Errorf("mann-whitney u: unknown alternative %d", int(alt))
	}
	n1, n2 := len(x), len(y)
	r := rankPooled(x, y)
	u1 := r.sumX - float64(n1)*float64(n1+1)/2
	mn := float64(n1) * float64(n2)
	u2 := mn - u1

	var u, factor float64
	switch alt {
	case Greater:
		u, factor = u1, 1
	case Less:
		u, factor = u2, 1
	default:
		u, factor = math.Max(u1, u2), 2
	}
	res := MannWhitneyResult{U: u1, N1: n1, N2: n2, Z: math.NaN()}
	var p float64
	if (n1 > 8 && n2 > 8) || r.ties {
		res.Method = Asymptotic
		res.Z = mwuZ(u, n1, n2, r.tieTerm)
		p = normalSF(res.Z)
	} else {
		res.Method = Exact
		p = newUDist(n1, n2).sf(int(u))
	}
	res.P = math.Min(math.Max(p*factor, 0), 1)
	return res, nil
}

func checkSamples(x, y []float64) error {
	if len(x) == 0 || len(y) == 0 {
		return ErrEmptySample
	}
	for _, s := range [][]float64{x, y} {
		for _, v := range s {
			if math.IsNaN(v) {
				return ErrNaN
			}
		}
	}
	return nil
}

// ranking is the result of ranking x and y together.
type ranking struct {
	sumX    float64 // sum of the average ranks of x
	tieTerm float64 // sum over tie groups of t^3 - t
	ties    bool
}

func rankPooled(x, y []float64) ranking {
	n1 := len(x)
	idx := make([]int, n1+len(y))
	for i := range idx {
		idx[i] = i
	}
	val := func(i int) float64 {
		if i < n1 {
			return x[i]
		}
		return y[i-n1]
	}
	sort.Slice(idx, func(a, b int) bool { return val(idx[a]) < val(idx[b]) })
	var r ranking
	for i := 0; i < len(idx); {
		j := i + 1
		for j < len(idx) && val(idx[j]) == val(idx[i]) {
			j++
		}
		t := float64(j - i)
		avg := float64(i+1+j) / 2 // mean of ranks i+1..j
		for k := i; k < j; k++ {
			if idx[k] < n1 {
				r.sumX += avg
			}
		}
		if t > 1 {
			r.ties = true
			r.tieTerm += t*t*t - t
		}
		i = j
	}
	return r
}

// mwuZ is scipy's standardised statistic with tie and continuity correction.
func mwuZ(u float64, n1, n2 int, tieTerm float64) float64 {
	n := float64(n1 + n2)
	mn := float64(n1) * float64(n2)
	s := math.Sqrt(mn / 12 * ((n + 1) - tieTerm/(n*(n-1))))
	num := u - mn/2 - 0.5
	if s == 0 { // every observation tied: U = mn/2, numerator is -0.5
		return math.Inf(-1)
	}
	return num / s
}

// normalSF is the standard normal survival function P(Z > z).
func normalSF(z float64) float64 { return 0.5 * math.Erfc(z/math.Sqrt2) }

// normalQuantile is the standard normal quantile function.
func normalQuantile(p float64) float64 { return -math.Sqrt2 * math.Erfcinv(2*p) }

// uDist is the exact null distribution of U for sample sizes m and n: counts[k] is
// the number of the C(m+n, m) rank arrangements with U = k.
type uDist struct {
	m, n   int
	counts []float64
	total  float64
}

// newUDist computes the counts as coefficients of the Gaussian binomial coefficient
// [m+n choose s]_q, s = min(m, n), by the q-Pascal rule; only additions of positive
// numbers, so the relative error stays near machine precision.
func newUDist(m, n int) uDist {
	s, big := m, n
	if s > big {
		s, big = big, s
	}
	maxK := s * big
	// g[j] holds [N choose j]_q as a polynomial in q, for the current N.
	g := make([][]float64, s+1)
	for j := range g {
		g[j] = make([]float64, maxK+1)
	}
	g[0][0] = 1
	for N := 1; N <= m+n; N++ {
		// [N choose j] = [N-1 choose j-1] + q^j [N-1 choose j]; go down in j so that
		// g[j-1] still holds row N-1 when g[j] is updated.
		top := min(N, s)
		for j := top; j >= 1; j-- {
			deg := j * (N - j) // degree of [N choose j]
			if deg > maxK {
				deg = maxK
			}
			for k := deg; k >= 0; k-- {
				v := g[j-1][k]
				if k >= j {
					v += g[j][k-j]
				}
				g[j][k] = v
			}
		}
	}
	d := uDist{m: m, n: n, counts: g[s]}
	for _, c := range d.counts {
		d.total += c
	}
	return d
}

// cdf returns P(U <= k).
func (d uDist) cdf(k int) float64 {
	if k < 0 {
		return 0
	}
	if k >= len(d.counts)-1 {
		return 1
	}
	var s float64
	for _, c := range d.counts[:k+1] {
		s += c
	}
	return s / d.total
}

// sf returns P(U >= k), summed from the short side as scipy does (by symmetry).
func (d uDist) sf(k int) float64 { return d.cdf(d.m*d.n - k) }
