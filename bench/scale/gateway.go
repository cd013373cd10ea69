package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelgate/modelgate/bench/internal/fill"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/proxy"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// gatewayEnv, set in a child's environment to its config file's path,
// makes this program (or the test binary) run the gateway instead of the
// bench: the bench re-executes itself so that the gateway is a process of
// its own, whose peak RSS (VmHWM) holds nothing but the gateway and the
// few commands below.
const gatewayEnv = "MODELGATE_BENCH_SCALE_GATEWAY"

// hello is the child's first line on stdout, once it serves.
type hello struct {
	Proxy, Admin, Token string
	Error               string `json:",omitempty"`
}

// answer is the child's line for each command it reads on stdin.
type answer struct {
	Error string `json:",omitempty"`
	// fill
	FillMs  float64 `json:",omitempty"`
	Checked string  `json:",omitempty"`
	// compile: medians over the repetitions, milliseconds
	CompileMs, RecompileMs float64 `json:",omitempty"`
	Endpoints              int     `json:",omitempty"`
	// mem
	HeapInuse, HeapAlloc, Sys, TotalAlloc uint64 `json:",omitempty"`
	NumGC                                 uint32 `json:",omitempty"`
}

// serveGateway runs the real daemon (daemon.New and Start, as `modelgate
// serve` does) from the config file at path and then answers commands, one
// line each, on stdin:
//
//	fill PER_SECOND MIN_NS MAX_NS EP/DEP ...   an hour of telemetry for those deployments
//	compile REPS                               time proxy.SetRoutes of every endpoint
//	cpuprofile PATH                            start a CPU profile into PATH
//	cpuprofile                                 stop it
//	free                                       debug.FreeOSMemory: collect, return the garbage's pages
//	mem                                        the Go runtime's memory
//	quit                                       shut down and exit
//
// Everything else (apply, requests, scrapes, queries) the bench does from
// outside, through the gateway's listeners.
func serveGateway(path string) {
	out := json.NewEncoder(os.Stdout)
	cfg, err := config.Load(path)
	if err != nil {
		out.Encode(hello{Error: err.Error()})
		os.Exit(1)
	}
	d, err := daemon.New(context.Background(), daemon.Options{Config: cfg})
	if err == nil {
		err = d.Start()
	}
	if err != nil {
		out.Encode(hello{Error: err.Error()})
		os.Exit(1)
	}
	out.Encode(hello{Proxy: d.ProxyAddr(), Admin: d.AdminAddr(), Token: d.Token()})
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		var a answer
		switch f[0] {
		case "fill":
			a = fillCmd(d.Telemetry(), f[1:])
		case "compile":
			a = compileCmd(d, f[1:])
		case "cpuprofile":
			a = cpuProfileCmd(f[1:])
		case "free":
			debug.FreeOSMemory()
			a = answer{}
		case "mem":
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			a = answer{HeapInuse: ms.HeapInuse, HeapAlloc: ms.HeapAlloc, Sys: ms.Sys, TotalAlloc: ms.TotalAlloc, NumGC: ms.NumGC}
		case "quit":
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			d.Shutdown(ctx)
			cancel()
			out.Encode(answer{})
			os.Exit(0)
		default:
			a.Error = fmt.Sprintf("unknown command %q", f[0])
		}
		out.Encode(a)
	}
	// stdin closed: the bench is gone.
	os.Exit(1)
}

