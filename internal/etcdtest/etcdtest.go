// Package etcdtest runs real etcd servers inside a test process, with etcd's
// own embed package: one member, or a cluster of several. It is imported
// only by tests (and examples/cluster), never by the modelgate binary,
// which talks to etcd through the client alone.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds the wait for a member to be ready (a cluster's
// members wait for each other).
const startTimeout = 30 * time.Second

// Member is one running etcd server.
type Member struct {
	Name      string
	ClientURL string
	cfg       *embed.Config
	etcd      *embed.Etcd
}

// Cluster is a set of members that form one etcd cluster.
type Cluster struct {
	Members []*Member
	t       testing.TB
}

// Start runs a cluster of n members in t's temporary directory and stops
// it when t ends; opts change each member's configuration (a limit, say).
func Start(t testing.TB, n int, opts ...func(*embed.Config)) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	dir := t.TempDir()
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		cfg := embed.NewConfig()
		cfg.Name = name
		cfg.Dir = filepath.Join(dir, name)
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		// Tests need no durability across machine crashes, and elections
		// in a tenth of a second (a member takes over, or a stopping
		// leader hands over, at once).
		cfg.UnsafeNoFsync = true
		cfg.TickMs, cfg.ElectionMs = 10, 100
		for _, o := range opts {
			o(cfg)
		}
		cu, pu := freeURL(t), freeURL(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		initial = append(initial, name+"="+pu.String())
		c.Members = append(c.Members, &Member{Name: name, ClientURL: cu.String(), cfg: cfg})
	}
	for _, m := range c.Members {
		m.cfg.InitialCluster = strings.Join(initial, ",")
		m.cfg.InitialClusterToken = "modelgate-test"
	}
	errs := make(chan error, n)
	for _, m := range c.Members {
		go func() { errs <- m.start() }()
	}
	for range n {
		if err := <-errs; err != nil {
			c.Stop()
			t.Fatalf("etcdtest: %v", err)
		}
	}
	t.Cleanup(c.Stop)
	return c
}

// start starts m (again) and waits until it serves.
func (m *Member) start() error {
	e, err := embed.StartEtcd(m.cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", m.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
		m.etcd = e
		return nil
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("member %s: %w", m.Name, err)
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("member %s not ready after %v", m.Name, startTimeout)
	}
}

// Stop stops member i (its data stays; Restart starts it again).
func (c *Cluster) StopMember(i int) {
	if m := c.Members[i]; m.etcd != nil {
		m.etcd.Close()
		m.etcd = nil
	}
}

// Restart starts member i again on its data.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	m.cfg.ClusterState = embed.ClusterStateFlagExisting
	if err := m.start(); err != nil {
		c.t.Fatalf("etcdtest: %v", err)
	}
}

// RestartAll starts every stopped member again, together (one alone
// would wait for the quorum the others make).
func (c *Cluster) RestartAll() {
	c.t.Helper()
	errs := make(chan error, len(c.Members))
	n := 0
	for _, m := range c.Members {
		if m.etcd != nil {
			continue
		}
		n++
		m.cfg.ClusterState = embed.ClusterStateFlagExisting
		go func() { errs <- m.start() }()
	}
	for range n {
		if err := <-errs; err != nil {
			c.t.Fatalf("etcdtest: %v", err)
		}
	}
}

// Stop stops every member, all at once: stopped one by one, members keep
// peer connections to each other open past the end of the test. (About 5
// seconds: the leader waits for a hand-over to members that are stopping
// too; a hard stop of the leader would skip that but leaves connections
// open too.)
func (c *Cluster) Stop() {
	var wg sync.WaitGroup
	for i := range c.Members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.StopMember(i)
		}()
	}
	wg.Wait()
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	out := make([]string, len(c.Members))
	for i, m := range c.Members {
		out[i] = m.ClientURL
	}
	return out
}

// Client returns a client of the cluster, closed when the test ends.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("etcd client: %v", err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// freeURL is an http URL on a loopback port free a moment ago.
func freeURL(t testing.TB) url.URL {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return url.URL{Scheme: "http", Host: addr}
}
