// Package proxy is modelgate's data plane: a fasthttp server that routes
// each request of an endpoint to one of its deployments (split, sticky key
// or override header), forwards it to a healthy backend of that deployment,
// streams the answer back and records it in telemetry. A share of
// split-routed requests is copied to shadow deployments (see Options.Mirror).
//
// The routing state is an immutable snapshot behind an atomic pointer:
// SetRoutes builds a complete new one and swaps it in, so the request path
// takes no lock.
package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/proxy/accesslog"
	"github.com/modelgate/modelgate/internal/proxy/policy"
	"github.com/modelgate/modelgate/internal/router"
	"github.com/modelgate/modelgate/internal/secretfile"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// Recorder receives the telemetry of one deployment. *telemetry.Recorder
// implements it. Begin is called when a deployment is picked, Observe once
// when the request ends; both must not allocate.
type Recorder interface {
	Begin()
	Observe(telemetry.Observation)
}

// RecordersFrom adapts a telemetry registry to Options.Recorders.
func RecordersFrom(reg *telemetry.Registry) func(endpoint, deployment string) Recorder {
	return func(endpoint, deployment string) Recorder { return reg.Recorder(endpoint, deployment) }
}

// Options configure a Server.
type Options struct {
	// Logger receives proxy errors (5xx, 499) and health changes. Nil:
	// slog.Default().
	Logger *slog.Logger
	// Recorders returns the telemetry recorder of a deployment. SetRoutes
	// calls it once per deployment, never per request. Nil: nothing is
	// recorded. With a registry: RecordersFrom(reg).
	Recorders func(endpoint, deployment string) Recorder
	// MaxRequestBytes is the largest request body accepted; a larger one is
	// answered 413. Zero: 4 MiB (fasthttp's default).
	MaxRequestBytes int
	// Mirror receives the shadow copies of live requests, as the
	// endpoints' mirror percents select them (router.Table.Mirrors). Nil:
	// nothing is mirrored, whatever the mirror percents.
	//
	// Only split-routed requests are mirrored, never those sent with the
	// X-Model-Deployment override, and a request is never mirrored to the
	// deployment that served it live. A copy holds the request as the live
	// backend got it (method, URI after the endpoint prefix with the
	// query, end-to-end headers except Host, Content-Length,
	// Accept-Encoding, X-Forwarded-*, X-Request-Id and X-Model-*, and the
	// body up to the endpoint's compare.max_body_bytes) and the live
	// answer (status, Content-Type, body up to the same cap, captured as it
	// streams past without holding back any chunk; latency and time to
	// first byte).
	// Several shadows of one request share one capture, copied into each
	// Copy at the end.
	//
	// A copy is submitted only after the live answer has been written
	// whole to the client (flushed), from the client connection's
	// goroutine, and only when the live answer is complete: a request that
	// failed in the gateway (502, 503, 504 before or during the body) or
	// whose client left (499) is not mirrored, because the shadow would be
	// compared with an answer the live model never gave, and the failure
	// is already in live telemetry. A live 5xx returned by the backend is
	// the model's answer and is mirrored.
	Mirror Mirror
	// GoroutinesOnly turns the event loops off: every connection is served
	// by a goroutine of its own (see loop.go). For comparison and tests.
	GoroutinesOnly bool
	// EventLoops is the number of event loops. Zero: GOMAXPROCS at New.
	// Each loop keeps a P (runtime.GOMAXPROCS) busy while it runs or
	// waits in epoll_wait; the daemon gives the process as many Ps again
	// for everything else.
	EventLoops int
	// DirectSends makes the event loops send each message with a system
	// call of its own instead of submitting a batch's sends together
	// through io_uring (loop.go, sendring_linux.go). Where io_uring is
	// unavailable they do so anyway. For comparison and tests.
	DirectSends bool
	// Limits bound what a client can make the gateway hold or wait for;
	// zero fields take their defaults.
	Limits Limits
	// TLS, when set, makes Serve terminate TLS on every listener it is
	// given. TLS connections are served by the goroutine engine (the event
	// loops read plain sockets), through the same request policy; the
	// config may swap certificates under running connections
	// (GetConfigForClient, see tlsconf.Server).
	TLS *tls.Config
	// AccessLog, when set, gets a line for every request the data plane
	// answers, written where both engines end a request (observe, and the
	// refusals before a deployment is picked). Nil: no access log, at no
	// cost to a request. The caller closes it after Shutdown.
	AccessLog *accesslog.Log
}

