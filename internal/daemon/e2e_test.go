package daemon_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/testenv"
)

// sendConcurrently sends n requests from workers goroutines and returns
// how many each deployment answered; any non-200 fails the test.
func sendConcurrently(t *testing.T, c *testenv.Client, n, workers int, header func(i int) map[string]string) map[string]int {
	t.Helper()
	var mu sync.Mutex
	counts := map[string]int{}
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := map[string]int{}
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					break
				}
				var h map[string]string
				if header != nil {
					h = header(i)
				}
				status, dep, err := c.Predict("/fraud/v1/models/fraud:predict", h)
				if err != nil || status != http.StatusOK {
					if failed.Add(1) < 5 {
						t.Errorf("request %d: status %d, err %v", i, status, err)
					}
					continue
				}
				local[dep]++
			}
			mu.Lock()
			for k, v := range local {
				counts[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d requests failed", f, n)
	}
	return counts
}

func TestSplitAtFivePercentAndMetricsCountExactly(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)

	if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 95, "green": 5}); status != 200 {
		t.Fatalf("PUT traffic = %d %s, want 200", status, body)
	}
	const n = 20000
	counts := sendConcurrently(t, c, n, 16, nil)
	share := float64(counts["green"]) / n
	if share < 0.045 || share > 0.055 {
		t.Errorf("green share over %d requests = %.4f, want 0.05 ± 0.005 (counts %v)", n, share, counts)
	}
	if got := counts["blue"] + counts["green"]; got != n {
		t.Errorf("answered by blue+green = %d, want %d", got, n)
	}
	if int(blue.Served()) != counts["blue"] || int(green.Served()) != counts["green"] {
		t.Errorf("backends served blue=%d green=%d, responses named blue=%d green=%d",
			blue.Served(), green.Served(), counts["blue"], counts["green"])
	}

	// /metrics, parsed, counts exactly what was sent to each deployment.
	resp, err := http.Get(c.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	got := map[string]float64{}
	fam, ok := families["modelgate_requests_total"]
	if !ok {
		t.Fatalf("/metrics has no modelgate_requests_total")
	}
	for _, m := range fam.GetMetric() {
		if label(m, "endpoint") == "fraud" {
			got[label(m, "deployment")] += m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"blue": float64(counts["blue"]), "green": float64(counts["green"])}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("modelgate_requests_total per deployment (-want +got):\n%s", diff)
	}
	hist := families["modelgate_request_duration_seconds"]
	if hist == nil {
		t.Fatalf("/metrics has no modelgate_request_duration_seconds")
	}
	for _, m := range hist.GetMetric() {
		if label(m, "endpoint") == "fraud" {
			dep := label(m, "deployment")
			if c := m.GetHistogram().GetSampleCount(); float64(c) != want[dep] {
				t.Errorf("duration histogram count for %s = %d, want %v", dep, c, want[dep])
			}
		}
	}

	// The metrics JSON agrees.
	status, body := c.API("GET", "/api/v1/endpoints/fraud/metrics?window=5m", nil)
	if status != 200 {
		t.Fatalf("GET metrics = %d %s", status, body)
	}
	var rep telemetry.Report
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Baseline != "blue" || rep.Window != "5m" {
		t.Errorf("metrics baseline=%q window=%q, want blue 5m", rep.Baseline, rep.Window)
	}
	for dep, n := range counts {
		if got := rep.Deployments[dep].Requests; got != uint64(n) {
			t.Errorf("metrics JSON %s requests = %d, want %d", dep, got, n)
		}
	}
	if s := rep.Deployments["green"].Share; s < 0.045 || s > 0.055 {
		t.Errorf("metrics JSON green share = %v, want about 0.05", s)
	}
	if rep.Differences["green"].ErrorRatePP == nil {
		t.Errorf("differences.green.error_rate_pp is null with data on both sides")
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestOverrideHeaderBypassesTheSplit(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)

	counts := sendConcurrently(t, c, 200, 4, func(int) map[string]string { return map[string]string{"X-Model-Deployment": "green"} })
	if diff := cmp.Diff(map[string]int{"green": 200}, counts); diff != "" {
		t.Errorf("override to green with traffic blue=100 (-want +got):\n%s", diff)
	}
	status, dep, err := c.Predict("/fraud/x", map[string]string{"X-Model-Deployment": "purple"})
	if err != nil || status != http.StatusBadRequest {
		t.Errorf("override to unknown deployment: status %d (deployment %q), err %v; want 400", status, dep, err)
	}
	_, body := c.API("GET", "/api/v1/endpoints/fraud/metrics", nil)
	var rep telemetry.Report
	json.Unmarshal(body, &rep)
	if g := rep.Deployments["green"]; g.Requests != 200 || g.OverrideRequests != 200 || g.Share != 0 {
		t.Errorf("green metrics requests=%d override=%d share=%v; want 200, 200, 0 (override requests are not split-routed)",
			g.Requests, g.OverrideRequests, g.Share)
	}
}

func TestRequestPathQueryAndHeaders(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)

	req, _ := http.NewRequest("POST", c.Proxy+"/fraud/v1/models/m:predict?explain=1", strings.NewReader(`{"instances":[[1]]}`))
	req.Header.Set("X-Request-Id", "req-42")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		ServedBy, Path, Query, RequestID string `json:"-"`
	}
	var raw map[string]any
	json.NewDecoder(resp.Body).Decode(&raw)
	got.ServedBy, got.Path, got.Query, got.RequestID = fmt.Sprint(raw["served_by"]), fmt.Sprint(raw["path"]), fmt.Sprint(raw["query"]), fmt.Sprint(raw["request_id"])
	want := struct{ ServedBy, Path, Query, RequestID string }{"blue", "/v1/models/m:predict", "explain=1", "req-42"}
	if diff := cmp.Diff(want, struct{ ServedBy, Path, Query, RequestID string }(got)); diff != "" {
		t.Errorf("forwarded request (-want +got):\n%s", diff)
	}
	if h := resp.Header.Get("X-Model-Deployment"); h != "blue" {
		t.Errorf("X-Model-Deployment = %q, want blue", h)
	}
	if h := resp.Header.Get("X-Request-Id"); h != "req-42" {
		t.Errorf("X-Request-Id = %q, want the client's req-42", h)
	}
	// Without one, a request id is generated and sent both ways.
	resp2, err := c.HTTP.Post(c.Proxy+"/fraud/", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp2.Body).Decode(&raw)
	resp2.Body.Close()
	if id := resp2.Header.Get("X-Request-Id"); id == "" || id != raw["request_id"] {
		t.Errorf("generated X-Request-Id = %q, backend saw %v; want the same non-empty id", id, raw["request_id"])
	}
	status, _, _ := c.Predict("/nope/x", nil)
	if status != http.StatusNotFound {
		t.Errorf("unknown endpoint status = %d, want 404", status)
	}
}

