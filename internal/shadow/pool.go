package shadow

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/shadow/compare"
	"github.com/modelgate/modelgate/internal/shadow/mirrored"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// config is what a shadow's workers need to send and judge a copy. It is
// immutable; a reconfiguration that keeps the queue size and the worker
// count swaps it under running workers.
type config struct {
	endpoint, deployment string
	backends             []string // base URLs without a trailing slash
	cmp                  *compare.Comparator
	timeout              time.Duration
	maxBody              int64
	queue, workers       int
	sampleRequests       bool // keep each mismatch's request (compare.sample_requests)
	// tls maps an https backend's address (host:port) to the config its
	// connections use, built from tlsSrc, the deployment's TLS as the
	// proxy reads it (tlsconf); tlsErr: the files could not be read.
	tls      map[string]*tls.Config
	tlsSrc   *tlsconf.Backend
	tlsErr   error
	tlsField string
}

// pool is one shadow's bounded queue and its workers. Submitters never
// block on it: a full queue, or a stopped pool, refuses the copy.
type pool struct {
	m     *Manager
	st    *stats
	queue chan *mirrored.Copy
	cfg   atomic.Pointer[config]
	rr    atomic.Uint64
	// client sends the copies: fasthttp, like the live path, because a
	// copy costs the gateway CPU that the live requests share.
	client *fasthttp.Client
	// conns are the client's open connections, closed by stop to abort
	// the requests in flight (fasthttp requests take no context).
	conns connSet

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// submitters counts Submit calls between their stopped check and their
	// send, so that stop can drain the queue after the last of them.
	submitters atomic.Int64
	stopped    atomic.Bool
}

// startPool starts cfg.workers workers on a queue of cfg.queue copies.
func (m *Manager) startPool(st *stats, cfg *config) *pool {
	p := &pool{m: m, st: st, queue: make(chan *mirrored.Copy, cfg.queue)}
	p.cfg.Store(cfg)
	p.client = &fasthttp.Client{
		// One kept-alive connection per worker and backend.
		MaxConnsPerHost:          cfg.workers,
		NoDefaultUserAgentHeader: true,
		DisablePathNormalizing:   true,
		// Read the body as it comes, up to the capture cap, instead of
		// refusing a longer one: the comparison reports it truncated.
		StreamResponseBody: true,
		// A copy that failed is not retried: it is counted.
		MaxIdemponentCallAttempts: 1,
		DialTimeout: func(addr string, timeout time.Duration) (net.Conn, error) {
			if err := p.ctx.Err(); err != nil {
				return nil, err // stopping: no new connections
			}
			// The dialer of the live requests and health checks: TCP, then
			// for an https backend the handshake with the deployment's TLS.
			// fasthttp does no TLS of its own on a TLS connection.
			c, err := tlsconf.Dialer{}.Dial(addr, p.cfg.Load().tls[addr], 5*time.Second, time.Now().Add(timeout))
			if err != nil {
				return nil, err
			}
			tc := p.conns.add(c)
			if err := p.ctx.Err(); err != nil {
				// stop closed the connections while this one was dialled:
				// close it too, or its request would run to its timeout.
				_ = tc.Close()
				return nil, err
			}
			return tc, nil
		},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(cfg.workers)
	for range cfg.workers {
		go p.work()
	}
	return p
}

// offer enqueues c without blocking; false when the queue is full or the
// pool stopped.
func (p *pool) offer(c *mirrored.Copy) bool {
	p.submitters.Add(1)
	defer p.submitters.Add(-1)
	if p.stopped.Load() {
		return false
	}
	select {
	case p.queue <- c:
		return true
	default:
		return false
	}
}

// stop aborts the requests in flight, waits for the workers, and counts
// every copy left in the queue as dropped. Copies aborted in flight are
// counted as dropped too: neither the shadow nor the live side failed.
func (p *pool) stop() {
	p.cancel()
	p.conns.closeAll()
	p.wg.Wait()
	p.stopped.Store(true)
	for p.submitters.Load() != 0 {
		runtime.Gosched() // a submitter is a channel send away from leaving
	}
	for {
		select {
		case c := <-p.queue:
			p.st.count(p.m.now(), kindDropped)
			p.m.Put(c)
		default:
			p.client.CloseIdleConnections()
			p.conns.closeAll() // dialled by a request that was ending
			return
		}
	}
}

// work serves the queue until the pool stops. Each worker reuses one body
// buffer.
func (p *pool) work() {
	defer p.wg.Done()
	var buf []byte
	for {
		select {
		case <-p.ctx.Done():
			return
		case c := <-p.queue:
			buf = p.handle(c, buf)
			p.m.Put(c)
		}
	}
}

// handle sends c to the next backend, compares the answer with the live
// one and records the outcome. It returns the (possibly grown) buffer.
func (p *pool) handle(c *mirrored.Copy, buf []byte) []byte {
	cfg := p.cfg.Load()
	if p.ctx.Err() != nil {
		p.st.count(p.m.now(), kindDropped)
		return buf
	}
	base := cfg.backends[(p.rr.Add(1)-1)%uint64(len(cfg.backends))]
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	fillRequest(req, base, c)
	resp.Header.SetNoDefaultContentType(true) // none sent means none, as for the live answer
	p.st.count(p.m.now(), kindSent)
	// Latency is measured on the monotonic clock; the injected clock only
	// places counts in slices.
	start := time.Now()
	// The deadline bounds the whole request, body included: fasthttp keeps
	// it as the connection's read deadline while the body streams.
	err := p.client.DoDeadline(req, resp, start.Add(cfg.timeout))
	var truncated bool
	if err == nil {
		buf, truncated, err = readCapped(resp.BodyStream(), cfg.maxBody, buf)
		if cerr := resp.CloseBodyStream(); err == nil && cerr != nil && !truncated {
			err = cerr
		}
	}
	lat := time.Since(start)
	if err != nil {
		k := p.classify(err)
		if k == kindTimeout {
			err = fmt.Errorf("no answer within the shadow timeout of %s: %w", cfg.timeout, err)
		}
		p.fail(c, k, err)
		return buf
	}
	p.st.observeDuration(lat)
	res := cfg.cmp.Compare(c.Live, compare.Response{
		Status:      resp.StatusCode(),
		ContentType: string(resp.Header.ContentType()),
		Body:        buf,
		Truncated:   truncated,
	})
	now := p.m.now()
	switch {
	case !res.Compared:
		p.st.count(now, kindNotCompared)
		return buf
	case res.Match:
		p.st.count(now, kindMatched)
	default:
		p.st.count(now, kindMismatched)
		m := Mismatch{Time: now, RequestID: c.RequestID, Path: res.Path, Reason: res.Reason, Live: res.Live, Shadow: res.Shadow}
		if cfg.sampleRequests {
			m.Request = requestText(c)
		}
		p.st.sample(m)
	}
	p.st.compared(now, lat, c.LiveLatency, res.Protocol)
	return buf
}

// classify tells a timeout from a transport error; a request aborted
// because the pool stopped is a drop.
func (p *pool) classify(err error) kind {
	var ne net.Error
	switch {
	case p.ctx.Err() != nil:
		return kindDropped
	case errors.Is(err, fasthttp.ErrTimeout), errors.Is(err, fasthttp.ErrDialTimeout),
		errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	}
	return kindError
}

// fail records a copy that got no answer.
func (p *pool) fail(c *mirrored.Copy, k kind, err error) {
	now := p.m.now()
	p.st.count(now, k)
	if k != kindDropped {
		p.st.failed(ErrorSample{Time: now, RequestID: c.RequestID, Error: err.Error()})
	}
}

// fillRequest makes req the shadow request of c to the backend at base.
func fillRequest(req *fasthttp.Request, base string, c *mirrored.Copy) {
	uri := c.URI
	if !strings.HasPrefix(uri, "/") {
		uri = "/" + uri
	}
	req.SetRequestURI(base + uri)
	if c.Method != "" {
		req.Header.SetMethod(c.Method)
	}
	for i := 0; i+1 < len(c.Headers); i += 2 {
		name, value := c.Headers[i], c.Headers[i+1]
		if strings.EqualFold(name, "Host") {
			req.Header.SetHost(value)
			req.UseHostHeader = true
			continue
		}
		req.Header.Add(name, value)
	}
	if c.RequestID != "" {
		req.Header.Set("X-Request-Id", c.RequestID)
	}
	req.Header.Set("X-Model-Shadow", "true")
	// c outlives the request: no copy of the body is needed.
	req.SetBodyRaw(c.Body)
}

// readCapped reads r into buf[:0] up to limit bytes. truncated reports
// that r held more; buf then holds the first limit bytes.
func readCapped(r io.Reader, limit int64, buf []byte) (_ []byte, truncated bool, _ error) {
	buf = buf[:0]
	if r == nil {
		return buf, false, nil
	}
	for {
		if len(buf) == cap(buf) {
			// Grow, but never past limit+1: one byte over tells truncation.
			want := min(max(2*cap(buf), 4096), int(min(limit+1, 1<<62)))
			if want <= len(buf) {
				want = len(buf) + 1
			}
			nb := make([]byte, len(buf), want)
			copy(nb, buf)
			buf = nb
		}
		n, err := r.Read(buf[len(buf):min(cap(buf), int(min(limit+1, 1<<62)))])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf[:limit], true, nil
		}
		if err == io.EOF {
			return buf, false, nil
		}
		if err != nil {
			return buf, false, err
		}
	}
}

