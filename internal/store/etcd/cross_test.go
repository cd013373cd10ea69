package etcd_test

import (
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/etcd"
)

// Two stores on one prefix (two gateways of a fleet): one's watcher sees
// what the other commits, and Seqs continue across both.
func TestTwoStoresOnOnePrefix(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	a := etcd.New(cluster.Client(t), "/fleet/", false)
	b := etcd.New(cluster.Client(t), "/fleet/", false)
	ctx := t.Context()
	if _, _, err := a.Commit(ctx, store.Txn{Events: []store.Event{{Type: "t", Message: "1"}}}); err != nil {
		t.Fatal(err)
	}
	last, err := b.LastSeq(ctx)
	if err != nil || last != 1 {
		t.Fatalf("b.LastSeq = %d, %v; want 1", last, err)
	}
	ch, err := b.Watch(ctx, last)
	if err != nil {
		t.Fatal(err)
	}
	_, evs, err := a.Commit(ctx, store.Txn{Ops: []store.Op{{Key: "k", Value: []byte("v")}}, Events: []store.Event{{Type: "t", Message: "2"}}})
	if err != nil || evs[0].Seq != 2 {
		t.Fatalf("a.Commit = %v, %v; want Seq 2", evs, err)
	}
	select {
	case e := <-ch:
		if e.Seq != 2 || e.Message != "2" {
			t.Errorf("b's watcher got %+v, want Seq 2", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b's watcher saw nothing of a's commit")
	}
	if kv, err := b.Get(ctx, "k"); err != nil || string(kv.Value) != "v" {
		t.Errorf("b.Get = %+v, %v", kv, err)
	}
}
