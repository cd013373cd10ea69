package proxy

import (
	"bytes"
	"math/bits"
	"net"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/shadow/mirrored"
)

// Mirror takes shadow copies of live requests. *shadow.Manager implements
// it. Get returns an empty Copy (pooled); Submit takes ownership of it and
// must never block: it queues the copy or drops and counts it.
type Mirror interface {
	Get() *mirrored.Copy
	Submit(*mirrored.Copy) bool
}

// Headers that are never put in a shadow copy, beyond the hop-by-hop ones
// (already removed from the request when it is captured). The shadow side
// sets its own Host, Content-Length, X-Request-Id (from Copy.RequestID) and
// X-Model-Shadow; X-Forwarded-* describe the live hop; X-Model-Deployment
// would route the copy (and split-routed requests, the only ones mirrored,
// do not carry it anyway). Accept-Encoding is left out so that the shadow
// answers uncompressed, which the comparison can read.
var unmirroredHeaders = [][]byte{
	[]byte("Accept-Encoding"),
	[]byte("Host"),
	[]byte("Content-Length"),
	hdrForwardedFor,
	hdrForwardedProto,
	hdrForwardedHost,
	hdrDeployment,
	hdrRequestID,
	[]byte("X-Model-Shadow"),
	hdrConnection,
	hdrExpect,
}

// capture is what a mirrored request keeps of the live exchange until the
// hand-off: the request as forwarded and the live answer, captured once and
// copied into one mirrored.Copy per shadow deployment at the end. Its buffers
// live in the pooled exchange, so capturing allocates nothing in the
// steady state.
type capture struct {
	set  uint64    // shadow deployments (indices into ep.deps)
	ep   *endpoint // set means: this exchange is mirrored
	live *deployment
	conn net.Conn // the client connection, to hand off when it goes idle

	// buf holds, back to back: method, URI, request id, header names and
	// values, then the live Content-Type; ends[k] is where piece k ends.
	buf     []byte
	ends    []int32
	hdrEnd  int // index in ends after the last header piece
	limit   int // capture cap, bytes
	reading bool

	body          []byte
	bodyTruncated bool
	liveBody      []byte
	liveTruncated bool
	liveStatus    int
	latency, ttfb time.Duration
}

func (c *capture) piece(b []byte) {
	c.buf = append(c.buf, b...)
	c.ends = append(c.ends, int32(len(c.buf)))
}

// start captures the request as it is about to be forwarded (hop-by-hop
// headers already removed): method, URI after the endpoint prefix (with
// the query, and a leading '/' as the live backend gets it), request id,
// end-to-end headers and the body up to the endpoint's cap.
func (c *capture) start(ctx *fasthttp.RequestCtx, x *exchange, ep *endpoint, live *deployment, set uint64) {
	c.set, c.ep, c.live, c.conn = set, ep, live, ctx.Conn()
	c.limit = ep.capture
	c.buf, c.ends = c.buf[:0], c.ends[:0]
	c.piece(ctx.Method())
	if len(x.rest) == 0 || x.rest[0] != '/' {
		c.buf = append(c.buf, '/')
	}
	c.piece(x.rest)
	c.piece(x.rid)
	for k, v := range ctx.Request.Header.All() {
		if mirroredHeader(k) {
			c.piece(k)
			c.piece(v)
		}
	}
	c.hdrEnd = len(c.ends)
	body := ctx.Request.Body()
	c.bodyTruncated = len(body) > c.limit
	c.body = append(c.body[:0], body[:min(len(body), c.limit)]...)
	c.liveBody, c.liveTruncated, c.reading = c.liveBody[:0], false, false
}

func mirroredHeader(name []byte) bool {
	for _, h := range unmirroredHeaders {
		if bytes.EqualFold(name, h) {
			return false
		}
	}
	return true
}

// answered records the live status and Content-Type once the live backend
// answered; with a streamed body, reading then tees it (see
// exchange.Read).
func (c *capture) answered(h *fasthttp.ResponseHeader, status int, ttfb time.Duration, streamed bool) {
	c.liveStatus, c.ttfb, c.reading = status, ttfb, streamed
	// The Content-Type the backend sent, not fasthttp's default for none
	// (the server is configured without one).
	c.piece(h.ContentType())
}

// tee appends a piece of the live body as it streams past, up to the cap.
// It only copies memory: the piece goes on to the client right after.
func (c *capture) tee(p []byte) {
	if room := c.limit - len(c.liveBody); len(p) > room {
		p = p[:max(room, 0)]
		c.liveTruncated = true
	}
	c.liveBody = append(c.liveBody, p...)
}

// park keeps a mirrored exchange, whose live answer is complete, until its
// client connection goes idle: fasthttp closes the response's body stream
// (CloseWithError) before it flushes the last bytes to the client, and
// reports the connection idle (or closed) only after that flush. So the
// hand-off runs on the connection's goroutine after the client has the
// whole answer, and never delays it.
func (s *Server) park(x *exchange) {
	if x.mc.conn == nil {
		// Not served by a fasthttp.Server (no connection to wait for).
		s.handOff(x)
		return
	}
	// Counted first and uncounted after the hand-off: nparked is zero only
	// when no copy is parked or being handed off.
	s.nparked.Add(1)
	s.parked.Store(x.mc.conn, x)
}

// connDone hands off the exchange parked on c, if any. It is called for
// every request on every connection, so it first checks a counter: with
// nothing parked anywhere it costs one atomic load.
func (s *Server) connDone(c net.Conn) {
	if s.nparked.Load() == 0 {
		return
	}
	if v, ok := s.parked.LoadAndDelete(c); ok {
		s.handOff(v.(*exchange))
		s.nparked.Add(-1)
	}
}

// handOff fills one mirrored.Copy per shadow deployment from the capture and
// submits it, then recycles the exchange. Every string of every copy is a
// substring of one conversion of the capture buffer: one allocation per
// mirrored request for them all.
func (s *Server) handOff(x *exchange) {
	c := &x.mc
	str := string(c.buf)
	piece := func(k int) string {
		start := int32(0)
		if k > 0 {
			start = c.ends[k-1]
		}
		return str[start:c.ends[k]]
	}
	method, uri, rid := piece(0), piece(1), piece(2)
	contentType := piece(c.hdrEnd)
	for set := c.set; set != 0; set &= set - 1 {
		cp := s.mirror.Get()
		if cp == nil {
			continue
		}
		cp.Endpoint = c.ep.name
		cp.Deployment = c.ep.deps[bits.TrailingZeros64(set)].name
		cp.LiveDeployment = c.live.name
		cp.RequestID = rid
		cp.Method = method
		cp.URI = uri
		cp.Headers = cp.Headers[:0]
		for k := 3; k < c.hdrEnd; k++ {
			cp.Headers = append(cp.Headers, piece(k))
		}
		cp.Body = append(cp.Body[:0], c.body...)
		cp.BodyTruncated = c.bodyTruncated
		cp.Live.Status = c.liveStatus
		cp.Live.ContentType = contentType
		cp.Live.Body = append(cp.Live.Body[:0], c.liveBody...)
		cp.Live.Truncated = c.liveTruncated
		cp.LiveLatency = c.latency
		cp.LiveTTFB = c.ttfb
		cp.Start = x.start
		s.mirror.Submit(cp)
	}
	s.putExchange(x)
}
