package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// startModel starts a model for a test and closes it at the end.
func startModel(t *testing.T, opts ModelOptions) *Model {
	t.Helper()
	m, err := StartModel(t.Context(), opts)
	if err != nil {
		t.Fatalf("StartModel(%+v): %v", opts, err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// instant is opts without latency, for tests that send many requests.
func instant(opts ModelOptions) ModelOptions {
	opts.Latency, opts.Jitter = 0, 0
	return opts
}

func post(t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of POST %s: %v", url, err)
	}
	return resp.StatusCode, b
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}

func TestModelPredict(t *testing.T) {
	m := startModel(t, ModelOptions{Name: "fraud", Version: "v1"})
	// Clearly on either side of v1's decision boundary, plus the origin
	// (z = -0.3, so class 0).
	body := `{"instances": [[3, 0, 0, 1], [-3, 1, 0, -1], [0, 0, 0, 0]]}`
	status, b := post(t, m.URL()+"/v1/models/fraud:predict", body)
	if status != http.StatusOK {
		t.Fatalf("predict status = %d, want 200; body %s", status, b)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("predict body %s: %v", b, err)
	}
	want := map[string]any{"predictions": []any{1.0, 0.0, 0.0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("predict body mismatch (-want +got):\n%s", diff)
	}
	if got := m.Stats(); got != (ModelStats{Predictions: 1}) {
		t.Errorf("Stats() = %+v, want one prediction", got)
	}
}

func TestModelReadiness(t *testing.T) {
	m := startModel(t, ModelOptions{Name: "iris"})
	tests := []struct {
		path       string
		wantStatus int
		wantBody   map[string]any
	}{
		{"/v1/models/iris", http.StatusOK, map[string]any{"name": "iris", "ready": true}},
		{"/v2/health/ready", http.StatusOK, map[string]any{"ready": true}},
		{"/v1/models/fraud", http.StatusNotFound, map[string]any{"error": "no route for GET /v1/models/fraud"}},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			status, b := get(t, m.URL()+tc.path)
			if status != tc.wantStatus {
				t.Errorf("GET %s status = %d, want %d", tc.path, status, tc.wantStatus)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("GET %s body %s: %v", tc.path, b, err)
			}
			if diff := cmp.Diff(tc.wantBody, got); diff != "" {
				t.Errorf("GET %s body mismatch (-want +got):\n%s", tc.path, diff)
			}
		})
	}
}

func TestModelRejectsBadInput(t *testing.T) {
	m := startModel(t, ModelOptions{ErrorRate: 1}) // a 400 comes before any injected failure
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantError  string
	}{
		{"not JSON", `instances`, 400, "invalid request body"},
		{"empty body", ``, 400, "invalid request body"},
		{"no instances", `{}`, 400, `"instances" must hold at least one instance`},
		{"empty instances", `{"instances": []}`, 400, `"instances" must hold at least one instance`},
		{"too few values", `{"instances": [[1, 2, 3, 4], [1, 2]]}`, 400, "instances[1] has 2 values, want 4"},
		{"not numbers", `{"instances": [["a", "b", "c", "d"]]}`, 400, "invalid request body"},
		{"flat instance", `{"instances": [1, 2, 3, 4]}`, 400, "invalid request body"},
		{"unknown field", `{"inputs": [[1, 2, 3, 4]]}`, 400, "invalid request body"},
		{"too large", `{"instances": [[` + strings.Repeat("1,", maxBody/2+64) + `1]]}`, 413, "invalid request body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, b := post(t, m.URL()+"/v1/models/fraud:predict", tc.body)
			if status != tc.wantStatus {
				t.Errorf("status = %d, want %d; body %s", status, tc.wantStatus, b)
			}
			var got errorBody
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("error body %s is not JSON: %v", b, err)
			}
			if !strings.Contains(got.Error, tc.wantError) {
				t.Errorf("error = %q, want it to contain %q", got.Error, tc.wantError)
			}
		})
	}
	if got := m.Stats(); got.BadRequests != uint64(len(tests)) || got.Predictions != 0 || got.Errors != 0 {
		t.Errorf("Stats() = %+v, want %d bad requests only", got, len(tests))
	}
}

