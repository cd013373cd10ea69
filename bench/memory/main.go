// Command memory measures modelgate's peak RSS with every deployment's
// telemetry ring full (issue 6: "peak RSS under 100 MiB at 64 connections
// with three deployments and their telemetry ring full").
//
//	go run ./bench/memory                      # in-process load, 20 s, mirror 10%
//	go run ./bench/memory -load wrk            # load from wrk, outside this process
//	go run ./bench/memory -dashboard 4s        # plus the dashboard's 1-h series every 4 s
//
// A gateway that ran for 20 s has not paid for its hour of telemetry
// (before issue 22 the dense slices were allocated up front and became
// resident as written; now they are packed as they are sealed, so memory
// follows what was written). This program runs the real daemon
// in-process (daemon.New and Start, as `modelgate serve` does) in front of
// three in-process fasthttp backends, writes past observations into every
// 1-s slice of the last 10 minutes and every 10-s slice of the last hour of
// each deployment (through the daemon's own registry; by default with
// latencies spread over all sketch buckets, so that every page of every slot
// is written), then
// loads the endpoint with keep-alive POSTs and reports this process's peak
// RSS (VmHWM) and Go heap before filling, after filling and at the end.
//
// Everything measured is in this one process: the gateway, the backends,
// and with -load inproc (the default) the load generator too, so the
// figure is an upper bound for the gateway alone; nothing is subtracted.
// It exits non-zero only when the run itself fails (request errors, the
// fill not landing), never because of the numbers. See docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/bench/internal/benchproc"
	"github.com/modelgate/modelgate/bench/internal/fill"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/daemon"
	"github.com/modelgate/modelgate/internal/telemetry"
)

const (
	endpoint = "fraud"
	// body and answer are those of bench/gateway (post.lua and the nginx
	// backends), so the figures compare with that benchmark's.
	body   = `{"instances":[[5.1,3.5,1.4,0.2]]}`
	answer = `{"predictions":[0.12,0.88]}`
)

var deployments = []string{"blue", "green", "shadow"}

