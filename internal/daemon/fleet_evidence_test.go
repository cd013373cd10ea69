package daemon_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

// The leader judges a canary on what every replica served: with all
// traffic sent to the two followers, none to the leader, a canary failing
// a quarter of its requests is rolled back all the same. Then a replica
// stops in the middle of a healthy canary's stage: the verdicts say
// "evidence from 2 of 3 replicas" and the rollout goes on with the
// canary requests of the one left. A rollout's estimate counts the
// fleet's traffic too.
func TestLeaderJudgesEveryReplicasTraffic(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	var broken atomic.Bool
	broken.Store(true)
	blue := testenv.NewModel(t, testenv.Model{})
	green := testenv.NewModel(t, testenv.Model{Broken: &broken})
	fleetDir := t.TempDir()
	cfg := func(name string) string {
		return testenv.ClusterConfig(filepath.Join(fleetDir, name), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL())
	}
	da := testenv.StartDaemon(t, cfg("a"))
	etcdCli := cluster.Client(t)
	testenv.WaitFor(t, 10*time.Second, "gateway a to lead", func() bool {
		resp, err := etcdCli.Get(t.Context(), "/fleet/k/leader/", clientv3.WithFirstCreate()...)
		return err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == "http://"+da.AdminAddr()
	})
	db, dc := testenv.StartDaemon(t, cfg("b")), testenv.StartDaemon(t, cfg("c"))
	a, b, c := testenv.Connect(t, da), testenv.Connect(t, db), testenv.Connect(t, dc)
	testenv.WaitFor(t, 10*time.Second, "three replicas listed", func() bool {
		var reps api.ReplicaList
		a.Get("/api/v1/replicas", &reps)
		return len(reps.Replicas) == 3
	})
	const path = "/fraud/v1/models/fraud:predict"
	loadB, loadC := b.StartLoad(2, path, nil), c.StartLoad(2, path, nil)
	cl, err := cli.NewClient(a.Admin, a.Token, a.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	plan := spec.Plan{Stages: []spec.Stage{{Weight: 5 * spec.Full / 100}, {Weight: 50 * spec.Full / 100}}, Bake: spec.Duration(time.Hour)}
	if _, err := cl.StartRollout(t.Context(), "fraud", rollout.StartRequest{Canary: "green", Plan: plan}); err != nil {
		t.Fatal(err)
	}
	r := a.WaitEnded("fraud", 20*time.Second)
	if r.Phase != rollout.PhaseRolledBack || r.Stage != 0 {
		t.Fatalf("rollout of a canary failing every request, served by the followers only: %s at stage %d (%s); want rolled back in its first stage", r.Phase, r.Stage, r.Reason)
	}
	if r.Evidence == nil || r.Evidence.Of != 3 {
		t.Errorf("evidence of the last look %+v: want the three replicas'", r.Evidence)
	}

	broken.Store(false)
	second, err := cl.StartRollout(t.Context(), "fraud", rollout.StartRequest{Canary: "green", Plan: plan})
	if err != nil {
		t.Fatal(err)
	}
	// The estimate counts the fleet's traffic too: the leader served none.
	if e := second.Estimate; e == nil || e.RequestsPerSecond == 0 {
		t.Errorf("estimate %+v: want one made from the followers' traffic", e)
	}
	testenv.WaitFor(t, 10*time.Second, "the healthy canary's first requests judged", func() bool {
		r := a.Rollout("fraud")
		return r.StageRequests > 20 && r.Evidence != nil && r.Evidence.Reporting == 3
	})
	loadC.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := dc.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	var atKill uint64
	testenv.WaitFor(t, 10*time.Second, "the verdicts to say evidence from 2 of 3 replicas", func() bool {
		r = a.Rollout("fraud")
		atKill = r.StageRequests
		return r.Evidence != nil && r.Evidence.Reporting == 2 && r.Evidence.Of == 3 && strings.Contains(r.Reason, "evidence from 2 of 3 replicas")
	})
	testenv.WaitFor(t, 10*time.Second, "the stage to go on with the canary requests of the replica left", func() bool {
		r = a.Rollout("fraud")
		return r.StageRequests > atKill+20
	})
	if r.Phase != rollout.PhaseProgressing || r.Stage != 0 || !strings.Contains(r.Reason, "evidence from 2 of 3 replicas") {
		t.Errorf("after a replica stopped: %s at stage %d, %q; want the first stage going on, judged on 2 of 3 replicas", r.Phase, r.Stage, r.Reason)
	}
	loadB.Stop()
}
