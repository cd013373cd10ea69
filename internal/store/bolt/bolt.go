// Package bolt is the embedded store.Store backend: one bbolt file holding
// the keys, the store revision and the event log.
//
// Layout: bucket "kv" maps a key to its ModRevision (8 bytes, big-endian)
// followed by the value; bucket "meta" holds the current store revision,
// the last event Seq and the file format; bucket "events" maps a
// big-endian Seq to the event as JSON; bucket "endpoint_events" holds one
// sub-bucket per endpoint indexing the Seqs of that endpoint's events, so
// an endpoint's log is read without scanning every event.
//
// Open checks an existing file whole before using it and refuses one that
// is empty, cut short or damaged (ErrCorrupt), since bbolt itself would
// panic or fault on such a file (verify.go).
//
// Every successful Commit is one bbolt read-write transaction, fsynced
// before Commit returns, and creates exactly one new store revision (also
// a transaction that only appends events). Event Seqs start at 1, grow by
// one per event and continue across restarts.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/modelgate/modelgate/internal/store"
)

// WatchBuffer is the number of events a watcher's channel buffers. A live
// watcher whose consumer lets more than WatchBuffer events pile up has its
// channel closed, so a slow consumer never blocks Commit; it resumes with
// Watch from the last Seq it received. While a watcher is still reading
// its backlog from the file it is paced by its consumer and never closed
// for being slow.
const WatchBuffer = 256

// ErrLocked is returned by Open when another process holds the state file.
var ErrLocked = errors.New("locked by another modelgate")

// lockTimeout bounds the wait for the state file's lock, so a second
// process fails fast with ErrLocked instead of hanging.
const lockTimeout = time.Second

// format is the layout version written to a new file; Open refuses others.
const format = "1"

var (
	bucketKV             = []byte("kv")
	bucketMeta           = []byte("meta")
	bucketEvents         = []byte("events")
	bucketEndpointEvents = []byte("endpoint_events")

	metaFormat   = []byte("format")
	metaRevision = []byte("revision")
	metaSeq      = []byte("seq")
)

// Store is a store.Store kept in one bbolt file. It is safe for concurrent
// use. Create it with Open.
type Store struct {
	db   *bbolt.DB
	path string

	// closed is set by Close; methods test it to return store.ErrClosed
	// without touching the file.
	closed atomic.Bool

	// commitMu serialises Commit including the notification of watchers,
	// so watchers see events in Seq order. bbolt allows one writer at a
	// time anyway, so this costs no throughput.
	commitMu sync.Mutex

	// mu guards the fields below.
	mu sync.Mutex
	// lastSeq is the Seq of the last event committed and handed to the
	// live watchers. Events up to it are durable in the file.
	lastSeq  uint64
	watchers map[*watcher]struct{}
	// done is closed by Close to stop watchers reading their backlog.
	done chan struct{}
	// feeders counts watcher goroutines still reading their backlog;
	// Close waits for them before closing the file.
	feeders sync.WaitGroup

	// Test hooks, nil outside tests: afterUpdate runs in Commit between
	// the bbolt commit and the notification of watchers; beforeSwitch runs
	// in a watcher's goroutine after it read the backlog, before it tries
	// to switch to live events. They let tests force the interleavings
	// where an event could be lost or sent twice.
	afterUpdate  func()
	beforeSwitch func()
}

// watcher is one Watch call. Until it is registered in Store.watchers its
// feed goroutine owns ch; afterwards Store.mu does.
type watcher struct {
	ctx context.Context
	ch  chan store.Event
	// cursor is the Seq of the last event sent on ch.
	cursor uint64
	// stop unregisters the context.AfterFunc that drops the watcher.
	stop func() bool
}

