package main

// The fleet variant of the rollouts suite (issue 20): three gateways behind a
// load balancer, the leader's rollout controller judging what every one of them
// served. The leader is the harness (its bbolt store, control service,
// telemetry.Registry and controller); the two other replicas are a
// telemetry.Registry each, behind a fleet.Reporter; the leader's
// fleet.Gatherer asks them directly (GatherOptions.Ask calls Reporter.Answer:
// no HTTP, no JSON) on the run's fake clock, and is the controller's
// rollout.Options.Fleet.
//
// Every simulated second is served in steps of the gatherer's Interval (250
// ms): each step's requests are drawn, each sent to a replica by the load
// balancer's shares and to the canary by the weight the controller last set,
// recorded in that replica's registry at an instant inside the step; then the
// clock moves to the step's end and the gatherer pulls. At the second's end the
// controller looks (Controller.Look, once a second as Controller.Run does), and
// the pull at that instant comes after the look: the other replicas' last parts
// reach the analysis one look after the leader's own, as they do when the
// pull's and the look's tickers are not in step.
//
// A replica that drops out crashes: it serves until dropAt + Interval, then
// answers no pull (Ask fails, as a connection refused would), so what it served
// since its last answered pull is never delivered; the load balancer sends its
// share to the others from that instant; it stays in the fleet's list for its
// lease's TTL (15 s, state.etcd.lease_ttl's default), then leaves it. Both
// cases Coverage tells apart are met in turn: first silent but listed, then
// gone.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// fleetSetup is the fleet of a fleet scenario. Replica 0 is the leader.
type fleetSetup struct {
	ids    [3]string
	shares [3]float64 // the load balancer's shares of the traffic, summing to 1
	// drop is the replica (1 or 2; 0: none) that crashes dropAt after the
	// start: it serves one more Interval, whose pull fails.
	drop   int
	dropAt time.Duration
	// listed is how long a crashed replica stays in the fleet's list.
	listed time.Duration
}

// fleetLeaseTTL is state.etcd.lease_ttl's default: how long a crashed
// replica's record outlives it.
const fleetLeaseTTL = 15 * time.Second

// fleetScenarios are the fleet scenarios of the rollouts suite: identical
// versions (1% errors, the same latencies), 200 requests/s over three
// replicas with the load balancer's shares 60/30/10, the leader the 30% one.
func fleetScenarios(base rolloutScenario) []rolloutScenario {
	with := func(id, slug, name string, drop int) rolloutScenario {
		s := base
		s.id, s.slug, s.name = id, slug, name
		s.fleet = &fleetSetup{ids: [3]string{"gw-30", "gw-60", "gw-10"}, shares: [3]float64{0.3, 0.6, 0.1},
			drop: drop, dropAt: 60 * time.Second, listed: fleetLeaseTTL}
		return s
	}
	return []rolloutScenario{
		with("R16", "fleet-aa", "identical, 3 replicas 60/30/10 (leader 30%)", 0),
		with("R17", "fleet-drop10", "identical, 3 replicas 60/30/10 (leader 30%), the 10% one crashes 60 s in", 2),
		with("R18", "fleet-drop60", "identical, 3 replicas 60/30/10 (leader 30%), the 60% one crashes 60 s in", 1),
	}
}

// fleetSim is one fleet run's replicas, the leader's included.
type fleetSim struct {
	setup    fleetSetup
	interval time.Duration
	clock    *simClock
	start    time.Time // the rollout's start on the clock
	deadAt   time.Time // when the dropping replica stops answering (zero: never)
	recs     [3][2]*telemetry.Recorder
	reps     [3]*fleet.Reporter // reps[0] is nil: the leader reads its own
	g        *fleet.Gatherer

	dropWeight float64 // canary weight (percent) when the replica crashed; -1 before
}

// fleetOutcome is what a fleet run adds to its rolloutOutcome.
type fleetOutcome struct {
	// DropSec is when the replica crashed (seconds from the start, its last
	// step included; -1: it did not, the rollout ended first or none drops),
	// DropWeight the canary's weight then (percent).
	DropSec    float64 `json:"drop_sec"`
	DropWeight float64 `json:"drop_weight"`
	// MissingAfter is the seconds from the crash to the first look whose
	// evidence said the replica was missing (-1: none did); Missing is that
	// look's coverage.
	MissingAfter float64 `json:"missing_after_sec"`
	Missing      string  `json:"missing,omitempty"`
	// Stage1Judged is the canary requests the first stage judged at its last
	// look (Rollout.StageRequests, the fleet's as gathered); Stage1Served the
	// canary requests every replica served by then.
	Stage1Judged int64 `json:"stage1_judged"`
	Stage1Served int64 `json:"stage1_served"`
}

