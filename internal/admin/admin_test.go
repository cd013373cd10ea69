package admin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/admin/admintest"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

const testToken = "s3cret-token"

type call struct {
	method, path, body string
}

// apiCalls is one call per /api/v1 route (and an unknown path), used to
// prove that each of them requires the token.
var apiCalls = []call{
	{"GET", "/api/v1/endpoints", ""},
	{"GET", "/api/v1/endpoints/fraud", ""},
	{"GET", "/api/v1/endpoints/fraud/traffic", ""},
	{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"green":5}`},
	{"GET", "/api/v1/endpoints/fraud/mirror", ""},
	{"PUT", "/api/v1/endpoints/fraud/mirror", `{"green":10}`},
	{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"backends":["http://127.0.0.1:9003"]}`},
	{"DELETE", "/api/v1/endpoints/fraud/deployments/green", ""},
	{"POST", "/api/v1/apply?prune=true", "endpoints: []\n"},
	{"GET", "/api/v1/endpoints/fraud/metrics?window=1m", ""},
	{"GET", "/api/v1/events", ""},
	{"GET", "/api/v1/events/stream", ""},
	{"GET", "/api/v1/state/backup", ""},
	{"GET", "/api/v1/nope", ""},
	{"GET", "/api/v1", ""},
}

// do sends one request to h and returns the recorded answer.
func do(t *testing.T, h http.Handler, token string, c call) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req := httptest.NewRequest(c.method, c.path, body)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// decodeAny parses a JSON answer for comparison with cmp.Diff.
func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, b)
	}
	return v
}

func jsonAny(t *testing.T, s string) any {
	t.Helper()
	return decodeAny(t, []byte(s))
}

func TestAuthRequiredOnEveryAPIRoute(t *testing.T) {
	for _, c := range apiCalls {
		for _, tc := range []struct {
			name, header string
		}{
			{"no header", ""},
			{"wrong token", "Bearer not-the-token"},
			{"token prefix", "Bearer " + testToken[:4]},
			{"token longer", "Bearer " + testToken + "x"},
			{"basic scheme", "Basic " + testToken},
			{"bare token", testToken},
		} {
			t.Run(c.method+" "+c.path+"/"+tc.name, func(t *testing.T) {
				f := newFake()
				before, _ := f.Snapshot()
				h := New(Options{Backend: f, Token: testToken})
				req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized {
					t.Fatalf("%s %s = %d, want 401", c.method, c.path, rec.Code)
				}
				if got := rec.Header().Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want Bearer challenge", got)
				}
				var body api.ErrorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Error == "" {
					t.Errorf("body = %s, want error JSON", rec.Body)
				}
				after, changes := f.Snapshot()
				if changes != 0 {
					t.Errorf("backend changed %d times on a 401", changes)
				}
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("state changed on a 401 (-before +after):\n%s", diff)
				}
				if file, _ := f.LastApply(); file != nil || f.Watches() != 0 {
					t.Errorf("backend called on a 401")
				}
			})
		}
	}
}

func TestEmptyTokenRefusesEverything(t *testing.T) {
	h := New(Options{Backend: newFake(), Token: ""})
	for _, token := range []string{"", "anything"} {
		if rec := do(t, h, token, call{"GET", "/api/v1/endpoints", ""}); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET /api/v1/endpoints with token %q and no configured token = %d, want 401", token, rec.Code)
		}
	}
}

func TestOpenRoutesNeedNoToken(t *testing.T) {
	f := newFake()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "modelgate_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	h := New(Options{Backend: f, Token: testToken, Gatherer: reg})

	tests := []struct {
		name      string
		path      string
		readyErr  error
		wantCode  int
		wantInBod string
	}{
		{"healthz", "/healthz", nil, 200, "ok"},
		{"readyz ready", "/readyz", nil, 200, "ok"},
		{"readyz not ready", "/readyz", errString("routes not loaded"), 503, "not ready: routes not loaded"},
		{"metrics", "/metrics", nil, 200, "modelgate_test_total 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f.SetReady(tc.readyErr)
			rec := do(t, h, "", call{"GET", tc.path, ""})
			if rec.Code != tc.wantCode {
				t.Errorf("GET %s = %d, want %d", tc.path, rec.Code, tc.wantCode)
			}
			if !strings.Contains(rec.Body.String(), tc.wantInBod) {
				t.Errorf("GET %s body = %q, want it to contain %q", tc.path, rec.Body, tc.wantInBod)
			}
		})
	}
}

