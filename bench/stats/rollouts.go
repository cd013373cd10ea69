package main

// The rollouts suite (issue 16, item 6): whole rollouts through the real code path.
// Each run has its own bbolt store (a file under /dev/shm), control.Service,
// telemetry.Registry and rollout.Controller, driven on a fake clock: every simulated
// second the run draws that second's requests, routes each to the canary with
// probability equal to the canary's traffic weight as the controller last set it
// (read from the control service), records each into its deployment's telemetry
// Recorder (Begin + Observe, Now inside that second), advances the clock by 1 s and
// calls Controller.Look, which is what Controller.Run does every second. The fleet
// scenarios (fleet.go) serve the same traffic from three replicas, the leader
// gathering the others' parts.

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
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store/bolt"
	"github.com/modelgate/modelgate/internal/telemetry"
)

const (
	rEndpoint = "model"
	rStable   = "blue"
	rCanary   = "green"
	// rWarmup is the stable's traffic alone before the start, so that the first
	// stage's latency thresholds come from recent stable data, as in production.
	rWarmup = 2 * time.Minute
)

// rConfig is the endpoint: two deployments, the first with all traffic. No proxy
// runs, so the backends are never called.
var rConfig = []byte(`endpoints:
  - name: ` + rEndpoint + `
    deployments:
      - name: ` + rStable + `
        backends: [http://127.0.0.1:9]
      - name: ` + rCanary + `
        backends: [http://127.0.0.1:9]
`)

// rEpoch is the simulated wall clock at the start of every run's warm-up.
var rEpoch = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// rolloutOutcome is what happened in one run. Seconds count from the start of the
// rollout; -1 means "did not happen".
type rolloutOutcome struct {
	Phase       string  `json:"phase"` // at the end of the run
	Stage       int     `json:"stage"`
	StageWeight float64 `json:"stage_weight"` // percent of the stage the rollout was in at the end
	Reason      string  `json:"reason"`

	PromotedSec   int `json:"promoted_sec"`
	RolledBackSec int `json:"rolled_back_sec"`
	// RollbackWeight is the stage weight (percent) in which it was rolled back.
	RollbackWeight float64 `json:"rollback_weight"`
	AbortedSec     int     `json:"aborted_sec"`
	// Canary requests and canary errors served from the start until the decision
	// (the end of the run when there was none).
	CanaryRequests int64 `json:"canary_requests"`
	CanaryErrors   int64 `json:"canary_errors"`
	// StalledSec and StallWeight: the first pause at a progress deadline.
	StalledSec  int     `json:"stalled_sec"`
	StallWeight float64 `json:"stall_weight"`
	SRMSec      int     `json:"srm_sec"` // first sample-ratio halt
	SRMWeight   float64 `json:"srm_weight"`
	OtherPauses int     `json:"other_pauses"` // pauses for another reason (none expected)
	// StageSec[i] is when stage i started (stage 0 at 0).
	StageSec []int `json:"stage_sec"`
	// JumpToRollback: pause scenarios, seconds from the canary's error jump to the
	// rollback; -1 if none within the horizon.
	JumpToRollback int `json:"jump_to_rollback"`

	// FinalCanaryWeight is the canary's traffic weight (percent) in the control
	// service when the run ended: 0 after a rollback, 100 after the promotion.
	FinalCanaryWeight float64 `json:"final_canary_weight"`

	SimSeconds int           `json:"sim_seconds"` // simulated seconds including the warm-up
	Wall       time.Duration `json:"wall_ns"`

	Fleet *fleetOutcome `json:"fleet,omitempty"` // fleet scenarios (fleet.go)
}

// simClock is the fake clock of one run.
type simClock struct{ ns atomic.Int64 }

func (c *simClock) Now() time.Time      { return time.Unix(0, c.ns.Load()).UTC() }
func (c *simClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *simClock) add(d time.Duration) { c.ns.Add(int64(d)) }

type nopRouter struct{}

func (nopRouter) SetRoutes([]spec.Endpoint) error { return nil }

// stateDir returns a new temporary directory for the runs' state files: under
// /dev/shm (tmpfs: fsync is cheap) when it exists, else the default temp dir.
func stateDir() (string, error) {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if d, err := os.MkdirTemp("/dev/shm", "modelgate-bench-"); err == nil {
			return d, nil
		}
	}
	return os.MkdirTemp("", "modelgate-bench-")
}

