package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/testenv"
)

// Two gateways sharing one etcd: a change made through either is routed by
// both, an If-Match from before it is refused by both (409), and each
// one's event log holds the other's events.
func TestGatewaysSharingEtcdFollowEachOther(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	a := testenv.Connect(t, testenv.StartDaemon(t, testenv.ClusterConfig(t.TempDir(), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL())))
	b := testenv.Connect(t, testenv.StartDaemon(t, testenv.ClusterConfig(t.TempDir(), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL())))

	etag := func(c *testenv.Client) string {
		req, _ := http.NewRequest("GET", c.Admin+"/api/v1/endpoints/fraud", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header.Get("ETag")
	}
	before := etag(b)
	if before == "" || before != etag(a) {
		t.Fatalf("ETags %q (b) and %q (a): want the same revision from both gateways", before, etag(a))
	}

	if status, body := a.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 50, "green": 50}); status != 200 {
		t.Fatalf("PUT traffic through a = %d %s", status, body)
	}
	testenv.WaitFor(t, 10*time.Second, "gateway b to route the split made through a", func() bool {
		return b.Traffic("fraud")["green"] == 50*spec.Full/100
	})
	served := map[string]int{}
	for range 200 {
		status, dep, err := b.Predict("/fraud/v1/models/fraud:predict", nil)
		if err != nil || status != 200 {
			t.Fatalf("predict through b = %d, %v", status, err)
		}
		served[dep]++
	}
	if served["green"] == 0 || served["blue"] == 0 {
		t.Errorf("b served %v after the 50/50 split made through a: want both", served)
	}

	for name, c := range map[string]*testenv.Client{"a": a, "b": b} {
		req, _ := http.NewRequest("PUT", c.Admin+"/api/v1/endpoints/fraud/traffic", strings.NewReader(`{"blue": 100}`))
		req.Header.Set("Authorization", "Bearer "+c.Token)
		req.Header.Set("If-Match", before)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e struct{ Error string }
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict || !strings.Contains(e.Error, "If-Match") {
			t.Errorf("PUT through %s with the ETag from before the change = %d %q, want 409", name, resp.StatusCode, e.Error)
		}
	}
	if got := b.Traffic("fraud"); got["green"] != 50*spec.Full/100 {
		t.Errorf("a refused If-Match changed the traffic: %v", got)
	}
	now := etag(b)
	req, _ := http.NewRequest("PUT", b.Admin+"/api/v1/endpoints/fraud/traffic", strings.NewReader(`{"blue": 100}`))
	req.Header.Set("Authorization", "Bearer "+b.Token)
	req.Header.Set("If-Match", now)
	resp, err := b.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT through b with the current ETag %s = %d", now, resp.StatusCode)
	}
	testenv.WaitFor(t, 10*time.Second, "gateway a to route the change made through b", func() bool {
		return a.Traffic("fraud")["green"] == 0
	})

	// One event log for the fleet, read from either gateway.
	var fromA, fromB []store.Event
	fromA, fromB = a.Events("fraud"), b.Events("fraud")
	if len(fromA) == 0 || fmt.Sprint(fromA) != fmt.Sprint(fromB) {
		t.Errorf("event logs differ between the gateways:\na %v\nb %v", fromA, fromB)
	}
	changes := 0
	for _, e := range fromA {
		if e.Type == "traffic.changed" {
			changes++
		}
	}
	if changes != 2 {
		t.Errorf("%d traffic changes in the fleet's log, want 2 (one through each gateway)", changes)
	}
}