// Limits bound what one client can make the gateway hold or wait for
// (docs/security.md lists them with nginx's). Zero: the default.
type Limits struct {
	// SendTimeout: a write to a client that makes no progress for this
	// long closes the client connection, and a stream's backend connection
	// with it, so that a client that stopped reading cannot hold a backend.
	// Default 60 s (nginx's send_timeout).
	SendTimeout time.Duration
	// MaxHeaders is the most header fields a request may have; more are
	// answered 431. Default 100 (HAProxy's tune.http.maxhdr is 101).
	MaxHeaders int
	// MaxURIBytes is the longest request target (path and query); longer
	// ones are answered 414. Default 8 KiB (nginx: 8 KiB, the size of a
	// large_client_header_buffers buffer). At most 16 KiB, the head buffer.
	MaxURIBytes int
	// MaxConnections is the most client connections served at once, on
	// every listener together; beyond it the gateway stops accepting (new
	// connections wait in the listen backlog) until one closes, as
	// HAProxy's maxconn. Default 10,000.
	MaxConnections int
}

// Default limits.
const (
	DefaultSendTimeout    = 60 * time.Second
	DefaultMaxHeaders     = 100
	DefaultMaxConnections = 10000
	DefaultMaxURIBytes    = 8 << 10
)

func (l Limits) withDefaults() Limits {
	if l.SendTimeout <= 0 {
		l.SendTimeout = DefaultSendTimeout
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
	if l.MaxURIBytes <= 0 {
		l.MaxURIBytes = DefaultMaxURIBytes
	}
	return l
}

// BackendHealth is the health of one backend as the proxy sees it.
type BackendHealth struct {
	URL string `json:"url"`
	// Healthy is false while passive health has taken the backend out or
	// the last active check failed.
	Healthy bool `json:"healthy"`
	// LastError is the last transport or health check error, if any; it
	// is kept after the backend recovered, for diagnosis.
	LastError string `json:"last_error,omitempty"`
	// Unchecked is true while the deployment's active health check has
	// not yet given this backend a verdict (it counts as healthy meanwhile).
	Unchecked bool `json:"unchecked,omitempty"`
}

// Server is the data plane. Create it with New, give it routes with
// SetRoutes, serve listeners with Serve and stop it with Shutdown.
type Server struct {
	log       *slog.Logger
	limits    Limits
	reqLimits policy.Limits // the part of limits policy.CheckRequest applies
	maxBody   int           // largest request body (Options.MaxRequestBytes)
	// slots holds a token per client connection open (Limits.MaxConnections);
	// stopAccept is closed when Shutdown starts, ending a wait for a slot.
	slots      chan struct{}
	stopAccept chan struct{}
	stopOnce   sync.Once
	recorders  func(endpoint, deployment string) Recorder
	srv        *fasthttp.Server
	routes     atomic.Pointer[routes]
	tls        *tls.Config            // Options.TLS
	adminURL   atomic.Pointer[string] // SetAdminURL
	access     *accesslog.Log         // Options.AccessLog; nil: off

	// mu serialises SetRoutes and Shutdown; the request path never takes it.
	mu     sync.Mutex
	pools  map[string]*pool
	lns    map[net.Listener]struct{}
	closed bool

	// clientConns and upstreamConns let Shutdown cut the connections
	// still open when its context ends: cutting only the client side would
	// leave a handler blocked on a silent backend until the idle timeout.
	clientConns, upstreamConns connSet

	ridPrefix [17]byte // 16 random hex digits and '-': unique per process
	ridSeq    atomic.Uint64

	exchanges sync.Pool

	mirror Mirror
	// parked holds, per client connection, the mirrored exchange whose
	// copies are handed off once the connection went idle (see park);
	// nparked counts them so that the common case checks one atomic.
	parked  sync.Map // net.Conn → *exchange
	nparked atomic.Int64
	// replying counts the mirrored exchanges an event loop is answering
	// and has not handed off yet (tests wait for it, as for nparked).
	replying atomic.Int64

	// dial opens backend connections; tests and benchmarks replace it
	// (before the first SetRoutes) to use in-memory listeners.
	dial dialFunc
	// upstreamRoots verifies https backends; nil: the system's roots.
	// Tests set it (before the first SetRoutes) to trust their own CA.
	upstreamRoots *x509.CertPool

	// loops serve plain TCP client connections (loop.go); nil: off.
	loops *evloops
	// handovers counts the goroutines serving connections the loops
	// handed over; Shutdown waits for them too.
	handovers sync.WaitGroup
	// closing is set when Shutdown starts: requests answered from then on
	// close their connection.
	closing atomic.Bool
	// idleHandedOver holds the handed-over connections waiting for their
	// next request, which Shutdown closes (fasthttp's does not).
	idleHandedOver sync.Map // *clientConn → struct{}

	// stopPrune ends the goroutine that closes long-idle backend
	// connections; pruneDone is closed when it has.
	stopPrune, pruneDone chan struct{}
}

// routes is one immutable routing snapshot.
type routes struct {
	endpoints map[string]*endpoint
}

type endpoint struct {
	name   string
	table  *router.Table
	sticky []byte // sticky header name; nil when unset
	pin    policy.Pin
	// pinFile is the override secret file pin was read from; empty: none.
	pinFile string
	deps    []*deployment
	// mirrors is set when the endpoint has a mirror percent above zero and
	// the server a Mirror; capture is then the body capture cap in bytes.
	mirrors bool
	capture int
}

type deployment struct {
	endpoint string
	name     string
	header   []byte // name, as sent in X-Model-Deployment
	pool     *pool
	rec      Recorder
	timeout  time.Duration
	idle     time.Duration
}

// New returns a Server with no routes: every request is answered 404
// until SetRoutes is called.
func New(opts Options) *Server {
	s := &Server{
		log:        opts.Logger,
		limits:     opts.Limits.withDefaults(),
		maxBody:    opts.MaxRequestBytes,
		stopAccept: make(chan struct{}),
		recorders:  opts.Recorders,
		mirror:     opts.Mirror,
		tls:        opts.TLS,
		access:     opts.AccessLog,
		pools:      map[string]*pool{},
		lns:        map[net.Listener]struct{}{},
		dial:       tcpDial,
		stopPrune:  make(chan struct{}),
		pruneDone:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.slots = make(chan struct{}, s.limits.MaxConnections)
	s.reqLimits = policy.Limits{MaxHeaders: s.limits.MaxHeaders, MaxURIBytes: s.limits.MaxURIBytes}
	if s.maxBody <= 0 {
		s.maxBody = fasthttp.DefaultMaxRequestBodySize
	}
	var seed [8]byte
	_, _ = rand.Read(seed[:])
	hex.Encode(s.ridPrefix[:16], seed[:])
	s.ridPrefix[16] = '-'
	s.exchanges.New = func() any { return &exchange{s: s} }
	s.routes.Store(&routes{endpoints: map[string]*endpoint{}})
	go s.pruneLoop()
	s.srv = &fasthttp.Server{
		Handler:                      s.handle,
		ErrorHandler:                 s.handleParseError,
		MaxRequestBodySize:           opts.MaxRequestBytes,
		ReadBufferSize:               bufferSize,
		WriteBufferSize:              bufferSize,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		// Bodies are read by readBody as they arrive, not allocated at
		// their declared size by fasthttp.
		StreamRequestBody: true,
		CloseOnShutdown:   true,
		// A client has clientTimeout to send a request, headers and body,
		// and may keep a connection idle that long between requests. One
		// value for both lets clientConn keep the deadline in place.
		ReadTimeout:                   clientTimeout,
		IdleTimeout:                   clientTimeout,
		ConnState:                     s.connState,
		Logger:                        fasthttpLogger{s.log},
		SecureErrorLogMessage:         true,
		DisableHeaderNamesNormalizing: false,
	}
	if !opts.GoroutinesOnly {
		loops, err := newEvloops(s, opts.EventLoops, opts.DirectSends)
		if err != nil {
			s.log.Warn("serving every connection on goroutines", "error", err.Error())
		}
		s.loops = loops
	}
	return s
}

// pinOf is the endpoint's rule for X-Model-Deployment. The secret file is
// read again each time the routes are set (an apply re-reads them all, so
// that a rotated secret takes effect). A file that cannot be used here
// never fails the routes, which are set after the change was committed:
// the endpoint keeps the secret it had, or, new, refuses every pin until
// the file is fixed and applied again (control checks the files before it
// commits, so this is the file changing in between).
func (s *Server) pinOf(ep spec.Endpoint, prev *endpoint) policy.Pin {
	path := ep.Override.Secret()
	if path == "" {
		return policy.NewPin(ep.Override.On(), "")
	}
	secret, err := secretfile.Read(path, fmt.Sprintf("endpoint %q override.secret_file", ep.Name))
	if err == nil {
		return policy.NewPin(true, secret)
	}
	if prev != nil && prev.pinFile == path {
		s.log.Error("override secret file unusable: keeping the secret read before", "endpoint", ep.Name, "err", err.Error())
		return prev.pin
	}
	s.log.Error("override secret file unusable: every X-Model-Deployment is refused until it is fixed and applied again", "endpoint", ep.Name, "err", err.Error())
	return policy.RefuseEveryPin()
}

// backendTLS reads the deployment's tls files (at every SetRoutes, so
// that an apply or SIGHUP picks up rotated files); SetRoutes gives the
// pool's https backends the result for their next connections once the
// new table is complete (usePoolTLS). Files that cannot
// be used here never fail the routes (control read them before it
// committed, so this is a file changing in between): the deployment keeps
// the TLS read before, or, new, fails every connection with the reason
// until the files are fixed and applied again.
func (s *Server) backendTLS(endpoint string, i int, d spec.Deployment, prev *tlsconf.Backend) *tlsconf.Backend {
	field := fmt.Sprintf("deployments[%d].tls", i)
	tb, err := tlsconf.NewBackend(field, d.TLS, s.upstreamRoots)
	switch {
	case err == nil:
		if tb.Insecure() {
			s.log.Warn("backend certificates are not verified (insecure_skip_verify): anyone on the path can pose as them", "endpoint", endpoint, "deployment", d.Name)
		}
	case prev != nil:
		s.log.Error("deployment tls files unusable: keeping the TLS read before", "endpoint", endpoint, "deployment", d.Name, "err", err.Error())
		tb = prev
	default:
		s.log.Error("deployment tls files unusable: its https backends are refused until they are fixed and applied again", "endpoint", endpoint, "deployment", d.Name, "err", err.Error())
		tb = tlsconf.Unusable(err)
	}
	if prev != nil && tb.Same(prev) {
		tb = prev
	}
	return tb
}

// usePoolTLS makes tb the TLS of p's https backends.
func usePoolTLS(p *pool, tb *tlsconf.Backend) {
	p.tls = tb
	for _, b := range p.backends {
		b.setTLS(tb)
	}
}

// SetAdminURL records where the admin API listens (a URL), named in the
// answer to a request sent to the data plane that was meant for the admin
// API (policy.UnknownEndpoint). Safe to call while serving.
func (s *Server) SetAdminURL(u string) { s.adminURL.Store(&u) }

// SetRoutes replaces the routing table. The endpoints must already be
// defaulted (spec.Endpoint.WithDefaults) and validated. The whole new table
// is built first (routers, backend pools, recorders) and then swapped in
// atomically: a request uses either the old or the new table, never a mix,
// and none is dropped. Pools of deployments whose backends and health
// settings did not change are kept with their connections, health state
// and checkers; backends keep their connections and health while their URL
// stays in the deployment. Health checkers of removed pools are stopped.
// On error nothing changes.
func (s *Server) SetRoutes(eps []spec.Endpoint) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("set routes: proxy is shut down")
	}
	old := s.routes.Load()
	next := &routes{endpoints: make(map[string]*endpoint, len(eps))}
	pools := make(map[string]*pool)
	var created []*pool
	poolTLS := map[*pool]*tlsconf.Backend{}
	fail := func(err error) error {
		for _, p := range created {
			p.close()
		}
		return err
	}
	for _, ep := range eps {
		if _, dup := next.endpoints[ep.Name]; dup {
			return fail(fmt.Errorf("set routes: duplicate endpoint %q", ep.Name))
		}
		var (
			table *router.Table
			err   error
		)
		if prev := old.endpoints[ep.Name]; prev != nil {
			table, err = prev.table.Recompile(ep)
		} else {
			table, err = router.Compile(ep)
		}
		if err != nil {
			return fail(fmt.Errorf("set routes: %w", err))
		}
		e := &endpoint{name: ep.Name, table: table, pinFile: ep.Override.Secret()}
		if s.mirror != nil && table.HasMirrors() {
			e.mirrors = true
			e.capture = int(min(ep.Compare.WithDefaults().MaxBodyBytes, math.MaxInt32))
		}
		if ep.StickyHeader != "" {
			e.sticky = []byte(ep.StickyHeader)
		}
		e.pin = s.pinOf(ep, old.endpoints[ep.Name])
		for i, d := range ep.Deployments {
			key := ep.Name + "/" + d.Name
			p := s.pools[key]
			prevTLS := (*tlsconf.Backend)(nil)
			if p != nil {
				prevTLS = p.tls
			}
			if p == nil || !p.sameSettings(d) {
				reuse := map[string]*backend{}
				if p != nil {
					for _, b := range p.backends {
						reuse[b.url] = b
					}
				}
				if p, err = newPool(key, d, reuse, s.dial, &s.upstreamConns); err != nil {
					return fail(fmt.Errorf("set routes: endpoint %q deployment %q: %w", ep.Name, d.Name, err))
				}
				created = append(created, p)
			}
			if p.anyTLS {
				poolTLS[p] = s.backendTLS(ep.Name, i, d, prevTLS)
			}
			pools[key] = p
			var rec Recorder = nopRecorder{}
			if s.recorders != nil {
				rec = s.recorders(ep.Name, d.Name)
			}
			e.deps = append(e.deps, &deployment{
				endpoint: ep.Name,
				name:     d.Name,
				header:   []byte(d.Name),
				pool:     p,
				rec:      rec,
				timeout:  d.Timeout.D(),
				idle:     d.StreamIdleTimeout.D(),
			})
		}
		next.endpoints[ep.Name] = e
	}
	for p, tb := range poolTLS {
		usePoolTLS(p, tb)
	}
	for _, p := range created {
		p.startChecks()
	}
	s.routes.Store(next)
	// Retire what the new table no longer uses. Requests still in flight on
	// a retired pool finish normally: only the health checker stops, and
	// only idle connections of backends that left are closed.
	kept := map[*backend]bool{}
	for _, p := range pools {
		for _, b := range p.backends {
			kept[b] = true
		}
	}
	for key, p := range s.pools {
		if pools[key] == p {
			continue
		}
		p.close()
		for _, b := range p.backends {
			if !kept[b] {
				b.conns.retire()
				b.probe.CloseIdleConnections()
			}
		}
	}
	s.pools = pools
	return nil
}

