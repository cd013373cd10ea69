package analysis

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/stats"
)

// Names are the deployments' names, for the plain-words summaries of the
// verdicts ("green's error rate is 2.1× blue's"). Empty: "the stable" and
// "the canary".
type Names struct{ Stable, Canary string }

// SetNames names the deployments in the analyzer's summaries.
func (a *Analyzer) SetNames(n Names) { a.names = n }

func (n Names) stable() string {
	if n.Stable == "" {
		return "the stable"
	}
	return n.Stable
}

func (n Names) canary() string {
	if n.Canary == "" {
		return "the canary"
	}
	return n.Canary
}

// Waiting is the prefix of the summary of a verdict that waits for data.
const Waiting = "waiting: "

// About rounds a count of requests to two significant digits, for an
// estimate: 2,437 → "about 2,400".
func About(n int64) string { return about(n) }

// Count writes n with thousands separators: 4,030.
func Count(n int64) string { return num(n) }

// Roughly is a duration as a person says it in an estimate: "40 s",
// "4 min", "2.5 h".
func Roughly(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < 90*time.Second:
		return fmt.Sprintf("%d s", max(int(d.Round(time.Second)/time.Second), 1))
	case d < 90*time.Minute:
		return fmt.Sprintf("%d min", int(d.Round(time.Minute)/time.Minute))
	}
	if d < 10*time.Hour {
		return fmt.Sprintf("%.1f h", d.Hours())
	}
	return fmt.Sprintf("%.0f h", d.Hours())
}

// FailedReasons is the statistics of the failed gates: "gate: reason; ...".
func (r Result) FailedReasons() string {
	var parts []string
	for _, g := range r.Gates {
		if g.Verdict == Fail {
			parts = append(parts, g.Gate+": "+g.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// about rounds a count of requests to two significant digits, for an
// estimate: 2,437 → "about 2,400".
func about(n int64) string {
	if n < 100 {
		return "about " + num(n)
	}
	p := int64(math.Pow(10, math.Floor(math.Log10(float64(n)))-1))
	return "about " + num((n+p/2)/p*p)
}

// moreRequests estimates how many more canary requests a promotion test
// needs to reach its threshold, from the pace of its evidence so far (its
// log statistic per canary request since the rollout began); ok is false
// when the evidence is not growing (the canary may be worse than the
// margin, or the test has seen too little to tell).
func moreRequests(logStat, threshold float64, canaryRequests int64) (n int64, ok bool) {
	need := math.Log(threshold) - logStat
	if need <= 0 {
		return 0, true
	}
	if canaryRequests <= 0 || logStat <= 0 {
		return 0, false
	}
	k := math.Ceil(need / (logStat / float64(canaryRequests)))
	if !(k < 1e12) { // a pace this slow tells nothing
		return 0, false
	}
	return int64(k), true
}

// overall is a failed change detector's weight-adjusted count in words,
// when it says more than the stage's rates beside it: " (since the rollout
// began, 125 errors against 36 expected at blue's rate)". Left out when
// the count is not above what was expected: the detector fires on a
// change, and a canary better before it can be worse overall than expected
// by nothing (the stage's rates tell it then).
func (n Names) overall(what string, e stats.Evidence) string {
	switch {
	case e.Expected <= 0 && e.Observed > 0:
		return fmt.Sprintf(" (since the rollout began, %s %s where %s had none)", num(e.Observed), what, n.stable())
	case e.Expected > 0 && float64(e.Observed) > e.Expected:
		return fmt.Sprintf(" (since the rollout began, %s %s against %s expected at %s's rate: %s×)",
			num(e.Observed), what, flt(e.Expected), n.stable(), flt(float64(e.Observed)/e.Expected))
	}
	return ""
}

// andList joins items as "a, b and c".
func andList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}

// stageErrors is the stage's error rates of both arms in words, from the
// stage window (one weight: never pooled across stages).
func (n Names) stageErrors(w Window) string {
	cn, ce := w.Canary.SplitRequests(), w.Canary.SplitErrors
	sn, se := w.Stable.SplitRequests(), w.Stable.SplitErrors
	return fmt.Sprintf("this stage: %s %s vs %s %s errors over %s vs %s requests",
		n.canary(), pct(rate(int64(ce), int64(cn))), n.stable(), pct(rate(int64(se), int64(sn))), num(int64(cn)), num(int64(sn)))
}

// stageEvidence is the stage window's counts as evidence, one weight.
func stageEvidence(w Window) map[string]any {
	cn, ce := w.Canary.SplitRequests(), w.Canary.SplitErrors
	sn, se := w.Stable.SplitRequests(), w.Stable.SplitErrors
	return map[string]any{
		"canary_requests": cn, "canary_errors": ce, "canary_rate": rate(int64(ce), int64(cn)),
		"stable_requests": sn, "stable_errors": se, "stable_rate": rate(int64(se), int64(sn)),
	}
}
