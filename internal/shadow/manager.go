package shadow

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/shadow/compare"
	"github.com/modelgate/modelgate/internal/shadow/mirrored"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// Options configures a Manager.
type Options struct {
	// Logger receives the Manager's log lines (shadows started and
	// stopped). Nil: slog.Default().
	Logger *slog.Logger
	// Now is the clock that places counts in time slices and answers
	// windows. Latencies are always measured on the monotonic clock. Nil:
	// time.Now.
	Now func() time.Time
}

// Manager owns the shadow deployments: per (endpoint, deployment) with a
// mirror above zero, a bounded queue of copies, its workers, and its
// statistics. Submit is safe to call from any goroutine and never blocks;
// SetShadows, Report, Counts and the collector are safe to call
// concurrently with it and with each other.
type Manager struct {
	log    *slog.Logger
	now    func() time.Time
	copies sync.Pool

	// table is the snapshot Submit and the readers use; it is replaced,
	// never changed, under mu.
	table atomic.Pointer[table]
	// orphans counts copies submitted for a shadow that is not configured
	// and has no statistics kept.
	orphans atomic.Uint64

	mu     sync.Mutex // serialises SetShadows and Close
	closed bool
}

// key names a shadow.
type key struct{ endpoint, deployment string }

// table is an immutable snapshot of the shadows.
type table struct {
	active map[key]*shadow
	// retained holds the statistics of removed shadows for a while, so
	// that their last copies still show in report windows.
	retained map[key]*stats
}

// shadow is one configured shadow deployment.
type shadow struct {
	st   *stats
	pool atomic.Pointer[pool]
}

// maxPooledBody is the largest buffer a returned Copy may keep.
const maxPooledBody = 2 << 20

// NewManager returns a Manager with no shadows; configure them with
// SetShadows.
func NewManager(opts Options) *Manager {
	m := &Manager{log: opts.Logger, now: opts.Now}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.now == nil {
		m.now = time.Now
	}
	m.copies.New = func() any { return new(mirrored.Copy) }
	m.table.Store(&table{active: map[key]*shadow{}, retained: map[key]*stats{}})
	return m
}

// Get returns an empty Copy from the pool for the data plane to fill. Give
// it back with Submit or, if it is not to be sent after all, with Put.
func (m *Manager) Get() *mirrored.Copy { return m.copies.Get().(*mirrored.Copy) }

// Put returns c to the pool; c must not be used afterwards. The Manager
// calls it for every submitted copy once done with it.
func (m *Manager) Put(c *mirrored.Copy) {
	if cap(c.Body) > maxPooledBody || cap(c.Live.Body) > maxPooledBody {
		return // do not keep the memory of unusually large copies around
	}
	c.Reset()
	m.copies.Put(c)
}

// Submit hands c to the shadow (c.Endpoint, c.Deployment) and never
// blocks: it counts c as mirrored and enqueues it, or counts it as dropped
// and returns false when the shadow's queue is full or the shadow is
// unknown or stopped. A copy whose body was truncated at the capture cap
// is counted as skipped and not sent (Submit returns true: it was taken
// care of). Ownership of c passes to the Manager either way.
func (m *Manager) Submit(c *mirrored.Copy) bool {
	t := m.table.Load()
	k := key{c.Endpoint, c.Deployment}
	sh := t.active[k]
	if sh == nil {
		if st := t.retained[k]; st != nil {
			st.count(m.now(), kindMirrored, kindDropped)
		} else {
			m.orphans.Add(1)
		}
		m.Put(c)
		return false
	}
	now := m.now()
	if c.BodyTruncated {
		sh.st.count(now, kindMirrored, kindSkipped)
		m.Put(c)
		return true
	}
	if !sh.pool.Load().offer(c) {
		sh.st.count(now, kindMirrored, kindDropped)
		m.Put(c)
		return false
	}
	// Counted after the send: the copy may already be done, but both
	// counts land in their own slices either way.
	sh.st.count(now, kindMirrored)
	return true
}

