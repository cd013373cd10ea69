package analysis

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/stats"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// shadowAlpha is the level of the match rate's confidence sequence: the
// probability that a shadow whose match rate is at least the minimum is
// ever failed, however often it is looked at.
const shadowAlpha = 0.05

// Verdict is api.Verdict, the wire form.
type Verdict = api.Verdict

// Verdicts.
const (
	Pass         Verdict = "pass"
	Fail         Verdict = "fail"
	Inconclusive Verdict = "inconclusive"
)

// GateResult is api.GateResult, the wire form.
type GateResult = api.GateResult

// Window is what the threshold gates judge: stage-to-date summaries.
type Window struct {
	Stable, Canary telemetry.Summary
	// Shadow is the shadow comparison of the stage; nil when none runs.
	Shadow *ShadowCounts
}

// ShadowCounts are the counts of a shadow comparison.
type ShadowCounts struct {
	// Compared counts the shadow copies whose answers were compared with the
	// live ones (an error answer compared with a success is a mismatch).
	Compared uint64 `json:"compared"`
	// Matched counts the compared copies whose answers agreed; ≤ Compared.
	Matched uint64 `json:"matched"`
	// Errors counts the shadow copies that failed without an answer to
	// compare (timeout, transport error); they count as mismatches.
	Errors uint64 `json:"errors"`
}

// Result is the verdict of a stage's gates at one look.
type Result struct {
	Gates       []GateResult `json:"gates"`
	SampleRatio GateResult   `json:"sample_ratio"`
	// Failed: some gate failed, roll back now. Passed: every gate passed.
	// Neither is set on a sample-ratio mismatch: routing is broken, so the
	// canary is not judged; the controller pauses.
	Failed bool `json:"failed"`
	Passed bool `json:"passed"`
	// SampleRatioMismatch: the canary's share of split requests is
	// inconsistent with its weight (evidence in SampleRatio).
	SampleRatioMismatch bool `json:"sample_ratio_mismatch"`
}

// Evaluate judges the current stage: every gate of the plan in order, and
// the sample-ratio check. stage is the plan's stage being run (its
// MinRequests, else the plan's, is the threshold gates' minimum sample); w
// holds the stage-to-date summaries. Evaluate changes nothing.
func (a *Analyzer) Evaluate(stage spec.Stage, w Window) Result {
	minReq := stage.MinRequests
	if minReq <= 0 {
		minReq = a.plan.MinRequests
	}
	var r Result
	pass := true
	for i, g := range a.plan.Gates {
		var gr GateResult
		switch g.Type {
		case spec.GateSequential:
			gr = a.sequentialGate(w)
		case spec.GateErrorRate, spec.GateLatency, spec.GateTTFB:
			gr = a.thresholdGate(i, g, w, minReq)
		case spec.GateMatchRate:
			gr = a.matchRateGate(g, w.Shadow)
		default:
			gr = GateResult{Gate: string(g.Type), Verdict: Inconclusive, Reason: fmt.Sprintf("unknown gate type %q", g.Type), Evidence: map[string]any{}}
			gr.Summary = gr.Reason
		}
		if g.RollbackOnly && gr.Verdict == Inconclusive {
			// It never holds a stage, so it never waits: not failing is its pass.
			gr.Verdict = Pass
			gr.Summary = fmt.Sprintf("no regression so far (%s only rolls %s back, it does not hold the stage)", gr.Gate, a.names.canary())
			gr.Evidence["rollback_only"] = true
		}
		r.Gates = append(r.Gates, gr)
		r.Failed = r.Failed || gr.Verdict == Fail
		// A rollback-only gate can roll the canary back but never holds a stage.
		pass = pass && (gr.Verdict == Pass || g.RollbackOnly && gr.Verdict != Fail)
	}
	r.SampleRatio = a.sampleRatioGate()
	if r.SampleRatio.Verdict == Fail && !a.paused {
		r.SampleRatioMismatch = true
		r.Failed, pass = false, false
	}
	r.Passed = pass && len(r.Gates) > 0
	return r
}

