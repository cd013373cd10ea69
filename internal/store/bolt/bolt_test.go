package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bbolt "go.etcd.io/bbolt"

	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/storetest"
)

// waitFor bounds waits for a broken implementation; a correct one is far
// quicker.
const waitFor = 20 * time.Second

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		// A missing parent directory is created.
		path := filepath.Join(t.TempDir(), "state", "modelgate.db")
		cur := mustOpen(t, path)
		t.Cleanup(func() { cur.Close() })
		reopen := func() store.Store {
			if err := cur.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			cur = mustOpen(t, path)
			return cur
		}
		return cur, reopen
	})
}

func mustOpen(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	return s
}

func mustOpenTemp(t testing.TB) *Store {
	t.Helper()
	s := mustOpen(t, filepath.Join(t.TempDir(), "modelgate.db"))
	t.Cleanup(func() { s.Close() })
	return s
}

// TestHelperProcess is not a test: other tests run the test binary as a
// second modelgate process with MODELGATE_STORE_HELPER set.
func TestHelperProcess(t *testing.T) {
	mode, path := os.Getenv("MODELGATE_STORE_HELPER"), os.Getenv("MODELGATE_STORE_PATH")
	if mode == "" {
		return
	}
	s, err := Open(path)
	if err != nil {
		fmt.Print(err)
		os.Exit(3)
	}
	switch mode {
	case "commit-and-die":
		_, evs, err := s.Commit(t.Context(), store.Txn{
			Ops:    []store.Op{{Key: "endpoints/fraud", Value: []byte("v1")}},
			Events: []store.Event{{Endpoint: "fraud", Type: "created", Message: "from the helper"}},
		})
		if err != nil {
			fmt.Print(err)
			os.Exit(4)
		}
		fmt.Print(evs[0].Seq)
		// Exit without Close: what Commit returned must already be on disk.
		os.Exit(0)
	}
	os.Exit(5)
}

func helper(t *testing.T, mode, path string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "MODELGATE_STORE_HELPER="+mode, "MODELGATE_STORE_PATH="+path)
	out, err := cmd.Output()
	return string(out), err
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "modelgate.db")
	s := mustOpen(t, path)
	out, err := helper(t, "commit-and-die", path)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("second process: output %q, error %v; want exit code 3", out, err)
	}
	if want := fmt.Sprintf("state file %q is locked by another modelgate", path); out != want {
		t.Errorf("second process Open error = %q, want %q", out, want)
	}

	// The same in one process, with errors.Is.
	_, err = Open(path)
	if !errors.Is(err, ErrLocked) {
		t.Errorf("second Open error = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2 := mustOpen(t, path)
	s2.Close()
}

func TestCommitDurableWithoutClose(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "modelgate.db")
	out, err := helper(t, "commit-and-die", path)
	if err != nil || out != "1" {
		t.Fatalf("helper process: output %q, error %v; want Seq 1", out, err)
	}
	s := mustOpen(t, path)
	defer s.Close()
	kv, err := s.Get(t.Context(), "endpoints/fraud")
	if err != nil || string(kv.Value) != "v1" {
		t.Errorf("Get after the writer died = %+v, %v; want v1", kv, err)
	}
	evs, err := s.Events(t.Context(), store.EventFilter{})
	if err != nil || len(evs) != 1 || evs[0].Message != "from the helper" {
		t.Errorf("Events after the writer died = %+v, %v; want the helper's event", evs, err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	boltFile := func(name string, fill func(*bbolt.Tx) error) string {
		p := filepath.Join(dir, name)
		db, err := bbolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Update(fill); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbage := bytes.Repeat([]byte("not a database "), 4096)
	notDir := write("plain-file", []byte("x"))

	for _, tc := range []struct {
		name string
		path string
		want string // the error's start
	}{
		{"empty path", "", "open state file: empty path"},
		{"parent is a file", filepath.Join(notDir, "modelgate.db"), fmt.Sprintf("create state directory %q: ", notDir)},
		{"path is a directory", dir, fmt.Sprintf("open state file %q: ", dir)},
		{"garbage", write("garbage.db", garbage), fmt.Sprintf("state file %q is damaged: it is not a bbolt file", filepath.Join(dir, "garbage.db"))},
		{"truncated", write("truncated.db", garbage[:100]), fmt.Sprintf("state file %q is damaged: it is not a bbolt file", filepath.Join(dir, "truncated.db"))},
		{"another program's bbolt file", boltFile("foreign.db", func(tx *bbolt.Tx) error {
			_, err := tx.CreateBucket([]byte("theirs"))
			return err
		}), fmt.Sprintf("open state file %q: not a modelgate state file", filepath.Join(dir, "foreign.db"))},
		{"newer format", boltFile("future.db", func(tx *bbolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			return b.Put(metaFormat, []byte("2"))
		}), fmt.Sprintf(`open state file %q: unsupported state file format "2" (want "1")`, filepath.Join(dir, "future.db"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(tc.path)
			s, err := Open(tc.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want error starting %q", tc.path, tc.want)
			}
			if !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("Open(%q) error = %q, want it to start with %q", tc.path, err, tc.want)
			}
			if after, _ := os.ReadFile(tc.path); !bytes.Equal(before, after) {
				t.Errorf("Open(%q) modified the file it refused", tc.path)
			}
		})
	}
}

func TestConflictMessages(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	ctx := t.Context()
	rev, _, err := s.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "k", Value: []byte("v")}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		txn  store.Txn
		want string
	}{
		{"expectation", store.Txn{ExpectRevisions: map[string]uint64{"k": rev + 1}},
			fmt.Sprintf(`key "k": expected revision %d, found %d: conflict`, rev+1, rev)},
		{"expected absent", store.Txn{ExpectRevisions: map[string]uint64{"z": 0, "k": 0}},
			fmt.Sprintf(`key "k": expected revision 0, found %d: conflict`, rev)},
		{"MustNotExist", store.Txn{Ops: []store.Op{{Key: "k", Guard: store.MustNotExist}}},
			fmt.Sprintf(`key "k": must not exist, found revision %d: conflict`, rev)},
		{"MustExist", store.Txn{Ops: []store.Op{{Key: "nope", Guard: store.MustExist}}},
			`key "nope": must exist, found none: conflict`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := s.Commit(ctx, tc.txn)
			if !errors.Is(err, store.ErrConflict) || err.Error() != tc.want {
				t.Errorf("Commit error = %q, want %q wrapping ErrConflict", err, tc.want)
			}
		})
	}
}

