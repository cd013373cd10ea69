package telemetry

import (
	"slices"
	"time"

	"github.com/modelgate/modelgate/internal/api"
)

// Report is api.MetricsReport, the wire form.
type Report = api.MetricsReport

// DeploymentReport is api.DeploymentMetrics, the wire form.
type DeploymentReport = api.DeploymentMetrics

// Quantiles is api.Quantiles, the wire form.
type Quantiles = api.Quantiles

// DifferenceReport is api.Difference, the wire form.
type DifferenceReport = api.Difference

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
		Window:      api.FormatWindow(window),
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
