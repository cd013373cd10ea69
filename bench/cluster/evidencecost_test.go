package cluster

// What the leader's evidence pulls cost a replica, and what pushing the
// same evidence through etcd would cost instead (issue 20, point 1;
// docs/cluster.md, "What the leader pulls, and what it costs").
//
//	go test ./bench/cluster -run '^$' -bench 'Evidence(Pull|Answer)' -benchtime 2000x -count 3 -benchmem
//	go test ./bench/cluster -run '^$' -bench 'EvidencePushEtcd/members/paced=false' -benchtime 1000x -count 3
//	go test ./bench/cluster -run '^$' -bench 'EvidencePushEtcd/members/paced=true' -benchtime 80x
//
// BenchmarkEvidencePull is one pull as the leader makes it every 250 ms:
// fleet.Client.Call (the leader's code) over loopback HTTP to a handler
// doing what the admin API's POST /api/v1/fleet/evidence does (read the
// body, decode, fleet.Reporter.Answer, encode), on a telemetry registry
// fed, between pulls and outside the timer, with 250 ms of requests at
// rate/s (5% to the canary, 1% errors, latency lognormal with median 20 ms
// and σ 0.4, as bench/stats' suites). The clock is the benchmark's own, so
// a pull answers exactly 250 ms of traffic. Reported per pull: the process
// CPU time (both ends: leader and replica run in this process), the
// request and answer bodies and the bytes on the wire, headers included.
// BenchmarkEvidenceAnswer is the replica's part alone (decode, Answer,
// encode), without HTTP.
//
// BenchmarkEvidencePushEtcd is the alternative: a replica writes each
// answer's bytes to its key in etcd (fsync on, the member's data in the
// benchmark's temp dir) and the leader receives it through a watch. Per
// write: the process CPU (client, watcher and every member in this
// process), the bytes etcd's WAL wrote, its fsyncs and the backend's
// commits, from etcd's own metrics.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/testenv"
)

const pullEvery = 250 * time.Millisecond // fleet.DefaultInterval

// replicaTraffic is one replica's telemetry, fed on the benchmark's clock.
type replicaTraffic struct {
	reg            *telemetry.Registry
	stable, canary *telemetry.Recorder
	now            time.Time
	rate           int
	rng            *rand.Rand
}

func newReplicaTraffic(rate int) *replicaTraffic {
	reg := telemetry.NewRegistry()
	return &replicaTraffic{reg: reg, stable: reg.Recorder("fraud", "blue"), canary: reg.Recorder("fraud", "green"),
		now: time.Unix(1_800_000_000, 0), rate: rate, rng: rand.New(rand.NewPCG(1, 2))}
}

// serve records d of requests at the rate, evenly spaced, and moves the
// clock on by d.
func (t *replicaTraffic) serve(d time.Duration) {
	n := int(float64(t.rate) * d.Seconds())
	for i := range n {
		rc := t.stable
		if t.rng.Float64() < 0.05 {
			rc = t.canary
		}
		status := 200
		if t.rng.Float64() < 0.01 {
			status = 500
		}
		lat := time.Duration(20e6 * math.Exp(0.4*t.rng.NormFloat64()))
		rc.Begin()
		rc.Observe(telemetry.Observation{Now: t.now.Add(time.Duration(i) * d / time.Duration(n)).UnixNano(), Status: status,
			Latency: lat, TTFB: lat * 9 / 10})
	}
	t.now = t.now.Add(d)
}

// follow is the leader's follow of the rollout on the replica.
func (t *replicaTraffic) follow(taken uint64) fleet.EvidenceRequest {
	return fleet.EvidenceRequest{Follows: []fleet.Follow{{Key: "9f3a61c2d4e5b687", Endpoint: "fraud", Stable: "blue", Canary: "green",
		From: t.now, FromNow: true, Taken: taken}}}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func BenchmarkEvidencePull(b *testing.B) {
	for _, rate := range []int{200, 2000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchPull(b, rate) })
	}
}

