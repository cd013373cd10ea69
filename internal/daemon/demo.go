package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/demo"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// DemoOptions tunes `modelgate demo`; the zero value is the demo as shipped.
// The plan fields change the built-in config's rollout plan, so a faster
// demo (in tests) is the same demo with other numbers.
type DemoOptions struct {
	// Bake is every stage's bake time. Zero: 15s.
	Bake time.Duration
	// MinRequests is every stage's minimum of canary requests. Zero: 100.
	MinRequests int
	// ProgressDeadline bounds each stage and the shadow phase; past it the
	// rollout rolls back. Zero: 1m.
	ProgressDeadline time.Duration
	// Run is passed to demo.Run (rate, refresh, plain output).
	Run demo.RunOptions
}

// The demo's rollout plan, as shipped.
const (
	demoBake             = 15 * time.Second
	demoMinRequests      = 100
	demoProgressDeadline = time.Minute
)

// demoConfig is the built-in config: the endpoint fraud with the three
// demo models, blue holding all traffic, and the rollout plan both
// rollouts follow.
//
// The plan: a shadow phase copies half of the requests to the canary and
// compares its answers with the stable's. Green agrees with blue on about
// 98% of instances, red with green on about 99%, and a request that fails
// on either side is a mismatch too (red fails 8%), so the minimum match
// rate of 85% passes both with room: the shadow phase is about answers,
// the live stages judge errors and latency. Then stages 5, 25, 50 and
// 100% judged by the default gate (sequential) alone: it rolls a worse
// canary back and moves a good one on once it has shown it within the
// stage's margin. The demo has three minutes, not an afternoon, so its
// margins are looser than the default 2, 1.75, 1.5 (3, 2.5, 2) and its
// traffic higher (1,200 requests/s): at 1% errors the
// evidence that green is within 3× of blue takes about 150 errors, some
// 15 seconds. Its models are in-process and warm, so a stage's latency
// warm-up is its first 100 canary requests and 2 s rather than 10 s. Its
// alpha of 1% bounds the chance of rolling the good canary back.
const demoConfig = `listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
state:
  path: %[1]s
endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [%[2]s]
        timeout: 2s
      - name: green
        backends: [%[3]s]
        timeout: 2s
      - name: red
        backends: [%[4]s]
        timeout: 2s
    traffic: {blue: 100}
    rollout:
      shadow: {mirror: 50, min_compared: 200, min_match_rate: 0.85}
      stages:
        - {weight: 5, margin: 3}
        - {weight: 25, margin: 2.5}
        - {weight: 50, margin: 2}
        - 100
      bake: %[5]s
      min_requests: %[6]d
      progress_deadline: %[7]s
      on_deadline: rollback
      alpha: 0.01
      warmup: {time: 2s}
`

// Demo is `modelgate demo`: three built-in model versions, the real
// gateway with its state in a fresh temporary folder, generated traffic,
// and two real rollouts by the rollout controller with a live view: green,
// a good canary, is shadowed, ramped and promoted; then red, a bad one, is
// rolled back. It needs no config and no other service, and removes its
// folder when it ends.
func Demo(ctx context.Context, stdout io.Writer, opts DemoOptions) error {
	dir, err := os.MkdirTemp("", "modelgate-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)

	blue, green, red, err := demo.StartModels(ctx)
	if err != nil {
		return fmt.Errorf("demo: start model servers: %w", err)
	}
	defer blue.Close()
	defer green.Close()
	defer red.Close()

	bake, minReq, deadline := demoBake, demoMinRequests, demoProgressDeadline
	if opts.Bake > 0 {
		bake = opts.Bake
	}
	if opts.MinRequests > 0 {
		minReq = opts.MinRequests
	}
	if opts.ProgressDeadline > 0 {
		deadline = opts.ProgressDeadline
	}
	f, err := config.Parse(fmt.Appendf(nil, demoConfig, filepath.Join(dir, "modelgate.db"),
		blue.URL(), green.URL(), red.URL(), bake, minReq, deadline))
	if err != nil {
		return fmt.Errorf("demo: built-in config: %w", err)
	}
	logFile, err := os.Create(filepath.Join(dir, "modelgate.log"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	d, err := New(ctx, Options{Config: f, Logger: slog.New(slog.NewTextHandler(logFile, nil))})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if err := d.Start(); err != nil {
		d.store.Close()
		return fmt.Errorf("demo: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d.Shutdown(sctx)
	}()

	admin := "http://" + d.AdminAddr()
	fmt.Fprintf(stdout, "modelgate demo\n")
	fmt.Fprintf(stdout, "  data plane  http://%s/fraud/v1/models/fraud:predict\n", d.ProxyAddr())
	fmt.Fprintf(stdout, "  dashboard   %s/  (log in with the token below; the admin API is there too)\n", admin)
	fmt.Fprintf(stdout, "  token       %s\n", d.Token())
	// The commands name the binary as it was run (./bin/modelgate under
	// make demo), so that they can be pasted as they are.
	fmt.Fprintf(stdout, "  watch       MODELGATE_TOKEN=%s %s rollout watch fraud --admin %s\n", d.Token(), os.Args[0], admin)
	fmt.Fprintf(stdout, "  models      blue %s (v1, stable), green %s (v2, good), red %s (v3: 8%% errors, twice as slow)\n",
		blue.URL(), green.URL(), red.URL())
	fmt.Fprintf(stdout, "  errors      every version fails about 1%% of its requests, blue too: the stable's errors are the background a canary is judged against\n")
	fmt.Fprintf(stdout, "  Ctrl-C stops the demo at any time\n\n")

	return demo.Run(ctx, stdout, demoGateway{d}, opts.Run)
}

// demoGateway lets the demo drive the daemon in process.
type demoGateway struct{ d *Daemon }

func (g demoGateway) StartRollout(ctx context.Context, endpoint string, req rollout.StartRequest) (rollout.Rollout, error) {
	return g.d.Rollouts().Start(ctx, endpoint, req)
}

func (g demoGateway) Rollout(ctx context.Context, endpoint string) (rollout.Rollout, error) {
	return g.d.Rollouts().Current(ctx, endpoint)
}

func (g demoGateway) AbortRollout(ctx context.Context, endpoint string) (rollout.Rollout, error) {
	return g.d.Rollouts().Act(ctx, endpoint, rollout.ActionAbort)
}

func (g demoGateway) Traffic(ctx context.Context, endpoint string) (spec.Weights, error) {
	ep, err := g.d.control.Endpoint(ctx, endpoint)
	return ep.Traffic, err
}

func (g demoGateway) Metrics(ctx context.Context, endpoint string, window time.Duration) (telemetry.Report, error) {
	return g.d.control.Metrics(ctx, endpoint, window)
}

func (g demoGateway) Served(endpoint, deployment string, from, to time.Time) uint64 {
	// A second more covers the slice the rollout started in; the canary
	// served no split requests before.
	return g.d.telemetry.Recorder(endpoint, deployment).Window(to, to.Sub(from)+time.Second).SplitRequests()
}

func (g demoGateway) ProxyURL() string { return "http://" + g.d.ProxyAddr() }
