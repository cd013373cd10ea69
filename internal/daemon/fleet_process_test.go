package daemon_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

// member is one gateway of the fleet as a child process, with its client.
type member struct {
	p *process
	c *testenv.Client
}

// leaderOf asks the live gateway c which of members leads the rollouts.
func leaderOf(t *testing.T, c *testenv.Client, members []*member) *member {
	t.Helper()
	var reps api.ReplicaList
	c.Get("/api/v1/replicas", &reps)
	for _, r := range reps.Replicas {
		if !r.Leader {
			continue
		}
		for _, m := range members {
			if m.p.admin == r.AdminURL {
				return m
			}
		}
	}
	return nil
}

// Three gateway processes sharing a three-member etcd cluster: a change
// through one is routed by all, a stale If-Match is refused by all, one
// etcd member down changes nothing, the rollouts survive their leader
// being killed (another finishes the same rollout) and being paused past
// its lease (it steps down and changes nothing), and with every member
// down the gateways serve what they had, degraded, until etcd is back.
func TestFleetOfProcessesSurvivesItsLeader(t *testing.T) {
	cluster := etcdtest.Start(t, 3)
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	fleet := t.TempDir()
	var members []*member
	for i := range 3 {
		dir := filepath.Join(fleet, fmt.Sprint(i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "modelgate.yaml")
		writeConfig(t, path, testenv.ClusterConfig(dir, cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
		p := startProcess(t, path)
		members = append(members, &member{p: p, c: testenv.NewClient(t, p.proxy, p.admin, testenv.ReadToken(t, filepath.Join(fleet, "fleet.token")))})
	}
	first := members[0].c

	// A change through one gateway is routed by every one.
	if status, body := first.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 50, "green": 50}); status != 200 {
		t.Fatalf("PUT traffic = %d %s", status, body)
	}
	for i, m := range members {
		testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("gateway %d to route the change", i), func() bool {
			return m.c.Traffic("fraud")["green"] == 50*spec.Full/100
		})
		served := map[string]int{}
		for range 60 {
			if status, dep, err := m.c.Predict("/fraud/v1/models/fraud:predict", nil); err == nil && status == 200 {
				served[dep]++
			}
		}
		if served["blue"] == 0 || served["green"] == 0 {
			t.Errorf("gateway %d served %v after the 50/50 change", i, served)
		}
	}
	// A stale If-Match is refused by every gateway.
	for i, m := range members {
		req, _ := http.NewRequest("PUT", m.c.Admin+"/api/v1/endpoints/fraud/traffic", strings.NewReader(`{"blue": 100}`))
		req.Header.Set("Authorization", "Bearer "+m.c.Token)
		req.Header.Set("If-Match", `"1"`)
		resp, err := m.c.HTTP.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusConflict {
			t.Errorf("gateway %d: a stale If-Match = %d, want 409", i, resp.StatusCode)
		}
	}

	// A rollout, started through a gateway that does not lead it.
	var leader *member
	testenv.WaitFor(t, 10*time.Second, "a leader", func() bool { leader = leaderOf(t, first, members); return leader != nil })
	var others []*member
	for _, m := range members {
		if m != leader {
			others = append(others, m)
		}
	}
	if status, body := others[0].c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100}); status != 200 {
		t.Fatalf("PUT traffic = %d %s", status, body)
	}
	clientOf := func(m *member) *cli.Client {
		c, err := cli.NewClient(m.c.Admin, m.c.Token, m.c.HTTP)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	plan := spec.Plan{Stages: []spec.Stage{{Weight: 10 * spec.Full / 100}, {Weight: 50 * spec.Full / 100}, {Weight: spec.Full}}, Bake: spec.Duration(time.Hour)}
	started, err := clientOf(others[0]).StartRollout(t.Context(), "fraud", rollout.StartRequest{Canary: "green", Plan: plan})
	if err != nil {
		t.Fatalf("start through a follower: %v", err)
	}
	promote := func(m *member) bool {
		_, err := clientOf(m).RolloutAction(t.Context(), "fraud", rollout.ActionPromote)
		return err == nil
	}
	if !promote(others[1]) {
		t.Fatal("promote through a follower failed")
	}

	// One etcd member of three down: etcd keeps its quorum; changes still
	// commit through every gateway and spread, and the rollout goes on.
	cluster.StopMember(0)
	for i, m := range members {
		name := fmt.Sprintf("red%d", i)
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("a change through gateway %d with one member down", i), func() bool {
			status, _ := m.c.API("PUT", "/api/v1/endpoints/fraud/deployments/"+name, map[string]any{"backends": []string{blue.URL()}})
			return status == http.StatusCreated
		})
		next := members[(i+1)%len(members)]
		testenv.WaitFor(t, 10*time.Second, "the next gateway to follow", func() bool {
			var ep spec.Endpoint
			next.c.Get("/api/v1/endpoints/fraud", &ep)
			_, _, ok := ep.Deployment(name)
			return ok
		})
	}
	if r := others[0].c.Rollout("fraud"); r.Phase != rollout.PhaseProgressing || r.Stage != 1 {
		t.Errorf("with one etcd member down the rollout is %s at stage %d, want progressing at stage 1", r.Phase, r.Stage)
	}
	cluster.Restart(0)

	// SIGKILL of the leader: another gateway takes over after the lease
	// and finishes the same rollout.
	leader.p.stop(t, syscall.SIGKILL)
	testenv.WaitFor(t, 20*time.Second, "another gateway to lead and promote", func() bool { return promote(others[0]) })
	got := others[1].c.WaitPhase("fraud", 10*time.Second, rollout.PhaseSucceeded)
	if got.ID != started.ID {
		t.Errorf("the fleet finished rollout %s, want %s", got.ID, started.ID)
	}
	checkTransitionsOnce(t, others[0].c)
	checkTransitionsComplete(t, others[0].c, started.ID, 2)

	// SIGSTOP of the new leader past its lease: the last gateway takes
	// over; the paused one, continued, no longer drives the rollout and
	// changes nothing.
	second, err := clientOf(others[0]).StartRollout(t.Context(), "fraud", rollout.StartRequest{Canary: "blue", Plan: plan})
	if err != nil {
		t.Fatalf("second rollout: %v", err)
	}
	var paused, last *member
	testenv.WaitFor(t, 10*time.Second, "the leader", func() bool { paused = leaderOf(t, others[0].c, others); return paused != nil })
	for _, m := range others {
		if m != paused {
			last = m
		}
	}
	paused.p.cmd.Process.Signal(syscall.SIGSTOP)
	testenv.WaitFor(t, 20*time.Second, "the last gateway to lead and promote", func() bool {
		l := leaderOf(t, last.c, others)
		return l == last && promote(last)
	})
	paused.p.cmd.Process.Signal(syscall.SIGCONT)
	defer func() {
		if t.Failed() {
			t.Logf("paused gateway log:\n%s", paused.p.log())
		}
	}()
	testenv.WaitFor(t, 20*time.Second, "the paused gateway to step down", func() bool {
		return strings.Contains(paused.p.log(), "no longer leading the fleet's rollouts")
	})
	if r := last.c.Rollout("fraud"); r.ID != second.ID || r.Stage != 1 {
		t.Errorf("after the paused leader came back, rollout %s is at stage %d; want %s at stage 1 (the promotion it missed kept)", r.ID, r.Stage, second.ID)
	}
	if !promote(last) || last.c.Rollout("fraud").Stage != 2 {
		t.Errorf("the last gateway does not drive the rollout after the paused one came back")
	}
	checkTransitionsOnce(t, last.c)
	checkTransitionsComplete(t, last.c, second.ID, 2)

	// Every etcd member down: the live gateways serve with the routes they
	// have, say they are degraded and refuse changes; all recovers when
	// etcd is back.
	live := []*member{paused, last}
	before := last.c.Traffic("fraud")
	cluster.Stop()
	for i, m := range live {
		testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("gateway %d to say it is degraded", i), func() bool {
			_, body := m.c.API("GET", "/readyz", nil)
			return strings.HasPrefix(string(body), "degraded: ")
		})
		if status, body := m.c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 90, "green": 10}); status != http.StatusServiceUnavailable {
			t.Errorf("gateway %d: a write with etcd down = %d %s, want 503", i, status, body)
		}
		if status, body := m.c.API("GET", "/readyz", nil); status != 200 || !strings.Contains(string(body), "serving the last routes known") {
			t.Errorf("gateway %d /readyz with etcd down = %d %q, want 200 degraded (it still serves)", i, status, body)
		}
		if _, body := m.c.API("GET", "/metrics", nil); !strings.Contains(string(body), "modelgate_state_store_up 0") {
			t.Errorf("gateway %d /metrics lacks modelgate_state_store_up 0", i)
		}
		if got := m.c.Traffic("fraud"); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("gateway %d routes %v with etcd down, want the %v it had", i, got, before)
		}
		if status, _, err := m.c.Predict("/fraud/v1/models/fraud:predict", nil); err != nil || status != 200 {
			t.Errorf("gateway %d: predict with etcd down = %d, %v", i, status, err)
		}
	}
	cluster.RestartAll()
	testenv.WaitFor(t, 30*time.Second, "a write once etcd is back", func() bool {
		status, _ := live[0].c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 80, "green": 20})
		return status == 200
	})
	testenv.WaitFor(t, 10*time.Second, "the other gateway to follow it", func() bool {
		_, body := live[1].c.API("GET", "/readyz", nil)
		return string(body) == "ok\n" && live[1].c.Traffic("fraud")["green"] == 20*spec.Full/100
	})
}

