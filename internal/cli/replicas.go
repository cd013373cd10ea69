package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/api"
)

// Replicas lists the gateways of the fleet (GET /api/v1/replicas).
func (c *Client) Replicas(ctx context.Context) ([]api.Replica, error) {
	var list api.ReplicaList
	err := c.getJSON(ctx, "/api/v1/replicas", nil, &list)
	return list.Replicas, err
}

func (a *app) replicasCommand() *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   "replicas",
		Short: "List the gateways of the fleet (cluster mode), which one leads the rollouts, and when each was last seen",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) ([]api.Replica, error) {
				return c.Replicas(cmd.Context())
			}, listJSON[api.Replica]("replicas"), func(w io.Writer, rs []api.Replica) error {
				return printReplicas(w, rs, time.Now())
			})
		},
	}
	output = addOutput(cmd)
	return cmd
}

// printReplicas is the table of replicas: the one that answered marked *.
func printReplicas(w io.Writer, rs []api.Replica, now time.Time) error {
	t := newTable(w)
	fmt.Fprintln(t, "REPLICA\tADMIN\tDATA PLANE\tVERSION\tUP\tLAST SEEN\tROLE")
	for _, r := range rs {
		id := r.ID
		if r.Self {
			id += " *"
		}
		role := "follower"
		if r.Leader {
			role = "leader"
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s ago\t%s\n", id, r.AdminURL, r.DataPlane, r.Version,
			now.Sub(r.StartedAt).Round(time.Second), now.Sub(r.LastSeen).Round(time.Second), role)
	}
	return t.Flush()
}
