package cli

import (
	"context"
	"encoding/json"
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

// watchInterval is how often rollout watch asks for the rollout and
// redraws; tests shorten it.
var watchInterval = time.Second

// isTerminal reports whether w is a terminal, where watch redraws its view
// in place; elsewhere it prints a block per change. Tests replace it.
var isTerminal = func(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// ANSI: cursor to the top left, clear the screen.
const clearScreen = "\x1b[H\x1b[2J"

func (a *app) rolloutCommand() *cobra.Command {
	subs := []*cobra.Command{a.rolloutStartCommand(), a.rolloutStatusCommand(), a.rolloutWatchCommand()}
	for _, act := range []struct {
		action api.Action
		short  string
	}{
		{api.ActionPause, "Pause the rollout where it is (traffic stays as it is)"},
		{api.ActionResume, "Resume a paused rollout from its stage"},
		{api.ActionPromote, "Skip to the next stage now (gates are still recorded)"},
		{api.ActionPromoteFull, "Give the canary 100% now: it becomes the stable"},
		{api.ActionAbort, "Stop the rollout: all traffic back to the stable at once"},
		{api.ActionRetry, "Start the last aborted or rolled back rollout again"},
		{api.ActionUndo, "After a success, give the old stable all traffic back"},
	} {
		subs = append(subs, a.rolloutActionCommand(act.action, act.short))
	}
	subs = append(subs, a.rolloutHistoryCommand())
	return group("rollout", "Roll a canary out stage by stage, watch it, steer it", subs...)
}

// startFlags are the flags of rollout start; each one given replaces the
// plan file's field (and the endpoint's plan's, on the daemon).
type startFlags struct {
	file           string
	canary, stable string
	stages         string
	bake, deadline time.Duration
	minRequests    int
	onDeadline     string
	shadow         string
	keepMirror     bool
	force          bool
}

func (a *app) rolloutStartCommand() *cobra.Command {
	var (
		f      startFlags
		output *string
	)
	cmd := &cobra.Command{
		Use:   "start ENDPOINT --canary DEPLOYMENT [flags]",
		Short: "Start rolling a canary out",
		Long: `start begins a rollout of the canary on the endpoint. The stable is the
deployment that holds all live traffic, unless --stable names it. The plan is
the endpoint's (its rollout: in the config file), else the built-in one
(stages 5, 25, 50, 100 with the sequential gate); a plan file (-f, the keys of
a rollout: block, plus canary and stable) and the flags replace its fields,
the flags last. See docs/rollouts.md.`,
		Example: `  modelgate rollout start fraud --canary green
  modelgate rollout start fraud --canary green --shadow 10 --stages 5,25,50,100 --bake 1m
  modelgate rollout start fraud -f plan.yaml --deadline 20m --on-deadline rollback`,
		Args: exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := f.request(cmd)
			if err != nil {
				return err
			}
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			r, err := c.StartRollout(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return printJSON(a.stdout, r)
			}
			fmt.Fprintf(a.stdout, "rollout %s started on %s: %s → %s, plan %s\n", r.ID, r.Endpoint, r.Stable, r.Canary, planText(r))
			fmt.Fprintln(a.stdout, outcome(r))
			if e := r.Estimate; e != nil {
				fmt.Fprintf(a.stdout, "expected: %s\n", e.Text)
				for _, w := range e.Warnings {
					fmt.Fprintf(a.stdout, "warning: %s\n", w)
				}
			}
			fmt.Fprintf(a.stdout, "follow it with: modelgate rollout watch %s\n", r.Endpoint)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&f.file, "file", "f", "", "plan file (YAML): canary, stable and any rollout plan key; - for standard input")
	fl.StringVar(&f.canary, "canary", "", "the deployment to roll out (required, here or in the plan file)")
	fl.StringVar(&f.stable, "stable", "", "the deployment to replace (default: the one holding all live traffic)")
	fl.StringVar(&f.stages, "stages", "", "canary weights of the stages, comma separated, e.g. 5,25,50,100")
	fl.DurationVar(&f.bake, "bake", 0, "minimum time per stage (plan default 30s)")
	fl.IntVar(&f.minRequests, "min-requests", 0, "minimum canary requests per stage (plan default 100)")
	fl.DurationVar(&f.deadline, "deadline", 0, "progress deadline of a stage without a decision (plan default 10m)")
	fl.StringVar(&f.onDeadline, "on-deadline", "", "what the deadline does: pause or rollback (plan default pause)")
	fl.StringVar(&f.shadow, "shadow", "", "run a shadow phase first, copying this percent of live requests to the canary")
	fl.BoolVar(&f.keepMirror, "keep-mirror", false, "keep mirroring to the canary during the live stages (needs a shadow phase)")
	fl.BoolVar(&f.force, "force", false, "start even though the canary has no healthy backend (refused otherwise)")
	output = addOutput(cmd)
	return cmd
}

// request builds the StartRequest: the plan file's, then the flags given.
func (f *startFlags) request(cmd *cobra.Command) (api.StartRequest, error) {
	var req api.StartRequest
	if f.file != "" {
		var data []byte
		var err error
		if f.file == "-" {
			data, err = io.ReadAll(cmd.InOrStdin())
		} else {
			data, err = os.ReadFile(f.file)
		}
		if err != nil {
			return req, fmt.Errorf("read plan: %w", err)
		}
		if err := config.Decode(data, &req); err != nil {
			return req, &config.FileError{Path: f.file, Err: err}
		}
	}
	set := cmd.Flags().Changed
	if set("canary") {
		req.Canary = f.canary
	}
	if set("stable") {
		req.Stable = f.stable
	}
	if set("force") {
		req.Force = f.force
	}
	if set("stages") {
		var stages []spec.Stage
		var bad []string
		for _, s := range strings.Split(f.stages, ",") {
			p, err := spec.ParsePercent(s)
			if err != nil || p == 0 {
				bad = append(bad, fmt.Sprintf("%q", strings.TrimSpace(s)))
				continue
			}
			stages = append(stages, spec.Stage{Weight: p})
		}
		if len(bad) > 0 {
			return req, usagef("--stages %s: %s not a percent above 0 with at most 2 decimals; write e.g. 5,25,50,100", f.stages, strings.Join(bad, ", "))
		}
		req.Stages = stages
	}
	if set("bake") {
		req.Bake = spec.Duration(f.bake)
	}
	if set("min-requests") {
		req.MinRequests = f.minRequests
	}
	if set("deadline") {
		req.ProgressDeadline = spec.Duration(f.deadline)
	}
	if set("on-deadline") {
		switch a := spec.DeadlineAction(f.onDeadline); a {
		case spec.DeadlinePause, spec.DeadlineRollback:
			req.OnDeadline = a
		default:
			return req, usagef("--on-deadline %q: use pause or rollback", f.onDeadline)
		}
	}
	if set("shadow") {
		p, err := spec.ParsePercent(f.shadow)
		if err != nil || p == 0 {
			return req, usagef("--shadow %q: give the percent of live requests to copy, above 0 with at most 2 decimals, e.g. 10", f.shadow)
		}
		if req.Shadow == nil {
			req.Shadow = &spec.ShadowPhase{}
		}
		req.Shadow.Mirror = p
	}
	if set("keep-mirror") {
		if req.Shadow == nil {
			// The plan's shadow block is replaced whole, so there is no
			// mirror percent to keep without one here.
			return req, usagef("--keep-mirror needs a shadow phase: add --shadow PERCENT (or shadow: in the plan file)")
		}
		req.Shadow.KeepMirror = f.keepMirror
	}
	if req.Canary == "" {
		return req, usagef("rollout start needs the canary: --canary DEPLOYMENT (or canary: in the plan file)")
	}
	return req, nil
}

func (a *app) rolloutStatusCommand() *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   "status ENDPOINT",
		Short: "Show the endpoint's current (or last) rollout with its gates' verdicts",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) (api.Rollout, error) {
				return c.Rollout(cmd.Context(), args[0])
			}, nil, printRollout)
		},
	}
	output = addOutput(cmd)
	return cmd
}