// rolloutSeed is the deterministic seed of (scenario, run index).
func rolloutSeed(base uint64, s rolloutScenario, run int) (uint64, uint64) {
	h := fnv.New64a()
	h.Write([]byte(s.id))
	return base ^ h.Sum64(), uint64(run)
}

// classifyPause names why a rollout paused. The controller's reasons are words, not
// codes: a reason not recognised here counts as "other" (reported, never hidden).
func classifyPause(reason string) string {
	switch {
	case strings.Contains(reason, "paused by hand"):
		return "hand"
	case strings.Contains(reason, "deadline"):
		return "deadline"
	case strings.Contains(reason, "sample ratio"):
		return "srm"
	}
	return "other"
}

// runRollout simulates one run of s in a state file under dir.
func runRollout(ctx context.Context, s rolloutScenario, seed uint64, run int, dir string) (out rolloutOutcome, err error) {
	began := time.Now()
	out = rolloutOutcome{PromotedSec: -1, RolledBackSec: -1, AbortedSec: -1, StalledSec: -1, SRMSec: -1, JumpToRollback: -1}
	s1, s2 := rolloutSeed(seed, s, run)
	rng := rand.New(rand.NewPCG(s1, s2))
	w := newWorld(s, rng)

	var (
		h  *harness
		fs *fleetSim // the fleet variant's other replicas (fleet.go); nil: one gateway
	)
	if s.fleet != nil {
		h, fs, err = newFleetHarness(ctx, dir, s)
	} else {
		h, err = newHarness(ctx, dir, "run-")
	}
	if err != nil {
		return out, err
	}
	defer h.close()
	clock, svc, ctl, recs := h.clock, h.svc, h.ctl, h.recs

	warm := int(rWarmup / time.Second)
	end := s.end()
	jump := -1
	if s.pauseAtStart {
		jump = int(s.jumpAfter / time.Second)
	}
	var canaryReqs, canaryErrs int64
	lastPhase := rollout.Phase("")
	lastStage := -1
	weight := 0.0
	for t := -warm; t < end; t++ {
		if t >= 0 {
			ep, err := svc.Endpoint(ctx, rEndpoint)
			if err != nil {
				return out, err
			}
			weight = ep.Traffic[rCanary].Fraction()
		}
		if fs != nil {
			// Second t's requests over the replicas, pulled from every
			// Interval; the clock ends at the second's end.
			c, e := fs.serve(ctx, rng, w, t, weight)
			canaryReqs, canaryErrs = canaryReqs+c, canaryErrs+e
		} else {
			// The requests of second t, finishing at uniform times inside it.
			secStart := clock.Now().UnixNano()
			n := poisson(rng, w.rate(t))
			ps, pc := w.errRates(t)
			for range n {
				canary, status, lat := w.request(rng, t, weight, ps, pc)
				arm := 0
				if canary {
					arm = 1
				}
				if canary && t >= 0 {
					canaryReqs++
					if status == 500 {
						canaryErrs++
					}
				}
				recs[arm].Begin()
				recs[arm].Observe(telemetry.Observation{Now: secStart + rng.Int64N(int64(time.Second)), Status: status, Latency: lat, TTFB: lat})
			}
			clock.add(time.Second)
		}
		if t == -1 {
			// The warm-up is over: start with the default plan (or the scenario's).
			if _, err := ctl.Start(ctx, rEndpoint, rollout.StartRequest{Canary: rCanary, Plan: s.plan}); err != nil {
				return out, fmt.Errorf("start: %w", err)
			}
			if s.pauseAtStart {
				if _, err := ctl.Act(ctx, rEndpoint, rollout.ActionPause); err != nil {
					return out, fmt.Errorf("pause: %w", err)
				}
			}
			lastPhase, lastStage = rollout.PhaseProgressing, 0
			out.StageSec = []int{0}
			if fs != nil {
				fs.g.Pull(ctx)
			}
			continue
		}
		if t < 0 {
			continue
		}
		ctl.Look(ctx)
		if fs != nil {
			// The pull at the look's instant comes after it: the other
			// replicas' last parts wait for the next look.
			fs.g.Pull(ctx)
		}
		r, err := ctl.Current(ctx, rEndpoint)
		if err != nil {
			return out, err
		}
		sec := t + 1 // seconds since the start at this look
		if fs != nil {
			fs.looked(&out, r, sec, canaryReqs)
		}
		if r.Stage > lastStage && !r.Phase.Terminal() {
			for len(out.StageSec) <= r.Stage {
				out.StageSec = append(out.StageSec, sec)
			}
			lastStage = r.Stage
		}
		if r.Phase == rollout.PhasePaused && lastPhase != rollout.PhasePaused {
			switch classifyPause(r.Reason) {
			case "hand":
			case "deadline":
				if out.StalledSec < 0 {
					out.StalledSec, out.StallWeight = sec, r.StageWeight(r.Stage).Float()
				}
			case "srm":
				if out.SRMSec < 0 {
					out.SRMSec, out.SRMWeight = sec, r.StageWeight(r.Stage).Float()
				}
			default:
				out.OtherPauses++
			}
		}
		lastPhase = r.Phase
		out.Phase, out.Stage, out.StageWeight, out.Reason = string(r.Phase), r.Stage, r.StageWeight(r.Stage).Float(), r.Reason
		if r.Phase.Terminal() {
			switch r.Phase {
			case rollout.PhaseSucceeded:
				out.PromotedSec = sec
				out.StageWeight = 100
			case rollout.PhaseRolledBack:
				out.RolledBackSec, out.RollbackWeight = sec, r.StageWeight(r.Stage).Float()
				if jump >= 0 && t >= jump {
					out.JumpToRollback = sec - jump
				}
			case rollout.PhaseAborted:
				out.AbortedSec = sec
			}
			out.SimSeconds = warm + t + 1
			break
		}
		out.SimSeconds = warm + t + 1
	}
	out.CanaryRequests, out.CanaryErrors = canaryReqs, canaryErrs
	ep, err := svc.Endpoint(ctx, rEndpoint)
	if err != nil {
		return out, err
	}
	out.FinalCanaryWeight = ep.Traffic[rCanary].Float()
	out.Wall = time.Since(began)
	return out, nil
}

