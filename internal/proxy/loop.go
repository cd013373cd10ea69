package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/modelgate/modelgate/third_party/gnet"
	"github.com/modelgate/modelgate/third_party/gnet/pkg/logging"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"github.com/modelgate/modelgate/internal/proxy/policy"
)

// The event loops serve the common request the way nginx does: a few
// threads, each waiting on epoll for every connection it owns, client and
// backend alike, and reading a socket only when it is readable. Go's model
// (a goroutine per connection, parked in the netpoller) costs a failed
// read, a park and a wake-up on another thread per request and side; on a
// loaded machine those context switches, not the HTTP work, bound the
// requests per second (docs/benchmarks.md).
//
// A loop serves a request whose headers and body it holds whole, on a
// plain TCP connection, forwarded to a plain-HTTP backend, and whose
// answer comes whole within loopMaxBody. Anything else leaves the loop
// for the goroutine path, which handles every case:
//   - before the request is routed or sent (chunked or oversized bodies,
//     Expect, HEAD, HTTP/1.0, https backends, a backend at its connection
//     limit, a malformed request): the client connection, with the bytes
//     not yet consumed, goes to fasthttp's ServeConn for the rest of its
//     life;
//   - once the backend answered with a stream (chunked, server-sent
//     events, until close, or larger than loopMaxBody): both connections
//     leave the loop, a goroutine streams the answer as the goroutine path
//     does (respond) and the client connection then goes to ServeConn.
//
// Everything a loop does is non-blocking: connecting to a backend happens
// on a goroutine that enrolls the connection in the loop when it is open,
// and timeouts are checked by a ticker that runs a scan on every loop.

const (
	// loopMaxBody is the largest request or response body a loop holds;
	// larger ones are streamed by the goroutine path.
	loopMaxBody = 256 << 10
	// loopTick is how often in-flight exchanges are checked for their
	// deadlines (and how late a timeout may fire); idle connections are
	// checked every loopIdleScan ticks.
	loopTick     = 10 * time.Millisecond
	loopIdleScan = 100
	// loopMaxPipelined is how much a loop reads of a client beyond the
	// request in flight before it stops reading it until the answer is out
	// (gnet reads up to 64 KiB more in the read that crosses it).
	loopMaxPipelined = 64 << 10
)

// evloops is the Server's set of event loops.
type evloops struct {
	gnet.BuiltinEventEngine
	s   *Server
	cli *gnet.Client

	mu     sync.Mutex
	states map[gnet.EventLoop]*loopState

	draining  atomic.Bool
	fronts    atomic.Int64 // client connections the loops hold
	stop      chan struct{}
	done      chan struct{}
	ctxs      sync.Pool
	closeOnce sync.Once

	// served counts the exchanges a loop answered itself (tests check that
	// the loops, not the goroutine path, served what they should).
	served atomic.Uint64
	// ringSends counts the messages sent through a send ring, ringShort
	// those of them the socket took only in part.
	ringSends, ringShort atomic.Uint64

	directSends bool      // no send rings (Options.DirectSends)
	numLoops    int       // event loops running
	batchStates sync.Map  // gnet.EventLoop -> *loopState, read by OnBatchEnd without l.mu
	ringOnce    sync.Once // logs once that rings are unavailable
}

// loopState is one loop's own: only that loop's goroutine touches it, and
// the frontConns and backConns it holds. gnet calls every callback of a
// connection on the loop that owns it; the goroutines that connect to a
// backend and tick the deadlines hand their work to the loop (Execute,
// Enroll) rather than touching its state; and a connection leaves a loop
// only by being detached (a duplicate of its socket) for the goroutine
// path, after which the loop marks it gone and never touches it again.
type loopState struct {
	// peek is idleQuiet's byte.
	peek   [1]byte
	el     gnet.EventLoop
	fronts map[*frontConn]struct{}
	backs  map[*backConn]struct{}
	idle   map[*backend][]*backConn
	rd     bytes.Reader
	uri    fasthttp.URI // checks a request's Host and target (nextOne)
	br     *bufio.Reader
	bw     *bufio.Writer
	out    appendWriter
	ticks  int

	// cur is the connection whose callback is running; closing it is left
	// to that callback's return (closeCur), since gnet still uses it after.
	cur      gnet.Conn
	closeCur bool

	// The messages a batch produced, sent together when it ends
	// (sendring_linux.go); without a ring each is sent at once. Each
	// connection has at most one queued message (queued).
	ring   *sendRing
	sends  []ringSend
	owners []sendOwner
	arena  []byte // the queued messages' bytes
	spare  queuedSends
}

// queuedSends is a second set of queue buffers: the follow-ups of a flush
// (a retry, an error answer) queue while the flushed set is handled.
type queuedSends struct {
	sends  []ringSend
	owners []sendOwner
	arena  []byte
}

// sendOwner is the connection a queued message is for.
type sendOwner struct {
	fc *frontConn
	bc *backConn
}

// queueSend queues out (copied) for fd, to be sent when the batch ends.
func (ls *loopState) queueSend(fd int, out []byte, o sendOwner) {
	start := len(ls.arena)
	ls.arena = append(ls.arena, out...)
	ls.sends = append(ls.sends, ringSend{fd: fd, buf: ls.arena[start:len(ls.arena):len(ls.arena)]})
	ls.owners = append(ls.owners, o)
}

// close closes a connection of this loop: at once, or, for the one whose
// callback is running, when it returns.
func (ls *loopState) close(c gnet.Conn) {
	if c == ls.cur {
		ls.closeCur = true
		return
	}
	_ = ls.el.Close(c)
}

// appendWriter collects what a bufio.Writer flushes, so that a message is
// written to a connection in one call.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

// serialize returns what write puts through ls.bw, valid until the next
// serialize.
func (ls *loopState) serialize(write func(*bufio.Writer) error) ([]byte, error) {
	ls.out.b = ls.out.b[:0]
	ls.bw.Reset(&ls.out)
	err := write(ls.bw)
	if err == nil {
		err = ls.bw.Flush()
	}
	return ls.out.b, err
}

