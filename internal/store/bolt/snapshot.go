package bolt

import (
	"context"
	"fmt"
	"io"

	bbolt "go.etcd.io/bbolt"

	"github.com/modelgate/modelgate/internal/store"
)

// Snapshot writes a backup of the state file to the writer open returns:
// bbolt's Tx.WriteTo inside a read transaction, so the copy is the file as
// of one revision while commits go on. The copy is a complete state file;
// restoring is starting on it in place of the original. It stops at the
// first failed write or when ctx ends.
//
// While the copy is written, a commit that needs bbolt to map a larger file
// waits for it to finish, so a caller writing to a slow reader (a network
// client) should bound each write with a deadline.
func (s *Store) Snapshot(ctx context.Context, open func(store.SnapshotInfo) (io.Writer, error)) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var n int64
	err := s.db.View(func(tx *bbolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		w, err := open(store.SnapshotInfo{
			Revision: getUint(meta, metaRevision),
			LastSeq:  getUint(meta, metaSeq),
			Size:     tx.Size(),
		})
		if err != nil {
			return err
		}
		n, err = tx.WriteTo(ctxWriter{ctx, w})
		if err != nil && ctx.Err() != nil {
			// bbolt flattens its writer's error into text for the meta pages.
			return fmt.Errorf("snapshot: %w", ctx.Err())
		}
		return err
	})
	return n, mapErr(err)
}

// ctxWriter fails writes once ctx has ended, so that a cancelled backup
// ends its read transaction at the next write.
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

var _ store.Snapshotter = (*Store)(nil)