// harness is one run's real control plane on a fake clock: a bbolt store in
// its own directory, the control service with rConfig applied, telemetry,
// and the rollout controller; recs are the stable's and the canary's
// recorders.
type harness struct {
	dir   string
	st    *bolt.Store
	clock *simClock
	svc   *control.Service
	ctl   *rollout.Controller
	tel   *telemetry.Registry
	recs  [2]*telemetry.Recorder
}

// newHarness builds a harness under dir (a directory named prefix…); close
// removes it.
func newHarness(ctx context.Context, dir, prefix string) (*harness, error) {
	return newHarnessWith(ctx, dir, prefix, nil)
}

// newHarnessWith is newHarness with the controller's options adjusted by
// opts (nil: none) once h's clock and telemetry are set: the fleet
// variant's gatherer (fleet.go).
func newHarnessWith(ctx context.Context, dir, prefix string, opts func(h *harness, o *rollout.Options)) (*harness, error) {
	runDir, err := os.MkdirTemp(dir, prefix)
	if err != nil {
		return nil, err
	}
	h := &harness{dir: runDir, clock: &simClock{}}
	if h.st, err = bolt.Open(filepath.Join(runDir, "state.db")); err != nil {
		os.RemoveAll(runDir)
		return nil, err
	}
	h.clock.set(rEpoch)
	tel := telemetry.NewRegistry()
	h.tel = tel
	h.svc = control.New(control.Options{Store: h.st, Router: nopRouter{}, Telemetry: tel, Now: h.clock.Now})
	if err := h.svc.Load(ctx); err != nil {
		h.close()
		return nil, err
	}
	if _, err := h.svc.Apply(ctx, rConfig, false, "bench"); err != nil {
		h.close()
		return nil, err
	}
	// The rollouts' estimates are measured by the estimate suite, not here.
	o := rollout.Options{Store: h.st, Endpoints: h.svc, Telemetry: tel, Now: h.clock.Now, SkipEstimate: true}
	if opts != nil {
		opts(h, &o)
	}
	h.ctl = rollout.New(o)
	h.recs = [2]*telemetry.Recorder{tel.Recorder(rEndpoint, rStable), tel.Recorder(rEndpoint, rCanary)}
	return h, nil
}

func (h *harness) close() {
	h.st.Close()
	os.RemoveAll(h.dir)
}

// rolloutResult aggregates the runs of one scenario.
type rolloutResult struct {
	Scenario rolloutScenario  `json:"-"`
	Runs     []rolloutOutcome `json:"-"`
}

