package main

// The jump suite: how fast the real rollout controller rolls back a canary whose
// error rate jumps after a long healthy run. Target: the stable at 1% errors, the
// canary at 5% of 2,000 requests/s jumps to 10% errors after 5 healthy minutes;
// time from the jump to the rollback median ≤ 1 s, p95 ≤ 3 s.
//
// Each run drives the real code path as runRollout does (a bbolt store under
// /dev/shm, control.Service, telemetry.Registry, rollout.Controller with the
// default LookEvery and MinLookGap, on a fake clock), but at the resolution of
// single requests: Poisson arrivals, each recorded at its own simulated instant,
// and the controller looked at as Controller.Run would, at the simulated instants
// it would: LookMoved as soon as a signal waits on Moved() and MinLookGap has
// passed since the last one, Look at every whole simulated second. The simulated
// decision time depends on the seed only; the wall time and the thread CPU time
// of each look are measured (the controller's cost per look, bbolt commit included
// when it writes; on a busy machine the wall time also holds the preemptions).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// jumpConfig is the setting of the jump suite.
type jumpConfig struct {
	rate    float64       // total requests/s, Poisson
	warmup  time.Duration // the stable alone before the start
	healthy time.Duration // from the start to the jump
	horizon time.Duration // a run not rolled back this long after the jump ends
	// error rates: the stable's, the canary's before and after the jump
	pStable, pBefore, pAfter float64
	// plan of the rollout: a long bake keeps it in the first stage (5%)
	bake time.Duration
}

func defaultJumpConfig() jumpConfig {
	return jumpConfig{rate: 2000, warmup: rWarmup, healthy: 5 * time.Minute, horizon: time.Minute,
		pStable: 0.01, pBefore: 0.01, pAfter: 0.10, bake: time.Hour}
}

// Targets of the jump suite, seconds from the jump to the rollback.
const (
	jumpTargetMedian = 1.0
	jumpTargetP95    = 3.0
)

// jumpOutcome is one run.
type jumpOutcome struct {
	// FalseAlarm: rolled back before the jump (the canary was healthy), at
	// FalseAlarmSec after the start.
	FalseAlarm    bool    `json:"false_alarm"`
	FalseAlarmSec float64 `json:"false_alarm_sec"`
	// RolledBack: rolled back after the jump, within the horizon; DecisionSec
	// is the simulated time from the jump to the look that rolled back,
	// DecisionWall that look's wall time (its bbolt commit included).
	RolledBack   bool          `json:"rolled_back"`
	DecisionSec  float64       `json:"decision_sec"`
	DecisionWall time.Duration `json:"decision_wall_ns"`
	DecidingLook string        `json:"deciding_look"` // "moved" or "tick"
	// Canary requests and errors served from the jump to the rollback (to the
	// horizon when there was none).
	CanaryAfterJump       int64 `json:"canary_after_jump"`
	CanaryErrorsAfterJump int64 `json:"canary_errors_after_jump"`
	// Phase and Reason of the rollout at the end of the run; Pauses counts
	// the looks that found it paused (none expected).
	Phase  string `json:"phase"`
	Reason string `json:"reason"`
	Pauses int    `json:"pauses"`
	// Looks during the rollout: LookMoved calls and ticker Look calls, over
	// RolloutSec simulated seconds; LookWall their wall times, LookCPU their
	// thread CPU times (empty where not measured).
	MovedLooks int             `json:"moved_looks"`
	TickLooks  int             `json:"tick_looks"`
	RolloutSec float64         `json:"rollout_sec"`
	LookWall   []time.Duration `json:"-"`
	LookCPU    []time.Duration `json:"-"`
	// DecisionCPU is the deciding look's thread CPU time.
	DecisionCPU time.Duration `json:"decision_cpu_ns"`
	Requests    int64         `json:"requests"` // all recorded, warm-up included
	Wall        time.Duration `json:"wall_ns"`
}

