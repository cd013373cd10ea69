package admin

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/modelgate/modelgate/internal/store"
)

// Headers of GET /api/v1/state/backup: what the copy holds.
const (
	HeaderRevision = "X-Modelgate-Revision"
	HeaderLastSeq  = "X-Modelgate-Last-Seq"
)

// BackupWriteTimeout bounds each write of a backup to the client. The
// store holds a read transaction while it writes the copy, and a commit
// that needs a larger memory map waits for it, so a client that stops
// reading must not hold it for long.
const BackupWriteTimeout = 30 * time.Second

// backup streams a consistent copy of the state: Content-Length is the
// copy's size and the headers say its revision and last event Seq. A
// failure after the headers aborts the connection, so the client sees a
// short body, never a complete-looking one.
func (s *server) backup(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	started := false
	n, err := s.snapshots.Snapshot(r.Context(), func(info store.SnapshotInfo) (io.Writer, error) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		h.Set("Content-Disposition", `attachment; filename="modelgate-state.db"`)
		h.Set(HeaderRevision, strconv.FormatUint(info.Revision, 10))
		h.Set(HeaderLastSeq, strconv.FormatUint(info.LastSeq, 10))
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
		return deadlineWriter{w, rc}, nil
	})
	if err == nil {
		return
	}
	if !started {
		s.writeError(w, r, err)
		return
	}
	if r.Context().Err() == nil {
		s.log.Error("state backup cut short", "written", n, "err", err)
	}
	panic(http.ErrAbortHandler)
}

// deadlineWriter gives each write BackupWriteTimeout.
type deadlineWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	// ErrNotSupported (a writer without deadlines, as in tests) leaves
	// the write unbounded.
	_ = d.rc.SetWriteDeadline(time.Now().Add(BackupWriteTimeout))
	return d.w.Write(p)
}