func benchPull(b *testing.B, rate int) {
	tr := newReplicaTraffic(rate)
	rep := fleet.NewReporter("replica-b", tr.reg, nil, func() time.Time { return tr.now })
	const token = "bench-token-0123456789abcdef0123456789"
	var ansBytes atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "token", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req fleet.EvidenceRequest
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ans, err := rep.Answer(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		out, _ := json.Marshal(ans)
		ansBytes.Add(int64(len(out)))
		w.Header().Set("Content-Type", "application/json")
		w.Write(out)
	}))
	var wireIn, wireOut atomic.Int64
	srv.Listener = &countingListener{Listener: srv.Listener, in: &wireIn, out: &wireOut}
	srv.Start()
	defer srv.Close()
	client := fleet.NewClient(nil, func() string { return token })
	peer := fleet.Peer{ID: "replica-b", AdminURL: srv.URL}

	var taken uint64
	var reqBytes, parts int64
	pull := func() {
		req := tr.follow(taken)
		raw, _ := json.Marshal(req)
		reqBytes += int64(len(raw))
		var ans fleet.EvidenceAnswer
		if err := client.Call(context.Background(), peer, http.MethodPost, "/api/v1/fleet/evidence", "", req, &ans); err != nil {
			b.Fatal(err)
		}
		a := ans.Follows[0]
		if a.Error != "" {
			b.Fatal(a.Error)
		}
		taken = a.First + uint64(len(a.Parts))
		parts += int64(len(a.Parts))
	}
	tr.serve(time.Second)
	pull() // the follow starts, the connection opens
	reqBytes, parts = 0, 0
	ansBytes.Store(0)
	wireIn.Store(0)
	wireOut.Store(0)
	var cpu time.Duration
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		tr.serve(pullEvery)
		b.StartTimer()
		c0 := cpuTime(b)
		pull()
		cpu += cpuTime(b) - c0
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/pull")
	b.ReportMetric(float64(reqBytes)/n, "req-B/pull")
	b.ReportMetric(float64(ansBytes.Load())/n, "ans-B/pull")
	b.ReportMetric(float64(wireIn.Load()+wireOut.Load())/n, "wire-B/pull")
	b.ReportMetric(float64(parts)/n, "parts/pull")
}

func BenchmarkEvidenceAnswer(b *testing.B) {
	for _, rate := range []int{200, 2000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) {
			tr := newReplicaTraffic(rate)
			rep := fleet.NewReporter("replica-b", tr.reg, nil, func() time.Time { return tr.now })
			var taken uint64
			answer := func() int {
				raw, _ := json.Marshal(tr.follow(taken))
				var req fleet.EvidenceRequest
				if err := json.Unmarshal(raw, &req); err != nil {
					b.Fatal(err)
				}
				ans, err := rep.Answer(req)
				if err != nil {
					b.Fatal(err)
				}
				out, _ := json.Marshal(ans)
				taken = ans.Follows[0].First + uint64(len(ans.Follows[0].Parts))
				return len(out)
			}
			tr.serve(time.Second)
			answer()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				tr.serve(pullEvery)
				b.StartTimer()
				answer()
			}
		})
	}
}

// answerBytes is one real answer to a pull at rate/s: what a replica would
// write to etcd every 250 ms if it pushed.
func answerBytes(b *testing.B, rate int) []byte {
	tr := newReplicaTraffic(rate)
	rep := fleet.NewReporter("replica-b", tr.reg, nil, func() time.Time { return tr.now })
	tr.serve(time.Second)
	ans, err := rep.Answer(tr.follow(0))
	if err != nil {
		b.Fatal(err)
	}
	tr.serve(pullEvery)
	ans, err = rep.Answer(tr.follow(ans.Follows[0].First + uint64(len(ans.Follows[0].Parts))))
	if err != nil {
		b.Fatal(err)
	}
	raw, _ := json.Marshal(ans)
	return raw
}

