package proxy

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testcert"
)

// TestHTTPSBackendTLSFiles: a deployment's tls block (a private CA, a
// client certificate the backend requires, a server name) serves in every
// mode; a CA that did not sign the backend's certificate is a 502 whose
// backend error names the handshake, and a fixed file applied again
// serves.
func TestHTTPSBackendTLSFiles(t *testing.T) {
	dir := t.TempDir()
	modelsCA, gwCA, stranger := testcert.NewCA(t, "models"), testcert.NewCA(t, "gateway clients"), testcert.NewCA(t, "stranger")
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.TLS.PeerCertificates[0].Subject.CommonName+" via "+r.TLS.ServerName)
	}))
	backend.TLS = &tls.Config{
		Certificates: []tls.Certificate{modelsCA.Server(t, "model", "model.internal").TLS},
		ClientCAs:    gwCA.Pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
	}
	backend.StartTLS()
	t.Cleanup(backend.Close)
	caFile := testcert.Write(t, dir, "models.pem", modelsCA.PEM)
	wrongCA := testcert.Write(t, dir, "stranger.pem", stranger.PEM)
	cert, key := gwCA.Client(t, "modelgate").Files(t, dir, "client")
	secure := func(ca string) spec.Endpoint {
		d := dep("blue", backend.URL)
		d.TLS = &spec.BackendTLS{CAFile: ca, CertFile: cert, KeyFile: key, ServerName: "model.internal"}
		return mkEndpoint(t, "fraud", nil, d)
	}
	forEachModeTLS(t, func(t *testing.T, opts Options) {
		gw := modeGateway(t, opts, secure(caFile))
		if a := get(t, gw.url+"/fraud/p"); a.status != 200 || a.body != "hello modelgate via model.internal" {
			t.Fatalf("answer %d %q", a.status, a.body)
		}
		if err := gw.SetRoutes([]spec.Endpoint{secure(wrongCA)}); err != nil {
			t.Fatal(err)
		}
		client.CloseIdleConnections()
		// Connections made before keep their TLS until they idle out;
		// close them now so that the next request connects with the new
		// files.
		for _, b := range gw.pools["fraud/blue"].backends {
			b.conns.pruneIdle(time.Now().Add(time.Hour).UnixNano())
		}
		if a := get(t, gw.url+"/fraud/p"); a.status != 502 {
			t.Fatalf("with a CA that did not sign the backend: %d %q", a.status, a.body)
		}
		if h := gw.Health()["fraud"]["blue"][0]; !strings.Contains(h.LastError, "tls handshake with backend") || !strings.Contains(h.LastError, "certificate") {
			t.Errorf("backend error %q does not name the handshake and the certificate", h.LastError)
		}
		if err := gw.SetRoutes([]spec.Endpoint{secure(caFile)}); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for a := get(t, gw.url+"/fraud/p"); a.status != 200; a = get(t, gw.url+"/fraud/p") {
			if time.Now().After(deadline) { // passive health may hold it out for fail_timeout
				t.Fatalf("after the fix: %d %q", a.status, a.body)
			}
			eventually(t, "the backend back in rotation", func() bool { return gw.Health()["fraud"]["blue"][0].Healthy })
		}
	})
}