// SetLook tells the analyzer the time of the controller's look. Threshold
// gates (fixed limits on point estimates, no correction for looking again)
// are then judged at most once a wall-clock second, however often the
// controller looks (every few canary requests): in between, their last
// verdict stands, so that looking more often does not add false rollbacks.
// Without a look time every Evaluate judges them.
func (a *Analyzer) SetLook(now time.Time) { a.lookSecond = now.Unix() }

// thresholdGate is gate i's verdict, a threshold gate's, at most once a
// look second (SetLook).
func (a *Analyzer) thresholdGate(i int, g spec.Gate, w Window, minReq int) GateResult {
	if a.lookSecond != 0 && a.lookSecond == a.thresholdSecond {
		if gr, ok := a.thresholds[i]; ok {
			return gr
		}
	}
	var gr GateResult
	switch g.Type {
	case spec.GateErrorRate:
		gr = a.names.errorRateGate(g, w, minReq)
	case spec.GateLatency:
		gr = a.names.quantileGate(g, "latency", w.Canary.Latency, w.Stable.Latency, w, minReq)
	default:
		gr = a.names.quantileGate(g, "ttfb", w.Canary.TTFB, w.Stable.TTFB, w, minReq)
	}
	if a.thresholds == nil || a.thresholdSecond != a.lookSecond {
		a.thresholds, a.thresholdSecond = map[int]GateResult{}, a.lookSecond
	}
	a.thresholds[i] = gr
	return gr
}