func (r rolloutResult) n() int { return len(r.Runs) }

func (r rolloutResult) count(f func(o rolloutOutcome) bool) int {
	k := 0
	for _, o := range r.Runs {
		if f(o) {
			k++
		}
	}
	return k
}

func (r rolloutResult) values(f func(o rolloutOutcome) (float64, bool)) []float64 {
	var v []float64
	for _, o := range r.Runs {
		if x, ok := f(o); ok {
			v = append(v, x)
		}
	}
	return v
}

func promoted(o rolloutOutcome) bool   { return o.PromotedSec >= 0 }
func rolledBack(o rolloutOutcome) bool { return o.RolledBackSec >= 0 }
func running(o rolloutOutcome) bool    { return !promoted(o) && !rolledBack(o) && o.AbortedSec < 0 }

// censored returns the q-quantile over all runs of the values f gives, counting a
// run for which f has none as +Inf (a median of "never" when half the runs never
// got there, not the median of the lucky ones).
func (r rolloutResult) censored(q float64, f func(o rolloutOutcome) (float64, bool)) float64 {
	if r.n() == 0 {
		return math.NaN()
	}
	v := r.values(f)
	sort.Float64s(v)
	k := int(math.Min(float64(r.n()-1), math.Floor(q*float64(r.n()))))
	if k >= len(v) {
		return math.Inf(1)
	}
	return v[k]
}

func promotedMinutes(o rolloutOutcome) (float64, bool) {
	return float64(o.PromotedSec) / 60, promoted(o)
}

func rollbackRequests(o rolloutOutcome) (float64, bool) {
	return float64(o.CanaryRequests), rolledBack(o)
}

func jumpSeconds(o rolloutOutcome) (float64, bool) {
	return float64(o.JumpToRollback), o.JumpToRollback >= 0
}

