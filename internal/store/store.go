// Package store keeps modelgate's durable state (endpoints with their
// traffic and mirror, later rollouts) and its event log behind one small
// interface. The interface is shaped after etcd: keys with modification
// revisions, atomic transactions guarded by revision compares, and a
// watchable, strictly ordered event log. The bbolt backend lives in
// store/bolt; an etcd backend will be the second implementation, and both
// must pass the conformance suite in store/storetest.
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/modelgate/modelgate/internal/api"
)

// Errors returned by every backend. Callers test them with errors.Is.
var (
	// ErrNotFound: the key does not exist (the API answers 404).
	ErrNotFound = api.ErrNotFound
	// ErrConflict: a transaction's revision guard failed; nothing was
	// written (the API answers 409).
	ErrConflict = api.ErrConflict
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store closed")
	// ErrTooLarge: the transaction holds more than the backend can commit
	// at once (etcd: 128 operations); nothing was written.
	ErrTooLarge = errors.New("transaction too large for the state store")
	// ErrUnavailable: the store could not be reached in time (an etcd
	// cluster down or cut off). A Commit that fails so was most likely not
	// applied, but may have been (etcd applied it and answered after the
	// deadline): a writer that must not repeat a change reads the key
	// again before making it again.
	ErrUnavailable = errors.New("the state store cannot be reached")
)

// KV is one stored key with its value and the store revision of the
// transaction that last wrote it.
type KV struct {
	Key         string
	Value       []byte
	ModRevision uint64
}

// Op is one write in a transaction.
type Op struct {
	// Key to write or delete.
	Key string
	// Value to put; ignored when Delete is set.
	Value []byte
	// Delete removes the key (deleting a missing key is not an error
	// unless a guard below says so).
	Delete bool
	// Guard, when set, must hold for the transaction to commit.
	Guard Guard
}

// Guard is a compare on a key's ModRevision before a transaction commits.
type Guard int

const (
	// NoGuard commits whatever the key's revision.
	NoGuard Guard = iota
	// MustNotExist commits only if the key is absent.
	MustNotExist
	// MustExist commits only if the key exists.
	MustExist
)

// Txn is an atomic write: all ops apply and all events are appended, or
// nothing happens. ExpectRevisions maps a key to the ModRevision it must
// still have (optimistic concurrency, like an etcd Compare on
// mod_revision); 0 there means the key must be absent. Every guard and
// expectation is checked against the state before the transaction, as
// etcd compares are; then the ops apply in order.
type Txn struct {
	Ops             []Op
	ExpectRevisions map[string]uint64
	Events          []Event
}

// Event is api.Event, the wire form.
type Event = api.Event

// EventFilter selects events from the log.
type EventFilter struct {
	// Since returns events with Seq > Since.
	Since uint64
	// Endpoint, when set, keeps only that endpoint's events.
	Endpoint string
	// Limit caps the number returned (oldest first); 0 means no cap.
	Limit int
}

// Store is durable state and the event log. Implementations are safe for
// concurrent use.
type Store interface {
	// Get returns one key, or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns every key with the prefix, in key order.
	List(ctx context.Context, prefix string) ([]KV, error)
	// Commit applies txn atomically and returns the store revision it
	// created and the events as stored (with Seq set). A failed guard or
	// revision expectation returns an error wrapping ErrConflict and
	// writes nothing.
	Commit(ctx context.Context, txn Txn) (revision uint64, events []Event, err error)
	// Events returns stored events matching f, oldest first.
	Events(ctx context.Context, f EventFilter) ([]Event, error)
	// LastSeq returns the Seq of the last event committed (0 before the
	// first): a reader that loads the state after it and then watches from
	// it misses no change.
	LastSeq(ctx context.Context) (uint64, error)
	// Watch delivers every event with Seq > since, in order: first those
	// already stored, then new ones as they are committed. The channel is
	// closed when ctx ends or the store closes. A consumer that falls too
	// far behind has its channel closed early; it resumes with the last
	// Seq it saw.
	Watch(ctx context.Context, since uint64) (<-chan Event, error)
	// Close releases the store; later calls return ErrClosed.
	Close() error
}

// SnapshotInfo is api.SnapshotInfo, the wire form.
type SnapshotInfo = api.SnapshotInfo

// Snapshotter is a Store that can write a backup of itself: a consistent
// copy of all its keys and events as of one revision, which the same
// backend can be started on to restore that state. Commits go on while the
// copy is written and are not in it.
//
// A backend whose state is its own (bbolt: one gateway's file) implements
// it. A backend over a shared cluster should not: the state of an etcd
// backend lives in the cluster, and the way to back it up is the cluster's
// own snapshot (etcdctl snapshot save), which also holds what the other
// gateways and other users of the cluster wrote; a copy one gateway made of
// its view would be no cluster backup.
type Snapshotter interface {
	// Snapshot writes the copy to the writer open returns. open is called
	// once, before any byte is written, with what the copy will hold, so
	// that the caller can announce it (an HTTP answer's headers) or
	// refuse (its error is returned and nothing is written). Snapshot
	// returns the bytes written; fewer than SnapshotInfo.Size with an
	// error means the copy is incomplete and must be thrown away.
	Snapshot(ctx context.Context, open func(SnapshotInfo) (io.Writer, error)) (int64, error)
}

// CheckOps refuses a transaction's ops that no backend can apply: an
// empty key, an unknown guard.
func CheckOps(ops []Op) error {
	for i, op := range ops {
		if op.Key == "" {
			return fmt.Errorf("commit: op %d: empty key", i)
		}
		if op.Guard < NoGuard || op.Guard > MustExist {
			return fmt.Errorf("commit: key %q: unknown guard %d", op.Key, op.Guard)
		}
	}
	return nil
}

// PrepareEvents copies a transaction's events into the form a backend
// stores them in (no Seq yet, the time set and in UTC, the data compacted
// JSON), so that what Commit returns equals what Events reads back.
func PrepareEvents(in []Event) ([]Event, error) {
	if len(in) == 0 {
		return nil, nil
	}
	now := time.Now().UTC()
	out := make([]Event, len(in))
	for i, e := range in {
		e.Seq = 0
		if e.Time.IsZero() {
			e.Time = now
		} else {
			e.Time = e.Time.UTC()
		}
		if len(e.Data) == 0 {
			e.Data = nil
		} else {
			var buf bytes.Buffer
			if err := json.Compact(&buf, e.Data); err != nil {
				return nil, fmt.Errorf("commit: event %d (%s): invalid data: %w", i, e.Type, err)
			}
			e.Data = buf.Bytes()
		}
		out[i] = e
	}
	return out, nil
}

// Fence is a key and the revision it must still be at for a commit to
// apply: the election key of the fleet's leader (cluster mode). A leader
// whose lease ended, and who may not know it yet (paused, cut off), finds
// its key gone and every write it makes refused.
type Fence struct {
	Key      string
	Revision uint64
}

type fenceKey struct{}

// Fenced returns ctx making every Commit called with it expect f too.
func Fenced(ctx context.Context, f Fence) context.Context {
	return context.WithValue(ctx, fenceKey{}, f)
}

// FenceOf returns the fence Fenced put in ctx, if any.
func FenceOf(ctx context.Context) (Fence, bool) {
	f, ok := ctx.Value(fenceKey{}).(Fence)
	return f, ok
}

// ErrFenced wraps ErrConflict when a commit's fence no longer holds.
var ErrFenced = fmt.Errorf("this gateway no longer leads the fleet (its lease ended), so it may not write: %w", ErrConflict)
