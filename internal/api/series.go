package api

import "time"

// SeriesReport is an endpoint's numbers per deployment and step, for
// charts. Step k covers the whole seconds [Times[k], Times[k]+Step); the
// last step ends with the last complete second before the report was made.
// Every array of a deployment has one entry per step.
type SeriesReport struct {
	Endpoint string `json:"endpoint"`
	Window   string `json:"window"`
	Step     string `json:"step"`
	// StepSeconds is Step in seconds, for clients that do arithmetic.
	StepSeconds int `json:"step_seconds"`
	// Start is the start of the first step, End the end of the last one.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	// Times is the start of each step.
	Times []time.Time `json:"times"`
	// Order lists the deployments in config order.
	Order       []string                    `json:"order"`
	Deployments map[string]DeploymentSeries `json:"deployments"`
}

// DeploymentSeries is one deployment's numbers per step. Counts include
// override-routed requests, as in the metrics JSON; the shares count only
// split-routed ones. A value that has no data (a quantile or measured share
// of a step without requests) is null, never a misleading 0.
type DeploymentSeries struct {
	// Requests counts the live requests that finished in the step.
	Requests []uint64 `json:"requests"`
	// Errors counts 5xx answers and transport failures among them.
	Errors []uint64 `json:"errors"`
	// LatencyP50MS and LatencyP99MS are nearest-rank quantiles of the time
	// to the last body byte of the split-routed requests, in milliseconds.
	LatencyP50MS []*float64 `json:"latency_p50_ms"`
	LatencyP99MS []*float64 `json:"latency_p99_ms"`
	// ConfiguredShare is the deployment's traffic weight as a fraction
	// 0..1, averaged over the step's time (read from the event log, so a
	// change in the middle of a step shows as a value in between).
	ConfiguredShare []float64 `json:"configured_share"`
	// MeasuredShare is the deployment's part of the endpoint's split-routed
	// requests in the step, 0..1.
	MeasuredShare []*float64 `json:"measured_share"`
}

// SeriesAnswer is the answer of GET /api/v1/endpoints/{ep}/series.
type SeriesAnswer struct {
	SeriesReport
	Replicas Coverage `json:"replicas"`
}
