// Package demo is what `modelgate demo` runs: three small model servers
// that speak KServe v1 (blue, the stable; green, a good canary; red, a bad
// one), a traffic generator, and the run that rolls each canary out
// through the gateway's rollout controller while a live view shows the
// rollout's stage and gates and what each deployment served.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"
)

// Features is the number of values in one instance the demo model accepts.
const Features = 4

// maxBody bounds a predict request body; the demo never sends more than a
// few hundred bytes.
const maxBody = 1 << 20

// ModelOptions configures a demo model server.
type ModelOptions struct {
	// Name is the model name in the KServe paths, /v1/models/{Name}.
	// Empty: "fraud".
	Name string
	// Version selects the model's weights: "v1", "v2" or "v3". Each is
	// its predecessor with slightly moved weights, so neighbours agree on
	// most instances but not all. Empty: "v1".
	Version string
	// Latency is the least time a prediction takes. Zero: answer at once.
	Latency time.Duration
	// Jitter is the most extra time on top of Latency, drawn uniformly per
	// request, so the mean is Latency + Jitter/2. Zero: no jitter.
	Jitter time.Duration
	// ErrorRate is the share (0..1) of predict requests answered with a
	// 500. Zero: none.
	ErrorRate float64
	// Seed makes the latency and error draws reproducible: the same seed
	// and the same sequence of requests give the same answers.
	Seed uint64
}

// Blue is the stable demo model: v1, about 8 ms, 1% errors.
func Blue() ModelOptions {
	return ModelOptions{Name: "fraud", Version: "v1", Latency: 7 * time.Millisecond, Jitter: 2 * time.Millisecond, ErrorRate: 0.01, Seed: 1}
}

// Green is the good candidate: v2, as fast and as reliable as Blue (about
// 8 ms, 1% errors); its answers agree with v1's on about 98% of instances.
func Green() ModelOptions {
	return ModelOptions{Name: "fraud", Version: "v2", Latency: 7 * time.Millisecond, Jitter: 2 * time.Millisecond, ErrorRate: 0.01, Seed: 2}
}

// Red is the bad candidate: v3, whose answers agree with v2's on about 99%
// of instances, but which is slow (about 17 ms, twice Blue's) and fails 8%
// of requests.
func Red() ModelOptions {
	return ModelOptions{Name: "fraud", Version: "v3", Latency: 15 * time.Millisecond, Jitter: 4 * time.Millisecond, ErrorRate: 0.08, Seed: 3}
}

// logistic is a fixed logistic regression: P(class 1) = sigmoid(w·x + b).
type logistic struct {
	w [Features]float64
	b float64
}

// versions are the demo model's weights. Each version moves the previous
// one's weights a little, so they disagree only near the decision boundary:
// on standard normal instances v1 and v2 agree on 97.7%, v2 and v3 on 98.9%.
var versions = map[string]logistic{
	"v1": {w: [Features]float64{1.2, -0.8, 0.5, 2.0}, b: -0.3},
	"v2": {w: [Features]float64{1.1, -0.9, 0.6, 2.1}, b: -0.25},
	"v3": {w: [Features]float64{1.15, -0.9, 0.55, 2.1}, b: -0.2},
}

// predict returns the class (0 or 1) of one instance.
func (m logistic) predict(x []float64) int {
	z := m.b
	for i, v := range x {
		z += m.w[i] * v
	}
	if 1/(1+math.Exp(-z)) >= 0.5 {
		return 1
	}
	return 0
}

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ModelStats counts what a model server answered.
type ModelStats struct {
	// Predictions is every predict request answered 200.
	Predictions uint64
	// Errors is every predict request answered 500 by the error rate.
	Errors uint64
	// BadRequests is every predict request rejected with a 4xx.
	BadRequests uint64
}

// Model is a running demo model server on 127.0.0.1.
type Model struct {
	opts  ModelOptions
	model logistic
	url   string
	srv   *http.Server
	stop  func() bool

	mu  sync.Mutex // guards rng
	rng *rand.Rand

	predictions, errors, badRequests atomic.Uint64

	closeOnce sync.Once
	closeErr  error
}

