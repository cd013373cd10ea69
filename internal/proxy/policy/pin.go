package policy

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/valyala/fasthttp"
)

// The headers with which a client pins a request to a deployment.
var (
	HeaderDeployment       = []byte("X-Model-Deployment")
	HeaderDeploymentSecret = []byte("X-Model-Deployment-Secret")
)

// Pin is an endpoint's rule for X-Model-Deployment (spec.Override): off,
// on for anyone (the default, as Azure ML's azureml-model-deployment), or
// on with a secret. The zero Pin is on without a secret.
type Pin struct {
	off bool
	// secret is the SHA-256 of the secret; nil when none is needed.
	// Comparing digests takes the same time whatever the length of what
	// the client sent.
	secret *[sha256.Size]byte
	// unknown: the secret could not be read; every pin is refused.
	unknown bool
}

// NewPin returns the rule for an endpoint: on or off, and the secret the
// header needs (empty: none).
func NewPin(on bool, secret string) Pin {
	p := Pin{off: !on}
	if on && secret != "" {
		sum := sha256.Sum256([]byte(secret))
		p.secret = &sum
	}
	return p
}

// RefuseEveryPin is the rule of an endpoint whose secret could not be
// read: the header is honoured only with a secret, and none matches.
func RefuseEveryPin() Pin {
	var none [sha256.Size]byte // no SHA-256 digest is known to be all zeros
	return Pin{secret: &none, unknown: true}
}

// Deployment returns the deployment a request pins itself to, or nil when
// it is to be split like any other: it carries no X-Model-Deployment, or
// the endpoint ignores the header. A pin without the endpoint's secret in
// X-Model-Deployment-Secret is refused (403), not split: a client that
// meant to reach one deployment must not be served by another unawares.
func (p Pin) Deployment(h *fasthttp.RequestHeader, endpoint string) ([]byte, error) {
	name := h.PeekBytes(HeaderDeployment)
	if len(name) == 0 || p.off {
		return nil, nil
	}
	if p.secret == nil {
		return name, nil
	}
	given := h.PeekBytes(HeaderDeploymentSecret)
	if p.unknown {
		return nil, reject(http.StatusForbidden, "X-Model-Deployment on endpoint %q is refused: the gateway cannot read the endpoint's secret (see its log)", endpoint)
	}
	if len(given) == 0 {
		return nil, reject(http.StatusForbidden, "X-Model-Deployment on endpoint %q needs the endpoint's secret in X-Model-Deployment-Secret", endpoint)
	}
	sum := sha256.Sum256(given)
	if subtle.ConstantTimeCompare(sum[:], p.secret[:]) != 1 {
		return nil, reject(http.StatusForbidden, "X-Model-Deployment on endpoint %q: wrong X-Model-Deployment-Secret", endpoint)
	}
	return name, nil
}
