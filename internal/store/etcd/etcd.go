// Package etcd is the store.Store backend on an etcd cluster, for several
// gateways sharing one state (cluster mode). Everything lives under one key
// prefix, so that a cluster may hold other data and several modelgate
// fleets:
//
//	<prefix>k/<key>        a stored key: its value as it is
//	<prefix>seq            the Seq of the last event (decimal); written by
//	                       every Commit, so that every Commit creates a new
//	                       etcd revision and commits that append events are
//	                       serialised (see Commit)
//	<prefix>e/<last seq>   one Commit's events as a JSON array, the key the
//	                       Seq of its last event in 20 digits, so that the
//	                       events after Seq n are in the batches from key
//	                       n+1 on
//
// A Commit is one etcd transaction: the caller's guards and expected
// revisions become compares on mod revisions, the ops puts and deletes, and
// the events one batch key. The store revision is etcd's, a KV's
// ModRevision the key's etcd mod revision. A transaction holds at most
// MaxOps ops (etcd's --max-txn-ops default) and should stay well below
// etcd's 1.5 MiB request limit; a larger one is refused before it is sent.
//
// Not a store.Snapshotter: the state lives in the cluster, whose own
// snapshot (etcdctl snapshot save) is its backup.
package etcd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/modelgate/modelgate/internal/store"
)

// MaxOps is the most ops a Commit may hold with etcd's defaults: etcd
// refuses a transaction of more than --max-txn-ops (default 128)
// operations, and a Commit adds two of its own (the Seq and the events).
const MaxOps = DefaultMaxTxnOps - 2

// Defaults of etcd's limits on one request (its --max-txn-ops and
// --max-request-bytes), which Config may raise to what the cluster allows.
const (
	DefaultMaxTxnOps       = 128
	DefaultMaxRequestBytes = 1536 * 1024
)

// WatchBuffer is the number of events a watcher's channel buffers. A
// watcher whose consumer lets more than WatchBuffer events pile up while it
// follows new ones has its channel closed (it resumes with Watch from the
// last Seq it received), as with the bbolt backend; its backlog is paced
// by its consumer.
const WatchBuffer = 256

// pageBatches is how many event batches one read of the log asks for.
const pageBatches = 64

// maxCommitRetries bounds the retries of a Commit that lost the race for
// the Seq to another commit (of this gateway or another one).
const maxCommitRetries = 100

// Store is the etcd backend. Safe for concurrent use.
type Store struct {
	cli     *clientv3.Client
	owned   bool // Close closes cli
	prefix  string
	timeout time.Duration // of one call (see call)
	// maxTxnOps and maxRequestBytes are the cluster's limits on one
	// request (Config; etcd's defaults otherwise).
	maxTxnOps, maxRequestBytes int

	closed   atomic.Bool
	done     chan struct{} // closed by Close: stops the watchers
	watchers sync.WaitGroup
	closeMu  sync.Mutex
}

// New returns a store keeping its data under prefix in the cluster cli
// talks to. When owned is set, Close closes cli too.
func New(cli *clientv3.Client, prefix string, owned bool) *Store {
	return &Store{cli: cli, owned: owned, prefix: prefix, done: make(chan struct{}), timeout: DefaultCallTimeout,
		maxTxnOps: DefaultMaxTxnOps, maxRequestBytes: DefaultMaxRequestBytes}
}

// DefaultCallTimeout bounds one call to the cluster when Open's
// DialTimeout does not say.
const DefaultCallTimeout = 5 * time.Second

func (s *Store) kvKey(key string) string { return s.prefix + "k/" + key }
func (s *Store) seqKey() string          { return s.prefix + "seq" }
func (s *Store) eventsPrefix() string    { return s.prefix + "e/" }
func (s *Store) batchKey(lastSeq uint64) string {
	return fmt.Sprintf("%s%020d", s.eventsPrefix(), lastSeq)
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// mapErr turns the client's "closed" into store.ErrClosed, and a cluster
// that did not answer within the call's time into store.ErrUnavailable.
func (s *Store) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case s.closed.Load():
		return store.ErrClosed
	case errors.Is(err, rpctypes.ErrNoSpace), errors.Is(err, rpctypes.ErrGRPCNoSpace):
		return fmt.Errorf("%w: etcd's database is full (%v): compact and defragment it, then disarm the NOSPACE alarm (etcdctl alarm disarm); docs/cluster.md, \"etcd's space\"", store.ErrUnavailable, err)
	case errors.Is(err, rpctypes.ErrTooManyRequests), errors.Is(err, rpctypes.ErrGRPCRequestTooManyRequests):
		return fmt.Errorf("%w: etcd is overloaded (%v)", store.ErrUnavailable, err)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), errors.Is(err, rpctypes.ErrGRPCRequestTooLarge),
		errors.Is(err, rpctypes.ErrTooManyOps), errors.Is(err, rpctypes.ErrGRPCTooManyOps), status.Code(err) == codes.ResourceExhausted:
		return fmt.Errorf("%w: etcd refused it (%v; --max-request-bytes is 1.5 MiB and --max-txn-ops 128 by default): apply the file in parts", store.ErrTooLarge, err)
	case errors.Is(err, context.DeadlineExceeded), status.Code(err) == codes.Unavailable, status.Code(err) == codes.DeadlineExceeded:
		return fmt.Errorf("%w: etcd did not answer within %v: %w", store.ErrUnavailable, s.timeout, err)
	}
	return err
}