func TestStartModelRejectsBadOptions(t *testing.T) {
	tests := []ModelOptions{
		{Version: "v4"},
		{Name: "a/b"},
		{ErrorRate: 1.5},
		{ErrorRate: -0.1},
		{Latency: -1},
	}
	for _, opts := range tests {
		if m, err := StartModel(t.Context(), opts); err == nil {
			m.Close()
			t.Errorf("StartModel(%+v) succeeded, want an error", opts)
		}
	}
}

// TestModelErrorRates sends many requests to each preset's handler (in
// process: the network adds nothing to the draw) and checks the share of
// 500s. The seeds are fixed, so the counts are too; the bounds are about
// four standard deviations wide all the same.
func TestModelErrorRates(t *testing.T) {
	const n = 20000
	tests := []struct {
		name     string
		opts     ModelOptions
		min, max float64
	}{
		{"blue", Blue(), 0.0079, 0.0121},
		{"green", Green(), 0.0079, 0.0121},
		{"red", Red(), 0.072, 0.088},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := startModel(t, instant(tc.opts))
			rng := rand.New(rand.NewPCG(1, 1))
			status := map[int]int{}
			var body bytes.Buffer
			for range n {
				body.Reset()
				writeInstance(&body, rng)
				rec := httptest.NewRecorder()
				m.srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/models/fraud:predict", &body))
				status[rec.Code]++
			}
			if status[200]+status[500] != n {
				t.Fatalf("statuses = %v, want only 200 and 500 summing to %d", status, n)
			}
			rate := float64(status[500]) / n
			t.Logf("%s: %d of %d requests failed (%.4f)", tc.name, status[500], n, rate)
			if rate < tc.min || rate > tc.max {
				t.Errorf("error rate = %.4f over %d requests, want %.4f..%.4f (configured %.4f)", rate, n, tc.min, tc.max, tc.opts.ErrorRate)
			}
			want := ModelStats{Predictions: uint64(status[200]), Errors: uint64(status[500])}
			if got := m.Stats(); got != want {
				t.Errorf("Stats() = %+v, want %+v", got, want)
			}
		})
	}
}

// TestVersionsMostlyAgree checks that each version is a close relative of
// the one before: the shadow comparison has something to find, but not
// much. The demo's shadow phase relies on these rates (its min_match_rate
// is below them, with room for the models' injected errors).
func TestVersionsMostlyAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const n = 10000
	pairs := []struct {
		a, b     string
		min, max float64
	}{
		{"v1", "v2", 0.96, 0.99},
		{"v2", "v3", 0.975, 0.995},
	}
	agree := make([]int, len(pairs))
	ones := 0
	x := make([]float64, Features)
	for range n {
		for i := range x {
			x[i] = rng.NormFloat64()
		}
		for i, p := range pairs {
			if versions[p.a].predict(x) == versions[p.b].predict(x) {
				agree[i]++
			}
		}
		ones += versions["v1"].predict(x)
	}
	for i, p := range pairs {
		if share := float64(agree[i]) / n; share < p.min || share > p.max {
			t.Errorf("%s and %s agree on %.3f of instances, want %.3f..%.3f", p.a, p.b, share, p.min, p.max)
		}
	}
	if share := float64(ones) / n; share < 0.3 || share > 0.7 {
		t.Errorf("v1 predicts class 1 for %.3f of instances, want both classes common", share)
	}
}

func TestModelStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	m, err := StartModel(ctx, ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := get(t, m.URL()+"/v2/health/ready"); status != http.StatusOK {
		t.Fatalf("ready status = %d, want 200", status)
	}
	cancel()
	// Close after the context stopped the server reports the same result
	// and does not block.
	if err := m.Close(); err != nil {
		t.Errorf("Close() after cancel = %v", err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if resp, err := client.Get(m.URL() + "/v2/health/ready"); err == nil {
		resp.Body.Close()
		t.Errorf("GET after cancel answered %d, want a connection error", resp.StatusCode)
	}
}

func ExampleStartModel() {
	m, err := StartModel(context.Background(), ModelOptions{Name: "fraud", Version: "v2"})
	if err != nil {
		panic(err)
	}
	defer m.Close()
	resp, err := http.Post(m.URL()+"/v1/models/fraud:predict", "application/json",
		strings.NewReader(`{"instances": [[2, 0, 0, 1], [-2, 1, 0, -1]]}`))
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.StatusCode, " ", string(b))
	// Output: 200 {"predictions":[1,0]}
}
