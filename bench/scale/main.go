// Command scale measures how modelgate's memory and its control-plane
// operations grow with the number of endpoints (issue 22): for each N it
// starts a fresh gateway with N endpoints × 2 deployments, fills the hour
// of telemetry of all or a share of the deployments, and times what an
// operator does at that size.
//
//	go run ./bench/scale                              # N = 10, 100, 1000; every deployment active
//	go run ./bench/scale -n 1000 -active 0.1          # 10% of the deployments active, the rest idle
//	go run ./bench/scale -n 10,100 -o json            # the results as JSON
//
// The gateway is a child process (this program re-executed with
// MODELGATE_BENCH_SCALE_GATEWAY set), running the real daemon (daemon.New
// and Start, as `modelgate serve` does) and nothing else, so its peak RSS
// (VmHWM, /proc/PID/status) is the gateway's alone; the two stand-in
// backends and every client are in this process. For each N, in order:
//
//  1. the gateway starts with no endpoint;
//  2. `modelgate config validate` (the CLI's own code, in this process) of a
//     file with the N endpoints, each with deployments blue (one backend)
//     and green (the other), traffic blue 100;
//  3. POST /api/v1/apply of that file, then -reapplies times again
//     (nothing changes);
//  4. the routing table's build and swap (proxy.Server.SetRoutes) timed in
//     the child on a proxy that does not serve: from nothing, and again;
//  5. the hour of telemetry of the active deployments (-active, a share of
//     the 2N, spread evenly) written through each deployment's own Recorder
//     (Begin and Observe, as the proxy calls them; as bench/memory fills,
//     every page of every slot written), at most -max-fill-mib of it and
//     never more than leaves the machine 2 GiB available (MemAvailable);
//  6. a request to -probe endpoints through the data plane (served by blue);
//  7. the reads: GET /metrics, GET /api/v1/endpoints, the metrics of an
//     active endpoint over 5m and 1h, its 1-h series (the dashboard's);
//  8. -changes routing changes (PUT .../traffic blue 100 <-> green 100 on
//     endpoints spread over the N), each timed from sending the PUT to its
//     answer, and from the answer until the data plane first serves a
//     request with the new split (requests sent back to back on one
//     keep-alive connection; the backend names itself);
//  9. the gateway's peak RSS, and it is stopped.
//
// Timings are medians over -reps repetitions (re-applies: over -reapplies,
// routing changes: over -changes). It exits non-zero only when the run fails (a request error,
// an apply that did not create what it should, the fill not landing),
// never because of a number. See docs/benchmarks.md.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelgate/modelgate/bench/internal/benchproc"
	"github.com/modelgate/modelgate/internal/cli"
	"github.com/modelgate/modelgate/internal/telemetry"
)

type options struct {
	ns         []int
	active     float64
	maxFillMiB float64
	perSecond  int
	minLat     time.Duration
	maxLat     time.Duration
	reps       int
	reapplies  int
	changes    int
	probe      int
	output     string
	pprofDir   string
}

