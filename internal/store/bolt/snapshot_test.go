package bolt

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/store"
)

// commitN commits key "n" = i with one event per commit, for i from..to-1.
func commitN(t *testing.T, s *Store, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		_, _, err := s.Commit(context.Background(), store.Txn{
			Ops:    []store.Op{{Key: "n", Value: []byte(strconv.Itoa(i))}, {Key: "endpoints/e" + strconv.Itoa(i%5), Value: []byte(strconv.Itoa(i))}},
			Events: []store.Event{{Endpoint: "e" + strconv.Itoa(i%5), Type: "t", Message: strconv.Itoa(i)}},
		})
		if err != nil {
			t.Error(err)
			return
		}
	}
}

// TestSnapshotIsTheStateAtOneRevision backs up a store while another
// goroutine commits, restores the copy, and finds exactly the state as of
// the revision the snapshot announced: every key and event up to it, none
// after, and revisions and Seqs that go on from there.
func TestSnapshotIsTheStateAtOneRevision(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	ctx := t.Context()
	commitN(t, s, 0, 200)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		commitN(t, s, 200, 400)
	}()
	var buf bytes.Buffer
	var info store.SnapshotInfo
	n, err := s.Snapshot(ctx, func(i store.SnapshotInfo) (io.Writer, error) {
		info = i
		return &buf, nil
	})
	wg.Wait()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if n != info.Size || int64(buf.Len()) != n {
		t.Errorf("Snapshot wrote %d bytes (buffer %d), announced %d", n, buf.Len(), info.Size)
	}
	if info.Revision < 200 || info.LastSeq < 200 {
		t.Errorf("Snapshot info %+v, want at least the 200 commits made before it", info)
	}

	path := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r := mustOpen(t, path)
	defer r.Close()
	got, err := r.Events(ctx, store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := s.Events(ctx, store.EventFilter{Limit: int(info.LastSeq)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restored events (-original up to seq %d +restored):\n%s", info.LastSeq, diff)
	}
	kv, err := r.Get(ctx, "n")
	if err != nil {
		t.Fatal(err)
	}
	// Every commit writes "n" and one event: the copy's last of each match.
	if kv.ModRevision != info.Revision || string(kv.Value) != got[len(got)-1].Message {
		t.Errorf("restored n = %q at revision %d; want the last event's %q at the snapshot's revision %d", kv.Value, kv.ModRevision, got[len(got)-1].Message, info.Revision)
	}
	rev, evs, err := r.Commit(ctx, store.Txn{Events: []store.Event{{Type: "t", Message: "after restore"}}})
	if err != nil || rev != info.Revision+1 || evs[0].Seq != info.LastSeq+1 {
		t.Errorf("first commit after restore: revision %d, seq %v, %v; want revision %d, seq %d", rev, evs, err, info.Revision+1, info.LastSeq+1)
	}
}

func TestSnapshotRefusedOrCancelledWritesNothing(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	commitN(t, s, 0, 10)
	refused := errors.New("refused")
	n, err := s.Snapshot(t.Context(), func(store.SnapshotInfo) (io.Writer, error) { return nil, refused })
	if !errors.Is(err, refused) || n != 0 {
		t.Errorf("Snapshot refused by open = %d, %v; want 0, the refusal", n, err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	var buf bytes.Buffer
	n, err = s.Snapshot(ctx, func(store.SnapshotInfo) (io.Writer, error) {
		cancel()
		return &buf, nil
	})
	if !errors.Is(err, context.Canceled) || n != 0 || buf.Len() != 0 {
		t.Errorf("Snapshot cancelled = %d bytes (%d in the buffer), %v; want nothing, context.Canceled", n, buf.Len(), err)
	}
	s.Close()
	if _, err := s.Snapshot(t.Context(), func(store.SnapshotInfo) (io.Writer, error) { return &buf, nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Snapshot of a closed store = %v, want store.ErrClosed", err)
	}
}
