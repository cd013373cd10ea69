package rollout

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/store"
)

// collectTimeout bounds the store reads of one scrape (ended rollouts).
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

// Collector returns a prometheus.Collector that exposes, at scrape time,
// each endpoint's current rollout: its phase, stage, canary weight, bake
// time served, and the verdict of every gate. After a rollout ends, the
// endpoint's last rollout stays exposed (with its final phase and weight)
// until another starts, so that a rollback can be seen and alerted on;
// rollouts that ended before the daemon started are not exposed.
func (c *Controller) Collector() prometheus.Collector {
	return &collector{c: c, seen: map[string]bool{}}
}

// collector is the Controller's prometheus.Collector.
type collector struct {
	c *Controller

	mu sync.Mutex
	// seen holds the endpoints whose rollout was active at some scrape;
	// once it has ended, its last record is read from the store.
	seen map[string]bool
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
	for _, d := range []*prometheus.Desc{phaseDesc, stageDesc, weightDesc, verdictDesc, bakedDesc} {
		ch <- d
	}
}

// Collect sends the metrics of every active rollout, and of the last
// rollout of each endpoint seen active before.
func (m *collector) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	defer m.mu.Unlock() // one scrape at a time: seen is updated as we go
	views := m.c.activeViews()
	active := make(map[string]bool, len(views))
	for _, v := range views {
		active[v.endpoint] = true
		m.seen[v.endpoint] = true
	}
	var ended []string
	for ep := range m.seen {
		if !active[ep] {
			ended = append(ended, ep)
		}
	}
	sort.Strings(ended)
	if len(ended) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), collectTimeout)
		defer cancel()
		for _, ep := range ended {
			r, err := m.c.Current(ctx, ep)
			switch {
			case errors.Is(err, store.ErrNotFound):
				delete(m.seen, ep) // the endpoint (or its rollouts) is gone
			case err != nil:
				m.c.log.Warn("rollout metrics: read the last rollout", "endpoint", ep, "err", err)
			default:
				views = append(views, viewOf(r))
			}
		}
	}
	for _, v := range views {
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