// The fleet's rollouts are driven by its elected leader: a start sent to
// another gateway is answered 503 naming the leader, which the CLI
// follows; when the leader stops, another gateway takes over and
// continues the same rollout from its stored state, every transition once.
func TestFleetLeaderDrivesRolloutsAndAnotherTakesOver(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	fleet := t.TempDir() // the gateways share the token file in it
	da := testenv.StartDaemon(t, testenv.ClusterConfig(filepath.Join(fleet, "a"), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
	etcdCli := cluster.Client(t)
	testenv.WaitFor(t, 10*time.Second, "gateway a to lead", func() bool {
		resp, err := etcdCli.Get(t.Context(), "/fleet/k/leader/", clientv3.WithFirstCreate()...)
		return err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == "http://"+da.AdminAddr()
	})
	db := testenv.StartDaemon(t, testenv.ClusterConfig(filepath.Join(fleet, "b"), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
	a, b := testenv.Connect(t, da), testenv.Connect(t, db)

	body := `{"canary": "green", "stages": [10, 50, 100], "bake": "1h"}`
	req, _ := http.NewRequest("POST", b.Admin+"/api/v1/endpoints/fraud/rollouts", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+b.Token)
	resp, err := b.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e struct{ Error string }
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(api.LeaderHeader) != "http://"+da.AdminAddr() || !strings.Contains(e.Error, "send it to the leader, http://"+da.AdminAddr()) {
		t.Fatalf("start through the follower = %d %s %q, want 503 naming the leader", resp.StatusCode, resp.Header.Get(api.LeaderHeader), e.Error)
	}
	cl, err := cli.NewClient(b.Admin, b.Token, b.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	started, err := cl.StartRollout(t.Context(), "fraud", rollout.StartRequest{Canary: "green", Plan: spec.Plan{Stages: []spec.Stage{{Weight: 10 * spec.Full / 100}, {Weight: 50 * spec.Full / 100}, {Weight: spec.Full}}, Bake: spec.Duration(time.Hour)}})
	if err != nil {
		t.Fatalf("start through the CLI, sent to the follower: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, "the follower to route the first stage", func() bool {
		return b.Traffic("fraud")["green"] == 10*spec.Full/100
	})
	if _, err := cl.RolloutAction(t.Context(), "fraud", rollout.ActionPromote); err != nil {
		t.Fatalf("promote through the follower: %v", err)
	}
	testenv.WaitFor(t, 10*time.Second, "the second stage", func() bool { return a.Rollout("fraud").Stage == 1 })

	var reps api.ReplicaList
	testenv.WaitFor(t, 10*time.Second, "both gateways in the list of replicas", func() bool {
		b.Get("/api/v1/replicas", &reps)
		return len(reps.Replicas) == 2
	})
	roles := map[string]string{}
	for _, r := range reps.Replicas {
		roles[r.AdminURL] = fmt.Sprintf("leader=%v self=%v", r.Leader, r.Self)
		if r.Version == "" || r.StartedAt.IsZero() || r.LastSeen.IsZero() || r.DataPlane == "" {
			t.Errorf("replica record %+v lacks a field", r)
		}
	}
	if want := map[string]string{"http://" + da.AdminAddr(): "leader=true self=false", "http://" + db.AdminAddr(): "leader=false self=true"}; fmt.Sprint(roles) != fmt.Sprint(want) {
		t.Errorf("replicas read through b: %v, want %v", roles, want)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := da.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 20*time.Second, "gateway b to lead the rollout", func() bool {
		status, _ := b.API("POST", "/api/v1/endpoints/fraud/rollout/promote", nil)
		return status == http.StatusOK
	})
	testenv.WaitFor(t, 10*time.Second, "the stopped gateway to leave the list", func() bool {
		b.Get("/api/v1/replicas", &reps)
		return len(reps.Replicas) == 1 && reps.Replicas[0].Leader && reps.Replicas[0].Self
	})
	got := b.WaitPhase("fraud", 10*time.Second, rollout.PhaseSucceeded)
	if got.ID != started.ID {
		t.Errorf("b finished rollout %s, want the one a started, %s", got.ID, started.ID)
	}
	if w := b.Traffic("fraud"); w["green"] != spec.Full {
		t.Errorf("traffic after the promotion = %v", w)
	}
	seen := map[string]int{}
	for _, e := range b.Events("fraud") {
		if strings.HasPrefix(e.Type, "rollout.") {
			seen[e.Type+" "+e.Message]++
		}
	}
	for what, n := range seen {
		if n != 1 {
			t.Errorf("%d× %s in the fleet's log, want once", n, what)
		}
	}
	if len(seen) < 4 {
		t.Errorf("rollout events %v: want the start, two promotions and the end", seen)
	}
}

// Replicas started at once on an empty prefix all apply the same file:
// the ones whose commit loses read the state again and start, instead of
// exiting with a conflict.
func TestReplicasStartedTogetherAllStart(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	fleetDir := t.TempDir()
	const n = 3
	errs := make(chan error, n)
	for i := range n {
		f, err := config.Parse([]byte(testenv.ClusterConfig(filepath.Join(fleetDir, fmt.Sprint(i)), cluster.Endpoints(), "/together/", blue.URL(), green.URL())))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			d, err := daemon.New(t.Context(), daemon.Options{Config: f})
			if err == nil {
				t.Cleanup(func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					d.Shutdown(ctx)
				})
			}
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("a replica started with the others: %v", err)
		}
	}
}

// A replica told to stop while etcd does not answer stops, within its
// shutdown's deadline: nothing it runs waits on etcd past its context.
func TestAReplicaStopsWhileEtcdIsDown(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	f, err := config.Parse([]byte(testenv.ClusterConfig(filepath.Join(dir, "a"), cluster.Endpoints(), "/down/", blue.URL(), green.URL())))
	if err != nil {
		t.Fatal(err)
	}
	da, err := daemon.New(t.Context(), daemon.Options{Config: f})
	if err != nil {
		t.Fatal(err)
	}
	if err := da.Start(); err != nil {
		t.Fatal(err)
	}
	// A second replica, campaigning behind the first when etcd goes.
	db := testenv.StartDaemon(t, testenv.ClusterConfig(filepath.Join(dir, "b"), cluster.Endpoints(), "/down/", blue.URL(), green.URL()))
	b := testenv.Connect(t, db)
	testenv.WaitFor(t, 10*time.Second, "two replicas listed", func() bool {
		var reps api.ReplicaList
		b.Get("/api/v1/replicas", &reps)
		return len(reps.Replicas) == 2
	})
	cluster.Stop()
	for _, d := range []*daemon.Daemon{da, db} {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := d.Shutdown(ctx)
		cancel()
		if err != nil {
			t.Errorf("shutdown with etcd down: %v", err)
		}
	}
}
