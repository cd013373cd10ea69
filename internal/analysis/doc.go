// Package analysis turns a rollout's telemetry into gate verdicts: pass, fail
// or inconclusive, each with the reason in words and the numbers behind it. It
// is pure: no clock, no I/O. The rollout controller feeds it 1-second slices
// of both deployments (Observe), tells it when a live stage starts
// (StartStage), asks for verdicts (Evaluate, EvaluateShadow) and persists its
// State every few seconds. docs/analysis.md explains the statistics.
//
// # What is counted
//
// Only split-routed requests count (telemetry Slice.SplitRequests,
// SplitErrors; Summary.SplitRequests, SplitErrors): requests routed by the
// X-Model-Deployment override header are left out of every gate, latency
// included (telemetry's sketches hold split-routed requests only): any
// client can pin a request, so pinned requests are never evidence. An error
// is a 5xx (the proxy maps transport failures and timeouts to 5xx).
//
// # The sequential gate (the default)
//
// One [stats.RegressionTest] per metric for the whole rollout, so that alpha
// is spent once per rollout however many stages and looks there are;
// Plan.Alpha is split equally between errors and latency (stats.SplitAlpha:
// 0.025 each by default). Each slice adds, per metric, the canary's and the
// stable's requests and bad requests; the test uses the slice's realised
// canary share, so weight changes need nothing.
//
//   - errors: bad = SplitErrors.
//   - latency: bad = a request slower than L, L fixed when the stage starts
//     (StartStage) as the stable's p99 over the recent window the controller
//     passes in (the last minute is recommended; at least 100 requests are
//     needed). Without enough recent stable data, L is fixed from the stable's
//     first 100 requests of the stage and applies from the next slice on: a
//     threshold must be fixed before the slices it judges. The p99 read from
//     the sketch is the representative value of a bucket, and a request is
//     slow when its bucket's representative value is above L: the effective
//     threshold is the upper edge of L's bucket, at most 1.9% above L. The
//     approximation applies to both arms alike, so the test stays exact for
//     "slower than that edge".
//
// The gate fails as soon as either test rejects (rejection is final). It
// passes when the stage's promotion evidence ([stats.NonInferiority], new
// for every stage, at the metric's alpha) shows the canary at most a margin
// worse for both metrics: errors with the default margins (1.5× or +0.2
// points), latency on the exceedance of the stable's p90 (a second
// threshold fixed with L) with an absolute margin of 2 points, as in
// bench/stats. Otherwise it is inconclusive. The gate itself needs no
// minimum sample (the confidence sequences are the sample-size rule); the
// controller still applies the stage's bake time and minimum requests.
// Only slices starting at or after the stage's start count as stage
// evidence; the rollout-wide tests take every slice.
//
// # Threshold gates
//
// error_rate, latency and ttfb compare point estimates over the stage
// Window with fixed limits, as users configure them: inconclusive until the
// canary has the stage's minimum split requests (Stage.MinRequests, else
// Plan.MinRequests), then fail when a limit is exceeded, else pass. Relative
// limits need stable data (inconclusive without). error_rate: Max is a
// fraction, MaxIncrease percentage points over the stable's rate. latency /
// ttfb: the nearest-rank quantile of the Window's sketch (within 1%), Max in
// milliseconds, MaxIncrease percent over the stable's same quantile. These
// gates are fixed-sample rules looked at repeatedly: they do not carry the
// sequential gate's false-rollback guarantee.
//
// # Match rate (shadow)
//
// The match rate is Matched / (Compared + Errors): a shadow copy that failed
// without an answer to compare (ShadowCounts.Errors) counts as a mismatch.
// The verdict is looked at repeatedly, so "clearly below" uses an
// anytime-valid 95% confidence sequence (stats.BinomialConfidenceSequence on
// the mismatch rate) rather than a Wilson interval, which would fail good
// canaries when re-checked every few seconds: fail when the interval's upper
// bound on the match rate is below the minimum; pass when at least the
// minimum number of copies was compared and the observed rate is at least
// the minimum; inconclusive otherwise. EvaluateShadow applies this to the
// shadow phase (MinMatchRate, MinCompared), the match_rate gate to
// Window.Shadow during live stages (Gate.Min, and the plan's shadow
// MinCompared or 200).
//
// # Sample-ratio mismatch
//
// A [stats.SampleRatioTest] (alpha 0.001) per stage checks the canary's
// split requests against the weight given to StartStage, on the stage's
// slices. On a mismatch Result.SampleRatioMismatch is set and neither
// Result.Failed nor Result.Passed is: routing is broken, the controller
// pauses the rollout instead of judging the canary (the gates are still
// reported). The test restarts at every stage, and ResetSampleRatio
// restarts it after a human has fixed routing and resumed. It does not run
// at 100% or before the first stage.
package analysis
