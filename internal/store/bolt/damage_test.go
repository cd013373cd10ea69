package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"

	"github.com/modelgate/modelgate/internal/store"
)

// realStateFile writes a state file with the real store: endpoints whose
// traffic changed many times, rollouts, and a few hundred events, spread
// over enough pages that the events bucket has branch pages. It returns
// the file's bytes and the size bbolt's header gives it.
func realStateFile(t testing.TB) (data []byte, used int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "real.db")
	s := mustOpen(t, path)
	ctx := context.Background()
	for i := range 300 {
		ep := fmt.Sprintf("ep%d", i%7)
		txn := store.Txn{
			Ops: []store.Op{
				{Key: "endpoints/" + ep, Value: fmt.Appendf(nil, `{"name":%q,"traffic":{"blue":%d,"green":%d}}`, ep, 100-i%100, i%100)},
			},
			Events: []store.Event{{Endpoint: ep, Type: "traffic.changed", Actor: "api", Message: fmt.Sprintf("traffic of %s changed (%d)", ep, i),
				Data: fmt.Appendf(nil, `{"from":{"blue":100},"to":{"blue":%d,"green":%d}}`, 100-i%100, i%100)}},
		}
		if i%50 == 0 {
			txn.Ops = append(txn.Ops, store.Op{Key: fmt.Sprintf("rollouts/%s/%04d", ep, i), Value: []byte(`{"canary":"green","phase":"running","stage":1}`)})
			txn.Events = append(txn.Events, store.Event{Endpoint: ep, Type: "rollout.started", Message: "rollout of green started"})
		}
		if _, _, err := s.Commit(ctx, txn); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.db.View(func(tx *bbolt.Tx) error {
		used = tx.Size()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data, used
}

// openDamaged writes data as a state file and opens it. A refused file
// must be left as it was; an accepted one must serve reads and a commit
// and close cleanly. A panic or a fault fails the whole test binary, which
// is what these tests are for.
func openDamaged(t *testing.T, dir string, data []byte) error {
	t.Helper()
	path := filepath.Join(dir, "damaged.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(path)
	s, err := Open(path)
	if err != nil {
		if after, _ := os.ReadFile(path); !bytes.Equal(after, data) {
			t.Errorf("Open refused the file (%v) but changed it", err)
		}
		return err
	}
	ctx := context.Background()
	if _, err := s.List(ctx, ""); err != nil {
		t.Errorf("List on an accepted file: %v", err)
	}
	if _, err := s.Events(ctx, store.EventFilter{}); err != nil {
		t.Errorf("Events on an accepted file: %v", err)
	}
	if _, _, err := s.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "after", Value: []byte("x")}}, Events: []store.Event{{Type: "t", Message: "m"}}}); err != nil {
		t.Errorf("Commit on an accepted file: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close on an accepted file: %v", err)
	}
	return nil
}

func TestOpenRefusesDamagedFile(t *testing.T) {
	t.Parallel()
	data, used := realStateFile(t)
	if used < 3*12<<10 {
		t.Fatalf("the real state file uses %d bytes; the cases below need more than 36 KiB", used)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "the file is empty (0 bytes)"},
		{"half", data[:len(data)/2], "the file is cut short"},
		{"12 KiB", data[:12<<10], "the file is cut short"},
		{"header pages overwritten", append(bytes.Repeat([]byte{0xAB}, 8<<10), data[8<<10:]...), "it is not a bbolt file, or both of its header pages are damaged"},
		{"garbage", bytes.Repeat([]byte("not a database "), 4096), "it is not a bbolt file"},
		{"100 bytes", data[:100], "it is not a bbolt file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "damaged.db")
			err := openDamaged(t, dir, tc.data)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want an error wrapping ErrCorrupt", err)
			}
			for _, want := range []string{fmt.Sprintf("state file %q is damaged: ", path), tc.want, "modelgate state backup", "Backup and restore"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Open error = %q\nwant it to contain %q", err, want)
				}
			}
		})
	}
}