// setTLS gives cfg the tls.Config of each https backend address. Files
// that could not be read (they changed since control read them) keep the
// TLS read before, or fail every copy's connection with the reason; they
// never fail SetShadows, which would hold up the routes.
func (m *Manager) setTLS(cfg, prev *config) {
	if cfg.tlsSrc == nil && cfg.tlsErr == nil {
		return
	}
	if cfg.tlsErr != nil {
		if prev != nil && prev.tlsSrc != nil {
			m.log.Error("deployment tls files unusable: shadow copies keep the TLS read before", "endpoint", cfg.endpoint, "deployment", cfg.deployment, "err", cfg.tlsErr.Error())
			cfg.tlsSrc, cfg.tls = prev.tlsSrc, prev.tls
			return
		}
		m.log.Error("deployment tls files unusable: shadow copies to its https backends fail until they are fixed and applied again", "endpoint", cfg.endpoint, "deployment", cfg.deployment, "err", cfg.tlsErr.Error())
		cfg.tlsSrc = tlsconf.Unusable(cfg.tlsErr)
	}
	if prev != nil && prev.tlsSrc != nil && cfg.tlsSrc.Same(prev.tlsSrc) {
		cfg.tlsSrc, cfg.tls = prev.tlsSrc, prev.tls
		return
	}
	cfg.tls = map[string]*tls.Config{}
	for _, b := range cfg.backends {
		u, err := url.Parse(b)
		if err != nil || u.Scheme != "https" {
			continue
		}
		cfg.tls[fasthttp.AddMissingPort(u.Host, true)] = cfg.tlsSrc.For(u.Hostname())
	}
}

// SetShadows makes the shadows those of eps: one per (endpoint,
// deployment) whose mirror is above zero, with the deployment's backends
// (round-robin) and the endpoint's comparison settings (compare.New of
// ep.Compare; queue, workers, shadow timeout and capture cap from
// ep.Compare.WithDefaults()). It is called with every endpoint after each
// committed change.
//
// Everything is validated first; on any problem SetShadows returns every
// one (spec.Problem field paths like "endpoints[0].compare.rtol") and
// changes nothing. A shadow that remains keeps its statistics; when its
// queue size or worker count changes its queue and workers are replaced
// (the copies waiting or in flight are counted as dropped), otherwise the
// new settings apply to the next copy. A removed shadow's workers are
// stopped before SetShadows returns; its statistics stay readable for an
// hour and are picked up again if it comes back.
func (m *Manager) SetShadows(eps []spec.Endpoint) error {
	want, err := configs(eps)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("set shadows: manager closed")
	}
	now := m.now()
	old := m.table.Load()
	next := &table{active: make(map[key]*shadow, len(want)), retained: maps.Clone(old.retained)}
	var stop []*pool
	for _, cfg := range want {
		k := key{cfg.endpoint, cfg.deployment}
		sh := old.active[k]
		var prev *config
		if sh != nil {
			prev = sh.pool.Load().cfg.Load()
		}
		m.setTLS(cfg, prev)
		if sh == nil {
			st := next.retained[k]
			if st == nil {
				st = new(stats)
			}
			delete(next.retained, k)
			sh = &shadow{st: st}
			sh.pool.Store(m.startPool(st, cfg))
			m.log.Info("shadow started", "endpoint", k.endpoint, "deployment", k.deployment,
				"backends", cfg.backends, "queue", cfg.queue, "workers", cfg.workers, "timeout", cfg.timeout)
		} else if p := sh.pool.Load(); p.cfg.Load().queue == cfg.queue && p.cfg.Load().workers == cfg.workers {
			p.cfg.Store(cfg)
		} else {
			sh.pool.Store(m.startPool(sh.st, cfg))
			stop = append(stop, p)
		}
		next.active[k] = sh
	}
	for k, sh := range old.active {
		if next.active[k] != nil {
			continue
		}
		stop = append(stop, sh.pool.Load())
		sh.st.removedAt = now
		next.retained[k] = sh.st
		m.log.Info("shadow stopped", "endpoint", k.endpoint, "deployment", k.deployment)
	}
	for k, st := range next.retained {
		if now.Sub(st.removedAt) > retention {
			delete(next.retained, k)
		}
	}
	m.table.Store(next)
	// Submit no longer finds the old pools; stop them.
	for _, p := range stop {
		p.stop()
	}
	return nil
}

