package admin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/store"
)

// snapshotter writes data as the copy, failing after failAfter bytes when
// failAfter >= 0. Its fields are atomic: the server's goroutines read them,
// and the race detector sees no order through the connection.
type snapshotter struct {
	data      []byte
	failAfter atomic.Int64
	calls     atomic.Int64
}

func (s *snapshotter) Snapshot(ctx context.Context, open func(store.SnapshotInfo) (io.Writer, error)) (int64, error) {
	s.calls.Add(1)
	w, err := open(store.SnapshotInfo{Revision: 7, LastSeq: 42, Size: int64(len(s.data))})
	if err != nil {
		return 0, err
	}
	data := s.data
	failAfter := s.failAfter.Load()
	if failAfter >= 0 {
		data = data[:failAfter]
	}
	n, err := w.Write(data)
	if err == nil && failAfter >= 0 {
		err = errors.New("disk read failed")
	}
	return int64(n), err
}

// getBackup asks srv for a backup with token (none when empty) and reads
// the whole answer.
func getBackup(srv *httptest.Server, token string) (*http.Response, []byte, error) {
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/state/backup", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestStateBackup(t *testing.T) {
	data := bytes.Repeat([]byte("state "), 10000)
	snap := &snapshotter{data: data}
	snap.failAfter.Store(-1)
	srv := httptest.NewServer(New(Options{Backend: newFake(), Token: testToken, Snapshots: snap}))
	defer srv.Close()
	get := func(token string) (*http.Response, []byte, error) { return getBackup(srv, token) }

	resp, _, err := get("")
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusUnauthorized || snap.calls.Load() != 0 {
		t.Fatalf("backup without a token = %v, %d snapshots taken; want 401 and none", resp.Status, snap.calls.Load())
	}

	resp, body, err := get(testToken)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("backup = %v, want 200", resp.Status)
	}
	if !bytes.Equal(body, data) {
		t.Errorf("backup body is %d bytes, want the %d bytes of the copy", len(body), len(data))
	}
	for h, want := range map[string]string{
		"Content-Length":   strconv.Itoa(len(data)),
		"Content-Type":     "application/octet-stream",
		api.HeaderRevision: "7",
		api.HeaderLastSeq:  "42",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("header %s = %q, want %q", h, got, want)
		}
	}

	// A copy that fails midway must not look complete to the client.
	snap.failAfter.Store(int64(len(data) / 2))
	if _, body, err := get(testToken); err == nil {
		t.Errorf("backup failing after %d bytes read %d bytes without an error, want the connection cut short", len(data)/2, len(body))
	}
}

func TestStateBackupWithoutSnapshotsIs404(t *testing.T) {
	h := New(Options{Backend: newFake(), Token: testToken})
	if rec := do(t, h, testToken, call{"GET", "/api/v1/state/backup", ""}); rec.Code != http.StatusNotFound {
		t.Errorf("backup with no Snapshots = %d, want 404", rec.Code)
	}
}

// heldSnapshotter holds its copy open until released.
type heldSnapshotter struct {
	entered, release chan struct{}
}

func (s *heldSnapshotter) Snapshot(ctx context.Context, open func(store.SnapshotInfo) (io.Writer, error)) (int64, error) {
	w, err := open(store.SnapshotInfo{Size: 5})
	if err != nil {
		return 0, err
	}
	s.entered <- struct{}{}
	<-s.release
	n, err := w.Write([]byte("state"))
	return int64(n), err
}

// TestStateBackupOneAtATime: each backup holds a read transaction of the
// store, so a second one while the first is written is answered 409.
func TestStateBackupOneAtATime(t *testing.T) {
	snap := &heldSnapshotter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(New(Options{Backend: newFake(), Token: testToken, Snapshots: snap}))
	defer srv.Close()
	get := func() (*http.Response, []byte, error) { return getBackup(srv, testToken) }
	first := make(chan error, 1)
	go func() {
		resp, body, err := get()
		if err == nil && (resp.StatusCode != 200 || string(body) != "state") {
			err = errors.New("first backup: " + resp.Status + " " + string(body))
		}
		first <- err
	}()
	<-snap.entered
	resp, body, err := get()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusConflict || !bytes.Contains(body, []byte("being written already")) {
		t.Errorf("a second backup meanwhile = %v %s, want 409 saying one is being written", resp.Status, body)
	}
	close(snap.release)
	if err := <-first; err != nil {
		t.Error(err)
	}
	// Once it ended, the next one runs.
	snap.release = make(chan struct{})
	close(snap.release)
	if resp, _, err := get(); err != nil || resp.StatusCode != 200 {
		t.Errorf("a backup after the first ended: %v, %v; want 200", resp, err)
	}
}