// checkTransitionsOnce fails the test when the fleet's log holds a rollout
// event twice.
func checkTransitionsOnce(t *testing.T, c *testenv.Client) {
	t.Helper()
	seen := map[string]int{}
	for _, e := range c.Events("fraud") {
		if strings.HasPrefix(e.Type, "rollout.") {
			seen[fmt.Sprint(e.Type, " ", string(e.Data), " ", e.Message)]++
		}
	}
	for what, n := range seen {
		if n != 1 {
			t.Errorf("%d× in the fleet's log: %s", n, what)
		}
	}
}

// checkTransitionsComplete fails the test unless the fleet's log holds, for
// rollout id, one start, every stage entered before the last (100%) once
// and in order, and one success (entering the last stage is the success).
func checkTransitionsComplete(t *testing.T, c *testenv.Client, id string, last int) {
	t.Helper()
	var starts, successes int
	var stages []int
	for _, e := range c.Events("fraud") {
		var data struct {
			Rollout string `json:"rollout"`
			Stage   int    `json:"stage"`
		}
		if json.Unmarshal(e.Data, &data) != nil || data.Rollout != id {
			continue
		}
		switch e.Type {
		case rollout.EventStarted:
			starts++
		case rollout.EventStage:
			stages = append(stages, data.Stage)
		case rollout.EventSucceeded:
			successes++
		}
	}
	want := []int{}
	for i := 0; i < last; i++ {
		want = append(want, i)
	}
	if starts != 1 || successes != 1 || fmt.Sprint(stages) != fmt.Sprint(want) {
		t.Errorf("rollout %s in the fleet's log: %d starts, stages %v, %d successes; want 1, %v, 1", id, starts, stages, successes, want)
	}
}