func TestStickyKeysStayAndRampMonotonically(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), "    sticky_header: X-User-Id\n"))
	c := testenv.Connect(t, d)
	const users = 2000
	placement := func() map[string]string {
		out := make(map[string]string, users)
		var mu sync.Mutex
		for round := 0; round < 2; round++ {
			var wg sync.WaitGroup
			for w := 0; w < 8; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for u := w; u < users; u += 8 {
						key := fmt.Sprintf("user-%d", u)
						status, dep, err := c.Predict("/fraud/p", map[string]string{"X-User-Id": key})
						if err != nil || status != 200 {
							t.Errorf("user %s: %d %v", key, status, err)
							return
						}
						mu.Lock()
						if prev, seen := out[key]; seen && prev != dep {
							t.Errorf("user %s moved from %s to %s with the same weights", key, prev, dep)
						}
						out[key] = dep
						mu.Unlock()
					}
				}(w)
			}
			wg.Wait()
		}
		return out
	}
	onGreen := func(p map[string]string) int {
		n := 0
		for _, dep := range p {
			if dep == "green" {
				n++
			}
		}
		return n
	}
	var prev map[string]string
	for _, pct := range []float64{5, 25, 50, 100} {
		if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100 - pct, "green": pct}); status != 200 {
			t.Fatalf("PUT traffic green=%v: %d %s", pct, status, body)
		}
		p := placement()
		share := float64(onGreen(p)) / users
		if share < pct/100-0.04 || share > pct/100+0.04 {
			t.Errorf("at green=%v%%, %.3f of users on green", pct, share)
		}
		for user, dep := range prev {
			if dep == "green" && p[user] != "green" {
				t.Errorf("user %s was on green and moved to %s when green grew to %v%%", user, p[user], pct)
			}
		}
		prev = p
	}
}