// call bounds one call to the cluster by the store's timeout, so that a
// cluster that is down fails a call with store.ErrUnavailable instead of
// holding it (the client waits for a connection as long as it may).
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Health asks the cluster for the last Seq within the store's timeout:
// nil when it answers, else an error wrapping store.ErrUnavailable.
func (s *Store) Health(ctx context.Context) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	_, _, err := s.lastSeq(ctx)
	return err
}

// Get returns one key, or store.ErrNotFound.
func (s *Store) Get(ctx context.Context, key string) (store.KV, error) {
	if err := s.check(ctx); err != nil {
		return store.KV{}, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.kvKey(key))
	if err != nil {
		return store.KV{}, s.mapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return store.KV{}, fmt.Errorf("key %q: %w", key, store.ErrNotFound)
	}
	return s.toKV(resp.Kvs[0]), nil
}

func (s *Store) toKV(kv *mvccpb.KeyValue) store.KV {
	return store.KV{Key: string(kv.Key[len(s.kvKey("")):]), Value: kv.Value, ModRevision: uint64(kv.ModRevision)}
}

// List returns every key with the prefix, in key order.
func (s *Store) List(ctx context.Context, prefix string) ([]store.KV, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.kvKey(prefix), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, s.mapErr(err)
	}
	out := make([]store.KV, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, s.toKV(kv))
	}
	return out, nil
}

