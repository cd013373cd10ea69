package api

import "time"

// ShadowReport is the shadow report of one endpoint over a window, as served by
// GET /api/v1/endpoints/{ep}/shadow?window=5m and printed by `modelgate
// shadow report`.
type ShadowReport struct {
	// Endpoint is the endpoint reported on.
	Endpoint string `json:"endpoint"`
	// Window is the window length, e.g. "5m".
	Window string `json:"window"`
	// Shadows maps each shadow deployment to its numbers: every shadow
	// configured now, plus any removed within the last hour that has
	// data in the window. Empty, not null, when there is none.
	Shadows map[string]ShadowDeployment `json:"shadows"`
}

// ShadowDeployment is one shadow deployment's numbers over the window.
//
// Every mirrored copy ends in exactly one of dropped, skipped, matched,
// mismatched, not_compared, errors or timeouts (copies still queued or in
// flight at the window's end are not counted in any yet, and counts land
// in the slice of the moment they happened, so a window's edge may split
// a copy's mirrored count from its outcome).
type ShadowDeployment struct {
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
	LatencyMS ShadowLatency `json:"latency_ms"`
	// Protocol is the protocol of the last comparison ("" before any).
	Protocol string `json:"protocol"`
	// Mismatches are the latest mismatches in the window (at most 20),
	// newest first.
	Mismatches []Mismatch `json:"mismatches"`
	// LastError is the latest shadow request in the window that got no
	// answer (error or timeout), if any.
	LastError *ShadowError `json:"last_error,omitempty"`
}

// ShadowLatency holds the latency quantiles, in milliseconds, of the shadow
// (from sending the copy to its answer's last byte) and of the live
// deployment (mirrored.Copy.LiveLatency) on the same compared requests.
type ShadowLatency struct {
	Shadow Quantiles `json:"shadow"`
	Live   Quantiles `json:"live"`
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
	// Request is the request that gave the mismatch: its method, its path
	// after the endpoint and the start of its body (at most
	// MismatchRequestBytes, cut at a character), e.g.
	// `POST /v1/models/fraud:predict {"instances": [[0.3, 1.2]]}`. Empty
	// with compare.sample_requests false.
	Request string `json:"request,omitempty"`
}

// MismatchRequestBytes bounds the body a Mismatch's Request shows.
const MismatchRequestBytes = 256

// ShadowError is a shadow request that got no answer.
type ShadowError struct {
	// Time is when it failed.
	Time time.Time `json:"time"`
	// RequestID is the live request's X-Request-Id.
	RequestID string `json:"request_id"`
	// Error says what failed.
	Error string `json:"error"`
}

// ShadowAnswer is the answer of GET /api/v1/endpoints/{ep}/shadow.
type ShadowAnswer struct {
	ShadowReport
	Replicas Coverage `json:"replicas"`
}
