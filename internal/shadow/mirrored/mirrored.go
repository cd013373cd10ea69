// Package mirrored holds the one type the data plane and the shadow side
// share: a mirrored request with the live answer it got. It sits below
// both, so that the data plane (package proxy) does not import the shadow
// workers, their comparison statistics or the rollout analysis.
package mirrored

import (
	"time"

	"github.com/modelgate/modelgate/internal/shadow/compare"
)

// Copy is one mirrored request, handed off by the data plane after the
// live response has gone back to the client. The data plane fills it from
// a pool (Get) and gives up ownership on Submit; the shadow side returns it
// with Put when done.
type Copy struct {
	// Endpoint and Deployment name the shadow deployment to call.
	Endpoint, Deployment string
	// LiveDeployment answered the live request.
	LiveDeployment string
	// RequestID is the live request's X-Request-Id; the copy carries it.
	RequestID string
	// Method, URI (path after the endpoint prefix, with the query) and the
	// request headers to forward (end-to-end headers only, as
	// alternating name, value pairs).
	Method  string
	URI     string
	Headers []string
	// Body is the request body, captured up to the endpoint's cap;
	// BodyTruncated means it was longer (such a copy is not sent).
	Body          []byte
	BodyTruncated bool
	// Live is the live answer, its body captured up to the cap as it
	// streamed past.
	Live compare.Response
	// LiveLatency is the live request's latency until its last byte;
	// LiveTTFB until its first.
	LiveLatency, LiveTTFB time.Duration
	// Start is when the live request began.
	Start time.Time
}

// Reset clears c for reuse, keeping its buffers.
func (c *Copy) Reset() {
	*c = Copy{Headers: c.Headers[:0], Body: c.Body[:0], Live: compare.Response{Body: c.Live.Body[:0]}}
}
