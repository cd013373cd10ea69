package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Gateway is what the demo needs from a running gateway. The daemon
// satisfies it in process through a small adapter.
type Gateway interface {
	// StartRollout starts a rollout with the endpoint's configured plan.
	StartRollout(ctx context.Context, endpoint string, req rollout.StartRequest) (rollout.Rollout, error)
	// Rollout returns the endpoint's running rollout, or its last one.
	Rollout(ctx context.Context, endpoint string) (rollout.Rollout, error)
	// AbortRollout rolls the endpoint's running rollout back by hand.
	AbortRollout(ctx context.Context, endpoint string) (rollout.Rollout, error)
	// Traffic is the endpoint's live split.
	Traffic(ctx context.Context, endpoint string) (spec.Weights, error)
	// Metrics reports the endpoint over the last window.
	Metrics(ctx context.Context, endpoint string, window time.Duration) (telemetry.Report, error)
	// Served is how many split-routed requests a deployment answered
	// between from and to (to whole telemetry slices).
	Served(endpoint, deployment string, from, to time.Time) uint64
	// ProxyURL is the data plane's base URL, e.g. http://127.0.0.1:40123.
	ProxyURL() string
}

// Step is one rollout of the demo.
type Step struct {
	// Canary is the deployment rolled out.
	Canary string
	// Stable is the deployment it replaces. Empty: the one holding all
	// traffic.
	Stable string
	// Note says what to expect, e.g. "the good canary".
	Note string
}

// RunOptions configures the demo run. The zero value is the demo.
type RunOptions struct {
	// Endpoint is the gateway endpoint. Empty: "fraud".
	Endpoint string
	// Model is the model name in the predict path
	// /{Endpoint}/v1/models/{Model}:predict. Empty: "fraud".
	Model string
	// Steps are the rollouts, run one after the other. Empty: green (the
	// good canary) replaces blue, then red (the bad one) tries to replace
	// green.
	Steps []Step
	// Refresh is how often the live view is drawn. Zero: every second when
	// it redraws in place on a terminal, every 2 seconds otherwise.
	Refresh time.Duration
	// RPS and Workers configure the traffic generator. Zero: 1200 and 32.
	RPS, Workers int
	// Users, when positive, makes the generator send X-User-Id with that
	// many distinct users, for an endpoint with a sticky header. Zero: none.
	Users int
	// Seed makes the generated traffic reproducible.
	Seed uint64
	// Plain prints a new block at every refresh even on a terminal,
	// instead of redrawing in place.
	Plain bool
	// Keep leaves the gateway, its traffic and the dashboard up once the
	// rollouts have ended and the summary is printed, until ctx is done
	// (Ctrl-C).
	Keep bool
	// WarmUp is how long the traffic runs before the first rollout starts,
	// so that its estimate reads the endpoint's rate (a rollout started
	// with the traffic sees none, and warns that no stage can decide).
	// Zero: DefaultWarmUp.
	WarmUp time.Duration
}

// DefaultWarmUp is RunOptions.WarmUp's default.
const DefaultWarmUp = 3 * time.Second

// DefaultSteps are the demo's two rollouts.
var DefaultSteps = []Step{
	{Canary: "green", Stable: "blue", Note: "the good canary: as fast and as reliable as blue"},
	{Canary: "red", Stable: "green", Note: "the bad canary: 8% errors and twice as slow"},
}

func (o RunOptions) withDefaults() RunOptions {
	if o.Endpoint == "" {
		o.Endpoint = "fraud"
	}
	if o.Model == "" {
		o.Model = "fraud"
	}
	if len(o.Steps) == 0 {
		o.Steps = DefaultSteps
	}
	if o.RPS == 0 {
		o.RPS = 1200
	}
	if o.Workers == 0 {
		o.Workers = 32
	}
	if o.WarmUp == 0 {
		o.WarmUp = DefaultWarmUp
	}
	return o
}

func (o RunOptions) check() error {
	var errs []error
	for i, s := range o.Steps {
		if s.Canary == "" || s.Canary == s.Stable {
			errs = append(errs, fmt.Errorf("steps[%d]: canary %q must be named and differ from the stable", i, s.Canary))
		}
	}
	if o.Refresh < 0 {
		errs = append(errs, errors.New("refresh must not be negative"))
	}
	return errors.Join(errs...)
}

