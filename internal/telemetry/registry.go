package telemetry

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Registry owns the Recorders of all deployments. Recorder lookups take a
// lock, so the proxy resolves its Recorders when it compiles a routing
// table, not per request.
type Registry struct {
	mu        sync.RWMutex
	recorders map[key]*Recorder
}

type key struct{ endpoint, deployment string }

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{recorders: make(map[key]*Recorder)}
}

// Recorder returns the Recorder of the deployment, creating it on first
// use. Every call returns the same pointer until Remove, so measurements
// survive routing changes. A new Recorder is 400 bytes; its slices come
// with its first request (package doc, "Time slices and memory").
func (r *Registry) Recorder(endpoint, deployment string) *Recorder {
	k := key{endpoint, deployment}
	r.mu.RLock()
	rc, ok := r.recorders[k]
	r.mu.RUnlock()
	if ok {
		return rc
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rc, ok := r.recorders[k]; ok {
		return rc
	}
	rc = newRecorder()
	r.recorders[k] = rc
	return rc
}

// Lookup returns the deployment's Recorder if it has one, without
// creating it (for callers outside the proxy, whose names are not checked
// against the routing: recorders are cheap until written, but a name a
// client made up must not leave one behind).
func (r *Registry) Lookup(endpoint, deployment string) (*Recorder, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rc, ok := r.recorders[key{endpoint, deployment}]
	return rc, ok
}

// Remove forgets the deployment's Recorder: it leaves the Prometheus
// exposition, and a later Recorder call starts from zero. Holders of the
// old pointer may keep recording into it harmlessly.
func (r *Registry) Remove(endpoint, deployment string) {
	r.mu.Lock()
	delete(r.recorders, key{endpoint, deployment})
	r.mu.Unlock()
}

// Collector returns a prometheus.Collector exposing every Recorder's
// all-time counters, read from their atomics at scrape time:
//
//	modelgate_requests_total{endpoint,deployment,code}        code is "1xx".."5xx"
//	modelgate_override_requests_total{endpoint,deployment}
//	modelgate_request_duration_seconds{endpoint,deployment}   histogram
//	modelgate_time_to_first_byte_seconds{endpoint,deployment} histogram
//	modelgate_in_flight_requests{endpoint,deployment}         gauge
func (r *Registry) Collector() prometheus.Collector { return collector{r} }

var (
	depLabels     = []string{"endpoint", "deployment"}
	requestsDesc  = prometheus.NewDesc("modelgate_requests_total", "Live requests answered, by status class.", []string{"endpoint", "deployment", "code"}, nil)
	overridesDesc = prometheus.NewDesc("modelgate_override_requests_total", "Live requests routed by the X-Model-Deployment header instead of the split.", depLabels, nil)
	durationDesc  = prometheus.NewDesc("modelgate_request_duration_seconds", "Time until the last body byte of live requests.", depLabels, nil)
	ttfbDesc      = prometheus.NewDesc("modelgate_time_to_first_byte_seconds", "Time until the response headers of live requests.", depLabels, nil)
	inFlightDesc  = prometheus.NewDesc("modelgate_in_flight_requests", "Live requests in flight.", depLabels, nil)
)

// classLabel[c] is the code label of status class c.
var classLabel = [numClasses]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

type collector struct{ r *Registry }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- overridesDesc
	ch <- durationDesc
	ch <- ttfbDesc
	ch <- inFlightDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	type entry struct {
		key
		rc *Recorder
	}
	c.r.mu.RLock()
	entries := make([]entry, 0, len(c.r.recorders))
	for k, rc := range c.r.recorders {
		entries = append(entries, entry{k, rc})
	}
	c.r.mu.RUnlock()

	for _, e := range entries {
		ep, dep, rc := e.endpoint, e.deployment, e.rc
		for class := 1; class < numClasses; class++ {
			// Like a CounterVec, a class appears once it has been seen.
			if n := rc.classes[class].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(n), ep, dep, classLabel[class])
			}
		}
		ch <- prometheus.MustNewConstMetric(overridesDesc, prometheus.CounterValue, float64(rc.overrides.Load()), ep, dep)
		ch <- histogram(durationDesc, &rc.latBuckets, &rc.latSum, ep, dep)
		ch <- histogram(ttfbDesc, &rc.ttfbBucket, &rc.ttfbSum, ep, dep)
		ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(rc.inFlight.Load()), ep, dep)
	}
}

// histogram builds a constant histogram from non-cumulative bucket counts.
// The count is the sum of the buckets read, so a scrape racing with
// Observe is still self-consistent.
func histogram(d *prometheus.Desc, b *[len(promBounds) + 1]atomic.Uint64, sum *atomic.Uint64, ep, dep string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(promBounds))
	var count uint64
	for i, bound := range promBounds {
		count += b[i].Load()
		buckets[float64(bound)/1e9] = count
	}
	count += b[len(promBounds)].Load()
	return prometheus.MustNewConstHistogram(d, count, float64(sum.Load())/1e9, buckets, ep, dep)
}