func (a *app) rolloutHistoryCommand() *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   "history ENDPOINT",
		Short: "List the endpoint's rollouts, newest first",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) ([]api.Rollout, error) {
				return c.Rollouts(cmd.Context(), args[0])
			}, listJSON[api.Rollout]("rollouts"), printRollouts)
		},
	}
	output = addOutput(cmd)
	return cmd
}

func (a *app) rolloutActionCommand(action api.Action, short string) *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   string(action) + " ENDPOINT",
		Short: short,
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			r, err := c.RolloutAction(cmd.Context(), args[0], action)
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return printJSON(a.stdout, r)
			}
			_, err = fmt.Fprintln(a.stdout, outcome(r))
			return err
		},
	}
	output = addOutput(cmd)
	return cmd
}

// MaxWatchTimeout bounds rollout watch --timeout: a CI job waits at most
// this long for one rollout.
const MaxWatchTimeout = 7 * 24 * time.Hour

func (a *app) rolloutWatchCommand() *cobra.Command {
	var (
		output  *string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "watch ENDPOINT",
		Short: "Follow the endpoint's rollout live until it ends or pauses",
		Long: `watch shows the endpoint's rollout until it ends or pauses: the stage with a
progress bar, the traffic, each gate's verdict and evidence, the bake time and
the deadline left. On a terminal it redraws every second; otherwise it prints
a block whenever the phase, the stage, the reason or a verdict changes.

Its exit code says how the rollout went, for CI:
  0  promoted (succeeded)
  1  rolled back, aborted or undone (and any other failure)
  2  usage error
  3  paused: its progress deadline, a sample-ratio halt, a traffic change
     by hand or a pause; it waits for rollout resume, promote or abort
  4  --timeout passed first; the rollout keeps running
Ctrl-C stops watching (exit 0) and leaves the rollout running. If the daemon
cannot be reached for a while (a restart), watch says so and keeps trying,
until --timeout. With -o json the last line of standard output is one JSON
object: {"result", "exit_code", "message", "rollout"}; "result" is
promoted, rolled_back, aborted, undone, paused, timed_out, interrupted or
error (the rollout could not be read).`,
		Example: `  modelgate rollout watch fraud
  modelgate rollout watch fraud --timeout 30m -o json | tail -n 1 | jq -r .result`,
		Args: exactArgs("ENDPOINT"),
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if timeout < 0 || timeout > MaxWatchTimeout {
				return usagef("--timeout %s: give a duration from 0 (none) to %s, e.g. 30m", timeout, MaxWatchTimeout)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return a.watchFailed(*output == outputJSON, err)
			}
			return a.watch(cmd.Context(), c, args[0], timeout, *output == outputJSON)
		},
	}
	output = addOutput(cmd)
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "stop watching after this long with exit code 4 (0: no limit; at most 168h)")
	return cmd
}