type options struct {
	duration  time.Duration
	conns     int
	mirror    int
	fill      bool
	perSecond int
	load      string
	wrkScript string
	threads   int
	dashboard time.Duration
	minLat    time.Duration
	maxLat    time.Duration
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "how long to load the gateway")
	flag.IntVar(&o.conns, "conns", 64, "concurrent keep-alive connections")
	flag.IntVar(&o.mirror, "mirror", 10, "percent of split requests mirrored to the shadow deployment (0: no mirror)")
	flag.BoolVar(&o.fill, "fill", true, "fill every deployment's hour of telemetry slices before the load")
	flag.IntVar(&o.perSecond, "per-second", 16, "past observations written per second and deployment")
	flag.DurationVar(&o.minLat, "min-latency", time.Microsecond, "smallest latency written by the fill")
	flag.DurationVar(&o.maxLat, "max-latency", time.Hour, "largest latency written by the fill (1µs..1h spans all sketch buckets: the worst case)")
	flag.StringVar(&o.load, "load", "inproc", "load generator: inproc (fasthttp client in this process) or wrk")
	flag.StringVar(&o.wrkScript, "wrk-script", "bench/gateway/post.lua", "wrk script for -load wrk (run from the repository root)")
	flag.IntVar(&o.threads, "threads", 2, "wrk threads for -load wrk")
	flag.DurationVar(&o.dashboard, "dashboard", 0, "GET the 1-h series once before the load and then every this often, like an open dashboard page (4s); 0: never")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench/memory:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.load != "inproc" && o.load != "wrk" {
		return fmt.Errorf("-load %q: want inproc or wrk", o.load)
	}
	if o.perSecond < 1 || o.conns < 1 || o.minLat <= 0 || o.maxLat < o.minLat {
		return errors.New("-per-second and -conns must be at least 1, 0 < -min-latency <= -max-latency")
	}
	var snaps []snapshot
	snaps = append(snaps, snap("process start"))

	var backends []*backend
	for range deployments {
		b, err := startBackend()
		if err != nil {
			return err
		}
		defer b.srv.Shutdown()
		backends = append(backends, b)
	}

	dir, err := os.MkdirTemp("", "modelgate-membench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := config.Parse([]byte(configYAML(dir, backends, o.mirror)))
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	d, err := daemon.New(context.Background(), daemon.Options{Config: cfg})
	if err != nil {
		return err
	}
	if err := d.Start(); err != nil {
		return err
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Shutdown(ctx)
	}()
	snaps = append(snaps, snap("gateway started (before filling)"))

	fillNote := "not filled (-fill=false)"
	if o.fill {
		if fillNote, err = fillAll(d.Telemetry(), o); err != nil {
			return err
		}
		snaps = append(snaps, snap("ring filled"))
	}

	url := "http://" + d.ProxyAddr() + "/" + endpoint + "/predict"
	loadAvg0 := loadAvg()
	dashStarted, stopDash := make(chan struct{}), make(chan struct{})
	dashDone := make(chan dashResult, 1)
	go func() { dashDone <- pollSeries(o.dashboard, d.AdminAddr(), d.Token(), dashStarted, stopDash) }()
	<-dashStarted
	var res loadResult
	if o.load == "wrk" {
		res, err = loadWrk(o, url)
	} else {
		res, err = loadInproc(o, d.ProxyAddr(), url)
	}
	close(stopDash)
	dash := <-dashDone
	if err != nil {
		return err
	}
	snaps = append(snaps, snap(fmt.Sprintf("after %s of load", o.duration)))

	var served []string
	for i, b := range backends {
		served = append(served, fmt.Sprintf("%s %d", deployments[i], b.served.Load()))
	}
	fmt.Printf("modelgate memory with a full telemetry ring (bench/memory)\n\n")
	fmt.Printf("- %s, GOMAXPROCS %d, %d CPUs, GOGC=%q GOMEMLIMIT=%q; load average %s at the start of the load, %s at the end\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"), loadAvg0, loadAvg())
	fmt.Printf("- in this process: the daemon (daemon.New + Start), 3 fasthttp backends on loopback%s\n",
		map[bool]string{true: ", and the load generator (fasthttp client: its buffers count too)", false: ""}[o.load == "inproc"])
	fmt.Printf("- endpoint %s: blue 95 / green 5, shadow mirrored %d%%; an idle Recorder is %d bytes (its slices come with its first request, packed as sealed)\n",
		endpoint, o.mirror, recorderSize())
	fmt.Printf("- telemetry: %s\n", fillNote)
	fmt.Printf("- load: %s, %d connections, %s: %d requests (%.0f/s), %d errors; backends served %s\n",
		res.how, o.conns, o.duration, res.requests, float64(res.requests)/o.duration.Seconds(), res.errors, strings.Join(served, ", "))
	if o.dashboard > 0 {
		fmt.Printf("- dashboard: GET .../series?window=1h&step=30s every %s from the start of the load: %d answered, %d errors; the first (before the load) allocated %.1f MiB\n",
			o.dashboard, dash.ok, dash.errors, mib(dash.firstAlloc))
	}
	fmt.Println()
	fmt.Println("| point | peak RSS (VmHWM) MiB | RSS MiB | HeapInuse MiB | Sys MiB | goroutines |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, s := range snaps {
		fmt.Printf("| %s | %.1f | %.1f | %.1f | %.1f | %d |\n", s.name, mib(s.hwm), mib(s.rss), mib(s.heapInuse), mib(s.sys), s.goroutines)
	}
	peak := snaps[len(snaps)-1].hwm
	fmt.Printf("\npeak RSS %.1f MiB: %s the issue 6 target of 100 MiB\n", mib(peak), map[bool]string{true: "under", false: "NOT under"}[peak < 100<<20])
	if res.errors > 0 || res.requests == 0 || dash.errors > 0 {
		return fmt.Errorf("%d errors in %d requests, %d dashboard errors", res.errors, res.requests, dash.errors)
	}
	return nil
}

