package shadow

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/shadow/compare"
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
}

// pool is one shadow's bounded queue and its workers. Submitters never
// block on it: a full queue, or a stopped pool, refuses the copy.
type pool struct {
	m      *Manager
	st     *stats
	queue  chan *Copy
	cfg    atomic.Pointer[config]
	rr     atomic.Uint64
	client *http.Client
	// transport is the pool's own keep-alive transport, nil when the
	// Manager was given a client.
	transport *http.Transport

	ctx    context.Context // cancelled by stop: aborts shadow requests in flight
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// submitters counts Submit calls between their stopped check and their
	// send, so that stop can drain the queue after the last of them.
	submitters atomic.Int64
	stopped    atomic.Bool
}

// startPool starts cfg.workers workers on a queue of cfg.queue copies.
func (m *Manager) startPool(st *stats, cfg *config) *pool {
	p := &pool{m: m, st: st, queue: make(chan *Copy, cfg.queue), client: m.client}
	p.cfg.Store(cfg)
	if p.client == nil {
		p.transport = &http.Transport{
			Proxy: nil, // shadow backends are addressed directly, never through an environment proxy
			DialContext: (&net.Dialer{
				Timeout:   min(cfg.timeout, 5*time.Second),
				KeepAlive: 30 * time.Second,
			}).DialContext,
			MaxIdleConns:        4 * cfg.workers,
			MaxIdleConnsPerHost: cfg.workers, // one kept-alive connection per worker and backend
			IdleConnTimeout:     90 * time.Second,
			// Forward exactly the client's Accept-Encoding, like the live
			// request, instead of asking for gzip and decoding it here.
			DisableCompression: true,
		}
		p.client = &http.Client{
			Transport: p.transport,
			// A shadow answer is compared as it is, redirect included.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
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
func (p *pool) offer(c *Copy) bool {
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
			if p.transport != nil {
				p.transport.CloseIdleConnections()
			}
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
func (p *pool) handle(c *Copy, buf []byte) []byte {
	cfg := p.cfg.Load()
	if p.ctx.Err() != nil {
		p.st.count(p.m.now(), kindDropped)
		return buf
	}
	base := cfg.backends[(p.rr.Add(1)-1)%uint64(len(cfg.backends))]
	ctx, cancel := context.WithTimeout(p.ctx, cfg.timeout)
	defer cancel()
	req, err := newRequest(ctx, base, c)
	if err != nil {
		p.fail(c, kindError, err)
		return buf
	}
	p.st.count(p.m.now(), kindSent)
	// Latency is measured on the monotonic clock; the injected clock only
	// places counts in slices.
	start := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		p.fail(c, p.classify(ctx, err), err)
		return buf
	}
	var truncated bool
	buf, truncated, err = readCapped(resp.Body, cfg.maxBody, buf)
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		p.fail(c, p.classify(ctx, err), err)
		return buf
	}
	p.st.observeDuration(lat)
	res := cfg.cmp.Compare(c.Live, compare.Response{
		Status:      resp.StatusCode,
		ContentType: resp.Header.Get("Content-Type"),
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
		p.st.sample(Mismatch{Time: now, RequestID: c.RequestID, Path: res.Path, Reason: res.Reason, Live: res.Live, Shadow: res.Shadow})
	}
	p.st.compared(now, lat, c.LiveLatency, res.Protocol)
	return buf
}

// classify tells a timeout from a transport error; a request aborted
// because the pool stopped is a drop.
func (p *pool) classify(ctx context.Context, err error) kind {
	var ne net.Error
	switch {
	case p.ctx.Err() != nil:
		return kindDropped
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	}
	return kindError
}

// fail records a copy that got no answer.
func (p *pool) fail(c *Copy, k kind, err error) {
	now := p.m.now()
	p.st.count(now, k)
	if k != kindDropped {
		p.st.failed(ErrorSample{Time: now, RequestID: c.RequestID, Error: err.Error()})
	}
}

// newRequest builds the shadow request of c to the backend at base.
func newRequest(ctx context.Context, base string, c *Copy) (*http.Request, error) {
	uri := c.URI
	if !strings.HasPrefix(uri, "/") {
		uri = "/" + uri
	}
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	var body io.Reader = http.NoBody
	if len(c.Body) > 0 {
		body = bytes.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+uri, body)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(c.Headers); i += 2 {
		name, value := c.Headers[i], c.Headers[i+1]
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Add(name, value)
	}
	if c.RequestID != "" {
		req.Header.Set("X-Request-Id", c.RequestID)
	}
	req.Header.Set("X-Model-Shadow", "true")
	return req, nil
}

// readCapped reads r into buf[:0] up to limit bytes. truncated reports
// that r held more; buf then holds the first limit bytes.
func readCapped(r io.Reader, limit int64, buf []byte) (_ []byte, truncated bool, _ error) {
	buf = buf[:0]
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
