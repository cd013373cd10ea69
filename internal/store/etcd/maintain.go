package etcd

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Defaults of the leader's upkeep of the fleet's keys (state.etcd).
const (
	// DefaultCompactEvery is how often the leader compacts etcd's history
	// when asked to (state.etcd.compact_history; kube-apiserver does so for
	// its etcd): every write of a running rollout (about 10 KB every 5
	// seconds) leaves a revision behind, about 170 MB a day per rollout
	// until compacted. Compaction is cluster-wide.
	DefaultCompactEvery = 5 * time.Minute
	// DefaultEventRetention is how long the fleet's event log keeps an
	// event.
	DefaultEventRetention = 30 * 24 * time.Hour
	// trimEvery is how often the leader drops events past the retention.
	trimEvery = time.Hour
)

// Upkeep says what Maintain does.
type Upkeep struct {
	// CompactEvery compacts etcd's history every so often, keeping one
	// interval of it; zero: no compaction (the cluster compacts itself:
	// --auto-compaction-retention).
	CompactEvery time.Duration
	// Retention drops the events older than it, every hour; zero: none
	// are dropped.
	Retention time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logf reports what was done and what failed; nil: nothing.
	Logf func(msg string, args ...any)
}

// Maintain keeps the fleet's keys in bounds while ctx lasts (the leader
// runs it during its terms): it compacts etcd's history to the revision it
// saw one CompactEvery earlier, and drops event batches whose events are
// all older than Retention.
func (s *Store) Maintain(ctx context.Context, u Upkeep) {
	if u.Now == nil {
		u.Now = time.Now
	}
	if u.Logf == nil {
		u.Logf = func(string, ...any) {}
	}
	var compactTick, trimTick <-chan time.Time
	if u.CompactEvery > 0 {
		t := time.NewTicker(u.CompactEvery)
		defer t.Stop()
		compactTick = t.C
	}
	if u.Retention > 0 {
		t := time.NewTicker(trimEvery)
		defer t.Stop()
		trimTick = t.C
		s.trimAndLog(ctx, u)
	}
	var seen int64 // the revision at the last compaction tick
	for {
		select {
		case <-ctx.Done():
			return
		case <-compactTick:
			rev, err := s.revision(ctx)
			if err != nil {
				u.Logf("etcd: read the revision to compact", "err", err)
				continue
			}
			if seen > 0 {
				if err := s.compact(ctx, seen); err != nil {
					u.Logf("etcd: compact", "revision", seen, "err", err)
				}
			}
			seen = rev
		case <-trimTick:
			s.trimAndLog(ctx, u)
		}
	}
}

func (s *Store) trimAndLog(ctx context.Context, u Upkeep) {
	n, err := s.TrimEvents(ctx, u.Now().Add(-u.Retention))
	switch {
	case err != nil:
		u.Logf("etcd: drop events past their retention", "err", err)
	case n > 0:
		u.Logf("etcd: dropped events past their retention", "events", n)
	}
}

// revision is etcd's current revision.
func (s *Store) revision(ctx context.Context) (int64, error) {
	cctx, cancel := s.call(ctx)
	defer cancel()
	resp, err := s.cli.Get(cctx, s.seqKey())
	if err != nil {
		return 0, s.mapErr(err)
	}
	return resp.Header.Revision, nil
}

// compact drops etcd's history before rev. Watchers past it resume from
// the stored events (see Watch).
func (s *Store) compact(ctx context.Context, rev int64) error {
	cctx, cancel := s.call(ctx)
	defer cancel()
	_, err := s.cli.Compact(cctx, rev)
	return s.mapErr(err)
}

// TrimEvents deletes the event batches whose last event is older than
// before, oldest first, in transactions etcd accepts; it returns how many
// events went. The Seqs after them are unchanged: a reader asking for
// events since an earlier Seq gets the oldest kept.
func (s *Store) TrimEvents(ctx context.Context, before time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var keys []string
	n := 0
	_, err := s.scanBatches(ctx, func(key string, last time.Time, size int) bool {
		if !last.Before(before) {
			return false
		}
		keys = append(keys, key)
		n += size
		return true
	})
	if err != nil {
		return 0, err
	}
	for len(keys) > 0 {
		chunk := keys[:min(len(keys), s.maxTxnOps)]
		keys = keys[len(chunk):]
		ops := make([]clientv3.Op, len(chunk))
		for i, k := range chunk {
			ops[i] = clientv3.OpDelete(k)
		}
		cctx, cancel := s.call(ctx)
		_, err := s.cli.Txn(cctx).Then(ops...).Commit()
		cancel()
		if err != nil {
			return 0, s.mapErr(fmt.Errorf("delete events: %w", err))
		}
	}
	return n, nil
}

// scanBatches calls fn with every event batch's key, its last event's
// time and its size, oldest first, until fn returns false.
func (s *Store) scanBatches(ctx context.Context, fn func(key string, last time.Time, size int) bool) (int64, error) {
	from := s.eventsPrefix()
	end := clientv3.GetPrefixRangeEnd(s.eventsPrefix())
	for {
		cctx, cancel := s.call(ctx)
		resp, err := s.cli.Get(cctx, from, clientv3.WithRange(end), clientv3.WithLimit(pageBatches),
			clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		cancel()
		if err != nil {
			return 0, s.mapErr(err)
		}
		for _, kv := range resp.Kvs {
			batch, err := decodeBatch(kv)
			if err != nil {
				return 0, err
			}
			if len(batch) == 0 {
				continue
			}
			if !fn(string(kv.Key), batch[len(batch)-1].Time, len(batch)) {
				return resp.Header.Revision, nil
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return resp.Header.Revision, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
