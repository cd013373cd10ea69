// Command stats is modelgate's canary-analysis simulator (issue 3): it runs seeded
// rollouts, feeds the same telemetry to modelgate's sequential analysis and to
// Argo-, Flagger- and Kayenta-style rules, and prints per scenario the rollback rate
// with a 95% Clopper-Pearson interval, the canary requests and wall time to rollback
// (median, p90), the bad responses served to users before rollback, and for
// modelgate the promotion rate and canary requests to promotion.
//
// Usage:
//
//	go run ./bench/stats                  # 1,000 runs per scenario, markdown tables
//	go run ./bench/stats -runs 200 -only E1,A1
//	go run ./bench/stats -matched=false   # only the default-configuration tables
//
// After the default-configuration tables it prints the comparison at matched false
// rollback rate: for each baseline, modelgate runs with its rollout alpha set to the
// baseline's lowest measured A/A false rollback rate (capped at 0.5) on the same
// seeds, and the tables show both false rollback rates per A/A scenario and both
// median canary requests to roll back per regression scenario (see matched.go).
//
// `go test ./bench/stats` runs a reduced version.
//
// # The rollouts suite
//
// `-suite rollouts` runs whole rollouts through the real code path instead (issue
// 16, item 6; rollouts.go, rollouts_scenarios.go): per run a real control.Service on
// a bbolt state file under /dev/shm, a real telemetry.Registry and the real
// rollout.Controller with the default plan, driven on a fake clock (requests recorded
// into the deployments' Recorders every simulated second, then Controller.Look). It
// prints per scenario the promotion, rollback, stall, sample-ratio-halt and
// still-running rates with 95% Clopper-Pearson intervals, the redesign's targets and
// the cost; runs run in parallel, each with its own store, registry and controller.
//
//	go run ./bench/stats -suite rollouts                  # 500 runs per scenario (1,000 for R6, R11, R12)
//	go run ./bench/stats -suite rollouts -runs 50 -only R6,margin -o json
//
// # The jump suite
//
// `-suite jump` (jump.go) measures how fast the real controller rolls back a canary
// whose errors jump from 1% to 10% after 5 healthy minutes at 5% of 2,000 requests/s:
// requests one by one on a fake clock, the controller looked at as Run would (every
// 10 canary requests, at most every 5 ms, and every second), 200 runs by default.
//
//	go run ./bench/stats -suite jump                      # 200 runs, 2 workers on 2 CPUs
//	go run ./bench/stats -suite jump -runs 50 -workers 1 -o json
//
// # The estimate suite
//
// `-suite estimate` (estimate.go) checks internal/estimate, the time-to-decide
// estimate a user gets before a rollout, against the real controller: an identical
// canary at 200 and 2,000 requests/s (and 2, for the deadline warnings), 200 harness
// rollouts per rate, each stage's median time and the median time to 100% against
// the estimates made from the stable's last minute (target: within a factor 2).
//
//	go run ./bench/stats -suite estimate                  # 200 runs per rate, 2 workers
//	go run ./bench/stats -suite estimate -runs 50 -o json
//
// `-suite peers` (the default) is the simulator described above; -matched applies to
// it only. `go test ./bench/stats` also runs a reduced rollouts suite
// (rollouts_test.go).
package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"sync"
)

func scenarios() []scenario {
	base := scenario{minutes: 60, rate: 100, weights: []float64{0.05}, pStable: 0.01, pCanary: 0.01}
	with := func(name string, f func(*scenario)) scenario {
		s := base
		s.name = name
		f(&s)
		return s
	}
	return []scenario{
		with("E1 errors 1%→2%", func(s *scenario) { s.pCanary, s.regression = 0.02, true }),
		with("E2 errors 1%→5%", func(s *scenario) { s.pCanary, s.regression = 0.05, true }),
		with("E3 errors 1%→10%", func(s *scenario) { s.pCanary, s.regression = 0.10, true }),
		with("L2 p99 +20% (tail only)", func(s *scenario) { s.tailOnly, s.regression = 1.2, true }),
		with("A1 A/A steady", func(*scenario) {}),
		with("A2 A/A daily swings", func(s *scenario) { s.diurnal = true }),
		with("A3 A/A shared incident", func(s *scenario) { s.incident = true }),
		with("A4 A/A weights 1→5→25→50%", func(s *scenario) { s.weights = []float64{0.01, 0.05, 0.25, 0.5} }),
		with("A5 A/A zero-error stable", func(s *scenario) { s.pStable, s.pCanary = 0, 0 }),
	}
}

// methodSpec builds a fresh method per run.
type methodSpec struct {
	label string
	make  func(s scenario) method
}