// newFleetHarness is the harness of a fleet run: the leader's, with the
// gatherer of the two other replicas as its controller's Options.Fleet.
func newFleetHarness(ctx context.Context, dir string, s rolloutScenario) (*harness, *fleetSim, error) {
	f := &fleetSim{setup: *s.fleet, interval: fleet.DefaultInterval, start: rEpoch.Add(rWarmup), dropWeight: -1}
	if f.setup.drop > 0 {
		f.deadAt = f.start.Add(f.setup.dropAt + f.interval)
	}
	h, err := newHarnessWith(ctx, dir, "fleet-", func(h *harness, o *rollout.Options) {
		f.clock = h.clock
		f.recs[0] = [2]*telemetry.Recorder{h.tel.Recorder(rEndpoint, rStable), h.tel.Recorder(rEndpoint, rCanary)}
		for i := 1; i < len(f.recs); i++ {
			reg := telemetry.NewRegistry()
			f.recs[i] = [2]*telemetry.Recorder{reg.Recorder(rEndpoint, rStable), reg.Recorder(rEndpoint, rCanary)}
			f.reps[i] = fleet.NewReporter(f.setup.ids[i], reg, nil, h.clock.Now)
		}
		f.g = fleet.NewGatherer(fleet.GatherOptions{Self: f.setup.ids[0], Peers: f.peers, Ask: f.ask, Interval: f.interval, Now: h.clock.Now})
		o.Fleet = f.g
	})
	if err != nil {
		return nil, nil, err
	}
	return h, f, nil
}

// alive reports whether replica i serves and answers at now.
func (f *fleetSim) alive(i int, now time.Time) bool {
	return i != f.setup.drop || f.deadAt.IsZero() || now.Before(f.deadAt)
}

// listedAt reports whether replica i is in the fleet's list at now.
func (f *fleetSim) listedAt(i int, now time.Time) bool {
	return i != f.setup.drop || f.deadAt.IsZero() || now.Before(f.deadAt.Add(f.setup.listed))
}

// peers is the fleet's list (GatherOptions.Peers).
func (f *fleetSim) peers(context.Context) ([]fleet.Peer, error) {
	now := f.clock.Now()
	out := make([]fleet.Peer, 0, len(f.setup.ids))
	for i, id := range f.setup.ids {
		if f.listedAt(i, now) {
			out = append(out, fleet.Peer{ID: id, AdminURL: "http://" + id + ".invalid:8081"})
		}
	}
	return out, nil
}

// ask is a pull of one replica (GatherOptions.Ask): its Reporter's answer,
// or the error of a replica that crashed.
func (f *fleetSim) ask(_ context.Context, p fleet.Peer, req fleet.EvidenceRequest) (fleet.EvidenceAnswer, error) {
	for i, id := range f.setup.ids {
		if id != p.ID || f.reps[i] == nil {
			continue
		}
		if !f.alive(i, f.clock.Now()) {
			return fleet.EvidenceAnswer{}, fmt.Errorf("call replica %s: dial tcp: connect: connection refused", p.ID)
		}
		return f.reps[i].Answer(req)
	}
	return fleet.EvidenceAnswer{}, fmt.Errorf("no replica %s", p.ID)
}

// pick draws the replica the load balancer sends a request to at now: by the
// shares of the replicas alive.
func (f *fleetSim) pick(rng *rand.Rand, now time.Time) int {
	total := 0.0
	for i, s := range f.setup.shares {
		if f.alive(i, now) {
			total += s
		}
	}
	u := rng.Float64() * total
	last := 0
	for i, s := range f.setup.shares {
		if !f.alive(i, now) {
			continue
		}
		if u < s {
			return i
		}
		u -= s
		last = i
	}
	return last
}

