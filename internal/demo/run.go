package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Gateway is what the scripted run needs from a running gateway. The
// daemon satisfies it through a small adapter.
type Gateway interface {
	// SetTraffic replaces the endpoint's live split.
	SetTraffic(ctx context.Context, endpoint string, w spec.Weights) error
	// Metrics reports the endpoint over the last window. Run asks for the
	// time since the current stage began, not rounded, so the window may
	// be shorter than a second or than the admin API's 10s minimum; a
	// gateway with coarser time slices rounds it up.
	Metrics(ctx context.Context, endpoint string, window time.Duration) (telemetry.Report, error)
	// ProxyURL is the data plane's base URL, e.g. http://127.0.0.1:40123.
	ProxyURL() string
}

// RunOptions configures the scripted run. The zero value is the demo.
type RunOptions struct {
	// Endpoint is the gateway endpoint to shift. Empty: "fraud".
	Endpoint string
	// Model is the model name in the predict path
	// /{Endpoint}/v1/models/{Model}:predict. Empty: "fraud".
	Model string
	// Stable and Canary are the deployments traffic moves from and to.
	// Empty: "blue" and "green".
	Stable, Canary string
	// Stages are the canary's weights, one stage each, in order. Empty:
	// 5%, 25%, 50%, 100%.
	Stages []spec.Percent
	// StageDuration is how long each stage lasts. Zero: 8s.
	StageDuration time.Duration
	// Refresh is how often the live table is redrawn. Zero: 1s.
	Refresh time.Duration
	// RPS and Workers configure the traffic generator. Zero: 200 and 16.
	RPS, Workers int
	// Users, when positive, makes the generator send X-User-Id with that
	// many distinct users, for an endpoint with a sticky header. Zero: none.
	Users int
	// Seed makes the generated traffic reproducible.
	Seed uint64
	// Plain prints a new block at every refresh even on a terminal,
	// instead of redrawing in place.
	Plain bool
}

// defaultStages are the canary weights of the demo: 5%, 25%, 50%, 100%.
var defaultStages = []spec.Percent{500, 2500, 5000, spec.Full}

func (o RunOptions) withDefaults() RunOptions {
	if o.Endpoint == "" {
		o.Endpoint = "fraud"
	}
	if o.Model == "" {
		o.Model = "fraud"
	}
	if o.Stable == "" {
		o.Stable = "blue"
	}
	if o.Canary == "" {
		o.Canary = "green"
	}
	if len(o.Stages) == 0 {
		o.Stages = defaultStages
	}
	if o.StageDuration == 0 {
		o.StageDuration = 8 * time.Second
	}
	if o.Refresh == 0 {
		o.Refresh = time.Second
	}
	if o.RPS == 0 {
		o.RPS = 200
	}
	if o.Workers == 0 {
		o.Workers = 16
	}
	return o
}

func (o RunOptions) check() error {
	var errs []error
	if o.Stable == o.Canary {
		errs = append(errs, fmt.Errorf("stable and canary are both %q", o.Stable))
	}
	for i, p := range o.Stages {
		if p < 0 || p > spec.Full {
			errs = append(errs, fmt.Errorf("stages[%d]: %s%% is not within 0..100", i, p))
		}
	}
	if o.StageDuration < 0 || o.Refresh < 0 {
		errs = append(errs, errors.New("stage duration and refresh must not be negative"))
	}
	return errors.Join(errs...)
}

// StartModels starts the two demo model servers, Blue and Green. The caller
// closes both; they also stop when ctx is done.
func StartModels(ctx context.Context) (blue, green *Model, err error) {
	blue, err = StartModel(ctx, Blue())
	if err != nil {
		return nil, nil, err
	}
	green, err = StartModel(ctx, Green())
	if err != nil {
		_ = blue.Close()
		return nil, nil, err
	}
	return blue, green, nil
}

