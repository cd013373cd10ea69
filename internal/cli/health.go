package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/spec"
)

// Health returns the health of an endpoint's backends as the fleet's data
// planes see them (replica's alone when it is not empty): a backend down on
// any replica is down, and the answer names the replicas.
func (c *Client) Health(ctx context.Context, endpoint, replica string) (api.HealthAnswer, error) {
	var out api.HealthAnswer
	err := c.getJSON(ctx, endpointPath(endpoint, "health"), fleetQuery(0, replica), &out)
	return out, err
}

func (a *app) healthCommand() *cobra.Command {
	var (
		output  *string
		replica string
	)
	cmd := &cobra.Command{
		Use:   "health ENDPOINT",
		Short: "Show whether each backend of an endpoint may take requests",
		Long: `health shows every backend of the endpoint's deployments as the gateways'
data planes see them: up, or down (passive health took it out after transport
failures in a row, or its last active health check failed), with the last
error. Each gateway of a fleet judges the backends it sends requests to on
its own: a backend down on any replica is down, and the replicas are named
("down on gw-2"); --replica shows one replica's view. A deployment with no
backend up answers every request 503.`,
		Example: "  modelgate health fraud\n  modelgate health fraud -o json\n  modelgate health fraud --replica gw-2-4711-a1b2c3",
		Args:    exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) (api.HealthAnswer, error) {
				return c.Health(cmd.Context(), args[0], replica)
			}, nil, printHealth)
		},
	}
	output = addOutput(cmd)
	cmd.Flags().StringVar(&replica, "replica", "", "one replica's view (an ID of modelgate replicas) instead of the fleet's")
	return cmd
}

func printHealth(w io.Writer, h api.HealthAnswer) error {
	fmt.Fprint(w, coverageLine(h.Replicas))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tBACKEND\tSTATE\tLAST ERROR")
	for _, d := range h.Deployments {
		for _, b := range d.Backends {
			state := "up"
			if !b.Healthy {
				state = "down"
				if len(b.DownOn) > 0 && len(b.DownOn) < h.Replicas.Reporting {
					state += " on " + strings.Join(b.DownOn, ", ")
				}
			}
			last := b.LastError
			if last == "" {
				last = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Name, b.URL, state, last)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range h.Deployments {
		if !d.Healthy && len(d.Backends) > 0 {
			fmt.Fprintf(w, "warning: %s has no healthy backend%s: every request routed to it is answered 503\n", d.Name, onReplicas(d.UnhealthyOn, h.Replicas))
		}
	}
	return nil
}

// withHealth prints table, then a line for each deployment of the
// endpoints with backends down (GET .../health: the fleet's view, or
// replica's), so that endpoints and metrics show backend health. A daemon without the
// health route (404) adds nothing.
func withHealth[T any](a *app, cmd *cobra.Command, replica string, table func(io.Writer, T) error, endpoints func(T) []string) func(io.Writer, T) error {
	return func(w io.Writer, v T) error {
		if err := table(w, v); err != nil {
			return err
		}
		names := endpoints(v)
		if len(names) == 0 {
			return nil
		}
		c, err := a.client(cmd)
		if err != nil {
			return err
		}
		for _, ep := range names {
			h, err := c.Health(cmd.Context(), ep, replica)
			if err != nil {
				if ae := (*APIError)(nil); errors.As(err, &ae) && ae.Status == http.StatusNotFound {
					continue
				}
				return err
			}
			healthNotes(w, h)
		}
		return nil
	}
}

// onReplicas is " on gw-2, gw-3" when some but not all of the replicas
// reporting are named.
func onReplicas(ids []string, c api.Coverage) string {
	if len(ids) == 0 || len(ids) >= c.Reporting {
		return ""
	}
	return " on " + strings.Join(ids, ", ")
}

// healthNotes writes a line for each deployment of h with backends down.
func healthNotes(w io.Writer, h api.HealthAnswer) {
	for _, d := range h.Deployments {
		var down []string
		for _, b := range d.Backends {
			if !b.Healthy {
				s := b.URL + onReplicas(b.DownOn, h.Replicas)
				if b.LastError != "" {
					s += " (" + b.LastError + ")"
				}
				down = append(down, s)
			}
		}
		switch {
		case len(down) == 0:
		case !d.Healthy:
			fmt.Fprintf(w, "warning: %s/%s has no healthy backend%s: %s; every request routed to it is answered 503 (modelgate health %s)\n",
				h.Endpoint, d.Name, onReplicas(d.UnhealthyOn, h.Replicas), strings.Join(down, ", "), h.Endpoint)
		default:
			fmt.Fprintf(w, "note: %s/%s has %d of %d backends down: %s (modelgate health %s)\n",
				h.Endpoint, d.Name, len(down), len(d.Backends), strings.Join(down, ", "), h.Endpoint)
		}
	}
}

// endpointNames is the names of eps, for withHealth.
func endpointNames(eps []spec.Endpoint) []string {
	names := make([]string, len(eps))
	for i, ep := range eps {
		names[i] = ep.Name
	}
	return names
}

// metricsHealth is the endpoint whose health metrics shows.
func metricsHealth(endpoint string) func(api.MetricsAnswer) []string {
	return func(api.MetricsAnswer) []string { return []string{endpoint} }
}
