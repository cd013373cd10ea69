package main

// The estimate suite (issue 17, item 2): does internal/estimate, which tells a user
// before a rollout how long each stage will take, agree with the real controller?
// For an identical canary at 200 and 2,000 requests/s, at 20 requests/s with a plan
// bounded by canary requests, and at 2 requests/s (where every stage should be
// flagged), it runs whole rollouts through the rollouts
// suite's harness (runRollout: real controller, control service, bbolt store,
// telemetry, fake clock), takes each stage's median time and the median time to
// 100%, and compares them with the estimates made from the same traffic: the stable's
// last minute before the start, recorded the way the harness records it (its latency
// model, its error rate, a real telemetry.Recorder read as the controller reads it),
// for several such minutes, since the estimate depends on the minute it is given.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/modelgate/modelgate/internal/estimate"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Defaults of the estimate suite.
const (
	// estimateRuns is the number of harness rollouts per scenario.
	estimateRuns = 200
	// estimateMinutes is the number of warm-up minutes (each a separate draw of the
	// stable's traffic) the estimator is given per scenario.
	estimateMinutes = 9
	// estimateFactor is the target: every estimate within this factor of the
	// harness' median.
	estimateFactor = 2.0
)

// estimateScenarios are the suite's settings: R1 (identical, 200 requests/s; the
// same runs as the rollouts suite's R1 for the same seed), the same at 2,000
// requests/s, at 20 requests/s with a plan bounded by canary requests (E2), and R2
// (2 requests/s) with a 15-minute horizon: every stage there is beyond its deadline,
// which only the warnings are checked on.
func estimateScenarios() []rolloutScenario {
	r1, err := selectRollouts("aa-steady")
	if err != nil {
		panic(err)
	}
	r2, err := selectRollouts("aa-2rps")
	if err != nil {
		panic(err)
	}
	fast := r1[0]
	fast.id, fast.slug, fast.name, fast.rate = "E1", "aa-2000rps", "identical, 2,000 req/s", 2000
	// At 20 requests/s a stage at 5% serves one canary request a second: stages
	// take longer than the default 10-minute deadline, so the plan bounds them
	// by canary requests instead (issue 17: a plan bounded by requests).
	byRequests := r1[0]
	byRequests.id, byRequests.slug, byRequests.name, byRequests.rate = "E2", "aa-20rps-requests", "identical, 20 req/s, deadline 20,000 canary requests", 20
	byRequests.plan = spec.Plan{ProgressDeadlineRequests: 20000}
	byRequests.horizon = 4 * time.Hour
	slow := r2[0]
	slow.horizon = 15 * time.Minute
	return []rolloutScenario{r1[0], fast, byRequests, slow}
}

// judgedStages is the number of the default plan's stages the controller runs: the
// pass of the last one before 100% promotes.
func judgedStages() int {
	p := spec.Plan{}.WithDefaults()
	n := len(p.Stages)
	if p.Stages[n-1].Weight >= spec.Full {
		n--
	}
	return n
}

// stageSeconds is how long run o spent in stage i (of judged), if it left it by
// advancing or promoting.
func stageSeconds(o rolloutOutcome, i, judged int) (float64, bool) {
	switch {
	case i+1 < len(o.StageSec):
		return float64(o.StageSec[i+1] - o.StageSec[i]), true
	case i == judged-1 && i < len(o.StageSec) && promoted(o):
		return float64(o.PromotedSec - o.StageSec[i]), true
	}
	return 0, false
}

// warmupTraffic is the estimator's input for scenario s: one minute of the stable
// alone, drawn as runRollout draws its warm-up (the scenario's rate, error rate and
// latency model, requests at uniform times in each second), recorded into a
// telemetry.Recorder and read as the controller reads the stable's last minute when
// a rollout starts. Minute k has its own seed.
func warmupTraffic(s rolloutScenario, seed uint64, k int) estimate.Traffic {
	h := fnv.New64a()
	h.Write([]byte("estimate/" + s.id))
	rng := rand.New(rand.NewPCG(seed^h.Sum64(), uint64(k)))
	w := newWorld(s, rng)
	rec := telemetry.NewRegistry().Recorder(rEndpoint, rStable)
	start := rEpoch
	for t := -60; t < 0; t++ {
		secStart := start.Add(time.Duration(t+60) * time.Second).UnixNano()
		ps, _ := w.errRates(t)
		for range poisson(rng, w.rate(t)) {
			status := 200
			if rng.Float64() < ps {
				status = 500
			}
			lat := w.latency(rng, t, false)
			rec.Begin()
			rec.Observe(telemetry.Observation{Now: secStart + rng.Int64N(int64(time.Second)), Status: status, Latency: lat, TTFB: lat})
		}
	}
	return estimate.FromSummary(rec.Window(start.Add(time.Minute), time.Minute))
}

