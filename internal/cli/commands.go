package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/spec"
)

// Output formats of read commands (-o).
const (
	outputTable = "table"
	outputJSON  = "json"
)

// addOutput adds -o/--output to a read command and checks its value
// before the command runs.
func addOutput(cmd *cobra.Command) *string {
	out := new(string)
	cmd.Flags().StringVarP(out, "output", "o", outputTable, "output format: table or json")
	prev := cmd.PreRunE
	cmd.PreRunE = func(c *cobra.Command, args []string) error {
		if *out != outputTable && *out != outputJSON {
			return usagef("--output %q: use table or json", *out)
		}
		if prev != nil {
			return prev(c, args)
		}
		return nil
	}
	return out
}

// show runs a read command: it fetches with the command's admin client,
// then prints what it got as JSON with -o json (shaped by asJSON; nil
// prints it as it is), else with table.
func show[T any](a *app, cmd *cobra.Command, output string, fetch func(*Client) (T, error),
	asJSON func(T) any, table func(io.Writer, T) error) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	v, err := fetch(c)
	if err != nil {
		return err
	}
	if output == outputJSON {
		if asJSON == nil {
			return printJSON(a.stdout, v)
		}
		return printJSON(a.stdout, asJSON(v))
	}
	return table(a.stdout, v)
}

// listJSON is the -o json shape of a list: {"key": [...]}, with an empty
// list rather than null.
func listJSON[E any](key string) func([]E) any {
	return func(list []E) any {
		if list == nil {
			list = []E{}
		}
		return map[string]any{key: list}
	}
}

