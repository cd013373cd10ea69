package rollout

import (
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/spec"
)

// collectTimeout bounds the store reads of one scrape (the stored rollouts).
const collectTimeout = 5 * time.Second

var (
	rolloutLabels = []string{"endpoint", "rollout"}

	phaseDesc = prometheus.NewDesc("modelgate_rollout_phase",
		"Phase of the endpoint's current (or last) rollout: 1 for the phase it is in, 0 for the others.",
		[]string{"endpoint", "rollout", "phase"}, nil)
	stageDesc = prometheus.NewDesc("modelgate_rollout_stage",
		"Index of the rollout's current stage in its plan, from 0; -1 in the shadow phase.",
		rolloutLabels, nil)
	weightDesc = prometheus.NewDesc("modelgate_rollout_canary_weight_percent",
		"Percent of live traffic the rollout gives the canary.",
		rolloutLabels, nil)
	verdictDesc = prometheus.NewDesc("modelgate_rollout_gate_verdict",
		"Latest verdict of each gate of the rollout's current stage: 1 for the verdict it has, 0 for the others.",
		[]string{"endpoint", "rollout", "gate", "verdict"}, nil)
	bakedDesc = prometheus.NewDesc("modelgate_rollout_stage_baked_seconds",
		"Time served in the current stage while progressing (pauses and downtime do not count).",
		rolloutLabels, nil)
)

// phases are the values of modelgate_rollout_phase's phase label, in the
// order a rollout meets them.
var phases = []Phase{PhaseShadow, PhaseProgressing, PhasePaused, PhaseSucceeded, PhaseRolledBack, PhaseAborted, PhaseUndone}

var verdicts = []analysis.Verdict{analysis.Pass, analysis.Fail, analysis.Inconclusive}

// results are the values of modelgate_rollouts_total's result label: how
// a rollout ended. A rollout undone after it succeeded counts in both.
var results = []Phase{PhaseSucceeded, PhaseRolledBack, PhaseAborted, PhaseUndone}

var totalDesc = prometheus.NewDesc("modelgate_rollouts_total",
	"Rollouts of the endpoint that ended, by result (succeeded, rolled_back, aborted, undone), counted from the stored rollouts: the same on every gateway sharing the state; an undone rollout also counts as succeeded.",
	[]string{"endpoint", "result"}, nil)

// Collector returns a prometheus.Collector that exposes, at scrape time,
// each endpoint's rollouts ended by result (modelgate_rollouts_total), and
// its current or last rollout: its phase, stage, canary weight, bake time
// served, and the verdict of every gate. Both are read from the store
// (the rollouts this controller drives from memory, fresher), so a
// rollout that started and ended between two scrapes is counted and shown,
// rollouts ended before the daemon started are too, and every gateway of
// a fleet exposes the same.
func (c *Controller) Collector() prometheus.Collector {
	return &collector{c: c, cache: map[string]storedView{}}
}

// collector is the Controller's prometheus.Collector.
type collector struct {
	c *Controller

	mu sync.Mutex
	// cache holds what each stored rollout exposes, by key, with the
	// revision it was decoded at: a scrape decodes only the records
	// written since the last one. Its size is the number of stored
	// rollouts (keys gone from the store are dropped).
	cache map[string]storedView
}

type storedView struct {
	rev  uint64
	view metricsView
}

// storedRollout is the part of a stored rollout the metrics read.
type storedRollout struct {
	ID       string        `json:"id"`
	Endpoint string        `json:"endpoint"`
	Phase    Phase         `json:"phase"`
	Stage    int           `json:"stage"`
	Weight   spec.Percent  `json:"weight"`
	Baked    spec.Duration `json:"baked"`
	Gates    []struct {
		Gate    string           `json:"gate"`
		Verdict analysis.Verdict `json:"verdict"`
	} `json:"gates"`
}

// metricsView is what one rollout exposes, copied under the controller's lock.
type metricsView struct {
	endpoint, id string
	phase        Phase
	stage        int
	weight       float64
	baked        time.Duration
	gates        []gateVerdict
}

type gateVerdict struct {
	gate    string
	verdict analysis.Verdict
}

func viewOf(r Rollout) metricsView {
	v := metricsView{endpoint: r.Endpoint, id: r.ID, phase: r.Phase, stage: r.Stage, weight: r.Weight.Float(), baked: r.Baked.D(),
		gates: make([]gateVerdict, len(r.Gates))}
	for i, g := range r.Gates {
		v.gates[i] = gateVerdict{gate: g.Gate, verdict: g.Verdict}
	}
	return v
}

func (s storedRollout) view() metricsView {
	v := metricsView{endpoint: s.Endpoint, id: s.ID, phase: s.Phase, stage: s.Stage, weight: s.Weight.Float(), baked: s.Baked.D(),
		gates: make([]gateVerdict, len(s.Gates))}
	for i, g := range s.Gates {
		v.gates[i] = gateVerdict{gate: g.Gate, verdict: g.Verdict}
	}
	return v
}