func TestBadTrafficChangesAreRejectedAndChangeNothing(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)
	_, before := c.API("GET", "/api/v1/events", nil)

	cases := []struct {
		name       string
		token      string
		body       any
		wantStatus int
		wantField  string
	}{
		{"sum 99", c.Token, map[string]float64{"blue": 94, "green": 5}, 400, "traffic"},
		{"unknown deployment", c.Token, map[string]float64{"blue": 95, "grean": 5}, 400, "traffic.grean"},
		{"three decimals", c.Token, `{"blue": 94.995, "green": 5.005}`, 400, ""},
		{"no token", "", map[string]float64{"blue": 95, "green": 5}, 401, ""},
		{"wrong token", "not-the-token", map[string]float64{"blue": 95, "green": 5}, 401, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := c.APIToken(tc.token, "PUT", "/api/v1/endpoints/fraud/traffic", tc.body)
			if status != tc.wantStatus {
				t.Fatalf("PUT traffic = %d %s, want %d", status, body, tc.wantStatus)
			}
			var e struct {
				Error    string         `json:"error"`
				Problems []spec.Problem `json:"problems"`
			}
			if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
				t.Errorf("error body %s is not {\"error\": ...}", body)
			}
			if tc.wantField != "" {
				found := false
				for _, p := range e.Problems {
					found = found || p.Field == tc.wantField
				}
				if !found {
					t.Errorf("problems %+v do not name field %q", e.Problems, tc.wantField)
				}
			}
		})
	}
	_, traffic := c.API("GET", "/api/v1/endpoints/fraud/traffic", nil)
	if strings.ReplaceAll(string(traffic), " ", "") != "{\"blue\":100}\n" && strings.TrimSpace(string(traffic)) != `{"blue":100}` {
		t.Errorf("traffic after rejected changes = %s, want {\"blue\":100}", traffic)
	}
	counts := sendConcurrently(t, c, 300, 4, nil)
	if diff := cmp.Diff(map[string]int{"blue": 300}, counts); diff != "" {
		t.Errorf("routing after rejected changes (-want +got):\n%s", diff)
	}
	if _, after := c.API("GET", "/api/v1/events", nil); string(after) != string(before) {
		t.Errorf("rejected changes wrote events:\nbefore %s\nafter  %s", before, after)
	}
}

func TestApplyInvalidFileChangesNothing(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)
	_, epBefore := c.API("GET", "/api/v1/endpoints/fraud", nil)
	_, evBefore := c.API("GET", "/api/v1/events", nil)

	bad := strings.Replace(testenv.TwoDeploymentConfig(dir, blue.URL(), "not a url", ""), "traffic: {blue: 100}", "traffic: {blue: 100}\n    colour: red", 1)
	status, body := c.API("POST", "/api/v1/apply", bad)
	if status != 400 {
		t.Fatalf("apply invalid file = %d %s, want 400", status, body)
	}
	var e struct {
		Problems []spec.Problem `json:"problems"`
	}
	json.Unmarshal(body, &e)
	fields := map[string]bool{}
	for _, p := range e.Problems {
		fields[p.Field] = true
	}
	for _, want := range []string{"endpoints[0].deployments[1].backends[0]", "endpoints[0].colour"} {
		if !fields[want] {
			t.Errorf("problems %+v do not name %s", e.Problems, want)
		}
	}
	_, epAfter := c.API("GET", "/api/v1/endpoints/fraud", nil)
	_, evAfter := c.API("GET", "/api/v1/events", nil)
	if string(epBefore) != string(epAfter) || string(evBefore) != string(evAfter) {
		t.Errorf("invalid apply changed state:\nendpoint before %s\nafter %s\nevents before %s\nafter %s", epBefore, epAfter, evBefore, evAfter)
	}

	// A valid file adds a deployment and keeps the stored traffic.
	third := testenv.NewEcho(t, "purple")
	good := testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), "") + ""
	good = strings.Replace(good, "    traffic: {blue: 100}", fmt.Sprintf("      - name: purple\n        backends: [%s]\n    traffic: {green: 100}", third.URL()), 1)
	status, body = c.API("POST", "/api/v1/apply", good)
	if status != 200 {
		t.Fatalf("apply valid file = %d %s", status, body)
	}
	_, traffic := c.API("GET", "/api/v1/endpoints/fraud/traffic", nil)
	if strings.TrimSpace(string(traffic)) != `{"blue":100}` {
		t.Errorf("traffic after apply = %s; the file's traffic only initialises new endpoints", traffic)
	}
	status, dep, _ := c.Predict("/fraud/x", map[string]string{"X-Model-Deployment": "purple"})
	if status != 200 || dep != "purple" {
		t.Errorf("request to applied deployment purple: %d %q", status, dep)
	}
}