// Results of rollout watch: its JSON line's "result".
const (
	watchPromoted    = "promoted"
	watchRolledBack  = "rolled_back"
	watchAborted     = "aborted"
	watchUndone      = "undone"
	watchPaused      = "paused"
	watchTimedOut    = "timed_out"
	watchInterrupted = "interrupted"
	// watchError: the rollout could not be read (no token, unknown
	// endpoint, no rollout, a refusal): exit 1.
	watchError = "error"
)

// watchFailed reports err, which ends the watch with exit 1, on the JSON
// line too.
func (a *app) watchFailed(asJSON bool, err error) error {
	return a.watchJSON(asJSON, WatchResult{Result: watchError, ExitCode: ExitFailure, Message: describe(err)}, err)
}

// WatchResult is the last line of rollout watch -o json.
type WatchResult struct {
	Result   string       `json:"result"`
	ExitCode int          `json:"exit_code"`
	Message  string       `json:"message"`
	Rollout  *api.Rollout `json:"rollout,omitempty"`
}

// watch follows one rollout (the endpoint's current one when it starts)
// until it ends or pauses, timeout passes (0: never) or ctx ends.
func (a *app) watch(ctx context.Context, c *Client, endpoint string, timeout time.Duration, asJSON bool) error {
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	r, err := c.Rollout(ctx, endpoint)
	if err != nil {
		return a.watchFailed(asJSON, err)
	}
	tty := isTerminal(a.stdout) && !asJSON
	tick := time.NewTicker(watchInterval)
	defer tick.Stop()
	var (
		shown string // plain mode: the state last printed
		note  string // a problem reaching the daemon
	)
	for {
		switch {
		case tty:
			fmt.Fprint(a.stdout, clearScreen+renderWatch(r, note))
		case watchKey(r) != shown:
			if shown != "" {
				fmt.Fprintln(a.stdout)
			}
			fmt.Fprint(a.stdout, renderWatch(r, ""))
			shown = watchKey(r)
		}
		if r.Phase.Terminal() || r.Phase == api.PhasePaused {
			return a.watchEnd(r, asJSON)
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("stopped watching; rollout %s keeps running (%s)", r.ID, r.Phase)
			fmt.Fprintln(a.stdout, msg)
			return a.watchJSON(asJSON, WatchResult{Result: watchInterrupted, ExitCode: ExitOK, Message: msg, Rollout: &r}, nil)
		case <-expired:
			err := fmt.Errorf("rollout %s of %s on %s is still %s after --timeout %s; it keeps running: watch it again, or steer it with modelgate rollout pause|promote|abort %s",
				r.ID, r.Canary, r.Endpoint, r.Phase, timeout, r.Endpoint)
			return a.watchJSON(asJSON, WatchResult{Result: watchTimedOut, ExitCode: ExitTimedOut, Message: err.Error(), Rollout: &r}, &exitError{ExitTimedOut, err})
		case <-tick.C:
		}
		next, err := c.Rollout(ctx, endpoint)
		if ctx.Err() != nil {
			continue // the select above says goodbye
		}
		var apiErr *APIError
		switch {
		case errors.As(err, &apiErr):
			return a.watchFailed(asJSON, err)
		case err != nil:
			// The daemon may be restarting; the rollout resumes with it.
			msg := fmt.Sprintf("daemon unreachable, still trying: %v", err)
			if !tty && note == "" {
				fmt.Fprintln(a.stdout, msg)
			}
			note = msg
			continue
		}
		if note != "" && !tty {
			fmt.Fprintln(a.stdout, "daemon reachable again")
		}
		note = ""
		if next.ID != r.ID {
			// Ours ended and another started (a retry) between two looks:
			// report how ours ended.
			if next, err = rolloutByID(ctx, c, endpoint, r.ID); err != nil {
				return a.watchFailed(asJSON, err)
			}
		}
		r = next
	}
}

