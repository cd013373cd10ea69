package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/api"
)

// ShadowReport fetches the shadow report of an endpoint over window (zero
// asks for the server's default, 5m): the fleet's copies in cluster mode,
// or replica's alone when it is not empty.
func (c *Client) ShadowReport(ctx context.Context, endpoint string, window time.Duration, replica string) (api.ShadowAnswer, error) {
	var rep api.ShadowAnswer
	err := c.getJSON(ctx, endpointPath(endpoint, "shadow"), fleetQuery(window, replica), &rep)
	return rep, err
}

func (a *app) shadowCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shadow",
		Short: "Show how shadow deployments' answers compare with the live ones",
		Args:  exactArgs(),
		RunE:  func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	var (
		output  *string
		window  time.Duration
		replica string
	)
	report := &cobra.Command{
		Use:   "report ENDPOINT",
		Short: "Match rate with its 95% interval, drops, errors, latency shadow vs live, and mismatch samples",
		Args:  exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) (api.ShadowAnswer, error) {
				return c.ShadowReport(cmd.Context(), args[0], window, replica)
			}, nil, printShadowReport)
		},
	}
	report.Flags().DurationVarP(&window, "window", "w", 5*time.Minute, "window to report, from 10s to 1h")
	report.Flags().StringVar(&replica, "replica", "", "one replica's copies (an ID of modelgate replicas) instead of the fleet's")
	output = addOutput(report)
	cmd.AddCommand(report)
	return cmd
}

// printShadowReport renders one row per shadow deployment, then its
// latest mismatches.
func printShadowReport(w io.Writer, rep api.ShadowAnswer) error {
	if len(rep.Shadows) == 0 {
		_, err := fmt.Fprintf(w, "endpoint %s has no shadow data in the last %s%s (set a mirror: modelgate mirror set %s DEPLOYMENT=PCT)\n%s",
			rep.Endpoint, rep.Window, onReplica(rep.Replicas), rep.Endpoint, coverageLine(rep.Replicas))
		return err
	}
	names := make([]string, 0, len(rep.Shadows))
	for name := range rep.Shadows {
		names = append(names, name)
	}
	sort.Strings(names)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "shadow report of %s over the last %s%s\n%s", rep.Endpoint, rep.Window, onReplica(rep.Replicas), coverageLine(rep.Replicas))
	fmt.Fprintln(tw, "SHADOW\tMIRRORED\tCOMPARED\tMATCH RATE\t95% INTERVAL\tDROPPED\tERRORS\tTIMEOUTS\tP99 SHADOW\tP99 LIVE\t")
	for _, name := range names {
		s := rep.Shadows[name]
		rate, ci := "-", "-"
		if s.MatchRate != nil {
			rate = fmt.Sprintf("%.2f%%", *s.MatchRate*100)
		}
		if s.MatchRateCI95 != nil {
			ci = fmt.Sprintf("%.2f–%.2f%%", s.MatchRateCI95[0]*100, s.MatchRateCI95[1]*100)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\t%d\t%.1f ms\t%.1f ms\t\n", name, s.Mirrored, s.Compared, rate, ci,
			s.Dropped, s.Errors, s.Timeouts, s.LatencyMS.Shadow.P99, s.LatencyMS.Live.P99)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, name := range names {
		for i, m := range rep.Shadows[name].Mismatches {
			if i == 0 {
				fmt.Fprintf(w, "\nlatest mismatches of %s:\n", name)
			}
			if i == 5 {
				fmt.Fprintf(w, "  ... %d more (-o json shows all)\n", len(rep.Shadows[name].Mismatches)-5)
				break
			}
			fmt.Fprintf(w, "  %s  %s: live %s, shadow %s\n", m.RequestID, m.Reason, m.Live, m.Shadow)
		}
	}
	return nil
}