// sequentialGate is the verdict of the rollout-wide regression tests and
// the promotion evidence at the stage's margin.
func (a *Analyzer) sequentialGate(w Window) GateResult {
	gr := GateResult{Gate: string(spec.GateSequential), Evidence: map[string]any{}}
	q, st, n := a.seq, a.stage, a.names
	cfg := q.cfg
	errEv := q.errRollback.Evidence()
	errM := seqEvidence(errEv, q.errRollback.State().MaxLogStatistic)
	lat := map[string]any{}
	gr.Evidence["errors"], gr.Evidence["latency"] = errM, lat
	gr.Evidence["stage"] = stageEvidence(w)
	fixed := st != nil && st.stable != nil
	var fails, worse []string
	if errEv.Decision == stats.Reject {
		c := errEv.Counts
		fails = append(fails, fmt.Sprintf("canary error rate %s vs stable %s over %s vs %s requests: %s",
			pct(rate(c.CanaryBad, c.CanaryRequests)), pct(rate(c.StableBad, c.StableRequests)),
			num(c.CanaryRequests), num(c.StableRequests), rejectText(errEv, q.errRollback.State().MaxLogStatistic)))
		worse = append(worse, fmt.Sprintf("%s's error rate is higher than %s's%s", n.canary(), n.stable(), n.overall("errors", errEv)))
	}
	for i, quant := range cfg.quantiles {
		name := quantileName(quant)
		ev := q.latRollback[i].Evidence()
		m := seqEvidence(ev, q.latRollback[i].State().MaxLogStatistic)
		lat[name] = m
		if fixed {
			m["stable_threshold_ms"], m["canary_threshold_ms"] = ms(st.stable[i]), ms(st.canary[i])
			m["threshold_source"] = st.thresholdSource
		}
		if ev.Decision == stats.Reject {
			c := ev.Counts
			fails = append(fails, fmt.Sprintf("canary requests slower than the stable's %s%s: canary %s vs stable %s over %s vs %s requests: %s",
				name, thresholdText(st, i), pct(rate(c.CanaryBad, c.CanaryRequests)), pct(rate(c.StableBad, c.StableRequests)),
				num(c.CanaryRequests), num(c.StableRequests), rejectText(ev, q.latRollback[i].State().MaxLogStatistic)))
			what := "requests slower"
			if fixed {
				what += " than " + fmtDur(st.canary[i])
			}
			worse = append(worse, fmt.Sprintf("%s is slower than %s at %s%s", n.canary(), n.stable(), name, n.overall(what, ev)))
		}
	}
	if st != nil {
		gr.Evidence["weight_percent"] = st.weight.Float()
		gr.Evidence["margin"] = st.margin
	}
	if !fixed && st != nil {
		lat["threshold_pending_stable_requests"] = st.pending.Count()
	}
	if len(fails) > 0 {
		gr.Verdict, gr.Reason = Fail, strings.Join(fails, "; ")
		gr.Summary = strings.Join(worse, "; ") + " (" + n.stageErrors(w) + ")"
		return gr
	}
	noRegression := "no regression so far"
	if st == nil {
		gr.Verdict, gr.Reason = Inconclusive, noRegression+"; no live stage started"
		gr.Summary = Waiting + "no live stage has started"
		return gr
	}
	mi := cfg.marginIndex(st.margin)
	within := fmt.Sprintf("within %s× of the stable", flt(st.margin))
	var missing, shown []string
	var wait waitList // for the summary
	pe := q.errPromotion[mi].Evidence()
	ae := q.errAllowance.Evidence()
	errM["promotion"], errM["allowance"] = marginEvidence(pe), niEvidence(ae)
	c := pe.Counts
	errText := fmt.Sprintf("error rate %s vs stable %s over %s vs %s requests", pct(rate(c.CanaryBad, c.CanaryRequests)), pct(rate(c.StableBad, c.StableRequests)), num(c.CanaryRequests), num(c.StableRequests))
	if pe.Shown || ae.Verdict == stats.Promote {
		shown = append(shown, errText)
	} else {
		missing = append(missing, fmt.Sprintf("error rate %s (or %s points above it): %s", within, flt(cfg.errAllowance*100), errText))
		wait.add(fmt.Sprintf("within %s× of %s's error rate", flt(st.margin), n.stable()), pe)
	}
	warmup := ""
	if !st.warm {
		lat["warmup_canary_requests"] = st.canaryRequests
		warmup = fmt.Sprintf(" (latency not judged in the stage's warm-up: %s of %s canary requests, %s)",
			num(st.canaryRequests), num(int64(a.plan.WarmupRequests())), a.plan.WarmupTime())
		if left := int64(a.plan.WarmupRequests()) - st.canaryRequests; left > 0 {
			wait.notes = append(wait.notes, fmt.Sprintf("its latency is judged after the stage's warm-up: %s more of its requests and %s into the stage", num(left), a.plan.WarmupTime()))
		} else {
			wait.notes = append(wait.notes, fmt.Sprintf("its latency is judged from %s into the stage (the warm-up)", a.plan.WarmupTime()))
		}
	}
	if !fixed {
		missing = append(missing, fmt.Sprintf("latency thresholds not fixed yet (%s of %d stable requests this stage)",
			num(int64(st.pending.Count())), minThresholdSample))
		wait.notes = append(wait.notes, fmt.Sprintf("%s's latency thresholds are fixed after %s more of its requests", n.stable(), num(minThresholdSample-int64(st.pending.Count()))))
	} else {
		for i, quant := range cfg.quantiles {
			name := quantileName(quant)
			le := q.latPromotion[i].Evidence()
			la := q.latAllowance[i].Evidence()
			lm := lat[name].(map[string]any)
			lm["promotion"], lm["allowance"] = marginEvidence(le), niEvidence(la)
			c := le.Counts
			text := fmt.Sprintf("%s slower than %s vs stable %s slower than %s (its %s)", pct(rate(c.CanaryBad, c.CanaryRequests)), fmtDur(st.canary[i]),
				pct(rate(c.StableBad, c.StableRequests)), fmtDur(st.stable[i]), name)
			if le.Shown || la.Verdict == stats.Promote {
				shown = append(shown, text)
			} else {
				missing = append(missing, fmt.Sprintf("share of slow requests at most the stable's (or %s points above it): %s%s", flt(cfg.latAllowance*100), text, warmup))
				if st.warm {
					wait.addQuantile(name, le)
				}
			}
		}
	}
	if len(missing) > 0 {
		gr.Verdict, gr.Reason = Inconclusive, noRegression+"; not yet shown "+within+": "+strings.Join(missing, "; ")
		gr.Summary = Waiting + wait.text(n) + " (" + n.stageErrors(w) + ")"
		if wait.more > 0 {
			gr.Evidence["more_canary_requests"] = wait.more
		}
		return gr
	}
	gr.Verdict = Pass
	gr.Reason = fmt.Sprintf("canary shown %s: %s; %s", within, strings.Join(shown, "; "), noRegression)
	gr.Summary = fmt.Sprintf("%s is shown within %s× of %s's error rate and no slower at %s (%s)",
		n.canary(), flt(st.margin), n.stable(), andList(quantileNames(cfg.quantiles)), n.stageErrors(w))
	return gr
}

