package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// benchRig is a proxy between an in-memory client and an in-memory
// fasthttp backend, so that a benchmark measures the proxy and not the
// kernel's loopback.
type benchRig struct {
	client *fasthttp.HostClient
	stop   func()
}

func newBenchRig(b *testing.B, opts Options, handler fasthttp.RequestHandler, ep spec.Endpoint) *benchRig {
	b.Helper()
	backendLn := fasthttputil.NewInmemoryListener()
	backend := &fasthttp.Server{Handler: handler}
	go func() { _ = backend.Serve(backendLn) }()

	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(opts)
	s.dial = func(string, time.Duration) (net.Conn, error) { return backendLn.Dial() }
	if err := s.SetRoutes([]spec.Endpoint{ep}); err != nil {
		b.Fatal(err)
	}
	proxyLn := fasthttputil.NewInmemoryListener()
	go func() { _ = s.Serve(proxyLn) }()
	client := &fasthttp.HostClient{
		Addr:     "modelgate",
		Dial:     func(string) (net.Conn, error) { return proxyLn.Dial() },
		MaxConns: 1024,
	}
	return &benchRig{client: client, stop: func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		_ = backend.Shutdown()
	}}
}

var predictBody = []byte(`{"instances": [[0.1, 0.2, 0.3, 0.4]]}`)

// predictRequest makes req the benchmarks' prediction request to uri.
func predictRequest(req *fasthttp.Request, uri string) {
	req.Reset()
	req.Header.SetMethod(fasthttp.MethodPost)
	req.SetRequestURI(uri)
	req.Header.SetContentType("application/json")
	req.Header.Set("X-Request-Id", "bench")
	req.SetBodyRaw(predictBody)
}

func benchProxy(b *testing.B, handler fasthttp.RequestHandler, ep spec.Endpoint, recs func(string, string) Recorder, check func(*fasthttp.Response) bool) {
	benchProxyWith(b, Options{Recorders: recs}, handler, ep, check)
}

func benchProxyWith(b *testing.B, opts Options, handler fasthttp.RequestHandler, ep spec.Endpoint, check func(*fasthttp.Response) bool) {
	rig := newBenchRig(b, opts, handler, ep)
	defer rig.stop()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			predictRequest(req, "http://modelgate/fraud/v1/models/m:predict")
			if err := rig.client.Do(req, resp); err != nil {
				b.Fatal(err)
			}
			if !check(resp) {
				b.Fatalf("unexpected answer %d %q", resp.StatusCode(), resp.Body())
			}
		}
	})
}

func benchEndpoint() spec.Endpoint {
	return spec.Endpoint{
		Name:        "fraud",
		Deployments: []spec.Deployment{dep("blue", "http://blue:9001"), dep("green", "http://green:9002")},
		Traffic:     spec.Weights{"blue": 9500, "green": 500},
	}.WithDefaults()
}

var predictAnswer = []byte(`{"predictions": [0.87]}`)

// BenchmarkProxy is a full proxied request (95/5 split, JSON in and out,
// known-length body) over in-memory listeners on both sides. allocs/op
// counts the client, the proxy and the backend together.
func BenchmarkProxy(b *testing.B) {
	benchProxy(b, predict, benchEndpoint(), nil, func(r *fasthttp.Response) bool {
		return r.StatusCode() == 200 && bytes.Equal(r.Body(), predictAnswer)
	})
}

func predict(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("application/json")
	ctx.SetBody(predictAnswer)
}

// BenchmarkProxyTelemetry is BenchmarkProxy recording into a real
// telemetry registry.
func BenchmarkProxyTelemetry(b *testing.B) {
	benchProxy(b, predict, benchEndpoint(), RecordersFrom(telemetry.NewRegistry()), func(r *fasthttp.Response) bool {
		return r.StatusCode() == 200
	})
}

// BenchmarkBackendDirect is the same request straight to the backend, the
// baseline that BenchmarkProxy's cost is compared with.
func BenchmarkBackendDirect(b *testing.B) {
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(predictAnswer)
	}}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Shutdown()
	client := &fasthttp.HostClient{Addr: "backend", Dial: func(string) (net.Conn, error) { return ln.Dial() }, MaxConns: 1024}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			predictRequest(req, "http://backend/v1/models/m:predict")
			if err := client.Do(req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkProxyStream proxies a chunked streamed answer of 8 events.
func BenchmarkProxyStream(b *testing.B) {
	event := []byte("data: {\"token\": \"x\"}\n\n")
	benchProxy(b, func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/event-stream")
		ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
			for range 8 {
				_, _ = w.Write(event)
				_ = w.Flush()
			}
		})
	}, benchEndpoint(), nil, func(r *fasthttp.Response) bool {
		return r.StatusCode() == 200 && len(r.Body()) == 8*len(event)
	})
}
