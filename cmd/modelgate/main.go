// Command modelgate is progressive delivery for machine-learning models in
// one binary: see "modelgate --help".
package main

import (
	"context"
	"io"
	"os"

	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/demo"
)

func main() {
	// The daemon and the demo are wired here so that cli stays a thin
	// client of the admin API and never imports the composition root.
	cli.Serve = func(ctx context.Context, opts cli.ServeOptions, stdout, stderr io.Writer) error {
		return daemon.Serve(ctx, daemon.ServeOptions{ConfigPath: opts.ConfigPath, LogFormat: opts.LogFormat, LogLevel: opts.LogLevel}, stdout, stderr)
	}
	cli.Demo = func(ctx context.Context, stdout io.Writer, opts cli.DemoOptions) error {
		return daemon.Demo(ctx, stdout, daemon.DemoOptions{Run: demo.RunOptions{Keep: opts.Keep}})
	}
	os.Exit(cli.Execute(os.Args[1:], os.Stdout, os.Stderr))
}