// jumpSeed is the deterministic seed of run.
func jumpSeed(base uint64, run int) (uint64, uint64) {
	h := fnv.New64a()
	h.Write([]byte("jump"))
	return base ^ h.Sum64(), uint64(run)
}

// runJump simulates one run in a state file under dir.
func runJump(ctx context.Context, cfg jumpConfig, seed uint64, run int, dir string) (out jumpOutcome, err error) {
	began := time.Now()
	defer func() { out.Wall = time.Since(began) }()
	// One thread for the run, so that the thread's CPU clock is the look's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s1, s2 := jumpSeed(seed, run)
	rng := rand.New(rand.NewPCG(s1, s2))

	h, err := newHarness(ctx, dir, "jump-")
	if err != nil {
		return out, err
	}
	defer h.close()
	clock, svc, ctl, recs := h.clock, h.svc, h.ctl, h.recs

	epoch := rEpoch.UnixNano()
	start := epoch + int64(cfg.warmup)
	jumpAt := start + int64(cfg.healthy)
	end := jumpAt + int64(cfg.horizon)
	minGap := int64(rollout.DefaultMinLookGap)
	meanGap := float64(time.Second) / cfg.rate

	weight := 0.0
	refresh := func() error {
		ep, err := svc.Endpoint(ctx, rEndpoint)
		if err != nil {
			return err
		}
		weight = ep.Traffic[rCanary].Fraction()
		return nil
	}
	started, done := false, false
	nextTick := int64(math.MaxInt64)
	lastMoved := int64(math.MinInt64 / 2)
	pending := false // a signal was taken from Moved() and waits for its look
	out.Phase = "not started"

	// look looks at the rollout at simulated instant at, as Run would (moved:
	// LookMoved after a signal; else the ticker's Look), and records what it
	// decided.
	look := func(at int64, moved bool) error {
		clock.set(time.Unix(0, at))
		c0, cpuOK := threadCPU()
		w0 := time.Now()
		if moved {
			ctl.LookMoved(ctx)
		} else {
			ctl.Look(ctx)
		}
		d := time.Since(w0)
		var cpu time.Duration
		if c1, ok := threadCPU(); ok && cpuOK {
			cpu = c1 - c0
			out.LookCPU = append(out.LookCPU, cpu)
		}
		out.LookWall = append(out.LookWall, d)
		if moved {
			out.MovedLooks++
			lastMoved, pending = at, false
		} else {
			out.TickLooks++
		}
		r, err := ctl.Current(ctx, rEndpoint)
		if err != nil {
			return err
		}
		out.Phase, out.Reason = string(r.Phase), r.Reason
		out.RolloutSec = float64(at-start) / 1e9
		switch {
		case r.Phase == rollout.PhasePaused:
			out.Pauses++
		case r.Phase == rollout.PhaseRolledBack:
			done = true
			if at < jumpAt {
				out.FalseAlarm, out.FalseAlarmSec = true, float64(at-start)/1e9
				return nil
			}
			out.RolledBack, out.DecisionSec, out.DecisionWall, out.DecisionCPU = true, float64(at-jumpAt)/1e9, d, cpu
			out.DecidingLook = "tick"
			if moved {
				out.DecidingLook = "moved"
			}
			return nil
		case r.Phase.Terminal():
			done = true // promoted or aborted: not expected (reported by Phase)
			return nil
		}
		return refresh()
	}

	t := epoch
	for !done {
		t += int64(rng.ExpFloat64() * meanGap)
		// What Run would do before this request: the start, a signal's look
		// once the gap has passed, the ticker; in time order.
		for !done {
			if !started {
				if start > t {
					break
				}
				clock.set(time.Unix(0, start))
				if _, err := ctl.Start(ctx, rEndpoint, rollout.StartRequest{Canary: rCanary, Plan: spec.Plan{Bake: spec.Duration(cfg.bake)}}); err != nil {
					return out, fmt.Errorf("start: %w", err)
				}
				started, nextTick = true, start+int64(time.Second)
				out.Phase = string(rollout.PhaseProgressing)
				if err := refresh(); err != nil {
					return out, err
				}
				continue
			}
			due := lastMoved + minGap
			if pending && due <= t && due <= nextTick {
				if err := look(due, true); err != nil {
					return out, err
				}
				continue
			}
			if nextTick <= t {
				if err := look(nextTick, false); err != nil {
					return out, err
				}
				nextTick += int64(time.Second)
				continue
			}
			break
		}
		if done || t >= end {
			break
		}
		canary := weight > 0 && rng.Float64() < weight
		p, arm := cfg.pStable, 0
		if canary {
			p, arm = cfg.pBefore, 1
			if t >= jumpAt {
				p = cfg.pAfter
			}
		}
		status := 200
		if rng.Float64() < p {
			status = 500
		}
		lat := time.Duration(rLatMedianMS * math.Exp(rLatSigma*rng.NormFloat64()) * float64(time.Millisecond))
		if canary && t >= jumpAt {
			out.CanaryAfterJump++
			if status == 500 {
				out.CanaryErrorsAfterJump++
			}
		}
		clock.set(time.Unix(0, t))
		recs[arm].Begin()
		recs[arm].Observe(telemetry.Observation{Now: t, Status: status, Latency: lat, TTFB: lat})
		out.Requests++
		select {
		case <-ctl.Moved():
			pending = true
		default:
		}
		if pending && t >= lastMoved+minGap {
			if err := look(t, true); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

// runJumps runs runs runs over workers goroutines; progress (may be nil) gets a
// line every tenth of the runs.
func runJumps(ctx context.Context, cfg jumpConfig, runs int, seed uint64, workers int, progress io.Writer) ([]jumpOutcome, error) {
	dir, err := stateDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	outs := make([]jumpOutcome, runs)
	jobs := make(chan int)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		finished atomic.Int64
	)
	began := time.Now()
	step := max(runs/10, 1)
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range jobs {
				o, err := runJump(ctx, cfg, seed, r, dir)
				outs[r] = o
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("jump run %d: %w", r, err)
				}
				if n := finished.Add(1); progress != nil && (n%int64(step) == 0 || n == int64(runs)) {
					fmt.Fprintf(progress, "jump: %d of %d runs done, %s\n", n, runs, time.Since(began).Round(time.Second))
				}
				mu.Unlock()
			}
		}()
	}
	for r := range runs {
		jobs <- r
	}
	close(jobs)
	wg.Wait()
	return outs, firstErr
}

