// Package tlsconf builds modelgate's TLS configurations from files: the
// listeners' (a certificate and key, optionally a client CA for mutual
// TLS), re-read on SIGHUP without dropping a connection, and the backends'
// (a CA bundle, a client certificate, a server name), shared by every part
// of the gateway that connects to a backend (the live proxy, shadow copies,
// active health checks) through one Dialer.
//
// Every error names the file, what is wrong with it and the fix.
package tlsconf

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// ServerFiles are the files of a listener's TLS (the config file's `tls:`
// and `admin.tls:` blocks).
type ServerFiles struct {
	// CertFile holds the server's certificate chain (PEM), leaf first.
	CertFile string
	// KeyFile holds its private key (PEM: PKCS #1, PKCS #8 or EC).
	KeyFile string
	// ClientCAFile, when set, holds the CA certificates (PEM) a client's
	// certificate must chain to: mutual TLS, every client must present one.
	ClientCAFile string
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3".
	MinVersion string
}

// Enabled reports whether TLS is configured (a certificate is given).
func (f ServerFiles) Enabled() bool { return f.CertFile != "" || f.KeyFile != "" }

// maxFileBytes bounds a PEM file read (a CA bundle of every public root is
// about 200 KiB).
const maxFileBytes = 4 << 20

// ParseVersion parses a min_version: "" (1.2), "1.2", "1.3", also written
// "TLS1.2", "TLSv1.2" or "TLS12" (as nginx and Prometheus write them).
// Versions below 1.2 are refused: every current client speaks 1.2.
func ParseVersion(s string) (uint16, error) {
	v := strings.ToUpper(strings.TrimSpace(s))
	v = strings.TrimPrefix(strings.TrimPrefix(v, "TLS"), "V")
	switch v {
	case "", "1.2", "12":
		return tls.VersionTLS12, nil
	case "1.3", "13":
		return tls.VersionTLS13, nil
	case "1.0", "10", "1.1", "11":
		return 0, fmt.Errorf("%q is not accepted: TLS 1.0 and 1.1 are deprecated (RFC 8996); use 1.2 or 1.3", s)
	}
	return 0, fmt.Errorf("%q is not a TLS version: use 1.2 or 1.3", s)
}

// readFile reads a PEM file; what names it in errors ("tls.cert_file").
func readFile(what, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%s is required", what)
	}
	// Non-blocking: a FIFO put there cannot hold the reload.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, path, unwrapPath(err))
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s %q is not a regular file (%s)", what, path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %q: %w", what, path, unwrapPath(err))
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("%s %q is larger than %d MiB: it should hold PEM certificates or a key", what, path, maxFileBytes>>20)
	}
	return data, nil
}

// unwrapPath drops the path an *os.PathError repeats.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// keyPair loads a certificate chain and its key; the errors name both
// files and the fix.
func keyPair(certWhat, certPath, keyWhat, keyPath string) (tls.Certificate, error) {
	certPEM, err := readFile(certWhat, certPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readFile(keyWhat, keyPath)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := PEMHas(certPEM, "CERTIFICATE"); err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %q: %w: it must hold the certificate (-----BEGIN CERTIFICATE-----), leaf first, then its intermediates", certWhat, certPath, err)
	}
	if err := PEMHas(keyPEM, "PRIVATE KEY"); err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %q: %w: it must hold the private key (-----BEGIN PRIVATE KEY-----, RSA or EC)", keyWhat, keyPath, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if strings.Contains(err.Error(), "does not match") {
			return tls.Certificate{}, fmt.Errorf("%s %q does not match %s %q: give the key the certificate was issued for", keyWhat, keyPath, certWhat, certPath)
		}
		return tls.Certificate{}, fmt.Errorf("%s %q, %s %q: %w", certWhat, certPath, keyWhat, keyPath, err)
	}
	return cert, nil
}

// PEMHas checks that data holds at least one PEM block whose type ends in
// kind ("CERTIFICATE", "PRIVATE KEY"), with nothing but blocks and
// whitespace around them.
func PEMHas(data []byte, kind string) error {
	found := false
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if strings.HasSuffix(b.Type, kind) {
			found = true
		}
	}
	if !found {
		if len(bytes.TrimSpace(data)) == 0 {
			return errors.New("the file is empty")
		}
		return fmt.Errorf("no PEM block of type %s found", kind)
	}
	return nil
}

