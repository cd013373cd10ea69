package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/bolt"
)

// newBackupEnv is a real admin API whose backups come from snap.
func newBackupEnv(t *testing.T, snap store.Snapshotter) *testEnv {
	t.Helper()
	b := admintest.NewBackend(admintest.Fraud())
	srv := httptest.NewServer(admin.New(admin.Options{Backend: b, Token: testToken, Snapshots: snap}))
	t.Cleanup(srv.Close)
	return &testEnv{t: t, backend: b, srv: srv, vars: map[string]string{EnvAdmin: srv.URL, EnvToken: testToken}}
}

// realStore is a bbolt store with 20 events.
func realStore(t *testing.T) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for i := range 20 {
		if _, _, err := s.Commit(t.Context(), store.Txn{
			Ops:    []store.Op{{Key: "endpoints/fraud", Value: fmt.Appendf(nil, `{"n":%d}`, i)}},
			Events: []store.Event{{Endpoint: "fraud", Type: "traffic.changed", Message: fmt.Sprint(i)}},
		}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// dirEntries lists dir's file names.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestStateBackupWritesARestorableFile(t *testing.T) {
	s := realStore(t)
	e := newBackupEnv(t, s)
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")

	code, out, errOut := e.run("state", "backup", file)
	if code != 0 {
		t.Fatalf("state backup = %d, stderr %q", code, errOut)
	}
	if re := regexp.MustCompile(`^wrote \d+\.\d KiB to ` + regexp.QuoteMeta(file) + ` \(revision 20, last event seq 20\)\n$`); !re.MatchString(out) {
		t.Errorf("output %q, want it to match %s", out, re)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if names := dirEntries(t, dir); !cmp.Equal(names, []string{"backup.db"}) {
		t.Errorf("backup directory holds %v, want backup.db alone (no temporary file left)", names)
	}

	restored, err := bolt.Open(file)
	if err != nil {
		t.Fatalf("open the backup: %v", err)
	}
	defer restored.Close()
	want, _ := s.Events(t.Context(), store.EventFilter{})
	got, err := restored.Events(t.Context(), store.EventFilter{})
	if diff := cmp.Diff(want, got); err != nil || diff != "" {
		t.Errorf("events in the backup (%v) (-gateway +backup):\n%s", err, diff)
	}

	// -o json says the same.
	code, out, errOut = e.run("state", "backup", filepath.Join(dir, "b2.db"), "-o", "json")
	var res BackupResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil {
		t.Fatalf("state backup -o json = %d %q %q", code, out, errOut)
	}
	if res.File != filepath.Join(dir, "b2.db") || res.Revision != 20 || res.LastSeq != 20 || res.Bytes != fi.Size() {
		t.Errorf("-o json = %+v, want the file, revision 20, last seq 20, %d bytes", res, fi.Size())
	}
}

func TestStateBackupKeepsAnExistingFileUnlessForced(t *testing.T) {
	e := newBackupEnv(t, realStore(t))
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.db")
	writeFile(t, file, "precious")

	code, _, errOut := e.run("state", "backup", file)
	if code != 1 || !strings.Contains(errOut, file+" exists") || !strings.Contains(errOut, "--force") {
		t.Errorf("state backup over an existing file = %d, stderr %q; want 1, naming the file and --force", code, errOut)
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Errorf("the existing file was changed without --force")
	}
	if code, _, errOut := e.run("state", "backup", "--force", file); code != 0 {
		t.Fatalf("state backup --force = %d, stderr %q", code, errOut)
	}
	if s, err := bolt.Open(file); err != nil {
		t.Errorf("file replaced with --force does not open: %v", err)
	} else {
		s.Close()
	}
	if names := dirEntries(t, dir); !cmp.Equal(names, []string{"backup.db"}) {
		t.Errorf("backup directory holds %v, want backup.db alone", names)
	}
}

// failingSnapshots announces size bytes and fails after half of them.
type failingSnapshots struct{ size int64 }

func (f failingSnapshots) Snapshot(ctx context.Context, open func(store.SnapshotInfo) (io.Writer, error)) (int64, error) {
	w, err := open(store.SnapshotInfo{Revision: 1, LastSeq: 1, Size: f.size})
	if err != nil {
		return 0, err
	}
	n, _ := w.Write(make([]byte, f.size/2))
	return int64(n), errors.New("disk read failed")
}

func TestStateBackupFailureLeavesNoFile(t *testing.T) {
	for _, tc := range []struct {
		name    string
		env     *testEnv
		token   string
		wantErr string
	}{
		{"cut short", newBackupEnv(t, failingSnapshots{1 << 20}), testToken, "state backup: cut short after"},
		{"wrong token", newBackupEnv(t, realStore(t)), "not-the-token", "invalid bearer token"},
		{"no backups served", newTestEnv(t), testToken, "no such API path"},
		{"no such directory", newBackupEnv(t, realStore(t)), testToken, "state backup: cannot create a file in DIR/missing: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env.t = t
			tc.env.vars[EnvToken] = tc.token
			dir := t.TempDir()
			file := filepath.Join(dir, "backup.db")
			if tc.name == "no such directory" {
				file = filepath.Join(dir, "missing", "backup.db")
			}
			code, _, errOut := tc.env.run("state", "backup", file)
			if want := strings.ReplaceAll(tc.wantErr, "DIR", dir); code != 1 || !strings.Contains(errOut, want) {
				t.Errorf("state backup = %d, stderr %q; want 1 and %q", code, errOut, want)
			}
			if names := dirEntries(t, dir); len(names) != 0 {
				t.Errorf("a failed backup left %v", names)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1258291: "1.2 MiB", 5 << 30: "5.0 GiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