// share is a share of the runs with its 95% Clopper-Pearson interval.
type share struct {
	K  int     `json:"k"`
	N  int     `json:"n"`
	P  float64 `json:"p"`
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

func newShare(k, n int) share {
	if n == 0 {
		return share{}
	}
	lo, hi := clopperPearson(k, n)
	return share{K: k, N: n, P: float64(k) / float64(n), Lo: lo, Hi: hi}
}

func (x share) String() string { return fmt.Sprintf("%.3f [%.3f, %.3f]", x.P, x.Lo, x.Hi) }

// rolloutSummary is a scenario's row, as printed and as written with -o json.
type rolloutSummary struct {
	ID   string `json:"id"`
	Slug string `json:"slug"`
	Name string `json:"name"`
	Runs int    `json:"runs"`

	Promoted share `json:"promoted"`
	// minutes from the start to 100%, over the promoted runs
	PromotedMinutesMedian float64 `json:"promoted_minutes_median"`
	PromotedMinutesP90    float64 `json:"promoted_minutes_p90"`

	RolledBack      share `json:"rolled_back"`
	RolledBackAt5   share `json:"rolled_back_before_25"` // in the 5% stage
	RolledBackBel50 share `json:"rolled_back_before_50"` // in the 5% or 25% stage
	// canary requests served from the start to the rollback, over the rolled-back runs
	RollbackRequestsMedian float64 `json:"rollback_canary_requests_median"`
	RollbackRequestsP90    float64 `json:"rollback_canary_requests_p90"`
	RollbackMinutesMedian  float64 `json:"rollback_minutes_median"`
	Aborted                int     `json:"aborted"`

	Stalled        share          `json:"stalled_at_deadline"`
	StalledByStage map[string]int `json:"stalled_by_stage"` // "5%" → runs
	SRMHalts       int            `json:"srm_halts"`
	OtherPauses    int            `json:"other_pauses"`

	Running        share          `json:"running_at_horizon"`
	RunningByState map[string]int `json:"running_by_state"` // "paused@5%" → runs

	// pause scenarios
	JumpWithin60      *share  `json:"rolled_back_within_60s_of_jump,omitempty"`
	PreJumpRollbacks  int     `json:"rolled_back_before_jump,omitempty"` // healthy paused canary rolled back (a false rollback)
	JumpSecondsMedian float64 `json:"jump_to_rollback_seconds_median,omitempty"`
	JumpSecondsP90    float64 `json:"jump_to_rollback_seconds_p90,omitempty"`

	Fleet *fleetSummary `json:"fleet,omitempty"` // fleet scenarios (fleet.go)

	SimHours    float64 `json:"sim_rollout_hours"`    // simulated time, warm-up included
	WorkerSecs  float64 `json:"worker_seconds"`       // wall time summed over runs
	SecsPerHour float64 `json:"seconds_per_sim_hour"` // WorkerSecs / SimHours
}

func pctKey(w float64) string { return strings.TrimSuffix(fmt.Sprintf("%.2f", w), ".00") + "%" }

func (r rolloutResult) summary() rolloutSummary {
	n := r.n()
	s := rolloutSummary{ID: r.Scenario.id, Slug: r.Scenario.slug, Name: r.Scenario.name, Runs: n,
		StalledByStage: map[string]int{}, RunningByState: map[string]int{}}
	pv := r.values(promotedMinutes)
	s.Promoted = newShare(len(pv), n)
	s.PromotedMinutesMedian, s.PromotedMinutesP90 = quantile(pv, 0.5), quantile(pv, 0.9)
	rv := r.values(rollbackRequests)
	s.RolledBack = newShare(len(rv), n)
	s.RolledBackAt5 = newShare(r.count(func(o rolloutOutcome) bool { return rolledBack(o) && o.RollbackWeight < 25 }), n)
	s.RolledBackBel50 = newShare(r.count(func(o rolloutOutcome) bool { return rolledBack(o) && o.RollbackWeight < 50 }), n)
	s.RollbackRequestsMedian, s.RollbackRequestsP90 = quantile(rv, 0.5), quantile(rv, 0.9)
	s.RollbackMinutesMedian = quantile(r.values(func(o rolloutOutcome) (float64, bool) { return float64(o.RolledBackSec) / 60, rolledBack(o) }), 0.5)
	s.Aborted = r.count(func(o rolloutOutcome) bool { return o.AbortedSec >= 0 })
	s.Stalled = newShare(r.count(func(o rolloutOutcome) bool { return o.StalledSec >= 0 }), n)
	s.Running = newShare(r.count(running), n)
	var simSecs float64
	for _, o := range r.Runs {
		if o.StalledSec >= 0 {
			s.StalledByStage[pctKey(o.StallWeight)]++
		}
		if o.SRMSec >= 0 {
			s.SRMHalts++
		}
		s.OtherPauses += o.OtherPauses
		if running(o) {
			s.RunningByState[o.Phase+"@"+pctKey(o.StageWeight)]++
		}
		simSecs += float64(o.SimSeconds)
		s.WorkerSecs += o.Wall.Seconds()
	}
	s.Fleet = r.fleetSummary()
	s.SimHours = simSecs / 3600
	if s.SimHours > 0 {
		s.SecsPerHour = s.WorkerSecs / s.SimHours
	}
	if r.Scenario.pauseAtStart {
		j := newShare(r.count(func(o rolloutOutcome) bool { return o.JumpToRollback >= 0 && o.JumpToRollback <= 60 }), n)
		s.JumpWithin60 = &j
		s.PreJumpRollbacks = r.count(func(o rolloutOutcome) bool { return rolledBack(o) && o.JumpToRollback < 0 })
		s.JumpSecondsMedian, s.JumpSecondsP90 = r.censored(0.5, jumpSeconds), r.censored(0.9, jumpSeconds)
	}
	return s
}

// runRollouts runs every scenario, runs[i] runs each, over workers goroutines;
// progress (may be nil) gets a line per finished scenario.
func runRollouts(ctx context.Context, scs []rolloutScenario, runs []int, seed uint64, workers int, progress io.Writer) ([]rolloutResult, error) {
	dir, err := stateDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	type job struct{ sc, run int }
	results := make([]rolloutResult, len(scs))
	for i, s := range scs {
		results[i] = rolloutResult{Scenario: s, Runs: make([]rolloutOutcome, runs[i])}
	}
	left := make([]atomic.Int64, len(scs))
	for i := range scs {
		left[i].Store(int64(runs[i]))
	}
	jobs := make(chan job)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	began := time.Now()
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				o, err := runRollout(ctx, scs[j.sc], seed, j.run, dir)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("%s run %d: %w", scs[j.sc].id, j.run, err)
					}
					mu.Unlock()
				}
				results[j.sc].Runs[j.run] = o
				if left[j.sc].Add(-1) == 0 && progress != nil {
					mu.Lock()
					fmt.Fprintf(progress, "%s %s: %d runs done, %s since the suite started\n", scs[j.sc].id, scs[j.sc].slug, runs[j.sc], time.Since(began).Round(time.Second))
					mu.Unlock()
				}
			}
		}()
	}
	for i := range scs {
		for r := range runs[i] {
			jobs <- job{i, r}
		}
	}
	close(jobs)
	wg.Wait()
	return results, firstErr
}