// serve draws and records second t's requests over the replicas at the
// canary's weight, in steps of the gatherer's Interval, pulling at the end of
// every step but the last (see the file's comment). It returns the canary's
// requests and errors, counted from the start (t ≥ 0).
func (f *fleetSim) serve(ctx context.Context, rng *rand.Rand, w world, t int, weight float64) (canaryReqs, canaryErrs int64) {
	steps := int(time.Second / f.interval)
	mu := w.rate(t) / float64(steps)
	ps, pc := w.errRates(t)
	for i := range steps {
		now := f.clock.Now()
		if f.dropWeight < 0 && !f.deadAt.IsZero() && !now.Before(f.deadAt) {
			f.dropWeight = weight * 100
		}
		from := now.UnixNano()
		for range poisson(rng, mu) {
			rep := f.pick(rng, now)
			canary, status, lat := w.request(rng, t, weight, ps, pc)
			arm := 0
			if canary {
				arm = 1
				if t >= 0 {
					canaryReqs++
					if status == 500 {
						canaryErrs++
					}
				}
			}
			rc := f.recs[rep][arm]
			rc.Begin()
			rc.Observe(telemetry.Observation{Now: from + rng.Int64N(int64(f.interval)), Status: status, Latency: lat, TTFB: lat})
		}
		f.clock.add(f.interval)
		if i < steps-1 {
			f.g.Pull(ctx)
		}
	}
	return canaryReqs, canaryErrs
}

// looked records what a fleet run shows at the look sec seconds after the
// start: served is the canary requests every replica served so far.
func (f *fleetSim) looked(out *rolloutOutcome, r rollout.Rollout, sec int, served int64) {
	fo := out.Fleet
	if fo == nil {
		fo = &fleetOutcome{DropSec: -1, MissingAfter: -1}
		out.Fleet = fo
	}
	now := f.clock.Now()
	if fo.DropSec < 0 && !f.deadAt.IsZero() && !now.Before(f.deadAt) {
		fo.DropSec, fo.DropWeight = f.deadAt.Sub(f.start).Seconds(), f.dropWeight
	}
	if fo.DropSec >= 0 && fo.MissingAfter < 0 && r.Evidence != nil && r.Evidence.Reporting < r.Evidence.Of {
		fo.MissingAfter = float64(sec) - fo.DropSec
		fo.Missing = fmt.Sprintf("%d of %d", r.Evidence.Reporting, r.Evidence.Of)
		for _, m := range r.Evidence.Missing {
			fo.Missing += fmt.Sprintf(", %s missing (gone: %v)", m.ID, m.Gone)
		}
	}
	if r.Stage == 0 && (r.Phase == rollout.PhaseProgressing || r.Phase == rollout.PhasePaused) {
		fo.Stage1Judged, fo.Stage1Served = int64(r.StageRequests), served
	}
}

// fleetSummary is a fleet scenario's own numbers.
type fleetSummary struct {
	Replicas string  `json:"replicas"` // "gw-30 (leader) 30%, …"
	Alpha    float64 `json:"alpha"`
	// FalseRollbacks: identical versions rolled back (every rollback is
	// false here); WithinAlpha: the share is at most Alpha.
	FalseRollbacks share `json:"false_rollbacks"`
	WithinAlpha    bool  `json:"within_alpha"`
	// Dropped: runs in which the replica crashed (the rollout had not
	// ended), by the stage it crashed in; RolledBackAfterDrop: rollbacks
	// after the crash.
	Dropped             int            `json:"dropped"`
	DroppedByStage      map[string]int `json:"dropped_by_stage"`
	RolledBackAfterDrop int            `json:"rolled_back_after_drop"`
	// MissingAfterMedian/Max: seconds from the crash to the first look
	// whose evidence named the replica missing, over the dropped runs;
	// MissingSeen counts those runs.
	MissingSeen        int     `json:"missing_seen"`
	MissingAfterMedian float64 `json:"missing_after_sec_median"`
	MissingAfterMax    float64 `json:"missing_after_sec_max"`
	// Stage1JudgedMedian: the median over runs of the first stage's canary
	// requests judged over those the fleet served, at its last look.
	Stage1JudgedMedian float64 `json:"stage1_judged_share_median"`
}

