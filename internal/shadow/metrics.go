package shadow

import (
	"github.com/prometheus/client_golang/prometheus"
)

var (
	shadowLabels = []string{"endpoint", "deployment"}
	requestsDesc = prometheus.NewDesc("modelgate_shadow_requests_total",
		"Shadow copies by what happened to them: mirrored (submitted), then exactly one of dropped, skipped, matched, mismatched, not_compared, error, timeout.",
		[]string{"endpoint", "deployment", "result"}, nil)
	durationDesc = prometheus.NewDesc("modelgate_shadow_duration_seconds",
		"Time from sending a shadow copy to the last byte of its answer (answered copies only).", shadowLabels, nil)
	queueDesc = prometheus.NewDesc("modelgate_shadow_queue_length",
		"Shadow copies waiting in the queue.", shadowLabels, nil)
	orphansDesc = prometheus.NewDesc("modelgate_shadow_orphaned_total",
		"Shadow copies submitted for a shadow that is not configured (dropped).", nil, nil)
)

// Collector returns the Prometheus collector of the shadow series:
//
//	modelgate_shadow_requests_total{endpoint,deployment,result}  result: mirrored, dropped, skipped,
//	                                                             matched, mismatched, not_compared, error, timeout
//	modelgate_shadow_duration_seconds{endpoint,deployment}       histogram
//	modelgate_shadow_queue_length{endpoint,deployment}           gauge, configured shadows only
//	modelgate_shadow_orphaned_total                              copies for no configured shadow
//
// Shadows removed within the last hour keep their series.
func (m *Manager) Collector() prometheus.Collector { return collector{m} }

type collector struct{ m *Manager }

// Describe sends the descriptors of every shadow series.
func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- requestsDesc
	ch <- durationDesc
	ch <- queueDesc
	ch <- orphansDesc
}

// Collect sends the current values of every shadow series.
func (c collector) Collect(ch chan<- prometheus.Metric) {
	t := c.m.table.Load()
	for k, sh := range t.active {
		collectStats(ch, k, sh.st)
		ch <- prometheus.MustNewConstMetric(queueDesc, prometheus.GaugeValue, float64(len(sh.pool.Load().queue)), k.endpoint, k.deployment)
	}
	for k, st := range t.retained {
		collectStats(ch, k, st)
	}
	ch <- prometheus.MustNewConstMetric(orphansDesc, prometheus.CounterValue, float64(c.m.orphans.Load()))
}

func collectStats(ch chan<- prometheus.Metric, k key, st *stats) {
	for kd, label := range kindLabel {
		if label != "" {
			ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(st.total[kd].Load()), k.endpoint, k.deployment, label)
		}
	}
	// The count is the sum of the buckets read, so a scrape racing with a
	// worker is still self-consistent.
	buckets := make(map[float64]uint64, len(promBounds))
	var count uint64
	for i, bound := range promBounds {
		count += st.durBuckets[i].Load()
		buckets[float64(bound)/1e9] = count
	}
	count += st.durBuckets[len(promBounds)].Load()
	ch <- prometheus.MustNewConstHistogram(durationDesc, count, float64(st.durSum.Load())/1e9, buckets, k.endpoint, k.deployment)
}