// Commit applies txn as one etcd transaction. Every Commit reads the last
// Seq and compares its key's mod revision in the transaction: a commit that
// lost the race to another one (whose events took the Seqs it counted on)
// reads again and retries, so Seqs stay strictly increasing with no gap
// across every gateway; a failed guard or expected revision of the caller
// is store.ErrConflict and writes nothing.
func (s *Store) Commit(ctx context.Context, txn store.Txn) (uint64, []store.Event, error) {
	if err := s.check(ctx); err != nil {
		return 0, nil, err
	}
	if err := store.CheckOps(txn.Ops); err != nil {
		return 0, nil, err
	}
	if max := s.maxTxnOps - 2; len(txn.Ops) > max {
		return 0, nil, fmt.Errorf("%w: %d writes in one change, at most %d fit in one etcd transaction (--max-txn-ops %d): apply the file in parts, or raise etcd's --max-txn-ops and state.etcd.max_txn_ops together",
			store.ErrTooLarge, len(txn.Ops), max, s.maxTxnOps)
	}
	events, err := store.PrepareEvents(txn.Events)
	if err != nil {
		return 0, nil, err
	}
	if n := requestBytes(txn, events); n > s.maxRequestBytes {
		return 0, nil, fmt.Errorf("%w: the change is about %d bytes, etcd takes at most %d in one request (--max-request-bytes): apply the file in parts, or raise etcd's --max-request-bytes and state.etcd.max_request_bytes together",
			store.ErrTooLarge, n, s.maxRequestBytes)
	}
	userCmps, describe := s.compares(txn)
	fence, fenced := store.FenceOf(ctx)
	if fenced {
		userCmps = append(userCmps, clientv3.Compare(clientv3.ModRevision(s.kvKey(fence.Key)), "=", int64(fence.Revision)))
	}
	for range maxCommitRetries {
		last, seqRev, err := s.lastSeq(ctx)
		if err != nil {
			return 0, nil, err
		}
		seqCmp := clientv3.Compare(clientv3.ModRevision(s.seqKey()), "=", seqRev)
		ops := make([]clientv3.Op, 0, len(txn.Ops)+2)
		for _, op := range lastPerKey(txn.Ops) {
			if op.Delete {
				ops = append(ops, clientv3.OpDelete(s.kvKey(op.Key)))
			} else {
				ops = append(ops, clientv3.OpPut(s.kvKey(op.Key), string(op.Value)))
			}
		}
		stored := slices.Clone(events)
		for i := range stored {
			stored[i].Seq = last + uint64(i) + 1
		}
		next := last + uint64(len(stored))
		ops = append(ops, clientv3.OpPut(s.seqKey(), strconv.FormatUint(next, 10)))
		if len(stored) > 0 {
			batch, err := json.Marshal(stored)
			if err != nil {
				return 0, nil, fmt.Errorf("commit: encode events: %w", err)
			}
			ops = append(ops, clientv3.OpPut(s.batchKey(next), string(batch)))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Txn(cctx).If(append([]clientv3.Cmp{seqCmp}, userCmps...)...).Then(ops...).
			Else(clientv3.OpGet(s.seqKey())).Commit()
		cancel()
		if err != nil {
			return 0, nil, s.mapErr(fmt.Errorf("commit: %w", err))
		}
		if resp.Succeeded {
			return uint64(resp.Header.Revision), stored, nil
		}
		if seqMoved(resp, seqRev) {
			continue // another commit took the Seqs: count again
		}
		if fenced {
			held, err := s.holds(ctx, fence)
			if err != nil {
				return 0, nil, err
			}
			if !held {
				return 0, nil, store.ErrFenced
			}
		}
		return 0, nil, s.conflict(ctx, describe)
	}
	return 0, nil, fmt.Errorf("commit: lost the race for the event sequence %d times in a row", maxCommitRetries)
}

// requestBytes estimates a Commit's request to etcd: its keys and values,
// its events as JSON, and a little per operation.
func requestBytes(txn store.Txn, events []store.Event) int {
	n := 256
	for _, op := range txn.Ops {
		n += len(op.Key) + len(op.Value) + 64
	}
	for k := range txn.ExpectRevisions {
		n += len(k) + 32
	}
	for _, e := range events {
		n += len(e.Message) + len(e.Data) + len(e.Type) + len(e.Endpoint) + len(e.Actor) + 128
	}
	return n
}

// lastPerKey is ops with only the last op on each key: etcd refuses a
// transaction writing a key twice, and ops apply in order, so the last
// one is what the key ends as (guards are compares, made apart).
func lastPerKey(ops []store.Op) []store.Op {
	last := make(map[string]int, len(ops))
	for i, op := range ops {
		last[op.Key] = i
	}
	if len(last) == len(ops) {
		return ops
	}
	out := make([]store.Op, 0, len(last))
	for i, op := range ops {
		if last[op.Key] == i {
			out = append(out, op)
		}
	}
	return out
}

// seqMoved reports whether the Seq key's mod revision in a failed
// transaction's answer differs from the one the commit compared.
func seqMoved(resp *clientv3.TxnResponse, seqRev int64) bool {
	if len(resp.Responses) == 0 {
		return true
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	var now int64
	if len(kvs) > 0 {
		now = kvs[0].ModRevision
	}
	return now != seqRev
}

// check is one compare of the caller's and what it means.
type check struct {
	key   string
	guard store.Guard // NoGuard: an expected revision
	rev   uint64
}

// compares are txn's guards and expected revisions as etcd compares, and
// the same as checks to name the one that failed.
func (s *Store) compares(txn store.Txn) ([]clientv3.Cmp, []check) {
	var cmps []clientv3.Cmp
	var checks []check
	keys := make([]string, 0, len(txn.ExpectRevisions))
	for k := range txn.ExpectRevisions {
		keys = append(keys, k)
	}
	slices.Sort(keys) // a conflict always names the same key
	for _, k := range keys {
		rev := txn.ExpectRevisions[k]
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(s.kvKey(k)), "=", int64(rev)))
		checks = append(checks, check{key: k, rev: rev})
	}
	for _, op := range txn.Ops {
		switch op.Guard {
		case store.MustNotExist:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.kvKey(op.Key)), "=", 0))
		case store.MustExist:
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(s.kvKey(op.Key)), ">", 0))
		default:
			continue
		}
		checks = append(checks, check{key: op.Key, guard: op.Guard})
	}
	return cmps, checks
}

// conflict reads the keys of checks again to name one that does not hold,
// as the bbolt backend does; the error wraps store.ErrConflict either way.
func (s *Store) conflict(ctx context.Context, checks []check) error {
	for _, c := range checks {
		var got uint64
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Get(cctx, s.kvKey(c.key))
		cancel()
		if err == nil && len(resp.Kvs) > 0 {
			got = uint64(resp.Kvs[0].ModRevision)
		}
		switch {
		case c.guard == store.MustNotExist && got != 0:
			return fmt.Errorf("key %q: must not exist, found revision %d: %w", c.key, got, store.ErrConflict)
		case c.guard == store.MustExist && got == 0:
			return fmt.Errorf("key %q: must exist, found none: %w", c.key, store.ErrConflict)
		case c.guard == store.NoGuard && got != c.rev:
			return fmt.Errorf("key %q: expected revision %d, found %d: %w", c.key, c.rev, got, store.ErrConflict)
		}
	}
	return fmt.Errorf("a guard or expected revision no longer held: %w", store.ErrConflict)
}

