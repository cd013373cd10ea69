package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelgate/modelgate/internal/api"
)

// Backup streams a consistent copy of the gateway's state (GET
// /api/v1/state/backup) to w and returns what it holds. The call has no
// overall timeout, since a large state takes what it takes, but fails when
// no byte arrives for CallTimeout.
func (c *Client) Backup(ctx context.Context, w io.Writer) (api.SnapshotInfo, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stalled atomic.Bool
	idle := time.AfterFunc(CallTimeout, func() {
		stalled.Store(true)
		cancel()
	})
	defer idle.Stop()
	fail := func(err error) error {
		if stalled.Load() {
			return fmt.Errorf("state backup: no data from the admin API for %s", CallTimeout)
		}
		return err
	}

	req, err := c.request(ctx, http.MethodGet, "/api/v1/state/backup", nil, nil)
	if err != nil {
		return api.SnapshotInfo{}, err
	}
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := c.http.Do(req)
	if err != nil {
		return api.SnapshotInfo{}, fail(c.unreachable(err))
	}
	defer resp.Body.Close()
	c.warn(resp)
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return api.SnapshotInfo{}, apiError(resp.StatusCode, data)
	}
	info := api.SnapshotInfo{Size: resp.ContentLength}
	info.Revision, err = strconv.ParseUint(resp.Header.Get(api.HeaderRevision), 10, 64)
	if err == nil {
		info.LastSeq, err = strconv.ParseUint(resp.Header.Get(api.HeaderLastSeq), 10, 64)
	}
	if err != nil || info.Size < 0 {
		return info, errors.New("state backup: the answer lacks its length, revision or last event seq (is the admin address a modelgate?)")
	}
	n, err := io.Copy(w, idleReader{resp.Body, idle})
	if err != nil {
		return info, fail(fmt.Errorf("state backup: cut short after %d of %d bytes: %w", n, info.Size, err))
	}
	if n != info.Size {
		return info, fmt.Errorf("state backup: cut short after %d of %d bytes", n, info.Size)
	}
	return info, nil
}

// idleReader restarts the idle timer at every read that returns bytes.
type idleReader struct {
	r    io.Reader
	idle *time.Timer
}

func (r idleReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.idle.Reset(CallTimeout)
	}
	return n, err
}

// BackupResult is what `state backup` reports (-o json).
type BackupResult struct {
	File     string `json:"file"`
	Bytes    int64  `json:"bytes"`
	Revision uint64 `json:"revision"`
	LastSeq  uint64 `json:"last_seq"`
}

func (a *app) stateCommand() *cobra.Command {
	var (
		force  bool
		output *string
	)
	backup := &cobra.Command{
		Use:   "backup FILE",
		Short: "Save a consistent copy of the running gateway's state to FILE",
		Long: `backup asks the running gateway for a copy of its state (endpoints, traffic,
mirror, rollouts and the event log, as of one revision; changes go on while it
is made) and writes it to FILE with mode 0600. FILE appears only once the copy
is complete and on disk; it must not exist unless --force is given.

To restore: stop the gateway, copy FILE over its state file (state.path), start
it. See docs/configuration.md, "Backup and restore".`,
		Args: exactArgs("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.client(cmd)
			if err != nil {
				return err
			}
			res, err := writeBackup(cmd.Context(), c, args[0], force)
			if err != nil {
				return err
			}
			if *output == outputJSON {
				return printJSON(a.stdout, res)
			}
			_, err = fmt.Fprintf(a.stdout, "wrote %s to %s (revision %d, last event seq %d)\n", formatBytes(res.Bytes), res.File, res.Revision, res.LastSeq)
			return err
		},
	}
	backup.Flags().BoolVar(&force, "force", false, "replace FILE if it exists")
	output = addOutput(backup)
	return group("state", "Back up the gateway's state", backup)
}

// writeBackup saves the gateway's state to path: into a temporary file in
// the same directory, synced, then moved into place, so that path never
// holds a partial copy. Without force an existing path is kept and the
// backup refused, also one created while the copy was made.
func writeBackup(ctx context.Context, c *Client, path string, force bool) (BackupResult, error) {
	exists := func() error {
		return fmt.Errorf("%s exists: choose another file, or add --force to replace it", path)
	}
	if _, err := os.Lstat(path); err == nil && !force {
		return BackupResult{}, exists()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".part-") // mode 0600
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary name means nothing to the user
		}
		return BackupResult{}, fmt.Errorf("state backup: cannot create a file in %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a failure; gone already after a rename
	info, err := c.Backup(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return BackupResult{}, err
	}
	if err := place(tmp, path, force); errors.Is(err, fs.ErrExist) {
		return BackupResult{}, exists()
	} else if err != nil {
		return BackupResult{}, fmt.Errorf("state backup: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		err = d.Sync() // the new directory entry, durable
		d.Close()
		if err != nil {
			return BackupResult{}, fmt.Errorf("state backup: sync %s: %w", dir, err)
		}
	}
	return BackupResult{File: path, Bytes: info.Size, Revision: info.Revision, LastSeq: info.LastSeq}, nil
}

// place moves the finished copy tmp to path. Without force it links, which
// fails if path exists; where the file system has no hard links (FAT, some
// network file systems) it checks and renames instead.
func place(tmp, path string, force bool) error {
	if force {
		return os.Rename(tmp, path)
	}
	err := os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return fs.ErrExist
	}
	return os.Rename(tmp, path)
}

// formatBytes writes n as 512 B, 12.0 KiB, 1.2 MiB or 3.4 GiB.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, prefix := float64(n)/unit, "KMGTPE"
	for i := 0; ; i++ {
		if v < unit || i == len(prefix)-1 {
			return fmt.Sprintf("%.1f %ciB", v, prefix[i])
		}
		v /= unit
	}
}
