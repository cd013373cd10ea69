package policy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/valyala/fasthttp"
)

// The error answers of both engines: what the gateway answers when it
// cannot or will not forward a request, or the backend failed.

// StatusClientClosed is the status recorded (never sent) when the client
// went away before the response was complete, as nginx logs it.
const StatusClientClosed = 499

// Errors produced by the proxy itself, before or instead of a backend answer.
var (
	// ErrUnknownEndpoint: the first path segment names no endpoint.
	ErrUnknownEndpoint = errors.New("unknown endpoint")
	// ErrUnknownDeployment: the X-Model-Deployment header names no
	// deployment of the endpoint.
	ErrUnknownDeployment = errors.New("unknown deployment in X-Model-Deployment")
	// ErrNoHealthyBackend: every backend of the chosen deployment is out
	// (passive or active health).
	ErrNoHealthyBackend = errors.New("no healthy backend")
	// ErrBackendBusy: every connection the backend may have is busy and
	// none came free within the deployment's timeout.
	ErrBackendBusy = errors.New("backend connection limit reached")
	// ErrClientGone: the client closed the connection while the response
	// was being written.
	ErrClientGone = errors.New("client closed the connection")
)

// StatusOf maps an error met while proxying to the status sent to the
// client (or recorded, for 499). It is the one place that decides it:
//
//	unknown endpoint                          404
//	unknown X-Model-Deployment                400
//	request body over MaxRequestBytes         413
//	client gone                               499 (logged and recorded)
//	no healthy backend, connection limit      503
//	timeout (connect, headers, idle stream)   504
//	refused, reset, any other transport error 502
func StatusOf(err error) int {
	var ne net.Error
	switch {
	case errors.Is(err, ErrUnknownEndpoint):
		return http.StatusNotFound
	case errors.Is(err, ErrUnknownDeployment):
		return http.StatusBadRequest
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrClientGone):
		return StatusClientClosed
	case errors.Is(err, ErrNoHealthyBackend), errors.Is(err, ErrBackendBusy):
		return http.StatusServiceUnavailable
	case errors.Is(err, fasthttp.ErrTimeout), errors.As(err, &ne) && ne.Timeout():
		return http.StatusGatewayTimeout
	default:
		return http.StatusBadGateway
	}
}

// MessageOf is the client-facing summary of an error. Backend addresses
// and low-level details stay in the log.
func MessageOf(err error) string {
	if errors.Is(err, ErrBackendBusy) {
		return "backend connection limit reached"
	}
	return MessageOfStatus(StatusOf(err))
}

// MessageOfStatus is the client-facing summary of an error status.
func MessageOfStatus(status int) string {
	switch status {
	case http.StatusNotFound:
		return "unknown endpoint"
	case http.StatusBadRequest:
		return "unknown deployment in X-Model-Deployment"
	case http.StatusRequestEntityTooLarge:
		return "request body too large"
	case http.StatusServiceUnavailable:
		return "no healthy backend"
	case http.StatusGatewayTimeout:
		return "backend timed out"
	default:
		return "bad gateway: backend unreachable or failed"
	}
}

// UnknownEndpoint is the answer to a request whose first path segment,
// endpoint, names no endpoint. A request that looks meant for the admin
// API, its target under /api/ or its Authorization a bearer token, is told
// that this is the data plane and where the admin API listens (adminURL;
// empty: not known here).
func UnknownEndpoint(uri, endpoint, authorization []byte, adminURL string) string {
	if !bytes.HasPrefix(uri, []byte("/api/")) && !hasBearer(authorization) {
		return fmt.Sprintf("unknown endpoint %q", endpoint)
	}
	where := "on the admin listener (admin.listen)"
	if adminURL != "" {
		where = "at " + adminURL
	}
	return fmt.Sprintf("unknown endpoint %q: this is modelgate's data plane, which serves predictions; the admin API listens %s: point --admin or MODELGATE_ADMIN there", endpoint, where)
}

func hasBearer(authorization []byte) bool {
	const bearer = "bearer "
	return len(authorization) >= len(bearer) && bytes.EqualFold(authorization[:len(bearer)], []byte(bearer))
}
