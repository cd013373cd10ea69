package tlsconf

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// Backend is the TLS of one deployment's https backends, built from its
// spec.BackendTLS. Every part of the gateway that connects to those
// backends (live requests, shadow copies, health checks) takes its
// tls.Config from the same Backend and connects through a Dialer.
type Backend struct {
	base     *tls.Config
	digest   [sha256.Size]byte
	insecure bool
}

// NewBackend reads t's files (nil t: defaults). roots, when not nil, is
// trusted instead of the system's roots where t names no ca_file (tests
// trust their own CA with it). field names the keys in errors
// ("endpoints[0].deployments[1].tls").
func NewBackend(field string, t *spec.BackendTLS, roots *x509.CertPool) (*Backend, error) {
	if t == nil {
		t = &spec.BackendTLS{}
	}
	if field != "" {
		field += "."
	}
	h := sha256.New()
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		RootCAs:            roots,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice, warned about
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	fmt.Fprintf(h, "%q %v %p\n", t.ServerName, t.InsecureSkipVerify, roots)
	if t.CAFile != "" {
		pool, raw, err := certPool(field+"ca_file", t.CAFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
		h.Write(raw)
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if t.CertFile == "" || t.KeyFile == "" {
			return nil, fmt.Errorf("%scert_file and %skey_file go together: give both or neither", field, field)
		}
		cert, err := keyPair(field+"cert_file", t.CertFile, field+"key_file", t.KeyFile)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
		for _, c := range cert.Certificate {
			h.Write(c)
		}
	}
	b := &Backend{base: cfg, insecure: t.InsecureSkipVerify}
	copy(b.digest[:], h.Sum(nil))
	return b, nil
}

// Insecure reports whether backends' certificates go unverified.
func (b *Backend) Insecure() bool { return b.insecure }

// Same reports whether o was built from the same settings and file
// contents, so that the configs handed out before (and their session
// caches) can stay.
func (b *Backend) Same(o *Backend) bool { return b != nil && o != nil && b.digest == o.digest }

// For returns the tls.Config for a backend whose URL host is host: the
// configured server_name, else host, as SNI and the name checked.
func (b *Backend) For(host string) *tls.Config {
	c := b.base.Clone()
	if c.ServerName == "" {
		c.ServerName = host
	}
	c.ClientSessionCache = b.base.ClientSessionCache // shared, not cloned away
	return c
}

// Dialer opens connections to backends: a TCP connection within the
// timeout, then, for an https backend, the TLS handshake within the
// deadline. The proxy's pools, its health checks and the shadow copies all
// connect through it.
type Dialer struct {
	// Raw opens the TCP connection. Nil: net.DialTimeout.
	Raw func(addr string, timeout time.Duration) (net.Conn, error)
}

// ErrHandshake wraps a failed TLS handshake with a backend.
var ErrHandshake = errors.New("tls handshake with backend")

// Dial connects to addr, with TLS when cfg is not nil; the TCP connect may
// take at most maxConnect, the whole at most until deadline.
func (d Dialer) Dial(addr string, cfg *tls.Config, maxConnect time.Duration, deadline time.Time) (net.Conn, error) {
	timeout := min(time.Until(deadline), maxConnect)
	if timeout <= 0 {
		return nil, fmt.Errorf("connect to %s: %w", addr, errTimeout{})
	}
	raw := d.Raw
	if raw == nil {
		raw = func(addr string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", addr, timeout)
		}
	}
	c, err := raw(addr, timeout)
	if err != nil || cfg == nil {
		return c, err
	}
	tc := tls.Client(c, cfg)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	err = tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("%w %s: %w", ErrHandshake, addr, err)
	}
	return tc, nil
}

// errTimeout is a dial that had no time left.
type errTimeout struct{}

func (errTimeout) Error() string   { return "no time left to connect" }
func (errTimeout) Timeout() bool   { return true }
func (errTimeout) Temporary() bool { return true }

// Unusable is a Backend for a deployment whose tls files could not be
// read: every handshake fails with err, so that the backend's last error
// says why.
func Unusable(err error) *Backend {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Nothing is trusted: VerifyConnection refuses every backend, with
		// the reason, instead of a certificate error hiding it.
		InsecureSkipVerify: true, //nolint:gosec // see above
		VerifyConnection: func(tls.ConnectionState) error {
			return fmt.Errorf("the deployment's tls files are unusable: %w", err)
		},
	}
	b := &Backend{base: cfg}
	b.digest = sha256.Sum256([]byte("unusable: " + err.Error()))
	return b
}
