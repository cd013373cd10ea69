package shadow

import (
	"math"
	"time"

	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/timeslot"
)

// DefaultReportWindow is the window of a report asked for without one.
const DefaultReportWindow = 5 * time.Minute

// MaxReportWindow is the longest report window: older data is gone.
const MaxReportWindow = time.Hour

// Report is the shadow report of one endpoint over a window, as served by
// GET /api/v1/endpoints/{ep}/shadow?window=5m and printed by `modelgate
// shadow report`.
type Report struct {
	// Endpoint is the endpoint reported on.
	Endpoint string `json:"endpoint"`
	// Window is the window length, e.g. "5m".
	Window string `json:"window"`
	// Shadows maps each shadow deployment to its numbers: every shadow
	// configured now, plus any removed within the last hour that has
	// data in the window. Empty, not null, when there is none.
	Shadows map[string]ShadowReport `json:"shadows"`
}

// ShadowReport is one shadow deployment's numbers over the window.
//
// Every mirrored copy ends in exactly one of dropped, skipped, matched,
// mismatched, not_compared, errors or timeouts (copies still queued or in
// flight at the window's end are not counted in any yet, and counts land
// in the slice of the moment they happened, so a window's edge may split
// a copy's mirrored count from its outcome).
type ShadowReport struct {
	// Active is false for a shadow no longer configured (mirror 0 or
	// deployment removed) whose last copies are still in the window.
	Active bool `json:"active"`
	// Mirrored counts the copies submitted to the shadow.
	Mirrored uint64 `json:"mirrored"`
	// Dropped counts copies not sent because the queue was full (or the
	// shadow was reconfigured or stopped before they were sent).
	Dropped uint64 `json:"dropped"`
	// Skipped counts copies not sent because the request body was over
	// the capture cap (compare.max_body_bytes).
	Skipped uint64 `json:"skipped"`
	// Sent counts the copies sent to a shadow backend.
	Sent uint64 `json:"sent"`
	// Compared is Matched + Mismatched.
	Compared uint64 `json:"compared"`
	// Matched counts the answers that agreed with the live ones.
	Matched uint64 `json:"matched"`
	// Mismatched counts the answers that did not; a 5xx shadow answer to
	// a 2xx live one is a status mismatch, not an error.
	Mismatched uint64 `json:"mismatched"`
	// NotCompared counts answers the comparator could not compare (a
	// body truncated at the cap, a live body that does not decode, ...).
	NotCompared uint64 `json:"not_compared"`
	// Errors counts shadow requests that got no answer: transport
	// failures (connection refused, reset, ...).
	Errors uint64 `json:"errors"`
	// Timeouts counts shadow requests that got no whole answer within the
	// shadow timeout.
	Timeouts uint64 `json:"timeouts"`
	// MatchRate is Matched / (Compared + Errors + Timeouts): as in the
	// rollout's shadow gate, a copy that got no answer counts as a
	// mismatch. Null without data.
	MatchRate *float64 `json:"match_rate"`
	// MatchRateCI95 is the 95% Wilson score interval of MatchRate. Null
	// without data.
	MatchRateCI95 *[2]float64 `json:"match_rate_ci95"`
	// LatencyMS are shadow and live latency quantiles of the same
	// compared requests.
	LatencyMS Latency `json:"latency_ms"`
	// Protocol is the protocol of the last comparison ("" before any).
	Protocol string `json:"protocol"`
	// Mismatches are the latest mismatches in the window (at most 20),
	// newest first.
	Mismatches []Mismatch `json:"mismatches"`
	// LastError is the latest shadow request in the window that got no
	// answer (error or timeout), if any.
	LastError *ErrorSample `json:"last_error,omitempty"`
}

// Latency holds the latency quantiles, in milliseconds, of the shadow
// (from sending the copy to its answer's last byte) and of the live
// deployment (mirrored.Copy.LiveLatency) on the same compared requests.
type Latency struct {
	Shadow telemetry.Quantiles `json:"shadow"`
	Live   telemetry.Quantiles `json:"live"`
}

// Mismatch is one sampled mismatch: where and how the answers differ.
type Mismatch struct {
	// Time is when the comparison was made.
	Time time.Time `json:"time"`
	// RequestID is the live request's X-Request-Id.
	RequestID string `json:"request_id"`
	// Path is the first differing element, e.g. `predictions[3]`, or
	// "status"; "" for the whole body.
	Path string `json:"path"`
	// Reason says how they differ, e.g. `predictions[3]: 0.71 vs 0.64`.
	Reason string `json:"reason"`
	// Live and Shadow are short renderings of the differing values.
	Live   string `json:"live"`
	Shadow string `json:"shadow"`
}

// ErrorSample is a shadow request that got no answer.
type ErrorSample struct {
	// Time is when it failed.
	Time time.Time `json:"time"`
	// RequestID is the live request's X-Request-Id.
	RequestID string `json:"request_id"`
	// Error says what failed.
	Error string `json:"error"`
}

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
