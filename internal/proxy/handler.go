package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/proxy/accesslog"
	"github.com/modelgate/modelgate/internal/proxy/policy"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Header names, as byte slices so that setting them does not convert, and
// in canonical form (as fasthttp normalises names), so that they are set
// with SetCanonical, which skips normalising them again.
var (
	hdrDeployment     = policy.HeaderDeployment
	hdrRequestID      = []byte("X-Request-Id")
	hdrForwardedFor   = []byte("X-Forwarded-For")
	hdrForwardedProto = []byte("X-Forwarded-Proto")
	hdrForwardedHost  = []byte("X-Forwarded-Host")
	hdrConnection     = []byte("Connection")
	hdrExpect         = []byte("Expect")
	strEventStream    = []byte("text/event-stream")
)

// exchange is the per-request state, pooled. When the response body is
// streamed it is also the body stream handed to fasthttp: the server reads
// the backend's body through it while writing to the client, and closes it
// at the end, which is when the request is recorded and the exchange
// recycled.
type exchange struct {
	s *Server

	rid     []byte                 // X-Request-Id
	body    []byte                 // a streamed request body, read whole (readBody)
	head    fasthttp.RequestHeader // a chunked request's header, kept from its trailers
	rest    []byte                 // request URI after the endpoint segment
	scratch []byte

	// Set once a backend answered and the body is being streamed.
	dep   *deployment
	b     *backend
	c     *upConn
	start time.Time
	ttfb  time.Duration
	// awaitFirst: ttfb is still the header time and becomes the time of
	// the first body byte. A streaming server may send its headers long
	// before its first token; time to first byte is the token users feel.
	awaitFirst bool
	status     int
	override   bool
	readErr    error

	// mc is the capture of a mirrored request; mc.ep is nil otherwise.
	mc capture

	// sent counts the body bytes of a streamed answer passed to fasthttp.
	sent int64
	// What the access log says of the request, kept only while it is on
	// (Options.AccessLog): the method, the path as the client sent it
	// (without the query) and the client's address.
	method, path []byte
	client       net.Addr
}

func (s *Server) getExchange() *exchange {
	return s.exchanges.Get().(*exchange)
}

func (s *Server) putExchange(x *exchange) {
	if cap(x.body) > 1<<20 {
		x.body = nil // a large body passed: do not keep its room
	}
	x.dep, x.b, x.c, x.readErr, x.awaitFirst, x.sent, x.client = nil, nil, nil, nil, false, 0, nil
	x.mc.set, x.mc.ep, x.mc.live, x.mc.conn, x.mc.reading = 0, nil, nil, nil, false
	s.exchanges.Put(x)
}

// handle is the request path. It allocates nothing of its own in the
// common case: the routing snapshot is precompiled, header names are
// preallocated, and per-request buffers live in the pooled exchange.
func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	x := s.getExchange()
	x.start = start
	ep, i, mirrors, override, ok := s.route(ctx, x)
	if !ok {
		return
	}
	// The body is read only now that the request is routed: routing and
	// identity come from the headers alone, never from a chunked body's
	// trailers (they are dropped with it).
	if err := s.readBody(ctx, x); err != nil {
		s.refuse(ctx, x, err)
		return
	}
	dep := ep.deps[i]
	s.begin(ctx, x, ep, dep, mirrors)
	if s.closing.Load() {
		// A connection the event loops handed over during Shutdown is not
		// kept alive past its request.
		ctx.SetConnectionClose()
	}
	deadline := start.Add(dep.timeout)
	slack := deadlineSlack(dep.timeout)
	now := start.UnixNano()
	var (
		b     *backend = dep.pool.pick(now, nil)
		c     *upConn
		err   error
		tries policy.Attempts
		fresh bool
	)
	// Retries follow the one policy both engines share (policy.Attempts).
	for {
		if b == nil {
			if err == nil {
				err = ErrNoHealthyBackend
			}
			break
		}
		setTarget(&ctx.Request, b, x)
		c, err = b.conns.roundTrip(now, &ctx.Request, &ctx.Response.Header, deadline, slack, fresh)
		if err == nil {
			dep.pool.succeeded(b)
			break
		}
		now = time.Now().UnixNano()
		action := tries.Next(failureOf(err), replayable(&ctx.Request.Header))
		if action != policy.RetryFresh {
			dep.pool.failed(b, now, err)
		}
		if action == policy.GiveUp {
			break
		}
		fresh = action == policy.RetryFresh
		if action == policy.RetryOther {
			next := dep.pool.pick(now, b)
			if next == nil {
				break
			}
			b = next
		}
	}
	if err != nil {
		s.failUpstream(ctx, x, ep, dep, b, err, override)
		return
	}
	s.respond(ctx, x, dep, b, c, override)
}

