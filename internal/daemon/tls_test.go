package daemon_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/testcert"
	"github.com/modelgate/modelgate/internal/testenv"
)

// TestTLSEverywhere runs `modelgate serve` with TLS on both listeners
// (mutual TLS on the data plane) in front of an https backend that has a
// private CA and wants the gateway's client certificate (live requests,
// health checks and shadow copies all present it), then rotates the
// data plane's certificate with SIGHUP: a kept-alive connection goes on,
// new connections get the new certificate, and a reload with a bad key
// changes nothing.
func TestTLSEverywhere(t *testing.T) {
	dir := t.TempDir()
	gatewayCA, clientsCA, modelsCA, gatewayClientsCA := testcert.NewCA(t, "gateway CA"), testcert.NewCA(t, "clients CA"),
		testcert.NewCA(t, "models CA"), testcert.NewCA(t, "gateway clients CA")
	certFile, keyFile := gatewayCA.Server(t, "gateway-1").Files(t, dir, "gateway")
	adminCert, adminKey := gatewayCA.Server(t, "admin").Files(t, dir, "admin")
	clientsCAFile := testcert.Write(t, dir, "clients-ca.pem", clientsCA.PEM)
	modelsCAFile := testcert.Write(t, dir, "models-ca.pem", modelsCA.PEM)
	gwClientCert, gwClientKey := gatewayClientsCA.Client(t, "modelgate").Files(t, dir, "to-models")

	// The model server: https with the models CA, and it wants a client
	// certificate of the gateway clients CA.
	var backendPeers sync.Map
	model := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.TLS.PeerCertificates[0].Subject.CommonName + " " + r.URL.Path
		if r.Header.Get("X-Model-Shadow") == "true" {
			key += " shadow"
		}
		backendPeers.Store(key, true)
		w.Header().Set("X-Got-Proto", r.Header.Get("X-Forwarded-Proto"))
		_, _ = io.WriteString(w, "secure model")
	}))
	model.TLS = &tls.Config{
		Certificates: []tls.Certificate{modelsCA.Server(t, "model").TLS},
		ClientCAs:    gatewayClientsCA.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	model.StartTLS()
	t.Cleanup(model.Close)
	backendURL := strings.Replace(model.URL, "127.0.0.1", "localhost", 1)

	cfgPath := filepath.Join(dir, "modelgate.yaml")
	writeConfig(t, cfgPath, fmt.Sprintf(`listen: 127.0.0.1:0
tls:
  cert_file: %s
  key_file: %s
  client_ca_file: %s
admin:
  listen: 127.0.0.1:0
  tls: {cert_file: %s, key_file: %s, min_version: "1.3"}
state:
  path: %s
endpoints:
  - name: fraud
    deployments:
      - name: blue
        backends: [%s]
        health_check: {path: /health, interval: 50ms}
        tls: {ca_file: %[8]s, cert_file: %[9]s, key_file: %[10]s}
      - name: green
        backends: [%[7]s]
        tls: {ca_file: %[8]s, cert_file: %[9]s, key_file: %[10]s}
    traffic: {blue: 100}
    mirror: {green: 100}
`, certFile, keyFile, clientsCAFile, adminCert, adminKey, filepath.Join(dir, "state.db"), backendURL, modelsCAFile, gwClientCert, gwClientKey))
	p := startProcess(t, cfgPath)
	proxyAddr, adminAddr := strings.TrimPrefix(p.proxy, "http://"), strings.TrimPrefix(p.admin, "http://")
	if strings.Contains(p.log(), "without TLS") {
		t.Errorf("warned about a listener without TLS; logs:\n%s", p.log())
	}

	app := clientsCA.Client(t, "app")
	keepAlive := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: gatewayCA.Pool, Certificates: []tls.Certificate{app.TLS}}}
	t.Cleanup(keepAlive.CloseIdleConnections)
	predict := func(tr *http.Transport) (string, bool, error) {
		var reused bool
		var peer string
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			reused = i.Reused
			if tc, ok := i.Conn.(*tls.Conn); ok {
				peer = tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			}
		}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+proxyAddr+"/fraud/predict", strings.NewReader(`{"instances":[[1]]}`))
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return "", false, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "secure model" || resp.Header.Get("X-Got-Proto") != "https" {
			return "", false, fmt.Errorf("answer %d %q, X-Forwarded-Proto %q", resp.StatusCode, body, resp.Header.Get("X-Got-Proto"))
		}
		return peer, reused, nil
	}
	fresh := func() *http.Transport {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: gatewayCA.Pool, Certificates: []tls.Certificate{app.TLS}}, DisableKeepAlives: true}
		return tr
	}

	// mTLS accepted, through to the https backend with its private CA and
	// the gateway's client certificate.
	if peer, _, err := predict(keepAlive); err != nil || peer != "gateway-1" {
		t.Fatalf("a client with a certificate: peer %q, %v; logs:\n%s", peer, err, p.log())
	}
	if _, ok := backendPeers.Load("modelgate /predict"); !ok {
		t.Error("the backend saw no client certificate of the gateway")
	}
	// Health checks and shadow copies connect as live requests do.
	testenv.WaitFor(t, 10*time.Second, "a health check over https with the gateway's certificate", func() bool {
		_, ok := backendPeers.Load("modelgate /health")
		return ok
	})
	testenv.WaitFor(t, 10*time.Second, "a shadow copy over https with the gateway's certificate", func() bool {
		_, ok := backendPeers.Load("modelgate /predict shadow")
		return ok
	})

	// mTLS refused: no client certificate, or one the clients CA did not sign.
	for name, certs := range map[string][]tls.Certificate{"no certificate": nil, "a stranger's certificate": {testcert.NewCA(t, "stranger").Client(t, "eve").TLS}} {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: gatewayCA.Pool, Certificates: certs}}
		_, _, err := predict(tr)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("a client with %s: %v, want a TLS refusal naming the certificate", name, err)
		}
		tr.CloseIdleConnections()
	}

	// The admin API over TLS 1.3; plain HTTP gets no answer of the API.
	if got := adminGet(t, adminAddr, gatewayCA.Pool, p, "/api/v1/endpoints"); !strings.Contains(got, `"fraud"`) {
		t.Errorf("admin over TLS: %s", got)
	}
	tls12 := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: gatewayCA.Pool, MaxVersion: tls.VersionTLS12}}
	if _, err := (&http.Client{Transport: tls12}).Get("https://" + adminAddr + "/api/v1/endpoints"); err == nil {
		t.Error("admin.tls min_version 1.3 accepted a TLS 1.2 client")
	}
	tls12.CloseIdleConnections()
	plain := &http.Transport{}
	defer plain.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: plain}).Get("http://" + adminAddr + "/api/v1/endpoints"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the admin TLS listener: %d", resp.StatusCode)
		}
	}

	// Rotation of both listeners' certificates: new files, SIGHUP.
	gateway2, admin2 := gatewayCA.Server(t, "gateway-2"), gatewayCA.Server(t, "admin-2")
	testcert.Write(t, dir, "gateway.crt", gateway2.CertPEM)
	testcert.Write(t, dir, "gateway.key", gateway2.KeyPEM)
	testcert.Write(t, dir, "admin.crt", admin2.CertPEM)
	testcert.Write(t, dir, "admin.key", admin2.KeyPEM)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "both reloads in the log", func() bool { return strings.Count(p.log(), "TLS certificate reloaded") == 2 })
	ac, err := tls.Dial("tcp", adminAddr, &tls.Config{RootCAs: gatewayCA.Pool})
	if err != nil {
		t.Fatalf("admin after the reload: %v", err)
	}
	if cn := ac.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "admin-2" {
		t.Errorf("a new admin connection after the reload got %q, want admin-2", cn)
	}
	ac.Close()
	if peer, reused, err := predict(keepAlive); err != nil || !reused || peer != "gateway-1" {
		t.Errorf("the kept-alive connection after the reload: peer %q, reused %v, %v", peer, reused, err)
	}
	if peer, _, err := predict(fresh()); err != nil || peer != "gateway-2" {
		t.Errorf("a new connection after the reload: peer %q, %v", peer, err)
	}

	// A bad key: the reload is refused whole, the certificate stays.
	testcert.Write(t, dir, "gateway.key", gatewayCA.Server(t, "other").KeyPEM)
	p.cmd.Process.Signal(syscall.SIGHUP)
	testenv.WaitFor(t, 10*time.Second, "the refusal in the log", func() bool { return strings.Contains(p.log(), "reload refused") })
	if log := p.log(); !strings.Contains(log, "tls.key_file") || !strings.Contains(log, "does not match") || !strings.Contains(log, "keeps its certificate") {
		t.Errorf("the refusal does not name the file and what is wrong; logs:\n%s", log)
	}
	if peer, _, err := predict(fresh()); err != nil || peer != "gateway-2" {
		t.Errorf("a new connection after a refused reload: peer %q, %v", peer, err)
	}
	p.stop(t, syscall.SIGTERM)
}