// frontConn is a client connection in a loop, with the exchange it is
// serving, if any.
type frontConn struct {
	gc     gnet.Conn
	ls     *loopState
	remote net.Addr
	ctx    *fasthttp.RequestCtx

	x          *exchange // the exchange in flight; nil when idle
	ep         *endpoint
	dep        *deployment
	b          *backend
	bc         *backConn
	override   bool
	closeAfter bool
	tries      policy.Attempts // the retries the exchange used
	replay     bool            // its request may be sent again (policy.Replayable)
	deadline   int64           // unix ns: response headers (then body) due
	lastActive int64           // unix ns: last request or answer, for the idle timeout
	partial    int64           // unix ns: when an incomplete request started; 0: none
	state      frontState
	slotMoved  bool // its connection slot was given back, or went with it to the goroutine path
	serving    bool // next is running for it: a nested call only sets again
	again      bool // a request may wait in its buffer: next goes on
	queued     bool // an answer waits in the loop's send queue
	closed     bool // gnet closed it (its descriptor may be reused)
}

// frontState is where a client connection is in its life on its loop.
// Whether a request is in flight is x (set from the request's dispatch to
// its answer); state says whether the loop reads the connection at all.
type frontState uint8

const (
	// frontOpen: the loop reads the client; a request may be in flight,
	// with what the client pipelines behind it buffered.
	frontOpen frontState = iota
	// frontPaused: a request is in flight and loopMaxPipelined bytes wait
	// behind it: the loop does not read the client until the answer is
	// out and the buffer fell below that (replyAt).
	frontPaused
	// frontGone: closed, or handed over to the goroutine path: the loop
	// never touches it again (its callbacks return at once).
	frontGone
)

// backConn is a backend connection owned by a loop.
type backConn struct {
	gc       gnet.Conn // nil while connecting
	ls       *loopState
	b        *backend
	fc       *frontConn // the exchange it carries; nil when idle
	reused   bool
	lastUsed int64
	hdrLen   int // > 0 once the response headers were read
	mode     bodyMode
	left     int
	close    bool // cannot carry another exchange
	gone     bool // closed, abandoned or handed off
	queued   bool // its request waits in the loop's send queue
	closed   bool // gnet closed it (its descriptor may be reused)
}

func newEvloops(s *Server, n int, directSends bool) (*evloops, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	l := &evloops{s: s, states: map[gnet.EventLoop]*loopState{}, stop: make(chan struct{}), done: make(chan struct{}), directSends: directSends, numLoops: n}
	l.ctxs.New = func() any { return new(fasthttp.RequestCtx) }
	cli, err := gnet.NewClient(l,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(n),
		// Locked to threads. Unlocked loops switch context less (gnet
		// yields before each wait, and a locked goroutine's yield hands
		// its thread's P to another thread and back: 0.81 switches per
		// request locked, 0.56 unlocked), but an unlocked loop waits in
		// the run queue behind other goroutines after each yield: p99 at
		// 32 connections was 3.5-4.4 ms unlocked, 2.1 ms locked.
		gnet.WithLockOSThread(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(gnetLogger{s.log}),
		gnet.WithLogLevel(logging.ErrorLevel),
	)
	if err != nil {
		return nil, fmt.Errorf("event loops: %w", err)
	}
	if err := cli.Start(); err != nil {
		return nil, fmt.Errorf("event loops: %w", err)
	}
	l.cli = cli
	go l.tick()
	return l, nil
}

// enroll hands an accepted client connection to a loop. It closes c (the
// loop holds a duplicate of its socket).
func (l *evloops) enroll(c *net.TCPConn) {
	fc := &frontConn{remote: c.RemoteAddr()}
	_, err := l.cli.EnrollContext(c, fc)
	if err == nil && fc.gc == nil {
		// gnet waits for the loop's registration but does not report its
		// failure (epoll_ctl, under resource exhaustion): the connection was
		// closed without OnOpen or OnClose. (OnOpen, which sets gc, runs
		// before EnrollContext returns.)
		err = errors.New("the event loop could not register the connection")
	}
	if err != nil {
		_ = c.Close()
		l.s.releaseSlot()
		l.s.log.LogAttrs(context.Background(), slog.LevelWarn, "event loop refused a connection", slog.String("error", err.Error()))
	}
}

func (l *evloops) state(el gnet.EventLoop) *loopState {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.states[el]
	if ls == nil {
		ls = &loopState{
			el:     el,
			fronts: map[*frontConn]struct{}{},
			backs:  map[*backConn]struct{}{},
			idle:   map[*backend][]*backConn{},
			br:     bufio.NewReaderSize(nil, bufferSize),
			bw:     bufio.NewWriterSize(nil, bufferSize),
		}
		if !l.directSends {
			ring, err := newSendRing(256)
			if err == nil {
				ls.ring = ring
			} else {
				l.ringOnce.Do(func() {
					l.s.log.LogAttrs(context.Background(), slog.LevelInfo,
						"event loops send each message with a system call of its own (slower under load)", slog.String("reason", err.Error()))
				})
			}
		}
		l.states[el] = ls
		l.batchStates.Store(el, ls)
	}
	return ls
}

// OnOpen: a client connection was enrolled, or a backend connection opened.
func (l *evloops) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	switch v := c.Context().(type) {
	case *frontConn:
		v.gc = c
		v.ls = l.state(c.EventLoop())
		v.ls.fronts[v] = struct{}{}
		v.lastActive = time.Now().UnixNano()
		v.ctx = l.ctxs.Get().(*fasthttp.RequestCtx)
		v.ctx.Init2(addrConn{remote: v.remote}, nil, false)
		l.fronts.Add(1)
		if l.draining.Load() {
			v.state = frontGone
			return nil, gnet.Close
		}
	case *backConn:
		v.gc = c
		if v.gone {
			// Its exchange ended (timeout, client gone) while it connected.
			v.b.conns.freeSlot()
			v.gc = nil
			return nil, gnet.Close
		}
		v.ls.backs[v] = struct{}{}
		if fc := v.fc; fc != nil {
			l.send(fc, v)
		} else {
			// Opened ahead of any request (preconnect.go): idle until one
			// comes, and, like a reused connection, possibly closed by the
			// backend meanwhile.
			v.lastUsed = time.Now().UnixNano()
			v.reused = true
			v.ls.putIdle(v)
		}
	}
	return nil, gnet.None
}

