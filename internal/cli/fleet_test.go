package cli

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/shadow"
)

// fleetEnv serves canned fleet-wide metrics and shadow answers, recording
// the queries asked.
func fleetEnv(t *testing.T, cov api.Coverage) (*testEnv, func() []string) {
	var (
		mu      sync.Mutex
		queries []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		var v any
		switch r.URL.Path {
		case "/api/v1/endpoints/fraud/metrics":
			v = api.MetricsAnswer{MetricsReport: testReport(), Replicas: cov}
		case "/api/v1/endpoints/fraud/shadow":
			rate := 0.5
			v = api.ShadowAnswer{ShadowReport: shadow.Report{Endpoint: "fraud", Window: "5m", Shadows: map[string]shadow.ShadowReport{
				"green": {Active: true, Mirrored: 4, Sent: 4, Compared: 4, Matched: 2, Mismatched: 2, MatchRate: &rate, Mismatches: []shadow.Mismatch{}}}}, Replicas: cov}
		default:
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}))
	t.Cleanup(srv.Close)
	return &testEnv{t: t, srv: srv, vars: map[string]string{EnvAdmin: srv.URL, EnvToken: testToken}}, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), queries...)
	}
}

// The metrics and shadow tables say when a replica of the fleet is
// missing from the numbers, and which one; --replica asks for one;
// -o json passes the replicas field through.
func TestMetricsAndShadowOfTheFleet(t *testing.T) {
	missing := api.Coverage{Reporting: 2, Of: 3, Missing: []api.MissingReplica{{ID: "gw-3", Error: "no answer within 2s"}}}
	e, _ := fleetEnv(t, missing)
	const line = "replicas: 2 of 3 (missing: gw-3: no answer within 2s)\n"
	for _, args := range [][]string{{"metrics", "fraud"}, {"shadow", "report", "fraud"}} {
		code, out, errOut := e.run(args...)
		if code != 0 {
			t.Fatalf("%v = %d: %s", args, code, errOut)
		}
		if lines := strings.SplitN(out, "\n", 3); len(lines) < 3 || lines[1]+"\n" != line {
			t.Errorf("%v: want %q as the second line:\n%s", args, line, out)
		}
		code, out, _ = e.run(append(args, "-o", "json")...)
		var got struct{ Replicas api.Coverage }
		if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || got.Replicas.Of != 3 || len(got.Replicas.Missing) != 1 {
			t.Errorf("%v -o json = %d, replicas %+v (%v):\n%s", args, code, got.Replicas, err, out)
		}
	}

	one, queries1 := fleetEnv(t, api.Coverage{Reporting: 1, Of: 1, Replica: "gw-2"})
	code, out, _ := one.run("metrics", "fraud", "--replica", "gw-2", "-w", "1m")
	if want := "endpoint fraud, window 5m, baseline blue, replica gw-2\nDEPLOYMENT"; code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("metrics --replica gw-2 = %d:\n%s\nwant it to start with %q", code, out, want)
	}
	code, out, _ = one.run("shadow", "report", "fraud", "--replica", "gw-2")
	if want := "shadow report of fraud over the last 5m, replica gw-2\n  SHADOW"; code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("shadow report --replica gw-2 = %d:\n%s\nwant it to start with %q", code, out, want)
	}
	if got := strings.Join(queries1(), " "); got != "/api/v1/endpoints/fraud/metrics?replica=gw-2&window=1m /api/v1/endpoints/fraud/health?replica=gw-2 /api/v1/endpoints/fraud/shadow?replica=gw-2&window=5m" {
		t.Errorf("queries %s", got)
	}
	// Complete fleet answers say nothing more than a gateway alone's.
	whole, _ := fleetEnv(t, api.Coverage{Reporting: 3, Of: 3})
	if _, out, _ := whole.run("metrics", "fraud"); strings.Contains(out, "replicas") {
		t.Errorf("metrics of the whole fleet mention the replicas:\n%s", out)
	}
}