func configYAML(dir string, b []*backend, mirror int) string {
	var extra string
	if mirror > 0 {
		extra = fmt.Sprintf("    mirror: {shadow: %d}\n    compare: {protocol: kserve_v1, comparator: numeric}\n", mirror)
	}
	return fmt.Sprintf(`listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
state:
  path: %s/state.db
endpoints:
  - name: %s
    deployments:
      - name: blue
        backends: [http://%s]
      - name: green
        backends: [http://%s]
      - name: shadow
        backends: [http://%s]
    traffic: {blue: 95, green: 5}
%s`, dir, endpoint, b[0].addr, b[1].addr, b[2].addr, extra)
}

// fillAll writes o.perSecond observations into every second of the last hour
// of each deployment, oldest first: a slot is reset when a newer second claims
// it, and an older one would be dropped as late. Afterwards the fine ring
// holds the last 600 seconds and the coarse ring the last 360 10-s slices.
// The latencies are spread evenly over log(min)..log(max), shifted every
// second. The defaults, 1µs..1h, span all 1159 sketch buckets (16 values
// about 72 buckets, 290 bytes, apart), so every 4 KiB page of every slot's
// lat and ttfb arrays is written, not just the ones a real latency range
// touches: the worst case for residency, and for the size of the sketches
// read back from the slices.
func fillAll(reg *telemetry.Registry, o options) (string, error) {
	perSecond := o.perSecond
	now := time.Now()
	last := now.Unix()
	const hour = 3600
	start := time.Now()
	for _, dep := range deployments {
		fill.Hour(reg.Recorder(endpoint, dep), last, perSecond, o.minLat, o.maxLat) // the very Recorder the data plane records into
	}
	took := time.Since(start)

	// Check that the past timestamps landed in their slices, with Window
	// (Slices would build 600 nearly full sketches, tens of MiB that would
	// show in the peak). Nothing else has been recorded yet, and a slot
	// holds only its own second (or 10 s), so 600*perSecond in the 10-min
	// window means each 1-s slice holds perSecond; the 1-h window reads
	// 10-s slices from the first 10-s boundary of the hour, then 1-s
	// slices, and must hold every second from that boundary on.
	firstCoarse := (last - hour + 1 + 9) / 10 * 10
	want10m, wantHour := uint64(600*perSecond), uint64(last-firstCoarse+1)*uint64(perSecond)
	for _, dep := range deployments {
		rc := reg.Recorder(endpoint, dep)
		if got := rc.Window(now, 10*time.Minute).Requests; got != want10m {
			return "", fmt.Errorf("fill: %s 10-min window holds %d observations, want %d", dep, got, want10m)
		}
		if got := rc.Window(now, time.Hour).Requests; got != wantHour {
			return "", fmt.Errorf("fill: %s 1-h window holds %d observations, want %d", dep, got, wantHour)
		}
	}
	return fmt.Sprintf("filled in %s: %d deployments x 3600 s x %d observations, latencies %s..%s; checked: the 10-min window holds %d, the 1-h window %d",
		took.Round(time.Millisecond), len(deployments), perSecond, o.minLat, o.maxLat, want10m, wantHour), nil
}

func recorderSize() uint64 { return uint64(reflect.TypeFor[telemetry.Recorder]().Size()) }

// backend is a stand-in model server answering every request with answer.
type backend struct {
	srv    *fasthttp.Server
	addr   string
	served atomic.Int64
}

func startBackend() (*backend, error) {
	b := &backend{}
	b.srv = &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		b.served.Add(1)
		ctx.SetContentType("application/json")
		ctx.SetBodyString(answer)
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.addr = ln.Addr().String()
	go b.srv.Serve(ln)
	return b, nil
}