// readBody reads a request body that fasthttp left streaming (the server
// streams every body; see New) into the exchange's buffer, which grows with
// the bytes that arrive instead of being allocated at the declared size: a
// client that declares 10 MiB and sends one byte costs about one byte.
// Trailer fields of a chunked body are dropped.
func (s *Server) readBody(ctx *fasthttp.RequestCtx, x *exchange) error {
	req := &ctx.Request
	if !req.IsBodyStream() {
		return nil
	}
	declared := req.Header.ContentLength()
	if declared > s.maxBody {
		return &policy.Rejection{Status: http.StatusRequestEntityTooLarge, Reason: "request body too large"}
	}
	if declared == -1 {
		// Reading a chunked body merges its trailer fields into the header
		// (fasthttp), and deleting the Trailer header later would move them
		// among the forwarded fields: the header is put back as it came.
		req.Header.CopyTo(&x.head)
		defer x.head.CopyTo(&req.Header)
	}
	buf := x.body[:0]
	r := req.BodyStream()
	for {
		if len(buf) == cap(buf) {
			// Grow by doubling from 4 KiB, never past what was declared.
			n := max(2*cap(buf), 4<<10)
			if declared >= 0 {
				n = min(n, declared+1)
			}
			buf = append(buf[:cap(buf)], make([]byte, n-cap(buf))...)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > s.maxBody {
			x.body = buf[:0]
			return &policy.Rejection{Status: http.StatusRequestEntityTooLarge, Reason: "request body too large"}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			x.body = buf[:0]
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return &policy.Rejection{Status: http.StatusRequestTimeout, Reason: "request timeout: the body did not arrive in time"}
			}
			return &policy.Rejection{Status: http.StatusBadRequest, Reason: "malformed request body: " + err.Error()}
		}
	}
	x.body = buf
	req.SetBodyRaw(buf)
	return nil
}

// route picks the deployment of a request: the override header, else the
// sticky key, else the split; and the shadow deployments it is copied to.
// It changes nothing but the request's X-Request-Id (and the router's
// split position), so a request can still be served elsewhere after it.
// A request it cannot route is answered in ctx and x recycled: ok false.
func (s *Server) route(ctx *fasthttp.RequestCtx, x *exchange) (ep *endpoint, i int, mirrors uint64, override, ok bool) {
	s.requestID(ctx, x)
	if err := policy.CheckRequest(&ctx.Request.Header, s.reqLimits); err != nil {
		s.refuse(ctx, x, err)
		return nil, 0, 0, false, false
	}
	ep, ok = s.routes.Load().endpoints[string(splitEndpoint(ctx.Request.Header.RequestURI(), x))]
	if !ok {
		s.reject(ctx, x, ErrUnknownEndpoint, "", "")
		return nil, 0, 0, false, false
	}
	if err := cleanRest(x); err != nil {
		s.refuse(ctx, x, err)
		return nil, 0, 0, false, false
	}
	name, err := ep.pin.Deployment(&ctx.Request.Header, ep.name)
	if err != nil {
		s.reject(ctx, x, err, ep.name, "")
		return nil, 0, 0, false, false
	}
	if name != nil {
		if i, ok = ep.table.Index(name); !ok {
			s.reject(ctx, x, ErrUnknownDeployment, ep.name, string(name))
			return nil, 0, 0, false, false
		}
		return ep, i, 0, true, true
	}
	if key := stickyKey(ctx, ep); len(key) > 0 {
		i = ep.table.PickKey(key)
		if ep.mirrors {
			mirrors = ep.table.Mirrors(key)
		}
	} else {
		i = ep.table.Pick()
		if ep.mirrors {
			mirrors = ep.table.Mirrors(nil)
		}
	}
	// The deployment serving the request live is not also its shadow.
	return ep, i, mirrors &^ (1 << i), false, true
}