// estimateRow compares one stage (or the total: Stage 0) of one scenario.
type estimateRow struct {
	Scenario string  `json:"scenario"`
	Rate     float64 `json:"requests_per_second"`
	Stage    int     `json:"stage"` // from 1; 0 is the total, to 100%
	Weight   float64 `json:"weight"`
	// The harness: runs, the runs that left the stage (promoted, for the total),
	// and the median and 10th and 90th percentiles over all runs, a run that did not
	// leave it counting as never (-1 in JSON).
	Runs    int     `json:"runs"`
	Decided int     `json:"decided_runs"`
	Median  float64 `json:"median_seconds"`
	P10     float64 `json:"p10_seconds"`
	P90     float64 `json:"p90_seconds"`
	// The estimates, one per warm-up minute: their median and range; Undecided
	// when the median estimate did not decide within the estimator's bound.
	Estimates    []float64 `json:"estimates_seconds"`
	Estimate     float64   `json:"estimate_seconds"`
	EstimateLow  float64   `json:"estimate_min_seconds"`
	EstimateHigh float64   `json:"estimate_max_seconds"`
	Undecided    bool      `json:"estimate_undecided,omitempty"`
	// Ratio is Estimate / Median (the target: within estimateFactor), with the
	// range over the minutes; MinutesWithin counts the minutes whose own estimate
	// is within the factor. Compared: the harness' and the estimates' medians are
	// both finite.
	Ratio         float64 `json:"ratio"`
	RatioLow      float64 `json:"ratio_min"`
	RatioHi       float64 `json:"ratio_max"`
	Within        bool    `json:"within_factor_2"`
	MinutesWithin int     `json:"minutes_within_factor_2"`
	Compared      bool    `json:"compared"`
	// Deadlines: the share of harness runs stalled at this stage's progress
	// deadline, and how many of the estimates warn that it will.
	Stalled  float64  `json:"stalled_share"`
	Warned   int      `json:"estimates_warning"`
	Warnings []string `json:"warnings,omitempty"` // the first estimate's
}

// estimateCost is what the suite spent.
type estimateCost struct {
	HarnessRuns     int     `json:"harness_runs"`
	Workers         int     `json:"workers"`
	WallSeconds     float64 `json:"wall_seconds"`
	Estimates       int     `json:"estimates"`
	EstimateMeanMS  float64 `json:"estimate_mean_ms"`
	EstimateMaxMS   float64 `json:"estimate_max_ms"`
	HarnessSimHours float64 `json:"sim_rollout_hours"`
}

// compareEstimates builds the rows of one scenario from its harness runs and its
// estimates.
func compareEstimates(res rolloutResult, ests []estimate.Estimate) []estimateRow {
	judged := judgedStages()
	plan := spec.Plan{}.WithDefaults()
	s := res.Scenario
	var rows []estimateRow
	for i := 0; i <= judged; i++ {
		row := estimateRow{Scenario: s.id + " " + s.name, Rate: s.rate, Stage: i + 1, Runs: res.n()}
		f := func(o rolloutOutcome) (float64, bool) { return stageSeconds(o, i, judged) }
		if i == judged { // the total: to 100%
			row.Stage = 0
			f = func(o rolloutOutcome) (float64, bool) { return float64(o.PromotedSec), promoted(o) }
		} else {
			row.Weight = plan.Stages[i].Weight.Float()
			row.Stalled = float64(res.count(func(o rolloutOutcome) bool { return o.StalledSec >= 0 && o.StallWeight == row.Weight })) / float64(max(res.n(), 1))
		}
		row.Decided = len(res.values(f))
		row.Median, row.P10, row.P90 = res.censored(0.5, f), res.censored(0.1, f), res.censored(0.9, f)
		for k, e := range ests {
			sp := e.Total
			if i < judged {
				sp = e.Stages[i].Time
				if e.Stages[i].Warning != "" {
					row.Warned++
				}
			}
			v := sp.Seconds
			if sp.Undecided {
				v = math.Inf(1)
			}
			row.Estimates = append(row.Estimates, v)
			if k == 0 && i == judged {
				row.Warnings = e.Warnings
			}
		}
		sorted := append([]float64(nil), row.Estimates...)
		sort.Float64s(sorted)
		if len(sorted) > 0 {
			row.Estimate, row.EstimateLow, row.EstimateHigh = sorted[len(sorted)/2], sorted[0], sorted[len(sorted)-1]
			row.Undecided = math.IsInf(row.Estimate, 1)
		}
		row.Compared = !math.IsInf(row.Median, 1) && !row.Undecided && len(sorted) > 0
		if row.Compared {
			row.Ratio, row.RatioLow, row.RatioHi = row.Estimate/row.Median, row.EstimateLow/row.Median, row.EstimateHigh/row.Median
			row.Within = within(row.Ratio)
			for _, v := range row.Estimates {
				if within(v / row.Median) {
					row.MinutesWithin++
				}
			}
		}
		rows = append(rows, row)
	}
	return rows
}