// Open opens the state file at path, creating it and its directory if
// the file does not exist. An existing file is checked whole before it is
// used (verifyFile, checkRecords): one that is empty, cut short or damaged
// is refused with an error wrapping ErrCorrupt that names the file and how
// to restore a backup, and is left as it was. If another process holds the
// file, Open fails after one second with an error wrapping ErrLocked.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("open state file: empty path")
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("create state directory %q: %w", dir, err)
		}
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := create(path); err != nil {
			return nil, fmt.Errorf("create state file %q: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open state file %q: %w", path, err)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("open state file %q: not a regular file (%s)", path, fi.Mode().Type())
	default:
		if err := verifyFile(path, fi.Size()); err != nil {
			return nil, err
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return nil, openError(path, err)
	}
	if err := db.View(checkRecords); err != nil {
		db.Close()
		return nil, corrupt(path, "%v", err)
	}
	s := &Store{
		db:       db,
		path:     path,
		watchers: make(map[*watcher]struct{}),
		done:     make(chan struct{}),
	}
	if err := db.Update(func(tx *bbolt.Tx) (err error) {
		s.lastSeq, err = layout(tx)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state file %q: %w", path, err)
	}
	return s, nil
}

// create makes a new state file at path without ever leaving a partial
// one there: bbolt writes the first pages into a temporary file beside it,
// which is linked to path once complete. A crash midway leaves no file at
// path (Open refuses an empty one) but may leave the temporary
// ".NAME.new-*" file, which can be deleted. If another process created
// path first, its file is kept.
func create(path string) error {
	dir, name := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+name+".new-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	f.Close()
	defer os.Remove(tmp)
	db, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: lockTimeout})
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		_, err := layout(tx)
		return err
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmp, path); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return syncDir(dir)
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	if dir == "" {
		dir = "."
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// layout creates the buckets of a new file, checks the format of an
// existing one and returns the last event Seq.
func layout(tx *bbolt.Tx) (lastSeq uint64, err error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		// A bbolt file with buckets but no meta is some other program's.
		if err := tx.ForEach(func([]byte, *bbolt.Bucket) error {
			return errors.New("not a modelgate state file")
		}); err != nil {
			return 0, err
		}
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return 0, err
		}
		if err := meta.Put(metaFormat, []byte(format)); err != nil {
			return 0, err
		}
	}
	if got := string(meta.Get(metaFormat)); got != format {
		return 0, fmt.Errorf("unsupported state file format %q (want %q)", got, format)
	}
	for _, name := range [][]byte{bucketKV, bucketEvents, bucketEndpointEvents} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return 0, err
		}
	}
	return getUint(meta, metaSeq), nil
}

// Get returns one key, or an error wrapping store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.check(ctx); err != nil {
		return store.KV{}, err
	}
	var kv store.KV
	err := s.db.View(func(tx *bbolt.Tx) error {
		raw := tx.Bucket(bucketKV).Get([]byte(key))
		if raw == nil {
			return fmt.Errorf("key %q: %w", key, store.ErrNotFound)
		}
		kv = decodeKV(key, raw)
		return nil
	})
	if err != nil {
		return store.KV{}, mapErr(err)
	}
	return kv, nil
}

// List returns every key with the prefix, in key (byte) order; an empty
// prefix lists all keys. The result is never nil.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	kvs := []store.KV{}
	p := []byte(prefix)
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			kvs = append(kvs, decodeKV(string(k), v))
		}
		return nil
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return kvs, nil
}

// Commit applies txn atomically in one fsynced bbolt transaction and
// returns the new store revision and the events as stored: Seq set, Time
// set to the commit time when zero (and in UTC), Data compacted. A failed
// guard or revision expectation returns an error naming the key and
// wrapping store.ErrConflict, and writes nothing. Live watchers receive the
// events before Commit returns. The returned events share Data with what
// watchers receive: treat them as read-only.
func (s *Store) Commit(ctx context.Context, txn store.Txn) (uint64, []store.Event, error) {
	if err := s.check(ctx); err != nil {
		return 0, nil, err
	}
	if err := store.CheckOps(txn.Ops); err != nil {
		return 0, nil, err
	}
	events, err := store.PrepareEvents(txn.Events)
	if err != nil {
		return 0, nil, err
	}
	// Sort the expectations so that a conflict always names the same key.
	expect := make([]string, 0, len(txn.ExpectRevisions))
	for k := range txn.ExpectRevisions {
		expect = append(expect, k)
	}
	slices.Sort(expect)

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	var rev uint64
	err = s.db.Update(func(tx *bbolt.Tx) error {
		kvs := tx.Bucket(bucketKV)
		if f, ok := store.FenceOf(ctx); ok && modRevision(kvs.Get([]byte(f.Key))) != f.Revision {
			return store.ErrFenced
		}
		for _, key := range expect {
			want := txn.ExpectRevisions[key]
			if got := modRevision(kvs.Get([]byte(key))); got != want {
				return fmt.Errorf("key %q: expected revision %d, found %d: %w", key, want, got, store.ErrConflict)
			}
		}
		for _, op := range txn.Ops {
			got := modRevision(kvs.Get([]byte(op.Key)))
			switch {
			case op.Guard == store.MustNotExist && got != 0:
				return fmt.Errorf("key %q: must not exist, found revision %d: %w", op.Key, got, store.ErrConflict)
			case op.Guard == store.MustExist && got == 0:
				return fmt.Errorf("key %q: must exist, found none: %w", op.Key, store.ErrConflict)
			}
		}

		meta := tx.Bucket(bucketMeta)
		rev = getUint(meta, metaRevision) + 1
		if err := putUint(meta, metaRevision, rev); err != nil {
			return err
		}
		for _, op := range txn.Ops {
			var err error
			if op.Delete {
				err = kvs.Delete([]byte(op.Key))
			} else {
				err = kvs.Put([]byte(op.Key), encodeKV(rev, op.Value))
			}
			if err != nil {
				return fmt.Errorf("write key %q: %w", op.Key, err)
			}
		}
		return appendEvents(tx, meta, events)
	})
	if err != nil {
		return 0, nil, mapErr(err)
	}
	if s.afterUpdate != nil {
		s.afterUpdate()
	}
	s.publish(events)
	return rev, events, nil
}