// OnClose: a connection closed, by its peer, an error or the loop.
func (l *evloops) OnClose(c gnet.Conn, err error) gnet.Action {
	// gnet closes the descriptor after this returns: a message still queued
	// for it goes first, as gnet's own buffered bytes do.
	switch v := c.Context().(type) {
	case *frontConn:
		if v.queued {
			l.flushSends(v.ls)
		}
		v.closed = true
		l.frontClosed(v, err)
	case *backConn:
		if v.gc == nil { // closed before it was registered (see OnOpen)
			return gnet.None
		}
		if v.queued {
			l.flushSends(v.ls)
		}
		v.closed = true
		delete(v.ls.backs, v)
		if v.gone {
			return gnet.None
		}
		v.gone = true
		v.b.conns.freeSlot()
		if fc := v.fc; fc != nil {
			v.fc = nil
			if err == nil {
				err = errors.New("EOF")
			}
			l.backendFailed(fc, v, err)
		} else {
			l.dropIdle(v)
		}
	}
	return gnet.None
}

func (l *evloops) OnTraffic(c gnet.Conn) gnet.Action {
	var ls *loopState
	switch v := c.Context().(type) {
	case *frontConn:
		if v.state == frontGone {
			return gnet.Close
		}
		if v.x != nil {
			// Pipelined: the next request waits in the buffer. Past
			// loopMaxPipelined bytes the loop stops reading the client
			// until its answer is out (replyAt), so that what a connection
			// makes the gateway hold stays bounded: the client's further
			// writes wait in the kernel's socket buffers, then block.
			if v.state == frontOpen && c.InboundBuffered() >= loopMaxPipelined {
				if err := c.PauseRead(); err != nil {
					return gnet.Close
				}
				v.state = frontPaused
			}
			return gnet.None
		}
		ls = v.ls
		ls.cur = c
		l.next(v)
	case *backConn:
		if v.gone {
			return gnet.Close
		}
		ls = v.ls
		if v.fc == nil {
			// Bytes on an idle connection: it cannot be trusted anymore.
			l.dropIdle(v)
			ls.closeBack(v)
			return gnet.Close
		}
		ls.cur = c
		l.answer(v)
	default:
		return gnet.None
	}
	ls.cur = nil
	if ls.closeCur {
		ls.closeCur = false
		return gnet.Close
	}
	return gnet.None
}

// next serves the requests at the head of fc's buffer, one after another,
// for as long as each is answered at once (a local error, say); an answer
// that comes later (from a backend) calls next again. It loops rather than
// recurses: a client may pipeline any number of requests that are answered
// locally, and each answer asks for the next request (replyAt).
func (l *evloops) next(fc *frontConn) {
	if fc.serving {
		fc.again = true
		return
	}
	fc.serving = true
	for {
		fc.again = false
		l.nextOne(fc)
		if !fc.again || fc.state == frontGone {
			break
		}
	}
	fc.serving = false
}

// nextOne reads and serves the request at the head of fc's buffer, if it
// is whole.
func (l *evloops) nextOne(fc *frontConn) {
	if fc.queued {
		// The last answer is still queued: it goes before anything else
		// happens on the connection (it may even leave the loop).
		l.flushSends(fc.ls)
		if fc.state == frontGone {
			return
		}
	}
	buf, _ := fc.gc.Peek(-1)
	if k := policy.LeadingEmptyLines(buf); k > 0 {
		_, _ = fc.gc.Discard(k)
		buf, _ = fc.gc.Peek(-1)
	}
	if len(buf) == 0 {
		fc.partial = 0
		return
	}
	// The head ends where fasthttp's parser ends it (policy.HeadEnd), so
	// that the engines frame every request alike.
	end := policy.HeadEnd(buf)
	if end < 0 {
		if len(buf) >= bufferSize {
			// fasthttp answers it (431).
			l.handoffFront(fc)
			return
		}
		if fc.partial == 0 {
			fc.partial = time.Now().UnixNano()
		}
		return
	}
	ctx := fc.ctx
	ctx.Request.Reset()
	ctx.Response.Reset()
	ctx.Response.Header.SetNoDefaultContentType(true)
	ls := fc.ls
	ls.rd.Reset(buf[:end])
	ls.br.Reset(&ls.rd)
	h := &ctx.Request.Header
	if err := h.Read(ls.br); err != nil {
		// fasthttp parses a head whose lines end in bare LFs only when
		// more bytes follow it (here it meets the end: EOF), and the
		// goroutine path would wait for them: the policy refuses such a
		// head at once. Any other error is fasthttp's to answer, as on
		// the goroutine path.
		if errors.Is(err, io.EOF) {
			if perr := policy.CheckRequestHead(buf[:end], l.s.reqLimits); perr != nil {
				x := l.s.getExchange()
				x.start = time.Now()
				l.s.requestID(ctx, x)
				l.s.refuse(ctx, x, perr)
				fc.closeAfter = true
				l.reply(fc)
				return
			}
		}
		l.handoffFront(fc)
		return
	}
	n := h.ContentLength()
	if n == -2 {
		n = 0 // neither Content-Length nor Transfer-Encoding: a request without a body
	}
	if n < 0 || n > loopMaxBody || n > l.s.srv.MaxRequestBodySize && l.s.srv.MaxRequestBodySize > 0 ||
		!h.IsHTTP11() || h.IsHead() || h.IsConnect() || len(h.PeekBytes(hdrExpect)) > 0 {
		l.handoffFront(fc)
		return
	}
	// fasthttp's server refuses a request whose Host and target do not
	// parse as a URI (400, then it closes) before its handler runs; so do
	// the loops, with the same answer (FuzzEngines found the difference).
	if err := ls.uri.Parse(h.Host(), h.RequestURI()); err != nil {
		l.s.handleParseError(ctx, err)
		fc.closeAfter = true
		l.reply(fc)
		return
	}
	total := end + n
	if len(buf) < total {
		if fc.partial == 0 {
			fc.partial = time.Now().UnixNano()
		}
		return
	}
	fc.partial = 0
	ctx.Request.SetBody(buf[end:total])
	fc.closeAfter = h.ConnectionClose() || l.draining.Load()

	s := l.s
	start := time.Now()
	now := start.UnixNano()
	x := s.getExchange()
	x.start = start
	ep, i, mirrors, override, ok := s.route(ctx, x)
	if !ok {
		_, _ = fc.gc.Discard(total)
		l.reply(fc)
		return
	}
	dep := ep.deps[i]
	if !dep.pool.loopable() {
		s.putExchange(x)
		l.handoffFront(fc)
		return
	}
	b := dep.pool.pick(now, nil)
	var bc *backConn
	if b != nil {
		if bc = ls.takeIdle(b, now); bc == nil {
			if !b.conns.reserve() {
				// At the limit: the goroutine path queues for a connection.
				s.putExchange(x)
				l.handoffFront(fc)
				return
			}
			bc = &backConn{ls: ls, b: b}
		}
	}
	_, _ = fc.gc.Discard(total)
	s.begin(ctx, x, ep, dep, mirrors)
	if b == nil {
		s.failUpstream(ctx, x, ep, dep, nil, ErrNoHealthyBackend, override)
		l.reply(fc)
		return
	}
	fc.x, fc.ep, fc.dep, fc.override, fc.tries = x, ep, dep, override, policy.Attempts{}
	fc.replay = replayable(h)
	fc.deadline = now + int64(dep.timeout) + deadlineSlack(dep.timeout)
	fc.lastActive = now
	l.dispatch(fc, b, bc)
}