func (a *app) serveCommand() *cobra.Command {
	var (
		opts     ServeOptions
		checkLog func() error
	)
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the gateway and its admin API",
		Long: `serve runs the data plane and the admin API from a config file until it gets
SIGINT or SIGTERM, then drains in-flight requests and exits. SIGHUP re-applies
the file. An invalid file is refused with every problem listed. Without
--config it starts with the defaults and no endpoints (add them with apply).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && !cmd.Flags().Changed("config") {
				return usagef("serve takes the config file with --config: modelgate serve --config %s", args[0])
			}
			return exactArgs()(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkLog(); err != nil {
				return err
			}
			if Serve == nil {
				return errors.New("serve is not available in this build")
			}
			return Serve(cmd.Context(), opts, a.stdout, a.stderr)
		},
	}
	cmd.Flags().StringVarP(&opts.ConfigPath, "config", "c", "", "config file (YAML)")
	checkLog = addLogFlags(cmd, &opts) // logflags.go
	return cmd
}

func (a *app) demoCommand() *cobra.Command {
	var opts DemoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run demo models behind the gateway: roll out a good canary (promoted) and a bad one (rolled back)",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if Demo == nil {
				return errors.New("demo is not available in this build")
			}
			return Demo(cmd.Context(), a.stdout, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Keep, "keep", false, "leave the gateway, its traffic and the dashboard up after the rollouts, until Ctrl-C")
	return cmd
}

// ValidateResult is config validate's -o json: the file, whether it is
// valid, its endpoints, and every problem when it is not.
type ValidateResult struct {
	Path      string         `json:"path"`
	Valid     bool           `json:"valid"`
	Endpoints int            `json:"endpoints"`
	Problems  []spec.Problem `json:"problems"`
}

func (a *app) configCommand() *cobra.Command {
	var output *string
	validate := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a config file locally, without a daemon: its keys, and the certificate, key and secret files it names",
		Args:  exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			res := ValidateResult{Path: path, Problems: []spec.Problem{}}
			err := func() error {
				f, err := config.Load(path)
				if err != nil {
					return err // a *config.FileError lists every problem (see run)
				}
				res.Endpoints = len(f.Endpoints)
				// The files the config names are read as serve would read them.
				errs := []error{f.CheckListenerFiles()}
				for i, e := range f.EndpointsWithDefaults() {
					errs = append(errs, spec.Prefix(fmt.Sprintf("endpoints[%d]", i), config.CheckFiles(e)))
				}
				if err := errors.Join(errs...); err != nil {
					return &config.FileError{Path: path, Err: err}
				}
				return nil
			}()
			res.Valid = err == nil
			if fe := (*config.FileError)(nil); errors.As(err, &fe) {
				res.Problems = spec.Problems(fe.Err)
			} else if err != nil {
				res.Problems = []spec.Problem{{Message: err.Error()}}
			}
			if *output == outputJSON {
				if perr := printJSON(a.stdout, res); perr != nil {
					return perr
				}
				return err // the exit code says it too
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s is valid: %d endpoint%s\n", path, res.Endpoints, plural(res.Endpoints))
			return nil
		},
	}
	output = addOutput(validate)
	return group("config", "Work with config files", validate)
}

// describe is how an error is printed: an invalid config file (from
// config validate, or serve) as a summary and every problem, one a line;
// anything else as it says.
func describe(err error) string {
	var fe *config.FileError
	if !errors.As(err, &fe) {
		return err.Error()
	}
	ps := spec.Problems(fe.Err)
	var b strings.Builder
	fmt.Fprintf(&b, "%s is invalid: %d problem%s", fe.Path, len(ps), plural(len(ps)))
	for i := range ps {
		b.WriteString("\n  ")
		b.WriteString(ps[i].Error())
	}
	return b.String()
}

func (a *app) applyCommand() *cobra.Command {
	var (
		file   string
		prune  bool
		output *string
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Apply a config file's spec to the running daemon",
		Long: `apply sends a config file to the daemon, which validates it whole and then
creates and updates what it declares. It removes nothing the file does not
list unless --prune is given. Traffic and mirror in the file only initialise
endpoints the daemon does not know yet. "-f -" reads standard input.`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return usagef("apply needs -f FILE")
			}
			var data []byte
			var err error
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return fmt.Errorf("read config: %w", err)
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			res, err := c.Apply(cmd.Context(), data, prune)
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return printJSON(a.stdout, res)
			}
			return printApply(a.stdout, res)
		},
	}
	output = addOutput(cmd)
	cmd.Flags().StringVarP(&file, "file", "f", "", "config file (YAML), - for standard input")
	cmd.Flags().BoolVar(&prune, "prune", false, "also remove endpoints and deployments the file does not list")
	return cmd
}

func (a *app) endpointsCommand() *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   "endpoints",
		Short: "List endpoints with their deployments, traffic and mirror",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) ([]spec.Endpoint, error) {
				return c.Endpoints(cmd.Context())
			}, listJSON[spec.Endpoint]("endpoints"), withHealth(a, cmd, "", printEndpoints, endpointNames)) // health.go
		},
	}
	output = addOutput(cmd)
	return cmd
}

func (a *app) trafficCommand() *cobra.Command {
	var output *string
	get := &cobra.Command{
		Use:   "get ENDPOINT",
		Short: "Show an endpoint's traffic split",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.showWeights(cmd, args[0], "traffic", *output)
		},
	}
	output = addOutput(get)
	var (
		force     bool
		setOutput *string
	)
	set := &cobra.Command{
		Use:   "set ENDPOINT DEPLOYMENT=PERCENT ...",
		Short: "Set an endpoint's traffic split",
		Long: `set replaces an endpoint's live split. Percents have at most two decimals
and sum to 100. With two deployments, naming one is enough: the other gets
the rest ("modelgate traffic set fraud green=5" gives blue 95, green 5).
With more, give every deployment's weight. While a rollout is moving the
endpoint, set is refused (the rollout sets the split) unless --force is
given; the rollout then pauses until resumed.`,
		Example: "  modelgate traffic set fraud green=5\n  modelgate traffic set fraud blue=50 green=25 red=25",
		Args:    minArgs("ENDPOINT", "DEPLOYMENT=PERCENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			given, err := parseAssignments(args[1:])
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			ep, err := c.Endpoint(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w, err := completeTraffic(ep, given)
			if err != nil {
				return err
			}
			got, err := c.SetTraffic(cmd.Context(), ep.Name, w, force)
			if err != nil {
				return err
			}
			if *setOutput == outputJSON {
				return printJSON(a.stdout, got)
			}
			fmt.Fprintf(a.stdout, "traffic of %s set to %s\n", ep.Name, formatWeights(ep, got))
			return nil
		},
	}
	setOutput = addOutput(set)
	set.Flags().BoolVar(&force, "force", false, "set it even while a rollout is moving the endpoint (the rollout then pauses; the event says it was forced)")
	return group("traffic", "Show or set the traffic split of an endpoint", get, set)
}

// completeTraffic applies the two-deployment rule (one weight given, the
// other deployment gets the rest) and otherwise insists on a weight for
// every deployment, so that a deployment is never dropped by accident.
// The daemon validates the sum.
func completeTraffic(ep spec.Endpoint, given spec.Weights) (spec.Weights, error) {
	w := spec.CompleteTraffic(ep, given)
	var missing []string
	for _, d := range ep.Deployments {
		if _, ok := w[d.Name]; !ok {
			missing = append(missing, d.Name)
		}
	}
	if len(missing) > 0 && len(ep.Deployments) > 2 {
		return nil, usagef("endpoint %s has %d deployments: give a weight for each (missing: %s), e.g. %s",
			ep.Name, len(ep.Deployments), strings.Join(missing, ", "), exampleAssignment(ep))
	}
	return w, nil
}

func exampleAssignment(ep spec.Endpoint) string {
	parts := make([]string, len(ep.Deployments))
	for i, d := range ep.Deployments {
		p := spec.Percent(0)
		if i == 0 {
			p = spec.Full
		}
		parts[i] = d.Name + "=" + p.String()
	}
	return strings.Join(parts, " ")
}

func (a *app) mirrorCommand() *cobra.Command {
	var output *string
	get := &cobra.Command{
		Use:   "get ENDPOINT",
		Short: "Show the percent of an endpoint's traffic mirrored to each deployment",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.showWeights(cmd, args[0], "mirror", *output)
		},
	}
	output = addOutput(get)
	var (
		force     bool
		setOutput *string
	)
	set := &cobra.Command{
		Use:   "set ENDPOINT DEPLOYMENT=PERCENT ...",
		Short: "Set the percent of live traffic copied to deployments as shadow traffic",
		Long: `set changes the mirror percents of the deployments it names; deployments it
does not name keep theirs. 0 stops mirroring to a deployment. While a
rollout is moving the endpoint, set is refused (the rollout sets the
canary's mirror) unless --force is given.`,
		Example: "  modelgate mirror set fraud green=10\n  modelgate mirror set fraud green=0",
		Args:    minArgs("ENDPOINT", "DEPLOYMENT=PERCENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			given, err := parseAssignments(args[1:])
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			ep, err := c.Endpoint(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := ep.Mirror.Clone()
			if w == nil {
				w = spec.Weights{}
			}
			for name, p := range given {
				w[name] = p
			}
			for name, p := range w {
				if p == 0 {
					delete(w, name)
				}
			}
			got, err := c.SetMirror(cmd.Context(), ep.Name, w, force)
			if err != nil {
				return err
			}
			if *setOutput == outputJSON {
				return printJSON(a.stdout, got)
			}
			fmt.Fprintf(a.stdout, "mirror of %s set to %s\n", ep.Name, formatWeights(ep, got))
			return nil
		},
	}
	setOutput = addOutput(set)
	set.Flags().BoolVar(&force, "force", false, "set it even while a rollout is moving the endpoint (the event says it was forced)")
	return group("mirror", "Show or set shadow traffic of an endpoint", get, set)
}

// parseAssignments reads DEPLOYMENT=PERCENT arguments; a malformed one is
// a usage error listing every problem.
func parseAssignments(args []string) (spec.Weights, error) {
	w, err := config.ParseAssignments(args)
	if err != nil {
		ps := spec.Problems(err)
		msgs := make([]string, len(ps))
		for i, p := range ps {
			msgs[i] = p.Message
		}
		return nil, usagef("%s", strings.Join(msgs, "\n  "))
	}
	return w, nil
}

// showWeights prints an endpoint's traffic or mirror.
func (a *app) showWeights(cmd *cobra.Command, endpoint, which, output string) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	ep, err := c.Endpoint(cmd.Context(), endpoint)
	if err != nil {
		return err
	}
	w := ep.Traffic
	if which == "mirror" {
		w = ep.Mirror
	}
	if output == outputJSON {
		if w == nil {
			w = spec.Weights{}
		}
		return printJSON(a.stdout, w)
	}
	return printWeights(a.stdout, ep, which, w)
}