// StartModels starts the three demo model servers: Blue, Green and Red.
// The caller closes them; they also stop when ctx is done.
func StartModels(ctx context.Context) (blue, green, red *Model, err error) {
	var ms []*Model
	for _, o := range []ModelOptions{Blue(), Green(), Red()} {
		m, err := StartModel(ctx, o)
		if err != nil {
			for _, m := range ms {
				_ = m.Close()
			}
			return nil, nil, nil, err
		}
		ms = append(ms, m)
	}
	return ms[0], ms[1], ms[2], nil
}

// Outcome is how one rollout of the demo ended.
type Outcome struct {
	Rollout rollout.Rollout
	// CanaryRequests is what the canary served by the split during it.
	CanaryRequests uint64
	// Interrupted: the demo stopped before the rollout ended.
	Interrupted bool
}

// Run is `modelgate demo` once the gateway runs: it sends traffic to the
// endpoint, runs each step's rollout through the gateway's rollout
// controller until it ends, drawing a live view of the rollout (phase,
// stage, gates) and of every deployment (weight, measured share, rpm,
// errors, p99), prints how each ended and why, then a summary.
//
// The rollouts move by the endpoint's plan alone: how long they take is
// configuration. A rollout that pauses (say on a sample-ratio mismatch) is
// aborted, with its reason printed, so that the demo always ends.
//
// When ctx is done, Run stops the traffic, prints the summary so far and
// returns nil: an interrupted demo is not a failure. A running rollout is
// left as it is.
func Run(ctx context.Context, out io.Writer, gw Gateway, opts RunOptions) error {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	view := NewTable(out)
	if opts.Plain {
		view.Redraw = false
	}
	if opts.Refresh == 0 {
		opts.Refresh = 2 * time.Second
		if view.Redraw {
			opts.Refresh = time.Second
		}
	}
	target := strings.TrimRight(gw.ProxyURL(), "/") + "/" + opts.Endpoint + "/v1/models/" + opts.Model + ":predict"
	fmt.Fprintf(out, "sending %d requests/s to %s\n\n", opts.RPS, target)
	gen, err := Generate(ctx, GenOptions{URL: target, RPS: opts.RPS, Workers: opts.Workers, Users: opts.Users, Seed: opts.Seed})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer gen.Stop()
	warmUp(ctx, gen, opts)

	var outcomes []Outcome
	var runErr error
	for i, s := range opts.Steps {
		o, err := runStep(ctx, out, view, gw, opts, i, s)
		if o != nil {
			outcomes = append(outcomes, *o)
		}
		if err != nil {
			if ctx.Err() == nil {
				runErr = fmt.Errorf("demo rollout %d (%s): %w", i+1, s.Canary, err)
			}
			break
		}
	}
	if runErr != nil {
		gen.Stop()
		return runErr
	}
	if ctx.Err() != nil {
		fmt.Fprintf(out, "interrupted after %d of %d rollouts\n\n", finished(outcomes), len(opts.Steps))
	}
	if !opts.Keep || ctx.Err() != nil {
		return WriteSummary(out, outcomes, gen.Stop())
	}
	if err := WriteSummary(out, outcomes, gen.Stats()); err != nil {
		return err
	}
	// --keep: the traffic goes on, so that the dashboard's charts stay
	// live, until Ctrl-C.
	fmt.Fprintf(out, "\n--keep: the gateway, the dashboard and %d requests/s of traffic stay up until Ctrl-C\n", opts.RPS)
	<-ctx.Done()
	gen.Stop()
	return nil
}

// warmUp waits until the generator has had answers to opts.WarmUp's worth
// of requests, twice that time has passed (a slow gateway), or ctx ends.
func warmUp(ctx context.Context, gen *Generator, opts RunOptions) {
	want := uint64(opts.WarmUp.Seconds() * float64(opts.RPS))
	deadline := time.NewTimer(2 * opts.WarmUp)
	defer deadline.Stop()
	tick := time.NewTicker(min(opts.WarmUp/10, 100*time.Millisecond))
	defer tick.Stop()
	for {
		if st := gen.Stats(); st.OK+st.Failed >= want {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-tick.C:
		}
	}
}

func finished(os []Outcome) int {
	n := 0
	for _, o := range os {
		if !o.Interrupted {
			n++
		}
	}
	return n
}