func within(ratio float64) bool { return ratio >= 1/estimateFactor && ratio <= estimateFactor }

// runEstimates runs the suite: runs harness rollouts per scenario on workers, and
// the estimator on minutes warm-up minutes per scenario. Each minute's estimate
// has its own seed (the first the default one): an estimate's runs are a few
// seeded rollouts, and with one seed for all the minutes would share its luck, so
// that their range would hide the estimator's own sampling error.
func runEstimates(ctx context.Context, scs []rolloutScenario, runs, minutes int, seed uint64, workers int, progress io.Writer) ([]estimateRow, estimateCost, error) {
	began := time.Now()
	n := make([]int, len(scs))
	for i := range n {
		n[i] = runs
	}
	results, err := runRollouts(ctx, scs, n, seed, workers, progress)
	if err != nil {
		return nil, estimateCost{}, err
	}
	cost := estimateCost{Workers: workers}
	var rows []estimateRow
	var walls []time.Duration
	for i, s := range scs {
		var ests []estimate.Estimate
		for k := range minutes {
			tr := warmupTraffic(s, seed, k)
			t0 := time.Now()
			e, err := estimate.Rollout(s.plan, tr, estimate.Options{Seed: estimate.DefaultSeed + uint64(k)})
			walls = append(walls, time.Since(t0))
			if err != nil {
				return nil, cost, fmt.Errorf("%s: estimate: %w", s.id, err)
			}
			ests = append(ests, e)
		}
		rows = append(rows, compareEstimates(results[i], ests)...)
		sum := results[i].summary()
		cost.HarnessRuns += sum.Runs
		cost.HarnessSimHours += sum.SimHours
	}
	cost.WallSeconds = time.Since(began).Seconds()
	cost.Estimates = len(walls)
	for _, w := range walls {
		cost.EstimateMeanMS += w.Seconds() * 1000 / float64(len(walls))
		cost.EstimateMaxMS = math.Max(cost.EstimateMaxMS, w.Seconds()*1000)
	}
	return rows, cost, nil
}