// holds reports whether fence's key is still at its revision; an error
// when etcd could not tell.
func (s *Store) holds(ctx context.Context, f store.Fence) (bool, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.kvKey(f.Key))
	if err != nil {
		return false, s.mapErr(err)
	}
	return len(resp.Kvs) == 1 && uint64(resp.Kvs[0].ModRevision) == f.Revision, nil
}

// lastSeq reads the Seq of the last event and the mod revision of its key
// (0, 0 before the first commit).
func (s *Store) lastSeq(ctx context.Context) (seq uint64, modRev int64, err error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.seqKey())
	if err != nil {
		return 0, 0, s.mapErr(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, 0, nil
	}
	seq, err = strconv.ParseUint(string(resp.Kvs[0].Value), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("event sequence key %s holds %q: %w", s.seqKey(), resp.Kvs[0].Value, err)
	}
	return seq, resp.Kvs[0].ModRevision, nil
}

// LastSeq returns the Seq of the last event committed by any gateway.
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	seq, _, err := s.lastSeq(ctx)
	return seq, err
}

// Events returns stored events matching f, oldest first.
func (s *Store) Events(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []store.Event
	_, err := s.scan(ctx, f.Since, 0, func(e store.Event) bool {
		if f.Endpoint == "" || e.Endpoint == f.Endpoint {
			out = append(out, e)
		}
		return f.Limit <= 0 || len(out) < f.Limit
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scan calls fn with every event after Seq since, oldest first, as of
// revision rev (0: now), until fn returns false. It returns the revision
// read at.
func (s *Store) scan(ctx context.Context, since uint64, rev int64, fn func(store.Event) bool) (int64, error) {
	from := s.batchKey(since + 1)
	end := clientv3.GetPrefixRangeEnd(s.eventsPrefix())
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(pageBatches),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Get(cctx, from, opts...)
		cancel()
		if err != nil {
			return 0, s.mapErr(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			batch, err := decodeBatch(kv)
			if err != nil {
				return 0, err
			}
			for _, e := range batch {
				if e.Seq > since && !fn(e) {
					return rev, nil
				}
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

func decodeBatch(kv *mvccpb.KeyValue) ([]store.Event, error) {
	var batch []store.Event
	if err := json.Unmarshal(kv.Value, &batch); err != nil {
		return nil, fmt.Errorf("events %s: %w", kv.Key, err)
	}
	return batch, nil
}

// Watch delivers every event with Seq > since, in order: the stored ones,
// then new ones from an etcd watch on the event batches opened at the
// revision the stored ones were read at, so that none is missed or
// repeated. If etcd compacted that revision away before the watch started
// (a long backlog), the stored events are read again from the last one
// sent.
func (s *Store) Watch(ctx context.Context, since uint64) (<-chan store.Event, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	s.closeMu.Lock()
	if s.closed.Load() {
		s.closeMu.Unlock()
		return nil, store.ErrClosed
	}
	s.watchers.Add(1)
	s.closeMu.Unlock()
	ch := make(chan store.Event, WatchBuffer)
	go func() {
		defer s.watchers.Done()
		defer close(ch)
		s.feed(ctx, ch, since)
	}()
	return ch, nil
}

// feed sends ch the events after since until ctx ends, the store closes or
// the consumer falls WatchBuffer events behind.
func (s *Store) feed(ctx context.Context, ch chan<- store.Event, since uint64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	cursor := since
	for ctx.Err() == nil {
		// The backlog, paced by the consumer.
		rev, err := s.scan(ctx, cursor, 0, func(e store.Event) bool {
			select {
			case ch <- e:
				cursor = e.Seq
				return true
			case <-ctx.Done():
				return false
			}
		})
		if err != nil || ctx.Err() != nil {
			return
		}
		// Then what is committed after rev, which the consumer must keep
		// up with.
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), s.eventsPrefix(), clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		compacted := false
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				compacted = true
				break
			}
			if resp.Err() != nil {
				return
			}
			for _, ev := range resp.Events {
				if ev.Type != clientv3.EventTypePut {
					continue // a batch trimmed by retention
				}
				batch, err := decodeBatch(ev.Kv)
				if err != nil {
					return
				}
				for _, e := range batch {
					if e.Seq <= cursor {
						continue
					}
					select {
					case ch <- e:
						cursor = e.Seq
					default:
						return // too far behind: the consumer resumes with Watch
					}
				}
			}
		}
		if !compacted {
			return // ctx ended or the watch failed: the consumer resumes
		}
	}
}

// Close stops every watcher and, if the store owns its client, closes it.
// Later calls return store.ErrClosed.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed.Swap(true) {
		s.closeMu.Unlock()
		return store.ErrClosed
	}
	close(s.done)
	s.closeMu.Unlock()
	s.watchers.Wait()
	if s.owned {
		return s.cli.Close()
	}
	return nil
}
