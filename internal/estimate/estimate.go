// Package estimate tells, before a rollout starts, how long each of its
// stages and the whole rollout will take at the endpoint's recent traffic,
// and warns when a stage cannot decide within its progress deadline.
//
// The estimate is a simulation of the real decision: a handful of seeded
// rollouts of a canary identical to the stable (the stable's error rate,
// latencies resampled from its recent latency sketch) through the real
// analysis.Analyzer with the plan's stages, weights, bakes, minimum
// requests, warm-up and gates. A stage ends where the rollout controller
// would advance it (rollout.stepLive): every gate passed, the stage baked
// at least its bake and served at least its minimum canary requests. Each
// stage's time is the median over the runs, with a low and high range (the
// runs' 10th and 90th percentiles). The result is what an identical canary
// takes: a worse one is rolled back sooner, a better one promoted about as
// fast.
//
// The slices are a second, as the controller looks, as long as a stage is
// short; in a long one they grow with the time elapsed (see sim.span), so
// an estimate costs tens of milliseconds however long the stages; every
// stage is bounded (Options.MaxStage, 24 h simulated), and no traffic at
// all is answered without simulating. The same inputs give the same
// estimate (fixed seeds).
//
// Not in the total: the shadow phase, estimated separately
// (Estimate.Shadow), and the final bake at 100% (Estimate.FinalBakeSeconds,
// a fixed time); Estimate.EndSeconds adds them. Not estimated: the
// confirm-promotion webhook's answer, pauses and manual actions.
package estimate

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Traffic is the endpoint's recent traffic the estimate extrapolates.
type Traffic struct {
	// RequestsPerSecond is the endpoint's split-routed requests per second
	// (every deployment's: the rate the stages share out).
	RequestsPerSecond float64 `json:"requests_per_second"`
	// ErrorRate is the stable's split error rate (5xx), a fraction.
	ErrorRate float64 `json:"error_rate"`
	// Stable is the stable's recent Summary (the last minute, as the
	// controller fixes the first stage's latency thresholds from): the
	// latencies are resampled from its sketch, and it is the first stage's
	// threshold window. With fewer than 20 latencies a lognormal of the
	// same median (20 ms without any) and sigma 0.4 stands in (Notes says
	// so).
	Stable telemetry.Summary `json:"-"`
	// Mirror is the percent of live requests copied to the canary during
	// the live stages (the endpoint's mirror setting, or the plan's shadow
	// mirror when it keeps it): only match_rate gates read it.
	Mirror spec.Percent `json:"mirror,omitempty"`
}

// FromSummary is the traffic of an endpoint whose stable holds all its
// traffic, from the stable's Summary over its Window (e.g. the last
// minute): its split requests per second and split error rate. (A
// Recorder's window includes the second under way, so the rate read at the
// start of a second is up to a 60th low over a minute.) At low traffic a
// minute holds few errors: an error rate over a longer window is better.
func FromSummary(stable telemetry.Summary) Traffic {
	t := Traffic{Stable: stable}
	n := stable.SplitRequests()
	if sec := stable.Window.Seconds(); sec > 0 {
		t.RequestsPerSecond = float64(n) / sec
	}
	if n > 0 {
		t.ErrorRate = float64(stable.SplitErrors) / float64(n)
	}
	return t
}

// Options tune the simulation; zero values are the defaults.
type Options struct {
	// Runs is the number of simulated rollouts. Zero: 11.
	Runs int
	// Seed is the base seed. Zero: a fixed one.
	Seed uint64
	// MaxStage bounds the simulated time of each stage: a stage that has
	// not decided by then is reported undecided. Zero: 24 h.
	MaxStage time.Duration
}

// Defaults of Options.
const (
	DefaultRuns     = 11
	DefaultSeed     = 17
	DefaultMaxStage = 24 * time.Hour
	// A stage's slices grow to 1/sliceStep of its time elapsed, but not
	// beyond fineEvents errors expected (or rare slow requests, at least a
	// thousandth of all), until 1/sliceStepLong of it is more (see span).
	sliceStep     = 10
	sliceStepLong = 60
	fineEvents    = 2
	// minLatencies is the fewest latencies Traffic.Stable must hold to be
	// resampled.
	minLatencies = 20
)