// appendEvents assigns Seqs to events and writes them and their endpoint
// index entries.
func appendEvents(tx *bbolt.Tx, meta *bbolt.Bucket, events []store.Event) error {
	if len(events) == 0 {
		return nil
	}
	log := tx.Bucket(bucketEvents)
	byEndpoint := tx.Bucket(bucketEndpointEvents)
	seq := getUint(meta, metaSeq)
	for i := range events {
		seq++
		events[i].Seq = seq
		data, err := json.Marshal(&events[i])
		if err != nil {
			return fmt.Errorf("encode event %d: %w", seq, err)
		}
		key := seqKey(seq)
		if err := log.Put(key, data); err != nil {
			return fmt.Errorf("write event %d: %w", seq, err)
		}
		if ep := events[i].Endpoint; ep != "" {
			b, err := byEndpoint.CreateBucketIfNotExists([]byte(ep))
			if err != nil {
				return fmt.Errorf("index event %d for endpoint %q: %w", seq, ep, err)
			}
			if err := b.Put(key, []byte{}); err != nil {
				return fmt.Errorf("index event %d for endpoint %q: %w", seq, ep, err)
			}
		}
	}
	return putUint(meta, metaSeq, seq)
}

// publish hands freshly committed events to the live watchers. A watcher
// whose buffer is full is closed rather than waited for.
func (s *Store) publish(events []store.Event) {
	if len(events) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastSeq = events[len(events)-1].Seq
	for w := range s.watchers {
	send:
		for _, e := range events {
			// A watcher that switched to live while this commit was
			// between its bbolt transaction and here has already read
			// these events from the file.
			if e.Seq <= w.cursor {
				continue
			}
			select {
			case w.ch <- e:
				w.cursor = e.Seq
			default:
				s.dropLocked(w)
				break send
			}
		}
	}
}

// LastSeq returns the Seq of the last event committed.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSeq, nil
}

// Events returns stored events matching f, oldest first. The result is
// never nil.
func (s *Store) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if f.Limit < 0 {
		return nil, fmt.Errorf("events: negative limit %d", f.Limit)
	}
	events := []store.Event{}
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		events, err = readEvents(tx, events, f)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return events, nil
}

