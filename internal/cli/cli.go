// Package cli is the modelgate command line: cobra commands that run the
// daemon (serve, demo), check a config file locally, and talk to a running
// daemon through its admin API with a small typed Client.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/secretfile"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/version"
)

// Exit codes of the modelgate binary.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
	// ExitPaused: rollout watch saw the rollout pause (its deadline, a
	// sample-ratio halt, a hand change): it waits for someone.
	ExitPaused = 3
	// ExitTimedOut: rollout watch's --timeout passed first.
	ExitTimedOut = 4
)

// exitError ends the command with its own exit code (rollout watch).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func (e *exitError) Unwrap() error { return e.err }

// Defaults and environment variables for finding the daemon.
const (
	DefaultAdmin     = "127.0.0.1:8081"
	DefaultTokenFile = "admin.token"
	EnvAdmin         = "MODELGATE_ADMIN"
	EnvToken         = "MODELGATE_TOKEN"
)

// Serve runs the daemon with serve's flags until ctx is cancelled.
// cmd/modelgate sets it (to daemon.Serve); a nil Serve means a build
// without the daemon.
var Serve func(ctx context.Context, opts ServeOptions, stdout, stderr io.Writer) error

// Demo runs the built-in demo until it ends or ctx is cancelled.
// cmd/modelgate sets it.
var Demo func(ctx context.Context, stdout io.Writer, opts DemoOptions) error

// DemoOptions are the demo command's flags.
type DemoOptions struct {
	// Keep leaves the gateway, its traffic and the dashboard up after the
	// rollouts, until Ctrl-C.
	Keep bool
}

// Execute runs the command line args (without the program name), writing
// to stdout and stderr, and returns the exit code: 0 ok, 1 failure, 2
// usage error; rollout watch also exits 3 (paused) and 4 (timed out).
// SIGINT and SIGTERM cancel the running command's context; a second
// signal kills the process as usual.
func Execute(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // restore default handling: a second Ctrl-C ends at once
	}()
	return run(ctx, args, stdout, stderr, os.Getenv, nil)
}

// usageError is a command line that cannot run as written: exit 2.
type usageError struct{ err error }

// Error returns the underlying message.
func (e *usageError) Error() string { return e.err.Error() }

// Unwrap returns the underlying error.
func (e *usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Errorf(format, args...)}
}

// app holds what every command shares: output streams, the environment
// and the global flags.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	httpClient     *http.Client
	admin          string
	tokenFile      string
	tokenFileSet   bool   // --token-file given explicitly: it wins over the env
	tokenSource    string // where the token was read: the env variable or the file
}

// run is Execute with its environment injected, for tests.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string, hc *http.Client) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv, httpClient: hc}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	if ue := (*usageError)(nil); errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Error: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return ExitUsage
	}
	fmt.Fprintf(stderr, "Error: %s\n", describe(err))
	if ae := (*APIError)(nil); errors.As(err, &ae) && ae.Status == http.StatusUnauthorized && a.tokenSource != "" {
		fmt.Fprintln(stderr, a.tokenNote())
	}
	if ee := (*exitError)(nil); errors.As(err, &ee) {
		return ee.code
	}
	return ExitFailure
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "modelgate",
		Short: "Progressive delivery for machine-learning models",
		Long: `modelgate splits live traffic between model versions, measures each one,
and moves traffic from one to another. Client commands find the daemon with
--admin (env MODELGATE_ADMIN) and the admin token in MODELGATE_TOKEN or
--token-file.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noSubcommand,
		RunE:          helpOrUnknown,
	}
	// `modelgate completion bash|zsh|fish|powershell` writes a completion
	// script (cobra's); --version prints what `version` does.
	root.Version = version.String()
	root.SetVersionTemplate("modelgate {{.Version}}\n")
	pf := root.PersistentFlags()
	pf.StringVar(&a.admin, "admin", DefaultAdmin, "admin API address, host:port or URL (env "+EnvAdmin+")")
	pf.StringVar(&a.tokenFile, "token-file", DefaultTokenFile, "file holding the admin token (default source unless env "+EnvToken+" holds the token itself; an explicit flag wins)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{flagError(err)} })

	root.AddCommand(
		a.serveCommand(),
		a.demoCommand(),
		a.configCommand(),
		a.applyCommand(),
		a.endpointsCommand(),
		a.trafficCommand(),
		a.mirrorCommand(),
		a.metricsCommand(),
		a.shadowCommand(),
		a.eventsCommand(),
		a.rolloutCommand(),
		a.stateCommand(),
		a.whoamiCommand(),
		a.replicasCommand(),
		a.healthCommand(),
		a.versionCommand(),
	)
	return root
}

// flagError rewrites a flag value pflag could not parse as a duration
// into the config file's message for the same mistake: Go's parser text
// ("time: invalid duration ...") names no fix.
func flagError(err error) error {
	var iv interface {
		GetValue() string
		Unwrap() error
	}
	if !errors.As(err, &iv) || !strings.HasPrefix(iv.Unwrap().Error(), "time: ") {
		return err
	}
	name := "a flag"
	if m := flagName.FindStringSubmatch(err.Error()); m != nil {
		name = m[1]
	}
	var d spec.Duration
	if derr := d.UnmarshalText([]byte(iv.GetValue())); derr != nil {
		return fmt.Errorf("%s: %w", name, derr)
	}
	return err
}

// flagName finds the flag in pflag's message: invalid argument "x" for
// "-w, --window" flag: ...
var flagName = regexp.MustCompile(`for "(?:-., )?(--[^"]+)" flag`)