// dispatch sends fc's request to b on bc, connecting bc first if it is new.
func (l *evloops) dispatch(fc *frontConn, b *backend, bc *backConn) {
	fc.b, fc.bc = b, bc
	bc.fc = fc
	bc.hdrLen = 0
	setTarget(&fc.ctx.Request, b, fc.x)
	if bc.gc != nil {
		l.send(fc, bc)
		return
	}
	l.connect(bc, fc.deadline)
}

// connect opens bc on a goroutine and enrolls it in bc's loop; OnOpen then
// sends the request waiting on it. A failure comes back to the loop.
func (l *evloops) connect(bc *backConn, deadline int64) {
	p := bc.b.conns
	el := bc.ls.el
	go func() {
		timeout := min(time.Until(time.Unix(0, deadline)), maxDialTimeout)
		var (
			c   net.Conn
			err error
		)
		if timeout <= 0 {
			err = fasthttp.ErrDialTimeout
		} else {
			c, err = p.dial(p.addr, timeout)
		}
		if err == nil {
			if _, tcp := c.(*net.TCPConn); !tcp {
				_ = c.Close()
				err = errors.New("event loop: backend connection is not TCP")
			}
		}
		if err == nil {
			var ch <-chan gnet.RegisteredResult
			if ch, err = el.Enroll(gnet.NewContext(context.Background(), bc), c); err == nil {
				if res := <-ch; res.Err != nil {
					err = res.Err
				}
			}
		}
		if err == nil {
			return
		}
		derr := &dialError{err}
		if e := el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			l.dialFailed(bc, derr)
			return nil
		})); e != nil {
			// The loops are stopping: nothing waits for this anymore.
			p.freeSlot()
		}
	}()
}

// send writes fc's request on bc. A write error closes bc (gnet does, and
// OnClose fails or retries the exchange).
func (l *evloops) send(fc *frontConn, bc *backConn) {
	out, err := bc.ls.serialize(fc.ctx.Request.Write)
	if err == nil {
		if ls := bc.ls; ls.ring != nil && bc.gc.OutboundBuffered() == 0 {
			ls.queueSend(bc.gc.Fd(), out, sendOwner{bc: bc})
			bc.queued = true
			return
		}
		_, _ = bc.gc.Write(out)
		return
	}
	bc.fc = nil
	bc.ls.closeBack(bc)
	l.fail(fc, err)
}

// dialFailed: bc could not connect. Like the goroutine path, the first
// failed connect is retried on another backend: nothing was sent.
func (l *evloops) dialFailed(bc *backConn, err error) {
	p := bc.b.conns
	p.freeSlot()
	fc := bc.fc
	if bc.gone || fc == nil {
		return
	}
	bc.gone = true
	bc.fc = nil
	now := time.Now().UnixNano()
	fc.dep.pool.failed(bc.b, now, err)
	if fc.tries.Next(policy.FailDial, fc.replay) == policy.RetryOther {
		if next := fc.dep.pool.pick(now, bc.b); next != nil {
			nbc := fc.ls.takeIdle(next, now)
			if nbc == nil && next.conns.reserve() {
				nbc = &backConn{ls: fc.ls, b: next}
			}
			if nbc != nil {
				l.dispatch(fc, next, nbc)
				return
			}
			err = ErrBackendBusy
			fc.b = next
		}
	}
	l.fail(fc, err)
}

// backendFailed: bc broke while carrying fc's exchange. A reused
// connection that broke before any byte of the answer may have been closed
// by the backend while idle, or the backend crashed on the request: the
// retry policy (policy.Attempts, shared with the goroutine path) sends it
// once more, on a new connection, only if it is safe to repeat.
func (l *evloops) backendFailed(fc *frontConn, bc *backConn, err error) {
	if fc.state == frontGone || fc.x == nil {
		return
	}
	failure := policy.FailOther
	if bc.reused && bc.hdrLen == 0 {
		failure = policy.FailStale
	}
	if fc.tries.Next(failure, fc.replay) == policy.RetryFresh {
		if bc.b.conns.reserve() {
			l.dispatch(fc, bc.b, &backConn{ls: fc.ls, b: bc.b})
			return
		}
		err = ErrBackendBusy
	} else {
		err = fmt.Errorf("backend closed the connection before answering: %w", err)
		fc.dep.pool.failed(bc.b, time.Now().UnixNano(), err)
	}
	l.fail(fc, err)
}

