package api

import (
	"strconv"
	"time"
)

// MetricsReport is the metrics JSON of one endpoint over a window, as served by
// GET /api/v1/endpoints/{ep}/metrics (see DESIGN.md "Metrics JSON").
type MetricsReport struct {
	Endpoint    string                       `json:"endpoint"`
	Window      string                       `json:"window"`
	Baseline    string                       `json:"baseline"`
	Deployments map[string]DeploymentMetrics `json:"deployments"`
	Differences map[string]Difference        `json:"differences"`
}

// DeploymentMetrics is one deployment's numbers over the window. Rates are
// fractions 0..1, latencies milliseconds, quantiles nearest-rank values of
// the latency sketch.
type DeploymentMetrics struct {
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

// Difference compares a deployment with the baseline. _pp values are
// percentage points (nil only without data); _pct values are relative
// percents (nil where the baseline's value is 0 or there is no data).
type Difference struct {
	ErrorRatePP   *float64 `json:"error_rate_pp"`
	LatencyP50Pct *float64 `json:"latency_p50_pct"`
	LatencyP99Pct *float64 `json:"latency_p99_pct"`
	RPMPct        *float64 `json:"rpm_pct"`
}

// Coverage says whose requests a metrics, series or shadow answer holds
// (its "replicas" field).
type Coverage struct {
	// Reporting counts the replicas whose part is in the answer, this one
	// included; Of counts the replicas asked: the fleet's list (this
	// gateway alone without cluster mode), or 1 with ?replica=.
	Reporting int `json:"reporting"`
	Of        int `json:"of"`
	// Replica is the replica asked for with ?replica=.
	Replica string `json:"replica,omitempty"`
	// Missing are the replicas left out, with why.
	Missing []MissingReplica `json:"missing,omitempty"`
}

// MissingReplica is a replica whose part is not in an answer.
type MissingReplica struct {
	ID       string `json:"id"`
	AdminURL string `json:"admin_url,omitempty"`
	Error    string `json:"error"`
}

// MetricsAnswer is the answer of GET /api/v1/endpoints/{ep}/metrics: the
// report with the replicas it covers.
type MetricsAnswer struct {
	MetricsReport
	Replicas Coverage `json:"replicas"`
}

// Complete reports whether every replica asked is in the answer.
func (c Coverage) Complete() bool { return c.Reporting == c.Of }

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
