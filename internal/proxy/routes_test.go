package proxy

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// TestRoutingChangeUnderLoad flips weights and adds and removes
// deployments while many clients send requests. Every request must get a
// 2xx from a deployment that was in a table live during the request, and
// a request started after SetRoutes returned never reaches a deployment
// that call removed.
func TestRoutingChangeUnderLoad(t *testing.T) { forEachMode(t, testRoutingChangeUnderLoad) }

func testRoutingChangeUnderLoad(t *testing.T, opts Options) {
	a, b, c := named(t, "a"), named(t, "b"), named(t, "c")
	da, db, dc := dep("a", a.URL), dep("b", b.URL), dep("c", c.URL)
	tables := [][]spec.Endpoint{
		{mkEndpoint(t, "fraud", spec.Weights{"a": 5000, "b": 5000}, da, db)},
		{mkEndpoint(t, "fraud", spec.Weights{"a": 9000, "b": 1000}, da, db)},
		{mkEndpoint(t, "fraud", spec.Weights{"a": 2500, "c": 7500}, da, dc)},
		{mkEndpoint(t, "fraud", spec.Weights{"c": 10000}, da, dc)},
		{mkEndpoint(t, "fraud", spec.Weights{"b": 10000}, db)},
		{mkEndpoint(t, "fraud", spec.Weights{"a": 100, "b": 9900}, da, db)},
	}
	members := func(gen int64) map[string]bool {
		m := map[string]bool{}
		for _, d := range tables[gen%int64(len(tables))][0].Deployments {
			m[d.Name] = true
		}
		return m
	}
	gw := modeGateway(t, opts, tables[0]...)

	// gen is the number of the table whose SetRoutes has returned.
	var gen atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests atomic.Int64
	errs := make(chan error, 100)
	report := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				g0 := gen.Load()
				resp, err := client.Get(gw.url + "/fraud/predict")
				if err != nil {
					report(err)
					return
				}
				_ = resp.Body.Close()
				g1 := gen.Load()
				requests.Add(1)
				got := resp.Header.Get("X-Model-Deployment")
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != got {
					report(fmt.Errorf("got %d from %q (backend %q)", resp.StatusCode, got, resp.Header.Get("X-Backend")))
					return
				}
				// Tables live during the request: from g0 (returned before
				// it started) to g1+1 (possibly swapped in, not returned).
				ok := false
				for g := g0; g <= g1+1; g++ {
					ok = ok || members(g)[got]
				}
				if !ok {
					report(fmt.Errorf("request during tables %d..%d went to %q, in none of them", g0, g1+1, got))
					return
				}
			}
		}()
	}
	for i := 1; i <= 60; i++ {
		// Let some requests through on each table before changing it.
		target := requests.Load() + 20
		eventually(t, "20 requests on this table", func() bool { return requests.Load() >= target || len(errs) > 0 })
		if err := gw.SetRoutes(tables[i%len(tables)]); err != nil {
			t.Fatal(err)
		}
		gen.Store(int64(i))
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, key := range []string{"fraud/a", "fraud/b", "fraud/c"} {
		if n := gw.recs.inFlight(key); n != 0 {
			t.Errorf("%s: %d requests begun but never observed", key, n)
		}
	}
	t.Logf("%d requests over 60 route changes", requests.Load())
}

func TestSetRoutesReusesPools(t *testing.T) { forEachMode(t, testSetRoutesReusesPools) }

func testSetRoutesReusesPools(t *testing.T, opts Options) {
	a, b := named(t, "a"), named(t, "b")
	hc := &spec.HealthCheck{Path: "/health", Interval: spec.Duration(time.Hour)}
	checked := dep("blue", a.URL)
	checked.HealthCheck = hc
	gw := modeGateway(t, opts, mkEndpoint(t, "fraud", nil, checked, dep("green", b.URL)))
	pool := func(key string) *pool {
		gw.mu.Lock()
		defer gw.mu.Unlock()
		return gw.pools[key]
	}
	blue, green := pool("fraud/blue"), pool("fraud/green")

	// Same settings, new weights: the very same pools.
	if err := gw.SetRoutes([]spec.Endpoint{mkEndpoint(t, "fraud", spec.Weights{"blue": 5000, "green": 5000}, checked, dep("green", b.URL))}); err != nil {
		t.Fatal(err)
	}
	if pool("fraud/blue") != blue || pool("fraud/green") != green {
		t.Errorf("pools of unchanged deployments were rebuilt")
	}

	// green gains a backend: a new pool, but the old backend object (its
	// connections, its health) carries over. blue is removed: its checker stops.
	if err := gw.SetRoutes([]spec.Endpoint{mkEndpoint(t, "fraud", nil, dep("green", b.URL, a.URL))}); err != nil {
		t.Fatal(err)
	}
	if p := pool("fraud/green"); p == green || p.backends[0] != green.backends[0] {
		t.Errorf("green: want a new pool reusing backend %s", b.URL)
	}
	if pool("fraud/blue") != nil {
		t.Errorf("removed deployment still has a pool")
	}
	select {
	case <-blue.stop:
	default:
		t.Errorf("health checker of the removed pool not stopped")
	}
	blue.done.Wait() // returns only once its goroutines ended

	// An invalid table changes nothing.
	bad := mkEndpoint(t, "fraud", nil, dep("green", b.URL))
	bad.Traffic = spec.Weights{"green": 5000}
	if err := gw.SetRoutes([]spec.Endpoint{bad}); err == nil {
		t.Fatalf("SetRoutes accepted weights summing to 50")
	}
	if got := get(t, gw.url+"/fraud/x"); got.status != 200 || got.deployment != "green" {
		t.Errorf("after a rejected SetRoutes: %d from %q", got.status, got.deployment)
	}
}
