package admin

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/store"
)

// BackupWriteTimeout bounds each write of a backup to the client, and
// BackupMinRate the whole copy: it must be written within
// BackupWriteTimeout plus its size at BackupMinRate. The store holds a read
// transaction while it writes the copy, and a commit that needs a larger
// memory map waits for it, so a client that stops reading, or reads
// slowly, must not hold it for long; one backup is written at a time
// (another is answered 409).
const (
	BackupWriteTimeout = 30 * time.Second
	BackupMinRate      = 1 << 20 // bytes per second
)

// backup streams a consistent copy of the state: Content-Length is the
// copy's size and the headers say its revision and last event Seq. A
// failure after the headers aborts the connection, so the client sees a
// short body, never a complete-looking one.
func (s *server) backup(w http.ResponseWriter, r *http.Request) {
	if !s.backingUp.CompareAndSwap(false, true) {
		s.writeError(w, r, &statusError{status: http.StatusConflict, msg: "a backup is being written already: try again when it ends"})
		return
	}
	defer s.backingUp.Store(false)
	rc := http.NewResponseController(w)
	started := false
	n, err := s.snapshots.Snapshot(r.Context(), func(info store.SnapshotInfo) (io.Writer, error) {
		h := w.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		h.Set("Content-Disposition", `attachment; filename="modelgate-state.db"`)
		h.Set(api.HeaderRevision, strconv.FormatUint(info.Revision, 10))
		h.Set(api.HeaderLastSeq, strconv.FormatUint(info.LastSeq, 10))
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		started = true
		end := time.Now().Add(BackupWriteTimeout + time.Duration(info.Size/BackupMinRate+1)*time.Second)
		return deadlineWriter{w, rc, end}, nil
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

// deadlineWriter gives each write BackupWriteTimeout, and none past end.
type deadlineWriter struct {
	w   io.Writer
	rc  *http.ResponseController
	end time.Time
}

func (d deadlineWriter) Write(p []byte) (int, error) {
	// ErrNotSupported (a writer without deadlines, as in tests) leaves
	// the write unbounded.
	deadline := time.Now().Add(BackupWriteTimeout)
	if deadline.After(d.end) {
		deadline = d.end
	}
	_ = d.rc.SetWriteDeadline(deadline)
	return d.w.Write(p)
}