func TestCommitRejectsInvalidTxn(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	for _, tc := range []struct {
		name string
		txn  store.Txn
	}{
		{"empty key", store.Txn{Ops: []store.Op{{Key: "", Value: []byte("v")}}}},
		{"unknown guard", store.Txn{Ops: []store.Op{{Key: "k", Guard: store.Guard(7)}}}},
		{"invalid event data", store.Txn{Events: []store.Event{{Type: "x", Data: []byte("{not json")}}}},
		{"key too large", store.Txn{Ops: []store.Op{{Key: strings.Repeat("k", bbolt.MaxKeySize+1)}}, Events: []store.Event{{Type: "x"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := s.Commit(t.Context(), tc.txn); err == nil || errors.Is(err, store.ErrConflict) {
				t.Errorf("Commit error = %v, want a non-conflict error", err)
			}
			if evs, _ := s.Events(t.Context(), store.EventFilter{}); len(evs) != 0 {
				t.Errorf("a rejected Commit appended %d events", len(evs))
			}
		})
	}
}

func TestEventDataCompacted(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	_, evs, err := s.Commit(t.Context(), store.Txn{Events: []store.Event{
		{Type: "a", Data: []byte("{ \"x\" : [1, 2] }\n")},
		{Type: "b", Data: []byte{}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.Events(t.Context(), store.EventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(evs, stored); diff != "" {
		t.Errorf("Commit's events differ from stored (-commit +stored):\n%s", diff)
	}
	if string(stored[0].Data) != `{"x":[1,2]}` || stored[1].Data != nil {
		t.Errorf("stored Data = %q, %q; want compact JSON and nil", stored[0].Data, stored[1].Data)
	}
}

// waitUntil polls cond until it holds, failing after waitFor.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitFor)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("waited %v for %s", waitFor, what)
		}
	}
}

func (s *Store) liveWatchers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers)
}

func commitEvents(t *testing.T, s *Store, n int) []store.Event {
	t.Helper()
	in := make([]store.Event, n)
	for i := range in {
		in[i] = store.Event{Type: "test", Message: fmt.Sprint(i)}
	}
	_, evs, err := s.Commit(t.Context(), store.Txn{Events: in})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// recv receives exactly the events want and nothing more yet.
func recv(t *testing.T, ch <-chan store.Event, want []store.Event) {
	t.Helper()
	deadline := time.After(waitFor)
	var got []store.Event
	for len(got) < len(want) {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d of %d events", len(got), len(want))
			}
			got = append(got, e)
		case <-deadline:
			t.Fatalf("received %d of %d events in %v", len(got), len(want), waitFor)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("events mismatch (-want +got):\n%s", diff)
	}
	select {
	case e, ok := <-ch:
		t.Fatalf("unexpected extra event %+v (open %v)", e, ok)
	default:
	}
}

func TestWatchLaggingConsumerClosed(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	ch, err := s.Watch(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the watcher to go live", func() bool { return s.liveWatchers() == 1 })
	evs := commitEvents(t, s, WatchBuffer+10)
	if n := s.liveWatchers(); n != 0 {
		t.Errorf("%d live watchers after overflowing the buffer, want 0", n)
	}
	var got []store.Event
	for e := range ch {
		got = append(got, e)
	}
	if diff := cmp.Diff(evs[:WatchBuffer], got); diff != "" {
		t.Errorf("lagging watcher got (-want +got):\n%s", diff)
	}
	// Resuming from the last Seq seen delivers the rest.
	ch, err = s.Watch(t.Context(), got[len(got)-1].Seq)
	if err != nil {
		t.Fatal(err)
	}
	recv(t, ch, evs[WatchBuffer:])
}

func TestWatchBacklogLargerThanBuffer(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	evs := commitEvents(t, s, 3*WatchBuffer+5)
	ch, err := s.Watch(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	// The backlog is paced by the consumer, not dropped.
	recv(t, ch, evs)
	waitUntil(t, "the watcher to go live", func() bool { return s.liveWatchers() == 1 })
	recv(t, ch, commitEvents(t, s, 2))
}

// TestWatchSwitchWhileCommitUnpublished: the watcher reads an event from
// the file that is committed but not yet published, and goes live before
// the publication. It must not receive that event twice.
func TestWatchSwitchWhileCommitUnpublished(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	first := commitEvents(t, s, 2)

	inWindow, release := make(chan struct{}), make(chan struct{})
	s.afterUpdate = func() {
		close(inWindow)
		<-release
	}
	done := make(chan []store.Event)
	go func() {
		_, evs, err := s.Commit(t.Context(), store.Txn{Events: []store.Event{{Type: "test", Message: "racing"}}})
		if err != nil {
			t.Error(err)
		}
		done <- evs
	}()
	<-inWindow
	ch, err := s.Watch(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the watcher to go live", func() bool { return s.liveWatchers() == 1 })
	close(release)
	racing := <-done
	s.afterUpdate = nil

	recv(t, ch, append(append([]store.Event{}, first...), racing...))
	recv(t, ch, commitEvents(t, s, 1))
}

// TestWatchCommitBetweenBacklogAndSwitch: events committed and published
// after the watcher read its backlog but before it went live must still
// reach it.
func TestWatchCommitBetweenBacklogAndSwitch(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	first := commitEvents(t, s, 2)

	atSwitch, release := make(chan struct{}), make(chan struct{})
	calls := 0
	s.beforeSwitch = func() {
		calls++
		if calls == 1 {
			close(atSwitch)
			<-release
		}
	}
	ch, err := s.Watch(t.Context(), 0)
	if err != nil {
		t.Fatal(err)
	}
	<-atSwitch
	// The watcher has its backlog and is not live: these are published
	// to nobody and must be read from the file.
	missed := commitEvents(t, s, 3)
	close(release)
	waitUntil(t, "the watcher to go live", func() bool { return s.liveWatchers() == 1 })
	if calls < 2 {
		t.Errorf("watcher went live after %d backlog reads, want a second read", calls)
	}
	recv(t, ch, append(append([]store.Event{}, first...), missed...))
	recv(t, ch, commitEvents(t, s, 1))
}

// TestWatchManySwitchesUnderLoad starts watchers from just behind the log's
// end while a goroutine commits back to back, so most switches from backlog
// to live race a commit.
func TestWatchManySwitchesUnderLoad(t *testing.T) {
	t.Parallel()
	s := mustOpenTemp(t)
	const commits = 200
	go func() {
		for i := range commits {
			if _, _, err := s.Commit(t.Context(), store.Txn{Events: []store.Event{{Type: "test", Message: fmt.Sprint(i)}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var chans []<-chan store.Event
	var sinces []uint64
	for i := range 40 {
		s.mu.Lock()
		since := s.lastSeq
		s.mu.Unlock()
		since -= min(since, uint64(i%5))
		ch, err := s.Watch(t.Context(), since)
		if err != nil {
			t.Fatal(err)
		}
		chans, sinces = append(chans, ch), append(sinces, since)
		waitUntil(t, "a commit", func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.lastSeq > since || s.lastSeq == commits
		})
	}
	for i, ch := range chans {
		next := sinces[i] + 1
		deadline := time.After(waitFor)
		for next <= commits {
			select {
			case e, ok := <-ch:
				if !ok {
					t.Fatalf("watcher %d from %d closed at %d", i, sinces[i], next)
				}
				if e.Seq != next {
					t.Fatalf("watcher %d from %d: got Seq %d, want %d", i, sinces[i], e.Seq, next)
				}
				next++
			case <-deadline:
				t.Fatalf("watcher %d from %d stuck at %d", i, sinces[i], next)
			}
		}
	}
}

func BenchmarkCommit(b *testing.B) {
	s := mustOpen(b, filepath.Join(b.TempDir(), "modelgate.db"))
	defer s.Close()
	value := bytes.Repeat([]byte("x"), 200)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		_, _, err := s.Commit(ctx, store.Txn{
			Ops:    []store.Op{{Key: "endpoints/fraud", Value: value}},
			Events: []store.Event{{Endpoint: "fraud", Type: "traffic.set", Actor: "bench", Message: "blue=95 green=5", Data: []byte(`{"blue":95,"green":5}`)}},
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