func (a *app) metricsCommand() *cobra.Command {
	var (
		output  *string
		window  time.Duration
		replica string
	)
	cmd := &cobra.Command{
		Use:   "metrics ENDPOINT",
		Short: "Show per-deployment traffic, errors and latency, compared with the baseline",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) (api.MetricsAnswer, error) {
				return c.Metrics(cmd.Context(), args[0], window, replica)
			}, nil, withHealth(a, cmd, replica, printMetrics, metricsHealth(args[0]))) // health.go
		},
	}
	cmd.Flags().DurationVarP(&window, "window", "w", 5*time.Minute, "window to report, from 10s to 1h")
	cmd.Flags().StringVar(&replica, "replica", "", "one replica's numbers (an ID of modelgate replicas) instead of the fleet's")
	output = addOutput(cmd)
	return cmd
}

func (a *app) eventsCommand() *cobra.Command {
	var (
		output *string
		f      EventFilter
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "List the event log (traffic, mirror and spec changes), or follow it",
		Long: `events lists stored events oldest first. --since SEQ starts after that
sequence number; -f keeps following new events until interrupted (with
-o json, one JSON object a line).`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.Limit < 0 {
				return usagef("--limit must not be negative")
			}
			if follow && f.Limit != 0 {
				return usagef("--limit cannot be used with --follow")
			}
			if follow {
				c, err := a.client(cmd)
				if err != nil {
					return err
				}
				if *output == outputTable {
					fmt.Fprintln(a.stdout, eventHeader)
				}
				return c.StreamEvents(cmd.Context(), f, func(ev api.Event) error {
					if *output == outputJSON {
						return printJSONLine(a.stdout, ev)
					}
					_, err := fmt.Fprintln(a.stdout, eventLine(ev))
					return err
				})
			}
			return show(a, cmd, *output, func(c *Client) ([]api.Event, error) {
				return c.Events(cmd.Context(), f)
			}, listJSON[api.Event]("events"), printEvents)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Endpoint, "endpoint", "", "only this endpoint's events")
	fl.Uint64Var(&f.Since, "since", 0, "only events after this sequence number")
	fl.IntVar(&f.Limit, "limit", 0, "at most this many events (0: all); not with -f")
	fl.BoolVarP(&follow, "follow", "f", false, "keep printing new events as they happen")
	output = addOutput(cmd)
	return cmd
}