// Serve accepts connections on ln and serves them until Shutdown. It may
// be called for several listeners. It returns nil after Shutdown, also
// when Shutdown came first (ln is then closed at once). With Options.TLS
// every connection is a TLS one.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return nil
	}
	// Remembered so that Shutdown closes it even if fasthttp has not
	// registered it yet: fasthttp's Shutdown only knows listeners whose
	// Serve got that far, and a Serve starting after it would run forever.
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	return s.srv.Serve(clientListener{Listener: ln, s: s})
}

// handover runs f, the goroutine-path side of a connection the event loops
// handed over, on a goroutine that Shutdown waits for.
func (s *Server) handover(f func()) {
	s.handovers.Add(1)
	go func() {
		defer s.handovers.Done()
		f()
	}()
}

// finishWrite writes the rest of an answer a slow client did not take at
// once, then serves the connection on (pre: what the loop had read of the
// next request), unless it was to close.
func (s *Server) finishWrite(c net.Conn, rest, pre []byte, closeAfter bool) {
	// The slow client has SendTimeout for each part of the rest it takes.
	cc := &clientConn{Conn: c, sendTimeout: s.limits.SendTimeout}
	if _, err := cc.Write(rest); err != nil || closeAfter || (s.closing.Load() && len(pre) == 0) {
		_ = c.Close()
		return
	}
	_ = c.SetWriteDeadline(time.Time{})
	s.serveConn(c, pre)
}