func quantileNames(qs []float64) []string {
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i] = quantileName(q)
	}
	return out
}

// waitList is what a waiting sequential gate still has to show: the
// metrics whose promotion evidence grows at a pace that tells how many more
// canary requests they need (the most of them: more), those too early to
// tell, and notes (warm-up, thresholds).
type waitList struct {
	known, unknown   []string
	knownQ, unknownQ []string // latency quantiles, listed together
	more             int64
	notes            []string
}

func (l *waitList) add(what string, e stats.MarginEvidence) {
	if k, ok := moreRequests(e.LogStatistic, e.Threshold, e.Counts.CanaryRequests); ok {
		l.known, l.more = append(l.known, what), max(l.more, k)
	} else {
		l.unknown = append(l.unknown, what)
	}
}

func (l *waitList) addQuantile(name string, e stats.MarginEvidence) {
	if k, ok := moreRequests(e.LogStatistic, e.Threshold, e.Counts.CanaryRequests); ok {
		l.knownQ, l.more = append(l.knownQ, name), max(l.more, k)
	} else {
		l.unknownQ = append(l.unknownQ, name)
	}
}

// text: "needs about 2,400 more green requests to show green within 1.75×
// of blue's error rate; and more to show it no slower than blue at p99.9
// (too early to tell how many)".
func (l *waitList) text(n Names) string {
	slower := func(qs []string) []string {
		if len(qs) == 0 {
			return nil
		}
		return []string{"no slower than " + n.stable() + " at " + andList(qs)}
	}
	known, unknown := append(l.known, slower(l.knownQ)...), append(l.unknown, slower(l.unknownQ)...)
	var parts []string
	if len(known) > 0 {
		if l.more > 0 {
			parts = append(parts, fmt.Sprintf("needs %s more %s requests to show %s %s", about(l.more), n.canary(), n.canary(), andList(known)))
		} else {
			parts = append(parts, fmt.Sprintf("about to show %s %s", n.canary(), andList(known)))
		}
	}
	if len(unknown) > 0 {
		lead := "needs more " + n.canary() + " requests"
		if len(parts) > 0 {
			lead = "and more"
		}
		parts = append(parts, fmt.Sprintf("%s to show %s %s (too early to tell how many, or %s is worse than that)", lead, n.canary(), andList(unknown), n.canary()))
	}
	return strings.Join(append(parts, l.notes...), "; ")
}

func rejectText(e stats.Evidence, maxLog float64) string {
	return fmt.Sprintf("sequential test statistic %s ≥ threshold %s (alpha %s)", stat(math.Exp(maxLog)), stat(e.Threshold), flt(e.Alpha))
}

// thresholdText names the thresholds of quantile i: " (canary above 24 ms,
// stable above 20 ms)".
func thresholdText(st *stage, i int) string {
	if st == nil || st.stable == nil {
		return ""
	}
	return fmt.Sprintf(" plus the tolerance (canary above %s, stable above %s this stage)", fmtDur(st.canary[i]), fmtDur(st.stable[i]))
}

func seqEvidence(e stats.Evidence, maxLog float64) map[string]any {
	c := e.Counts
	return countsEvidence(c, map[string]any{
		// No rates of the totals: they pool stages of different weights.
		"observed_canary_bad": e.Observed,
		"expected_canary_bad": e.Expected,
		"slices":              e.Slices,
		"statistic":           finite(e.Statistic),
		"log_statistic":       e.LogStatistic,
		"max_statistic":       finite(math.Exp(maxLog)),
		"threshold":           e.Threshold,
		"alpha":               e.Alpha,
		"p_value":             e.PValue,
		"decision":            e.Decision.String(),
	})
}

