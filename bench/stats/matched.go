package main

// Comparison at matched false rollback rate (issue 3): for each baseline, measure its
// A/A false rollback rate (FRR) in every A/A scenario over the same 60-minute horizon,
// set modelgate's rollout alpha to the lowest of them (capped at maxMatchedAlpha), run
// modelgate's default configuration (errors and latency, alpha split between them) at
// that alpha on the same seeds (the same traffic), check that its measured FRR is no
// higher than the baseline's in every A/A scenario, and compare the median canary
// requests to roll back in every regression scenario.

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// maxMatchedAlpha caps the matched alpha. A baseline that rolls back identical
// versions in (nearly) every run would otherwise give alpha ≈ 1, a threshold 1/alpha
// ≈ 1 that the statistic reaches at once: a coin flip, not a test. Capping only
// lowers modelgate's alpha (fewer false rollbacks, slower detection), so it can only
// work against modelgate in the comparison.
const maxMatchedAlpha = 0.5

// matchedRow is one baseline with its matched modelgate alpha.
type matchedRow struct {
	baseline string
	frr      map[string]float64 // A/A scenario -> baseline's measured FRR
	minFRR   float64
	alpha    float64 // 0: not matchable (the baseline never false-rolled back in some A/A scenario)
	mgLabel  string
}

func isModelgate(method string) bool { return strings.HasPrefix(method, "modelgate") }

// baselineSpecs are the methodSpecs of the baselines (everything but modelgate).
func baselineSpecs() []methodSpec {
	var out []methodSpec
	for _, sp := range methodSpecs() {
		if !isModelgate(sp.label) {
			out = append(out, sp)
		}
	}
	return out
}

func fmtAlpha(a float64) string { return strconv.FormatFloat(a, 'g', 3, 64) }

func matchedLabel(alpha float64) string {
	return "modelgate (errors+latency, α=" + fmtAlpha(alpha) + ")"
}

// matchAlphas derives, from the baselines' results, the alpha modelgate runs at for
// each baseline: the baseline's lowest A/A FRR over the A/A scenarios, capped.
func matchAlphas(results []result) []matchedRow {
	var rows []matchedRow
	idx := map[string]int{}
	for _, r := range results {
		if isModelgate(r.method) || r.regression {
			continue
		}
		i, ok := idx[r.method]
		if !ok {
			i = len(rows)
			idx[r.method] = i
			rows = append(rows, matchedRow{baseline: r.method, frr: map[string]float64{}, minFRR: math.Inf(1)})
		}
		f := float64(r.rollbacks) / float64(r.runs)
		rows[i].frr[r.scenario] = f
		rows[i].minFRR = math.Min(rows[i].minFRR, f)
	}
	for i := range rows {
		if rows[i].minFRR > 0 {
			rows[i].alpha = math.Min(rows[i].minFRR, maxMatchedAlpha)
			rows[i].mgLabel = matchedLabel(rows[i].alpha)
		}
	}
	return rows
}

// matchedSpecs returns one rollback-only modelgate spec per distinct matched alpha.
func matchedSpecs(rows []matchedRow) []methodSpec {
	seen := map[float64]bool{}
	var specs []methodSpec
	for _, r := range rows {
		if r.alpha == 0 || seen[r.alpha] {
			continue
		}
		seen[r.alpha] = true
		cfg := config{alpha: r.alpha, errors: true, latency: true, rollbackOnly: true}
		specs = append(specs, methodSpec{matchedLabel(r.alpha), func(scenario) method { return newModelgate(cfg) }})
	}
	return specs
}

// matched runs modelgate at the alphas matched to the baselines in base (results of
// simulate on the same scenarios, runs and seed, so that the traffic is the same).
func matched(base []result, scs []scenario, runs int, seed uint64, workers int) ([]matchedRow, []result) {
	rows := matchAlphas(base)
	specs := matchedSpecs(rows)
	if len(specs) == 0 {
		return rows, nil
	}
	return rows, simulate(scs, specs, runs, seed, workers)
}

// censoredMedian is the median canary requests to roll back over all runs, counting a
// run that never rolled back as +Inf (so a method that misses half the regressions
// has an infinite median, not the median of its lucky runs).
func censoredMedian(r result) float64 {
	if r.runs == 0 {
		return math.NaN()
	}
	k := r.runs / 2 // same order statistic as quantile(·, 0.5)
	if k >= len(r.reqs) {
		return math.Inf(1)
	}
	s := append([]float64(nil), r.reqs...)
	sort.Float64s(s)
	return s[k]
}

func fmtMedian(v float64) string {
	if math.IsInf(v, 1) {
		return "never"
	}
	return fmtNum(v)
}

// matchedVerdict is the outcome of one baseline against modelgate at its matched alpha.
type matchedVerdict struct {
	row          matchedRow
	frrOK        bool               // modelgate's FRR ≤ baseline's in every A/A scenario
	mgFRR        map[string]float64 // A/A scenario -> modelgate's FRR
	base, mg     map[string]float64 // regression scenario -> censored median
	mgDetect     map[string]float64 // regression scenario -> modelgate's rollback rate
	wins, losses []string           // regression scenarios
}