// serveConn serves a connection the event loops handed over, pre being
// what they had read of it, on the goroutine path.
func (s *Server) serveConn(c net.Conn, pre []byte) {
	if len(pre) > 0 {
		c = &prefixConn{Conn: c, pre: pre}
	}
	cc := &clientConn{Conn: c, handedOver: true, sendTimeout: s.limits.SendTimeout}
	s.clientConns.add(cc) // its ConnState StateClosed removes it
	if len(pre) == 0 {
		s.serveIdle(cc)
		return
	}
	_ = s.srv.ServeConn(cc)
}

// prefixConn reads pre before the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// streamHandoff is an exchange an event loop handed over once the backend
// answered with a stream (see evloops.handoffStream).
type streamHandoff struct {
	ctx        *fasthttp.RequestCtx
	x          *exchange
	dep        *deployment
	b          *backend
	override   bool
	closeAfter bool
	deadline   int64 // unix ns, slack included
	back       net.Conn
	backPre    []byte // what the loop had read of the body
	client     net.Conn
	clientPre  []byte // what the loop had read of the next request
	backUnsent bool   // part of the request was never sent: do not reuse back
}

// streamHandedOff streams the answer as the goroutine path does (respond),
// then serves the client connection on the goroutine path.
func (s *Server) streamHandedOff(h streamHandoff) {
	p := h.b.conns
	pre := bytes.NewReader(h.backPre)
	uc := &upConn{
		Conn:     h.back,
		pool:     p,
		pre:      pre,
		br:       bufio.NewReaderSize(io.MultiReader(pre, h.back), bufferSize),
		bw:       bufio.NewWriterSize(h.back, bufferSize),
		reused:   true,
		deadline: h.deadline,
	}
	uc.setRaw()
	p.set.add(uc)
	_ = uc.Conn.SetDeadline(time.Unix(0, h.deadline))
	uc.body.reset(uc, &h.ctx.Request, &h.ctx.Response.Header)
	if h.backUnsent {
		uc.body.closeAfter = true
	}
	client := h.client
	if len(h.clientPre) > 0 {
		client = &prefixConn{Conn: client, pre: h.clientPre}
	}
	cc := &clientConn{Conn: client, handedOver: true, sendTimeout: s.limits.SendTimeout}
	s.clientConns.add(cc)
	if h.x.mc.ep != nil {
		h.x.mc.conn = cc
	}
	s.respond(h.ctx, h.x, h.dep, h.b, uc, h.override)
	resp := &h.ctx.Response
	if h.closeAfter || s.closing.Load() {
		resp.SetConnectionClose()
	}
	bw := bufio.NewWriterSize(cc, bufferSize)
	err := resp.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	// The answer is flushed: a mirrored exchange's copies go now.
	s.connDone(cc)
	// An idle keep-alive connection is closed once Shutdown has begun, as
	// fasthttp's server closes its own.
	if err != nil || h.closeAfter || resp.ConnectionClose() || s.closing.Load() {
		s.clientConns.remove(cc)
		_ = cc.Close()
		return
	}
	s.serveIdle(cc)
}

