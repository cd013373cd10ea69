package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/admin"
)

// Health returns the health of an endpoint's backends as the gateway's
// data plane sees them.
func (c *Client) Health(ctx context.Context, endpoint string) (admin.EndpointHealth, error) {
	var out admin.EndpointHealth
	err := c.getJSON(ctx, endpointPath(endpoint, "health"), nil, &out)
	return out, err
}

func (a *app) healthCommand() *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   "health ENDPOINT",
		Short: "Show whether each backend of an endpoint may take requests",
		Long: `health shows every backend of the endpoint's deployments as this gateway's
data plane sees it: up, or down (passive health took it out after transport
failures in a row, or its last active health check failed), with the last
error. A deployment with no backend up answers every request 503.`,
		Example: "  modelgate health fraud\n  modelgate health fraud -o json",
		Args:    exactArgs("ENDPOINT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) (admin.EndpointHealth, error) {
				return c.Health(cmd.Context(), args[0])
			}, nil, printHealth)
		},
	}
	output = addOutput(cmd)
	return cmd
}

func printHealth(w io.Writer, h admin.EndpointHealth) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tBACKEND\tSTATE\tLAST ERROR")
	for _, d := range h.Deployments {
		for _, b := range d.Backends {
			state := "up"
			if !b.Healthy {
				state = "down"
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
			fmt.Fprintf(w, "warning: %s has no healthy backend: every request routed to it is answered 503\n", d.Name)
		}
	}
	return nil
}