func (r rolloutResult) fleetSummary() *fleetSummary {
	fs := r.Scenario.fleet
	if fs == nil {
		return nil
	}
	n := r.n()
	var names []string
	for i, id := range fs.ids {
		w := ""
		if i == 0 {
			w = " (leader)"
		}
		names = append(names, fmt.Sprintf("%s%s %.0f%%", id, w, 100*fs.shares[i]))
	}
	s := &fleetSummary{Replicas: strings.Join(names, ", "), Alpha: spec.DefaultAlpha, DroppedByStage: map[string]int{}}
	k := r.count(rolledBack)
	s.FalseRollbacks = newShare(k, n)
	s.WithinAlpha = float64(k) <= s.Alpha*float64(n)
	var missing, judged []float64
	for _, o := range r.Runs {
		fo := o.Fleet
		if fo == nil {
			continue
		}
		if fo.DropSec >= 0 {
			s.Dropped++
			s.DroppedByStage[pctKey(fo.DropWeight)]++
			if rolledBack(o) && float64(o.RolledBackSec) > fo.DropSec {
				s.RolledBackAfterDrop++
			}
		}
		if fo.MissingAfter >= 0 {
			missing = append(missing, fo.MissingAfter)
		}
		if fo.Stage1Served > 0 {
			judged = append(judged, float64(fo.Stage1Judged)/float64(fo.Stage1Served))
		}
	}
	s.MissingSeen = len(missing)
	s.MissingAfterMedian = quantile(missing, 0.5)
	s.MissingAfterMax = quantile(missing, 1)
	s.Stage1JudgedMedian = quantile(judged, 0.5)
	return s
}

// reportFleet prints the fleet scenarios' table, with the one-gateway
// identical scenario (R1) beside them when it ran.
func reportFleet(w io.Writer, results []rolloutResult) {
	var rows []rolloutResult
	var one *rolloutResult
	for i, r := range results {
		switch {
		case r.Scenario.fleet != nil:
			rows = append(rows, r)
		case r.Scenario.slug == "aa-steady":
			one = &results[i]
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Several replicas (cluster mode): identical versions, 200 req/s over three gateways whose load balancer shares are 60/30/10, the leader")
	fmt.Fprintln(w, "the 30% one, judging every replica's parts (fleet.Gatherer pulling every 250 ms; Look once a second). A replica that drops out crashes 60 s")
	fmt.Fprintln(w, "after the start (+1 pull): its pulls fail, its share goes to the others, it leaves the fleet's list 15 s later (its lease).")
	fmt.Fprintln(w, "False rollback = any rollback (the versions are identical); α is the default plan's.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | runs | false rollbacks [95% CI] | α | ≤ α | … after the crash | promoted | to 100%, min median / p90 | crashed during (stage: runs) | named missing after, s median / max | stage 1: canary req. judged / served, median |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|")
	row := func(r rolloutResult) {
		s := r.summary()
		f := s.Fleet
		within := "no"
		if f == nil || f.WithinAlpha {
			within = "yes"
		}
		alpha, after, crashed, named, judged := fmt.Sprint(spec.DefaultAlpha), "–", "–", "–", "–"
		fr := s.RolledBack
		if f != nil {
			fr = f.FalseRollbacks
			if r.Scenario.fleet.drop > 0 {
				after = fmt.Sprint(f.RolledBackAfterDrop)
				crashed = fmt.Sprintf("%d of %d%s", f.Dropped, s.Runs, fmtStages(f.DroppedByStage))
				named = fmt.Sprintf("%s / %s (%d runs)", fmtMin1(f.MissingAfterMedian), fmtMin1(f.MissingAfterMax), f.MissingSeen)
			}
			judged = fmt.Sprintf("%.3f", f.Stage1JudgedMedian)
		}
		fmt.Fprintf(w, "| %s %s | %d | %s | %s | %s | %s | %s | %s / %s | %s | %s | %s |\n",
			s.ID, s.Name, s.Runs, fr, alpha, within, after, s.Promoted, fmtMin1(s.PromotedMinutesMedian), fmtMin1(s.PromotedMinutesP90),
			crashed, named, judged)
	}
	if one != nil {
		row(*one)
	}
	for _, r := range rows {
		row(r)
	}
}

// fleetTargets are issue 20's targets on the fleet scenarios.
func fleetTargets() []rolloutTarget {
	var out []rolloutTarget
	for _, s := range fleetScenarios(rolloutScenario{}) {
		if s.fleet.drop == 0 {
			continue
		}
		out = append(out, rolloutTarget{s.slug + "-frr", s.slug,
			fmt.Sprintf("identical versions over 3 replicas (60/30/10), the %.0f%% one dropping out mid-stage: false rollbacks ≤ α = %v", 100*s.fleet.shares[s.fleet.drop], spec.DefaultAlpha),
			atMost(spec.DefaultAlpha, rolledBack)})
	}
	return out
}