// Estimate is api.Estimate, the wire form.
type Estimate = api.Estimate

// Span is api.Span, the wire form.
type Span = api.Span

// StageEstimate is api.StageEstimate, the wire form.
type StageEstimate = api.StageEstimate

// ShadowEstimate is api.ShadowEstimate, the wire form.
type ShadowEstimate = api.ShadowEstimate

// Rollout estimates a rollout of plan (its defaults are filled in) at
// traffic t.
func Rollout(plan spec.Plan, t Traffic, o Options) (Estimate, error) {
	plan = plan.WithDefaults()
	if _, err := analysis.New(plan); err != nil {
		return Estimate{}, err
	}
	if err := t.check(); err != nil {
		return Estimate{}, err
	}
	if o.Runs <= 0 {
		o.Runs = DefaultRuns
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.MaxStage <= 0 {
		o.MaxStage = DefaultMaxStage
	}
	s := newSim(plan, t, o)
	e := Estimate{RequestsPerSecond: t.RequestsPerSecond, ErrorRate: t.ErrorRate, Runs: o.Runs, MaxStageSeconds: o.MaxStage.Seconds()}
	var runs []runResult
	if t.RequestsPerSecond > 0 {
		var failed []runResult
		for n := 0; len(runs) < o.Runs && n < 2*o.Runs; n++ {
			r := s.run(o.Seed, n)
			if r.failed {
				failed = append(failed, r)
				continue
			}
			runs = append(runs, r)
		}
		e.Notes = append(e.Notes, s.notes...)
		if len(failed) > 0 {
			f := failed[0]
			msg := fmt.Sprintf("%d of %d simulated rollouts of a canary identical to the stable were rolled back and left out (first: %s: %s)",
				len(failed), len(failed)+len(runs), stageLabel(plan, f.failStage), f.reason)
			if len(failed) > len(runs) {
				e.Warnings = append(e.Warnings, msg+": a canary as good as the stable would likely be rolled back; check the gates' limits against the stable's own numbers")
			} else {
				e.Notes = append(e.Notes, msg)
			}
		}
	}
	e.Runs = len(runs)
	assemble(&e, plan, s, runs, t)
	e.Text = summary(e)
	return e, nil
}

func (t Traffic) check() error {
	var errs []error
	if !(t.RequestsPerSecond >= 0) || math.IsInf(t.RequestsPerSecond, 0) {
		errs = append(errs, fmt.Errorf("requests per second %v: want a finite number, at least 0", t.RequestsPerSecond))
	}
	if !(t.ErrorRate >= 0 && t.ErrorRate <= 1) {
		errs = append(errs, fmt.Errorf("error rate %v: want a fraction from 0 to 1", t.ErrorRate))
	}
	if t.Mirror < 0 || t.Mirror > spec.Full {
		errs = append(errs, fmt.Errorf("mirror %s%%: want 0 to 100", t.Mirror))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("estimate: %w", err)
	}
	return nil
}

// newSim prepares the simulation shared by the runs.
func newSim(plan spec.Plan, t Traffic, o Options) *sim {
	s := &sim{plan: plan, rate: t.RequestsPerSecond, errRate: t.ErrorRate, recent: t.Stable, maxStage: o.MaxStage, judged: len(plan.Stages)}
	if ev := t.RequestsPerSecond * max(t.ErrorRate, 0.001); ev > 0 {
		s.fine = time.Duration(min(fineEvents/ev, o.MaxStage.Seconds()) * float64(time.Second))
	}
	if n := len(plan.Stages); n > 1 && plan.Stages[n-1].Weight >= spec.Full {
		s.judged = n - 1
	}
	if t.Stable.Latency.Count() >= minLatencies {
		s.lat = modelOf(t.Stable.Latency)
	} else {
		med := 20 * time.Millisecond
		if t.Stable.Latency.Count() > 0 {
			med = t.Stable.Latency.Quantile(0.5)
		}
		s.lat = lognormalModel(med, 0.4)
		s.notes = append(s.notes, fmt.Sprintf("the stable's summary holds %d latencies, too few to resample: latencies assumed lognormal with a median of %s and sigma 0.4",
			t.Stable.Latency.Count(), med.Round(time.Microsecond)))
	}
	if n := t.Stable.SplitRequests(); n > 0 && t.Stable.SplitErrors < 10 && t.ErrorRate == float64(t.Stable.SplitErrors)/float64(n) {
		s.notes = append(s.notes, fmt.Sprintf("the stable's error rate comes from %d errors in %d requests: the time the error evidence takes is uncertain; an error rate over a longer window is better",
			t.Stable.SplitErrors, n))
	}
	s.ttfb = s.lat
	if t.Stable.TTFB.Count() >= minLatencies {
		s.ttfb = modelOf(t.Stable.TTFB)
	}
	for _, g := range plan.Gates {
		switch g.Type {
		case spec.GateErrorRate:
			s.window = true
		case spec.GateLatency:
			s.window, s.full = true, true
		case spec.GateTTFB:
			s.window, s.full, s.ttfbGate = true, true, true
		case spec.GateMatchRate:
			s.match = true
		}
	}
	if s.match {
		mirror := t.Mirror
		if sh := plan.Shadow; sh != nil && sh.KeepMirror && mirror == 0 {
			mirror = sh.Mirror
		}
		s.mirror = mirror.Fraction()
		s.notes = append(s.notes, fmt.Sprintf("match_rate gates: %s%% of requests assumed copied to the canary and every copy to match", mirror))
	}
	return s
}

// assemble turns the runs into the estimate.
func assemble(e *Estimate, plan spec.Plan, s *sim, runs []runResult, t Traffic) {
	deadline := plan.ProgressDeadline.D()
	bound := s.maxStage.Seconds()
	e.WithinDeadlines = true
	totals := make([]outcome, len(runs))
	for i := range plan.Stages {
		st := plan.Stages[i]
		se := StageEstimate{Stage: i + 1, Weight: st.Weight, BakeSeconds: plan.StageBake(i).Seconds(), MinRequests: plan.StageMinRequests(i),
			DeadlineSeconds: deadline.Seconds(), CanaryPerSecond: t.RequestsPerSecond * st.Weight.Fraction()}
		if i >= s.judged {
			se.Promotion, se.WithinDeadline = true, true
			e.Stages = append(e.Stages, se)
			continue
		}
		outs := make([]outcome, len(runs))
		var reqs []float64
		limits := map[string]int{}
		for k, r := range runs {
			outs[k] = outcome{sec: bound}
			if i < len(r.stages) {
				sr := r.stages[i]
				if sr.decided {
					outs[k] = outcome{sec: sr.dur.Seconds(), decided: true}
					reqs = append(reqs, float64(sr.canary))
					limits[sr.limit]++
				} else {
					outs[k].sec = sr.dur.Seconds()
				}
			}
			tot := &totals[k]
			tot.sec += outs[k].sec
			if i == 0 {
				tot.decided = true
			}
			tot.decided = tot.decided && outs[k].decided
		}
		se.Time = spanOf(outs, bound)
		if len(reqs) > 0 {
			se.CanaryRequests = int64(math.Round(median(reqs)))
		}
		se.LimitedBy = mostOf(limits)
		se.DeadlineRequests = plan.ProgressDeadlineRequests
		se.WithinDeadline = !se.Time.Undecided && (deadline <= 0 || se.Time.Seconds <= deadline.Seconds()) &&
			(se.DeadlineRequests <= 0 || se.CanaryRequests <= int64(se.DeadlineRequests))
		if len(runs) > 0 {
			se.Warning = stageWarning(plan, se, t.RequestsPerSecond, deadline, s.maxStage)
		}
		if se.Warning != "" {
			e.Warnings = append(e.Warnings, se.Warning)
		}
		e.WithinDeadlines = e.WithinDeadlines && se.WithinDeadline
		e.Stages = append(e.Stages, se)
	}
	e.Total = spanOf(totals, bound*float64(s.judged))
	if t.RequestsPerSecond == 0 {
		first := stageLabel(plan, 0)
		if plan.Shadow != nil {
			first = "the shadow phase"
		}
		why := fmt.Sprintf("the rollout would %s in %s after its %s progress deadline", deadlineAction(plan), first, words(deadline))
		if deadline <= 0 {
			why = fmt.Sprintf("the rollout would wait in %s for ever: its progress deadline is in canary requests, and none come", first)
		}
		e.Warnings = append([]string{"no traffic (0 requests/s): no stage can ever decide; " + why}, e.Warnings...)
	}
	if sh := plan.Shadow; sh != nil {
		e.Shadow = shadowEstimate(plan, *sh, t.RequestsPerSecond, deadline)
		if e.Shadow.Warning != "" {
			e.Warnings = append([]string{e.Shadow.Warning}, e.Warnings...)
		}
		e.WithinDeadlines = e.WithinDeadlines && e.Shadow.WithinDeadline
	}
	e.FinalBakeSeconds = plan.FinalBake.D().Seconds()
	e.EndSeconds = e.Total.Seconds + e.FinalBakeSeconds
	undecided := e.Total.Undecided
	if e.Shadow != nil {
		e.EndSeconds += e.Shadow.Seconds
		undecided = undecided || e.Shadow.Undecided
	}
	if to := plan.Timeout.D(); to > 0 && (undecided || e.EndSeconds > to.Seconds()) {
		act := "be rolled back"
		if plan.OnTimeout == spec.DeadlinePause {
			act = "pause"
		}
		need := "about " + analysis.Roughly(time.Duration(e.EndSeconds*float64(time.Second)))
		if undecided {
			need = "more than " + analysis.Roughly(time.Duration(e.EndSeconds*float64(time.Second)))
		}
		e.Warnings = append(e.Warnings, fmt.Sprintf("the rollout needs %s to its end at %s requests/s, longer than its %s timeout: it will %s then; raise timeout or traffic",
			need, rateText(t.RequestsPerSecond), words(to), act))
	}
	if plan.ConfirmPromotion != nil {
		e.Notes = append(e.Notes, "the wait for the confirm-promotion webhook before 100% is not included")
	}
}

// outcome is one run's time for a stage (or the total), decided or not.
type outcome struct {
	sec     float64
	decided bool
}

// spanOf is the median and 10th and 90th percentiles of outs (nearest
// rank), an undecided outcome ranking after every decided one. Undecided
// values are lower bounds (each at most bound).
func spanOf(outs []outcome, bound float64) Span {
	var sp Span
	if len(outs) == 0 {
		return Span{Seconds: bound, LowSeconds: bound, HighSeconds: bound, Undecided: true}
	}
	s := slices.Clone(outs)
	sort.SliceStable(s, func(i, j int) bool {
		if s[i].decided != s[j].decided {
			return s[i].decided
		}
		return s[i].sec < s[j].sec
	})
	at := func(q float64) outcome { return s[min(len(s)-1, int(math.Floor(q*float64(len(s)))))] }
	m := at(0.5)
	sp.Seconds, sp.Undecided = m.sec, !m.decided
	sp.LowSeconds, sp.HighSeconds = at(0.1).sec, at(0.9).sec
	for _, o := range outs {
		if o.decided {
			sp.Decided++
		}
	}
	return sp
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// mostOf is the most frequent key (ties: bake, min_requests, evidence).
func mostOf(m map[string]int) string {
	best := ""
	for _, k := range []string{LimitBake, LimitMinRequests, LimitEvidence} {
		if m[k] > 0 && (best == "" || m[k] > m[best]) {
			best = k
		}
	}
	return best
}

func shadowEstimate(plan spec.Plan, sh spec.ShadowPhase, rate float64, deadline time.Duration) *ShadowEstimate {
	se := &ShadowEstimate{Compared: sh.MinCompared, DeadlineSeconds: deadline.Seconds()}
	perSec := rate * sh.Mirror.Fraction()
	if perSec <= 0 {
		se.Undecided = true
	} else {
		// The controller looks every second.
		se.Seconds = math.Max(1, math.Ceil(float64(sh.MinCompared)/perSec))
	}
	se.WithinDeadline = !se.Undecided && (deadline <= 0 || se.Seconds <= deadline.Seconds())
	if !se.WithinDeadline && rate > 0 {
		se.Warning = fmt.Sprintf("the shadow phase needs about %s at %s requests/s (%d compared copies of %s%% of requests), longer than its %s progress deadline: it will %s; raise progress_deadline, shadow.mirror or traffic, or lower shadow.min_compared",
			analysis.Roughly(time.Duration(se.Seconds*float64(time.Second))), rateText(rate), sh.MinCompared, sh.Mirror, words(deadline), deadlineAction(plan))
	}
	return se
}