func main() {
	if path, ok := os.LookupEnv(gatewayEnv); ok {
		serveGateway(path)
		return
	}
	o := options{}
	var ns string
	flag.StringVar(&ns, "n", "10,100,1000", "numbers of endpoints, comma-separated; each has 2 deployments")
	flag.Float64Var(&o.active, "active", 1, "share of the deployments whose hour of telemetry is filled (0..1); the others stay idle")
	flag.Float64Var(&o.maxFillMiB, "max-fill-mib", 4096, "fill at most this much telemetry (counted at fillBytes, 1 MiB, a deployment); the rest of the active share is extrapolated")
	flag.IntVar(&o.perSecond, "per-second", 16, "past observations written per second and active deployment")
	flag.DurationVar(&o.minLat, "min-latency", time.Microsecond, "smallest latency written by the fill")
	flag.DurationVar(&o.maxLat, "max-latency", time.Hour, "largest latency written by the fill (1µs..1h spans all sketch buckets: every page written)")
	flag.IntVar(&o.reps, "reps", 5, "repetitions of each timed read and compile (the median is reported)")
	flag.IntVar(&o.reapplies, "reapplies", 2, "unchanged re-applies timed (the median is reported); at N = 1000 each leaves about 1.7 GiB of garbage resident (docs/benchmarks.md)")
	flag.IntVar(&o.changes, "changes", 20, "routing changes timed per N")
	flag.IntVar(&o.probe, "probe", 10, "endpoints, spread over the N, sent one request each through the data plane")
	flag.StringVar(&o.output, "o", "table", "output: table (markdown) or json")
	flag.StringVar(&o.pprofDir, "pprof", "", "write the gateway's CPU profiles of the first apply, the reads and the routing changes, and its heap profile at the end (after a forced collection, once the numbers are taken), into this directory (one set per N)")
	flag.Parse()
	var err error
	if o.ns, err = parseNs(ns); err == nil {
		err = o.check()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/scale:", err)
		os.Exit(2)
	}
	res, err := run(o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/scale:", err)
		os.Exit(1)
	}
	if o.output == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return
	}
	report(os.Stdout, o, res)
}

func parseNs(s string) ([]int, error) {
	var ns []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-n %q: want positive integers separated by commas", s)
		}
		ns = append(ns, n)
	}
	return ns, nil
}

func (o options) check() error {
	switch {
	case o.active < 0 || o.active > 1:
		return fmt.Errorf("-active %v: want 0..1", o.active)
	case o.perSecond < 1 || o.minLat <= 0 || o.maxLat < o.minLat:
		return errors.New("-per-second must be at least 1, 0 < -min-latency <= -max-latency")
	case o.reps < 1 || o.reapplies < 1 || o.changes < 1 || o.probe < 1:
		return errors.New("-reps, -reapplies, -changes and -probe must be at least 1")
	case o.output != "table" && o.output != "json":
		return fmt.Errorf("-o %q: want table or json", o.output)
	}
	return nil
}

// mem is the gateway process's memory at one point: RSS and its peak
// (VmHWM), the anonymous and file-backed parts of RSS (/proc/PID/status;
// file-backed is mostly the state file, which bbolt maps), and the Go
// runtime's HeapInuse, Sys and collections so far.
type mem struct {
	RSS, HWM, Anon, File, HeapInuse, Sys uint64
	NumGC                                uint32
}

// rssParts reads RssAnon and RssFile + RssShmem of /proc/PID/status.
func rssParts(pid int) (anon, file uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "RssAnon":
			anon = kb << 10
		case "RssFile", "RssShmem":
			file += kb << 10
		}
	}
	return anon, file
}