// The in-memory backend must stay an admin.Backend.
var _ Backend = (*admintest.Backend)(nil)

var errBoom = errors.New("disk on fire")

func newFake() *admintest.Backend { return admintest.NewBackend(admintest.Fraud()) }

type errString string

func (e errString) Error() string { return string(e) }

func TestRoutes(t *testing.T) {
	fraud := `{"name":"fraud","deployments":[
		{"name":"blue","backends":["http://127.0.0.1:9001"]},
		{"name":"green","backends":["http://127.0.0.1:9002"]}],
		"traffic":{"blue":100},"mirror":{}}`
	fraudWithRed := `{"name":"fraud","deployments":[
		{"name":"blue","backends":["http://127.0.0.1:9001"]},
		{"name":"green","backends":["http://127.0.0.1:9002"]},
		{"name":"red","backends":["http://127.0.0.1:9003"],"timeout":"2s"}],
		"traffic":{"blue":100},"mirror":{}}`
	tests := []struct {
		name     string
		call     call
		wantCode int
		wantBody string
		// wantChange: the call must change the backend (or must not).
		wantChange bool
	}{
		{"list endpoints", call{"GET", "/api/v1/endpoints", ""}, 200, `{"endpoints":[` + fraud + `]}`, false},
		{"get endpoint", call{"GET", "/api/v1/endpoints/fraud", ""}, 200, fraud, false},
		{"get unknown endpoint", call{"GET", "/api/v1/endpoints/nope", ""}, 404, `{"error":"endpoint \"nope\": not found"}`, false},
		{"get traffic", call{"GET", "/api/v1/endpoints/fraud/traffic", ""}, 200, `{"blue":100}`, false},
		{"set traffic", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"green":5}`}, 200, `{"blue":95,"green":5}`, true},
		{"set traffic decimals", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":99.75,"green":0.25}`}, 200, `{"blue":99.75,"green":0.25}`, true},
		{"set traffic sum 99", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":94,"green":5}`}, 400,
			`{"error":"invalid request: traffic: weights sum to 99, they must sum to 100",
			  "problems":[{"field":"traffic","message":"weights sum to 99, they must sum to 100"}]}`, false},
		{"set traffic unknown deployment", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"red":5}`}, 400,
			`{"error":"invalid request: traffic.red: unknown deployment \"red\" in endpoint \"fraud\" (its deployments: blue, green)",
			  "problems":[{"field":"traffic.red","message":"unknown deployment \"red\" in endpoint \"fraud\" (its deployments: blue, green)"}]}`, false},
		{"set traffic bad numbers, every one listed", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"green":5.555,"blue":"x"}`}, 400,
			`{"error":"invalid request: 2 problems","problems":[
			  {"field":"traffic.green","message":"invalid percent \"5.555\": must be a number from 0 to 100 with at most 2 decimals"},
			  {"field":"traffic.blue","message":"invalid percent \"x\": must be a number from 0 to 100 with at most 2 decimals"}]}`, false},
		{"set traffic not an object", call{"PUT", "/api/v1/endpoints/fraud/traffic", `[95,5]`}, 400,
			`{"error":"invalid request: traffic: a list, want an object",
			  "problems":[{"field":"traffic","message":"a list, want an object"}]}`, false},
		{"set traffic empty", call{"PUT", "/api/v1/endpoints/fraud/traffic", ``}, 400,
			`{"error":"invalid request: traffic: the body is empty: send a JSON object",
			  "problems":[{"field":"traffic","message":"the body is empty: send a JSON object"}]}`, false},
		{"set traffic no weights", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{}`}, 400,
			`{"error":"invalid request: traffic: traffic must give at least one deployment a weight; weights sum to 100",
			  "problems":[{"field":"traffic","message":"traffic must give at least one deployment a weight; weights sum to 100"}]}`, false},
		{"set traffic key twice", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"green":5,"blue":5}`}, 400,
			`{"error":"invalid request: traffic.blue: given twice",
			  "problems":[{"field":"traffic.blue","message":"given twice"}]}`, false},
		{"set traffic two values", call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":95,"green":5} {}`}, 400,
			`{"error":"invalid request: traffic: more than one JSON value in the body: send one object",
			  "problems":[{"field":"traffic","message":"more than one JSON value in the body: send one object"}]}`, false},
		{"set traffic unknown endpoint", call{"PUT", "/api/v1/endpoints/nope/traffic", `{"blue":100}`}, 404, `{"error":"endpoint \"nope\": not found"}`, false},
		{"get mirror", call{"GET", "/api/v1/endpoints/fraud/mirror", ""}, 200, `{}`, false},
		{"set mirror", call{"PUT", "/api/v1/endpoints/fraud/mirror", `{"green":10}`}, 200, `{"green":10}`, true},
		{"set mirror over 100", call{"PUT", "/api/v1/endpoints/fraud/mirror", `{"green":101}`}, 400,
			`{"error":"invalid request: mirror.green: invalid percent \"101\": must be a number from 0 to 100 with at most 2 decimals",
			  "problems":[{"field":"mirror.green","message":"invalid percent \"101\": must be a number from 0 to 100 with at most 2 decimals"}]}`, false},
		{"create deployment", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"backends":["http://127.0.0.1:9003"],"timeout":"2s"}`}, 201, fraudWithRed, true},
		{"create deployment with matching name", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"name":"red","backends":["http://127.0.0.1:9003"],"timeout":"2s"}`}, 201, fraudWithRed, true},
		{"update deployment", call{"PUT", "/api/v1/endpoints/fraud/deployments/green", `{"backends":["http://127.0.0.1:9002"]}`}, 200, fraud, true},
		{"deployment name mismatch", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"name":"green","backends":["http://127.0.0.1:9003"]}`}, 400,
			`{"error":"invalid request: name: \"green\" does not match the deployment \"red\" in the path",
			  "problems":[{"field":"name","message":"\"green\" does not match the deployment \"red\" in the path"}]}`, false},
		{"deployment unknown field", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"backend":["http://127.0.0.1:9003"]}`}, 400,
			`{"error":"invalid request: backend: unknown field; did you mean \"backends\"? (fields: backends, fail_timeout, health_check, max_fails, name, stream_idle_timeout, timeout, tls)",
			  "problems":[{"field":"backend","message":"unknown field; did you mean \"backends\"? (fields: backends, fail_timeout, health_check, max_fails, name, stream_idle_timeout, timeout, tls)"}]}`, false},
		{"deployment field in another case", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"Backends":["http://127.0.0.1:9003"]}`}, 400,
			`{"error":"invalid request: Backends: unknown field; did you mean \"backends\"? (fields: backends, fail_timeout, health_check, max_fails, name, stream_idle_timeout, timeout, tls)",
			  "problems":[{"field":"Backends","message":"unknown field; did you mean \"backends\"? (fields: backends, fail_timeout, health_check, max_fails, name, stream_idle_timeout, timeout, tls)"}]}`, false},
		{"deployment wrong types, every problem", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", "{\"backends\": \"http://127.0.0.1:9003\",\n \"timeout\": 5}"}, 400,
			`{"error":"invalid request: 2 problems","problems":[
			  {"field":"backends","message":"\"http://127.0.0.1:9003\" is a string, want a list (line 1)"},
			  {"field":"timeout","message":"invalid duration \"5\": use a number with a unit, e.g. 500ms, 10s, 1m (line 2)"}]}`, false},
		{"deployment invalid, every problem", call{"PUT", "/api/v1/endpoints/fraud/deployments/red", `{"backends":["ftp://x"],"max_fails":-1}`}, 400,
			`{"error":"invalid request: 2 problems","problems":[
			  {"field":"backends[0]","message":"\"ftp://x\": scheme must be http or https"},
			  {"field":"max_fails","message":"must not be negative"}]}`, false},
		{"delete deployment with traffic", call{"DELETE", "/api/v1/endpoints/fraud/deployments/blue", ""}, 409,
			`{"error":"deployment fraud/blue still has traffic or mirror"}`, false},
		{"delete unknown deployment", call{"DELETE", "/api/v1/endpoints/fraud/deployments/red", ""}, 404,
			`{"error":"deployment fraud/red: not found"}`, false},
		{"delete deployment", call{"DELETE", "/api/v1/endpoints/fraud/deployments/green", ""}, 200,
			`{"name":"fraud","deployments":[{"name":"blue","backends":["http://127.0.0.1:9001"]}],"traffic":{"blue":100},"mirror":{}}`, true},
		{"apply", call{"POST", "/api/v1/apply", "endpoints: []\n"}, 200,
			`{"created":[],"updated":["fraud/green"],"unchanged":[],"removed":[]}`, true},
		{"apply bad prune", call{"POST", "/api/v1/apply?prune=maybe", "endpoints: []\n"}, 400,
			`{"error":"invalid request: prune: \"maybe\" is not a boolean: use true or false",
			  "problems":[{"field":"prune","message":"\"maybe\" is not a boolean: use true or false"}]}`, false},
		{"metrics", call{"GET", "/api/v1/endpoints/fraud/metrics", ""}, 200,
			`{"endpoint":"fraud","window":"5m","baseline":"blue","deployments":null,"differences":null,"replicas":{"reporting":1,"of":1}}`, false},
		{"metrics unknown endpoint", call{"GET", "/api/v1/endpoints/nope/metrics", ""}, 404, `{"error":"endpoint \"nope\": not found"}`, false},
		{"metrics window too short", call{"GET", "/api/v1/endpoints/fraud/metrics?window=5s", ""}, 400,
			`{"error":"invalid request: window: \"5s\" is not a window from 10s to 1h, e.g. 5m",
			  "problems":[{"field":"window","message":"\"5s\" is not a window from 10s to 1h, e.g. 5m"}]}`, false},
		{"events bad query, every problem", call{"GET", "/api/v1/events?since=x&limit=-1", ""}, 400,
			`{"error":"invalid request: 2 problems","problems":[
			  {"field":"since","message":"\"x\" is not an event sequence number"},
			  {"field":"limit","message":"\"-1\" is not a count (0 or more)"}]}`, false},
		{"events empty", call{"GET", "/api/v1/events", ""}, 200, `{"events":[]}`, false},
		{"stream bad Last-Event-ID", call{"GET", "/api/v1/events/stream?since=abc", ""}, 400,
			`{"error":"invalid request: since: \"abc\" is not an event sequence number",
			  "problems":[{"field":"since","message":"\"abc\" is not an event sequence number"}]}`, false},
		{"unknown path", call{"GET", "/api/v1/nope", ""}, 404, `{"error":"no such API path: /api/v1/nope"}`, false},
		{"wrong method", call{"POST", "/api/v1/endpoints", "{}"}, 405, `{"error":"method POST not allowed on /api/v1/endpoints"}`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.ApplyResult = control.ApplyResult{Updated: []string{"fraud/green"}}
			f.Report = telemetry.Report{Endpoint: "fraud", Window: "5m", Baseline: "blue"}
			before, _ := f.Snapshot()
			h := New(Options{Backend: f, Token: testToken})
			rec := do(t, h, testToken, tc.call)
			if rec.Code != tc.wantCode {
				t.Errorf("%s %s = %d, want %d; body %s", tc.call.method, tc.call.path, rec.Code, tc.wantCode, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if diff := cmp.Diff(jsonAny(t, tc.wantBody), decodeAny(t, rec.Body.Bytes())); diff != "" {
				t.Errorf("%s %s body (-want +got):\n%s", tc.call.method, tc.call.path, diff)
			}
			after, changes := f.Snapshot()
			if changed := changes > 0; changed != tc.wantChange {
				t.Errorf("backend changed = %v, want %v", changed, tc.wantChange)
			}
			if !tc.wantChange {
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("refused call changed state (-before +after):\n%s", diff)
				}
			}
		})
	}
}

func TestMethodNotAllowedListsAllowed(t *testing.T) {
	h := New(Options{Backend: newFake(), Token: testToken})
	rec := do(t, h, testToken, call{"DELETE", "/api/v1/endpoints/fraud/traffic", ""})
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("DELETE traffic = %d, want 405", rec.Code)
	}
	if got := rec.Header().Get("Allow"); !strings.Contains(got, "GET") || !strings.Contains(got, "PUT") {
		t.Errorf("Allow = %q, want GET and PUT", got)
	}
}

func TestActorIsAPI(t *testing.T) {
	f := newFake()
	h := New(Options{Backend: f, Token: testToken})
	do(t, h, testToken, call{"PUT", "/api/v1/endpoints/fraud/traffic", `{"blue":50,"green":50}`})
	if evs := f.EventLog(); len(evs) != 1 || evs[0].Actor != "api" {
		t.Errorf("events = %+v, want one with actor api", evs)
	}
}

func TestApplyPassesFileAndPrune(t *testing.T) {
	for _, tc := range []struct {
		query     string
		wantPrune bool
	}{{"", false}, {"?prune=true", true}, {"?prune=false", false}, {"?prune=1", true}} {
		t.Run(tc.query, func(t *testing.T) {
			f := newFake()
			h := New(Options{Backend: f, Token: testToken})
			file := "endpoints:\n  - name: fraud\n"
			if rec := do(t, h, testToken, call{"POST", "/api/v1/apply" + tc.query, file}); rec.Code != 200 {
				t.Fatalf("apply = %d, want 200: %s", rec.Code, rec.Body)
			}
			if gotFile, gotPrune := f.LastApply(); string(gotFile) != file || gotPrune != tc.wantPrune {
				t.Errorf("Apply(%q, prune=%v), want (%q, prune=%v)", gotFile, gotPrune, file, tc.wantPrune)
			}
		})
	}
}

func TestApplyErrors(t *testing.T) {
	invalid := spec.Prefix("endpoints[0]", errors.Join(
		spec.Problemf("traffic", "weights sum to 90, they must sum to 100"),
		spec.Problemf("deployments[1].backends[0]", `"x" is not a valid URL`),
	))
	tests := []struct {
		name     string
		err      error
		wantCode int
		wantBody string
	}{
		{"invalid file", invalid, 400, `{"error":"invalid request: 2 problems","problems":[
			{"field":"endpoints[0].traffic","message":"weights sum to 90, they must sum to 100"},
			{"field":"endpoints[0].deployments[1].backends[0]","message":"\"x\" is not a valid URL"}]}`},
		{"conflict", fmt.Errorf("remove fraud/green: still has traffic: %w", store.ErrConflict), 409,
			`{"error":"remove fraud/green: still has traffic"}`},
		{"internal", errBoom, 500, `{"error":"internal error"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.ApplyErr = tc.err
			var logs bytes.Buffer
			h := New(Options{Backend: f, Token: testToken, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			rec := do(t, h, testToken, call{"POST", "/api/v1/apply", "x: 1\n"})
			if rec.Code != tc.wantCode {
				t.Errorf("apply = %d, want %d", rec.Code, tc.wantCode)
			}
			if diff := cmp.Diff(jsonAny(t, tc.wantBody), decodeAny(t, rec.Body.Bytes())); diff != "" {
				t.Errorf("apply body (-want +got):\n%s", diff)
			}
			if logged := strings.Contains(logs.String(), "disk on fire"); logged != (tc.wantCode == 500) {
				t.Errorf("internal error logged = %v, want %v; logs:\n%s", logged, tc.wantCode == 500, logs.String())
			}
		})
	}
}