// countsEvidence is a test's counts as evidence, with the fields in more.
func countsEvidence(c stats.Counts, more map[string]any) map[string]any {
	more["canary_requests"], more["canary_bad"] = c.CanaryRequests, c.CanaryBad
	more["stable_requests"], more["stable_bad"] = c.StableRequests, c.StableBad
	return more
}

func niEvidence(e stats.NonInferiorityEvidence) map[string]any {
	return countsEvidence(e.Counts, map[string]any{
		"canary_upper":    e.CanaryUpper,
		"stable_lower":    e.StableLower,
		"allowed":         e.Allowed,
		"relative_margin": e.RelativeMargin,
		"absolute_margin": e.AbsoluteMargin,
		"alpha":           e.Alpha,
		"verdict":         e.Verdict.String(),
	})
}

func marginEvidence(e stats.MarginEvidence) map[string]any {
	return countsEvidence(e.Counts, map[string]any{
		"margin":        e.Margin,
		"log_statistic": e.LogStatistic,
		"threshold":     e.Threshold,
		"alpha":         e.Alpha,
		"p_value":       e.PValue,
		"shown":         e.Shown,
	})
}

// sampleRatioGate reports the stage's sample-ratio test.
func (a *Analyzer) sampleRatioGate() GateResult {
	gr := GateResult{Gate: "sample_ratio", Evidence: map[string]any{}}
	st := a.stage
	if st == nil {
		gr.Verdict, gr.Reason = Inconclusive, "no live stage started"
		gr.Summary = Waiting + "no live stage has started"
		return gr
	}
	gr.Evidence["weight_percent"] = st.weight.Float()
	if st.weight <= 0 || st.weight >= spec.Full {
		gr.Verdict, gr.Reason = Inconclusive, fmt.Sprintf("not checked at a weight of %s%%", st.weight)
		gr.Summary = gr.Reason
		return gr
	}
	e := st.srm.Evidence()
	c := e.Counts
	n := c.CanaryRequests + c.StableRequests
	measured := rate(c.CanaryRequests, n)
	gr.Evidence["canary_requests"] = c.CanaryRequests
	gr.Evidence["stable_requests"] = c.StableRequests
	gr.Evidence["measured_share"] = measured
	gr.Evidence["configured_share"] = st.weight.Fraction()
	gr.Evidence["statistic"] = finite(e.Statistic)
	gr.Evidence["log_statistic"] = e.LogStatistic
	gr.Evidence["threshold"] = e.Threshold
	gr.Evidence["alpha"] = e.Alpha
	gr.Evidence["p_value"] = e.PValue
	gr.Evidence["decision"] = e.Decision.String()
	share := fmt.Sprintf("canary served %s of %s split requests this stage, configured %s%%", pct(measured), num(n), st.weight)
	nm := a.names
	switch {
	case e.Decision == stats.Reject:
		gr.Verdict = Fail
		gr.Reason = "sample-ratio mismatch: " + share + ": " + rejectText(e, st.srm.State().MaxLogStatistic) + "; routing is broken, the canary is not judged"
		gr.Summary = fmt.Sprintf("%s served %s of requests this stage where its weight is %s%%: routing does not follow the split (a sticky key shared by many requests, a hand-made split, requests pinned by header?), so its numbers cannot be trusted",
			nm.canary(), pct(measured), st.weight)
	case n == 0:
		gr.Verdict, gr.Reason = Inconclusive, "no split requests this stage yet"
		gr.Summary = Waiting + "no requests this stage yet"
	default:
		gr.Verdict = Pass
		gr.Reason = fmt.Sprintf("no sample-ratio mismatch: %s (statistic %s < threshold %s)", share, stat(e.Statistic), stat(e.Threshold))
		gr.Summary = fmt.Sprintf("%s served %s of requests this stage, as its weight of %s%% says", nm.canary(), pct(measured), st.weight)
	}
	return gr
}