// result is one N's measurements; times in milliseconds, sizes in bytes.
type result struct {
	Endpoints   int `json:"endpoints"`
	Deployments int `json:"deployments"`
	// ActiveWanted is -active of Deployments; Filled the ones filled
	// (fewer when -max-fill-mib capped it).
	ActiveWanted int     `json:"active_wanted"`
	Filled       int     `json:"filled"`
	FillMs       float64 `json:"fill_ms"`

	ApplyBytes  int     `json:"apply_bytes"`
	ValidateMs  float64 `json:"validate_ms"`
	ApplyMs     float64 `json:"apply_ms"`
	ApplyAlloc  float64 `json:"apply_alloc"`
	ReapplyMs   float64 `json:"reapply_ms"`
	CompileMs   float64 `json:"compile_ms"`
	RecompileMs float64 `json:"recompile_ms"`

	ChangeAPIMs     float64 `json:"change_api_ms"`
	ChangeAPIMaxMs  float64 `json:"change_api_max_ms"`
	ChangeLiveMs    float64 `json:"change_live_ms"`
	ChangeLiveMaxMs float64 `json:"change_live_max_ms"`
	// ChangeStale is the most requests served with the old split after
	// a change's answer, over the changes.
	ChangeStale int `json:"change_stale_requests_max"`

	ScrapeBytes int     `json:"scrape_bytes"`
	ScrapeMs    float64 `json:"scrape_ms"`
	ListBytes   int     `json:"list_bytes"`
	ListMs      float64 `json:"list_ms"`
	Metrics5mMs float64 `json:"metrics_5m_ms"`
	Metrics1hMs float64 `json:"metrics_1h_ms"`
	Series1hMs  float64 `json:"series_1h_ms"`
	// What the gateway allocated per read (Go's TotalAlloc), the
	// garbage it leaves.
	ScrapeAlloc    float64 `json:"scrape_alloc"`
	ListAlloc      float64 `json:"list_alloc"`
	Metrics5mAlloc float64 `json:"metrics_5m_alloc"`
	Metrics1hAlloc float64 `json:"metrics_1h_alloc"`
	Series1hAlloc  float64 `json:"series_1h_alloc"`

	Started, Applied, Filled2, End mem            `json:"-"`
	Points                         map[string]mem `json:"memory"`
	PeakRSS                        uint64         `json:"peak_rss"`
	// PeakExtrapolated is PeakRSS plus the unfilled part of the active
	// share at the measured cost per active deployment (0 when not
	// capped).
	PeakExtrapolated uint64 `json:"peak_rss_extrapolated,omitempty"`
	// PerIdle is what stays resident per idle deployment once the
	// garbage is collected and returned ("freed" less "started" less
	// the active ones); GarbagePerDeployment is RSS after the applies
	// less at the start, per deployment, garbage included.
	PerIdle              float64 `json:"rss_per_idle_deployment"`
	GarbagePerDeployment float64 `json:"rss_after_apply_per_deployment"`
	HeapPerIdle          float64 `json:"heap_per_idle_deployment"`
	PerActive            float64 `json:"rss_per_active_deployment"`
}

func run(o options, log io.Writer) ([]result, error) {
	blue, err := startBackend("blue")
	if err != nil {
		return nil, err
	}
	defer blue.srv.Shutdown()
	green, err := startBackend("green")
	if err != nil {
		return nil, err
	}
	defer green.srv.Shutdown()
	var res []result
	for _, n := range o.ns {
		fmt.Fprintf(log, "bench/scale: N = %d endpoints (%d deployments)\n", n, 2*n)
		r, err := measure(o, n, blue.addr, green.addr, log)
		if err != nil {
			return nil, fmt.Errorf("at N = %d: %w", n, err)
		}
		res = append(res, r)
	}
	return res, nil
}

// fillBytes is what the fill is assumed to cost per deployment, for the
// -max-fill-mib cap: an upper bound of an active deployment's hour of
// packed telemetry (internal/telemetry's TestIdleAndActiveFootprint holds
// this fill's under 1 MiB; it measures about 0.4 MiB).
const fillBytes = 1 << 20

// recorderBytes is the size of an idle Recorder (its slices are allocated
// on its first observation).
func recorderBytes() float64 { return float64(reflect.TypeFor[telemetry.Recorder]().Size()) }

func name(i int) string { return fmt.Sprintf("m%04d", i) }

// applyYAML is the config file applied: N endpoints, blue at the blue
// backend with all the traffic, green at the green one.
func applyYAML(n int, blue, green string) []byte {
	var b bytes.Buffer
	b.WriteString("endpoints:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: %s\n    deployments:\n      - name: blue\n        backends: [http://%s]\n      - name: green\n        backends: [http://%s]\n    traffic: {blue: 100}\n", name(i), blue, green)
	}
	return b.Bytes()
}

