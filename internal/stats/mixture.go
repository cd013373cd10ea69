package stats

import (
	"fmt"
	"math"
)

// oddsMixture is a mixture of likelihood ratios for the label of events (canary or
// not) when the canary's share of events under the null is θ0 = θ(w, r0), against
// alternatives θ(w, r_j): a test martingale under the null for any sequence of shares
// w chosen before the events they apply to.
type oddsMixture struct {
	r0       float64
	ratios   []float64 // alternatives r_j (absolute, not multiples of r0)
	logPrior []float64
	ll       []float64 // log likelihood ratio of r_j against r0
	logM     float64
	maxLogM  float64 // running maximum of logM: the sequential p-value is exp(-maxLogM)
}

func newOddsMixture(r0 float64, multipliers []float64) (*oddsMixture, error) {
	if len(multipliers) == 0 {
		return nil, fmt.Errorf("empty grid of ratios")
	}
	m := &oddsMixture{r0: r0}
	lp := -math.Log(float64(len(multipliers)))
	for i, k := range multipliers {
		if !(k > 0) || k == 1 || math.IsInf(k, 0) {
			return nil, fmt.Errorf("ratios[%d] = %v, want > 0 and != 1", i, k)
		}
		m.ratios = append(m.ratios, r0*k)
		m.logPrior = append(m.logPrior, lp)
		m.ll = append(m.ll, 0)
	}
	return m, nil
}

// theta is the probability that an event comes from the canary when the canary
// serves share w of requests and its per-request event rate is r times the stable's.
func theta(w, r float64) float64 { return w * r / (w*r + 1 - w) }

// observe adds a batch of n events of which x came from the canary, with share w.
func (m *oddsMixture) observe(x, n int64, w float64) {
	if n == 0 || w <= 0 || w >= 1 {
		// w = 0: no canary requests, so every event is stable's and carries no
		// information; w = 1 likewise.
		return
	}
	t0 := theta(w, m.r0)
	fx, fy := float64(x), float64(n-x)
	for j, r := range m.ratios {
		tj := theta(w, r)
		m.ll[j] += fx*math.Log(tj/t0) + fy*math.Log1p(-tj) - fy*math.Log1p(-t0)
	}
	m.logM = logSumExp(m.logPrior, m.ll)
	m.maxLogM = math.Max(m.maxLogM, m.logM)
}

func logSumExp(a, b []float64) float64 {
	mx := math.Inf(-1)
	for i := range a {
		mx = math.Max(mx, a[i]+b[i])
	}
	if math.IsInf(mx, 0) {
		return mx
	}
	var s float64
	for i := range a {
		s += math.Exp(a[i] + b[i] - mx)
	}
	return mx + math.Log(s)
}