func TestEventLogListsEveryChangeOnceInOrder(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)

	// Subscribe before the changes; the stream must deliver them live.
	streamed := make(chan store.Event, 16)
	req, _ := http.NewRequest("GET", c.Admin+"/api/v1/events/stream", nil)
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Last-Event-ID", "1") // skip the endpoint creation
	resp, err := c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	go readSSE(resp.Body, streamed)
	defer resp.Body.Close()

	steps := []struct {
		method, path string
		body         any
	}{
		{"PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 95, "green": 5}},
		{"PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 95, "green": 5}}, // no change, no event
		{"PUT", "/api/v1/endpoints/fraud/mirror", map[string]float64{"green": 10}},
		{"PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 50, "green": 50}},
		{"PUT", "/api/v1/endpoints/fraud/deployments/purple", map[string]any{"backends": []string{blue.URL()}}},
		{"DELETE", "/api/v1/endpoints/fraud/deployments/purple", nil},
	}
	for _, s := range steps {
		if status, body := c.API(s.method, s.path, s.body); status >= 300 {
			t.Fatalf("%s %s = %d %s", s.method, s.path, status, body)
		}
	}
	wantTypes := []string{"endpoint.created", "traffic.changed", "mirror.changed", "traffic.changed", "deployment.created", "deployment.removed"}
	_, body := c.API("GET", "/api/v1/events?endpoint=fraud", nil)
	var list struct{ Events []store.Event }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	var types []string
	for i, e := range list.Events {
		types = append(types, e.Type)
		if i > 0 && e.Seq <= list.Events[i-1].Seq {
			t.Errorf("event %d seq %d after %d: not strictly increasing", i, e.Seq, list.Events[i-1].Seq)
		}
	}
	if diff := cmp.Diff(wantTypes, types); diff != "" {
		t.Errorf("event types (-want +got):\n%s", diff)
	}
	_, body = c.API("GET", fmt.Sprintf("/api/v1/events?since=%d", list.Events[2].Seq), nil)
	var tail struct{ Events []store.Event }
	json.Unmarshal(body, &tail)
	if len(tail.Events) != 3 || tail.Events[0].Seq != list.Events[3].Seq {
		t.Errorf("events since seq %d = %+v, want the last 3", list.Events[2].Seq, tail.Events)
	}
	for i := 1; i < len(wantTypes); i++ {
		select {
		case e := <-streamed:
			if e.Seq != list.Events[i].Seq || e.Type != wantTypes[i] {
				t.Errorf("streamed event = seq %d %s, want seq %d %s", e.Seq, e.Type, list.Events[i].Seq, wantTypes[i])
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("SSE stream delivered %d of %d events", i-1, len(wantTypes)-1)
		}
	}
}

// readSSE decodes "data:" lines of an SSE stream into events.
func readSSE(r io.Reader, out chan<- store.Event) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if data, ok := strings.CutPrefix(line, "data:"); ok {
			var e store.Event
			if json.Unmarshal([]byte(strings.TrimSpace(data)), &e) == nil {
				out <- e
			}
		}
	}
}

func TestChangingSplitUnderLoadLosesNoRequest(t *testing.T) {
	blue, green, purple := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green"), testenv.NewEcho(t, "purple")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), green.URL(), ""))
	c := testenv.Connect(t, d)

	var bad atomic.Int64
	ld := testenv.StartLoad(t, 16, 0, func() {
		status, dep, err := c.Predict("/fraud/p", nil)
		if err != nil || status != 200 || dep == "" {
			if bad.Add(1) < 5 {
				t.Errorf("request under changing split: status %d deployment %q err %v", status, dep, err)
			}
		}
	})
	for i := 0; i < 30; i++ {
		pct := float64((i * 37) % 101)
		if status, body := c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100 - pct, "green": pct}); status != 200 {
			t.Fatalf("PUT traffic: %d %s", status, body)
		}
		if i%10 == 5 { // add a third deployment, give it traffic, take it away, remove it
			c.API("PUT", "/api/v1/endpoints/fraud/deployments/purple", map[string]any{"backends": []string{purple.URL()}})
			c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 50, "purple": 50})
			before := purple.Served()
			testenv.WaitFor(t, 10*time.Second, "purple to serve", func() bool { return purple.Served() > before })
			c.API("PUT", "/api/v1/endpoints/fraud/traffic", map[string]float64{"blue": 100})
			if status, body := c.API("DELETE", "/api/v1/endpoints/fraud/deployments/purple", nil); status != 200 && status != 204 {
				t.Fatalf("DELETE purple: %d %s", status, body)
			}
		}
		// Let the load run between changes.
		sent := ld.Sent()
		testenv.WaitFor(t, 10*time.Second, "requests between changes", func() bool { return ld.Sent() >= sent+20 })
	}
	ld.Stop()
	if bad.Load() > 0 || ld.Sent() < 100 {
		t.Fatalf("%d of %d requests failed while the split changed", bad.Load(), ld.Sent())
	}
	if purple.Served() == 0 {
		t.Errorf("purple never served: the test did not exercise adding a deployment")
	}
}

