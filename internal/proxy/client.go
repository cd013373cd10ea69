package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/proxy/policy"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// The upstream side of the proxy is its own small HTTP/1.1 client rather
// than fasthttp's HostClient, because the proxy needs what HostClient
// gives only at a cost on every request: the backend's response headers
// read straight into the client's response, a body copied at once when it
// arrived whole with the headers and streamed, with an idle timeout per
// read, when it did not, and connection deadlines that are not reset (a
// runtime timer update) for every request.

const (
	// maxIdleConn is how long a connection may sit unused in the pool
	// before it is closed rather than reused.
	maxIdleConn = 10 * time.Second
	// maxDeadlineSlack bounds how late a deadline may fire (see
	// upConn.setDeadline).
	maxDeadlineSlack = 20 * time.Millisecond
)

// connPool is one backend's keep-alive connections.
type connPool struct {
	addr string
	// secure: the backend is https; tls is the config its new connections
	// use (swapped when the deployment's tls files change, see SetRoutes).
	secure bool
	tls    atomic.Pointer[tls.Config]
	// dial opens the TCP connection (the event loops use it alone, for
	// plain backends); connect adds TLS through tlsconf.Dialer.
	dial dialFunc
	set  *connSet
	max  int // connections at most, busy or idle

	mu      sync.Mutex
	retired bool      // the backend left the routes: no more pooling
	idle    []*upConn // least recently used first
	open    int       // idle and busy connections, and dials under way
	waiters []chan *upConn
}

func newConnPool(addr string, secure bool, dial dialFunc, set *connSet) *connPool {
	return &connPool{addr: addr, secure: secure, dial: dial, set: set, max: maxConnsPerBackend}
}

// tlsConfig is the config of the next connection; nil for plain HTTP.
func (p *connPool) tlsConfig() *tls.Config {
	if !p.secure {
		return nil
	}
	return p.tls.Load()
}

// upConn is one connection to a backend with its buffers and the framing
// of the response body being read on it.
type upConn struct {
	net.Conn
	pool *connPool
	br   *bufio.Reader
	bw   *bufio.Writer

	// pre holds what an event loop had read of the connection before it
	// handed it over (br reads it first); bytes left in it are bytes left
	// after an answer, as in br.
	pre *bytes.Reader
	// raw is the socket under the connection (TLS included), for quiet;
	// nil where there is none.
	raw     syscall.RawConn
	peek    func(fd uintptr) bool
	isQuiet bool

	lastUsed int64 // unix ns, when it last went back to the pool
	deadline int64 // unix ns, the deadline set on Conn; 0: none
	reused   bool  // it served a request before this one

	body bodyReader
}

// Close closes the connection and forgets it for Shutdown's cut.
func (c *upConn) Close() error {
	c.pool.set.remove(c)
	return c.Conn.Close()
}

// setDeadline makes the connection's read and write deadline fall in
// [want, want+slack] (unix ns). Moving a deadline updates a runtime timer;
// a deadline already in that range is left alone, so that a busy keep-alive
// connection resets it about once per slack instead of once per request,
// at the price of timing out up to slack late.
func (c *upConn) setDeadline(want, slack int64) error {
	if c.deadline >= want && c.deadline <= want+slack {
		return nil
	}
	c.deadline = want + slack
	return c.Conn.SetDeadline(time.Unix(0, c.deadline))
}

// deadlineSlack is the slack allowed on a timeout of d: a thirty-second of
// it, at most maxDeadlineSlack.
func deadlineSlack(d time.Duration) int64 {
	return int64(min(d/32, maxDeadlineSlack))
}

// acquire returns a connection for one request: the most recently used
// idle one, else a new one (fresh forces that), else, at the limit, the
// first one released before deadline. A dial
// failure is a *dialError: nothing was sent.
func (p *connPool) acquire(now int64, deadline time.Time, fresh bool) (*upConn, error) {
	p.mu.Lock()
	if !fresh {
		if c := p.popIdleLocked(now); c != nil {
			p.mu.Unlock()
			return c, nil
		}
	}
	if p.open < p.max {
		p.open++
		p.mu.Unlock()
		return p.dialSlot(deadline)
	}
	// Every connection is busy. Wait for one, within the request's time.
	ch := make(chan *upConn, 1)
	p.waiters = append(p.waiters, ch)
	p.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case c := <-ch:
		if c == nil { // a slot: a connection was closed
			return p.dialSlot(deadline)
		}
		return c, nil
	case <-timer.C:
	}
	p.mu.Lock()
	for i, w := range p.waiters {
		if w == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil, ErrBackendBusy
		}
	}
	p.mu.Unlock()
	// Handed something just as the wait ended: pass it on.
	if c := <-ch; c != nil {
		p.release(c, time.Now().UnixNano())
	} else {
		p.freeSlot()
	}
	return nil, ErrBackendBusy
}

