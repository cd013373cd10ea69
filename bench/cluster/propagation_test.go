// Package cluster measures cluster mode (docs/cluster.md): how long a change
// committed through one gateway takes to be routed by another.
//
//	go test ./bench/cluster -run '^$' -bench Propagation -benchtime 1000x
//
// Two gateways run in this process on a three-member etcd (embedded, on
// tmpfs-like settings: no fsync, elections in a tenth of a second). Each
// iteration changes the traffic through gateway A (a PUT, which returns once
// the change is committed to etcd and routed by A) and polls gateway B's
// admin API until it routes the new split: B answers from the routing
// snapshot it swaps in, so the time measured runs from sending the change
// to A until B routes it, plus at most one poll (about 0.1 ms). Reported:
// p50, p99 and max in milliseconds.
package cluster

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

func BenchmarkPropagation(b *testing.B) {
	cluster := etcdtest.Start(b, 3)
	blue, green := testenv.NewEcho(b, "blue"), testenv.NewEcho(b, "green")
	fleet := b.TempDir()
	a := testenv.Connect(b, testenv.StartDaemon(b, testenv.ClusterConfig(filepath.Join(fleet, "a"), cluster.Endpoints(), "/bench/", blue.URL(), green.URL())))
	c := testenv.Connect(b, testenv.StartDaemon(b, testenv.ClusterConfig(filepath.Join(fleet, "b"), cluster.Endpoints(), "/bench/", blue.URL(), green.URL())))
	took := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		g := float64(1 + i%50)
		sent := time.Now()
		if status, body := a.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100 - g, "green": g}); status != 200 {
			b.Fatalf("PUT = %d %s", status, body)
		}
		want := spec.Percent(g) * spec.Full / 100
		for c.Traffic("fraud")["green"] != want {
			if time.Since(sent) > 10*time.Second {
				b.Fatalf("change %d not routed by the other gateway after 10 s", i)
			}
		}
		took = append(took, time.Since(sent))
	}
	b.StopTimer()
	slices.Sort(took)
	ms := func(q float64) float64 {
		return float64(took[min(len(took)-1, int(q*float64(len(took))))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
	b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
}