// watchEnd reports a rollout that ended or paused: nil for a promotion,
// an error with its exit code and the reason otherwise.
func (a *app) watchEnd(r api.Rollout, asJSON bool) error {
	res := WatchResult{Rollout: &r}
	var err error
	switch r.Phase {
	case api.PhaseSucceeded:
		res.Result, res.ExitCode = watchPromoted, ExitOK
		res.Message = fmt.Sprintf("rollout %s succeeded: %s holds 100%% of %s: %s", r.ID, r.Canary, r.Endpoint, r.Reason)
		fmt.Fprintln(a.stdout, res.Message)
	case api.PhasePaused:
		res.Result, res.ExitCode = watchPaused, ExitPaused
		res.Message = fmt.Sprintf("rollout %s paused, %s holds %s%% of %s: %s (it waits for modelgate rollout resume|promote|abort %s)",
			r.ID, r.Canary, r.Weight, r.Endpoint, r.Reason, r.Endpoint)
		err = &exitError{ExitPaused, errors.New(res.Message)}
	default:
		res.Result, res.ExitCode = watchRolledBack, ExitFailure
		switch r.Phase {
		case api.PhaseAborted:
			res.Result = watchAborted
		case api.PhaseUndone:
			res.Result = watchUndone
		}
		res.Message = fmt.Sprintf("rollout %s %s, %s holds all traffic of %s: %s", r.ID, strings.ReplaceAll(string(r.Phase), "_", " "), r.Stable, r.Endpoint, r.Reason)
		err = errors.New(res.Message)
	}
	return a.watchJSON(asJSON, res, err)
}

// watchJSON prints res as watch's last line with -o json, and returns err.
func (a *app) watchJSON(asJSON bool, res WatchResult, err error) error {
	if !asJSON {
		return err
	}
	b, jerr := json.Marshal(res)
	if jerr != nil {
		return jerr
	}
	fmt.Fprintf(a.stdout, "%s\n", b)
	return err
}

// watchKey is what a plain-mode block is printed for: a change of phase,
// stage, weight, reason or any gate's verdict. The reason's numbers are
// left out: a waiting stage's reason counts requests at every look, and a
// CI log wants a block when something changes, not every second.
func watchKey(r api.Rollout) string {
	k := fmt.Sprintf("%s|%d|%s|%t|%s", r.Phase, r.Stage, r.Weight, r.AwaitingConfirmation, withoutNumbers(r.Reason))
	for _, g := range r.Gates {
		k += "|" + g.Gate + "=" + string(g.Verdict)
	}
	return k
}

// withoutNumbers drops the digits (and what joins them) from s.
func withoutNumbers(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= '0' && c <= '9' || c == ',' || c == '.' || c == '~' {
			return -1
		}
		return c
	}, s)
}

func rolloutByID(ctx context.Context, c *Client, endpoint, id string) (api.Rollout, error) {
	rs, err := c.Rollouts(ctx, endpoint)
	if err != nil {
		return api.Rollout{}, err
	}
	for _, r := range rs {
		if r.ID == id {
			return r, nil
		}
	}
	return api.Rollout{}, fmt.Errorf("rollout %s is no longer in the history of %s", id, endpoint)
}