// begin starts serving a routed request on dep: telemetry counts it in
// flight, the request becomes the upstream one, and a mirrored request's
// capture starts.
func (s *Server) begin(ctx *fasthttp.RequestCtx, x *exchange, ep *endpoint, dep *deployment, mirrors uint64) {
	dep.rec.Begin()
	prepareRequest(ctx, x)
	if mirrors != 0 {
		x.mc.start(ctx, x, ep, dep, mirrors)
	}
}

// respond sends the backend's answer, whose headers were read into the
// client's response, on to the client. A body that came whole with the
// headers is copied into the response and the connection goes back to its
// pool at once; any other body is handed to fasthttp as a stream (see
// exchange.Read), so that it reaches the client as it arrives.
func (s *Server) respond(ctx *fasthttp.RequestCtx, x *exchange, dep *deployment, b *backend, c *upConn, override bool) {
	// One clock read for the header time, and for the end of a request
	// whose body came with its headers.
	now := time.Now()
	ttfb := now.Sub(x.start)
	resp := &ctx.Response
	status := resp.StatusCode()
	policy.StripResponseHopHeaders(&resp.Header, &x.scratch)
	resp.Header.SetCanonical(hdrRequestID, x.rid)
	resp.Header.SetCanonical(hdrDeployment, dep.header)

	body := &c.body
	whole, ok := body.buffered()
	if x.mc.ep != nil {
		x.mc.answered(&resp.Header, status, ttfb, !ok && body.mode != bodyNone)
	}
	if ok || body.mode == bodyNone {
		// No body (HEAD, 204, 304) or all of it here: the request ends now.
		if ok {
			resp.SetBody(whole)
			if x.mc.ep != nil {
				x.mc.tee(whole)
			}
			body.consumeBuffered()
		}
		c.finish(now.UnixNano(), true)
		s.observeAt(x, dep, now.UnixNano(), status, ttfb, ttfb, override, len(whole))
		if x.mc.ep != nil {
			x.mc.latency = ttfb
			s.park(x)
			return
		}
		s.putExchange(x)
		return
	}
	body.streamIdle(dep.idle)
	x.dep, x.b, x.c = dep, b, c
	x.ttfb, x.status, x.override, x.awaitFirst = ttfb, status, override, true
	// The headers, and whatever answers to earlier pipelined requests wait
	// in the writer, go out before the body is read: a body that then fails
	// cuts the connection, and must not take the complete answers before it
	// with it (FuzzEngines found the goroutine path losing them).
	resp.ImmediateHeaderFlush = true
	if body.mode != bodyFixed || bytes.HasPrefix(resp.Header.ContentType(), strEventStream) {
		// Unknown length (chunked or until close) or server-sent events:
		// fasthttp writes a body stream of unknown size chunked and flushes
		// after every read, so each piece the backend sends reaches the
		// client at once.
		resp.SetBodyStream(x, -1)
		return
	}
	resp.SetBodyStream(x, int(body.left))
}

// Read passes the backend's body through to fasthttp, remembering a read
// error so that Close can tell a failed backend from a departed client. A
// mirrored request's body is captured here as it streams past.
func (x *exchange) Read(p []byte) (int, error) {
	n, err := x.c.body.Read(p)
	x.sent += int64(n)
	if x.awaitFirst && n > 0 {
		x.ttfb, x.awaitFirst = time.Since(x.start), false
	}
	if x.mc.reading && n > 0 {
		x.mc.tee(p[:n])
	}
	if err != nil && err != io.EOF {
		x.readErr = err
	}
	return n, err
}