// serveIdle serves a handed-over connection that waits for its next
// request, closable by Shutdown meanwhile.
func (s *Server) serveIdle(cc *clientConn) {
	s.idleHandedOver.Store(cc, struct{}{})
	if s.closing.Load() {
		s.closeIdleHandedOver()
	}
	_ = s.srv.ServeConn(cc)
}

// Shutdown stops accepting connections, lets requests in flight (streams
// included) finish, and closes idle connections. When ctx ends first, the
// connections still open are cut and ctx's error is returned. Health
// checks stop in either case, and SetRoutes is refused afterwards.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		close(s.stopPrune)
	}
	s.closed = true
	lns := s.lns
	s.lns = map[net.Listener]struct{}{}
	s.mu.Unlock()
	s.closing.Store(true)
	s.stopOnce.Do(func() { close(s.stopAccept) })
	if s.loops != nil {
		s.loops.drain()
		s.closeIdleHandedOver()
	}
	err := s.srv.ShutdownWithContext(ctx)
	if s.loops != nil {
		if werr := s.loops.wait(ctx); err == nil {
			err = werr
		}
		if werr := s.waitHandovers(ctx); err == nil {
			err = werr
		}
		if err != nil {
			s.clientConns.closeAll()
			s.upstreamConns.closeAll()
		}
		s.loops.close()
	}
	for ln := range lns {
		_ = ln.Close() // usually closed already by fasthttp
	}
	if err != nil {
		s.clientConns.closeAll()
		s.upstreamConns.closeAll()
	}
	s.mu.Lock()
	pools := s.pools
	s.pools = map[string]*pool{}
	s.mu.Unlock()
	for _, p := range pools {
		p.close()
		for _, b := range p.backends {
			b.conns.retire()
			b.probe.CloseIdleConnections()
		}
	}
	<-s.pruneDone
	return err
}