func TestBodyTooLarge(t *testing.T) {
	f := newFake()
	h := New(Options{Backend: f, Token: testToken})
	big := `{"blue":100,"pad":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	for _, c := range []call{
		{"PUT", "/api/v1/endpoints/fraud/traffic", big},
		{"PUT", "/api/v1/endpoints/fraud/deployments/red", big},
		{"POST", "/api/v1/apply", big},
	} {
		rec := do(t, h, testToken, c)
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s %s with %d bytes = %d, want 413", c.method, c.path, len(big), rec.Code)
		}
		want := api.ErrorBody{Error: "request body larger than 1048576 bytes"}
		var got api.ErrorBody
		_ = json.Unmarshal(rec.Body.Bytes(), &got)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("413 body (-want +got):\n%s", diff)
		}
	}
	if _, changes := f.Snapshot(); changes != 0 {
		t.Errorf("backend changed %d times on 413", changes)
	}
}

func TestMetricsWindow(t *testing.T) {
	tests := []struct {
		query    string
		want     time.Duration
		wantCode int
	}{
		{"", 5 * time.Minute, 200},
		{"?window=10s", 10 * time.Second, 200},
		{"?window=90s", 90 * time.Second, 200},
		{"?window=1h", time.Hour, 200},
		{"?window=9s", 0, 400},
		{"?window=61m", 0, 400},
		{"?window=5", 0, 400},
		{"?window=-5m", 0, 400},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			f := newFake()
			h := New(Options{Backend: f, Token: testToken})
			rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints/fraud/metrics" + tc.query, ""})
			if rec.Code != tc.wantCode {
				t.Fatalf("metrics%s = %d, want %d", tc.query, rec.Code, tc.wantCode)
			}
			if got := f.LastWindow(); got != tc.want {
				t.Errorf("metrics%s asked window %v, want %v", tc.query, got, tc.want)
			}
			if tc.wantCode == 400 {
				var body api.ErrorBody
				_ = json.Unmarshal(rec.Body.Bytes(), &body)
				if len(body.Problems) != 1 || body.Problems[0].Field != "window" {
					t.Errorf("metrics%s problems = %+v, want one on field window", tc.query, body.Problems)
				}
			}
		})
	}
}

func TestMetricsReportJSON(t *testing.T) {
	f := newFake()
	pp, pct := 1.67, -94.7
	f.Report = telemetry.Report{
		Endpoint: "fraud", Window: "5m", Baseline: "blue",
		Deployments: map[string]telemetry.DeploymentReport{
			"blue": {Requests: 9500, Status: map[string]uint64{"2xx": 9448, "4xx": 40, "5xx": 12}, Errors: 12, ErrorRate: 0.00126, ClientErrors: 40, RPM: 1900, Share: 0.95,
				LatencyMS: telemetry.Quantiles{P50: 11.2, P90: 19.8, P95: 24.1, P99: 40.3}},
		},
		Differences: map[string]telemetry.DifferenceReport{"green": {ErrorRatePP: &pp, RPMPct: &pct}},
	}
	h := New(Options{Backend: f, Token: testToken})
	rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints/fraud/metrics?window=5m", ""})
	var got telemetry.Report
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.Report, got); diff != "" {
		t.Errorf("metrics report (-want +got):\n%s", diff)
	}
	if !strings.Contains(rec.Body.String(), `"latency_p50_pct":null`) {
		t.Errorf("body %s: a difference without data must be null", rec.Body)
	}
}

func TestEventsQuery(t *testing.T) {
	f := newFake()
	f.AddEvent(store.Event{Endpoint: "fraud", Type: "traffic.changed", Message: "one"})
	f.AddEvent(store.Event{Endpoint: "other", Type: "traffic.changed", Message: "two"})
	f.AddEvent(store.Event{Endpoint: "fraud", Type: "mirror.changed", Message: "three"})
	h := New(Options{Backend: f, Token: testToken})
	rec := do(t, h, testToken, call{"GET", "/api/v1/events?endpoint=fraud&since=1&limit=5", ""})
	if rec.Code != 200 {
		t.Fatalf("events = %d: %s", rec.Code, rec.Body)
	}
	if diff := cmp.Diff(store.EventFilter{Endpoint: "fraud", Since: 1, Limit: 5}, f.LastFilter()); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	var got api.EventList
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := api.EventList{Events: []store.Event{f.EventLog()[2]}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestInternalErrorIsLoggedNotLeaked(t *testing.T) {
	f := newFake()
	f.ListErr = errBoom
	var logs bytes.Buffer
	h := New(Options{Backend: f, Token: testToken, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rec := do(t, h, testToken, call{"GET", "/api/v1/endpoints", ""})
	if rec.Code != 500 || strings.Contains(rec.Body.String(), "fire") {
		t.Errorf("GET endpoints = %d %s, want 500 without the cause", rec.Code, rec.Body)
	}
	if !strings.Contains(logs.String(), "disk on fire") {
		t.Errorf("logs = %q, want the cause", logs.String())
	}
}

func TestProfilerBehindTheToken(t *testing.T) {
	h := New(Options{Backend: newFake(), Token: testToken})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
		if rec := do(t, h, "", call{"GET", path, ""}); rec.Code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token = %d, want 401", path, rec.Code)
		}
		rec := do(t, h, testToken, call{"GET", path, ""})
		if rec.Code != http.StatusOK || rec.Body.Len() == 0 {
			t.Errorf("GET %s with the token = %d, %d bytes; want 200 and a profile", path, rec.Code, rec.Body.Len())
		}
	}
	if rec := do(t, h, testToken, call{"GET", "/debug/pprof/goroutine?debug=1", ""}); !strings.Contains(rec.Body.String(), "goroutine profile") {
		t.Errorf("goroutine profile: %.200q", rec.Body.String())
	}
}
