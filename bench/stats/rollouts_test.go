package main

import (
	"bytes"
	"context"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

// reducedRollouts is the reduced form of the rollouts suite that `go test` runs
// (with -race in `make test`): a few scenarios, few seeded runs, shorter horizons
// where the checks allow. A run ends at the rollback or the promotion, so the
// horizon only costs in runs that stall.
var reducedRollouts = []struct {
	slug    string
	runs    int
	horizon time.Duration // after the start (pause scenarios: after the jump); 0: the scenario's
}{
	{"err-10pct", 20, 10 * time.Minute},
	{"err-2pct", 20, 0},
	{"tail-600ms", 20, 0},
	{"pause-10m", 8, 0},
	{"aa-steady", 20, 20 * time.Minute},
	{"better", 8, 20 * time.Minute},
	{"margin", 20, 20 * time.Minute},
	{"margin-swings", 8, 20 * time.Minute},
	{"body-shift", 10, 20 * time.Minute},
	{"slow-1.05", 10, 20 * time.Minute},
	{"pause-60m", 4, 0},
	{"fleet-drop10", 6, 20 * time.Minute},
}

// reducedSeed is the base seed of the reduced suite: every run is the same on
// every machine.
const reducedSeed = 16

// targetChecks are the redesign's targets (rolloutTargets, issue 16) with whether
// the reduced test enforces them. Only those that today's analysis meets, in the
// full suite and in these seeded runs, are enforced; the others are evaluated and
// logged, so that whoever makes one pass sees it and can flip its flag. A target
// whose scenario is not in reducedRollouts cannot be enforced here (the test says
// so); the full suite (`go run ./bench/stats -suite rollouts`) measures them all.
//
// Not enforced, with the full suite's numbers (seed 1, at 8a5e3d3; the tables,
// before and after the redesign, are in issue 16's notes, rollouts-baseline.md):
//   - err2-median: met in the full suite (median 1,103 canary requests over 1,000
//     runs), but 1,439 in the 20 seeded runs here: too close to 1,200 to hold on 20.
//
// With few runs a share target leaves little room: ≥ 95% of 20 runs allows one
// miss, ≥ 95% of 4 (pause60-within60) none. If an enforced target fails here after
// a change while the full suite still meets it, add runs rather than drop the flag.
var targetChecks = []struct {
	name     string
	enforced bool
}{
	{"aa-promoted", true},
	{"aa-promoted-median", true},
	{"err2-before25", true},
	{"err2-median", false},
	{"tail-rolled-back", true},
	{"tail-median", true},
	{"body-before50", true},
	{"slow-promoted", true},
	{"better-promoted", true},
	{"better-median", true},
	{"margin-promoted", true},
	{"margin-swings-promoted", true},
	{"pause10-within60", true},
	{"pause60-within60", true},
	{"fleet-drop10-frr", true},
	{"fleet-drop60-frr", false}, // the full suite's (R18); its scenario is not run here
}

// TestRolloutsReduced runs whole rollouts through the real controller, control
// service, bbolt store and telemetry (rollouts.go) and checks what users of the
// default plan rely on today, then the redesign's targets (targetChecks). It asserts
// no timings: every number is simulated.
func TestRolloutsReduced(t *testing.T) {
	var scs []rolloutScenario
	var runs []int
	for _, rr := range reducedRollouts {
		s, err := selectRollouts(rr.slug)
		if err != nil {
			t.Fatal(err)
		}
		sc := s[0]
		if rr.horizon > 0 {
			sc.horizon = rr.horizon
		}
		scs = append(scs, sc)
		runs = append(runs, rr.runs)
	}
	results, err := runRollouts(context.Background(), scs, runs, reducedSeed, runtime.GOMAXPROCS(0), nil)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	reportRollouts(&buf, results)
	t.Log("\n" + buf.String())
	get := func(slug string) rolloutResult {
		for _, r := range results {
			if r.Scenario.slug == slug {
				return r
			}
		}
		t.Fatalf("scenario %s was not run", slug)
		return rolloutResult{}
	}

	// Every run: the controller left the traffic where its phase says, and paused
	// only for reasons the scenario explains.
	for _, r := range results {
		for i, o := range r.Runs {
			switch {
			case rolledBack(o) && o.FinalCanaryWeight != 0:
				t.Errorf("%s run %d: rolled back, but the canary still has %v%% of traffic", r.Scenario.id, i, o.FinalCanaryWeight)
			case promoted(o) && o.FinalCanaryWeight != 100:
				t.Errorf("%s run %d: promoted, but the canary has %v%% of traffic", r.Scenario.id, i, o.FinalCanaryWeight)
			case running(o) && o.FinalCanaryWeight != o.StageWeight:
				t.Errorf("%s run %d: %s at the %v%% stage, but the canary has %v%% of traffic", r.Scenario.id, i, o.Phase, o.StageWeight, o.FinalCanaryWeight)
			}
			if o.OtherPauses > 0 {
				t.Errorf("%s run %d: %d pauses for an unexpected reason (last reason: %s)", r.Scenario.id, i, o.OtherPauses, o.Reason)
			}
			if o.AbortedSec >= 0 {
				t.Errorf("%s run %d: aborted (%s); nobody aborts in the simulation", r.Scenario.id, i, o.Reason)
			}
			// Routing is independent per request at the configured weight: the
			// sample-ratio check (alpha 0.001 per stage) must stay silent.
			if o.SRMSec >= 0 {
				t.Errorf("%s run %d: sample-ratio halt at %v%% after %d s, with correct routing", r.Scenario.id, i, o.SRMWeight, o.SRMSec)
			}
		}
	}

	// A canary answering 10% errors instead of 1% is rolled back in its first
	// stage, at 5%, in every run.
	e10 := get("err-10pct")
	for i, o := range e10.Runs {
		if !rolledBack(o) || o.RollbackWeight != 5 {
			t.Errorf("err-10pct run %d: %s at %v%% (%s), want rolled back at 5%%", i, o.Phase, o.StageWeight, o.Reason)
		}
	}

	// A pause stops progress, never protection: a canary paused by hand whose
	// errors jump from 1% to 10% is rolled back while paused, in every run. (A run
	// may also roll the healthy paused canary back before the jump: a false
	// rollback, within the gate's alpha; it is logged, not counted as a detection.)
	p10 := get("pause-10m")
	jump := int(p10.Scenario.jumpAfter / time.Second)
	for i, o := range p10.Runs {
		switch {
		case !rolledBack(o):
			t.Errorf("pause-10m run %d: %s (%s) 10 minutes after the error jump, want rolled back", i, o.Phase, o.Reason)
		case o.RolledBackSec <= jump:
			t.Logf("pause-10m run %d: the healthy paused canary was rolled back %d s after the start, before the jump at %d s (%s)", i, o.RolledBackSec, jump, o.Reason)
		}
	}

	// Identical versions are never rolled back in these seeded runs. (The sequential
	// gate rolls back an identical canary with probability at most alpha = 0.05 per
	// rollout; the full suite measures the rate with its interval.)
	for _, slug := range []string{"aa-steady", "fleet-drop10"} {
		for i, o := range get(slug).Runs {
			if rolledBack(o) {
				t.Errorf("%s run %d: identical versions rolled back after %d s: %s", slug, i, o.RolledBackSec, o.Reason)
			}
		}
	}

	// Several replicas (fleet.go): the leader judged what the whole fleet
	// served, not its own 30%, and once a replica crashed its looks said the
	// evidence was missing it within the gatherer's grace (2 s), a look (1 s)
	// and the pull it missed.
	dropped := 0
	for i, o := range get("fleet-drop10").Runs {
		f := o.Fleet
		switch {
		case f == nil:
			t.Errorf("fleet-drop10 run %d: no fleet outcome", i)
			continue
		case f.Stage1Served == 0 || float64(f.Stage1Judged) < 0.95*float64(f.Stage1Served):
			t.Errorf("fleet-drop10 run %d: the first stage judged %d canary requests of the %d the fleet served", i, f.Stage1Judged, f.Stage1Served)
		}
		if f.DropSec >= 0 {
			dropped++
			if f.MissingAfter < 0 || f.MissingAfter > 3.25 {
				t.Errorf("fleet-drop10 run %d: the replica crashed %.2f s in, named missing after %.2f s (%s)", i, f.DropSec, f.MissingAfter, f.Missing)
			}
		}
	}
	if dropped == 0 {
		t.Error("fleet-drop10: no run lasted until the replica crashed")
	}

	// The redesign's targets.
	byName := map[string]rolloutTarget{}
	for _, tg := range rolloutTargets() {
		byName[tg.name] = tg
	}
	if len(targetChecks) != len(byName) {
		t.Errorf("targetChecks lists %d targets, rolloutTargets has %d: list each once", len(targetChecks), len(byName))
	}
	var met, unmet []string
	for _, tc := range targetChecks {
		tg, ok := byName[tc.name]
		if !ok {
			t.Errorf("targetChecks: unknown target %q", tc.name)
			continue
		}
		var r *rolloutResult
		for i := range results {
			if results[i].Scenario.slug == tg.scenario {
				r = &results[i]
			}
		}
		if r == nil {
			if tc.enforced {
				t.Errorf("target %s is enforced, but its scenario %s is not in reducedRollouts", tc.name, tg.scenario)
			} else {
				t.Logf("target %s (%s): not enforced, scenario %s not run here", tc.name, tg.text, tg.scenario)
			}
			continue
		}
		got, ok := tg.check(*r)
		line := tc.name + " (" + tg.text + "): " + got
		switch {
		case tc.enforced && !ok:
			t.Errorf("target %s not met: %s", tc.name, line)
		case ok:
			met = append(met, line)
		default:
			unmet = append(unmet, line)
		}
		if !tc.enforced && ok {
			t.Logf("target %s is met in the reduced runs but not enforced: check it in the full suite, then enforce it", tc.name)
		}
	}
	t.Logf("targets met:\n  %s", strings.Join(met, "\n  "))
	t.Logf("targets not met (not enforced):\n  %s", strings.Join(unmet, "\n  "))
}

func TestRolloutScenarioModel(t *testing.T) {
	for _, tc := range []struct{ u, f float64 }{{0.1, 1.3}, {0.5, 1.3}, {0.7, 1.15}, {0.9, 1}, {0.99, 1}} {
		if got := bodyShiftFactor(tc.u); math.Abs(got-tc.f) > 1e-12 {
			t.Errorf("bodyShiftFactor(%v) = %v, want %v", tc.u, got, tc.f)
		}
	}
	scs, err := selectRollouts("aa-swings,R12,pause-60m")
	if err != nil {
		t.Fatal(err)
	}
	sw, msw, p60 := world{s: scs[0]}, world{s: scs[1]}, world{s: scs[2]}
	for t0 := 0; t0 < 3600; t0 += 60 {
		r := sw.rate(t0)
		if r < 50-1e-9 || r > 400+1e-9 {
			t.Fatalf("swings: rate %v at %d s, want 50..400", r, t0)
		}
		ps, pc := msw.errRates(t0)
		if math.Abs(ps-0.01*r/200) > 1e-12 || math.Abs(pc-1.5*ps) > 1e-12 {
			t.Fatalf("margin under swings at %d s (rate %v): stable %v, canary %v", t0, r, ps, pc)
		}
	}
	if _, pc := p60.errRates(3599); pc != 0.01 {
		t.Errorf("pause-60m: canary errors %v before the jump, want 0.01", pc)
	}
	if _, pc := p60.errRates(3600); pc != 0.10 {
		t.Errorf("pause-60m: canary errors %v at the jump, want 0.10", pc)
	}
	if got := scs[2].end(); got != 70*60 {
		t.Errorf("pause-60m ends at %d s, want 4200 (jump + 10 min)", got)
	}
	for reason, want := range map[string]string{
		"paused by hand": "hand",
		"no decision within the progress deadline of 10m0s (stage 1 of 4 at 5%)":       "deadline",
		"sample ratio mismatch, the canary's measured share does not match its weight": "srm",
		"traffic changed by hand (blue=100); resume to continue":                       "other",
	} {
		if got := classifyPause(reason); got != want {
			t.Errorf("classifyPause(%q) = %s, want %s", reason, got, want)
		}
	}
}