// quantileCI is a q-quantile with its distribution-free 95% confidence interval
// from order statistics: [X(l), X(u)] with l, u the ranks around Bin(n, q)'s
// 2.5% and 97.5% points. Values may be +Inf (censored: never).
type quantileCI struct {
	Q  float64 `json:"q"`
	V  float64 `json:"value"`
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

func newQuantileCI(v []float64, q float64) quantileCI {
	n := len(v)
	if n == 0 {
		return quantileCI{Q: q, V: math.NaN(), Lo: math.NaN(), Hi: math.NaN()}
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	at := func(rank int) float64 { // 1-based; outside 1..n: unbounded
		switch {
		case rank < 1:
			return math.Inf(-1)
		case rank > n:
			return math.Inf(1)
		}
		return s[rank-1]
	}
	k := int(math.Min(float64(n-1), math.Floor(q*float64(n)))) // as quantile()
	ci := quantileCI{Q: q, V: s[k]}
	// l: the largest rank with P(B ≤ l−1) ≤ 0.025; u: the smallest with
	// P(B ≤ u−1) ≥ 0.975, B ~ Bin(n, q).
	l, cdf := 0, 0.0
	for r := 1; r <= n; r++ {
		cdf = binomCDF(r-1, n, q)
		if cdf > 0.025 {
			break
		}
		l = r
	}
	u := n + 1
	for r := 1; r <= n; r++ {
		if binomCDF(r-1, n, q) >= 0.975 {
			u = r
			break
		}
	}
	ci.Lo, ci.Hi = at(l), at(u)
	return ci
}

// format prints the value with f ("never" for +Inf) and the bounds with f, an
// unbounded or censored bound as ±∞.
func (c quantileCI) format(f func(float64) string) string {
	b := func(v float64) string {
		switch {
		case math.IsInf(v, 1):
			return "∞"
		case math.IsInf(v, -1):
			return "−∞"
		}
		return f(v)
	}
	return fmt.Sprintf("%s [%s, %s]", f(c.V), b(c.Lo), b(c.Hi))
}

func fmtSec(v float64) string {
	switch {
	case math.IsNaN(v):
		return "–"
	case math.IsInf(v, 1):
		return "never"
	}
	return fmt.Sprintf("%.2f", v)
}

func fmtCount(v float64) string {
	if math.IsInf(v, 1) {
		return "never"
	}
	return fmtNum(v)
}

// jumpSummary is the suite's result, as printed and as written with -o json.
type jumpSummary struct {
	Runs        int   `json:"runs"`
	FalseAlarms share `json:"false_alarms"` // rolled back before the jump
	// FalseAlarmNotes: run, seconds after the start and the controller's
	// reason, per false alarm.
	FalseAlarmNotes []string `json:"false_alarm_notes"`
	Reached         int      `json:"reached_jump"`
	// Over the runs that reached the jump, a run not rolled back within the
	// horizon counting as +Inf (never):
	RolledBack      share      `json:"rolled_back_within_horizon"`
	DecisionMedian  quantileCI `json:"decision_sec_median"` // simulated
	DecisionP95     quantileCI `json:"decision_sec_p95"`
	TotalMedian     quantileCI `json:"total_sec_median"` // simulated + the deciding look's wall time
	TotalP95        quantileCI `json:"total_sec_p95"`
	CanaryMedian    quantileCI `json:"canary_after_jump_median"`
	CanaryP95       quantileCI `json:"canary_after_jump_p95"`
	CanaryErrMedian float64    `json:"canary_errors_after_jump_median"`
	ByMoved         int        `json:"decided_by_moved_look"` // rollbacks decided by a LookMoved (the others: the ticker)
	// Looks: per simulated second of rollout (mean over runs), wall times
	// over every look of every run, and the deciding looks'.
	MovedPerSec   float64 `json:"moved_looks_per_sec"`
	TickPerSec    float64 `json:"tick_looks_per_sec"`
	Looks         int     `json:"looks"`
	LookMedianUS  float64 `json:"look_wall_median_us"`
	LookP99US     float64 `json:"look_wall_p99_us"`
	LookMaxUS     float64 `json:"look_wall_max_us"`
	DecidingMedUS float64 `json:"deciding_look_wall_median_us"`
	DecidingP95US float64 `json:"deciding_look_wall_p95_us"`
	// The same in thread CPU time (-1 in JSON where not measured).
	LookCPUMedianUS  float64    `json:"look_cpu_median_us"`
	LookCPUP99US     float64    `json:"look_cpu_p99_us"`
	LookCPUMaxUS     float64    `json:"look_cpu_max_us"`
	DecidingCPUMedUS float64    `json:"deciding_look_cpu_median_us"`
	DecidingCPUP95US float64    `json:"deciding_look_cpu_p95_us"`
	Pauses           int        `json:"pauses"`     // looks that found a rollout paused
	OtherEnds        int        `json:"other_ends"` // promoted or aborted (not expected)
	MedianMet        bool       `json:"median_met"` // TotalMedian ≤ 1 s
	P95Met           bool       `json:"p95_met"`    // TotalP95 ≤ 3 s
	RequestsPerRun   float64    `json:"requests_per_run"`
	WorkerSecsPerRun float64    `json:"worker_seconds_per_run"`
	Cost             jumpCost   `json:"cost"`
	Config           jumpConfJS `json:"config"`
}

type jumpCost struct {
	Workers     int     `json:"workers"`
	WallSeconds float64 `json:"wall_seconds"`
	WorkerSecs  float64 `json:"worker_seconds"`
}

type jumpConfJS struct {
	Rate       float64 `json:"rate"`
	WarmupSec  float64 `json:"warmup_sec"`
	HealthySec float64 `json:"healthy_sec"`
	HorizonSec float64 `json:"horizon_sec"`
	PStable    float64 `json:"p_stable"`
	PBefore    float64 `json:"p_canary_before"`
	PAfter     float64 `json:"p_canary_after"`
	Seed       uint64  `json:"seed"`
}

func summarizeJumps(cfg jumpConfig, outs []jumpOutcome, seed uint64, workers int, wall time.Duration) jumpSummary {
	s := jumpSummary{Runs: len(outs)}
	var dec, tot, can, canErr, decWall, looks, cpus, decCPU []float64
	var fa, rb int
	var movedRate, tickRate, reqs, workerSecs float64
	for i, o := range outs {
		reqs += float64(o.Requests)
		workerSecs += o.Wall.Seconds()
		s.Pauses += o.Pauses
		for _, d := range o.LookWall {
			looks = append(looks, float64(d.Nanoseconds())/1e3)
		}
		for _, d := range o.LookCPU {
			cpus = append(cpus, float64(d.Nanoseconds())/1e3)
		}
		if o.RolloutSec > 0 {
			movedRate += float64(o.MovedLooks) / o.RolloutSec
			tickRate += float64(o.TickLooks) / o.RolloutSec
		}
		if o.FalseAlarm {
			fa++
			s.FalseAlarmNotes = append(s.FalseAlarmNotes, fmt.Sprintf("run %d at %.1f s after the start: %s", i, o.FalseAlarmSec, o.Reason))
			continue
		}
		if !o.RolledBack && o.Phase != string(rollout.PhaseProgressing) && o.Phase != string(rollout.PhasePaused) {
			s.OtherEnds++
		}
		s.Reached++
		canErr = append(canErr, float64(o.CanaryErrorsAfterJump))
		if o.RolledBack {
			rb++
			dec = append(dec, o.DecisionSec)
			tot = append(tot, o.DecisionSec+o.DecisionWall.Seconds())
			can = append(can, float64(o.CanaryAfterJump))
			decWall = append(decWall, float64(o.DecisionWall.Nanoseconds())/1e3)
			if len(o.LookCPU) > 0 {
				decCPU = append(decCPU, float64(o.DecisionCPU.Nanoseconds())/1e3)
			}
			if o.DecidingLook == "moved" {
				s.ByMoved++
			}
		} else {
			inf := math.Inf(1)
			dec, tot, can = append(dec, inf), append(tot, inf), append(can, inf)
		}
	}
	s.FalseAlarms = newShare(fa, len(outs))
	s.RolledBack = newShare(rb, s.Reached)
	s.DecisionMedian, s.DecisionP95 = newQuantileCI(dec, 0.5), newQuantileCI(dec, 0.95)
	s.TotalMedian, s.TotalP95 = newQuantileCI(tot, 0.5), newQuantileCI(tot, 0.95)
	s.CanaryMedian, s.CanaryP95 = newQuantileCI(can, 0.5), newQuantileCI(can, 0.95)
	s.CanaryErrMedian = quantile(canErr, 0.5)
	if n := float64(len(outs)); n > 0 {
		s.MovedPerSec, s.TickPerSec = movedRate/n, tickRate/n
		s.RequestsPerRun, s.WorkerSecsPerRun = reqs/n, workerSecs/n
	}
	s.Looks = len(looks)
	s.LookMedianUS, s.LookP99US = quantile(looks, 0.5), quantile(looks, 0.99)
	s.LookMaxUS = math.NaN()
	if len(looks) > 0 {
		s.LookMaxUS = quantile(looks, 1)
	}
	s.DecidingMedUS, s.DecidingP95US = quantile(decWall, 0.5), quantile(decWall, 0.95)
	s.LookCPUMedianUS, s.LookCPUP99US, s.LookCPUMaxUS = quantile(cpus, 0.5), quantile(cpus, 0.99), quantile(cpus, 1)
	s.DecidingCPUMedUS, s.DecidingCPUP95US = quantile(decCPU, 0.5), quantile(decCPU, 0.95)
	s.MedianMet = s.TotalMedian.V <= jumpTargetMedian
	s.P95Met = s.TotalP95.V <= jumpTargetP95
	s.Cost = jumpCost{Workers: workers, WallSeconds: wall.Seconds(), WorkerSecs: workerSecs}
	s.Config = jumpConfJS{Rate: cfg.rate, WarmupSec: cfg.warmup.Seconds(), HealthySec: cfg.healthy.Seconds(),
		HorizonSec: cfg.horizon.Seconds(), PStable: cfg.pStable, PBefore: cfg.pBefore, PAfter: cfg.pAfter, Seed: seed}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func reportJump(w io.Writer, cfg jumpConfig, s jumpSummary) {
	fmt.Fprintf(w, "Error jump: stable %.0f%% errors; canary at the first stage (5%%, bake %s) of %.0f req/s (Poisson), %.0f%% errors for %s after the start,\n",
		100*cfg.pStable, cfg.bake, cfg.rate, 100*cfg.pBefore, cfg.healthy)
	fmt.Fprintf(w, "then %.0f%%; %s of stable traffic alone before the start; latency lognormal (median 20 ms, σ 0.4) on both; real controller,\n", 100*cfg.pAfter, cfg.warmup)
	fmt.Fprintf(w, "LookEvery %d, MinLookGap %s, a Look every simulated second; a run ends at the rollback or %s after the jump.\n",
		rollout.DefaultLookEvery, rollout.DefaultMinLookGap, cfg.horizon)
	fmt.Fprintf(w, "%d runs; medians and p95s with 95%% order-statistic intervals, over the %d runs that reached the jump (not rolled back: never).\n\n", s.Runs, s.Reached)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "|---|---|")
	fmt.Fprintf(w, "| rolled back before the jump (false alarm) | %d of %d: %s |\n", s.FalseAlarms.K, s.Runs, s.FalseAlarms)
	fmt.Fprintf(w, "| rolled back within %s of the jump | %d of %d: %s |\n", cfg.horizon, s.RolledBack.K, s.Reached, s.RolledBack)
	fmt.Fprintf(w, "| jump → deciding look, simulated s: median | %s |\n", s.DecisionMedian.format(fmtSec))
	fmt.Fprintf(w, "| … p95 | %s |\n", s.DecisionP95.format(fmtSec))
	fmt.Fprintf(w, "| jump → rollback committed (simulated + the deciding look's wall time), s: median | %s |\n", s.TotalMedian.format(fmtSec))
	fmt.Fprintf(w, "| … p95 | %s |\n", s.TotalP95.format(fmtSec))
	fmt.Fprintf(w, "| canary requests served after the jump: median | %s |\n", s.CanaryMedian.format(fmtCount))
	fmt.Fprintf(w, "| … p95 | %s |\n", s.CanaryP95.format(fmtCount))
	fmt.Fprintf(w, "| canary errors served after the jump: median | %s |\n", fmtNum(s.CanaryErrMedian))
	fmt.Fprintf(w, "| rollbacks decided by a signal's look (LookMoved) / by the ticker | %d / %d |\n", s.ByMoved, s.RolledBack.K-s.ByMoved)
	fmt.Fprintf(w, "| looks per simulated second: LookMoved / ticker | %.1f / %.1f |\n", s.MovedPerSec, s.TickPerSec)
	fmt.Fprintf(w, "| wall time of a look, µs: median / p99 / max (%d looks) | %.0f / %.0f / %.0f |\n", s.Looks, s.LookMedianUS, s.LookP99US, s.LookMaxUS)
	fmt.Fprintf(w, "| wall time of the deciding look (bbolt commit included), µs: median / p95 | %.0f / %.0f |\n", s.DecidingMedUS, s.DecidingP95US)
	if !math.IsNaN(s.LookCPUMedianUS) {
		fmt.Fprintf(w, "| thread CPU time of a look, µs: median / p99 / max | %.0f / %.0f / %.0f |\n", s.LookCPUMedianUS, s.LookCPUP99US, s.LookCPUMaxUS)
		fmt.Fprintf(w, "| thread CPU time of the deciding look, µs: median / p95 | %.0f / %.0f |\n", s.DecidingCPUMedUS, s.DecidingCPUP95US)
	}
	if s.Pauses > 0 || s.OtherEnds > 0 {
		fmt.Fprintf(w, "| looks that found the rollout paused / runs promoted or aborted (not expected) | %d / %d |\n", s.Pauses, s.OtherEnds)
	}
	for _, n := range s.FalseAlarmNotes {
		fmt.Fprintf(w, "\nFalse alarm: %s", n)
	}
	if len(s.FalseAlarmNotes) > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | met |")
	fmt.Fprintln(w, "|---|---|---|")
	fmt.Fprintf(w, "| jump → rollback median ≤ %.0f s | %s s | %s |\n", jumpTargetMedian, s.TotalMedian.format(fmtSec), yesNo(s.MedianMet))
	fmt.Fprintf(w, "| jump → rollback p95 ≤ %.0f s | %s s | %s |\n", jumpTargetP95, s.TotalP95.format(fmtSec), yesNo(s.P95Met))
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Cost: %d runs (%.0f requests each) in %s wall on %d workers, %.1f s of one worker per run.\n",
		s.Runs, s.RequestsPerRun, time.Duration(s.Cost.WallSeconds*float64(time.Second)).Round(time.Second), s.Cost.Workers, s.WorkerSecsPerRun)
}

// finiteOr replaces NaN and ±Inf by -1 (JSON has neither; -1: none or never).
func finiteOr(p ...*float64) {
	for _, v := range p {
		if math.IsNaN(*v) || math.IsInf(*v, 0) {
			*v = -1
		}
	}
}

func writeJumpJSON(w io.Writer, s jumpSummary) error {
	for _, q := range []*quantileCI{&s.DecisionMedian, &s.DecisionP95, &s.TotalMedian, &s.TotalP95, &s.CanaryMedian, &s.CanaryP95} {
		finiteOr(&q.V, &q.Lo, &q.Hi)
	}
	finiteOr(&s.CanaryErrMedian, &s.LookMedianUS, &s.LookP99US, &s.LookMaxUS, &s.DecidingMedUS, &s.DecidingP95US,
		&s.LookCPUMedianUS, &s.LookCPUP99US, &s.LookCPUMaxUS, &s.DecidingCPUMedUS, &s.DecidingCPUP95US)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(struct {
		Suite string `json:"suite"`
		jumpSummary
	}{"jump", s})
}

// mainJump is `go run ./bench/stats -suite jump`.
func mainJump(w, progress io.Writer, runs int, seed uint64, workers int, format string) error {
	if format != "json" && format != "" && format != "markdown" && format != "md" {
		return errors.New("unknown output format " + format + ": markdown or json")
	}
	cfg := defaultJumpConfig()
	began := time.Now()
	outs, err := runJumps(context.Background(), cfg, runs, seed, workers, progress)
	if err != nil {
		return err
	}
	s := summarizeJumps(cfg, outs, seed, workers, time.Since(began))
	if format == "json" {
		return writeJumpJSON(w, s)
	}
	reportJump(w, cfg, s)
	return nil
}