// fail answers fc's exchange with the error, as the goroutine path does.
func (l *evloops) fail(fc *frontConn, err error) {
	x, ep, dep, b := fc.x, fc.ep, fc.dep, fc.b
	fc.x, fc.bc = nil, nil
	fc.ctx.Response.Reset()
	fc.ctx.Response.Header.SetNoDefaultContentType(true)
	l.s.failUpstream(fc.ctx, x, ep, dep, b, err, fc.override)
	l.reply(fc)
}

// answer reads the backend's answer to fc's request on bc; once it is
// whole it goes to the client.
func (l *evloops) answer(bc *backConn) {
	fc := bc.fc
	buf, _ := bc.gc.Peek(-1)
	resp := &fc.ctx.Response
	if bc.hdrLen == 0 {
		upgrade := len(fc.ctx.Request.Header.Peek(fasthttp.HeaderUpgrade)) > 0
		for {
			if k := policy.LeadingEmptyLines(buf); k > 0 {
				_, _ = bc.gc.Discard(k)
				buf = buf[k:]
			}
			end := policy.HeadEnd(buf)
			if end < 0 {
				if len(buf) > bufferSize {
					l.badAnswer(bc, errHeadTooLarge)
					return
				}
				return
			}
			if err := policy.CheckResponseHead(buf[:end], upgrade); err != nil {
				l.badAnswer(bc, err)
				return
			}
			ls := bc.ls
			ls.rd.Reset(buf[:end])
			ls.br.Reset(&ls.rd)
			if err := resp.Header.Read(ls.br); err != nil {
				l.badAnswer(bc, err)
				return
			}
			if st := resp.StatusCode(); st < 200 && st != fasthttp.StatusSwitchingProtocols {
				_, _ = bc.gc.Discard(end)
				buf = buf[end:]
				continue
			}
			bc.hdrLen = end
			break
		}
		var framing bodyReader
		framing.reset(nil, &fc.ctx.Request, &resp.Header)
		bc.mode, bc.left, bc.close = framing.mode, int(framing.left), framing.closeAfter
		fc.dep.pool.succeeded(fc.b)
		// As on the goroutine path, only a body that came whole with the
		// headers is answered at once; any other is streamed as it comes.
		if bc.mode != bodyNone && (bc.mode != bodyFixed || len(buf)-bc.hdrLen < bc.left ||
			bytes.HasPrefix(resp.Header.ContentType(), strEventStream)) {
			l.handoffStream(fc, bc)
			return
		}
	}
	if len(buf) > bc.hdrLen+bc.left {
		bc.close = true // more than the answer: the connection is out of step
	}
	now := l.complete(fc, bc, buf[bc.hdrLen:bc.hdrLen+bc.left])
	_, _ = bc.gc.Discard(bc.hdrLen + bc.left)
	bc.fc = nil
	if bc.close {
		bc.ls.closeBack(bc)
		return
	}
	bc.reused = true
	bc.lastUsed = now
	bc.ls.putIdle(bc)
}

// complete sends the whole answer (headers parsed in fc's response) to
// the client and ends the exchange, as respond does for a body that came
// with its headers. It returns the time the answer was complete (unix ns),
// which also stands for when it was written: reading the clock costs.
func (l *evloops) complete(fc *frontConn, bc *backConn, body []byte) int64 {
	s := l.s
	x, dep := fc.x, fc.dep
	now := time.Now()
	ttfb := now.Sub(x.start)
	resp := &fc.ctx.Response
	status := resp.StatusCode()
	policy.StripResponseHopHeaders(&resp.Header, &x.scratch)
	resp.Header.SetCanonical(hdrRequestID, x.rid)
	resp.Header.SetCanonical(hdrDeployment, dep.header)
	if x.mc.ep != nil {
		x.mc.answered(&resp.Header, status, ttfb, false)
		x.mc.tee(body)
	}
	if bc.mode != bodyNone {
		resp.SetBodyRaw(body)
	}
	n := 0
	if bc.mode != bodyNone {
		n = len(body)
	}
	s.observeAt(x, dep, now.UnixNano(), status, ttfb, ttfb, fc.override, n)
	l.served.Add(1)
	fc.x, fc.bc = nil, nil
	mirrored := x.mc.ep != nil
	if mirrored {
		s.replying.Add(1)
	}
	l.replyAt(fc, now.UnixNano())
	if mirrored {
		// The answer goes out before the copy is handed off (handing off
		// may wait for room): sent now rather than at the batch's end.
		if fc.queued {
			l.flushSends(fc.ls)
		}
		// The answer is in the client's socket (or a goroutine writes it).
		x.mc.latency = ttfb
		s.handOff(x)
		s.replying.Add(-1)
	} else {
		s.putExchange(x)
	}
	return now.UnixNano()
}

// badAnswer: the backend's headers could not be read.
func (l *evloops) badAnswer(bc *backConn, err error) {
	fc := bc.fc
	bc.fc = nil
	bc.ls.closeBack(bc)
	fc.dep.pool.failed(bc.b, time.Now().UnixNano(), err)
	l.fail(fc, err)
}

// reply writes fc's response (in fc.ctx) to the client, then serves the
// next request if one is buffered.
func (l *evloops) reply(fc *frontConn) { l.replyAt(fc, time.Now().UnixNano()) }

// replyAt is reply at a time the caller already read (unix ns).
func (l *evloops) replyAt(fc *frontConn, now int64) {
	if fc.state == frontGone {
		return
	}
	resp := &fc.ctx.Response
	if fc.closeAfter {
		resp.SetConnectionClose()
	} else if resp.ConnectionClose() {
		fc.closeAfter = true // a refused request (policy) closes its connection
	}
	out, err := fc.ls.serialize(resp.Write)
	resp.SetBodyRaw(nil)
	fc.lastActive = now
	if err != nil {
		fc.state = frontGone
		fc.ls.close(fc.gc)
		return
	}
	if !l.writeFront(fc, out) || fc.closeAfter {
		if fc.state != frontGone {
			fc.state = frontGone
			fc.ls.close(fc.gc)
		}
		return
	}
	if fc.gc.InboundBuffered() > 0 {
		l.next(fc)
	}
	// Read the client again once what it pipelined fell below the bound,
	// or nothing is in flight (next then consumes or hands over what is
	// buffered): resuming after every answer would let a flood of small
	// requests grow the buffer by a read per request.
	if fc.state == frontPaused && (fc.x == nil || fc.gc.InboundBuffered() < loopMaxPipelined) {
		fc.state = frontOpen
		if err := fc.gc.ResumeRead(); err != nil {
			fc.state = frontGone
			fc.ls.close(fc.gc)
		}
	}
}