func BenchmarkEvidencePushEtcd(b *testing.B) {
	for _, paced := range []bool{false, true} {
		for _, members := range []int{1, 3} {
			b.Run(fmt.Sprintf("members=%d/paced=%v", members, paced), func(b *testing.B) { benchPush(b, members, paced) })
		}
	}
}

// benchPush writes b.N answers to etcd, each received through a watch:
// back to back, or paced one per 250 ms (as a replica would push: then
// every write has a backend commit of its own, etcd committing every
// 100 ms what was written meanwhile). The CPU is measured back to back
// only (paced, the idle members' CPU drowns it on a busy machine).
func benchPush(b *testing.B, members int, paced bool) {
	value := answerBytes(b, 200)
	cluster := etcdtest.Start(b, members, func(c *embed.Config) { c.UnsafeNoFsync = false })
	cli := cluster.Client(b)
	ctx := b.Context()
	watch := cli.Watch(ctx, "/push/evidence/", clientv3.WithPrefix())
	put := func() {
		if _, err := cli.Put(ctx, "/push/evidence/replica-b", string(value)); err != nil {
			b.Fatal(err)
		}
		for got := false; !got; {
			wr := <-watch
			if err := wr.Err(); err != nil {
				b.Fatal(err)
			}
			got = len(wr.Events) > 0
		}
	}
	put()
	var cpu time.Duration
	var m0 etcdCounts
	if paced {
		m0 = etcdMetrics(b)
		b.ResetTimer()
		t := time.NewTicker(pullEvery)
		for range b.N {
			<-t.C
			put()
		}
		t.Stop()
		// Each member commits every paced write to its backend (within
		// etcd's 100 ms batch interval): wait for the last ones.
		testenv.WaitFor(b, 10*time.Second, "the members' last backend commits", func() bool {
			return etcdMetrics(b).commits-m0.commits >= float64(b.N*members)
		})
	} else {
		m0 = etcdMetrics(b)
		b.ResetTimer()
		for range b.N {
			c0 := cpuTime(b)
			put()
			cpu += cpuTime(b) - c0
		}
	}
	b.StopTimer()
	m := etcdMetrics(b)
	n := float64(b.N)
	b.ReportMetric(float64(len(value)), "value-B")
	if !paced {
		b.ReportMetric(float64(cpu.Microseconds())/n, "cpu-µs/put")
	}
	b.ReportMetric((m.walBytes-m0.walBytes)/n, "wal-B/put")
	b.ReportMetric((m.fsyncs-m0.fsyncs)/n, "wal-fsyncs/put")
	b.ReportMetric((m.commits-m0.commits)/n, "backend-commits/put")
	b.ReportMetric(1000*(m.fsyncSecs-m0.fsyncSecs)/max(m.fsyncs-m0.fsyncs, 1), "wal-fsync-ms")
	b.ReportMetric(1000*(m.commitSecs-m0.commitSecs)/max(m.commits-m0.commits, 1), "backend-commit-ms")
}

type etcdCounts struct{ walBytes, fsyncs, fsyncSecs, commits, commitSecs float64 }

// etcdMetrics sums etcd's own counters over the members of this process.
func etcdMetrics(b *testing.B) etcdCounts {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	var c etcdCounts
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "etcd_disk_wal_write_bytes_total":
				c.walBytes += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			case "etcd_disk_wal_fsync_duration_seconds":
				c.fsyncs += float64(m.GetHistogram().GetSampleCount())
				c.fsyncSecs += m.GetHistogram().GetSampleSum()
			case "etcd_disk_backend_commit_duration_seconds":
				c.commits += float64(m.GetHistogram().GetSampleCount())
				c.commitSecs += m.GetHistogram().GetSampleSum()
			}
		}
	}
	return c
}
