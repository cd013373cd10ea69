package benchproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// RepoRoot walks up from the working directory to modelgate's go.mod, so
// that a bench builds the right tree whichever subdirectory it is run from.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module github.com/modelgate/modelgate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the modelgate repository (no go.mod of github.com/modelgate/modelgate above the working directory)")
		}
		dir = parent
	}
}

// Build compiles src's cmd/modelgate to bin. src is a work tree or an
// extracted revision; the compiler's output is kept in the error, since a
// bench that cannot build has nothing else to show.
func Build(ctx context.Context, src, bin string) error {
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/modelgate")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v: %s", err, out)
	}
	return nil
}

// ServeCmd writes cfg to dir/modelgate.yaml and returns `bin serve` of it,
// run in dir with its stdout going to dir/modelgate.log (logf, which the
// caller closes), so that every bench leaves the same files behind to
// look at after a failed run. cmd is not started: callers differ in where
// stderr goes.
func ServeCmd(bin, dir, cfg string) (cmd *exec.Cmd, logf *os.File, err error) {
	cfgPath := filepath.Join(dir, "modelgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, nil, err
	}
	logf, err = os.Create(filepath.Join(dir, "modelgate.log"))
	if err != nil {
		return nil, nil, err
	}
	cmd = exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Dir = dir
	cmd.Stdout = logf
	return cmd, logf, nil
}