// fillCmd writes an hour of past observations into each named deployment's
// Recorder, the very one the data plane records into (Registry.Recorder
// returns the pointer the proxy resolved when it compiled its table), with
// the Recorder's own Begin and Observe, as bench/memory does: perSecond
// observations in every second of the last hour, oldest first, latencies
// spread log-evenly over min..max and shifted every second, so that with
// 1µs..1h every page of every slot is written (the worst case). The
// deployments are filled by one goroutine per CPU.
func fillCmd(reg *telemetry.Registry, args []string) answer {
	if len(args) < 3 {
		return answer{Error: "fill: want PER_SECOND MIN_NS MAX_NS EP/DEP..."}
	}
	perSecond, err1 := strconv.Atoi(args[0])
	minLat, err2 := strconv.ParseInt(args[1], 10, 64)
	maxLat, err3 := strconv.ParseInt(args[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || perSecond < 1 || minLat <= 0 || maxLat < minLat {
		return answer{Error: fmt.Sprintf("fill: bad arguments %q", args[:3])}
	}
	type dep struct{ ep, name string }
	var deps []dep
	for _, s := range args[3:] {
		ep, name, ok := strings.Cut(s, "/")
		if !ok {
			return answer{Error: fmt.Sprintf("fill: %q is not ENDPOINT/DEPLOYMENT", s)}
		}
		if _, known := reg.Lookup(ep, name); !known {
			return answer{Error: fmt.Sprintf("fill: %s has no Recorder: the data plane does not route to it", s)}
		}
		deps = append(deps, dep{ep, name})
	}
	now := time.Now()
	last := now.Unix()
	const hour = 3600
	start := time.Now()
	work := make(chan dep)
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				fill.Hour(reg.Recorder(d.ep, d.name), last, perSecond, time.Duration(minLat), time.Duration(maxLat))
			}
		}()
	}
	for _, d := range deps {
		work <- d
	}
	close(work)
	wg.Wait()
	took := time.Since(start)

	// The fill landed: the first and the last deployment filled hold every
	// observation of their 10-min window, and of their 1-h window from its
	// first 10-s boundary on (see bench/memory). Not all of them: each
	// check reads a deployment's whole ring.
	var checked []string
	if len(deps) > 0 {
		firstCoarse := (last - hour + 1 + 9) / 10 * 10
		want10m, wantHour := uint64(600*perSecond), uint64(last-firstCoarse+1)*uint64(perSecond)
		for _, d := range []dep{deps[0], deps[len(deps)-1]} {
			rc := reg.Recorder(d.ep, d.name)
			if got := rc.Window(now, 10*time.Minute).Requests; got != want10m {
				return answer{Error: fmt.Sprintf("fill: %s/%s 10-min window holds %d observations, want %d", d.ep, d.name, got, want10m)}
			}
			if got := rc.Window(now, time.Hour).Requests; got != wantHour {
				return answer{Error: fmt.Sprintf("fill: %s/%s 1-h window holds %d observations, want %d", d.ep, d.name, got, wantHour)}
			}
			checked = append(checked, d.ep+"/"+d.name)
		}
	}
	return answer{FillMs: ms(took), Checked: strings.Join(checked, " ")}
}

// compileCmd times the data plane's routing-table build and swap
// (proxy.Server.SetRoutes: a router per endpoint, a backend pool per
// deployment, the Recorders resolved) for the gateway's current endpoints,
// on a second proxy.Server that never serves: first from nothing (every
// table and pool new, as at start), then again with the same endpoints
// (tables recompiled, pools kept), which is what every change of any one
// endpoint costs the live proxy. The Recorders are the daemon's (they
// exist already, so none is allocated). The throwaway servers are left to
// the collector: Shutdown waits for a goroutine that only Serve starts.
func compileCmd(d *daemon.Daemon, args []string) answer {
	reps := 3
	if len(args) > 0 {
		if n, err := strconv.Atoi(args[0]); err == nil && n > 0 {
			reps = n
		}
	}
	eps, err := d.Control().Endpoints(context.Background())
	if err != nil {
		return answer{Error: "compile: " + err.Error()}
	}
	var first, again []float64
	for range reps {
		p := proxy.New(proxy.Options{Logger: slog.New(slog.DiscardHandler), Recorders: proxy.RecordersFrom(d.Telemetry())})
		t := time.Now()
		if err := p.SetRoutes(eps); err != nil {
			return answer{Error: "compile: " + err.Error()}
		}
		first = append(first, ms(time.Since(t)))
		t = time.Now()
		if err := p.SetRoutes(eps); err != nil {
			return answer{Error: "compile: " + err.Error()}
		}
		again = append(again, ms(time.Since(t)))
	}
	return answer{CompileMs: median(first), RecompileMs: median(again), Endpoints: len(eps)}
}

var profileFile *os.File

func cpuProfileCmd(args []string) answer {
	if len(args) == 0 {
		if profileFile == nil {
			return answer{Error: "cpuprofile: not profiling"}
		}
		pprof.StopCPUProfile()
		err := profileFile.Close()
		profileFile = nil
		if err != nil {
			return answer{Error: "cpuprofile: " + err.Error()}
		}
		return answer{}
	}
	f, err := os.Create(args[0])
	if err != nil {
		return answer{Error: "cpuprofile: " + err.Error()}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return answer{Error: "cpuprofile: " + err.Error()}
	}
	profileFile = f
	return answer{}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// child is the bench's side of a gateway child: its hello, and one
// command at a time.
type child struct {
	in  io.Writer
	out *json.Decoder
}

func (c *child) do(cmd string) (answer, error) {
	if _, err := io.WriteString(c.in, cmd+"\n"); err != nil {
		return answer{}, err
	}
	var a answer
	if err := c.out.Decode(&a); err != nil {
		return answer{}, fmt.Errorf("gateway child: %w", err)
	}
	if a.Error != "" {
		return a, fmt.Errorf("gateway child: %s", a.Error)
	}
	return a, nil
}
