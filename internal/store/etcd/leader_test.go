package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/etcd"
)

// One gateway leads at a time; a leader whose lease ended (revoked here,
// as expiry does) has every fenced write refused, its term's context ends,
// and the other gateway takes over.
func TestElectionAndFence(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	cli := cluster.Client(t)
	a := etcd.New(cluster.Client(t), "/fleet/", false)
	b := etcd.New(cluster.Client(t), "/fleet/", false)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	terms := make(chan string, 4)
	ended := make(chan string, 4)
	var aFence store.Fence
	go a.Elect(ctx, 2*time.Second, "http://a", func(tctx context.Context, term etcd.Term) {
		aFence = term.Fence
		terms <- "a"
		<-tctx.Done()
		ended <- "a"
	})
	if got := <-terms; got != "a" {
		t.Fatalf("first leader %s", got)
	}
	go b.Elect(ctx, 2*time.Second, "http://b", func(tctx context.Context, term etcd.Term) {
		terms <- "b"
		<-tctx.Done()
	})
	if leader, err := b.Leader(ctx); err != nil || leader != "http://a" {
		t.Fatalf("Leader = %q, %v; want http://a", leader, err)
	}
	put := func(s *etcd.Store, f store.Fence, v string) error {
		_, _, err := s.Commit(store.Fenced(ctx, f), store.Txn{Ops: []store.Op{{Key: "rollouts/x", Value: []byte(v)}}})
		return err
	}
	if err := put(a, aFence, "1"); err != nil {
		t.Fatalf("the leader's fenced write: %v", err)
	}

	// The lease ends while a does not know it yet.
	resp, err := cli.Get(ctx, "/fleet/k/"+aFence.Key)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("election key: %v %v", resp, err)
	}
	if _, err := cli.Revoke(ctx, clientv3.LeaseID(resp.Kvs[0].Lease)); err != nil {
		t.Fatal(err)
	}
	if err := put(a, aFence, "2"); !errors.Is(err, store.ErrFenced) || !errors.Is(err, store.ErrConflict) {
		t.Errorf("the deposed leader's write = %v, want ErrFenced", err)
	}
	if kv, _ := a.Get(ctx, "rollouts/x"); string(kv.Value) != "1" {
		t.Errorf("the refused write changed the key to %q", kv.Value)
	}
	select {
	case <-ended:
	case <-time.After(20 * time.Second):
		t.Fatal("a's term did not end when its lease did")
	}
	select {
	case got := <-terms:
		if got != "b" {
			t.Fatalf("after a's lease ended, %s leads; want b", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("b did not take over")
	}
	if leader, err := a.Leader(ctx); err != nil || leader != "http://b" {
		t.Errorf("Leader = %q, %v; want http://b", leader, err)
	}
}