// runStep runs one rollout to its end. The outcome is nil when the rollout
// could not start.
func runStep(ctx context.Context, out io.Writer, view *Table, gw Gateway, opts RunOptions, i int, s Step) (*Outcome, error) {
	if s.Stable != "" {
		// The step follows from the one before (red replaces green only
		// once green is promoted): say so rather than fail to start.
		w, err := gw.Traffic(ctx, opts.Endpoint)
		if err != nil {
			return nil, fmt.Errorf("traffic: %w", err)
		}
		if w[s.Stable] != spec.Full {
			fmt.Fprintf(out, "rollout %d of %d skipped: %s would replace %s, but %s does not hold all traffic\n\n",
				i+1, len(opts.Steps), s.Canary, s.Stable, s.Stable)
			return nil, nil
		}
	}
	r, err := gw.StartRollout(ctx, opts.Endpoint, rollout.StartRequest{Canary: s.Canary, Stable: s.Stable})
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	fmt.Fprintf(out, "rollout %d of %d (%s): %s replaces %s, %s\n", i+1, len(opts.Steps), r.ID, r.Canary, r.Stable, s.Note)
	fmt.Fprintf(out, "  plan: %s\n\n", PlanText(r.Plan))

	tick := time.NewTicker(opts.Refresh)
	defer tick.Stop()
	aborted := false
	shadow := r // the last look at the shadow phase, for its verdict
	// The shadow phase is looked at every shadowPoll, so that its verdict
	// (the rollout's reason as it leaves it) is caught before the next look
	// changes it; the view is still drawn every Refresh.
	poll := time.NewTicker(shadowPoll)
	defer poll.Stop()
	for {
		if r.Phase.Terminal() {
			break
		}
		if r.Phase == rollout.PhasePaused && !aborted {
			// The demo has nobody to resume it: say why and end it.
			fmt.Fprintf(out, "%s paused: %s\nthe demo aborts it\n\n", r.ID, r.Reason)
			view.Keep()
			aborted = true
			if r, err = gw.AbortRollout(ctx, opts.Endpoint); err != nil && ctx.Err() == nil {
				return nil, fmt.Errorf("abort: %w", err)
			}
			continue
		}
		var pollC <-chan time.Time
		if r.Stage == rollout.ShadowStage {
			pollC = poll.C
		}
		draw := true
		select {
		case <-ctx.Done():
			view.Keep()
			fmt.Fprintf(out, "\nstopped while %s was %s\n", r.ID, where(r))
			return &Outcome{Rollout: r, CanaryRequests: gw.Served(r.Endpoint, r.Canary, r.StartedAt, time.Now()), Interrupted: true}, ctx.Err()
		case <-tick.C:
		case <-pollC:
			draw = false
		}
		if r, err = gw.Rollout(ctx, opts.Endpoint); err != nil {
			if ctx.Err() != nil {
				continue // the select above reports it
			}
			return nil, err
		}
		if r.Stage == rollout.ShadowStage {
			shadow = r
		} else if shadow.Stage == rollout.ShadowStage {
			// The shadow phase passed: say so on a line of its own, before
			// the live view moves on to the live stages' gates.
			view.Keep()
			fmt.Fprintf(out, "SHADOW PASSED %s after %s: %s\n\n", r.Canary, r.StageStarted.Sub(r.StartedAt).Round(time.Second), shadowVerdict(shadow, r))
			shadow = r
			draw = true
		}
		if !draw {
			continue
		}
		if err := show(ctx, view, gw, r); err != nil {
			if ctx.Err() != nil {
				continue
			}
			return nil, err
		}
	}
	view.Keep()
	end := r.UpdatedAt
	if r.FinishedAt != nil {
		end = *r.FinishedAt
	}
	o := &Outcome{Rollout: r, CanaryRequests: gw.Served(r.Endpoint, r.Canary, r.StartedAt, end)}
	took := end.Sub(r.StartedAt).Round(time.Second)
	switch r.Phase {
	case rollout.PhaseSucceeded:
		fmt.Fprintf(out, "PROMOTED %s to 100%% of %s after %s: %s\n\n", r.Canary, r.Endpoint, took, r.Reason)
	case rollout.PhaseRolledBack:
		fmt.Fprintf(out, "ROLLED BACK %s after %s, all traffic back on %s: %s\n\n", r.Canary, took, r.Stable, r.Reason)
	default:
		fmt.Fprintf(out, "%s %s after %s: %s\n\n", strings.ToUpper(result(r)), r.Canary, took, r.Reason)
	}
	return o, nil
}

// shadowPoll is how often the demo looks at a rollout in its shadow phase.
const shadowPoll = 100 * time.Millisecond

