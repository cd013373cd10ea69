package telemetry

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