// popIdleLocked takes the most recently used idle connection that has not
// been idle too long; it closes those that have (the older ones with them).
func (p *connPool) popIdleLocked(now int64) *upConn {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	c := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	if now-c.lastUsed <= int64(maxIdleConn) {
		if !c.quiet() {
			// Closed by the backend while idle, or holding bytes nobody
			// asked for: never reused. The next idle one may do.
			p.open--
			go closeAll([]*upConn{c})
			return p.popIdleLocked(now)
		}
		return c
	}
	// c is the newest: every idle connection is stale.
	stale := append(p.idle, c)
	p.idle = nil
	p.open -= len(stale)
	go closeAll(stale)
	return nil
}

func closeAll(conns []*upConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// dialSlot connects, in a slot already counted in open.
func (p *connPool) dialSlot(deadline time.Time) (*upConn, error) {
	c, err := p.connect(deadline)
	if err != nil {
		p.freeSlot()
		return nil, err
	}
	return c, nil
}

func (p *connPool) connect(deadline time.Time) (*upConn, error) {
	if time.Until(deadline) <= 0 {
		return nil, &dialError{fasthttp.ErrDialTimeout}
	}
	raw, err := tlsconf.Dialer{Raw: p.dial}.Dial(p.addr, p.tlsConfig(), maxDialTimeout, deadline)
	if err != nil {
		return nil, &dialError{err}
	}
	c := newUpConn(raw, p)
	p.set.add(c)
	return c, nil
}

func newUpConn(c net.Conn, p *connPool) *upConn {
	uc := &upConn{
		Conn: c,
		pool: p,
		br:   bufio.NewReaderSize(c, bufferSize),
		bw:   bufio.NewWriterSize(c, bufferSize),
	}
	uc.setRaw()
	return uc
}

// setRaw finds the socket under the connection, for quiet.
func (c *upConn) setRaw() {
	raw := c.Conn
	if tc, ok := raw.(*tls.Conn); ok {
		raw = tc.NetConn()
	}
	if sc, ok := raw.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.raw, c.peek = rc, c.peekIdle
		}
	}
}

// release puts a connection whose exchange ended cleanly at now (unix ns)
// back in the pool, or hands it to a request waiting for one.
func (p *connPool) release(c *upConn, now int64) {
	c.lastUsed = now
	c.reused = true
	p.mu.Lock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		w <- c
		return
	}
	if p.retired {
		p.open--
		p.mu.Unlock()
		_ = c.Close()
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

// reserve counts a connection the event loops open and keep themselves
// (see loop.go) against the limit; false at the limit or once the backend
// left the routes. freeSlot gives the slot back.
func (p *connPool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.retired || p.open >= p.max {
		return false
	}
	p.open++
	return true
}

// isRetired reports whether the backend left the routes.
func (p *connPool) isRetired() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retired
}

// isRetiredOrAwaited reports whether the backend left the routes or a
// request waits for a connection slot.
func (p *connPool) isRetiredOrAwaited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retired || len(p.waiters) > 0
}

// discard closes a connection that cannot be reused and frees its slot.
func (p *connPool) discard(c *upConn) {
	_ = c.Close()
	p.freeSlot()
}

func (p *connPool) freeSlot() {
	p.mu.Lock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		w <- nil // the waiter dials in this slot
		return
	}
	p.open--
	p.mu.Unlock()
}

// retire closes the idle connections; busy ones finish their exchange and
// are closed then.
func (p *connPool) retire() {
	p.mu.Lock()
	p.retired = true
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	p.mu.Unlock()
	closeAll(idle)
}

// pruneIdle closes the connections idle for longer than maxIdleConn, so
// that an unused backend does not keep sockets its server has closed.
func (p *connPool) pruneIdle(now int64) {
	p.mu.Lock()
	var stale []*upConn
	kept := p.idle[:0]
	for _, c := range p.idle {
		if now-c.lastUsed > int64(maxIdleConn) {
			stale = append(stale, c)
		} else {
			kept = append(kept, c)
		}
	}
	clear(p.idle[len(kept):])
	p.idle = kept
	p.open -= len(stale)
	p.mu.Unlock()
	closeAll(stale)
}

// errStale marks a failure of a reused connection before any byte of the
// response: the backend had closed it while it sat in the pool (uvicorn
// closes idle connections after 5 s, gunicorn after 2 s).
type errStale struct{ err error }

func (e *errStale) Error() string { return "stale keep-alive connection: " + e.err.Error() }
func (e *errStale) Unwrap() error { return e.err }

func isStale(err error) bool {
	var stale *errStale
	return errors.As(err, &stale)
}

