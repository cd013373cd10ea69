package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// benchRig is a proxy between a fasthttp client and a fasthttp backend.
// Over in-memory listeners (newBenchRig) a benchmark measures the
// goroutine path without the kernel's loopback; over TCP (newTCPBenchRig)
// it measures the event loops, the path real clients take.
type benchRig struct {
	client *fasthttp.HostClient
	proxy  *Server
	stop   func()
}

func newBenchRig(b *testing.B, opts Options, handler fasthttp.RequestHandler, ep spec.Endpoint) *benchRig {
	b.Helper()
	backendLn, proxyLn := fasthttputil.NewInmemoryListener(), fasthttputil.NewInmemoryListener()
	return startBenchRig(b, opts, handler, ep, backendLn, proxyLn, backendLn.Dial, proxyLn.Dial)
}

func newTCPBenchRig(b *testing.B, opts Options, handler fasthttp.RequestHandler, ep spec.Endpoint) *benchRig {
	b.Helper()
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		return ln
	}
	backendLn, proxyLn := listen(), listen()
	dial := func(ln net.Listener) func() (net.Conn, error) {
		return func() (net.Conn, error) { return net.Dial("tcp", ln.Addr().String()) }
	}
	return startBenchRig(b, opts, handler, ep, backendLn, proxyLn, dial(backendLn), dial(proxyLn))
}

func startBenchRig(b *testing.B, opts Options, handler fasthttp.RequestHandler, ep spec.Endpoint,
	backendLn, proxyLn net.Listener, dialBackend, dialProxy func() (net.Conn, error)) *benchRig {
	b.Helper()
	backend := &fasthttp.Server{Handler: handler}
	go func() { _ = backend.Serve(backendLn) }()

	opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s := New(opts)
	s.dial = func(string, time.Duration) (net.Conn, error) { return dialBackend() }
	if err := s.SetRoutes([]spec.Endpoint{ep}); err != nil {
		b.Fatal(err)
	}
	go func() { _ = s.Serve(proxyLn) }()
	client := &fasthttp.HostClient{
		Addr:     "modelgate",
		Dial:     func(string) (net.Conn, error) { return dialProxy() },
		MaxConns: 1024,
	}
	return &benchRig{client: client, proxy: s, stop: func() {
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
	runBench(b, rig, check)
}

// runBench sends the prediction request through rig from parallel
// clients, b.N times in all.
func runBench(b *testing.B, rig *benchRig, check func(*fasthttp.Response) bool) {
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

// BenchmarkProxyLoop is BenchmarkProxy over TCP on loopback, so that the
// event loops serve it; "mirror" also copies every request to a third
// deployment (the copy itself is the one allocation per request). It
// fails unless the loops served every request: allocs/op is then the loop
// path's (client and backend included).
func BenchmarkProxyLoop(b *testing.B) {
	for _, tc := range []struct {
		name   string
		mirror Mirror
	}{{"split", nil}, {"mirror", &discardMirror{}}} {
		b.Run(tc.name, func(b *testing.B) { benchLoop(b, tc.mirror) })
	}
}

// benchLoop is one BenchmarkProxyLoop: with mirror, every request is also
// copied to a third deployment.
func benchLoop(b *testing.B, mirror Mirror) {
	ep := benchEndpoint()
	if mirror != nil {
		ep.Deployments = append(ep.Deployments, dep("shadow", "http://shadow:9003"))
		ep = ep.WithDefaults()
		ep.Mirror = spec.Weights{"shadow": 10000}
	}
	// As the daemon runs them: a loop per CPU and as many Ps again (see
	// daemon.reserveLoopProcs).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2 * runtime.NumCPU()))
	rig := newTCPBenchRig(b, Options{Mirror: mirror, EventLoops: runtime.NumCPU()}, predict, ep)
	defer rig.stop()
	if rig.proxy.loops == nil {
		b.Fatal("the proxy runs without event loops")
	}
	before := rig.proxy.loops.served.Load()
	runBench(b, rig, func(r *fasthttp.Response) bool {
		return r.StatusCode() == 200 && bytes.Equal(r.Body(), predictAnswer)
	})
	if served := rig.proxy.loops.served.Load() - before; served < uint64(b.N) {
		b.Fatalf("the event loops served %d of %d requests", served, b.N)
	}
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