// connSet tracks a client's open connections so that stop can close them
// all, aborting the requests in flight.
type connSet struct {
	mu    sync.Mutex
	conns map[*trackedConn]struct{}
}

type trackedConn struct {
	net.Conn
	set *connSet
}

// trackedTLSConn is a tracked TLS connection: it keeps the Handshake
// method by which fasthttp knows it is TLS already.
type trackedTLSConn struct {
	*trackedConn
	tc *tls.Conn
}

func (c trackedTLSConn) Handshake() error { return c.tc.Handshake() }

func (c *trackedConn) Close() error {
	c.set.mu.Lock()
	delete(c.set.conns, c)
	c.set.mu.Unlock()
	return c.Conn.Close()
}

func (s *connSet) add(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, set: s}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = map[*trackedConn]struct{}{}
	}
	s.conns[tc] = struct{}{}
	s.mu.Unlock()
	if t, ok := c.(*tls.Conn); ok {
		return trackedTLSConn{tc, t}
	}
	return tc
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	conns := make([]*trackedConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// requestText renders the request of a copy for a mismatch sample: method,
// path and the start of its body, cut at a character boundary.
func requestText(c *mirrored.Copy) string {
	body := c.Body
	cut := len(body) > api.MismatchRequestBytes
	if cut {
		n := api.MismatchRequestBytes
		for n > 0 && !utf8.RuneStart(body[n]) {
			n--
		}
		body = body[:n]
	}
	var b strings.Builder
	b.Grow(len(c.Method) + len(c.URI) + len(body) + 8)
	b.WriteString(c.Method)
	b.WriteByte(' ')
	b.WriteString(c.URI)
	if len(body) > 0 {
		b.WriteByte(' ')
		b.Write(bytes.ToValidUTF8(body, []byte("\uFFFD")))
	}
	if cut {
		b.WriteString("…")
	}
	return b.String()
}