func estSec(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "never"
	case math.IsNaN(v):
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func estStageName(r estimateRow) string {
	if r.Stage == 0 {
		return "total (to 100%)"
	}
	return fmt.Sprintf("%d (%g%%)", r.Stage, r.Weight)
}

// reportEstimates prints the markdown tables.
func reportEstimates(w io.Writer, rows []estimateRow, runs, minutes int, cost estimateCost) {
	fmt.Fprintf(w, "Default plan, canary identical to the stable (1%% errors, lognormal latency, median 20 ms, σ 0.4). Harness: %d rollouts per rate through the\n", runs)
	fmt.Fprintln(w, "real controller (rollouts suite), seconds from the stage's start to the next (the last: to 100%); median and p10–p90 over all runs, a run that")
	fmt.Fprintf(w, "did not leave the stage counting as never. Estimate: internal/estimate (11 runs) from the stable's last minute before the start, for %d\n", minutes)
	fmt.Fprintln(w, "independent such minutes, each estimate with its own seed: the median of their estimates, and their range. Ratio: estimate / harness median")
	fmt.Fprintln(w, "(range over the minutes); the target is the ratio within a factor 2; \"minutes within ×2\" counts the single minutes' estimates within it.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | stage | harness runs that left it | harness median s (p10–p90) | estimate s (range) | ratio (range) | within ×2 | minutes within ×2 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		if r.Rate < 10 {
			continue // the deadline table's
		}
		ratio, within, minutes := "–", "–", "–"
		if r.Compared {
			ratio = fmt.Sprintf("%.2f (%.2f–%.2f)", r.Ratio, r.RatioLow, r.RatioHi)
			within = "no"
			if r.Within {
				within = "yes"
			}
			minutes = fmt.Sprintf("%d of %d", r.MinutesWithin, len(r.Estimates))
		}
		fmt.Fprintf(w, "| %s | %s | %d of %d | %s (%s–%s) | %s (%s–%s) | %s | %s | %s |\n", r.Scenario, estStageName(r), r.Decided, r.Runs,
			estSec(r.Median), estSec(r.P10), estSec(r.P90), estSec(r.Estimate), estSec(r.EstimateLow), estSec(r.EstimateHigh), ratio, within, minutes)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Progress deadlines (10 min): harness runs paused at the stage's deadline, and estimates that warn it will (of the minutes):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | stage | harness stalled there | estimates warning | estimate s (range) |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range rows {
		if r.Stage == 0 {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %.1f%% | %d of %d | %s (%s–%s) |\n", r.Scenario, estStageName(r), 100*r.Stalled, r.Warned, len(r.Estimates),
			estSec(r.Estimate), estSec(r.EstimateLow), estSec(r.EstimateHigh))
	}
	for _, r := range rows {
		if r.Stage == 0 && r.Rate < 10 && len(r.Warnings) > 0 {
			fmt.Fprintf(w, "\nThe estimator's warnings at %g requests/s (first minute):\n\n", r.Rate)
			for _, s := range r.Warnings {
				fmt.Fprintf(w, "- %s\n", s)
			}
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Cost: %d harness rollouts (%.1f simulated rollout-hours, warm-ups included) and %d estimates (mean %.0f ms, max %.0f ms each) in %s wall on %d workers.\n",
		cost.HarnessRuns, cost.HarnessSimHours, cost.Estimates, cost.EstimateMeanMS, cost.EstimateMaxMS, (time.Duration(cost.WallSeconds * float64(time.Second))).Round(time.Second), cost.Workers)
}

// estimateJSON is the -o json document.
type estimateJSON struct {
	Suite   string        `json:"suite"`
	Seed    uint64        `json:"seed"`
	Runs    int           `json:"runs"`
	Minutes int           `json:"minutes"`
	Rows    []estimateRow `json:"rows"`
	// Met: every compared row's ratio within a factor 2.
	Met  bool         `json:"met"`
	Cost estimateCost `json:"cost"`
}

// jsonSafeRow replaces +Inf ("never") by -1: JSON has none.
func jsonSafeRow(r estimateRow) estimateRow {
	fix := func(p *float64) {
		if math.IsInf(*p, 0) || math.IsNaN(*p) {
			*p = -1
		}
	}
	for _, p := range []*float64{&r.Median, &r.P10, &r.P90, &r.Estimate, &r.EstimateLow, &r.EstimateHigh, &r.Ratio, &r.RatioLow, &r.RatioHi} {
		fix(p)
	}
	r.Estimates = append([]float64(nil), r.Estimates...)
	for i := range r.Estimates {
		fix(&r.Estimates[i])
	}
	return r
}

// estimatesMet reports whether every compared row's ratio is within the factor.
func estimatesMet(rows []estimateRow) bool {
	for _, r := range rows {
		if r.Compared && !r.Within {
			return false
		}
	}
	return true
}

// mainEstimate is `go run ./bench/stats -suite estimate`.
func mainEstimate(w, progress io.Writer, runs int, seed uint64, workers int, format string) error {
	if runs <= 0 {
		runs = estimateRuns
	}
	if format != "json" && format != "" && format != "markdown" && format != "md" {
		return errors.New("unknown output format " + format + ": markdown or json")
	}
	rows, cost, err := runEstimates(context.Background(), estimateScenarios(), runs, estimateMinutes, seed, workers, progress)
	if err != nil {
		return err
	}
	if format == "json" {
		doc := estimateJSON{Suite: "estimate", Seed: seed, Runs: runs, Minutes: estimateMinutes, Met: estimatesMet(rows), Cost: cost}
		for _, r := range rows {
			doc.Rows = append(doc.Rows, jsonSafeRow(r))
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	reportEstimates(w, rows, runs, estimateMinutes, cost)
	met := "met"
	if !estimatesMet(rows) {
		met = "NOT met"
	}
	fmt.Fprintf(w, "\nTarget (the estimate within a factor 2 of the harness' median, every stage and the total, at 20 (a plan bounded by canary requests), 200 and 2,000 requests/s): %s.\n", met)
	return nil
}