// errorRateGate checks the canary's split error rate against Max and
// MaxIncrease.
func (n Names) errorRateGate(g spec.Gate, w Window, minReq int) GateResult {
	gr := GateResult{Gate: string(spec.GateErrorRate), Evidence: map[string]any{}}
	cn, ce := w.Canary.SplitRequests(), w.Canary.SplitErrors
	sn, se := w.Stable.SplitRequests(), w.Stable.SplitErrors
	cr, sr := rate(int64(ce), int64(cn)), rate(int64(se), int64(sn))
	ev := gr.Evidence
	ev["canary_requests"], ev["canary_errors"], ev["canary_rate"] = cn, ce, cr
	ev["stable_requests"], ev["stable_errors"], ev["stable_rate"] = sn, se, sr
	ev["min_requests"] = minReq
	if g.Max > 0 {
		ev["max"] = g.Max
	}
	if g.MaxIncrease > 0 {
		ev["max_increase_pp"] = g.MaxIncrease
	}
	if cn < uint64(minReq) {
		gr.Verdict = Inconclusive
		gr.Reason = fmt.Sprintf("canary has %s of the %s split requests needed (error rate %s so far)", num(int64(cn)), num(int64(minReq)), pct(cr))
		gr.Summary = fmt.Sprintf("%sneeds %s more %s requests to judge its error rate (%s so far)", Waiting, num(int64(minReq)-int64(cn)), n.canary(), pct(cr))
		ev["more_canary_requests"] = int64(minReq) - int64(cn)
		return gr
	}
	head := fmt.Sprintf("canary error rate %s vs stable %s over %s vs %s requests", pct(cr), pct(sr), num(int64(cn)), num(int64(sn)))
	what := fmt.Sprintf("%s's error rate %s (%s's %s, over %s vs %s requests)", n.canary(), pct(cr), n.stable(), pct(sr), num(int64(cn)), num(int64(sn)))
	var fails, oks, waits []string
	if g.Max > 0 {
		if cr > g.Max {
			fails = append(fails, fmt.Sprintf("above the maximum %s", pct(g.Max)))
		} else {
			oks = append(oks, fmt.Sprintf("at most the maximum %s", pct(g.Max)))
		}
	}
	if g.MaxIncrease > 0 {
		if sn == 0 {
			waits = append(waits, "no stable requests to compare with")
		} else {
			inc := (cr - sr) * 100
			ev["increase_pp"] = inc
			if inc > g.MaxIncrease {
				fails = append(fails, fmt.Sprintf("%s points above the stable, more than the allowed %s", flt(inc), flt(g.MaxIncrease)))
			} else {
				oks = append(oks, fmt.Sprintf("%s points above the stable, at most the allowed %s", flt(inc), flt(g.MaxIncrease)))
			}
		}
	}
	return threshVerdict(gr, head, what, fails, oks, waits)
}

// threshVerdict is a threshold gate's verdict: its reason is head and the
// checks; its summary what was measured and the checks that decided.
func threshVerdict(gr GateResult, head, what string, fails, oks, waits []string) GateResult {
	switch {
	case len(fails) > 0:
		gr.Verdict, gr.Reason = Fail, head+": "+strings.Join(fails, "; ")
		gr.Summary = what + " is " + strings.Join(fails, " and ")
	case len(waits) > 0:
		gr.Verdict, gr.Reason = Inconclusive, head+": "+strings.Join(waits, "; ")
		gr.Summary = Waiting + what + ": " + strings.Join(waits, "; ")
	default:
		gr.Verdict, gr.Reason = Pass, head+": "+strings.Join(oks, "; ")
		gr.Summary = what + " is " + strings.Join(oks, " and ")
	}
	return gr
}