// Run is the scripted traffic shift of `modelgate demo`. The gateway must
// already serve opts.Endpoint with the deployments opts.Stable and
// opts.Canary (by default "fraud", "blue" and "green", backed by the
// servers of StartModels). Run sends traffic to the endpoint, moves the
// canary through opts.Stages, redraws the live table every opts.Refresh
// with a window covering the current stage, prints a summary of every
// stage and returns.
//
// When ctx is done, Run stops the traffic, prints the summary of the
// stages completed so far and returns nil: an interrupted demo is not a
// failure. Traffic stays where the last stage put it.
func Run(ctx context.Context, out io.Writer, gw Gateway, opts RunOptions) error {
	opts = opts.withDefaults()
	if err := opts.check(); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	target := strings.TrimRight(gw.ProxyURL(), "/") + "/" + opts.Endpoint + "/v1/models/" + opts.Model + ":predict"
	stages := make([]string, len(opts.Stages))
	for i, p := range opts.Stages {
		stages[i] = p.String() + "%"
	}
	fmt.Fprintf(out, "sending %d requests/s to %s\n", opts.RPS, target)
	fmt.Fprintf(out, "shifting traffic from %s to %s: %s, %s per stage\n\n",
		opts.Stable, opts.Canary, strings.Join(stages, " → "), opts.StageDuration)

	gen, err := Generate(ctx, GenOptions{URL: target, RPS: opts.RPS, Workers: opts.Workers, Users: opts.Users, Seed: opts.Seed})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer gen.Stop()

	table := NewTable(out)
	if opts.Plain {
		table.Redraw = false
	}
	var results []StageResult
	interrupted := false
	for i, p := range opts.Stages {
		s := stage{
			number:  i + 1,
			of:      len(opts.Stages),
			title:   fmt.Sprintf("%s %s%%", opts.Canary, p),
			weights: spec.Weights{opts.Stable: spec.Full - p, opts.Canary: p},
		}
		res, err := runStage(ctx, gw, table, s, opts)
		if err != nil {
			if ctx.Err() != nil {
				interrupted = true
				break
			}
			return fmt.Errorf("demo stage %d (%s): %w", s.number, s.title, err)
		}
		results = append(results, res)
	}
	stats := gen.Stop()
	gap := "" // a plain table already ends every block with a blank line
	if table.Redraw {
		gap = "\n"
	}
	if interrupted {
		fmt.Fprintf(out, "%sinterrupted after %d of %d stages\n", gap, len(results), len(opts.Stages))
		gap = "\n"
	}
	fmt.Fprint(out, gap)
	return WriteSummary(out, results, stats)
}

type stage struct {
	number, of int
	title      string
	weights    spec.Weights
}

// runStage sets the stage's traffic, redraws the table until the stage is
// over and returns the stage's final report.
func runStage(ctx context.Context, gw Gateway, table *Table, s stage, opts RunOptions) (StageResult, error) {
	if err := gw.SetTraffic(ctx, opts.Endpoint, s.weights); err != nil {
		return StageResult{}, fmt.Errorf("set traffic: %w", err)
	}
	start := time.Now()
	refresh := time.NewTicker(opts.Refresh)
	defer refresh.Stop()
	end := time.NewTimer(opts.StageDuration)
	defer end.Stop()

	show := func(final bool) (telemetry.Report, time.Duration, error) {
		elapsed := time.Since(start)
		if final {
			elapsed = min(elapsed, opts.StageDuration) // the timer may fire late; the stage was this long
		}
		r, err := gw.Metrics(ctx, opts.Endpoint, elapsed)
		if err != nil {
			return r, elapsed, fmt.Errorf("metrics: %w", err)
		}
		title := fmt.Sprintf("stage %d/%d: %s (%s of %s)", s.number, s.of, s.title,
			roundLike(elapsed, opts.StageDuration), opts.StageDuration)
		return r, elapsed, table.Render(title, s.weights, r)
	}
	for {
		select {
		case <-ctx.Done():
			return StageResult{}, ctx.Err()
		case <-refresh.C:
			if time.Since(start) >= opts.StageDuration {
				continue // the end timer is due and draws the stage's last table
			}
			if _, _, err := show(false); err != nil {
				return StageResult{}, err
			}
		case <-end.C:
			r, elapsed, err := show(true)
			if err != nil {
				return StageResult{}, err
			}
			table.Keep()
			return StageResult{Title: s.title, Weights: s.weights, Duration: elapsed, Report: r}, nil
		}
	}
}

// roundLike rounds d to the precision the stage duration is written in:
// whole seconds for a demo, milliseconds for a test's short stages.
func roundLike(d, stage time.Duration) time.Duration {
	if stage >= 2*time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