func methodSpecs() []methodSpec {
	def := config{alpha: 0.05, errors: true, latency: true}
	errOnly := config{alpha: 0.05, errors: true}
	return []methodSpec{
		{"modelgate (errors+latency, α=0.05)", func(scenario) method { return newModelgate(def) }},
		{"modelgate (errors only, α=0.05)", func(scenario) method { return newModelgate(errOnly) }},
		{"argo failureLimit=0", func(scenario) method { return &argo{limit: 0, errors: true, lat: true} }},
		{"argo failureLimit=2", func(scenario) method { return &argo{limit: 2, errors: true, lat: true} }},
		{"argo failureLimit=4", func(scenario) method { return &argo{limit: 4, errors: true, lat: true} }},
		{"flagger threshold=5", func(scenario) method {
			return &flagger{threshold: 5, errors: true, lat: true, maxP99: 1.2 * stableQuantile(0.99)}
		}},
		{"kayenta 98% MW per minute", func(scenario) method { return &kayenta{errors: true, lat: true} }},
	}
}

// result aggregates the outcomes of one method on one scenario.
type result struct {
	scenario, method string
	regression       bool
	runs, rollbacks  int
	lo, hi           float64 // Clopper-Pearson 95% interval of the rollback rate
	reqs, secs, bad  []float64
	halts            int
	promoted         int
	promoted3000     int
	promoteReqs      []float64
}

func simulate(scs []scenario, specs []methodSpec, runs int, seed uint64, workers int) []result {
	var results []result
	for si, s := range scs {
		outs := make([][]outcome, runs)
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for r := range next {
					ms := make([]method, len(specs))
					for i, sp := range specs {
						ms[i] = sp.make(s)
					}
					outs[r] = run(s, seed+uint64(si)*1_000_003+uint64(r), ms)
				}
			}()
		}
		for r := range runs {
			next <- r
		}
		close(next)
		wg.Wait()
		for i, sp := range specs {
			res := result{scenario: s.name, method: sp.label, regression: s.regression, runs: runs}
			for _, o := range outs {
				o := o[i]
				if o.halted {
					res.halts++
				}
				if o.promoted && (!o.rolledBack || o.promoteSeconds < o.seconds) {
					res.promoted++
					res.promoteReqs = append(res.promoteReqs, float64(o.promoteReqs))
					if o.promoteReqs <= 3000 {
						res.promoted3000++
					}
				}
				if o.rolledBack {
					res.rollbacks++
					res.reqs = append(res.reqs, float64(o.canaryReqs))
					res.secs = append(res.secs, float64(o.seconds))
					res.bad = append(res.bad, float64(o.badServed))
				}
			}
			res.lo, res.hi = clopperPearson(res.rollbacks, runs)
			results = append(results, res)
		}
	}
	return results
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[int(math.Min(float64(len(s)-1), math.Floor(q*float64(len(s)))))]
}