// StartModel starts a model server on 127.0.0.1 at a free port. It serves
// KServe v1:
//
//	POST /v1/models/{name}:predict  {"instances": [[f1, f2, f3, f4], ...]} → {"predictions": [0, 1, ...]}
//	GET  /v1/models/{name}          {"name": "...", "ready": true}
//	GET  /v2/health/ready           200 (for active health checks)
//
// A prediction is the class (0 or 1) from a fixed logistic regression over
// Features values. Malformed input is a 400 with {"error": "..."}; the
// injected failures are a 500 with {"error": "..."}. The server stops when
// ctx is done or Close is called, whichever is first.
func StartModel(ctx context.Context, opts ModelOptions) (*Model, error) {
	if opts.Name == "" {
		opts.Name = "fraud"
	}
	if opts.Version == "" {
		opts.Version = "v1"
	}
	model, ok := versions[opts.Version]
	switch {
	case !validName.MatchString(opts.Name):
		return nil, fmt.Errorf("start model: invalid name %q", opts.Name)
	case !ok:
		return nil, fmt.Errorf("start model %q: unknown version %q (want v1, v2 or v3)", opts.Name, opts.Version)
	case opts.ErrorRate < 0 || opts.ErrorRate > 1 || math.IsNaN(opts.ErrorRate):
		return nil, fmt.Errorf("start model %q: error rate %v is not within 0..1", opts.Name, opts.ErrorRate)
	case opts.Latency < 0 || opts.Jitter < 0:
		return nil, fmt.Errorf("start model %q: latency and jitter must not be negative", opts.Name)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start model %q: %w", opts.Name, err)
	}
	m := &Model{
		opts:  opts,
		model: model,
		url:   "http://" + ln.Addr().String(),
		rng:   rand.New(rand.NewPCG(opts.Seed, 0x6d6f64656c676174)),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/models/"+opts.Name+":predict", m.handlePredict)
	mux.HandleFunc("GET /v1/models/"+opts.Name, m.handleModel)
	mux.HandleFunc("GET /v2/health/ready", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]bool{"ready": true})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)})
	})
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.srv.Serve(ln) }() // returns http.ErrServerClosed after Close
	m.stop = context.AfterFunc(ctx, func() { _ = m.Close() })
	return m, nil
}

// URL is the server's base URL, e.g. http://127.0.0.1:40123.
func (m *Model) URL() string { return m.url }

// Stats returns what the server has answered so far.
func (m *Model) Stats() ModelStats {
	return ModelStats{
		Predictions: m.predictions.Load(),
		Errors:      m.errors.Load(),
		BadRequests: m.badRequests.Load(),
	}
}

// Close stops the server at once, ending requests in flight. It is safe to
// call more than once.
func (m *Model) Close() error {
	m.closeOnce.Do(func() {
		if m.stop != nil {
			m.stop()
		}
		m.closeErr = m.srv.Close()
	})
	return m.closeErr
}

type predictRequest struct {
	Instances [][]float64 `json:"instances"`
}

type predictResponse struct {
	Predictions []int `json:"predictions"`
}

type errorBody struct {
	Error string `json:"error"`
}

func (m *Model) handlePredict(w http.ResponseWriter, r *http.Request) {
	var req predictRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		m.badRequests.Add(1)
		status := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			status = http.StatusRequestEntityTooLarge
		}
		writeJSON(w, status, errorBody{Error: "invalid request body: " + err.Error()})
		return
	}
	if msg := checkInstances(req.Instances); msg != "" {
		m.badRequests.Add(1)
		writeJSON(w, http.StatusBadRequest, errorBody{Error: msg})
		return
	}

	delay, fail := m.draw()
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return // the client is gone; nobody reads an answer
		}
	}
	if fail {
		m.errors.Add(1)
		writeJSON(w, http.StatusInternalServerError, errorBody{Error: "injected failure (demo error rate)"})
		return
	}
	out := predictResponse{Predictions: make([]int, len(req.Instances))}
	for i, x := range req.Instances {
		out.Predictions[i] = m.model.predict(x)
	}
	m.predictions.Add(1)
	w.Header().Set("X-Model-Version", m.opts.Version)
	writeJSON(w, http.StatusOK, out)
}

// checkInstances returns what is wrong with the instances, or "".
func checkInstances(instances [][]float64) string {
	if len(instances) == 0 {
		return `"instances" must hold at least one instance`
	}
	for i, x := range instances {
		if len(x) != Features {
			return fmt.Sprintf("instances[%d] has %d values, want %d", i, len(x), Features)
		}
	}
	return ""
}

// draw picks one request's delay and whether it fails. Both come from one
// seeded generator, so a sequence of requests is reproducible.
func (m *Model) draw() (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delay := m.opts.Latency
	if m.opts.Jitter > 0 {
		delay += time.Duration(m.rng.Int64N(int64(m.opts.Jitter)))
	}
	return delay, m.rng.Float64() < m.opts.ErrorRate
}

func (m *Model) handleModel(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"name": m.opts.Name, "ready": true})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}