// readEvents appends the events matching f to dst.
func readEvents(tx *bbolt.Tx, dst []store.Event, f store.EventFilter) ([]store.Event, error) {
	if f.Since == ^uint64(0) {
		return dst, nil
	}
	log := tx.Bucket(bucketEvents)
	from := seqKey(f.Since + 1)
	var c *bbolt.Cursor
	if f.Endpoint == "" {
		c = log.Cursor()
	} else {
		b := tx.Bucket(bucketEndpointEvents).Bucket([]byte(f.Endpoint))
		if b == nil {
			return dst, nil
		}
		c = b.Cursor()
	}
	for k, v := c.Seek(from); k != nil; k, v = c.Next() {
		if f.Limit > 0 && len(dst) >= f.Limit {
			break
		}
		if f.Endpoint != "" {
			v = log.Get(k)
		}
		var e store.Event
		if err := json.Unmarshal(v, &e); err != nil {
			return dst, fmt.Errorf("decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		dst = append(dst, e)
	}
	return dst, nil
}

// Watch delivers every event with Seq > since, in order: first the
// backlog read from the file, paced by the consumer, then live events as
// they commit, with no gap or duplicate between the two. The channel
// buffers WatchBuffer events; a live consumer that falls further behind
// has its channel closed and resumes with Watch from the last Seq it saw.
// The channel is also closed when ctx ends or the store closes.
func (s *Store) Watch(ctx context.Context, since uint64) (<-chan store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	w := &watcher{ctx: ctx, ch: make(chan store.Event, WatchBuffer), cursor: since}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil, store.ErrClosed
	}
	// Added under mu while open, so Close's Wait never races an Add.
	s.feeders.Add(1)
	s.mu.Unlock()
	go s.feed(w)
	return w.ch, nil
}

// feed sends w its backlog from the file, then registers it for live
// events once it has caught up with the last published Seq.
func (s *Store) feed(w *watcher) {
	defer s.feeders.Done()
	for {
		for {
			page, err := s.page(w.cursor)
			if err != nil {
				// The consumer sees a closed channel and retries with
				// Watch, which reports a closed store.
				close(w.ch)
				return
			}
			for _, e := range page {
				select {
				case w.ch <- e:
					w.cursor = e.Seq
				case <-w.ctx.Done():
					close(w.ch)
					return
				case <-s.done:
					close(w.ch)
					return
				}
			}
			if len(page) < WatchBuffer {
				break
			}
		}

		if s.beforeSwitch != nil {
			s.beforeSwitch()
		}
		s.mu.Lock()
		switch {
		case s.closed.Load() || w.ctx.Err() != nil:
			s.mu.Unlock()
			close(w.ch)
			return
		case w.cursor >= s.lastSeq:
			// Every event up to lastSeq has been sent, and every later
			// one will be published to w: no gap, and publish skips
			// what w read ahead of lastSeq, so no duplicate.
			s.watchers[w] = struct{}{}
			w.stop = context.AfterFunc(w.ctx, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.dropLocked(w)
			})
			s.mu.Unlock()
			return
		}
		// Events were committed while reading: read them from the file.
		s.mu.Unlock()
	}
}

// page reads up to WatchBuffer events after since.
func (s *Store) page(since uint64) ([]store.Event, error) {
	var page []store.Event
	err := s.db.View(func(tx *bbolt.Tx) error {
		var err error
		page, err = readEvents(tx, nil, store.EventFilter{Since: since, Limit: WatchBuffer})
		return err
	})
	return page, err
}

// dropLocked unregisters a live watcher and closes its channel. s.mu must
// be held.
func (s *Store) dropLocked(w *watcher) {
	if _, ok := s.watchers[w]; !ok {
		return
	}
	delete(s.watchers, w)
	close(w.ch)
	w.stop()
}

// Close closes every watch channel, waits for watchers reading their
// backlog, and closes the file. Later calls, and every other method, return
// store.ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return store.ErrClosed
	}
	s.closed.Store(true)
	for w := range s.watchers {
		s.dropLocked(w)
	}
	close(s.done)
	s.mu.Unlock()
	s.feeders.Wait()
	// bbolt waits for a Commit or read in progress to finish.
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close state file %q: %w", s.path, err)
	}
	return nil
}

// check reports a closed store or a finished ctx before any work starts.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// mapErr turns bbolt's "not open" (the store closed during the call) into
// store.ErrClosed.
func mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.ErrClosed
	}
	return err
}

func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

func getUint(b *bbolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bbolt.Bucket, key []byte, v uint64) error {
	return b.Put(key, seqKey(v))
}

// encodeKV lays out a stored key's value: ModRevision, then the value.
func encodeKV(rev uint64, value []byte) []byte {
	buf := make([]byte, 8, 8+len(value))
	binary.BigEndian.PutUint64(buf, rev)
	return append(buf, value...)
}

// decodeKV copies a stored value out of bbolt's memory map.
func decodeKV(key string, raw []byte) store.KV {
	return store.KV{
		Key:         key,
		Value:       bytes.Clone(raw[8:]),
		ModRevision: binary.BigEndian.Uint64(raw[:8]),
	}
}

// modRevision is the ModRevision of a stored value, 0 when absent.
func modRevision(raw []byte) uint64 {
	if len(raw) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(raw[:8])
}

var _ store.Store = (*Store)(nil)