// writeFront writes out to the client, on the socket itself rather than
// through gnet, so that gnet never holds bytes for a client: a connection
// can then be closed or handed over at any time without losing any. With a
// send ring the answer is queued and sent when the batch ends; a client
// that does not take all of it at once (a slow reader) then leaves the loop
// as it does here: a goroutine writes the rest and serves the connection
// on. false: the connection is no longer the loop's.
func (l *evloops) writeFront(fc *frontConn, out []byte) bool {
	ls := fc.ls
	if fc.queued {
		l.flushSends(ls) // the connection's answers go out in order
		if fc.state == frontGone {
			return false
		}
	}
	if ls.ring != nil && !fc.closeAfter {
		ls.queueSend(fc.gc.Fd(), out, sendOwner{fc: fc})
		fc.queued = true
		return true
	}
	return l.writeFrontNow(fc, out)
}

// writeFrontNow is writeFront without the queue.
func (l *evloops) writeFrontNow(fc *frontConn, out []byte) bool {
	fd := fc.gc.Fd()
	for len(out) > 0 {
		// sendmsg rather than write: a socket call skips the VFS layer,
		// as gnet's (patched) reads and writes do.
		n, err := unix.SendmsgN(fd, out, nil, nil, unix.MSG_NOSIGNAL)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return false // the client is gone; closing records an exchange in flight
		}
		out = out[n:]
	}
	if len(out) == 0 {
		return true
	}
	return l.slowFront(fc, out)
}

// slowFront hands a client that did not take all of its answer to a
// goroutine, which writes rest and serves the connection on. It returns
// false: the connection is no longer the loop's.
func (l *evloops) slowFront(fc *frontConn, rest []byte) bool {
	rest = bytes.Clone(rest)
	in, _ := fc.gc.Peek(-1)
	pre := bytes.Clone(in)
	nc, err := l.detachFront(fc)
	if err != nil {
		return false
	}
	fc.state = frontGone
	fc.ls.close(fc.gc)
	closeAfter := fc.closeAfter
	l.s.handover(func() { l.s.finishWrite(nc, rest, pre, closeAfter) })
	return false
}

// OnBatchEnd sends what the loop's batch queued (gnet.BatchEnder).
func (l *evloops) OnBatchEnd(el gnet.EventLoop) {
	if v, ok := l.batchStates.Load(el); ok {
		if ls := v.(*loopState); len(ls.sends) > 0 {
			l.flushSends(ls)
		}
	}
}

// flushSends sends every queued message of ls through its ring, then
// handles each outcome as a direct send's: a short answer hands its client
// to a goroutine, a short request goes on through gnet's buffer, a failed
// send closes its connection. Handling an outcome can queue more (a retry,
// an error answer) and flush again (a connection's next request flushes
// its queued answer first); so a flush takes the queue as it is, leaves an
// empty one to be queued into and flushed meanwhile, and loops until
// nothing is queued.
func (l *evloops) flushSends(ls *loopState) {
	for len(ls.sends) > 0 {
		sends, owners, arena := ls.sends, ls.owners, ls.arena
		ls.sends, ls.owners, ls.arena = ls.spare.sends[:0], ls.spare.owners[:0], ls.spare.arena[:0]
		ls.spare = queuedSends{} // in use now: a nested flush must not take it
		for i, o := range owners {
			// A closed connection's descriptor may belong to another one
			// by now; an abandoned backend exchange wants no request.
			if o.fc != nil && o.fc.closed || o.bc != nil && (o.bc.closed || o.bc.gone) {
				sends[i].fd = -1
			}
		}
		if ls.ring != nil {
			if err := ls.ring.submit(sends); err != nil {
				l.s.log.LogAttrs(context.Background(), slog.LevelWarn,
					"event loop send ring failed; sending each message with a system call of its own", slog.String("error", err.Error()))
				ls.ring.close()
				ls.ring = nil
			}
		} else {
			for i := range sends {
				sends[i].res = ringNotSent
			}
		}
		for i, o := range owners {
			l.sent(ls, o, &sends[i])
		}
		clear(owners)
		clear(sends)
		if cap(arena) > 1<<20 {
			arena = nil // a large request or answer passed: do not keep its room
		}
		ls.spare = queuedSends{sends: sends[:0], owners: owners[:0], arena: arena[:0]}
	}
}

// sent handles the outcome of one queued message.
func (l *evloops) sent(ls *loopState, o sendOwner, s *ringSend) {
	n := int(s.res)
	if fc := o.fc; fc != nil {
		fc.queued = false
		ok := true
		switch {
		case fc.closed:
		case s.res == ringNotSent:
			ok = l.writeFrontNow(fc, s.buf)
		case s.res == ringUnknown: // how much of the answer went out is not known
			ok = false
		case n == len(s.buf):
			l.ringSends.Add(1)
		case n >= 0 || s.res == -int32(unix.EAGAIN):
			l.ringSends.Add(1)
			l.ringShort.Add(1)
			ok = l.slowFront(fc, s.buf[max(n, 0):])
		default: // the client is gone
			ok = false
		}
		if !ok && fc.state != frontGone {
			fc.state = frontGone
			ls.close(fc.gc)
		}
		return
	}
	bc := o.bc
	bc.queued = false
	switch {
	case bc.closed || bc.gone:
	case s.res == ringUnknown: // how much of the request went out is not known
		ls.close(bc.gc)
	case n == len(s.buf):
		l.ringSends.Add(1)
	case n >= 0 || s.res == -int32(unix.EAGAIN) || s.res == ringNotSent:
		if s.res != ringNotSent {
			l.ringSends.Add(1)
			l.ringShort.Add(1)
		}
		// gnet writes what fits and the rest when the socket is writable;
		// a write error closes the connection (OnClose retries or fails).
		_, _ = bc.gc.Write(s.buf[max(n, 0):])
	default:
		ls.close(bc.gc)
	}
}

