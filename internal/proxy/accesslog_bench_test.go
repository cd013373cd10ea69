package proxy

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/internal/proxy/accesslog"
)

// BenchmarkProxyAccessLog is BenchmarkProxy (goroutine path, in-memory
// listeners) and BenchmarkProxyLoop/split (event loops, TCP) with the
// access log off and on, in each format, written to io.Discard: what a
// line costs the request that writes it. "off" must stay at
// BenchmarkProxy's and BenchmarkProxyLoop's allocations (0 on the loops).
func BenchmarkProxyAccessLog(b *testing.B) {
	ok := func(r *fasthttp.Response) bool {
		return r.StatusCode() == 200 && bytes.Equal(r.Body(), predictAnswer)
	}
	for _, engine := range []string{"goroutines", "loops"} {
		for _, mode := range []string{"off", "text", "json"} {
			b.Run(engine+"/"+mode, func(b *testing.B) {
				var opts Options
				if mode != "off" {
					f, _ := accesslog.ParseFormat(mode)
					log := accesslog.New(io.Discard, accesslog.Options{Format: f})
					defer func() {
						log.Close()
						if d := log.Dropped(); d > 0 {
							b.ReportMetric(float64(d)/float64(b.N), "dropped/op")
						}
					}()
					opts.AccessLog = log
				}
				if engine == "goroutines" {
					benchProxyWith(b, opts, predict, benchEndpoint(), ok)
					return
				}
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2 * runtime.NumCPU()))
				opts.EventLoops = runtime.NumCPU()
				rig := newTCPBenchRig(b, opts, predict, benchEndpoint())
				defer rig.stop()
				if rig.proxy.loops == nil {
					b.Fatal("the proxy runs without event loops")
				}
				before := rig.proxy.loops.served.Load()
				runBench(b, rig, ok)
				if served := rig.proxy.loops.served.Load() - before; served < uint64(b.N) {
					b.Fatalf("the event loops served %d of %d requests", served, b.N)
				}
			})
		}
	}
}
