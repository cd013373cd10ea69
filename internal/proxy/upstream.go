package proxy

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

const (
	// maxDialTimeout caps one connection attempt, so that a blackholed
	// backend leaves part of the deployment timeout for the retry on
	// another backend.
	maxDialTimeout = 3 * time.Second
	// maxConnsPerBackend bounds the connections to one backend; a request
	// finding them all busy waits for one within its own timeout.
	maxConnsPerBackend = 2048
	bufferSize         = 16 << 10
)

// backend is one replica of a deployment: its connection pool and health.
// A backend object survives SetRoutes while its deployment keeps its URL,
// so connections and health state carry over.
type backend struct {
	url      string
	hostname string // the URL's host without port: the default server name
	// tlsFrom is the deployment TLS the connections' config was built
	// from (https backends).
	tlsFrom atomic.Pointer[tlsconf.Backend]
	scheme  []byte // "http" or "https"
	host    []byte // Host header sent upstream, host[:port] as configured
	prefix  []byte // URL path without its trailing slash, put before the forwarded path
	conns   *connPool
	probe   *fasthttp.HostClient // active health checks, apart from live connections

	// fails counts consecutive transport failures (passive health).
	fails atomic.Int32
	// downUntil is when a backend taken out by passive health may be tried
	// again, in unix nanoseconds; 0 when it was never taken out.
	downUntil atomic.Int64
	// probeDown is the verdict of the last active health check.
	probeDown atomic.Bool
	// probed is set once an active health check has given a verdict
	// (health reporting only: BackendHealth.Unchecked).
	probed  atomic.Bool
	lastErr atomic.Pointer[string]
}

// dialFunc opens a raw connection to a backend address (host:port).
type dialFunc func(addr string, timeout time.Duration) (net.Conn, error)

func tcpDial(addr string, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", addr, timeout)
}

func newBackend(raw string, dial dialFunc, set *connSet) (*backend, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("backend %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("backend %q: want an http or https URL with a host", raw)
	}
	useTLS := u.Scheme == "https"
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if useTLS {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	prefix := u.EscapedPath()
	for len(prefix) > 0 && prefix[len(prefix)-1] == '/' {
		prefix = prefix[:len(prefix)-1]
	}
	b := &backend{
		url:      raw,
		hostname: u.Hostname(),
		scheme:   []byte(u.Scheme),
		host:     []byte(u.Host),
		prefix:   []byte(prefix),
	}
	b.conns = newConnPool(addr, useTLS, dial, set)
	// Health checks connect as live requests do (the same dialer and TLS
	// config, tlsconf.Dialer), on connections of their own; fasthttp does
	// no TLS of its own on a connection that is TLS already.
	b.probe = &fasthttp.HostClient{
		Addr:                      addr,
		IsTLS:                     useTLS,
		NoDefaultUserAgentHeader:  true,
		Name:                      "modelgate-health-check",
		MaxResponseBodySize:       64 << 10,
		MaxIdemponentCallAttempts: 1,
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			return tlsconf.Dialer{Raw: dial}.Dial(addr, b.conns.tlsConfig(), maxDialTimeout, time.Now().Add(timeout))
		},
	}
	return b, nil
}

// setTLS gives the backend the deployment's TLS for its next connections
// (connections open keep theirs); nothing for a plain backend.
func (b *backend) setTLS(tb *tlsconf.Backend) {
	if !b.conns.secure || b.tlsFrom.Load() == tb || tb.Same(b.tlsFrom.Load()) {
		return
	}
	b.tlsFrom.Store(tb)
	b.conns.tls.Store(tb.For(b.hostname))
}

// healthy reports whether the backend may take a request at now (unix ns).
func (b *backend) healthy(now int64) bool {
	return !b.probeDown.Load() && now >= b.downUntil.Load()
}

func (b *backend) setLastError(msg string) { b.lastErr.Store(&msg) }

func (b *backend) lastError() string {
	if p := b.lastErr.Load(); p != nil {
		return *p
	}
	return ""
}

// pool is a deployment's set of backends with round-robin balancing and
// health. It is shared by consecutive routing tables while the
// deployment's backend and health settings do not change.
type pool struct {
	key      string
	dep      spec.Deployment // as compiled, for the reuse comparison
	backends []*backend
	next     atomic.Uint32

	maxFails    int32
	failTimeout int64 // ns
	// anyTLS: a backend is https. The event loops leave such a
	// deployment's requests to the goroutine path, so that a retry from an
	// http backend to an https one happens there as it would for any other.
	anyTLS bool
	// tls is the deployment's TLS its https backends connect with, as
	// last read (SetRoutes); nil without https backends.
	tls *tlsconf.Backend

	stopOnce sync.Once
	stop     chan struct{}
	done     sync.WaitGroup
}

