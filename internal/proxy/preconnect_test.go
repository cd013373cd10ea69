package proxy

import (
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/spec"
)

// countingBackend answers "ok" and counts the connections it accepted;
// tls serves it over https.
func countingBackend(t *testing.T, tls ...bool) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	if len(tls) > 0 && tls[0] {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, &conns
}

// fresh is get on a client connection of its own, closed after the answer.
func fresh(t *testing.T, url string, headers ...string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(t, req)
}

// TestPreconnect: connections opened ahead of a canary's first stage are
// the ones its first requests use, in every engine mode: after Preconnect,
// requests to the deployment open no connection of their own, whether the
// loops serve it (one connection per loop) or the goroutine path does (an
// https deployment: preconnectPerBackend connections); an unknown endpoint
// or deployment opens nothing.
func TestPreconnect(t *testing.T) {
	forEachMode(t, func(t *testing.T, opts Options) {
		blue, _ := countingBackend(t)
		green, greenConns := countingBackend(t)
		secure, secureConns := countingBackend(t, true)
		roots := x509.NewCertPool()
		roots.AddCert(secure.Certificate())
		gw := modeGatewayWith(t, opts, func(s *Server) { s.upstreamRoots = roots },
			mkEndpoint(t, "fraud", spec.Weights{"blue": spec.Full}, dep("blue", blue.URL), dep("green", green.URL), dep("secure", secure.URL)))

		// Requests to blue on new connections: every loop serves a client
		// (round robin), as on a gateway that has served the stable a while.
		for range 8 {
			fresh(t, gw.url+"/fraud/p")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		n := gw.Preconnect(ctx, "fraud", "green")
		if n == 0 {
			t.Fatal("Preconnect opened no connection to green")
		}
		eventually(t, "green's backend to accept the opened connections", func() bool { return greenConns.Load() == int32(n) })
		if !opts.GoroutinesOnly && n != gw.loops.numLoops {
			t.Errorf("Preconnect opened %d connections on %d loops, want one per loop", n, gw.loops.numLoops)
		}
		for range 20 { // on new client connections, so on every loop
			if a := fresh(t, gw.url+"/fraud/p", "X-Model-Deployment", "green"); a.status != 200 || a.body != "ok" {
				t.Fatalf("pinned request to green = %d %q", a.status, a.body)
			}
		}
		if got := greenConns.Load(); got != int32(n) {
			t.Errorf("green's backend accepted %d connections after 20 requests, want the %d opened ahead", got, n)
		}

		// An https deployment is the goroutine path's in every mode.
		if got := gw.Preconnect(ctx, "fraud", "secure"); got != preconnectPerBackend {
			t.Errorf("Preconnect to an https deployment opened %d connections, want %d", got, preconnectPerBackend)
		}
		eventually(t, "the https backend to accept the opened connections", func() bool { return secureConns.Load() == preconnectPerBackend })
		for range 5 {
			if a := get(t, gw.url+"/fraud/p", "X-Model-Deployment", "secure"); a.status != 200 || a.body != "ok" {
				t.Fatalf("pinned request to the https deployment = %d %q", a.status, a.body)
			}
		}
		if got := secureConns.Load(); got != preconnectPerBackend {
			t.Errorf("the https backend accepted %d connections after 5 requests, want the %d opened ahead", got, preconnectPerBackend)
		}
		for _, d := range [][2]string{{"fraud", "red"}, {"nope", "green"}} {
			if got := gw.Preconnect(ctx, d[0], d[1]); got != 0 {
				t.Errorf("Preconnect(%s, %s) opened %d connections, want none", d[0], d[1], got)
			}
		}
	})
}
