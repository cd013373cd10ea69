package etcd_test

import (
	"context"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/etcd"
)

// Events past the retention go, the newer ones and the Seqs stay; once
// etcd's history is compacted, a watcher from an old Seq still gets every
// event kept (read from the live keys, not the history).
func TestTrimEventsAndCompact(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	s := etcd.New(cluster.Client(t), "/upkeep/", false)
	ctx := t.Context()
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	commit := func(at time.Time, n int) {
		evs := make([]store.Event, n)
		for i := range evs {
			evs[i] = store.Event{Type: "t", Message: at.String(), Time: at}
		}
		if _, _, err := s.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "k", Value: []byte(at.String())}}, Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	commit(now.Add(-40*24*time.Hour), 3)
	commit(now.Add(-31*24*time.Hour), 2)
	commit(now.Add(-time.Hour), 4)
	n, err := s.TrimEvents(ctx, now.Add(-etcd.DefaultEventRetention))
	if err != nil || n != 5 {
		t.Fatalf("TrimEvents = %d, %v; want the 5 events older than 30 days", n, err)
	}
	evs, err := s.Events(ctx, store.EventFilter{})
	if err != nil || len(evs) != 4 || evs[0].Seq != 6 {
		t.Fatalf("Events after the trim = %d events from Seq %v, %v; want 4 from Seq 6", len(evs), evs, err)
	}
	if last, _ := s.LastSeq(ctx); last != 9 {
		t.Errorf("LastSeq after the trim = %d, want 9", last)
	}

	// Compact the whole history, then watch from before it.
	rev, err := cluster.Client(t).Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.Client(t).Compact(ctx, rev.Header.Revision); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ch, err := s.Watch(wctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	commit(now, 1)
	var got []uint64
	for e := range ch {
		got = append(got, e.Seq)
		if e.Seq == 10 {
			break
		}
	}
	if len(got) != 5 || got[0] != 6 || got[4] != 10 {
		t.Errorf("watch from 0 after the compaction got Seqs %v, want 6..10", got)
	}
}