func TestStreamedChunkReachesClientBeforeBackendFinishes(t *testing.T) {
	release := make(chan struct{})
	sse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		fmt.Fprint(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		fmt.Fprint(w, "data: second\n\n")
	})
	streamer := httptest.NewServer(sse)
	t.Cleanup(streamer.Close)
	blue := testenv.NewEcho(t, "blue")
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(t.TempDir(), blue.URL(), streamer.URL, ""))
	c := testenv.Connect(t, d)

	req, _ := http.NewRequest("POST", c.Proxy+"/fraud/v1/chat/completions", strings.NewReader(`{"stream":true}`))
	req.Header.Set("X-Model-Deployment", "green")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rd := bufio.NewReader(resp.Body)
	line, err := rd.ReadString('\n')
	if err != nil || line != "data: first\n" {
		close(release)
		t.Fatalf("first line = %q, %v; want the first chunk while the backend holds the rest", line, err)
	}
	close(release)
	rest, _ := io.ReadAll(rd)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("rest of stream = %q, want the second chunk", rest)
	}
}

func TestFailingBackendIsSkippedAndRejoins(t *testing.T) {
	good := testenv.NewEcho(t, "blue")
	// Reserve an address, then close it so that it refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()
	green := testenv.NewEcho(t, "green")
	cfg := testenv.TwoDeploymentConfig(t.TempDir(), good.URL()+", http://"+deadAddr, green.URL(), "")
	cfg = strings.Replace(cfg, "        backends: ["+good.URL()+", http://"+deadAddr+"]",
		"        backends: ["+good.URL()+", http://"+deadAddr+"]\n        fail_timeout: 200ms", 1)
	d := testenv.StartDaemon(t, cfg)
	c := testenv.Connect(t, d)

	counts := sendConcurrently(t, c, 200, 4, nil)
	if counts["blue"] != 200 {
		t.Errorf("with one dead backend, blue answered %d of 200", counts["blue"])
	}
	// Bring the dead backend back; it must receive requests again. The
	// port can be held for a moment by another socket (an outgoing
	// connection given it as its ephemeral port): retry until it is free.
	var ln2 net.Listener
	testenv.WaitFor(t, 10*time.Second, "the dead backend's address "+deadAddr+" to be free again", func() bool {
		var err error
		ln2, err = net.Listen("tcp", deadAddr)
		return err == nil
	})
	var revived atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		revived.Add(1)
		w.Write([]byte(`{"predictions":[0]}`))
	})}
	go srv.Serve(ln2)
	defer srv.Close()
	deadline := time.Now().Add(15 * time.Second)
	for revived.Load() == 0 && time.Now().Before(deadline) {
		if status, _, err := c.Predict("/fraud/p", nil); err != nil || status != 200 {
			t.Fatalf("request while backend rejoins: %d %v", status, err)
		}
	}
	if revived.Load() == 0 {
		t.Errorf("the revived backend got no request within 15s of coming back")
	}
}

