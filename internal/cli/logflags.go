package cli

import (
	"context"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/config"
)

// ServeOptions are serve's flags.
type ServeOptions struct {
	// ConfigPath is --config; empty: the defaults and no endpoints.
	ConfigPath string
	// LogFormat and LogLevel are --log-format and --log-level, checked
	// (config.ParseLogFormat, config.ParseLogLevel); empty when not given:
	// the config file's logging.format and logging.level apply, else text
	// and info.
	LogFormat, LogLevel string
}

// ServeWithOptions runs the daemon with every flag of serve until ctx is
// cancelled. cmd/modelgate sets it; when it is nil, serve calls Serve
// (which takes the config path only) once the flags are checked.
var ServeWithOptions func(ctx context.Context, opts ServeOptions, stdout, stderr io.Writer) error

// withLogFlags gives the serve command --log-format and --log-level: a
// bad value is a usage error naming the values accepted, and the daemon
// gets them through ServeWithOptions.
func (a *app) withLogFlags(cmd *cobra.Command) *cobra.Command {
	var opts ServeOptions
	cmd.Flags().StringVar(&opts.LogFormat, "log-format", "", "log format, text or json (default: the config's logging.format, else text)")
	cmd.Flags().StringVar(&opts.LogLevel, "log-level", "", "least level logged: debug, info, warn or error (default: the config's logging.level, else info)")
	plain := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkLogFlag(cmd, "log-format", opts.LogFormat, config.ParseLogFormat); err != nil {
			return err
		}
		if err := checkLogFlag(cmd, "log-level", opts.LogLevel, config.ParseLogLevel); err != nil {
			return err
		}
		if ServeWithOptions == nil {
			return plain(cmd, args)
		}
		opts.ConfigPath, _ = cmd.Flags().GetString("config")
		return ServeWithOptions(cmd.Context(), opts, a.stdout, a.stderr)
	}
	return cmd
}

// checkLogFlag checks a logging flag given on the command line: an empty
// value is refused too (the default is to leave the flag out).
func checkLogFlag[T any](cmd *cobra.Command, name, value string, parse func(string) (T, error)) error {
	if !cmd.Flags().Changed(name) {
		return nil
	}
	_, err := parse(value)
	if value == "" {
		_, err = parse("?")
		return usagef("--%s \"\"%s", name, strings.TrimPrefix(err.Error(), "?"))
	}
	if err != nil {
		return usagef("--%s %v", name, err)
	}
	return nil
}