func fmtStages(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func fmtMin1(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if math.IsInf(v, 1) {
		return "never"
	}
	return fmt.Sprintf("%.1f", v)
}

// reportRollouts prints the markdown tables.
func reportRollouts(w io.Writer, results []rolloutResult) {
	fmt.Fprintln(w, "Default plan (stages 5, 25, 50, 100; 30 s bake, 100 canary requests, 10-min deadline that pauses; sequential gate), real controller on a fake clock;")
	fmt.Fprintln(w, "200 req/s and 1% errors unless stated; latency lognormal (median 20 ms, σ 0.4); 2 minutes of stable traffic before the start; 60-minute horizon")
	fmt.Fprintln(w, "(pause scenarios: jump + 10 min). Rates with 95% Clopper-Pearson intervals; medians and p90s over the runs where the event happened.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | runs | promoted | to 100%, min median / p90 | rolled back | … at 5% (before 25%) | … before 50% | canary req. before rollback median / p90 | stalled at a deadline (stage) | SRM halts | running at the horizon (state) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		s := r.summary()
		srm := fmt.Sprint(s.SRMHalts)
		if s.OtherPauses > 0 {
			srm += fmt.Sprintf(" (+%d other pauses)", s.OtherPauses)
		}
		if s.Aborted > 0 {
			srm += fmt.Sprintf(" (%d aborted)", s.Aborted)
		}
		fmt.Fprintf(w, "| %s %s | %d | %s | %s / %s | %s | %s | %s | %s / %s | %s%s | %s | %s%s |\n",
			s.ID, s.Name, s.Runs, s.Promoted, fmtMin1(s.PromotedMinutesMedian), fmtMin1(s.PromotedMinutesP90),
			s.RolledBack, s.RolledBackAt5, s.RolledBackBel50,
			fmtNum(s.RollbackRequestsMedian), fmtNum(s.RollbackRequestsP90),
			s.Stalled, fmtStages(s.StalledByStage), srm, s.Running, fmtStages(s.RunningByState))
	}
	var pauses []rolloutSummary
	for _, r := range results {
		if r.Scenario.pauseAtStart {
			pauses = append(pauses, r.summary())
		}
	}
	if len(pauses) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "Paused by hand at 5% right after the start; the canary's errors jump from 1% to 10% (seconds counted from the jump; over all runs, a run")
		fmt.Fprintln(w, "not rolled back after the jump counting as never; \"before the jump\": the healthy paused canary was rolled back, a false rollback):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| scenario | runs | rolled back by the horizon | … before the jump | within 60 s of the jump | seconds median / p90 |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, s := range pauses {
			fmt.Fprintf(w, "| %s %s | %d | %s | %d | %s | %s / %s |\n", s.ID, s.Name, s.Runs, s.RolledBack, s.PreJumpRollbacks, *s.JumpWithin60,
				fmtMedian(s.JumpSecondsMedian), fmtMedian(s.JumpSecondsP90))
		}
	}
	reportFleet(w, results)
}

// rolloutCost is the measured cost of a suite run.
type rolloutCost struct {
	Runs        int     `json:"runs"`
	Workers     int     `json:"workers"`
	WallSeconds float64 `json:"wall_seconds"`
	SimHours    float64 `json:"sim_rollout_hours"`
	WorkerSecs  float64 `json:"worker_seconds"`
	SecsPerHour float64 `json:"seconds_per_sim_hour"` // per worker
}

func costOf(results []rolloutResult, workers int, wall time.Duration) rolloutCost {
	c := rolloutCost{Workers: workers, WallSeconds: wall.Seconds()}
	for _, r := range results {
		s := r.summary()
		c.Runs += s.Runs
		c.SimHours += s.SimHours
		c.WorkerSecs += s.WorkerSecs
	}
	if c.SimHours > 0 {
		c.SecsPerHour = c.WorkerSecs / c.SimHours
	}
	return c
}

