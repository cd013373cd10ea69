package telemetry

import (
	"slices"
	"strconv"
	"time"
)

// Report is the metrics JSON of one endpoint over a window, as served by
// GET /api/v1/endpoints/{ep}/metrics (see DESIGN.md "Metrics JSON").
type Report struct {
	Endpoint    string                      `json:"endpoint"`
	Window      string                      `json:"window"`
	Baseline    string                      `json:"baseline"`
	Deployments map[string]DeploymentReport `json:"deployments"`
	Differences map[string]DifferenceReport `json:"differences"`
}

// DeploymentReport is one deployment's numbers over the window. Rates are
// fractions 0..1, latencies milliseconds, quantiles nearest-rank values of
// the latency sketch.
type DeploymentReport struct {
	Requests         uint64            `json:"requests"`
	OverrideRequests uint64            `json:"override_requests"`
	InFlight         int64             `json:"in_flight"`
	Status           map[string]uint64 `json:"status"`
	Errors           uint64            `json:"errors"`
	ErrorRate        float64           `json:"error_rate"`
	ClientErrors     uint64            `json:"client_errors"`
	RPM              float64           `json:"rpm"`
	Share            float64           `json:"share"`
	LatencyMS        Quantiles         `json:"latency_ms"`
	TTFBMS           Quantiles         `json:"ttfb_ms"`
}

// Quantiles holds p50, p90, p95 and p99 in milliseconds; all zero without data.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// DifferenceReport compares a deployment with the baseline. _pp values are
// percentage points (nil only without data); _pct values are relative
// percents (nil where the baseline's value is 0 or there is no data).
type DifferenceReport struct {
	ErrorRatePP   *float64 `json:"error_rate_pp"`
	LatencyP50Pct *float64 `json:"latency_p50_pct"`
	LatencyP99Pct *float64 `json:"latency_p99_pct"`
	RPMPct        *float64 `json:"rpm_pct"`
}

// BuildReport builds the metrics JSON of endpoint from per-deployment
// summaries of the same window. order lists the deployments in config
// order; each is reported even without data (a missing summary counts as
// empty). A summary for a deployment not in order is reported too, so that
// no measured traffic disappears from the share. Differences compare every
// reported deployment but baseline with baseline.
func BuildReport(endpoint string, window time.Duration, baseline string, order []string, sums map[string]Summary) Report {
	names := slices.Clone(order)
	var extra []string
	for name := range sums {
		if !slices.Contains(order, name) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	names = append(names, extra...)

	var split uint64
	for _, name := range names {
		split += sums[name].SplitRequests()
	}
	rep := Report{
		Endpoint:    endpoint,
		Window:      FormatWindow(window),
		Baseline:    baseline,
		Deployments: make(map[string]DeploymentReport, len(names)),
		Differences: make(map[string]DifferenceReport, len(names)),
	}
	for _, name := range names {
		rep.Deployments[name] = deploymentReport(sums[name], window, split)
	}
	base := sums[baseline]
	for _, name := range names {
		if name != baseline {
			rep.Differences[name] = difference(base, rep.Deployments[baseline], sums[name], rep.Deployments[name])
		}
	}
	return rep
}

func deploymentReport(s Summary, window time.Duration, split uint64) DeploymentReport {
	d := DeploymentReport{
		Requests:         s.Requests,
		OverrideRequests: s.OverrideRequests,
		InFlight:         s.InFlight,
		Status:           make(map[string]uint64),
		Errors:           s.Errors,
		ClientErrors:     s.ClientErrors,
		ErrorRate:        ratio(float64(s.Errors), float64(s.Requests)),
		RPM:              ratio(float64(s.Requests), window.Minutes()),
		Share:            ratio(float64(s.SplitRequests()), float64(split)),
		LatencyMS:        quantiles(s.Latency),
		TTFBMS:           quantiles(s.TTFB),
	}
	for class, n := range s.Status {
		if n > 0 && class > 0 {
			d.Status[classLabel[class]] = n
		}
	}
	return d
}

func quantiles(s Sketch) Quantiles {
	ms := func(q float64) float64 { return float64(s.Quantile(q)) / float64(time.Millisecond) }
	return Quantiles{P50: ms(0.50), P90: ms(0.90), P95: ms(0.95), P99: ms(0.99)}
}

// difference compares deployment d with baseline b. A deployment without
// requests has no data: its rates and latencies are not zero, they are
// unknown, so the differences are nil rather than misleading numbers.
func difference(bs Summary, b DeploymentReport, ds Summary, d DeploymentReport) DifferenceReport {
	var diff DifferenceReport
	if bs.Requests == 0 || ds.Requests == 0 {
		return diff
	}
	diff.ErrorRatePP = ptr(clean((d.ErrorRate - b.ErrorRate) * 100))
	diff.RPMPct = relative(d.RPM, b.RPM)
	if bs.Latency.Count() > 0 && ds.Latency.Count() > 0 {
		diff.LatencyP50Pct = relative(d.LatencyMS.P50, b.LatencyMS.P50)
		diff.LatencyP99Pct = relative(d.LatencyMS.P99, b.LatencyMS.P99)
	}
	return diff
}

// relative is the change from base to v in percent, nil when base is 0.
func relative(v, base float64) *float64 {
	if base == 0 {
		return nil
	}
	return ptr(clean((v - base) / base * 100))
}

// ratio is a/b, 0 when b is not positive.
func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return clean(a / b)
}

// clean turns -0 into 0 (JSON would print "-0").
func clean(x float64) float64 {
	if x == 0 {
		return 0
	}
	return x
}

func ptr(x float64) *float64 { return &x }

// FormatWindow formats a window as the API writes it: the largest unit
// that divides it exactly, "5m", "10s", "1h", "90s" (not time.Duration's
// "5m0s"). Durations that are not whole seconds fall back to
// time.Duration's format.
func FormatWindow(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}
