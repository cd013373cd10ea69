// Package testcert makes certificates for tests at test time: a private CA
// (crypto/x509, ECDSA P-256) and server and client certificates it signs,
// as PEM files in a test's directory.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
)

// TB is what the helpers need of a test: testing.TB, or Panicking for a
// package-level certificate.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Panicking is a TB that panics, for certificates made outside a test
// (a package's shared test CA).
type Panicking struct{}

func (Panicking) Helper()           {}
func (Panicking) Fatal(args ...any) { panic(fmt.Sprint(args...)) }

// CA is a private certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// PEM is the CA's certificate, PEM encoded.
	PEM []byte
	// Pool trusts the CA alone.
	Pool *x509.CertPool
}

var serial atomic.Int64

// NewCA makes a CA named name.
func NewCA(t TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := template(name)
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	der, cert := create(t, tmpl, tmpl, key, key)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), Pool: pool}
}

// newKey makes a P-256 key.
func newKey(t TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// template is a certificate for cn valid from an hour ago for a day.
func template(cn string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
}

// create signs tmpl for key with parent and its key, and parses it back.
func create(t TB, tmpl, parent *x509.Certificate, key, parentKey *ecdsa.PrivateKey) ([]byte, *x509.Certificate) {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return der, cert
}

// Pair is a certificate and its key.
type Pair struct {
	Cert    *x509.Certificate
	CertPEM []byte // the certificate, then the CA's (a chain)
	KeyPEM  []byte
	TLS     tls.Certificate
}

// Server issues a server certificate for localhost, 127.0.0.1, ::1 and
// the given names, with common name cn.
func (ca *CA) Server(t TB, cn string, names ...string) *Pair {
	t.Helper()
	return ca.issue(t, cn, x509.ExtKeyUsageServerAuth, append([]string{"localhost", "127.0.0.1", "::1"}, names...))
}

// Client issues a client certificate with common name cn.
func (ca *CA) Client(t TB, cn string) *Pair {
	t.Helper()
	return ca.issue(t, cn, x509.ExtKeyUsageClientAuth, nil)
}

func (ca *CA) issue(t TB, cn string, usage x509.ExtKeyUsage, names []string) *Pair {
	t.Helper()
	key := newKey(t)
	tmpl := template(cn)
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, cert := create(t, tmpl, ca.Cert, key, ca.key)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pair{
		Cert:    cert,
		CertPEM: append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), ca.PEM...),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
	if p.TLS, err = tls.X509KeyPair(p.CertPEM, p.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return p
}

// Write writes data to dir/name (mode 0600) and returns the path.
func Write(t TB, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Files writes p as dir/name.crt and dir/name.key and returns both paths.
func (p *Pair) Files(t TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	return Write(t, dir, name+".crt", p.CertPEM), Write(t, dir, name+".key", p.KeyPEM)
}