// CloseWithError is called by fasthttp once the body was written (werr
// nil) or writing it failed (werr set: client gone, or our Read failed).
// fasthttp then closes the client connection, so a failed body is cut off,
// never presented as complete.
func (x *exchange) CloseWithError(werr error) error {
	s, dep := x.s, x.dep
	status := x.status
	switch {
	case x.readErr != nil:
		// The backend failed or stalled past the idle timeout mid-body. The
		// client saw the status line, but the request failed: record it as
		// a gateway error so that gates see it.
		status = policy.StatusOf(x.readErr)
		dep.pool.failed(x.b, time.Now().UnixNano(), x.readErr)
		s.log.LogAttrs(context.Background(), slog.LevelWarn, "backend body failed, connection aborted",
			slog.String("endpoint", dep.endpoint), slog.String("deployment", dep.name), slog.String("backend", x.b.url),
			slog.String("request_id", string(x.rid)), slog.Int("status", status),
			slog.String("error", x.readErr.Error()))
	case werr != nil:
		status = StatusClientClosed
		s.log.LogAttrs(context.Background(), slog.LevelInfo, "client closed the connection",
			slog.String("endpoint", dep.endpoint), slog.String("deployment", dep.name), slog.String("request_id", string(x.rid)),
			slog.Int("status", status), slog.String("error", werr.Error()))
	}
	// One clock read for the latency, the observation's timestamp and the
	// connection's return to its pool.
	end := time.Now()
	// A body read to its end lets the backend connection be reused; a
	// partial one closes it.
	x.c.finish(end.UnixNano(), x.readErr == nil && werr == nil)
	latency := end.Sub(x.start)
	s.observeAt(x, dep, end.UnixNano(), status, latency, x.ttfb, x.override, int(x.sent))
	if x.mc.ep != nil && x.readErr == nil && werr == nil {
		// The live answer is complete; fasthttp has yet to flush its end
		// to the client, so the copies wait for that (see park).
		x.mc.latency = latency
		s.park(x)
		return nil
	}
	s.putExchange(x)
	return nil
}

// observe ends a request served by dep (bytes: the answer's body bytes
// passed to the client), where both engines end every routed request: its
// deployment's telemetry records it and, when it is on, the access log
// writes its line.
func (s *Server) observe(x *exchange, dep *deployment, status int, latency, ttfb time.Duration, override bool, bytes int) {
	s.observeAt(x, dep, time.Now().UnixNano(), status, latency, ttfb, override, bytes)
}

// observeAt is observe with the clock already read (unix ns).
func (s *Server) observeAt(x *exchange, dep *deployment, now int64, status int, latency, ttfb time.Duration, override bool, bytes int) {
	dep.rec.Observe(telemetry.Observation{
		Now:      now,
		Status:   status,
		Latency:  latency,
		TTFB:     ttfb,
		Override: override,
	})
	if s.access != nil {
		s.logAccess(x, dep.endpoint, dep.name, now, status, bytes, latency)
	}
}

// logAccess writes the access log's line of x's request.
func (s *Server) logAccess(x *exchange, endpoint, deployment string, now int64, status, bytes int, latency time.Duration) {
	e := accesslog.Entry{
		Time: time.Unix(0, now), Client: x.client, Method: x.method, Path: x.path,
		Endpoint: endpoint, Deployment: deployment, Status: status, Bytes: int64(bytes),
		Duration: latency, RequestID: x.rid,
	}
	s.access.Add(&e)
}

// logRefused writes the access log's line of a request answered before
// it reached a deployment (ctx holds the answer), when the log is on.
func (s *Server) logRefused(ctx *fasthttp.RequestCtx, x *exchange, endpoint string) {
	if s.access == nil {
		return
	}
	now := time.Now()
	s.logAccess(x, endpoint, "", now.UnixNano(), ctx.Response.StatusCode(), len(ctx.Response.Body()), now.Sub(x.start))
}

