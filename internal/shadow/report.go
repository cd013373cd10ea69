package shadow

import (
	"math"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/timeslot"
)

// DefaultReportWindow is the window of a report asked for without one.
const DefaultReportWindow = 5 * time.Minute

// MaxReportWindow is the longest report window: older data is gone.
const MaxReportWindow = time.Hour

// Report is api.ShadowReport, the wire form.
type Report = api.ShadowReport

// ShadowReport is api.ShadowDeployment, the wire form.
type ShadowReport = api.ShadowDeployment

// Latency is api.ShadowLatency, the wire form.
type Latency = api.ShadowLatency

// Mismatch is api.Mismatch, the wire form.
type Mismatch = api.Mismatch

// ErrorSample is api.ShadowError, the wire form.
type ErrorSample = api.ShadowError

// Report returns the shadow report of endpoint over the window ending now
// (0: DefaultReportWindow): this gateway's Part, reported. The window's
// edges follow telemetry's Window: slices whose start lies in
// (now-window, now]. An endpoint without shadows, known or not, gets a
// report listing none; the caller decides whether the endpoint exists. The
// error is for a window out of range.
func (m *Manager) Report(endpoint string, window time.Duration) (Report, error) {
	if window == 0 {
		window = DefaultReportWindow
	}
	p, err := m.Part(endpoint, window)
	if err != nil {
		return Report{}, err
	}
	return p.Report(endpoint, window), nil
}

// part reads s's raw numbers over the window ending at now.
func (s *stats) part(now time.Time, window time.Duration) ShadowPart {
	hi := now.UnixNano()
	lo := hi - int64(window)
	t := s.window(lo, hi, true)
	p := ShadowPart{
		Mirrored:      t.n[kindMirrored],
		Dropped:       t.n[kindDropped],
		Skipped:       t.n[kindSkipped],
		Sent:          t.n[kindSent],
		Matched:       t.n[kindMatched],
		Mismatched:    t.n[kindMismatched],
		NotCompared:   t.n[kindNotCompared],
		Errors:        t.n[kindError],
		Timeouts:      t.n[kindTimeout],
		ShadowLatency: t.shadow,
		LiveLatency:   t.live,
		Mismatches:    []Mismatch{},
	}
	// A sample belongs to the window when it was taken in a second the
	// window covers, the counters' rule.
	first, _ := timeslot.SecondsIn(lo, hi)
	in := func(at time.Time) bool { return at.Unix() >= first && !at.After(now) }
	s.mu.Lock()
	defer s.mu.Unlock()
	p.Protocol = s.protocol
	for i := 1; i <= s.nSamples; i++ {
		if m := s.samples[(s.next-i+maxSamples)%maxSamples]; in(m.Time) {
			p.Mismatches = append(p.Mismatches, m)
		}
	}
	if e := s.lastErr; e != nil && in(e.Time) {
		ec := *e
		p.LastError = &ec
	}
	return p
}

// quantiles reads p50, p90, p95 and p99 of s in milliseconds.
func quantiles(s telemetry.Sketch) telemetry.Quantiles {
	ms := func(q float64) float64 {
		return math.Round(float64(s.Quantile(q))/float64(time.Millisecond)*1000) / 1000
	}
	return telemetry.Quantiles{P50: ms(0.50), P90: ms(0.90), P95: ms(0.95), P99: ms(0.99)}
}

// wilson returns the 95% Wilson score interval of k successes in n trials.
func wilson(k, n uint64) (lo, hi float64) {
	const z = 1.959963984540054
	p, nf := float64(k)/float64(n), float64(n)
	den := 1 + z*z/nf
	center := (p + z*z/(2*nf)) / den
	half := z * math.Sqrt(p*(1-p)/nf+z*z/(4*nf*nf)) / den
	return max(0, center-half), min(1, center+half)
}