// TestOpenDamagedNeverPanics damages a real state file at random (cut
// short, bits flipped, a run of bytes overwritten) and opens each copy:
// every one must be refused with an error or open and work, never crash.
func TestOpenDamagedNeverPanics(t *testing.T) {
	t.Parallel()
	data, used := realStateFile(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	cuts, flips, runs := 60, 300, 60
	if testing.Short() {
		cuts, flips, runs = 10, 50, 10
	}
	for range cuts {
		n := rng.IntN(int(used))
		if err := openDamaged(t, dir, data[:n]); !errors.Is(err, ErrCorrupt) {
			t.Errorf("file cut to %d of %d bytes: Open = %v, want an error wrapping ErrCorrupt", n, used, err)
		}
	}
	refused := 0
	for range flips {
		d := bytes.Clone(data[:used])
		at := rng.IntN(len(d))
		d[at] ^= 1 << rng.IntN(8)
		if openDamaged(t, dir, d) != nil {
			refused++
		}
	}
	for range runs {
		d := bytes.Clone(data[:used])
		at, n := rng.IntN(len(d)), 1+rng.IntN(64)
		for i := at; i < min(at+n, len(d)); i++ {
			d[i] = byte(rng.Uint32())
		}
		if openDamaged(t, dir, d) != nil {
			refused++
		}
	}
	// Most flipped bits land in values or unused space, which bbolt does
	// not checksum; some must land in page headers and be caught.
	if refused == 0 {
		t.Errorf("none of %d damaged copies was refused", flips+runs)
	}
	t.Logf("%d cut short (all refused); %d of %d with flipped bits or overwritten bytes refused, the rest opened and worked", cuts, refused, flips+runs)
}

// FuzzOpenDamaged is TestOpenDamagedNeverPanics for the fuzzer: a real
// state file cut at cut (when below its length), with byte at XORed with
// mask.
func FuzzOpenDamaged(f *testing.F) {
	data, used := realStateFile(f)
	f.Add(uint32(used), uint32(0), byte(0))
	f.Add(uint32(used/2), uint32(0), byte(0))
	f.Add(uint32(used), uint32(4096*3+16), byte(0x80)) // a page's first element
	f.Add(uint32(used), uint32(4096*2+10), byte(0xff)) // the count of a page
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, cut, at uint32, mask byte) {
		d := bytes.Clone(data[:min(int64(cut), used)])
		if len(d) > 0 {
			d[int(at)%len(d)] ^= mask
		}
		openDamaged(t, dir, d)
	})
}

// TestOpenCreatesAMissingFileWhole: a missing file is created complete
// (through a temporary file that is gone afterwards), so that a crash while
// creating never leaves the empty file Open refuses.
func TestOpenCreatesAMissingFileWhole(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "new.db")
	s := mustOpen(t, path)
	s.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "new.db" {
		t.Errorf("directory after creating new.db holds %v, want new.db alone", entries)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("created state file: %v, %v; want a non-empty file with mode 0600", fi, err)
	}
	mustOpen(t, path).Close()
}

// TestVerifyRefusesSharedInlineBuckets: a root leaf rewritten so that, at
// every level, two keys point at the same inline bucket nested inside it
// (about 60 levels in one page) would take 2^60 steps to walk; the walk
// counts elements and refuses more than the file can hold, at once.
// (Found in review: serve hung at start on such a file.)
func TestVerifyRefusesSharedInlineBuckets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err }); err != nil {
		t.Fatal(err)
	}
	ps := db.Info().PageSize
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := readMeta(f, ps)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	page := data[int(m.root)*ps : int(m.root+1)*ps]
	clear(page[8:]) // keep the page id
	levels, p := 0, 0
	for len(page)-p >= 65+16 {
		if p > 0 {
			order.PutUint64(page[p:], 0) // an inline page's id is 0
		}
		order.PutUint16(page[p+8:], leafPage)
		order.PutUint16(page[p+10:], 2)
		rest := len(page) - p
		for _, e := range []int{16, 32} { // two elements, one key "a", one shared inline bucket
			order.PutUint32(page[p+e:], bucketLeaf)
			order.PutUint32(page[p+e+4:], uint32(48-e))
			order.PutUint32(page[p+e+8:], 1)
			order.PutUint32(page[p+e+12:], uint32(rest-49))
		}
		page[p+48] = 'a'
		p += 65 // the bucket header after the key is zero: inline
		levels++
	}
	order.PutUint64(page[p:], 0)
	order.PutUint16(page[p+8:], leafPage) // the deepest level: an empty leaf
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	err = verifyFile(path, int64(len(data)))
	if err == nil || !strings.Contains(err.Error(), "buckets are shared") {
		t.Errorf("verifyFile of %d nested shared inline buckets = %v, want it refused as shared", levels, err)
	}
}
