package etcd_test

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/etcd"
	"github.com/modelgate/modelgate/internal/store/storetest"
)

// TestConformance runs the store conformance suite against a real etcd
// (one embedded member), each test under a prefix of its own.
func TestConformance(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	var n atomic.Int64
	storetest.Run(t, func(t *testing.T) (store.Store, func() store.Store) {
		prefix := fmt.Sprintf("/modelgate-test/%d/", n.Add(1))
		cur := etcd.New(cluster.Client(t), prefix, true)
		t.Cleanup(func() { cur.Close() })
		reopen := func() store.Store {
			cur.Close()
			cur = etcd.New(cluster.Client(t), prefix, true)
			return cur
		}
		return cur, reopen
	})
}

// A prefix records the schema version it was created with, and a gateway
// of another version refuses it; a cluster nobody answers for fails
// within the dial timeout with what to check.
func TestOpen(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	ctx := t.Context()
	cfg := etcd.Config{Endpoints: cluster.Endpoints(), Prefix: "/fleet-a/", DialTimeout: 5 * time.Second}
	s, err := etcd.Open(ctx, cfg)
	if err != nil {
		t.Fatalf("Open on a new prefix: %v", err)
	}
	s.Close()
	if s, err = etcd.Open(ctx, cfg); err != nil {
		t.Fatalf("Open again: %v", err)
	}
	s.Close()
	if _, err := cluster.Client(t).Put(ctx, "/fleet-a/schema", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := etcd.Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), `schema version "2"`) || !strings.Contains(err.Error(), "state.etcd.prefix") {
		t.Errorf("Open on a prefix of another schema = %v", err)
	}

	dead := etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/x/", DialTimeout: 200 * time.Millisecond}
	if _, err := etcd.Open(ctx, dead); err == nil || !strings.Contains(err.Error(), "no member answered within 200ms") {
		t.Errorf("Open with no member = %v", err)
	}
}

// A change of more writes than one etcd transaction holds is refused with
// store.ErrTooLarge, and writes nothing.
func TestTooManyWrites(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	s := etcd.New(cluster.Client(t), "/big/", false)
	ops := make([]store.Op, etcd.MaxOps+1)
	for i := range ops {
		ops[i] = store.Op{Key: fmt.Sprintf("endpoints/e%d", i), Value: []byte("{}")}
	}
	if _, _, err := s.Commit(t.Context(), store.Txn{Ops: ops}); !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), "apply the file in parts") {
		t.Errorf("Commit of %d writes = %v, want ErrTooLarge", len(ops), err)
	}
	if kvs, err := s.List(t.Context(), ""); err != nil || len(kvs) != 0 {
		t.Errorf("after the refused commit: %d keys, %v", len(kvs), err)
	}
	if _, _, err := s.Commit(t.Context(), store.Txn{Ops: ops[:etcd.MaxOps]}); err != nil {
		t.Errorf("Commit of %d writes: %v", etcd.MaxOps, err)
	}
}

// A change larger than etcd takes in one request (1.5 MiB by default) is
// refused with store.ErrTooLarge too.
func TestTooLargeARequest(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	s := etcd.New(cluster.Client(t), "/big/", false)
	for _, size := range []int{1700 << 10, 2 << 20} { // past the server's limit; past the client's too
		big := strings.Repeat("x", size)
		if _, _, err := s.Commit(t.Context(), store.Txn{Ops: []store.Op{{Key: "endpoints/huge", Value: []byte(big)}}}); !errors.Is(err, store.ErrTooLarge) {
			t.Errorf("Commit of %d bytes = %v, want ErrTooLarge", size, err)
		}
	}
}

// A cluster whose limits are raised (--max-txn-ops, --max-request-bytes)
// takes a change that large in one transaction, when the store is told.
func TestRaisedLimits(t *testing.T) {
	cluster := etcdtest.Start(t, 1, func(c *embed.Config) { c.MaxTxnOps, c.MaxRequestBytes = 1024, 4<<20 })
	s, err := etcd.Open(t.Context(), etcd.Config{Endpoints: cluster.Endpoints(), Prefix: "/raised/", DialTimeout: 5 * time.Second,
		MaxTxnOps: 1024, MaxRequestBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ops := make([]store.Op, 500)
	for i := range ops {
		ops[i] = store.Op{Key: fmt.Sprintf("endpoints/e%03d", i), Value: []byte(strings.Repeat("v", 5000))} // 2.5 MB in all
	}
	if _, _, err := s.Commit(t.Context(), store.Txn{Ops: ops}); err != nil {
		t.Fatalf("Commit of 500 writes, 2.5 MB, within the raised limits: %v", err)
	}
	if kvs, err := s.List(t.Context(), "endpoints/"); err != nil || len(kvs) != 500 {
		t.Errorf("after the commit: %d keys, %v", len(kvs), err)
	}
	ops = append(ops, make([]store.Op, 600)...)
	for i := 500; i < len(ops); i++ {
		ops[i] = store.Op{Key: fmt.Sprintf("endpoints/f%03d", i), Value: []byte("v")}
	}
	if _, _, err := s.Commit(t.Context(), store.Txn{Ops: ops}); !errors.Is(err, store.ErrTooLarge) || !strings.Contains(err.Error(), "state.etcd.max_txn_ops") {
		t.Errorf("Commit of %d writes past the raised limit = %v", len(ops), err)
	}
}
