package cli

import (
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

// addLogFlags gives serve --log-format and --log-level, into opts; check
// refuses a bad value as a usage error naming the values accepted.
func addLogFlags(cmd *cobra.Command, opts *ServeOptions) (check func() error) {
	cmd.Flags().StringVar(&opts.LogFormat, "log-format", "", "log format, text or json (default: the config's logging.format, else text)")
	cmd.Flags().StringVar(&opts.LogLevel, "log-level", "", "least level logged: debug, info, warn or error (default: the config's logging.level, else info)")
	return func() error {
		if err := checkLogFlag(cmd, "log-format", opts.LogFormat, config.ParseLogFormat); err != nil {
			return err
		}
		return checkLogFlag(cmd, "log-level", opts.LogLevel, config.ParseLogLevel)
	}
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