// closeIdleHandedOver closes the handed-over connections that wait for a
// request; one in the middle of a request closes after it (see handle).
func (s *Server) closeIdleHandedOver() {
	s.idleHandedOver.Range(func(k, _ any) bool {
		s.idleHandedOver.Delete(k)
		_ = k.(*clientConn).Close()
		return true
	})
}

// waitHandovers waits for the goroutines serving handed-over connections,
// or for ctx.
func (s *Server) waitHandovers(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		s.handovers.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pruneLoop closes backend connections idle for longer than maxIdleConn,
// twice per that period, until Shutdown.
func (s *Server) pruneLoop() {
	defer close(s.pruneDone)
	t := time.NewTicker(maxIdleConn / 2)
	defer t.Stop()
	for {
		select {
		case <-s.stopPrune:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		s.mu.Lock()
		for _, p := range s.pools {
			for _, b := range p.backends {
				b.conns.pruneIdle(now)
			}
		}
		s.mu.Unlock()
	}
}

// Health returns endpoint → deployment → backend health, for the admin API.
func (s *Server) Health() map[string]map[string][]BackendHealth {
	now := time.Now().UnixNano()
	rt := s.routes.Load()
	out := make(map[string]map[string][]BackendHealth, len(rt.endpoints))
	for name, e := range rt.endpoints {
		deps := make(map[string][]BackendHealth, len(e.deps))
		for _, d := range e.deps {
			hs := make([]BackendHealth, 0, len(d.pool.backends))
			for _, b := range d.pool.backends {
				hs = append(hs, BackendHealth{URL: b.url, Healthy: b.healthy(now), LastError: b.lastError(),
					Unchecked: d.pool.dep.HealthCheck != nil && !b.probed.Load()})
			}
			deps[d.name] = hs
		}
		out[name] = deps
	}
	return out
}

func (s *Server) connState(c net.Conn, st fasthttp.ConnState) {
	switch st {
	case fasthttp.StateNew:
		s.clientConns.add(c)
	case fasthttp.StateIdle:
		// The last response on c has been flushed.
		s.connDone(c)
		if cc, ok := c.(*clientConn); ok && cc.handedOver {
			s.idleHandedOver.Store(cc, struct{}{})
			if s.closing.Load() {
				s.closeIdleHandedOver()
			}
		}
	case fasthttp.StateActive:
		if cc, ok := c.(*clientConn); ok && cc.handedOver {
			s.idleHandedOver.Delete(cc)
		}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		s.connDone(c)
		s.clientConns.remove(c)
		if cc, ok := c.(*clientConn); ok && cc.handedOver {
			s.idleHandedOver.Delete(cc)
		}
	}
}

type nopRecorder struct{}

func (nopRecorder) Begin()                        {}
func (nopRecorder) Observe(telemetry.Observation) {}

// fasthttpLogger sends fasthttp's own messages (mostly connection-level
// errors) to slog at debug level.
type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "fasthttp")
}