// configs validates eps and builds the config of every shadow they
// declare, in a stable order.
func configs(eps []spec.Endpoint) ([]*config, error) {
	var errs []error
	var out []*config
	seen := map[string]int{}
	for i, ep := range eps {
		at := fmt.Sprintf("endpoints[%d]", i)
		if j, dup := seen[ep.Name]; dup {
			errs = append(errs, spec.Problemf(at+".name", "duplicate endpoint %q (also endpoints[%d])", ep.Name, j))
			continue
		}
		seen[ep.Name] = i
		names := slices.DeleteFunc(slices.Sorted(maps.Keys(ep.Mirror)), func(n string) bool { return ep.Mirror[n] <= 0 })
		if len(names) == 0 {
			continue
		}
		var settings spec.Compare
		if ep.Compare != nil {
			settings = *ep.Compare
		}
		cmp, err := compare.New(settings)
		if err != nil {
			errs = append(errs, spec.Prefix(at+".compare", err))
		}
		settings = settings.WithDefaults()
		for _, name := range names {
			j := slices.IndexFunc(ep.Deployments, func(d spec.Deployment) bool { return d.Name == name })
			if j < 0 {
				errs = append(errs, spec.Problemf(at+".mirror."+name, "unknown deployment"))
				continue
			}
			d := ep.Deployments[j]
			if err := d.Validate(); err != nil {
				errs = append(errs, spec.Prefix(fmt.Sprintf("%s.deployments[%d]", at, j), err))
				continue
			}
			cfg := &config{
				endpoint:   ep.Name,
				deployment: name,
				cmp:        cmp,
				timeout:    settings.ShadowTimeout.D(),
				maxBody:    settings.MaxBodyBytes,
				queue:      settings.Queue,
				workers:    settings.Workers,

				sampleRequests: *settings.SampleRequests,
			}
			for _, b := range d.Backends {
				cfg.backends = append(cfg.backends, strings.TrimRight(b, "/"))
			}
			cfg.tlsField = fmt.Sprintf("%s.deployments[%d].tls", at, j)
			if slices.ContainsFunc(d.Backends, func(b string) bool { return strings.HasPrefix(b, "https:") }) {
				// The same settings and files as the live requests' (proxy).
				cfg.tlsSrc, cfg.tlsErr = tlsconf.NewBackend(cfg.tlsField, d.TLS, nil)
			}
			out = append(out, cfg)
		}
	}
	if len(errs) > 0 {
		// Joined as they are, so that spec.Problems lists each one.
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// Close stops every shadow's workers, aborting the requests in flight, and
// waits for them. Copies submitted afterwards are dropped; reports and
// counts stay readable.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	for _, sh := range m.table.Load().active {
		sh.pool.Load().stop()
	}
}

// Counts are a shadow's comparison counts over a window.
type Counts struct {
	// Compared counts the copies whose answers were compared with the live
	// ones (an error answer compared with a success is a mismatch).
	Compared uint64
	// Matched counts the compared copies whose answers agreed; <= Compared.
	Matched uint64
	// Errors counts the copies that failed without an answer to compare
	// (timeout, transport error).
	Errors uint64
}

// Counts returns the comparison counts of the shadow (endpoint,
// deployment) over the 1-second slices whose start lies in (since, now],
// the edge rule of telemetry's Slices (from 10 minutes back, slices are 10
// seconds long). Timeouts count as errors. An unknown shadow has zero
// counts.
func (m *Manager) Counts(endpoint, deployment string, since time.Time) Counts {
	st := m.stats(key{endpoint, deployment})
	if st == nil {
		return Counts{}
	}
	t := st.window(since.UnixNano(), m.now().UnixNano(), false)
	return Counts{
		Compared: t.n[kindMatched] + t.n[kindMismatched],
		Matched:  t.n[kindMatched],
		Errors:   t.n[kindError] + t.n[kindTimeout],
	}
}

// stats returns the statistics of a configured or retained shadow.
func (m *Manager) stats(k key) *stats {
	t := m.table.Load()
	if sh := t.active[k]; sh != nil {
		return sh.st
	}
	return t.retained[k]
}