// shadowVerdict is why the shadow phase passed: the rollout's reason on
// leaving it, or else the shadow gate's words at the last look at the
// phase, or else what the plan asked.
func shadowVerdict(last, now rollout.Rollout) string {
	if strings.HasPrefix(now.Reason, "shadow") {
		return strings.TrimPrefix(now.Reason, "shadow phase passed: ")
	}
	for _, g := range last.Gates {
		if g.Gate != "shadow" {
			continue
		}
		if g.Summary != "" {
			return "at the last look: " + g.Summary
		}
		if g.Reason != "" {
			return "at the last look: " + g.Reason
		}
	}
	if sh := now.Plan.Shadow; sh != nil {
		return fmt.Sprintf("at least %d compared copies matched at least %s of the time", sh.MinCompared, pct(sh.MinMatchRate, 0))
	}
	return "its answers matched the stable's often enough"
}

// show draws the live view of r. The weights are the split r set, so that
// WEIGHT and SHARE (over r's stage) describe the same moment.
func show(ctx context.Context, view *Table, gw Gateway, r rollout.Rollout) error {
	w := r.Traffic(r.Weight)
	// The table covers the current stage, so that shares match its weights.
	window := min(max(time.Since(r.StageStarted).Truncate(time.Second), time.Second), time.Minute)
	rep, err := gw.Metrics(ctx, r.Endpoint, window)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	width := 0
	if view.Redraw {
		width = reasonWidth
	}
	return view.Render(formatRollout(r, time.Now(), width) + formatDeployments(w, rep, window))
}

// where says where a rollout is, e.g. "in stage 2/4 at 25%".
func where(r rollout.Rollout) string {
	switch {
	case r.Phase.Terminal():
		return result(r)
	case r.Stage == rollout.ShadowStage:
		return "in its shadow phase"
	default:
		return fmt.Sprintf("in stage %d/%d at %s%%", r.Stage+1, len(r.Plan.Stages), r.Weight)
	}
}

// result names a rollout's phase for people.
func result(r rollout.Rollout) string {
	switch r.Phase {
	case rollout.PhaseSucceeded:
		return "promoted"
	case rollout.PhaseRolledBack:
		return "rolled back"
	}
	return strings.ReplaceAll(string(r.Phase), "_", " ")
}

// PlanText describes a plan in one line, e.g. "shadow 50% (200 compared,
// match ≥ 85%) → 5% → 25% → 50% → 100%, bake 8s, ≥ 100 canary requests per
// stage, deadline 1m0s then rollback; gates: ...".
func PlanText(p spec.Plan) string {
	var b strings.Builder
	if sh := p.Shadow; sh != nil {
		fmt.Fprintf(&b, "shadow %s%% (%d compared, match ≥ %s) → ", sh.Mirror, sh.MinCompared, pct(sh.MinMatchRate, 0))
	}
	for i, s := range p.Stages {
		if i > 0 {
			b.WriteString(" → ")
		}
		b.WriteString(s.Weight.String() + "%")
	}
	fmt.Fprintf(&b, ", bake %s, ≥ %d canary requests a stage, deadline %s then %s; gates:",
		p.Bake.D(), p.MinRequests, p.ProgressDeadline.D(), p.OnDeadline)
	for i, g := range p.Gates {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(" " + gateText(g))
	}
	return b.String()
}

func gateText(g spec.Gate) string {
	var parts []string
	switch g.Type {
	case spec.GateErrorRate:
		if g.Max > 0 {
			parts = append(parts, "≤ "+pct(g.Max, 1))
		}
		if g.MaxIncrease > 0 {
			parts = append(parts, fmt.Sprintf("≤ +%g pp", g.MaxIncrease))
		}
	case spec.GateLatency, spec.GateTTFB:
		parts = append(parts, fmt.Sprintf("p%g", g.Quantile*100))
		if g.Max > 0 {
			parts = append(parts, fmt.Sprintf("≤ %g ms", g.Max))
		}
		if g.MaxIncrease > 0 {
			parts = append(parts, fmt.Sprintf("≤ +%g%%", g.MaxIncrease))
		}
	case spec.GateMatchRate:
		parts = append(parts, "≥ "+pct(g.Min, 0))
	}
	if g.RollbackOnly {
		parts = append(parts, "rollback only")
	}
	if len(parts) == 0 {
		return string(g.Type)
	}
	return string(g.Type) + " (" + strings.Join(parts, " ") + ")"
}