// adminGet GETs path from the admin API over TLS with the token.
func adminGet(t *testing.T, addr string, roots *x509.CertPool, p *process, path string) string {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(filepath.Dir(p.cmd.Args[len(p.cmd.Args)-1]), "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("admin GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// TestExposedListenerWarnings: serve warns when a listener is reachable
// beyond loopback without TLS, and not when it has TLS or stays on
// loopback.
func TestExposedListenerWarnings(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "ca")
	cert, key := ca.Server(t, "gateway").Files(t, dir, "gateway")
	tlsBlock := fmt.Sprintf("{cert_file: %s, key_file: %s}", cert, key)
	for _, c := range []struct {
		name, listen, adminListen, tls, adminTLS string
		want                                     []string
	}{
		{"both exposed", "0.0.0.0:0", "0.0.0.0:0", "", "", []string{"the admin API listens beyond loopback without TLS", "the data plane listens beyond loopback without TLS"}},
		{"both exposed with TLS", "0.0.0.0:0", "0.0.0.0:0", tlsBlock, tlsBlock, nil},
		{"loopback", "127.0.0.1:0", "127.0.0.1:0", "", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			sub := t.TempDir()
			yaml := fmt.Sprintf("listen: %s\nadmin:\n  listen: %s\n", c.listen, c.adminListen)
			if c.adminTLS != "" {
				yaml += "  tls: " + c.adminTLS + "\n"
			}
			if c.tls != "" {
				yaml += "tls: " + c.tls + "\n"
			}
			yaml += fmt.Sprintf("state:\n  path: %s\n", filepath.Join(sub, "state.db"))
			f, err := config.Parse([]byte(yaml))
			if err != nil {
				t.Fatal(err)
			}
			var logs syncBuffer
			d, err := daemon.New(context.Background(), daemon.Options{Config: f, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Start(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			defer d.Shutdown(ctx)
			got := logs.String()
			for _, w := range c.want {
				if !strings.Contains(got, "level=WARN msg=\""+w) {
					t.Errorf("no warning %q; logs:\n%s", w, got)
				}
			}
			if c.want == nil && strings.Contains(got, "without TLS") {
				t.Errorf("warned; logs:\n%s", got)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
