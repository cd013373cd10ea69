package cli

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/version"
)

// versionInfo is what `modelgate version -o json` prints.
type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
}

func (a *app) versionCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print modelgate's version (the commit it was built from) and Go's",
		Long: `version prints this binary's version: a release's version, or
"devel-<commit>" for a build from a checkout ("+changes" when the work tree
had changes), with the Go version and platform. The gateway a client talks
to says its own in 'modelgate replicas'.`,
		Args: exactArgs(),
	}
	output := addOutput(cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		v := versionInfo{Version: version.String(), Go: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
		if *output == outputJSON {
			return printJSON(a.stdout, v)
		}
		_, err := fmt.Fprintf(a.stdout, "modelgate %s (%s, %s/%s)\n", v.Version, v.Go, v.OS, v.Arch)
		return err
	}
	return cmd
}