// activeViews copies the active rollouts under the controller's lock.
func (c *Controller) activeViews() []metricsView {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]metricsView, 0, len(c.runs))
	for _, ru := range c.runs {
		out = append(out, viewOf(ru.r))
	}
	return out
}

// Describe sends every descriptor.
func (m *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{totalDesc, phaseDesc, stageDesc, weightDesc, verdictDesc, bakedDesc} {
		ch <- d
	}
}

// endpointLister is the part of the control service that lists endpoints
// (every endpoint gets its counts, 0 before its first rollout ends).
type endpointLister interface {
	Endpoints(ctx context.Context) ([]spec.Endpoint, error)
}

// Collect sends every endpoint's counts and the metrics of its current or
// last rollout.
func (m *collector) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock() // one scrape at a time: the cache is updated as we go
	ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
	defer cancel()
	active := map[string]metricsView{}
	for _, v := range m.c.activeViews() {
		active[v.endpoint] = v
	}
	counts := map[string]map[Phase]int{}
	if l, ok := m.c.opts.Endpoints.(endpointLister); ok {
		eps, err := l.Endpoints(ctx)
		if err != nil {
			m.c.log.Warn("rollout metrics: list the endpoints", "err", err)
		}
		for _, ep := range eps {
			counts[ep.Name] = map[Phase]int{}
		}
	}
	last := map[string]metricsView{}
	kvs, err := m.c.opts.Store.List(ctx, keyPrefix)
	if err != nil {
		// The counts would go down: send none this scrape (Prometheus
		// sees the series missing, not reset) and the active rollouts.
		m.c.log.Warn("rollout metrics: read the stored rollouts", "err", err)
		for _, v := range active {
			v.collect(ch)
		}
		return
	}
	seen := make(map[string]bool, len(kvs))
	for _, kv := range kvs { // in key order: an endpoint's newest last
		seen[kv.Key] = true
		sv, ok := m.cache[kv.Key]
		if !ok || sv.rev != kv.ModRevision {
			var r storedRollout
			if err := json.Unmarshal(kv.Value, &r); err != nil {
				m.c.log.Warn("rollout metrics: a stored rollout cannot be read", "key", kv.Key, "err", err)
				continue
			}
			sv = storedView{rev: kv.ModRevision, view: r.view()}
			m.cache[kv.Key] = sv
		}
		v := sv.view
		if counts[v.endpoint] == nil {
			if _, err := m.c.opts.Endpoints.Endpoint(ctx, v.endpoint); err != nil {
				continue // the endpoint is gone (its rollouts stay in the store)
			}
			counts[v.endpoint] = map[Phase]int{}
		}
		switch v.phase {
		case PhaseUndone:
			counts[v.endpoint][PhaseSucceeded]++
			counts[v.endpoint][PhaseUndone]++
		case PhaseSucceeded, PhaseRolledBack, PhaseAborted:
			counts[v.endpoint][v.phase]++
		}
		last[v.endpoint] = v
	}
	for k := range m.cache {
		if !seen[k] {
			delete(m.cache, k)
		}
	}
	for ep, v := range active {
		last[ep] = v
	}
	eps := make([]string, 0, len(counts))
	for ep := range counts {
		eps = append(eps, ep)
	}
	sort.Strings(eps)
	for _, ep := range eps {
		for _, res := range results {
			ch <- prometheus.MustNewConstMetric(totalDesc, prometheus.CounterValue, float64(counts[ep][res]), ep, string(res))
		}
	}
	for _, v := range last {
		v.collect(ch)
	}
}

func (v metricsView) collect(ch chan<- prometheus.Metric) {
	known := false
	for _, p := range phases {
		known = known || p == v.phase
		ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, one(p == v.phase), v.endpoint, v.id, string(p))
	}
	if !known { // a phase added later still shows, until phases learns it
		ch <- prometheus.MustNewConstMetric(phaseDesc, prometheus.GaugeValue, 1, v.endpoint, v.id, string(v.phase))
	}
	ch <- prometheus.MustNewConstMetric(stageDesc, prometheus.GaugeValue, float64(v.stage), v.endpoint, v.id)
	ch <- prometheus.MustNewConstMetric(weightDesc, prometheus.GaugeValue, v.weight, v.endpoint, v.id)
	ch <- prometheus.MustNewConstMetric(bakedDesc, prometheus.GaugeValue, v.baked.Seconds(), v.endpoint, v.id)
	// Two gates of one type and quantile (say, a latency p99 maximum and a
	// latency p99 increase written as two gates) share a name; a series
	// must be unique, so later ones get "#2", "#3".
	count := map[string]int{}
	for _, g := range v.gates {
		count[g.gate]++
		name := g.gate
		if n := count[g.gate]; n > 1 {
			name += " #" + strconv.Itoa(n)
		}
		for _, vd := range verdicts {
			ch <- prometheus.MustNewConstMetric(verdictDesc, prometheus.GaugeValue, one(vd == g.verdict), v.endpoint, v.id, name, string(vd))
		}
	}
}

func one(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