// reject answers a request the proxy refuses before picking a deployment.
func (s *Server) reject(ctx *fasthttp.RequestCtx, x *exchange, err error, ep, name string) {
	status := policy.StatusOf(err)
	ctx.Response.Header.SetCanonical(hdrRequestID, x.rid)
	var (
		msg string
		r   *policy.Rejection
	)
	if errors.As(err, &r) {
		status, msg = r.Status, r.Reason
	} else if errors.Is(err, ErrUnknownDeployment) {
		msg = fmt.Sprintf("unknown deployment %q in X-Model-Deployment for endpoint %q", name, ep)
	} else {
		var admin string
		if u := s.adminURL.Load(); u != nil {
			admin = *u
		}
		uri := ctx.Request.Header.RequestURI()
		msg = policy.UnknownEndpoint(uri, splitEndpoint(uri, x), ctx.Request.Header.Peek(fasthttp.HeaderAuthorization), admin)
	}
	writeError(ctx, status, msg)
	s.logRefused(ctx, x, ep)
	s.putExchange(x)
}

// refuse answers a request the policy refuses (policy.Rejection) and
// closes the connection after it: what follows a malformed request on the
// connection cannot be trusted to be framed as the client meant.
func (s *Server) refuse(ctx *fasthttp.RequestCtx, x *exchange, err error) {
	status, msg := http.StatusBadRequest, err.Error()
	var r *policy.Rejection
	if errors.As(err, &r) {
		status = r.Status
	}
	ctx.Response.Header.SetCanonical(hdrRequestID, x.rid)
	writeError(ctx, status, msg)
	ctx.SetConnectionClose()
	s.logRefused(ctx, x, "")
	s.putExchange(x)
}

// failUpstream answers a request whose deployment could not produce
// response headers, records it and logs it.
func (s *Server) failUpstream(ctx *fasthttp.RequestCtx, x *exchange, ep *endpoint, dep *deployment, b *backend, err error, override bool) {
	status := policy.StatusOf(err)
	// Drop whatever the backend's headers left before it failed.
	ctx.Response.Header.Reset()
	ctx.Response.Header.SetCanonical(hdrRequestID, x.rid)
	ctx.Response.Header.SetCanonical(hdrDeployment, dep.header)
	writeError(ctx, status, policy.MessageOf(err))
	latency := time.Since(x.start)
	s.observe(x, dep, status, latency, latency, override, len(ctx.Response.Body()))
	attrs := []slog.Attr{
		slog.String("endpoint", ep.name), slog.String("deployment", dep.name),
		slog.String("request_id", string(x.rid)), slog.Int("status", status),
		slog.String("error", err.Error()),
	}
	if b != nil {
		attrs = append(attrs, slog.String("backend", b.url))
	}
	s.log.LogAttrs(context.Background(), slog.LevelWarn, "proxy error", attrs...)
	s.putExchange(x)
}

// handleParseError answers requests fasthttp could not read, above all a
// body over MaxRequestBytes (413), with the same JSON errors and headers.
func (s *Server) handleParseError(ctx *fasthttp.RequestCtx, err error) {
	status := policy.StatusOf(err)
	msg := policy.MessageOfStatus(status)
	if status == fasthttp.StatusBadGateway {
		// Anything else fasthttp rejects is a malformed request.
		status, msg = fasthttp.StatusBadRequest, "malformed request"
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			status, msg = fasthttp.StatusRequestTimeout, "request timeout"
		}
	}
	x := s.getExchange()
	x.start = time.Now()
	s.requestID(ctx, x)
	ctx.Response.Header.SetCanonical(hdrRequestID, x.rid)
	writeError(ctx, status, msg)
	s.logRefused(ctx, x, "")
	s.putExchange(x)
}

