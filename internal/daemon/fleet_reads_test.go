package daemon_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/nettest"
	"github.com/modelgate/modelgate/internal/testenv"
)

// fleetAnswer is what the metrics, series and shadow answers share with
// the parts a test reads: the replicas covered, and the header saying so.
type fleetAnswer struct {
	status   int
	header   string
	replicas api.Coverage
	metrics  api.MetricsAnswer
	series   api.SeriesAnswer
	shadow   api.ShadowAnswer
	body     string
}

// fleetGet reads GET path of the admin API behind c into the answer of
// its kind.
func fleetGet(t *testing.T, c *testenv.Client, path string) fleetAnswer {
	t.Helper()
	req, _ := http.NewRequest("GET", c.Admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	var raw json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	a := fleetAnswer{status: resp.StatusCode, header: resp.Header.Get(api.ReplicasHeader), body: string(raw)}
	if resp.StatusCode != http.StatusOK {
		return a
	}
	var cov struct{ Replicas api.Coverage }
	var into any
	switch {
	case strings.Contains(path, "/metrics"):
		into = &a.metrics
	case strings.Contains(path, "/series"):
		into = &a.series
	default:
		into = &a.shadow
	}
	if err := json.Unmarshal(raw, into); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	json.Unmarshal(raw, &cov)
	a.replicas = cov.Replicas
	return a
}

// seriesRequests adds up a deployment's requests over the steps.
func seriesRequests(a api.SeriesAnswer, dep string) uint64 {
	var n uint64
	for _, v := range a.Deployments[dep].Requests {
		n += v
	}
	return n
}

// Three gateways of one fleet each serve their own traffic: the metrics,
// series and shadow answers of any of them hold the fleet's (requests
// exactly the sum, quantiles of every request, not an average), and
// ?replica= one replica's. A replica still listed but stopped (its record
// in etcd outlives it until its lease ends) and one that does not answer
// at all are left out and named, and the answer still comes within the
// per-replica timeout.
func TestFleetWideMetricsSeriesAndShadow(t *testing.T) {
	cluster := etcdtest.Start(t, 1)
	blue := testenv.NewModel(t, testenv.Model{Delay: time.Millisecond, Jitter: 4 * time.Millisecond})
	green := testenv.NewModel(t, testenv.Model{})
	fleetDir := t.TempDir()
	var (
		ds  [3]*daemon.Daemon
		cs  [3]*testenv.Client
		ids [3]string
	)
	for i := range ds {
		ds[i] = testenv.StartDaemon(t, testenv.ClusterConfig(filepath.Join(fleetDir, fmt.Sprint("gw", i)), cluster.Endpoints(), "/fleet/", blue.URL(), green.URL()))
		cs[i] = testenv.Connect(t, ds[i])
	}
	testenv.WaitFor(t, 5*time.Second, "three replicas listed", func() bool {
		var reps api.ReplicaList
		cs[0].Get("/api/v1/replicas", &reps)
		for _, r := range reps.Replicas {
			for i, d := range ds {
				if r.AdminURL == "http://"+d.AdminAddr() {
					ids[i] = r.ID
				}
			}
		}
		return len(reps.Replicas) == 3 && ids[0] != "" && ids[1] != "" && ids[2] != ""
	})
	if status, body := cs[0].API("PUT", "/api/v1/endpoints/fraud/mirror", map[string]int{"green": 100}); status != 200 {
		t.Fatalf("PUT mirror = %d %s", status, body)
	}
	for i, c := range cs {
		testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("replica %d to mirror", i), func() bool {
			var m map[string]float64
			c.Get("/api/v1/endpoints/fraud/mirror", &m)
			return m["green"] == 100
		})
	}

	// Different traffic to each replica's data plane.
	sent := [3]uint64{20, 40, 60}
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range sent[i] {
				if status, _, err := c.Predict("/fraud/v1/models/fraud:predict", nil); err != nil || status != 200 {
					t.Errorf("predict through replica %d = %d, %v", i, status, err)
				}
			}
		}()
	}
	wg.Wait()
	total := sent[0] + sent[1] + sent[2]

	// Each replica's own numbers, read through replica 0.
	var own [3]api.MetricsAnswer
	for i := range cs {
		testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("replica %d's requests and copies, asked through replica 0", i), func() bool {
			m := fleetGet(t, cs[0], "/api/v1/endpoints/fraud/metrics?window=1m&replica="+ids[i])
			s := fleetGet(t, cs[0], "/api/v1/endpoints/fraud/shadow?window=1m&replica="+ids[i])
			own[i] = m.metrics
			return m.status == 200 && m.metrics.Deployments["blue"].Requests == sent[i] &&
				s.status == 200 && s.shadow.Shadows["green"].Compared == sent[i] &&
				fmt.Sprint(m.replicas) == fmt.Sprint(api.Coverage{Reporting: 1, Of: 1, Replica: ids[i]}) && m.header == "1/1"
		})
	}

	// The fleet's numbers, the same through every replica.
	for i, c := range cs {
		m := fleetGet(t, c, "/api/v1/endpoints/fraud/metrics?window=1m")
		if m.status != 200 || m.header != "3/3" || !m.replicas.Complete() || m.replicas.Of != 3 {
			t.Fatalf("fleet metrics through replica %d = %d %s %+v", i, m.status, m.header, m.replicas)
		}
		b := m.metrics.Deployments["blue"]
		if b.Requests != total || b.Status["2xx"] != total || m.metrics.Deployments["green"].Requests != 0 {
			t.Errorf("fleet metrics through replica %d: blue %d requests (%v), green %d; want %d (%v) and 0",
				i, b.Requests, b.Status, m.metrics.Deployments["green"].Requests, total, sent)
		}
		// A quantile of every request lies between the replicas' own.
		for _, q := range []struct {
			name string
			get  func(r api.MetricsAnswer) float64
		}{
			{"p50", func(r api.MetricsAnswer) float64 { return r.Deployments["blue"].LatencyMS.P50 }},
			{"p99", func(r api.MetricsAnswer) float64 { return r.Deployments["blue"].LatencyMS.P99 }},
		} {
			lo, hi, got := min(q.get(own[0]), q.get(own[1]), q.get(own[2])), max(q.get(own[0]), q.get(own[1]), q.get(own[2])), q.get(m.metrics)
			if got < lo || got > hi || got == 0 {
				t.Errorf("fleet %s %.3f ms through replica %d, the replicas' own from %.3f to %.3f ms", q.name, got, i, lo, hi)
			}
		}
		s := fleetGet(t, c, "/api/v1/endpoints/fraud/shadow?window=1m")
		if g := s.shadow.Shadows["green"]; s.header != "3/3" || g.Mirrored != total || g.Matched != total || g.MatchRate == nil || *g.MatchRate != 1 {
			t.Errorf("fleet shadow through replica %d (%s): %+v, want %d mirrored and matched", i, s.header, g, total)
		}
	}
	// The series leaves out the current second: wait for the last request's.
	testenv.WaitFor(t, 5*time.Second, "the fleet's series to hold every request", func() bool {
		s := fleetGet(t, cs[1], "/api/v1/endpoints/fraud/series?window=1m&step=1s")
		return s.status == 200 && s.header == "3/3" && seriesRequests(s.series, "blue") == total
	})
	for i := range cs {
		s := fleetGet(t, cs[1], "/api/v1/endpoints/fraud/series?window=1m&step=1s&replica="+ids[i])
		if got := seriesRequests(s.series, "blue"); s.status != 200 || got != sent[i] || s.replicas.Replica != ids[i] {
			t.Errorf("series of replica %d through replica 1 = %d, %d requests, %+v; want %d", i, s.status, got, s.replicas, sent[i])
		}
	}
	if a := fleetGet(t, cs[0], "/api/v1/endpoints/fraud/metrics?replica=gw-nope"); a.status != http.StatusNotFound || !strings.Contains(a.body, `no replica \"gw-nope\" in the fleet`) {
		t.Errorf("metrics of an unknown replica = %d %s, want 404", a.status, a.body)
	}

	// A backend down as one replica sees it: red's backend refuses
	// connections, and requests pinned to red go through replica 0 only
	// (passive health takes it out there after failures in a row). The
	// fleet's health, through another replica, says it is down and where.
	if status, body := cs[0].API("PUT", "/api/v1/endpoints/fraud/deployments/red", map[string]any{"backends": []string{nettest.ClosedURL(t)}}); status != http.StatusCreated {
		t.Fatalf("PUT deployment red = %d %s", status, body)
	}
	health := func(c *testenv.Client, query string) api.HealthAnswer {
		var h api.HealthAnswer
		c.Get("/api/v1/endpoints/fraud/health"+query, &h)
		return h
	}
	red := func(h api.HealthAnswer) (api.DeploymentHealth, bool) {
		for _, d := range h.Deployments {
			if d.Name == "red" && len(d.Backends) == 1 {
				return d, true
			}
		}
		return api.DeploymentHealth{}, false
	}
	for i := range cs {
		testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("replica %d to route red", i), func() bool {
			_, ok := red(health(cs[i], "?replica="+ids[i]))
			return ok
		})
	}
	testenv.WaitFor(t, 10*time.Second, "replica 0 to take red's backend out", func() bool {
		cs[0].Predict("/fraud/v1/models/fraud:predict", map[string]string{"X-Model-Deployment": "red"})
		d, _ := red(health(cs[0], "?replica="+ids[0]))
		return !d.Healthy
	})
	h := health(cs[1], "")
	d, ok := red(h)
	if !ok || d.Healthy || fmt.Sprint(d.UnhealthyOn) != fmt.Sprint([]string{ids[0]}) || d.Backends[0].Healthy ||
		fmt.Sprint(d.Backends[0].DownOn) != fmt.Sprint([]string{ids[0]}) || d.Backends[0].LastError == "" || h.Replicas.Reporting != 3 {
		t.Errorf("the fleet's health through replica 1: red %+v, replicas %+v; want down on %s alone, with its error", d, h.Replicas, ids[0])
	}
	if d, _ := red(health(cs[1], "?replica="+ids[1])); !d.Healthy || d.Backends[0].DownOn != nil {
		t.Errorf("replica 1's own view of red = %+v, want up (it sent red nothing)", d)
	}

	// Replica 2 stops, but its record is still listed (as after a crash,
	// until its lease ends); another replica listed never answers.
	etcdCli := cluster.Client(t)
	rec, err := etcdCli.Get(t.Context(), "/fleet/k/replicas/"+ids[2])
	if err != nil || len(rec.Kvs) != 1 {
		t.Fatalf("replica 2's record: %v, %v", rec, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ds[2].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	hung := nettest.Hung(t)
	hungRec, _ := json.Marshal(api.Replica{ID: "gw-hung", AdminURL: "http://" + hung})
	for key, value := range map[string]string{"/fleet/k/replicas/" + ids[2]: string(rec.Kvs[0].Value), "/fleet/k/replicas/gw-hung": string(hungRec)} {
		if _, err := etcdCli.Put(t.Context(), key, value); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var answers [3]fleetAnswer
	for i, path := range []string{"/api/v1/endpoints/fraud/metrics?window=1m", "/api/v1/endpoints/fraud/series?window=1m&step=1s", "/api/v1/endpoints/fraud/shadow?window=1m"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = fleetGet(t, cs[0], path)
		}()
	}
	wg.Wait()
	if took := time.Since(start); took > admin.FleetReadTimeout+time.Second {
		t.Errorf("the fleet's answers with a replica hung took %s", took)
	}
	want := sent[0] + sent[1]
	for i, a := range answers {
		missing := map[string]string{}
		for _, m := range a.replicas.Missing {
			missing[m.ID] = m.Error
		}
		if a.status != 200 || a.header != "2/4" || a.replicas.Reporting != 2 || a.replicas.Of != 4 ||
			!strings.Contains(missing[ids[2]], "connection refused") || !strings.Contains(missing["gw-hung"], "no answer within 2s") {
			t.Errorf("answer %d with replica 2 stopped and one hung = %d %s %+v", i, a.status, a.header, a.replicas)
		}
	}
	if got := answers[0].metrics.Deployments["blue"].Requests; got != want {
		t.Errorf("fleet metrics without replica 2: %d requests, want %d", got, want)
	}
	if got := seriesRequests(answers[1].series, "blue"); got != want {
		t.Errorf("fleet series without replica 2: %d requests, want %d", got, want)
	}
	if got := answers[2].shadow.Shadows["green"].Mirrored; got != want {
		t.Errorf("fleet shadow without replica 2: %d mirrored, want %d", got, want)
	}
	if a := fleetGet(t, cs[0], "/api/v1/endpoints/fraud/metrics?replica="+ids[2]); a.status != http.StatusBadGateway || !strings.Contains(a.body, "did not answer") {
		t.Errorf("metrics of the stopped replica = %d %s, want 502", a.status, a.body)
	}
}