type loadResult struct {
	how              string
	requests, errors int64
}

// loadInproc sends POSTs back to back from o.conns goroutines through one
// fasthttp client limited to o.conns connections, i.e. one keep-alive
// connection per goroutine, like wrk -c.
func loadInproc(o options, addr, url string) (loadResult, error) {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: o.conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	var requests, errs atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(o.duration)
	var wg sync.WaitGroup
	for range o.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI(url)
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/json")
			req.SetBodyString(body)
			for time.Now().Before(deadline) {
				err := c.Do(req, resp)
				requests.Add(1)
				if err == nil && resp.StatusCode() != fasthttp.StatusOK {
					err = fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
				}
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
			}
		}()
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		fmt.Fprintln(os.Stderr, "first error:", e)
	}
	return loadResult{how: "in-process fasthttp client (POST JSON)", requests: requests.Load(), errors: errs.Load()}, nil
}

var wrkResult = regexp.MustCompile(`RESULT requests=(\d+) .* non2xx=(\d+) connect=(\d+) read=(\d+) write=(\d+) timeout=(\d+)`)

// loadWrk runs bench/gateway's wrk script, outside this process.
func loadWrk(o options, url string) (loadResult, error) {
	out, err := exec.Command("wrk", "-t", strconv.Itoa(o.threads), "-c", strconv.Itoa(o.conns),
		"-d", fmt.Sprintf("%ds", int(o.duration.Seconds())), "--latency", "-s", o.wrkScript, url).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %v\n%s", err, out)
	}
	m := wrkResult.FindStringSubmatch(string(out))
	if m == nil {
		return loadResult{}, fmt.Errorf("wrk: no RESULT line in\n%s", out)
	}
	var n [6]int64
	for i := range n {
		n[i], _ = strconv.ParseInt(m[i+1], 10, 64)
	}
	return loadResult{how: "wrk " + o.wrkScript + " (another process)", requests: n[0], errors: n[1] + n[2] + n[3] + n[4] + n[5]}, nil
}

type dashResult struct {
	ok, errors int
	firstAlloc uint64 // bytes the process allocated during the first query
}

// pollSeries asks the admin API for the endpoint's 1-h series every
// interval until stop, as the dashboard's endpoint page does (its default
// range, refreshed every 4 s): reading 600 1-s slices of a full ring
// builds a sketch per slice, which is garbage the heap has to hold. The
// first query runs before the load starts, so that the bytes allocated
// during it are (nearly all) its own.
func pollSeries(every time.Duration, admin, token string, started chan<- struct{}, stop <-chan struct{}) dashResult {
	var r dashResult
	if every <= 0 {
		close(started)
		return r
	}
	url := "http://" + admin + "/api/v1/endpoints/" + endpoint + "/series?window=1h&step=30s"
	t := time.NewTicker(every)
	defer t.Stop()
	for first := true; ; first = false {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		before := ms.TotalAlloc
		if err := getSeries(url, token); err != nil {
			r.errors++
			fmt.Fprintln(os.Stderr, "series:", err)
		} else {
			r.ok++
		}
		if first {
			runtime.ReadMemStats(&ms)
			r.firstAlloc = ms.TotalAlloc - before
			close(started)
		}
		select {
		case <-stop:
			return r
		case <-t.C:
		}
	}
}

func getSeries(url, token string) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// snapshot is the process's memory at one point of the run.
type snapshot struct {
	name                     string
	hwm, rss, heapInuse, sys uint64
	goroutines               int
}

func snap(name string) snapshot {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := snapshot{name: name, heapInuse: ms.HeapInuse, sys: ms.Sys, goroutines: runtime.NumGoroutine()}
	s.rss, s.hwm, _ = benchproc.Mem(os.Getpid())
	return s
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
