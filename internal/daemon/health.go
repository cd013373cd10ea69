package daemon

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/proxy"
)

// HealthLogInterval is how often the daemon compares its backends' health
// with the last look, logging each backend that went down or came back
// (once per change, not per request). A backend that went down and came
// back within one interval is not logged.
const HealthLogInterval = time.Second

// backendUp is modelgate_backend_up{endpoint,deployment,backend}: the
// proxy's health of every backend, read at each scrape.
var backendUpDesc = prometheus.NewDesc("modelgate_backend_up",
	"1 while the backend may take requests; 0 while passive health took it out (transport failures in a row) or its last active health check failed.",
	[]string{"endpoint", "deployment", "backend"}, nil)

type backendUp struct{ p *proxy.Server }

func (b backendUp) Describe(ch chan<- *prometheus.Desc) { ch <- backendUpDesc }

func (b backendUp) Collect(ch chan<- prometheus.Metric) {
	for ep, deps := range b.p.Health() {
		for dep, hs := range deps {
			seen := make(map[string]bool, len(hs))
			for _, h := range hs {
				if seen[h.URL] { // a URL listed twice in a deployment is one series
					continue
				}
				seen[h.URL] = true
				v := 0.0
				if h.Healthy {
					v = 1
				}
				ch <- prometheus.MustNewConstMetric(backendUpDesc, prometheus.GaugeValue, v, ep, dep, h.URL)
			}
		}
	}
}

// backendHealth answers the admin API's health route and the rollout
// controller's question from the proxy's health.
type backendHealth struct{ p *proxy.Server }

// EndpointHealth is deployment → its backends' health; ok is false when the
// data plane has no such endpoint.
func (b backendHealth) EndpointHealth(endpoint string) (map[string][]api.BackendHealth, bool) {
	deps, ok := b.p.Health()[endpoint]
	if !ok {
		return nil, false
	}
	out := make(map[string][]api.BackendHealth, len(deps))
	for dep, hs := range deps {
		l := make([]api.BackendHealth, len(hs))
		for i, h := range hs {
			l[i] = api.BackendHealth{URL: h.URL, Healthy: h.Healthy, Unchecked: h.Unchecked, LastError: h.LastError}
		}
		out[dep] = l
	}
	return out, true
}

// NoHealthyBackend says why none of the deployment's backends may take a
// request ("url (last error), ..."), or "" when one may or the deployment
// is not routed.
func (b backendHealth) NoHealthyBackend(endpoint, deployment string) string {
	return noHealthyBackend(b.p.Health()[endpoint][deployment])
}

// noHealthyBackend is NoHealthyBackend of one deployment's backends.
func noHealthyBackend(hs []proxy.BackendHealth) string {
	if len(hs) == 0 {
		return ""
	}
	var why []string
	for _, h := range hs {
		if h.Healthy {
			return ""
		}
		w := h.URL
		if h.LastError != "" {
			w += " (" + h.LastError + ")"
		}
		why = append(why, w)
	}
	return strings.Join(why, ", ")
}

// watchHealth logs each change of a backend's health, every
// HealthLogInterval, until ctx ends.
func (d *Daemon) watchHealth(ctx context.Context) {
	t := time.NewTicker(HealthLogInterval)
	defer t.Stop()
	last := map[string]bool{}
	for {
		last = logHealthChanges(d.log.With("component", "health"), d.proxy.Health(), last)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type slogger interface {
	Warn(msg string, args ...any)
	Info(msg string, args ...any)
}

// logHealthChanges logs the backends whose health differs from last (a
// backend first seen is logged only when it is down) and returns the new
// look.
func logHealthChanges(log slogger, now map[string]map[string][]proxy.BackendHealth, last map[string]bool) map[string]bool {
	next := make(map[string]bool, len(last))
	var keys []string
	byKey := map[string][3]string{}
	health := map[string]proxy.BackendHealth{}
	for ep, deps := range now {
		for dep, hs := range deps {
			for _, h := range hs {
				k := ep + "\x00" + dep + "\x00" + h.URL
				keys = append(keys, k)
				byKey[k] = [3]string{ep, dep, h.URL}
				health[k] = h
				next[k] = h.Healthy
			}
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		h, n := health[k], byKey[k]
		was, seen := last[k]
		switch {
		case !h.Healthy && (!seen || was):
			log.Warn("backend down: no request goes to it until it answers again", "endpoint", n[0], "deployment", n[1], "backend", n[2], "err", h.LastError)
		case h.Healthy && seen && !was:
			log.Info("backend up again", "endpoint", n[0], "deployment", n[1], "backend", n[2])
		}
	}
	return next
}

// ApplyHealthWait bounds how long an apply waits for the first verdict of
// the active health checks of the endpoints it applied, so that its answer
// can warn of a deployment with no healthy backend (a backend without an
// active check counts as healthy until requests to it fail).
const ApplyHealthWait = time.Second

// applyHealthPoll is how often that wait looks again.
const applyHealthPoll = 10 * time.Millisecond

// ApplyWarnings waits at most ApplyHealthWait for the endpoints' active
// checks to judge every backend, then names each deployment with no
// healthy backend, its backends and why.
func (b backendHealth) ApplyWarnings(ctx context.Context, endpoints []string) []string {
	b.waitChecked(ctx, endpoints)
	health := b.p.Health() // once: it lists every backend of every endpoint
	var out []string
	for _, ep := range endpoints {
		deps := health[ep]
		names := make([]string, 0, len(deps))
		for dep := range deps {
			names = append(names, dep)
		}
		sort.Strings(names)
		for _, dep := range names {
			if why := noHealthyBackend(deps[dep]); why != "" {
				out = append(out, "deployment "+dep+" of "+ep+" has no healthy backend: "+why+
					"; every request routed to it is answered 503 — fix its backends (modelgate health "+ep+" shows them)")
			}
		}
	}
	return out
}

// waitChecked returns when the active checks of the endpoints gave every
// backend a verdict, or after ApplyHealthWait, or when ctx ends.
func (b backendHealth) waitChecked(ctx context.Context, endpoints []string) {
	ctx, cancel := context.WithTimeout(ctx, ApplyHealthWait)
	defer cancel()
	t := time.NewTicker(applyHealthPoll)
	defer t.Stop()
	for b.unchecked(endpoints) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// unchecked reports whether a backend of the endpoints awaits its first
// active check.
func (b backendHealth) unchecked(endpoints []string) bool {
	h := b.p.Health()
	for _, ep := range endpoints {
		for _, hs := range h[ep] {
			for _, x := range hs {
				if x.Unchecked {
					return true
				}
			}
		}
	}
	return false
}