func verdicts(base []result, rows []matchedRow, mg []result) []matchedVerdict {
	find := func(rs []result, method, scen string) (result, bool) {
		for _, r := range rs {
			if r.method == method && r.scenario == scen {
				return r, true
			}
		}
		return result{}, false
	}
	var out []matchedVerdict
	for _, row := range rows {
		v := matchedVerdict{row: row, frrOK: row.alpha > 0, mgFRR: map[string]float64{},
			base: map[string]float64{}, mg: map[string]float64{}, mgDetect: map[string]float64{}}
		for _, b := range base {
			if b.method != row.baseline {
				continue
			}
			m, ok := find(mg, row.mgLabel, b.scenario)
			if !ok {
				v.frrOK = false
				continue
			}
			if !b.regression {
				f := float64(m.rollbacks) / float64(m.runs)
				v.mgFRR[b.scenario] = f
				if f > row.frr[b.scenario] {
					v.frrOK = false
				}
				continue
			}
			bm, mm := censoredMedian(b), censoredMedian(m)
			v.base[b.scenario], v.mg[b.scenario] = bm, mm
			v.mgDetect[b.scenario] = float64(m.rollbacks) / float64(m.runs)
			if mm < bm {
				v.wins = append(v.wins, b.scenario)
			} else {
				v.losses = append(v.losses, b.scenario)
			}
		}
		out = append(out, v)
	}
	return out
}

func scenarioID(name string) string { return strings.SplitN(name, " ", 2)[0] }

func reportMatched(w io.Writer, base []result, rows []matchedRow, mg []result) {
	var aa, regs []string
	seen := map[string]bool{}
	for _, r := range base {
		if seen[r.scenario] {
			continue
		}
		seen[r.scenario] = true
		if r.regression {
			regs = append(regs, r.scenario)
		} else {
			aa = append(aa, r.scenario)
		}
	}
	fmt.Fprintln(w, "Comparison at matched false rollback rate: modelgate (errors+latency, the default) with its")
	fmt.Fprintf(w, "rollout α set to the baseline's lowest A/A false rollback rate (capped at %s), same seeds.\n\n", fmtAlpha(maxMatchedAlpha))
	if len(aa) == 0 {
		fmt.Fprintln(w, "(no A/A scenario selected: nothing to match)")
		return
	}
	vs := verdicts(base, rows, mg)

	// False rollback rates, baseline / modelgate, per A/A scenario.
	ids := make([]string, len(aa))
	for i, s := range aa {
		ids[i] = scenarioID(s)
	}
	fmt.Fprintf(w, "| baseline | matched α | A/A false rollback, baseline / modelgate: %s | modelgate ≤ baseline in every A/A |\n", strings.Join(ids, " | "))
	fmt.Fprintf(w, "|---|---|%s---|\n", strings.Repeat("---|", len(aa)))
	for _, v := range vs {
		cells := make([]string, len(aa))
		for i, s := range aa {
			if v.row.alpha == 0 {
				cells[i] = fmt.Sprintf("%.3f / –", v.row.frr[s])
				continue
			}
			cells[i] = fmt.Sprintf("%.3f / %.3f", v.row.frr[s], v.mgFRR[s])
		}
		alpha, ok := "not matchable", "–"
		if v.row.alpha > 0 {
			alpha = fmtAlpha(v.row.alpha)
			ok = "yes"
			if !v.frrOK {
				ok = "**NO**"
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", v.row.baseline, alpha, strings.Join(cells, " | "), ok)
	}
	fmt.Fprintln(w)

	// Median canary requests to roll back, baseline / modelgate, per regression scenario.
	ids = make([]string, len(regs))
	for i, s := range regs {
		ids[i] = scenarioID(s)
	}
	fmt.Fprintf(w, "| baseline | matched α | median canary req. to roll back, baseline / modelgate: %s | verdict |\n", strings.Join(ids, " | "))
	fmt.Fprintf(w, "|---|---|%s---|\n", strings.Repeat("---|", len(regs)))
	for _, v := range vs {
		if v.row.alpha == 0 {
			fmt.Fprintf(w, "| %s | not matchable |%s –|\n", v.row.baseline, strings.Repeat(" – |", len(regs)))
			continue
		}
		cells := make([]string, len(regs))
		for i, s := range regs {
			cells[i] = fmt.Sprintf("%s / %s", fmtMedian(v.base[s]), fmtMedian(v.mg[s]))
			if v.mgDetect[s] < 1 {
				cells[i] += fmt.Sprintf(" (modelgate rolled back %.3f)", v.mgDetect[s])
			}
		}
		verdict := fmt.Sprintf("modelgate faster in %d/%d", len(v.wins), len(regs))
		if len(v.losses) > 0 {
			lost := make([]string, len(v.losses))
			for i, s := range v.losses {
				lost[i] = scenarioID(s)
			}
			verdict += "; **not faster: " + strings.Join(lost, ", ") + "**"
		}
		if !v.frrOK {
			verdict += "; **FRR not matched**"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", v.row.baseline, fmtAlpha(v.row.alpha), strings.Join(cells, " | "), verdict)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Medians count runs that never rolled back as infinite (\"never\").")
}