// quantileGate checks a latency or TTFB quantile against Max (ms) and
// MaxIncrease (percent over the stable's).
func (n Names) quantileGate(g spec.Gate, what string, canary, stable telemetry.Sketch, w Window, minReq int) GateResult {
	q := g.Quantile
	if q == 0 {
		q = spec.DefaultGateQuantile
	}
	name := what + " " + quantileName(q)
	gr := GateResult{Gate: name, Evidence: map[string]any{}}
	cn := w.Canary.SplitRequests()
	ev := gr.Evidence
	ev["quantile"] = q
	ev["canary_requests"], ev["stable_requests"] = cn, w.Stable.SplitRequests()
	ev["min_requests"] = minReq
	if g.Max > 0 {
		ev["max_ms"] = g.Max
	}
	if g.MaxIncrease > 0 {
		ev["max_increase_pct"] = g.MaxIncrease
	}
	if cn < uint64(minReq) || canary.Count() == 0 {
		gr.Verdict = Inconclusive
		gr.Reason = fmt.Sprintf("canary has %s of the %s split requests needed", num(int64(cn)), num(int64(minReq)))
		gr.Summary = fmt.Sprintf("%sneeds %s more %s requests to judge its %s", Waiting, num(max(int64(minReq)-int64(cn), 1)), n.canary(), name)
		ev["more_canary_requests"] = max(int64(minReq)-int64(cn), 1)
		return gr
	}
	cq := ms(canary.Quantile(q))
	ev["canary_ms"] = cq
	head := fmt.Sprintf("canary %s %s", name, fmtMS(cq))
	summary := fmt.Sprintf("%s's %s %s", n.canary(), name, fmtMS(cq))
	if stable.Count() > 0 {
		sq := ms(stable.Quantile(q))
		ev["stable_ms"] = sq
		head += fmt.Sprintf(" vs stable %s", fmtMS(sq))
		summary += fmt.Sprintf(" (%s's %s)", n.stable(), fmtMS(sq))
	}
	head += fmt.Sprintf(" over %s vs %s requests", num(int64(cn)), num(int64(w.Stable.SplitRequests())))
	var fails, oks, waits []string
	if g.Max > 0 {
		if cq > g.Max {
			fails = append(fails, fmt.Sprintf("above the maximum %s", fmtMS(g.Max)))
		} else {
			oks = append(oks, fmt.Sprintf("at most the maximum %s", fmtMS(g.Max)))
		}
	}
	if g.MaxIncrease > 0 {
		sq, ok := ev["stable_ms"].(float64)
		switch {
		case !ok || sq == 0:
			waits = append(waits, "no stable latency to compare with")
		default:
			inc := (cq/sq - 1) * 100
			ev["increase_pct"] = inc
			if inc > g.MaxIncrease {
				fails = append(fails, fmt.Sprintf("%s%% above the stable, more than the allowed %s%%", flt(inc), flt(g.MaxIncrease)))
			} else {
				oks = append(oks, fmt.Sprintf("%s%% above the stable, at most the allowed %s%%", flt(inc), flt(g.MaxIncrease)))
			}
		}
	}
	return threshVerdict(gr, head, summary, fails, oks, waits)
}

// matchRateGate is the match_rate gate of a live stage.
func (a *Analyzer) matchRateGate(g spec.Gate, c *ShadowCounts) GateResult {
	minCompared := spec.DefaultShadowMinCompare
	if s := a.plan.Shadow; s != nil && s.MinCompared > 0 {
		minCompared = s.MinCompared
	}
	if c == nil {
		why := "no shadow comparison runs during this stage (set the plan's shadow.keep_mirror)"
		return GateResult{Gate: string(spec.GateMatchRate), Verdict: Inconclusive, Evidence: map[string]any{"min": g.Min},
			Reason: why, Summary: Waiting + why + ": this gate cannot pass without one"}
	}
	return a.names.matchRate(string(spec.GateMatchRate), *c, g.Min, minCompared)
}

// EvaluateShadow judges a shadow phase from its comparison counts: fail when
// the match rate is clearly below MinMatchRate (the upper bound of its
// anytime-valid 95% confidence sequence is below it), pass when at least
// MinCompared copies were compared and the observed match rate is at least
// MinMatchRate, inconclusive otherwise. Zero fields of phase mean their
// defaults.
func EvaluateShadow(phase spec.ShadowPhase, c ShadowCounts, n Names) GateResult {
	minRate, minCompared := phase.MinMatchRate, phase.MinCompared
	if minRate == 0 {
		minRate = spec.DefaultShadowMatchRate
	}
	if minCompared <= 0 {
		minCompared = spec.DefaultShadowMinCompare
	}
	return n.matchRate("shadow", c, minRate, minCompared)
}

