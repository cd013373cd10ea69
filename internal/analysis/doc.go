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
// Every test runs for the whole rollout, so that alpha and the promotion
// error are spent once per rollout however many stages, looks and pauses
// there are; each slice is judged at its own realised canary share, so
// weight changes need nothing. docs/analysis.md has the statistics.
//
//   - Rollback: a change-detecting [stats.RegressionTest] on errors (bad =
//     SplitErrors; alpha share Gate.ErrorsAlpha) and one at each of the
//     plan's latency quantiles (Gate.LatencyAlpha split equally). At
//     quantile q a stable request is slow above L_q, the stable's
//     q-quantile fixed when the stage starts (StartStage) over the recent
//     window the controller passes in (its last minute; at least 100
//     latencies are needed, else L_q is fixed from the stable's first 100
//     requests of the stage and applies from the next slice on); a canary
//     request is slow above T_q = max(L_q·(1+tolerance), L_q+tolerance_ms).
//     A request is slow when its sketch bucket's representative value is
//     above the threshold, for both arms alike.
//   - Promotion: a [stats.MarginTest] per distinct stage margin on errors
//     and at each quantile, and per metric an allowance path, a pooled
//     bound per arm ([stats.NonInferiority], relative margin 1, the plan's
//     ErrorAllowance or Latency.Allowance). The promotion error is split as
//     alpha is, and within each metric a fifth to its allowance path.
//   - Warm-up: the latency tests skip a stage's slices until its canary
//     has served Plan.WarmupRequests split requests and Plan.WarmupTime has
//     passed; errors are always judged.
//
// The gate fails as soon as a rollback test rejects (rejection is final).
// It passes when, at the stage's margin, the canary has been shown within
// it on errors (ratio or allowance) and at every quantile; otherwise it is
// inconclusive. The gate needs no minimum sample (the sequential tests are
// the sample-size rule); the controller still applies the stage's bake
// time and minimum requests. Slices before the first stage feed the errors
// tests only (no latency thresholds yet).
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