// frontClosed: the client connection closed. An exchange in flight ends
// as 499, and its backend connection is closed (its answer would come on
// a connection nobody reads).
func (l *evloops) frontClosed(fc *frontConn, err error) {
	if !fc.slotMoved {
		fc.slotMoved = true
		l.s.releaseSlot()
	}
	if fc.ls == nil {
		return
	}
	delete(fc.ls.fronts, fc)
	l.fronts.Add(-1)
	fc.state = frontGone
	if x := fc.x; x != nil {
		fc.x = nil
		if bc := fc.bc; bc != nil {
			bc.fc = nil
			abandon(bc)
		}
		latency := time.Since(x.start)
		l.s.observe(x, fc.dep, StatusClientClosed, latency, latency, fc.override, 0)
		msg := "client closed the connection"
		if err != nil {
			msg = err.Error()
		}
		l.s.log.LogAttrs(context.Background(), slog.LevelInfo, "client closed the connection",
			slog.String("endpoint", fc.dep.endpoint), slog.String("deployment", fc.dep.name),
			slog.String("request_id", string(x.rid)), slog.Int("status", StatusClientClosed), slog.String("error", msg))
		l.s.putExchange(x)
	}
	if fc.ctx != nil {
		fc.ctx.Request.Reset()
		fc.ctx.Response.Reset()
		l.ctxs.Put(fc.ctx)
		fc.ctx = nil
	}
}

// handoffFront moves the client connection, with the bytes the loop holds
// of it, to the goroutine path (fasthttp's ServeConn) before anything of
// its request was consumed.
func (l *evloops) handoffFront(fc *frontConn) {
	buf, _ := fc.gc.Peek(-1)
	pre := bytes.Clone(buf)
	nc, err := l.detachFront(fc)
	fc.state = frontGone
	fc.ls.close(fc.gc)
	if err != nil {
		l.s.log.LogAttrs(context.Background(), slog.LevelWarn, "event loop could not hand a connection over", slog.String("error", err.Error()))
		return
	}
	l.s.handover(func() { l.s.serveConn(nc, pre) })
}

// handoffStream moves an exchange whose answer is a stream, and both its
// connections, to a goroutine that streams it as the goroutine path does.
func (l *evloops) handoffStream(fc *frontConn, bc *backConn) {
	buf, _ := bc.gc.Peek(-1)
	backPre := bytes.Clone(buf[bc.hdrLen:])
	front, _ := fc.gc.Peek(-1)
	frontPre := bytes.Clone(front)
	back, err := detach(bc.gc)
	var client net.Conn
	if err == nil {
		client, err = l.detachFront(fc)
		if err != nil {
			_ = back.Close()
		}
	}
	// Neither connection is the loop's anymore; the backend's slot goes
	// with it to the goroutine path's pool.
	x, ctx, dep, b, override, closeAfter, deadline := fc.x, fc.ctx, fc.dep, fc.b, fc.override, fc.closeAfter, fc.deadline
	fc.x, fc.bc, fc.ctx, fc.state = nil, nil, nil, frontGone
	bc.fc, bc.gone = nil, true
	delete(bc.ls.backs, bc)
	fc.ls.close(fc.gc)
	bc.ls.close(bc.gc)
	if err != nil {
		bc.b.conns.freeSlot()
		latency := time.Since(x.start)
		l.s.observe(x, dep, fasthttp.StatusBadGateway, latency, latency, override, 0)
		l.s.putExchange(x)
		l.s.log.LogAttrs(context.Background(), slog.LevelWarn, "event loop could not hand a stream over", slog.String("error", err.Error()))
		return
	}
	h := streamHandoff{
		ctx: ctx, x: x, dep: dep, b: b, override: override, closeAfter: closeAfter, deadline: deadline,
		back: back, backPre: backPre, client: client, clientPre: frontPre,
		// The backend may have answered before it read the whole request:
		// what gnet still holds of it is lost, so the connection is not reused.
		backUnsent: bc.gc.OutboundBuffered() > 0,
	}
	l.s.handover(func() { l.s.streamHandedOff(h) })
}

// detachFront detaches a client connection for the goroutine path, which
// takes its connection slot (Limits.MaxConnections) with it.
func (l *evloops) detachFront(fc *frontConn) (net.Conn, error) {
	nc, err := detach(fc.gc)
	if err != nil {
		return nil, err
	}
	fc.slotMoved = true
	return l.s.slotted(nc), nil
}

// detach returns a net.Conn on a duplicate of c's socket; c is closed by
// the caller, the socket stays open through the duplicate.
func detach(c gnet.Conn) (net.Conn, error) {
	fd, err := c.Dup()
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f)
	_ = f.Close()
	return nc, err
}

func (ls *loopState) takeIdle(b *backend, now int64) *backConn {
	idle := ls.idle[b]
	for n := len(idle); n > 0; n = len(idle) {
		bc := idle[n-1]
		idle[n-1] = nil
		idle = idle[:n-1]
		ls.idle[b] = idle
		if now-bc.lastUsed <= int64(maxIdleConn) && !bc.gone && idleQuiet(bc, &ls.peek) {
			return bc
		}
		ls.closeBack(bc)
	}
	return nil
}

