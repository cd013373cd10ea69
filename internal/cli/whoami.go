package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/api"
)

func (a *app) whoamiCommand() *cobra.Command {
	var output *string
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Say which kind of token the CLI holds (admin or read-only) and what it may do",
		Args:  exactArgs(),
		RunE: func(cmd *cobra.Command, args []string) error {
			return show(a, cmd, *output, func(c *Client) (api.TokenInfo, error) {
				return c.Token(cmd.Context())
			}, nil, func(w io.Writer, info api.TokenInfo) error {
				return printTokenInfo(w, a.tokenSource, info)
			})
		},
	}
	output = addOutput(cmd)
	return cmd
}

// printTokenInfo says in words what the token read from source may do.
func printTokenInfo(w io.Writer, source string, info api.TokenInfo) error {
	switch info.Kind {
	case "admin":
		fmt.Fprintf(w, "admin token (from %s): may read and change everything\n", source)
	case "read-only":
		fmt.Fprintf(w, "read-only token (from %s): may read the API, the dashboard and the event stream; changes, state backups and profiles need the admin token\n", source)
	default:
		fmt.Fprintf(w, "%s token (from %s)\n", info.Kind, source)
	}
	if info.ValidUntil != nil {
		fmt.Fprintf(w, "it was replaced on the daemon and is accepted until %s (in %s): read the new one from its file\n",
			info.ValidUntil.Format(time.RFC3339), time.Until(*info.ValidUntil).Round(time.Second))
	}
	return nil
}
