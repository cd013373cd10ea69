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
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// DemoOptions tunes `modelgate demo`; the zero value is the demo as shipped.
type DemoOptions struct {
	// Run is passed to demo.Run (stage length, rate, stages).
	Run demo.RunOptions
}

// Demo is `modelgate demo`: two built-in model versions, the real gateway
// with its state in a fresh temporary folder, generated traffic and a live
// table while traffic shifts 5% → 25% → 50% → 100%. It needs no config and
// no other service, and removes its folder when it ends.
func Demo(ctx context.Context, stdout io.Writer, opts DemoOptions) error {
	dir, err := os.MkdirTemp("", "modelgate-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)

	blue, green, err := demo.StartModels(ctx)
	if err != nil {
		return fmt.Errorf("demo: start model servers: %w", err)
	}
	defer blue.Close()
	defer green.Close()

	f, err := config.Parse([]byte(fmt.Sprintf(`listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
state:
  path: %s
endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [%s]
        timeout: 2s
      - name: green
        backends: [%s]
        timeout: 2s
    traffic: {blue: 100}
`, filepath.Join(dir, "modelgate.db"), blue.URL(), green.URL())))
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

	fmt.Fprintf(stdout, "modelgate demo\n")
	fmt.Fprintf(stdout, "  data plane  http://%s/fraud/v1/models/fraud:predict\n", d.ProxyAddr())
	fmt.Fprintf(stdout, "  admin API   http://%s  (token %s)\n", d.AdminAddr(), d.Token())
	fmt.Fprintf(stdout, "  try         modelgate metrics fraud --admin %s  (MODELGATE_TOKEN=%s)\n", d.AdminAddr(), d.Token())
	fmt.Fprintf(stdout, "  models      blue %s (v1), green %s (v2: a little slower, a few more errors)\n", blue.URL(), green.URL())
	fmt.Fprintf(stdout, "  Ctrl-C stops the demo at any time\n\n")

	return demo.Run(ctx, stdout, demoGateway{d}, opts.Run)
}

// demoGateway lets the scripted demo drive the daemon in process.
type demoGateway struct{ d *Daemon }

func (g demoGateway) SetTraffic(ctx context.Context, endpoint string, w spec.Weights) error {
	_, err := g.d.control.SetTraffic(ctx, endpoint, w, "demo")
	return err
}

func (g demoGateway) Metrics(ctx context.Context, endpoint string, window time.Duration) (telemetry.Report, error) {
	return g.d.control.Metrics(ctx, endpoint, window)
}

func (g demoGateway) ProxyURL() string { return "http://" + g.d.ProxyAddr() }