// idleQuiet reports whether an idle backend connection has nothing to
// read, in gnet's buffer or its socket: bytes the backend sent after its
// last answer that the loop has not had an event for yet would be read as
// the next answer, another client's; an end of stream means the backend
// closed it. One non-blocking peek, as the goroutine path's upConn.quiet,
// into the loop's own byte: unix.Recvfrom's address, and a byte on the
// stack handed to the system call, would each cost an allocation per
// reused connection.
func idleQuiet(bc *backConn, buf *[1]byte) bool {
	if bc.gc.InboundBuffered() > 0 {
		return false
	}
	_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(bc.gc.Fd()), uintptr(unsafe.Pointer(&buf[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return errno == unix.EAGAIN || errno == unix.EINTR
}

func (ls *loopState) putIdle(bc *backConn) {
	p := bc.b.conns
	if p.isRetiredOrAwaited() {
		// A request of the goroutine path waiting for a connection at the
		// limit gets this one, and its slot with it.
		if !p.isRetired() {
			if nc, err := detach(bc.gc); err == nil {
				bc.gone = true
				delete(ls.backs, bc)
				ls.close(bc.gc)
				uc := newUpConn(nc, p)
				p.set.add(uc)
				p.release(uc, bc.lastUsed)
				return
			}
		}
		ls.closeBack(bc)
		return
	}
	ls.idle[bc.b] = append(ls.idle[bc.b], bc)
}

// closeBack closes a backend connection the loop is done with and frees
// its slot.
func (ls *loopState) closeBack(bc *backConn) {
	if bc.gone {
		return
	}
	bc.gone = true
	bc.b.conns.freeSlot()
	delete(ls.backs, bc)
	ls.close(bc.gc)
}

func (l *evloops) dropIdle(bc *backConn) {
	idle := bc.ls.idle[bc.b]
	for i, c := range idle {
		if c == bc {
			bc.ls.idle[bc.b] = append(idle[:i], idle[i+1:]...)
			return
		}
	}
}

// tick runs the deadline scan on every loop, until the loops stop.
func (l *evloops) tick() {
	defer close(l.done)
	t := time.NewTicker(loopTick)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.mu.Lock()
		for _, ls := range l.states {
			_ = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				l.scan(ls)
				return nil
			}))
		}
		l.mu.Unlock()
	}
}

// scan fails the exchanges past their deadline (504) and, every
// loopIdleScan ticks, closes idle connections past their timeouts.
func (l *evloops) scan(ls *loopState) {
	now := time.Now().UnixNano()
	ls.ticks++
	idleScan := ls.ticks%loopIdleScan == 0
	for fc := range ls.fronts {
		switch {
		case fc.x != nil:
			if now > fc.deadline {
				l.timeout(fc, now)
			}
		case !idleScan || fc.state == frontGone:
		case fc.partial != 0 && now-fc.partial > int64(clientTimeout):
			fc.ctx.Response.Reset()
			fc.ctx.Response.Header.SetNoDefaultContentType(true)
			x := l.s.getExchange()
			l.s.requestID(fc.ctx, x)
			fc.ctx.Response.Header.SetCanonical(hdrRequestID, x.rid)
			writeError(fc.ctx, fasthttp.StatusRequestTimeout, "request timeout")
			l.s.putExchange(x)
			fc.closeAfter = true
			l.reply(fc)
		case fc.partial == 0 && (now-fc.lastActive > int64(clientTimeout+idleSlack) || l.draining.Load()):
			fc.state = frontGone
			ls.close(fc.gc)
		}
	}
	if idleScan {
		for b, idle := range ls.idle {
			kept := idle[:0]
			for _, bc := range idle {
				if now-bc.lastUsed > int64(maxIdleConn) || bc.b.conns.isRetiredOrAwaited() {
					ls.closeBack(bc)
				} else {
					kept = append(kept, bc)
				}
			}
			clear(idle[len(kept):])
			if len(kept) == 0 {
				delete(ls.idle, b)
			} else {
				ls.idle[b] = kept
			}
		}
	}
	// A loop never yields otherwise (gnet's yield before each wait is
	// patched out, see third_party/gnet). The runtime's monitor takes a
	// goroutine that was not rescheduled for 10 ms for a runaway: it
	// preempts it with a signal and polls every 20 µs again, about 5% of
	// the gateway's CPU under load. One yield per tick keeps it quiet.
	runtime.Gosched()
}

// timeout fails fc's exchange with a timeout (504) and closes its backend
// connection, which may still answer.
func (l *evloops) timeout(fc *frontConn, now int64) {
	if bc := fc.bc; bc != nil {
		bc.fc = nil
		abandon(bc)
	}
	err := fmt.Errorf("backend %s: %w", fc.b.url, os.ErrDeadlineExceeded)
	fc.dep.pool.failed(fc.b, now, err)
	l.fail(fc, err)
}

// abandon closes the backend connection of an exchange that ended without
// its answer; one still connecting is closed when it opens (OnOpen).
func abandon(bc *backConn) {
	if bc.gc == nil {
		bc.gone = true
		return
	}
	bc.ls.closeBack(bc)
}

// drain makes the loops close idle client connections and every other one
// after its answer; wait reports when none is left or ctx ends.
func (l *evloops) drain() {
	l.draining.Store(true)
	l.mu.Lock()
	for _, ls := range l.states {
		_ = ls.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for fc := range ls.fronts {
				if fc.x == nil && fc.partial == 0 && fc.state != frontGone {
					fc.state = frontGone
					_ = ls.el.Close(fc.gc)
				}
			}
			return nil
		}))
	}
	l.mu.Unlock()
}

func (l *evloops) wait(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for l.fronts.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// close stops the loops, cutting whatever they still hold.
func (l *evloops) close() {
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		_ = l.cli.Stop()
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, ls := range l.states {
			if ls.ring != nil {
				ls.ring.close()
				ls.ring = nil
			}
		}
	})
}

// addrConn is the net.Conn a loop's RequestCtx sees: its addresses only.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (c addrConn) LocalAddr() net.Addr  { return c.remote }

// gnetLogger sends gnet's messages to slog.
type gnetLogger struct{ log *slog.Logger }

func (g gnetLogger) Debugf(format string, args ...any) {}
func (g gnetLogger) Infof(format string, args ...any)  {}
func (g gnetLogger) Warnf(format string, args ...any) {
	g.log.Warn(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Errorf(format string, args ...any) {
	g.log.Error(fmt.Sprintf(format, args...), "component", "gnet")
}
func (g gnetLogger) Fatalf(format string, args ...any) {
	g.log.Error(fmt.Sprintf(format, args...), "component", "gnet")
}
