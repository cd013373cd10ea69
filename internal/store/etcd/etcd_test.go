package etcd_test

import (
	"fmt"
	"sync/atomic"
	"testing"

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