func reportCost(w io.Writer, c rolloutCost) {
	fmt.Fprintf(w, "Cost: %d runs, %.1f simulated rollout-hours (warm-ups included) in %s wall on %d workers: %.2f s of one worker per simulated rollout-hour.\n",
		c.Runs, c.SimHours, (time.Duration(c.WallSeconds * float64(time.Second))).Round(time.Second), c.Workers, c.SecsPerHour)
}

// rolloutJSON is the -o json document.
type rolloutJSON struct {
	Suite   string           `json:"suite"`
	Seed    uint64           `json:"seed"`
	Results []rolloutSummary `json:"results"`
	Targets []targetResult   `json:"targets"`
	Cost    rolloutCost      `json:"cost"`
}

func writeRolloutsJSON(w io.Writer, results []rolloutResult, seed uint64, cost rolloutCost) error {
	doc := rolloutJSON{Suite: "rollouts", Seed: seed, Cost: cost, Targets: evaluateTargets(results)}
	for _, r := range results {
		doc.Results = append(doc.Results, jsonSafe(r.summary()))
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// jsonSafe replaces NaN and +Inf (no event, "never") by -1: JSON has neither.
func jsonSafe(s rolloutSummary) rolloutSummary {
	for _, p := range []*float64{&s.PromotedMinutesMedian, &s.PromotedMinutesP90, &s.RollbackRequestsMedian, &s.RollbackRequestsP90,
		&s.RollbackMinutesMedian, &s.JumpSecondsMedian, &s.JumpSecondsP90} {
		if math.IsNaN(*p) || math.IsInf(*p, 0) {
			*p = -1
		}
	}
	if s.Fleet != nil {
		f := *s.Fleet
		for _, p := range []*float64{&f.MissingAfterMedian, &f.MissingAfterMax, &f.Stage1JudgedMedian} {
			if math.IsNaN(*p) || math.IsInf(*p, 0) {
				*p = -1
			}
		}
		s.Fleet = &f
	}
	return s
}

// rolloutTarget is a target of the analysis redesign: a property of one scenario's
// results. The reduced test (rollouts_test.go) says which are enforced today.
type rolloutTarget struct {
	name     string // stable key, used by the test's table
	scenario string // slug
	text     string
	// check returns the measured value in words and whether the target is met.
	check func(r rolloutResult) (string, bool)
}

type targetResult struct {
	Name     string `json:"name"`
	Scenario string `json:"scenario"`
	Target   string `json:"target"`
	Got      string `json:"got"`
	Met      bool   `json:"met"`
}

func atLeast(share float64, f func(o rolloutOutcome) bool) func(r rolloutResult) (string, bool) {
	return func(r rolloutResult) (string, bool) {
		k := r.count(f)
		return fmt.Sprintf("%d of %d (%s)", k, r.n(), newShare(k, r.n())), float64(k) >= share*float64(r.n())
	}
}

func atMost(share float64, f func(o rolloutOutcome) bool) func(r rolloutResult) (string, bool) {
	return func(r rolloutResult) (string, bool) {
		k := r.count(f)
		return fmt.Sprintf("%d of %d (%s)", k, r.n(), newShare(k, r.n())), float64(k) <= share*float64(r.n())
	}
}

// medianAtMost checks the median over all runs, a run without the event counting
// as +Inf.
func medianAtMost(limit float64, unit string, f func(o rolloutOutcome) (float64, bool)) func(r rolloutResult) (string, bool) {
	return func(r rolloutResult) (string, bool) {
		m := r.censored(0.5, f)
		v := "never"
		switch {
		case math.IsNaN(m):
			v = "–"
		case math.IsInf(m, 1):
		case unit == "min":
			v = fmt.Sprintf("%.1f %s", m, unit)
		default:
			v = fmt.Sprintf("%.0f %s", m, unit)
		}
		return "median " + v + " over all runs", m <= limit
	}
}

func rollbackBefore(weight float64) func(o rolloutOutcome) bool {
	return func(o rolloutOutcome) bool { return rolledBack(o) && o.RollbackWeight < weight }
}

// rolloutTargets are the redesign's targets (issue 16) and the fleet's (issue
// 20, fleetTargets), each part a check.
func rolloutTargets() []rolloutTarget {
	targets := []rolloutTarget{
		{"aa-promoted", "aa-steady", "identical versions reach 100% with no human in ≥ 95%", atLeast(0.95, promoted)},
		{"aa-promoted-median", "aa-steady", "identical versions: median time to 100% ≤ 10 min", medianAtMost(10, "min", promotedMinutes)},
		{"err2-before25", "err-2pct", "errors 1%→2% rolled back before 25% in ≥ 95%", atLeast(0.95, rollbackBefore(25))},
		{"err2-median", "err-2pct", "errors 1%→2%: median ≤ 1,200 canary requests to roll back", medianAtMost(1200, "canary requests", rollbackRequests)},
		{"tail-rolled-back", "tail-600ms", "tail regression rolled back in ≥ 99%", atLeast(0.99, rolledBack)},
		{"tail-median", "tail-600ms", "tail regression: median ≤ 500 canary requests to roll back", medianAtMost(500, "canary requests", rollbackRequests)},
		{"body-before50", "body-shift", "body shift rolled back before 50% in ≥ 80%", atLeast(0.80, rollbackBefore(50))},
		{"slow-promoted", "slow-1.05", "×1.05 slowdown promoted in ≥ 90%", atLeast(0.90, promoted)},
		{"better-promoted", "better", "better canary promoted in ≥ 99%", atLeast(0.99, promoted)},
		{"better-median", "better", "better canary: median time to 100% ≤ 10 min", medianAtMost(10, "min", promotedMinutes)},
		{"margin-promoted", "margin", "canary at the final margin promoted in ≤ 5%", atMost(0.05, promoted)},
		{"margin-swings-promoted", "margin-swings", "canary at the final margin, daily swings, promoted in ≤ 5%", atMost(0.05, promoted)},
		{"pause10-within60", "pause-10m", "paused 10 min, error jump rolled back within 60 s in ≥ 95%", atLeast(0.95, within60)},
		{"pause60-within60", "pause-60m", "paused 60 min, error jump rolled back within 60 s in ≥ 95%", atLeast(0.95, within60)},
	}
	return append(targets, fleetTargets()...)
}

func within60(o rolloutOutcome) bool { return o.JumpToRollback >= 0 && o.JumpToRollback <= 60 }

// evaluateTargets checks every target whose scenario is among results.
func evaluateTargets(results []rolloutResult) []targetResult {
	var out []targetResult
	for _, t := range rolloutTargets() {
		for _, r := range results {
			if r.Scenario.slug != t.scenario || r.n() == 0 {
				continue
			}
			got, met := t.check(r)
			out = append(out, targetResult{Name: t.name, Scenario: t.scenario, Target: t.text, Got: got, Met: met})
		}
	}
	return out
}

func reportTargets(w io.Writer, ts []targetResult) {
	if len(ts) == 0 {
		return
	}
	fmt.Fprintln(w, "Targets of the analysis redesign (issue 16) and of cluster mode's evidence (issue 20, the fleet scenarios):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | scenario | measured | met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range ts {
		met := "no"
		if t.Met {
			met = "yes"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Target, t.Scenario, t.Got, met)
	}
}

// selectRollouts picks the scenarios named in only (ids such as R6, or slugs;
// comma-separated; empty: all).
func selectRollouts(only string) ([]rolloutScenario, error) {
	all := rolloutScenarios()
	if only == "" {
		return all, nil
	}
	var out []rolloutScenario
	for _, name := range strings.Split(only, ",") {
		name = strings.TrimSpace(name)
		found := false
		for _, s := range all {
			if strings.EqualFold(s.id, name) || s.slug == name {
				out = append(out, s)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (ids R1..R%d or slugs such as %s)", name, len(all), all[0].slug)
		}
	}
	return out, nil
}

// mainRollouts is `go run ./bench/stats -suite rollouts`.
func mainRollouts(w io.Writer, progress io.Writer, only string, runs int, seed uint64, workers int, format string) error {
	scs, err := selectRollouts(only)
	if err != nil {
		return err
	}
	n := make([]int, len(scs))
	for i, s := range scs {
		n[i] = s.runs
		if runs > 0 {
			n[i] = runs
		}
	}
	began := time.Now()
	results, err := runRollouts(context.Background(), scs, n, seed, workers, progress)
	if err != nil {
		return err
	}
	cost := costOf(results, workers, time.Since(began))
	switch format {
	case "json":
		return writeRolloutsJSON(w, results, seed, cost)
	case "", "markdown", "md":
		reportRollouts(w, results)
		fmt.Fprintln(w)
		reportTargets(w, evaluateTargets(results))
		fmt.Fprintln(w)
		reportCost(w, cost)
		return nil
	}
	return errors.New("unknown output format " + format + ": markdown or json")
}