func measure(o options, n int, blueAddr, greenAddr string, log io.Writer) (r result, err error) {
	r = result{Endpoints: n, Deployments: 2 * n, Points: map[string]mem{}}
	dir, err := os.MkdirTemp("", "modelgate-benchscale-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)

	// The gateway: this program again, as a child.
	cfgPath := filepath.Join(dir, "gateway.yaml")
	cfg := fmt.Sprintf("listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nstate:\n  path: %s\n", filepath.Join(dir, "state.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return r, err
	}
	self, err := os.Executable()
	if err != nil {
		return r, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), gatewayEnv+"="+cfgPath)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return r, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	proc, err := benchproc.Start("gateway", cmd, nil)
	if err != nil {
		return r, err
	}
	defer proc.Stop()
	c := &child{in: stdin, out: json.NewDecoder(stdout)}
	var h hello
	if err := c.out.Decode(&h); err != nil {
		return r, fmt.Errorf("gateway child: %w", err)
	}
	if h.Error != "" {
		return r, fmt.Errorf("gateway child: %s", h.Error)
	}
	api := &adminClient{base: "http://" + h.Admin, token: h.Token}
	snap := func(point string) (mem, error) {
		a, err := c.do("mem")
		if err != nil {
			return mem{}, err
		}
		m := mem{HeapInuse: a.HeapInuse, Sys: a.Sys, NumGC: a.NumGC}
		var ok bool
		if m.RSS, m.HWM, ok = benchproc.Mem(proc.Pid()); !ok {
			return mem{}, errors.New("cannot read the gateway's /proc/PID/status")
		}
		m.Anon, m.File = rssParts(proc.Pid())
		r.Points[point] = m
		return m, nil
	}
	profile := func(what string) (stop func() error, err error) {
		if o.pprofDir == "" {
			return func() error { return nil }, nil
		}
		path, err := filepath.Abs(filepath.Join(o.pprofDir, fmt.Sprintf("cpu-%s-n%d.pprof", what, n)))
		if err != nil {
			return nil, err
		}
		if _, err := c.do("cpuprofile " + path); err != nil {
			return nil, err
		}
		return func() error { _, err := c.do("cpuprofile"); return err }, nil
	}
	if r.Started, err = snap("started"); err != nil {
		return r, err
	}

	// Validate and apply.
	file := applyYAML(n, blueAddr, greenAddr)
	r.ApplyBytes = len(file)
	filePath := filepath.Join(dir, "endpoints.yaml")
	if err := os.WriteFile(filePath, file, 0o644); err != nil {
		return r, err
	}
	var times []float64
	for range o.reps {
		var out, errOut bytes.Buffer
		t := time.Now()
		code := cli.Execute([]string{"config", "validate", filePath}, &out, &errOut)
		times = append(times, ms(time.Since(t)))
		if want := fmt.Sprintf("is valid: %d endpoint", n); code != 0 || !strings.Contains(out.String(), want) {
			return r, fmt.Errorf("config validate: exit %d, %q %q", code, out.String(), errOut.String())
		}
	}
	r.ValidateMs = median(times)
	stopProfile, err := profile("apply")
	if err != nil {
		return r, err
	}
	before, err := c.do("mem")
	if err != nil {
		return r, err
	}
	t := time.Now()
	var applied struct{ Created, Updated, Unchanged, Removed []string }
	if err := api.do(http.MethodPost, "/api/v1/apply", file, &applied); err != nil {
		return r, fmt.Errorf("apply: %w", err)
	}
	r.ApplyMs = ms(time.Since(t))
	after, err := c.do("mem")
	if err != nil {
		return r, err
	}
	r.ApplyAlloc = float64(after.TotalAlloc - before.TotalAlloc)
	if err := stopProfile(); err != nil {
		return r, err
	}
	if len(applied.Created) != 3*n {
		return r, fmt.Errorf("apply created %d (endpoints and deployments), want %d", len(applied.Created), 3*n)
	}
	times = times[:0]
	for range o.reapplies {
		t := time.Now()
		applied.Unchanged = nil
		if err := api.do(http.MethodPost, "/api/v1/apply", file, &applied); err != nil {
			return r, fmt.Errorf("apply again: %w", err)
		}
		times = append(times, ms(time.Since(t)))
		if len(applied.Unchanged) != 2*n {
			return r, fmt.Errorf("apply again: %d deployments unchanged, want %d", len(applied.Unchanged), 2*n)
		}
	}
	r.ReapplyMs = median(times)
	if r.Applied, err = snap("applied"); err != nil {
		return r, err
	}
	a, err := c.do(fmt.Sprintf("compile %d", o.reps))
	if err != nil {
		return r, err
	}
	if a.Endpoints != n {
		return r, fmt.Errorf("compile: %d endpoints, want %d", a.Endpoints, n)
	}
	r.CompileMs, r.RecompileMs = a.CompileMs, a.RecompileMs

	// Fill the active share, spread evenly over the 2N deployments
	// (endpoint i's blue is 2i, its green 2i+1).
	total := 2 * n
	r.ActiveWanted = int(math.Round(o.active * float64(total)))
	fillCap := o.maxFillMiB * (1 << 20)
	if avail, ok := memAvailable(); ok && float64(avail)-2<<30 < fillCap {
		// Leave the machine 2 GiB: the rest is extrapolated.
		fillCap = max(float64(avail)-2<<30, 0)
		fmt.Fprintf(log, "bench/scale:   %.0f MiB available: filling at most %.0f MiB\n", mib(float64(avail)), mib(fillCap))
	}
	r.Filled = min(r.ActiveWanted, int(fillCap/fillBytes))
	metricsEP := name(0)
	var fillStart time.Time
	if r.Filled > 0 {
		deps := make([]string, r.Filled)
		for i := range deps {
			j := i * total / r.Filled
			deps[i] = name(j/2) + "/" + [2]string{"blue", "green"}[j%2]
		}
		fillStart = time.Now()
		fmt.Fprintf(log, "bench/scale:   filling %d deployments' hour of telemetry (%.0f MiB)\n", r.Filled, float64(r.Filled)*fillBytes/(1<<20))
		a, err := c.do(fmt.Sprintf("fill %d %d %d %s", o.perSecond, o.minLat, o.maxLat, strings.Join(deps, " ")))
		if err != nil {
			return r, err
		}
		r.FillMs = a.FillMs
	}
	if r.Filled2, err = snap("filled"); err != nil {
		return r, err
	}

	// The data plane routes the endpoints applied.
	dp := &fasthttp.HostClient{Addr: h.Proxy, MaxConns: 1, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	for i := range min(o.probe, n) {
		ep := name(i * n / min(o.probe, n))
		if got, err := served(dp, ep); err != nil || got != "blue" {
			return r, fmt.Errorf("request to %s: served by %q, %v; want blue", ep, got, err)
		}
	}

	// The reads.
	reads := []struct {
		path      string
		ms, alloc *float64
		bytes     *int
	}{
		{"/metrics", &r.ScrapeMs, &r.ScrapeAlloc, &r.ScrapeBytes},
		{"/api/v1/endpoints", &r.ListMs, &r.ListAlloc, &r.ListBytes},
		{"/api/v1/endpoints/" + metricsEP + "/metrics?window=5m", &r.Metrics5mMs, &r.Metrics5mAlloc, nil},
		{"/api/v1/endpoints/" + metricsEP + "/metrics?window=1h", &r.Metrics1hMs, &r.Metrics1hAlloc, nil},
		{"/api/v1/endpoints/" + metricsEP + "/series?window=1h&step=30s", &r.Series1hMs, &r.Series1hAlloc, nil},
	}
	if stopProfile, err = profile("reads"); err != nil {
		return r, err
	}
	for _, rd := range reads {
		times = times[:0]
		before, err := c.do("mem")
		if err != nil {
			return r, err
		}
		for range o.reps {
			t := time.Now()
			b, err := api.get(rd.path)
			if err != nil {
				return r, fmt.Errorf("GET %s: %w", rd.path, err)
			}
			times = append(times, ms(time.Since(t)))
			if rd.bytes != nil {
				*rd.bytes = len(b)
			}
		}
		*rd.ms = median(times)
		after, err := c.do("mem")
		if err != nil {
			return r, err
		}
		*rd.alloc = float64(after.TotalAlloc-before.TotalAlloc) / float64(o.reps)
	}
	if err := stopProfile(); err != nil {
		return r, err
	}
	if r.Filled > 0 {
		// The metrics read the fill: -per-second in each second of the
		// 5 minutes but those since the fill began (it wrote the hour up
		// to then).
		var rep struct {
			Deployments map[string]struct{ Requests uint64 }
		}
		b, _ := api.get("/api/v1/endpoints/" + metricsEP + "/metrics?window=5m")
		if err := json.Unmarshal(b, &rep); err != nil {
			return r, fmt.Errorf("metrics: %w", err)
		}
		filled := 300 - int(time.Since(fillStart).Seconds()) - 1
		if got := rep.Deployments["blue"].Requests; filled > 0 && got < uint64(filled*o.perSecond) {
			return r, fmt.Errorf("metrics of %s over 5m: blue has %d requests, the fill wrote at least %d", metricsEP, got, filled*o.perSecond)
		}
	}

	// Routing changes: endpoint k flips blue 100 -> green 100, then back.
	if stopProfile, err = profile("changes"); err != nil {
		return r, err
	}
	var api_, live []float64
	for i := range o.changes {
		k := (i / 2) * n / ((o.changes + 1) / 2)
		ep := name(min(k, n-1))
		to := [2]string{"green", "blue"}[i%2]
		t := time.Now()
		if err := api.do(http.MethodPut, "/api/v1/endpoints/"+ep+"/traffic", []byte(`{"`+to+`": 100}`), nil); err != nil {
			return r, fmt.Errorf("routing change: %w", err)
		}
		answered := time.Now()
		api_ = append(api_, ms(answered.Sub(t)))
		stale := 0
		for {
			got, err := served(dp, ep)
			if err != nil {
				return r, fmt.Errorf("routing change of %s: %w", ep, err)
			}
			if got == to {
				break
			}
			stale++
			if time.Since(answered) > 10*time.Second {
				return r, fmt.Errorf("routing change of %s to %s: still served by %s 10 s after the answer", ep, to, got)
			}
		}
		live = append(live, ms(time.Since(answered)))
		r.ChangeStale = max(r.ChangeStale, stale)
	}
	if err := stopProfile(); err != nil {
		return r, err
	}
	r.ChangeAPIMs, r.ChangeAPIMaxMs = median(api_), maxOf(api_)
	r.ChangeLiveMs, r.ChangeLiveMaxMs = median(live), maxOf(live)

	if r.End, err = snap("end"); err != nil {
		return r, err
	}
	// What stays once the garbage is collected and its pages returned:
	// the live cost (after the peak was taken).
	if _, err := c.do("free"); err != nil {
		return r, err
	}
	freed, err := snap("freed")
	if err != nil {
		return r, err
	}
	if o.pprofDir != "" {
		b, err := api.get("/debug/pprof/heap?gc=1")
		if err != nil {
			return r, err
		}
		if err := os.WriteFile(filepath.Join(o.pprofDir, fmt.Sprintf("heap-n%d.pprof", n)), b, 0o644); err != nil {
			return r, err
		}
	}
	r.PeakRSS = r.End.HWM
	r.HeapPerIdle = (float64(r.Applied.HeapInuse) - float64(r.Started.HeapInuse)) / float64(total)
	if r.Filled > 0 {
		r.PerActive = (float64(r.Filled2.RSS) - float64(r.Applied.RSS)) / float64(r.Filled)
	}
	r.GarbagePerDeployment = (float64(r.Applied.RSS) - float64(r.Started.RSS)) / float64(total)
	if idle := total - r.Filled; idle > 0 {
		r.PerIdle = (float64(freed.RSS) - float64(r.Started.RSS) - float64(r.Filled)*r.PerActive) / float64(idle)
	}
	if r.Filled < r.ActiveWanted {
		r.PeakExtrapolated = r.PeakRSS + uint64(float64(r.ActiveWanted-r.Filled)*r.PerActive)
	}
	if _, err := c.do("quit"); err != nil {
		return r, err
	}
	<-proc.Done()
	return r, nil
}

// served sends one prediction to the endpoint and answers which backend
// (deployment) served it.
func served(c *fasthttp.HostClient, ep string) (string, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + c.Addr + "/" + ep + "/predict")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyString(`{"instances":[[5.1,3.5,1.4,0.2]]}`)
	if err := c.Do(req, resp); err != nil {
		return "", err
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return "", fmt.Errorf("status %d: %.200s", resp.StatusCode(), resp.Body())
	}
	return string(resp.Header.Peek("X-Backend")), nil
}

type adminClient struct {
	base, token string
}

func (a *adminClient) get(path string) ([]byte, error) {
	var b []byte
	err := a.call(http.MethodGet, path, nil, &b)
	return b, err
}

func (a *adminClient) do(method, path string, body []byte, into any) error {
	var b []byte
	if err := a.call(method, path, body, &b); err != nil {
		return err
	}
	if into == nil {
		return nil
	}
	return json.Unmarshal(b, into)
}

func (a *adminClient) call(method, path string, body []byte, out *[]byte) error {
	req, err := http.NewRequest(method, a.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/yaml")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %d: %.300s", resp.StatusCode, b)
	}
	*out = b
	return nil
}

