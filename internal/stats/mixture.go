package stats

import (
	"fmt"
	"math"
)

// oddsMixture is a mixture of likelihood ratios for the label of events (canary or
// not) when the canary's share of events under the null is θ0 = θ(w, r0), against
// alternatives θ(w, r_j): a test martingale under the null for any sequence of shares
// w chosen before the events they apply to.
//
// With changes set, the mixture also runs over the batch at which the
// alternative began to hold: ll[j] is ln Σ_{k≤n} π_k Π_{i=k..n} LR_i(r_j).
// The prior over starts is one over time, not over batches, so that cutting
// the same evidence into more batches (a look every few requests instead of
// every second) does not spread it thinner: with u the informative time
// before batch k and s its span (in slices: 1 for a whole slice), π_k =
// F(u+s) − F(u) with F(u) = 1 − 1/ln(u+e), whose density falls as
// 1/(u ln²u). The starts not begun yet keep their weight 1 − F(u) at
// likelihood ratio 1. Each start k gives a test martingale (1 before k),
// and the spans depend on when the controller looks, never on the events,
// so the convex mixture is one too, and Ville's inequality still bounds the
// chance of ever crossing 1/alpha. What it buys: after a long run of
// evidence for the null, a cumulative statistic sits far below 1 and a new
// difference must first climb back; the mixture over starts pays only
// ln(1/π_k) ≈ ln(u/s) + 2 ln ln u for starting late (12.4 nats for a
// 1-second batch after an hour, instead of whatever the hour took), and
// ln(1/F(1)) ≈ 1.4 nats for a difference present from the first slice.
type oddsMixture struct {
	r0       float64
	ratios   []float64 // alternatives r_j (absolute, not multiples of r0)
	logPrior []float64
	ll       []float64 // log likelihood ratio of r_j against r0 (see changes)
	logM     float64
	maxLogM  float64 // running maximum of logM: the sequential p-value is exp(-maxLogM)
	changes  bool
	// units is the informative time observed, in slices: the sum of the
	// spans of the batches that carried information (the clock of the
	// prior over starts).
	units float64
	// observed counts the canary's events in the informative batches;
	// expected is what the canary would have had there at the stable's
	// rate: each batch's stable events times the canary's requests over the
	// stable's, Σ (n−x)·w/(1−w). Their ratio estimates the canary's rate
	// over the stable's weight by weight, which rates pooled across stages
	// of different weights do not.
	observed int64
	expected float64
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

// detectChanges switches a fresh mixture to the mixture over starts.
func (m *oddsMixture) detectChanges() {
	m.changes = true
	for j := range m.ll {
		m.ll[j] = math.Inf(-1) // no start has begun
	}
}

// theta is the probability that an event comes from the canary when the canary
// serves share w of requests and its per-request event rate is r times the stable's.
func theta(w, r float64) float64 { return w * r / (w*r + 1 - w) }

// observe adds a batch of n events of which x came from the canary, with
// share w, over span slices of time (0 means 1).
func (m *oddsMixture) observe(x, n int64, w, span float64) {
	if n == 0 || w <= 0 || w >= 1 {
		// w = 0: no canary requests, so every event is stable's and carries no
		// information; w = 1 likewise.
		return
	}
	if span == 0 {
		span = 1
	}
	t0 := theta(w, m.r0)
	fx, fy := float64(x), float64(n-x)
	start := logStartPrior(m.units, span)
	m.units += span
	m.observed += x
	m.expected += float64(n-x) * w / (1 - w)
	for j, r := range m.ratios {
		tj := theta(w, r)
		l := fx*math.Log(tj/t0) + fy*math.Log1p(-tj) - fy*math.Log1p(-t0)
		if m.changes {
			m.ll[j] = logAddExp(m.ll[j], start) + l
		} else {
			m.ll[j] += l
		}
	}
	m.logM = m.statistic()
	m.maxLogM = math.Max(m.maxLogM, m.logM)
}

// statistic is ln M from ll.
func (m *oddsMixture) statistic() float64 {
	if !m.changes {
		return logSumExp(m.logPrior, m.ll)
	}
	rest := -math.Log(math.Log(m.units + math.E)) // ln(1 − F(units))
	terms := make([]float64, len(m.ll))
	for j, l := range m.ll {
		terms[j] = logAddExp(l, rest)
	}
	return logSumExp(m.logPrior, terms)
}

// logStartPrior is ln(F(u+s) − F(u)), F(u) = 1 − 1/ln(u+e): the prior weight
// of a regression that began in the batch spanning (u, u+s] of informative
// time. F(u+s) − F(u) = (b−a)/(ab) with a = ln(u+e), b = ln(u+s+e), and
// b − a = ln1p(s/(u+e)) keeps it exact for tiny spans.
func logStartPrior(u, s float64) float64 {
	a, b := math.Log(u+math.E), math.Log(u+s+math.E)
	return math.Log(math.Log1p(s/(u+math.E))) - math.Log(a) - math.Log(b)
}

// logAddExp is ln(e^a + e^b).
func logAddExp(a, b float64) float64 {
	if a < b {
		a, b = b, a
	}
	if math.IsInf(b, -1) {
		return a
	}
	return a + math.Log1p(math.Exp(b-a))
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