// requestID keeps the client's X-Request-Id or makes one (a per-process
// random prefix and a counter: unique, and cheaper than a UUID), and sends
// it upstream too. Every request the data plane answers passes here
// first: with the access log on, what its line says of the request is
// kept now, before the request is rewritten for its backend.
func (s *Server) requestID(ctx *fasthttp.RequestCtx, x *exchange) {
	if s.access != nil {
		h := &ctx.Request.Header
		x.method = append(x.method[:0], h.Method()...)
		uri := h.RequestURI()
		if q := bytes.IndexByte(uri, '?'); q >= 0 {
			uri = uri[:q]
		}
		x.path = append(x.path[:0], uri...)
		x.client = ctx.RemoteAddr()
	}
	if id := ctx.Request.Header.PeekBytes(hdrRequestID); len(id) > 0 {
		// Copy: the header's storage moves when headers are changed.
		x.rid = append(x.rid[:0], id...)
		return
	}
	x.rid = append(x.rid[:0], s.ridPrefix[:]...)
	x.rid = strconv.AppendUint(x.rid, s.ridSeq.Add(1), 16)
	ctx.Request.Header.SetCanonical(hdrRequestID, x.rid)
}

// splitEndpoint returns the endpoint segment of a request URI
// ("/fraud/v1/m?x" → "fraud") and keeps the rest ("/v1/m?x") in x.rest,
// copied because the URI is rewritten before the request is forwarded.
func splitEndpoint(uri []byte, x *exchange) []byte {
	if len(uri) == 0 || uri[0] != '/' {
		x.rest = x.rest[:0]
		return nil
	}
	end := 1
	for end < len(uri) && uri[end] != '/' && uri[end] != '?' {
		end++
	}
	x.rest = append(x.rest[:0], uri[end:]...)
	return uri[1:end]
}

func stickyKey(ctx *fasthttp.RequestCtx, ep *endpoint) []byte {
	if ep.sticky == nil {
		return nil
	}
	return ctx.Request.Header.PeekBytes(ep.sticky)
}

// prepareRequest turns the client's request into the upstream one, in
// place: hop-by-hop headers out, X-Forwarded-* in.
func prepareRequest(ctx *fasthttp.RequestCtx, x *exchange) {
	h := &ctx.Request.Header
	// fasthttp has already answered any 100-continue and read the body;
	// passing Expect on would make the backend send an interim response,
	// so it goes too.
	policy.StripRequestHopHeaders(h, &x.scratch)
	// The pin secret is the gateway's, never the backend's.
	h.DelBytes(policy.HeaderDeploymentSecret)
	// The client's Connection: close concerns the client connection, which
	// fasthttp already noted; upstream connections are kept alive.
	h.ResetConnectionClose()

	ip, _ := netip.AddrFromSlice(ctx.RemoteIP())
	x.scratch = policy.SetForwarded(h, ip, ctx.IsTLS(), x.scratch)
}

// cleanRest resolves the dot segments of the request path after the
// endpoint segment (x.rest), or refuses a path that climbs above it.
func cleanRest(x *exchange) error {
	out, err := policy.TargetPath(x.scratch[:0], nil, x.rest)
	if err != nil {
		return err
	}
	x.scratch = out
	x.rest = append(x.rest[:0], out...)
	return nil
}

// replayable reports whether a request may be sent again once it may have
// reached a backend (policy.Replayable).
func replayable(h *fasthttp.RequestHeader) bool {
	return policy.Replayable(h.Method(), len(h.PeekBytes(policy.HeaderIdempotencyKey)) > 0 ||
		len(h.PeekBytes(policy.HeaderXIdempotencyKey)) > 0)
}

// failureOf classifies a failed attempt for the retry policy.
func failureOf(err error) policy.Failure {
	var de *dialError
	switch {
	case errors.As(err, &de):
		return policy.FailDial
	case isStale(err):
		return policy.FailStale
	}
	return policy.FailOther
}

// setTarget points the request at backend b: its Host, its path prefix
// followed by what came after the endpoint segment, the query kept.
func setTarget(req *fasthttp.Request, b *backend, x *exchange) {
	x.scratch = append(x.scratch[:0], b.prefix...)
	if len(x.rest) == 0 || x.rest[0] != '/' {
		x.scratch = append(x.scratch, '/')
	}
	x.scratch = append(x.scratch, x.rest...)
	// Only the header's request URI and Host are set, never the parsed
	// URI: fasthttp then writes the request line as it is, the path exactly
	// as the client wrote it, without parsing it again.
	req.SetRequestURIBytes(x.scratch)
	req.Header.SetHostBytes(b.host)
}