const (
	// clientTimeout bounds reading a request and the wait for the next one
	// on a keep-alive connection.
	clientTimeout = 2 * time.Minute
	// idleSlack is how late a client connection's read deadline may fire
	// (see clientConn).
	idleSlack = time.Second
)

// clientListener gives plain TCP connections to the event loops and hands
// fasthttp the others, as clientConns, whose read deadline is moved only
// when it must.
type clientListener struct {
	net.Listener
	s *Server
}

func (l clientListener) Accept() (net.Conn, error) {
	for {
		stopping := false
		select {
		case l.s.slots <- struct{}{}:
		case <-l.s.stopAccept:
			// Shutdown: the listener is being closed; Accept says so.
			stopping = true
		}
		c, err := l.Listener.Accept()
		if err != nil {
			if !stopping {
				l.s.releaseSlot()
			}
			return nil, err
		}
		if stopping {
			_ = c.Close()
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok && l.s.loops != nil && !l.s.loops.draining.Load() {
			l.s.loops.enroll(tc)
			continue
		}
		cc := &clientConn{Conn: l.s.slotted(c), sendTimeout: l.s.limits.SendTimeout}
		if tc, ok := c.(*tls.Conn); ok {
			return tlsClientConn{cc, tc}, nil
		}
		return cc, nil
	}
}

// tlsClientConn is a TLS client connection of the goroutine path: it
// shows fasthttp the TLS connection's state (RequestCtx.IsTLS, hence
// X-Forwarded-Proto: https), and times its reads and writes as clientConn.
type tlsClientConn struct {
	*clientConn
	tc *tls.Conn
}

func (c tlsClientConn) Handshake() error                     { return c.tc.Handshake() }
func (c tlsClientConn) ConnectionState() tls.ConnectionState { return c.tc.ConnectionState() }

// releaseSlot gives back the connection slot of a client connection that
// closed (Limits.MaxConnections).
func (s *Server) releaseSlot() { <-s.slots }

// slotted makes c give its connection slot back when it is closed, once.
func (s *Server) slotted(c net.Conn) net.Conn { return &slotConn{Conn: c, s: s} }

// slotConn is a client connection of the goroutine path holding a slot.
type slotConn struct {
	net.Conn
	s        *Server
	released atomic.Bool
}

func (c *slotConn) Close() error {
	if c.released.CompareAndSwap(false, true) {
		c.s.releaseSlot()
	}
	return c.Conn.Close()
}

// clientConn keeps a read deadline set by fasthttp when the new one falls
// within idleSlack after it. fasthttp sets a read deadline twice per
// request on a keep-alive connection (the idle timeout before it, the read
// timeout once its first byte came), and each move updates a runtime timer;
// with both timeouts equal and the slack, a busy connection moves it about
// once a second, and a deadline fires up to a second late.
type clientConn struct {
	net.Conn
	readDeadline int64 // unix ns as last set on Conn; 0: none
	// handedOver: the event loops handed it over; fasthttp's Shutdown does
	// not close it while idle (it serves it through ServeConn), Shutdown
	// does (see idleHandedOver).
	handedOver bool
	// sendTimeout bounds each write: a client that takes nothing for that
	// long is cut off (Limits.SendTimeout). writeDeadline is the deadline
	// as last set (unix ns), moved only past idleSlack, as the read one.
	sendTimeout   time.Duration
	writeDeadline int64
}

// Write writes p with the send timeout: each call must make progress
// within it. fasthttp writes through a 16 KiB buffer, so a stream to a
// client that stopped reading fails within about sendTimeout (+ idleSlack).
func (c *clientConn) Write(p []byte) (int, error) {
	if c.sendTimeout > 0 {
		want := time.Now().Add(c.sendTimeout).UnixNano()
		if c.writeDeadline < want || c.writeDeadline > want+int64(idleSlack) {
			c.writeDeadline = want + int64(idleSlack)
			if err := c.Conn.SetWriteDeadline(time.Unix(0, c.writeDeadline)); err != nil {
				return 0, err
			}
		}
	}
	return c.Conn.Write(p)
}

func (c *clientConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline = 0 // unknown from now on
	return c.Conn.SetWriteDeadline(t)
}

func (c *clientConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() {
		c.readDeadline = 0
		return c.Conn.SetReadDeadline(t)
	}
	want := t.UnixNano()
	if c.readDeadline >= want && c.readDeadline <= want+int64(idleSlack) {
		return nil
	}
	c.readDeadline = want + int64(idleSlack)
	return c.Conn.SetReadDeadline(time.Unix(0, c.readDeadline))
}

func (c *clientConn) SetDeadline(t time.Time) error {
	c.readDeadline, c.writeDeadline = 0, 0 // unknown from now on: the next Set applies
	return c.Conn.SetDeadline(t)
}
