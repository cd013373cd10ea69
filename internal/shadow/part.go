package shadow

import (
	"fmt"
	"slices"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Part is one gateway's raw, mergeable part of an endpoint's shadow report
// over a window: counts and latency sketches, never rates or quantiles.
// In cluster mode every replica mirrors and compares the copies of the
// requests it served; a fleet-wide report is Merge of every replica's part,
// then Report: counts add, sketches merge, mismatch samples interleave by
// time. A gateway alone reports its own part the same way.
type Part struct {
	// Shadows maps each shadow deployment to its numbers (the same
	// shadows Report lists).
	Shadows map[string]ShadowPart `json:"shadows"`
}

// ShadowPart is one shadow deployment's raw numbers over the window. The
// counts mean what ShadowReport's do.
type ShadowPart struct {
	Active      bool   `json:"active"`
	Mirrored    uint64 `json:"mirrored"`
	Dropped     uint64 `json:"dropped"`
	Skipped     uint64 `json:"skipped"`
	Sent        uint64 `json:"sent"`
	Matched     uint64 `json:"matched"`
	Mismatched  uint64 `json:"mismatched"`
	NotCompared uint64 `json:"not_compared"`
	Errors      uint64 `json:"errors"`
	Timeouts    uint64 `json:"timeouts"`
	// ShadowLatency and LiveLatency are the sketches of the compared
	// requests' shadow and live latency.
	ShadowLatency telemetry.Sketch `json:"shadow_latency"`
	LiveLatency   telemetry.Sketch `json:"live_latency"`
	Protocol      string           `json:"protocol"`
	// Mismatches are the latest samples in the window, newest first.
	Mismatches []Mismatch   `json:"mismatches"`
	LastError  *ErrorSample `json:"last_error,omitempty"`
}

// Part returns this gateway's part of endpoint's shadow report over the
// window ending now (0: DefaultReportWindow); see Report.
func (m *Manager) Part(endpoint string, window time.Duration) (Part, error) {
	if window == 0 {
		window = DefaultReportWindow
	}
	if window < time.Second || window > MaxReportWindow {
		return Part{}, fmt.Errorf("shadow report: window %s out of range 1s..1h", window)
	}
	now := m.now()
	p := Part{Shadows: map[string]ShadowPart{}}
	t := m.table.Load()
	for k, sh := range t.active {
		if k.endpoint == endpoint {
			sp := sh.st.part(now, window)
			sp.Active = true
			p.Shadows[k.deployment] = sp
		}
	}
	for k, st := range t.retained {
		if k.endpoint != endpoint {
			continue
		}
		if sp := st.part(now, window); sp.any() {
			p.Shadows[k.deployment] = sp
		}
	}
	return p, nil
}

// any reports whether the part counted anything.
func (p ShadowPart) any() bool {
	return p.Mirrored+p.Sent+p.Matched+p.Mismatched+p.NotCompared+p.Errors+p.Timeouts+p.Dropped > 0
}

// Merge combines parts of the same window from several gateways: a
// shadow is active when it is active on any, counts add, sketches merge;
// the mismatch samples are the newest maxSamples of all, the last error
// the latest, and the protocol the first part's that names one (one other
// than "auto" when any does). parts[0] is usually the answering gateway's.
func Merge(parts ...Part) Part {
	out := Part{Shadows: map[string]ShadowPart{}}
	for _, p := range parts {
		for name, sp := range p.Shadows {
			m := out.Shadows[name]
			m.Active = m.Active || sp.Active
			m.Mirrored += sp.Mirrored
			m.Dropped += sp.Dropped
			m.Skipped += sp.Skipped
			m.Sent += sp.Sent
			m.Matched += sp.Matched
			m.Mismatched += sp.Mismatched
			m.NotCompared += sp.NotCompared
			m.Errors += sp.Errors
			m.Timeouts += sp.Timeouts
			m.ShadowLatency.Merge(sp.ShadowLatency)
			m.LiveLatency.Merge(sp.LiveLatency)
			if sp.Protocol != "" && (m.Protocol == "" || m.Protocol == "auto" && sp.Protocol != "auto") {
				m.Protocol = sp.Protocol
			}
			m.Mismatches = append(m.Mismatches, sp.Mismatches...)
			if e := sp.LastError; e != nil && (m.LastError == nil || e.Time.After(m.LastError.Time)) {
				m.LastError = e
			}
			out.Shadows[name] = m
		}
	}
	for name, m := range out.Shadows {
		m.Mismatches = newest(m.Mismatches)
		out.Shadows[name] = m
	}
	return out
}

// newest sorts samples newest first and keeps maxSamples of them.
func newest(ms []Mismatch) []Mismatch {
	out := slices.Clone(ms)
	slices.SortStableFunc(out, func(a, b Mismatch) int { return b.Time.Compare(a.Time) })
	if len(out) > maxSamples {
		out = out[:maxSamples]
	}
	if out == nil {
		out = []Mismatch{}
	}
	return out
}

// Report builds the shadow report of endpoint over window from the part
// (of one gateway, or Merge of several).
func (p Part) Report(endpoint string, window time.Duration) Report {
	if window == 0 {
		window = DefaultReportWindow
	}
	rep := Report{Endpoint: endpoint, Window: api.FormatWindow(window), Shadows: make(map[string]ShadowReport, len(p.Shadows))}
	for name, sp := range p.Shadows {
		rep.Shadows[name] = sp.report()
	}
	return rep
}

func (sp ShadowPart) report() ShadowReport {
	r := ShadowReport{
		Active:      sp.Active,
		Mirrored:    sp.Mirrored,
		Dropped:     sp.Dropped,
		Skipped:     sp.Skipped,
		Sent:        sp.Sent,
		Matched:     sp.Matched,
		Mismatched:  sp.Mismatched,
		NotCompared: sp.NotCompared,
		Errors:      sp.Errors,
		Timeouts:    sp.Timeouts,
		LatencyMS:   Latency{Shadow: quantiles(sp.ShadowLatency), Live: quantiles(sp.LiveLatency)},
		Protocol:    sp.Protocol,
		Mismatches:  newest(sp.Mismatches),
	}
	if sp.LastError != nil {
		e := *sp.LastError
		r.LastError = &e
	}
	r.Compared = r.Matched + r.Mismatched
	if n := r.Compared + r.Errors + r.Timeouts; n > 0 {
		rate := float64(r.Matched) / float64(n)
		lo, hi := wilson(r.Matched, n)
		r.MatchRate, r.MatchRateCI95 = &rate, &[2]float64{lo, hi}
	}
	return r
}

// Check refuses a part read from another replica that holds more than a
// replica keeps: more mismatch samples per shadow than maxSamples.
func (p Part) Check() error {
	for name, sp := range p.Shadows {
		if len(sp.Mismatches) > maxSamples {
			return fmt.Errorf("shadow %q: %d mismatch samples, at most %d", name, len(sp.Mismatches), maxSamples)
		}
	}
	return nil
}
