package tlsconf_test

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testcert"
	"github.com/modelgate/modelgate/internal/tlsconf"
)

// TestServerFileErrors: every unusable file is refused with its key, its
// path and what to do.
func TestServerFileErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "ca")
	srv := ca.Server(t, "gateway")
	other := ca.Server(t, "other")
	cert, key := srv.Files(t, dir, "srv")
	_, otherKey := other.Files(t, dir, "other")
	empty := testcert.Write(t, dir, "empty.pem", nil)
	junk := testcert.Write(t, dir, "junk.pem", []byte("hello\n"))
	caFile := testcert.Write(t, dir, "ca.pem", ca.PEM)
	for _, c := range []struct {
		name  string
		files tlsconf.ServerFiles
		want  []string
	}{
		{"missing cert", tlsconf.ServerFiles{CertFile: filepath.Join(dir, "nope.crt"), KeyFile: key}, []string{"tls.cert_file", "nope.crt", "no such file"}},
		{"no key", tlsconf.ServerFiles{CertFile: cert}, []string{"cert_file and key_file are both required"}},
		{"key of another certificate", tlsconf.ServerFiles{CertFile: cert, KeyFile: otherKey}, []string{"tls.key_file", "other.key", "does not match", "srv.crt", "the key the certificate was issued for"}},
		{"key given as certificate", tlsconf.ServerFiles{CertFile: key, KeyFile: key}, []string{"tls.cert_file", "srv.key", "BEGIN CERTIFICATE"}},
		{"empty key", tlsconf.ServerFiles{CertFile: cert, KeyFile: empty}, []string{"tls.key_file", "empty.pem", "the file is empty"}},
		{"junk client CA", tlsconf.ServerFiles{CertFile: cert, KeyFile: key, ClientCAFile: junk}, []string{"tls.client_ca_file", "junk.pem", "holds no certificate"}},
		{"old version", tlsconf.ServerFiles{CertFile: cert, KeyFile: key, MinVersion: "1.0"}, []string{"tls.min_version", "deprecated", "1.2 or 1.3"}},
		{"unknown version", tlsconf.ServerFiles{CertFile: cert, KeyFile: key, MinVersion: "2"}, []string{"tls.min_version", "not a TLS version"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := tlsconf.NewServer("tls", c.files)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	if _, err := tlsconf.NewServer("tls", tlsconf.ServerFiles{CertFile: cert, KeyFile: key, ClientCAFile: caFile, MinVersion: "TLSv1.3"}); err != nil {
		t.Fatalf("good files refused: %v", err)
	}
}

// TestServerReload: a reload with bad files keeps the certificate in use;
// a good one serves new handshakes the new certificate while a connection
// made before keeps working.
func TestServerReload(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "ca")
	first, second := ca.Server(t, "first"), ca.Server(t, "second")
	cert, key := first.Files(t, dir, "srv")
	files := tlsconf.ServerFiles{CertFile: cert, KeyFile: key}
	s, err := tlsconf.NewServer("tls", files)
	if err != nil {
		t.Fatal(err)
	}
	ln := serveTLS(t, s.Config(), func(c net.Conn) { // echo
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	})
	dial := func() *tls.Conn {
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool, ServerName: "localhost"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	echo := func(c *tls.Conn) {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1)
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	cn := func(c *tls.Conn) string { return c.ConnectionState().PeerCertificates[0].Subject.CommonName }
	old := dial()
	echo(old)

	// A half-written key: refused, the old certificate stays.
	testcert.Write(t, dir, "srv.crt", second.CertPEM)
	testcert.Write(t, dir, "srv.key", second.KeyPEM[:40])
	if _, err := s.Reload(files); err == nil || !strings.Contains(err.Error(), "tls.key_file") {
		t.Fatalf("reload with a cut key: %v", err)
	}
	if c := dial(); cn(c) != "first" {
		t.Fatalf("after a refused reload a new connection got %q", cn(c))
	}
	testcert.Write(t, dir, "srv.key", second.KeyPEM)
	if changed, err := s.Reload(files); err != nil || !changed {
		t.Fatalf("reload: changed %v, %v", changed, err)
	}
	if c := dial(); cn(c) != "second" {
		t.Fatalf("after the reload a new connection got %q", cn(c))
	}
	echo(old) // the connection made before the reload goes on
	if changed, err := s.Reload(files); err != nil || changed {
		t.Fatalf("reload of the same files: changed %v, %v", changed, err)
	}
}

// TestBackendConfig: a CA bundle, a client certificate and a server name
// make one config; bad files are named.
func TestBackendConfig(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "ca")
	client := ca.Client(t, "gateway")
	cert, key := client.Files(t, dir, "client")
	caFile := testcert.Write(t, dir, "ca.pem", ca.PEM)
	b, err := tlsconf.NewBackend("deployments[0].tls", &spec.BackendTLS{CAFile: caFile, CertFile: cert, KeyFile: key, ServerName: "model.internal"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := b.For("10.0.0.5")
	if c.ServerName != "model.internal" || len(c.Certificates) != 1 || c.RootCAs == nil {
		t.Fatalf("config: server name %q, %d certificates, roots %v", c.ServerName, len(c.Certificates), c.RootCAs)
	}
	if d, _ := tlsconf.NewBackend("", nil, nil); d.For("model.internal").ServerName != "model.internal" {
		t.Fatal("the URL's host is not the default server name")
	}
	again, err := tlsconf.NewBackend("deployments[0].tls", &spec.BackendTLS{CAFile: caFile, CertFile: cert, KeyFile: key, ServerName: "model.internal"}, nil)
	if err != nil || !again.Same(b) {
		t.Fatalf("the same files read again differ: %v", err)
	}
	_, err = tlsconf.NewBackend("deployments[0].tls", &spec.BackendTLS{CAFile: cert + ".missing"}, nil)
	if err == nil || !strings.Contains(err.Error(), "deployments[0].tls.ca_file") {
		t.Fatalf("missing CA file: %v", err)
	}
	if err := os.WriteFile(caFile, []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = tlsconf.NewBackend("d.tls", &spec.BackendTLS{CAFile: caFile}, nil)
	if err == nil || !strings.Contains(err.Error(), "certificate 1 does not parse") {
		t.Fatalf("broken CA: %v", err)
	}
}

// TestDialerHandshakeFailure: a backend whose certificate the CA did not
// sign fails the dial as a handshake error naming the address.
func TestDialerHandshakeFailure(t *testing.T) {
	ca, stranger := testcert.NewCA(t, "ca"), testcert.NewCA(t, "stranger")
	srv := stranger.Server(t, "backend")
	ln := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{srv.TLS}}, func(c net.Conn) { _ = c.(*tls.Conn).Handshake() })
	b, err := tlsconf.NewBackend("", nil, ca.Pool)
	if err != nil {
		t.Fatal(err)
	}
	_, err = tlsconf.Dialer{}.Dial(ln.Addr().String(), b.For("localhost"), time.Second, time.Now().Add(5*time.Second))
	if err == nil || !strings.Contains(err.Error(), "tls handshake with backend "+ln.Addr().String()) {
		t.Fatalf("dial: %v", err)
	}
}

// serveTLS listens with cfg on a loopback port until the test ends and
// serves each connection with handle, closing it after.
func serveTLS(t *testing.T, cfg *tls.Config, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}

// FuzzParseCAs: a CA bundle never panics the parser, and what it accepts
// it counts.
func FuzzParseCAs(f *testing.F) {
	ca := testcert.NewCA(f, "ca")
	f.Add(ca.PEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		pool, n, err := tlsconf.ParseCAs(data)
		if err == nil && (pool == nil || n < 0) {
			t.Fatal("no pool without an error")
		}
		_ = tlsconf.PEMHas(data, "CERTIFICATE")
	})
}
