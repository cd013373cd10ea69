package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestRecorderStable(t *testing.T) {
	reg := NewRegistry()
	a := reg.Recorder("fraud", "blue")
	if b := reg.Recorder("fraud", "blue"); a != b {
		t.Error("Recorder returned a different pointer for the same deployment")
	}
	if c := reg.Recorder("fraud", "green"); c == a {
		t.Error("Recorder returned the same pointer for another deployment")
	}
	reg.Remove("fraud", "blue")
	if b := reg.Recorder("fraud", "blue"); b == a {
		t.Error("Recorder after Remove returned the removed pointer")
	}
}

// metricKey names one sample of the exposition.
type sample struct {
	Value   float64
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

func gather(t *testing.T, reg *Registry) map[string]sample {
	t.Helper()
	pr := prometheus.NewPedanticRegistry()
	if err := pr.Register(reg.Collector()); err != nil {
		t.Fatalf("Register: %v", err)
	}
	mfs, err := pr.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := make(map[string]sample)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName() + labels(m)
			switch {
			case m.GetCounter() != nil:
				out[name] = sample{Value: m.GetCounter().GetValue()}
			case m.GetGauge() != nil:
				out[name] = sample{Value: m.GetGauge().GetValue()}
			case m.GetHistogram() != nil:
				h := m.GetHistogram()
				s := sample{Count: h.GetSampleCount(), Sum: h.GetSampleSum(), Buckets: map[float64]uint64{}}
				for _, b := range h.GetBucket() {
					s.Buckets[b.GetUpperBound()] = b.GetCumulativeCount()
				}
				out[name] = s
			}
		}
	}
	return out
}

func labels(m *dto.Metric) string {
	s := "{"
	for i, l := range m.GetLabel() {
		if i > 0 {
			s += ","
		}
		s += l.GetName() + "=" + l.GetValue()
	}
	return s + "}"
}

// cumulative builds the expected bucket map from counts per bound.
func cumulative(per map[float64]uint64) map[float64]uint64 {
	out := make(map[float64]uint64)
	var n uint64
	for _, b := range promBounds {
		le := float64(b) / 1e9
		n += per[le]
		out[le] = n
	}
	return out
}

func TestCollector(t *testing.T) {
	reg := NewRegistry()
	blue := reg.Recorder("fraud", "blue")
	now := time.Now().UnixNano()
	for _, o := range []Observation{
		{Status: 200, Latency: 5 * time.Millisecond, TTFB: time.Millisecond},             // le 0.005 exactly
		{Status: 200, Latency: 5*time.Millisecond + 1, TTFB: time.Millisecond},           // le 0.01
		{Status: 204, Latency: 100 * time.Millisecond, TTFB: 100 * time.Millisecond},     // le 0.1
		{Status: 404, Latency: 2 * time.Second, TTFB: 20 * time.Millisecond},             // le 2.5
		{Status: 503, Latency: 90 * time.Second, TTFB: 61 * time.Second, Override: true}, // +Inf
		{Status: 504, Latency: -time.Second, TTFB: 0, Override: true},                    // clamped to 0
	} {
		o.Now = now
		record(blue, o)
	}
	blue.Begin()
	green := reg.Recorder("fraud", "green")
	record(green, Observation{Now: now, Status: 200, Latency: 30 * time.Millisecond, TTFB: 30 * time.Millisecond})
	reg.Recorder("fraud", "red").Begin()
	reg.Remove("fraud", "red")

	const b, g = "{deployment=blue,endpoint=fraud}", "{deployment=green,endpoint=fraud}"
	want := map[string]sample{
		"modelgate_requests_total{code=2xx,deployment=blue,endpoint=fraud}":  {Value: 3},
		"modelgate_requests_total{code=4xx,deployment=blue,endpoint=fraud}":  {Value: 1},
		"modelgate_requests_total{code=5xx,deployment=blue,endpoint=fraud}":  {Value: 2},
		"modelgate_requests_total{code=2xx,deployment=green,endpoint=fraud}": {Value: 1},
		"modelgate_override_requests_total" + b:                              {Value: 2},
		"modelgate_override_requests_total" + g:                              {Value: 0},
		"modelgate_in_flight_requests" + b:                                   {Value: 1},
		"modelgate_in_flight_requests" + g:                                   {Value: 0},
		"modelgate_request_duration_seconds" + b: {
			Count:   6,
			Sum:     (5e6 + 5e6 + 1 + 100e6 + 2e9 + 90e9) / 1e9,
			Buckets: cumulative(map[float64]uint64{0.005: 2, 0.01: 1, 0.1: 1, 2.5: 1}),
		},
		"modelgate_time_to_first_byte_seconds" + b: {
			Count:   6,
			Sum:     (1e6 + 1e6 + 100e6 + 20e6 + 61e9) / 1e9,
			Buckets: cumulative(map[float64]uint64{0.005: 3, 0.1: 1, 0.025: 1}),
		},
		"modelgate_request_duration_seconds" + g: {
			Count: 1, Sum: 0.03, Buckets: cumulative(map[float64]uint64{0.05: 1}),
		},
		"modelgate_time_to_first_byte_seconds" + g: {
			Count: 1, Sum: 0.03, Buckets: cumulative(map[float64]uint64{0.05: 1}),
		},
	}
	if diff := cmp.Diff(want, gather(t, reg)); diff != "" {
		t.Errorf("exposition mismatch (-want +got):\n%s", diff)
	}

	reg.Remove("fraud", "blue")
	for name := range gather(t, reg) {
		if strings.Contains(name, "deployment=blue,") {
			t.Errorf("removed deployment still exposed: %s", name)
		}
	}
}