func (nm Names) matchRate(name string, c ShadowCounts, minRate float64, minCompared int) GateResult {
	gr := GateResult{Gate: name, Evidence: map[string]any{
		"compared": c.Compared, "matched": c.Matched, "errors": c.Errors,
		"min_match_rate": minRate, "min_compared": minCompared, "alpha": shadowAlpha,
	}}
	if c.Matched > c.Compared {
		gr.Verdict, gr.Reason = Inconclusive, fmt.Sprintf("inconsistent counts: %d matched of %d compared", c.Matched, c.Compared)
		return gr
	}
	n := c.Compared + c.Errors
	if n == 0 {
		gr.Verdict, gr.Reason = Inconclusive, "no shadow copies compared yet"
		gr.Summary = fmt.Sprintf("%sno copy of a request has been compared yet: needs %s compared copies", Waiting, num(int64(minCompared)))
		return gr
	}
	r := float64(c.Matched) / float64(n)
	// The confidence sequence of the mismatch rate: its prior favours small
	// rates, which is where a healthy shadow's mismatches are.
	misLo, misHi := stats.BinomialConfidenceSequence(int64(n-c.Matched), int64(n), shadowAlpha, stats.DefaultPriorA, stats.DefaultPriorB)
	lo, hi := 1-misHi, 1-misLo
	gr.Evidence["match_rate"], gr.Evidence["lower"], gr.Evidence["upper"] = r, lo, hi
	head := fmt.Sprintf("match rate %s over %s compared copies (%s matched, %s errors; 95%% anytime interval %s–%s)",
		pct(r), num(int64(n)), num(int64(c.Matched)), num(int64(c.Errors)), pct(lo), pct(hi))
	agree := fmt.Sprintf("%s answered like %s on %s of %s compared requests", nm.canary(), nm.stable(), pct(r), num(int64(n)))
	switch {
	case hi < minRate:
		gr.Verdict, gr.Reason = Fail, head+": clearly below the minimum "+pct(minRate)
		gr.Summary = fmt.Sprintf("%s: clearly below the %s required", agree, pct(minRate))
	case n >= uint64(minCompared) && r >= minRate:
		gr.Verdict, gr.Reason = Pass, head+": at least the minimum "+pct(minRate)
		gr.Summary = fmt.Sprintf("%s: at least the %s required", agree, pct(minRate))
	case n < uint64(minCompared):
		gr.Verdict, gr.Reason = Inconclusive, fmt.Sprintf("%s: %s of the %s compared copies needed", head, num(int64(n)), num(int64(minCompared)))
		gr.Summary = fmt.Sprintf("%sneeds %s more compared requests (%s so far)", Waiting, num(int64(minCompared)-int64(n)), agree)
	default:
		gr.Verdict, gr.Reason = Inconclusive, head+": below the minimum "+pct(minRate)+" but not clearly"
		gr.Summary = fmt.Sprintf("%s%s: below the %s required, not yet clearly; more comparisons decide", Waiting, agree, pct(minRate))
	}
	return gr
}

func rate(bad, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(bad) / float64(n)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantileName is "p99" for 0.99, "p99.9" for 0.999, "p50" for 0.5.
func quantileName(q float64) string {
	return "p" + strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.4f", q*100), "0"), ".")
}

// pct formats a fraction as a percent: "9.8%", "0.25%".
func pct(x float64) string {
	p := x * 100
	switch {
	case p == 0:
		return "0%"
	case math.Abs(p) >= 0.95:
		return fmt.Sprintf("%.1f%%", p)
	default:
		return fmt.Sprintf("%.2g%%", p)
	}
}

// flt formats a number with up to 3 significant digits.
func flt(x float64) string { return fmt.Sprintf("%.3g", x) }

// stat formats a test statistic: "41.2", "3.1e+12".
func stat(x float64) string {
	if math.IsInf(x, 1) {
		return "> 1.8e+308"
	}
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2g", x)
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.3g", x)
}

func fmtMS(v float64) string { return fmt.Sprintf("%.3g ms", v) }

func fmtDur(d time.Duration) string { return fmtMS(ms(d)) }

// num formats an integer with thousands separators: 4,030.
func num(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