func fmtNum(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtMin(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.1f", v/60)
}

func report(w io.Writer, results []result, runs int) {
	fmt.Fprintf(w, "%d runs per scenario; 100 rps, 5%% canary unless stated, 60-minute horizon.\n\n", runs)
	fmt.Fprintln(w, "| scenario | method | rollback rate [95% CI] | canary req. to rollback median / p90 | minutes median / p90 | bad responses served median | promoted (≤3,000 canary req.) | SRM halts |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		prom := "–"
		if strings.HasPrefix(r.method, "modelgate") {
			prom = fmt.Sprintf("%.3f (%.3f), median %s", float64(r.promoted)/float64(r.runs), float64(r.promoted3000)/float64(r.runs), fmtNum(quantile(r.promoteReqs, 0.5)))
		}
		halts := "–"
		if strings.HasPrefix(r.method, "modelgate") {
			halts = fmt.Sprint(r.halts)
		}
		fmt.Fprintf(w, "| %s | %s | %.3f [%.3f, %.3f] | %s / %s | %s / %s | %s | %s | %s |\n",
			r.scenario, r.method, float64(r.rollbacks)/float64(r.runs), r.lo, r.hi,
			fmtNum(quantile(r.reqs, 0.5)), fmtNum(quantile(r.reqs, 0.9)),
			fmtMin(quantile(r.secs, 0.5)), fmtMin(quantile(r.secs, 0.9)),
			fmtNum(quantile(r.bad, 0.5)), prom, halts)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Comparison: worst A/A false rollback rate, and median canary requests to roll back per regression scenario.")
	fmt.Fprintln(w)
	worst := map[string]float64{}
	var order []string
	med := map[string]map[string]float64{}
	var regs []string
	for _, r := range results {
		if _, ok := med[r.method]; !ok {
			med[r.method] = map[string]float64{}
			order = append(order, r.method)
		}
		rate := float64(r.rollbacks) / float64(r.runs)
		if !r.regression {
			worst[r.method] = math.Max(worst[r.method], rate)
		} else {
			med[r.method][r.scenario] = quantile(r.reqs, 0.5)
			if len(regs) == 0 || regs[len(regs)-1] != r.scenario {
				regs = append(regs, r.scenario)
			}
		}
	}
	fmt.Fprintf(w, "| method | worst A/A false rollback | %s |\n", strings.Join(regs, " | "))
	fmt.Fprintf(w, "|---|---|%s\n", strings.Repeat("---|", len(regs)))
	for _, m := range order {
		cells := make([]string, len(regs))
		for i, s := range regs {
			v, ok := med[m][s]
			if !ok || math.IsNaN(v) {
				cells[i] = "never"
			} else {
				cells[i] = fmtNum(v)
			}
		}
		fmt.Fprintf(w, "| %s | %.3f | %s |\n", m, worst[m], strings.Join(cells, " | "))
	}
}

func main() {
	runs := flag.Int("runs", 1000, "runs per scenario (rollouts suite: default 500, 1,000 for R6, R11 and R12)")
	seed := flag.Uint64("seed", 1, "base seed")
	only := flag.String("only", "", "comma-separated scenario id prefixes (e.g. E1,A1; rollouts suite: ids or slugs, e.g. R6,margin); empty: all")
	withMatched := flag.Bool("matched", true, "also compare with each baseline at matched false rollback rate (peers suite)")
	suite := flag.String("suite", "peers", "peers: the statistics simulator against Argo, Flagger, Kayenta; rollouts: whole rollouts through the real controller; jump: time to roll back an error jump at 2,000 req/s; estimate: time-to-decide estimates against the real controller")
	format := flag.String("o", "markdown", "rollouts, jump and estimate suites' output: markdown or json")
	workers := flag.Int("workers", 0, "jump suite: runs in parallel (0: GOMAXPROCS); estimate suite: (0: 2)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	switch *suite {
	case "rollouts":
		n := 0 // each scenario's default
		flag.Visit(func(f *flag.Flag) {
			if f.Name == "runs" {
				n = *runs
			}
		})
		if err := mainRollouts(os.Stdout, os.Stderr, *only, n, *seed, runtime.GOMAXPROCS(0), *format); err != nil {
			pprof.StopCPUProfile()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	case "jump":
		n := 200
		flag.Visit(func(f *flag.Flag) {
			if f.Name == "runs" {
				n = *runs
			}
		})
		w := *workers
		if w <= 0 {
			w = runtime.GOMAXPROCS(0)
		}
		if err := mainJump(os.Stdout, os.Stderr, n, *seed, w, *format); err != nil {
			pprof.StopCPUProfile()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	case "estimate":
		n := 0 // estimateRuns
		flag.Visit(func(f *flag.Flag) {
			if f.Name == "runs" {
				n = *runs
			}
		})
		w := *workers
		if w <= 0 {
			w = 2
		}
		if err := mainEstimate(os.Stdout, os.Stderr, n, *seed, w, *format); err != nil {
			pprof.StopCPUProfile()
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	case "peers":
	default:
		fmt.Fprintf(os.Stderr, "unknown suite %q: peers, rollouts, jump or estimate\n", *suite)
		os.Exit(2)
	}
	var scs []scenario
	for _, s := range scenarios() {
		if *only == "" {
			scs = append(scs, s)
			continue
		}
		for _, id := range strings.Split(*only, ",") {
			if strings.HasPrefix(s.name, id+" ") {
				scs = append(scs, s)
			}
		}
	}
	results := simulate(scs, methodSpecs(), *runs, *seed, runtime.NumCPU())
	report(os.Stdout, results, *runs)
	if *withMatched {
		fmt.Println()
		rows, mg := matched(results, scs, *runs, *seed, runtime.NumCPU())
		reportMatched(os.Stdout, results, rows, mg)
	}
}

// clopperPearson returns the exact 95% interval for k successes in n trials.
func clopperPearson(k, n int) (lo, hi float64) {
	const a = 0.025
	if k > 0 {
		lo = bisectP(func(p float64) bool { return binomUpperTail(k, n, p) < a }, true)
	}
	hi = 1
	if k < n {
		hi = bisectP(func(p float64) bool { return binomCDF(k, n, p) > a }, true)
	}
	return lo, hi
}

// bisectP finds the boundary in [0, 1] where pred switches from true to false.
func bisectP(pred func(float64) bool, _ bool) float64 {
	lo, hi := 0.0, 1.0
	for range 60 {
		m := (lo + hi) / 2
		if pred(m) {
			lo = m
		} else {
			hi = m
		}
	}
	return lo
}

func logBinomPMF(k, n int, p float64) float64 {
	a, _ := math.Lgamma(float64(n + 1))
	b, _ := math.Lgamma(float64(k + 1))
	c, _ := math.Lgamma(float64(n - k + 1))
	return a - b - c + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
}

func binomCDF(k, n int, p float64) float64 {
	var s float64
	for i := 0; i <= k; i++ {
		s += math.Exp(logBinomPMF(i, n, p))
	}
	return s
}

func binomUpperTail(k, n int, p float64) float64 {
	var s float64
	for i := k; i <= n; i++ {
		s += math.Exp(logBinomPMF(i, n, p))
	}
	return s
}