// certPool parses a CA bundle: every certificate in it must parse.
func certPool(what, path string) (*x509.CertPool, []byte, error) {
	data, err := readFile(what, path)
	if err != nil {
		return nil, nil, err
	}
	pool, n, err := ParseCAs(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %q: %w", what, path, err)
	}
	if n == 0 {
		return nil, nil, fmt.Errorf("%s %q holds no certificate: it must hold CA certificates in PEM (-----BEGIN CERTIFICATE-----)", what, path)
	}
	return pool, data, nil
}

// ParseCAs parses every CERTIFICATE block of a PEM bundle into a pool and
// says how many there were; a block that does not parse is an error (a
// bundle silently missing a CA would refuse peers later, far from the
// cause). Blocks of other types are skipped.
func ParseCAs(data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d does not parse: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	return pool, n, nil
}

// serverState is one loaded set of a listener's files.
type serverState struct {
	config *tls.Config
	digest [sha256.Size]byte
	leaf   *x509.Certificate
}

// Server is a listener's TLS configuration whose files are re-read by
// Reload. Config's GetConfigForClient hands every new handshake the
// latest loaded state: connections already open keep theirs, new ones get
// the new certificate (and client CAs).
type Server struct {
	field string // "tls", "admin.tls": names the keys in errors
	cur   atomic.Pointer[serverState]
}

// NewServer loads files; field names the config block in errors.
func NewServer(field string, files ServerFiles) (*Server, error) {
	s := &Server{field: field}
	st, err := s.load(files)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

// Reload reads files again (the same or new paths). On error the
// certificate loaded before stays in use and the error says why; nothing
// is half applied. changed reports whether anything read differs.
func (s *Server) Reload(files ServerFiles) (changed bool, err error) {
	commit, err := s.Prepare(files)
	if err != nil {
		return false, err
	}
	return commit(), nil
}

// Prepare reads files without using them yet: commit swaps them in (for
// new handshakes) and reports whether anything changed. A caller that
// reloads several things at once prepares each, and commits all or none.
func (s *Server) Prepare(files ServerFiles) (commit func() (changed bool), err error) {
	st, err := s.load(files)
	if err != nil {
		return nil, err
	}
	return func() bool {
		if old := s.cur.Load(); old != nil && old.digest == st.digest {
			return false
		}
		s.cur.Store(st)
		return true
	}, nil
}

// NotAfter is when the certificate in use expires.
func (s *Server) NotAfter() time.Time { return s.cur.Load().leaf.NotAfter }

// Subject is the certificate in use's subject, for logs.
func (s *Server) Subject() string { return s.cur.Load().leaf.Subject.String() }

// Config returns the tls.Config to serve with.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().config, nil
		},
	}
}

func (s *Server) load(f ServerFiles) (*serverState, error) {
	min, err := ParseVersion(f.MinVersion)
	if err != nil {
		return nil, fmt.Errorf("%s.min_version: %w", s.field, err)
	}
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, fmt.Errorf("%s: cert_file and key_file are both required", s.field)
	}
	cert, err := keyPair(s.field+".cert_file", f.CertFile, s.field+".key_file", f.KeyFile)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("%s.cert_file %q: %w", s.field, f.CertFile, err)
	}
	cert.Leaf = leaf
	h := sha256.New()
	for _, c := range cert.Certificate {
		h.Write(c)
	}
	fmt.Fprintf(h, "%d", min)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   min,
		NextProtos:   []string{"http/1.1"},
	}
	if f.ClientCAFile != "" {
		pool, raw, err := certPool(s.field+".client_ca_file", f.ClientCAFile)
		if err != nil {
			return nil, err
		}
		h.Write(raw)
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	// The key is part of the state: a new key with the same certificate
	// cannot be (it would not match), so hashing the chain suffices.
	st := &serverState{config: cfg, leaf: leaf}
	copy(st.digest[:], h.Sum(nil))
	return st, nil
}
