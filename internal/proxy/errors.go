package proxy

import (
	"encoding/json"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/proxy/policy"
)

// StatusClientClosed is the status recorded (never sent) when the client
// went away before the response was complete, as nginx logs it.
const StatusClientClosed = policy.StatusClientClosed

// Errors produced by the proxy itself, before or instead of a backend
// answer; policy.StatusOf maps each to its status.
var (
	ErrUnknownEndpoint   = policy.ErrUnknownEndpoint
	ErrUnknownDeployment = policy.ErrUnknownDeployment
	ErrNoHealthyBackend  = policy.ErrNoHealthyBackend
	ErrBackendBusy       = policy.ErrBackendBusy
	ErrClientGone        = policy.ErrClientGone
)

// writeError writes the JSON error body {"error": "..."}. The caller has
// set X-Request-Id and X-Model-Deployment.
func writeError(ctx *fasthttp.RequestCtx, status int, msg string) {
	body, _ := json.Marshal(struct {
		Error string `json:"error"`
	}{msg})
	ctx.Response.ResetBody()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBody(append(body, '\n'))
}