// memAvailable is MemAvailable of /proc/meminfo in bytes.
func memAvailable() (uint64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func mib(b float64) float64 { return b / (1 << 20) }

// report prints the results as markdown: one column per N.
func report(w io.Writer, o options, res []result) {
	fmt.Fprintf(w, "modelgate with many endpoints (bench/scale)\n\n")
	fmt.Fprintf(w, "- %s, %d CPUs, GOGC=%q GOMEMLIMIT=%q; load average %s at the end\n", runtime.Version(), runtime.NumCPU(), os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"), loadAvg())
	fmt.Fprintf(w, "- the gateway alone in a child process; 2 deployments an endpoint; active share %.2f, each active deployment's hour filled with %d observations a second, latencies %s..%s; at most %.0f MiB filled\n",
		o.active, o.perSecond, o.minLat, o.maxLat, o.maxFillMiB)
	fmt.Fprintf(w, "- timings: medians of %d (re-applies: of %d; routing changes: of %d, and the largest); an idle Recorder is %.0f bytes (its slices come with its first request)\n\n", o.reps, o.reapplies, o.changes, recorderBytes())
	fmt.Fprint(w, "| |")
	for _, r := range res {
		fmt.Fprintf(w, " N = %d |", r.Endpoints)
	}
	fmt.Fprint(w, "\n|---|")
	for range res {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprintln(w)
	row := func(label string, f func(r result) string) {
		fmt.Fprintf(w, "| %s |", label)
		for _, r := range res {
			fmt.Fprintf(w, " %s |", f(r))
		}
		fmt.Fprintln(w)
	}
	msf := func(v float64) string {
		if v < 1 {
			return strconv.FormatFloat(v, 'f', 3, 64) + " ms"
		}
		return strconv.FormatFloat(v, 'f', 1, 64) + " ms"
	}
	mibf := func(v uint64) string { return fmt.Sprintf("%.1f MiB", mib(float64(v))) }
	row("deployments (active wanted / filled)", func(r result) string {
		return fmt.Sprintf("%d (%d / %d)", r.Deployments, r.ActiveWanted, r.Filled)
	})
	row("**peak RSS** (VmHWM)", func(r result) string { return "**" + mibf(r.PeakRSS) + "**" })
	row("peak RSS extrapolated to the whole active share", func(r result) string {
		if r.PeakExtrapolated == 0 {
			return "-"
		}
		return mibf(r.PeakExtrapolated)
	})
	for _, p := range []string{"started", "applied", "filled", "end", "freed"} {
		row("RSS (anon + file) / HeapInuse / GCs, "+p, func(r result) string {
			m := r.Points[p]
			return fmt.Sprintf("%.1f (%.1f + %.1f) / %.1f MiB / %d", mib(float64(m.RSS)), mib(float64(m.Anon)), mib(float64(m.File)), mib(float64(m.HeapInuse)), m.NumGC)
		})
	}
	row("RSS per deployment after the applies, garbage included ((applied - started) / all)", func(r result) string {
		return fmt.Sprintf("%.1f KiB", r.GarbagePerDeployment/1024)
	})
	row("RSS per idle deployment once collected ((freed - started - active) / idle)", func(r result) string {
		if r.Filled == r.Deployments {
			return "-"
		}
		return fmt.Sprintf("%.1f KiB", r.PerIdle/1024)
	})
	row("heap per idle deployment", func(r result) string { return fmt.Sprintf("%.2f MiB", mib(r.HeapPerIdle)) })
	row("RSS per active deployment (filled - applied)", func(r result) string {
		if r.Filled == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f MiB", mib(r.PerActive))
	})
	row("fill", func(r result) string { return msf(r.FillMs) })
	row("config file", func(r result) string { return fmt.Sprintf("%.0f KiB", float64(r.ApplyBytes)/1024) })
	row("`config validate`", func(r result) string { return msf(r.ValidateMs) })
	row("**apply** (all created; allocated)", func(r result) string {
		return fmt.Sprintf("**%s** (%.1f MiB)", msf(r.ApplyMs), mib(r.ApplyAlloc))
	})
	row("apply again (unchanged)", func(r result) string { return msf(r.ReapplyMs) })
	row("compile: SetRoutes from nothing", func(r result) string { return msf(r.CompileMs) })
	row("compile: SetRoutes again (every change)", func(r result) string { return msf(r.RecompileMs) })
	row("routing change: PUT traffic answered (max)", func(r result) string {
		return fmt.Sprintf("%s (%.2f)", msf(r.ChangeAPIMs), r.ChangeAPIMaxMs)
	})
	row("**routing change live after the answer** (max; stale requests)", func(r result) string {
		return fmt.Sprintf("**%s** (%.2f; %d)", msf(r.ChangeLiveMs), r.ChangeLiveMaxMs, r.ChangeStale)
	})
	allocf := func(v float64) string { return fmt.Sprintf("%.2f MiB", mib(v)) }
	row("**`/metrics` scrape** (size; allocated)", func(r result) string {
		return fmt.Sprintf("**%s** (%.0f KiB; %s)", msf(r.ScrapeMs), float64(r.ScrapeBytes)/1024, allocf(r.ScrapeAlloc))
	})
	row("`GET /api/v1/endpoints` (size; allocated)", func(r result) string {
		return fmt.Sprintf("%s (%.0f KiB; %s)", msf(r.ListMs), float64(r.ListBytes)/1024, allocf(r.ListAlloc))
	})
	row("metrics of an active endpoint, 5m (allocated)", func(r result) string {
		return fmt.Sprintf("%s (%s)", msf(r.Metrics5mMs), allocf(r.Metrics5mAlloc))
	})
	row("metrics of an active endpoint, 1h (allocated)", func(r result) string {
		return fmt.Sprintf("%s (%s)", msf(r.Metrics1hMs), allocf(r.Metrics1hAlloc))
	})
	row("series 1h, step 30s, the dashboard's (allocated)", func(r result) string {
		return fmt.Sprintf("%s (%s)", msf(r.Series1hMs), allocf(r.Series1hAlloc))
	})
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