// roundTrip sends req on a connection from p (a new one when fresh) and
// reads the response headers into resp before deadline (slack as in
// setDeadline); now is the request's start (unix ns). On success the
// connection is returned with the body framing set up (c.body); the caller
// reads the body and then calls finish. A failure is classified for the
// retry policy: a *dialError (nothing sent) or an *errStale (a reused
// connection broke before any byte of the answer).
func (p *connPool) roundTrip(now int64, req *fasthttp.Request, resp *fasthttp.ResponseHeader, deadline time.Time, slack int64, fresh bool) (*upConn, error) {
	c, err := p.acquire(now, deadline, fresh)
	if err != nil {
		return nil, err
	}
	if err = c.exchange(req, resp, deadline.UnixNano(), slack); err != nil {
		p.discard(c)
		return nil, err
	}
	return c, nil
}

// quiet reports whether an idle connection has nothing to read: no bytes
// the backend sent after its last answer (they would be taken for the next
// answer, another client's) and no end of stream (the backend closed it;
// a request written to it would fail, and a POST could not be retried).
// One non-blocking peek at the socket; a connection it cannot peek at
// counts as quiet.
func (c *upConn) quiet() bool {
	if c.unread() {
		return false
	}
	if c.raw == nil {
		return true
	}
	c.isQuiet = true
	_ = c.raw.Read(c.peek)
	return c.isQuiet
}

// unread reports whether bytes the connection received wait in its
// buffers.
func (c *upConn) unread() bool {
	return c.br.Buffered() > 0 || c.pre != nil && c.pre.Len() > 0
}

// peekIdle is quiet's look at the socket (made once per connection, as
// c.peek, so that quiet allocates nothing).
func (c *upConn) peekIdle(fd uintptr) bool {
	var buf [1]byte
	n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	c.isQuiet = n < 0 && (err == syscall.EAGAIN || err == syscall.EINTR)
	return true // never wait for readiness
}

// exchange writes the request and reads the response headers, skipping
// interim (1xx) responses other than 101. An answer whose head the policy
// refuses (policy.CheckResponseHead) is an error: the connection is then
// discarded.
func (c *upConn) exchange(req *fasthttp.Request, resp *fasthttp.ResponseHeader, deadline, slack int64) error {
	if err := c.setDeadline(deadline, slack); err != nil {
		return err
	}
	err := req.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		c.bw.Reset(c.Conn)
		return c.classify(err)
	}
	upgrade := len(req.Header.Peek(fasthttp.HeaderUpgrade)) > 0
	for {
		raw, err := peekHead(c.br)
		if err != nil {
			return c.classify(err)
		}
		if err := policy.CheckResponseHead(raw, upgrade); err != nil {
			return err
		}
		if err := resp.Read(c.br); err != nil {
			return c.classify(err)
		}
		if st := resp.StatusCode(); st >= 200 || st == fasthttp.StatusSwitchingProtocols {
			break
		}
	}
	c.body.reset(c, req, resp)
	return nil
}

// errHeadTooLarge: a backend's answer head does not fit the read buffer.
var errHeadTooLarge = errors.New("backend answer headers too large")

// peekHead waits until br holds a whole answer head and returns it
// (valid until br is read), without consuming it; empty lines before it
// are consumed.
func peekHead(br *bufio.Reader) ([]byte, error) {
	for n := 1; ; {
		// Wait for n bytes, then look at all that is buffered.
		if _, err := br.Peek(n); err != nil {
			return nil, err
		}
		buf, _ := br.Peek(br.Buffered())
		if k := policy.LeadingEmptyLines(buf); k > 0 {
			_, _ = br.Discard(k) // as the loops do (answer)
			n = 1
			continue
		}
		if end := policy.HeadEnd(buf); end >= 0 {
			return buf[:end], nil
		}
		if len(buf) >= br.Size() {
			return nil, errHeadTooLarge
		}
		n = len(buf) + 1
	}
}

// classify marks a broken reused connection's error as stale; fasthttp
// reports a connection closed before the first response byte as io.EOF.
func (c *upConn) classify(err error) error {
	if c.reused && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
		return &errStale{err}
	}
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("backend closed the connection before answering: %w", io.ErrUnexpectedEOF)
	}
	return err
}

// finish ends an exchange at now (unix ns) once its body was read to the
// end (or not at all, clean false): the connection goes back to the pool
// when the body ended cleanly and neither side asked to close it.
func (c *upConn) finish(now int64, clean bool) {
	// Bytes past the end of the answer (a body on a HEAD or 204, a
	// backend out of step) would be read as the next answer, another
	// client's: such a connection is closed, never reused.
	if clean && c.body.done && !c.body.closeAfter && !c.unread() {
		c.pool.release(c, now)
		return
	}
	c.pool.discard(c)
}