// group returns a command that only holds subcommands.
func group(use, short string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{Use: use, Short: short, Args: noSubcommand, RunE: helpOrUnknown}
	c.AddCommand(subs...)
	return c
}

// noSubcommand accepts any arguments: helpOrUnknown reports an unknown
// subcommand as a usage error (cobra's own check is an untyped error).
func noSubcommand(*cobra.Command, []string) error { return nil }

func helpOrUnknown(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmd.Help()
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &usageError{errors.New(msg)}
}

// exactArgs is cobra.ExactArgs with a usage error and the names of the
// arguments expected.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) && len(names) == 0 {
			return usagef("%s takes no arguments, got %d", cmd.CommandPath(), len(args))
		}
		if len(args) != len(names) {
			return usagef("%s takes %s, got %d argument%s", cmd.CommandPath(), strings.Join(names, " "), len(args), plural(len(args)))
		}
		return nil
	}
}

// minArgs requires at least len(names) arguments.
func minArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return usagef("%s takes %s ..., got %d argument%s", cmd.CommandPath(), strings.Join(names, " "), len(args), plural(len(args)))
		}
		return nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// client builds the admin API client from the flags and environment:
// --admin, else MODELGATE_ADMIN, else the default; the token from
// MODELGATE_TOKEN, else the token file.
func (a *app) client(cmd *cobra.Command) (*Client, error) {
	addr := a.admin
	a.tokenFileSet = cmd.Flags().Changed("token-file")
	if !cmd.Flags().Changed("admin") {
		if env := a.getenv(EnvAdmin); env != "" {
			addr = env
		}
	}
	token, err := a.token()
	if err != nil {
		return nil, err
	}
	c, err := NewClient(addr, token, a.httpClient)
	if err != nil {
		return nil, err
	}
	c.SetWarnings(a.stderr)
	return c, nil
}

// tokenNote says, after a refused token, where the token sent came from
// and which other sources are present, with how to use them instead.
func (a *app) tokenNote() string {
	env := strings.TrimSpace(a.getenv(EnvToken)) != ""
	_, statErr := os.Stat(a.tokenFile)
	file := statErr == nil
	switch {
	case a.tokenSource == EnvToken && file:
		return fmt.Sprintf("The token sent was %s's; the token file %s is present too but is read only without %s: unset %s, or pass --token-file %s.", EnvToken, a.tokenFile, EnvToken, EnvToken, a.tokenFile)
	case a.tokenSource == EnvToken:
		return fmt.Sprintf("The token sent was %s's (no token file %s here): set %s to the daemon's token, or pass --token-file with the daemon's token file (admin.token_file; by default admin.token beside the state file).", EnvToken, a.tokenFile, EnvToken)
	case a.tokenFileSet && env:
		return fmt.Sprintf("The token sent was read from --token-file %s (it wins over %s, which is set too): point --token-file at the daemon's token file (admin.token_file; by default admin.token beside the state file).", a.tokenFile, EnvToken)
	case a.tokenFileSet:
		return fmt.Sprintf("The token sent was read from --token-file %s (%s is not set): point --token-file at the daemon's token file (admin.token_file; by default admin.token beside the state file).", a.tokenFile, EnvToken)
	default:
		return fmt.Sprintf("The token sent was read from the token file %s (the default; %s is not set): pass --token-file with the daemon's token file (admin.token_file; by default admin.token beside the state file), or set %s.", a.tokenFile, EnvToken, EnvToken)
	}
}

func (a *app) token() (string, error) {
	if t := strings.TrimSpace(a.getenv(EnvToken)); t != "" && !a.tokenFileSet {
		a.tokenSource = EnvToken
		// Checked here: Go's HTTP client refuses such a header value with
		// an error that reads as if the daemon could not be reached.
		for i := 0; i < len(t); i++ {
			if c := t[i]; c <= ' ' || c > '~' {
				return "", fmt.Errorf("%s holds a character that is not visible ASCII at offset %d (%q): it must hold the token alone, one line; e.g. export %s=$(cat admin.token)", EnvToken, i, c, EnvToken)
			}
		}
		return t, nil
	}
	a.tokenSource = a.tokenFile
	// Checked as the daemon checks it: a token file others may read is a
	// leaked token, whoever reads it.
	t, err := secretfile.Read(a.tokenFile, "token file")
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("no admin token: set %s or --token-file (%w)", EnvToken, err)
	}
	return t, err
}