func TestCLIAgainstTheRealDaemon(t *testing.T) {
	blue, green := testenv.NewEcho(t, "blue"), testenv.NewEcho(t, "green")
	dir := t.TempDir()
	d := testenv.StartDaemon(t, testenv.TwoDeploymentConfig(dir, blue.URL(), green.URL(), ""))
	tokenFile := filepath.Join(dir, "admin.token") // written beside the state on first start
	run := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		full := append([]string{"--admin", d.AdminAddr(), "--token-file", tokenFile}, args...)
		code := cli.Execute(full, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	if code, out, errOut := run("traffic", "set", "fraud", "green=5"); code != 0 {
		t.Fatalf("traffic set fraud green=5: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut := run("traffic", "get", "fraud", "-o", "json")
	var w spec.Weights
	if code != 0 || json.Unmarshal([]byte(out), &w) != nil {
		t.Fatalf("traffic get -o json: exit %d, %q %s", code, out, errOut)
	}
	if diff := cmp.Diff(spec.Weights{"blue": 9500, "green": 500}, w); diff != "" {
		t.Errorf("traffic after `traffic set fraud green=5` (-want +got):\n%s", diff)
	}
	sendConcurrently(t, testenv.Connect(t, d), 400, 4, nil)
	code, out, errOut = run("metrics", "fraud", "--window", "1m", "-o", "json")
	var rep telemetry.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("metrics -o json: exit %d, %q %s", code, out, errOut)
	}
	if got := rep.Deployments["blue"].Requests + rep.Deployments["green"].Requests; got != 400 {
		t.Errorf("metrics via CLI count %d requests, want 400", got)
	}
	if code, out, _ = run("metrics", "fraud"); code != 0 || !strings.Contains(out, "green") || !strings.Contains(out, "blue") {
		t.Errorf("metrics table: exit %d\n%s", code, out)
	}
	// A bad change exits 1, prints the problem, and changes nothing.
	if code, _, errOut = run("traffic", "set", "fraud", "blue=50", "green=49"); code != 1 || !strings.Contains(errOut, "sum to 100") {
		t.Errorf("traffic set summing to 99: exit %d, stderr %q; want 1 and the problem", code, errOut)
	}
	if code, _, _ = run("traffic", "set"); code != 2 {
		t.Errorf("traffic set without arguments: exit %d, want 2 (usage)", code)
	}
	// apply -f with an invalid file: exit 1, nothing changes.
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("endpoints:\n  - name: fraud\n    deployments: []\n"), 0o644)
	if code, _, errOut = run("apply", "-f", bad); code != 1 || !strings.Contains(errOut, "endpoints[0].deployments") {
		t.Errorf("apply -f invalid: exit %d, stderr %q", code, errOut)
	}
	_, out, _ = run("traffic", "get", "fraud", "-o", "json")
	json.Unmarshal([]byte(out), &w)
	if diff := cmp.Diff(spec.Weights{"blue": 9500, "green": 500}, w); diff != "" {
		t.Errorf("traffic changed by rejected commands (-want +got):\n%s", diff)
	}
}