func newPool(key string, d spec.Deployment, reuse map[string]*backend, dial dialFunc, set *connSet) (*pool, error) {
	p := &pool{
		key:         key,
		dep:         d,
		maxFails:    int32(max(d.MaxFails, 1)),
		failTimeout: int64(d.FailTimeout.D()),
		stop:        make(chan struct{}),
	}
	for _, raw := range d.Backends {
		b := reuse[raw]
		if b == nil {
			var err error
			if b, err = newBackend(raw, dial, set); err != nil {
				return nil, err
			}
		}
		p.backends = append(p.backends, b)
		p.anyTLS = p.anyTLS || b.conns.secure
	}
	return p, nil
}

// loopable reports whether the event loops serve the deployment's
// requests themselves: they speak plain HTTP to backends, so a deployment
// with an https backend is served, retries included, by the goroutine
// path. The one rule for routing a request (loop.go) and for opening
// connections ahead (preconnect.go).
func (p *pool) loopable() bool { return !p.anyTLS }

// sameSettings reports whether a pool built for d would equal p, so that
// p (with its connections, health state and checker) can be kept as is.
func (p *pool) sameSettings(d spec.Deployment) bool {
	a, b := p.dep, d
	if !slices.Equal(a.Backends, b.Backends) || a.MaxFails != b.MaxFails || a.FailTimeout != b.FailTimeout {
		return false
	}
	if (a.HealthCheck == nil) != (b.HealthCheck == nil) {
		return false
	}
	return a.HealthCheck == nil || *a.HealthCheck == *b.HealthCheck
}

// pick returns the next healthy backend in round-robin order, skipping
// skip (the backend a retry moves away from); nil when none is healthy.
func (p *pool) pick(now int64, skip *backend) *backend {
	n := uint32(len(p.backends))
	start := p.next.Add(1) - 1
	for i := range n {
		b := p.backends[(start+i)%n]
		if b != skip && b.healthy(now) {
			return b
		}
	}
	return nil
}

// succeeded resets the passive failure count after a good exchange.
func (p *pool) succeeded(b *backend) {
	// Load first: a store on every request would bounce the cache line
	// between cores for nothing.
	if b.fails.Load() != 0 {
		b.fails.Store(0)
	}
}

// failed counts a transport failure or timeout. MaxFails of them in a row
// take the backend out for FailTimeout. After that it is tried again on
// probation: one more failure takes it out again at once, a success
// restores it fully. 5xx answers are not failures: they are the model's
// answer, which telemetry and the rollout gates judge; ejecting on them
// would hide a bad deployment's errors.
func (p *pool) failed(b *backend, now int64, err error) {
	b.setLastError(err.Error())
	if b.fails.Add(1) >= p.maxFails {
		b.downUntil.Store(now + p.failTimeout)
		b.fails.Store(p.maxFails - 1)
	}
}

// startChecks starts the active health check goroutines, one per backend.
func (p *pool) startChecks() {
	hc := p.dep.HealthCheck
	if hc == nil {
		// A backend carried over from a pool that had a health check must
		// not stay down on that check's last verdict.
		for _, b := range p.backends {
			b.probeDown.Store(false)
		}
		return
	}
	for _, b := range p.backends {
		p.done.Add(1)
		go p.checkLoop(b, *hc)
	}
}

// close stops the health checks and waits for them to end.
func (p *pool) close() {
	p.stopOnce.Do(func() { close(p.stop) })
	p.done.Wait()
}

func (p *pool) checkLoop(b *backend, hc spec.HealthCheck) {
	defer p.done.Done()
	t := time.NewTicker(hc.Interval.D())
	defer t.Stop()
	for {
		p.probeOnce(b, hc)
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

// probeOnce runs one active check: GET hc.Path; 2xx marks the backend up,
// anything else (status, error, timeout) marks it down.
func (p *pool) probeOnce(b *backend, hc spec.HealthCheck) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetHostBytes(b.host)
	req.SetRequestURI(string(b.prefix) + hc.Path)
	req.URI().SetSchemeBytes(b.scheme)
	err := b.probe.DoTimeout(req, resp, hc.Timeout.D())
	switch {
	case err != nil:
		b.setLastError("health check: " + err.Error())
		b.probeDown.Store(true)
	case resp.StatusCode() < 200 || resp.StatusCode() > 299:
		b.setLastError(fmt.Sprintf("health check: GET %s answered %d", hc.Path, resp.StatusCode()))
		b.probeDown.Store(true)
	default:
		b.probeDown.Store(false)
	}
	b.probed.Store(true)
}

// dialError marks a failure to connect: nothing was sent, so the request
// can safely go to another backend.
type dialError struct{ err error }

func (e *dialError) Error() string { return "connect: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// connSet tracks open connections (to clients or backends) so that a
// shutdown whose drain deadline passed can cut them all. It is touched
// when a connection opens or closes, never per request.
type connSet struct {
	mu    sync.Mutex
	conns map[io.Closer]struct{}
}

func (s *connSet) add(c io.Closer) {
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[io.Closer]struct{}{}
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c io.Closer) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// closeAll closes every tracked connection.
func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]io.Closer, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}
