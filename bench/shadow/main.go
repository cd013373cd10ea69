// Command shadow benchmarks what 100% shadow mirroring costs the live
// request (issue 4): modelgate in front of a live backend answering after
// ~2 ms and a shadow backend answering the same 50 ms later, loaded open
// loop at a fixed rate, in alternating rounds A (mirror 0) and B (mirror
// green 100, set through the admin API between rounds).
//
//	go run ./bench/shadow                         # 1,000 req/s, 3 × (20 s A + 20 s B)
//	go run ./bench/shadow -rev HEAD -o report.md  # build from a git revision, write the report
//
// It builds modelgate (work tree by default, -rev REV through git archive,
// or -bin PATH), starts the two backends (this binary re-executed), starts
// `modelgate serve` with a generated config and its state in a temp dir,
// then runs the rounds and prints per-round numbers, the medians and the
// verdict against the thresholds. Only the processes it started
// are stopped, by PID, also on Ctrl-C. See docs/benchmarks.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelgate/modelgate/bench/internal/benchproc"
	"github.com/modelgate/modelgate/internal/shadow"
)

type options struct {
	rate          int
	duration      time.Duration
	warmup        time.Duration
	rounds        int
	mirror        float64
	liveDelay     time.Duration
	shadowDelay   time.Duration // extra over liveDelay
	workers       int
	queue         int
	shadowTimeout time.Duration
	conns         int
	bin, rev      string
	keep          bool
	out           string
}

func defaultOptions() options {
	return options{
		rate: 1000, duration: 20 * time.Second, warmup: 2 * time.Second, rounds: 3, mirror: 100,
		liveDelay: 2 * time.Millisecond, shadowDelay: 50 * time.Millisecond,
		workers: 64, queue: 1000, shadowTimeout: time.Second, conns: 256,
	}
}

func main() {
	if d, ok := os.LookupEnv(backendEnv); ok {
		serveBackend(d)
		return
	}
	o := defaultOptions()
	flag.IntVar(&o.rate, "rate", o.rate, "live requests per second (open loop)")
	flag.DurationVar(&o.duration, "duration", o.duration, "measured length of one round")
	flag.DurationVar(&o.warmup, "warmup", o.warmup, "unmeasured load at the same rate at the start of each round, after the mirror change (0: none)")
	flag.IntVar(&o.rounds, "rounds", o.rounds, "rounds of each mode, measured A B A B ...")
	flag.Float64Var(&o.mirror, "mirror", o.mirror, "shadow percent of green in B rounds")
	flag.DurationVar(&o.liveDelay, "live-delay", o.liveDelay, "live backend's delay before answering")
	flag.DurationVar(&o.shadowDelay, "shadow-extra", o.shadowDelay, "how much slower the shadow backend answers than the live one")
	flag.IntVar(&o.workers, "workers", o.workers, "compare.workers: concurrent shadow requests (size: >= rate x shadow latency)")
	flag.IntVar(&o.queue, "queue", o.queue, "compare.queue: copies waiting per shadow")
	flag.DurationVar(&o.shadowTimeout, "shadow-timeout", o.shadowTimeout, "compare.shadow_timeout")
	flag.IntVar(&o.conns, "conns", o.conns, "load generator workers (one connection each at most)")
	flag.StringVar(&o.bin, "bin", "", "use this modelgate binary instead of building one")
	flag.StringVar(&o.rev, "rev", "", "build modelgate from this git revision (git archive; the work tree is not touched)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temp dir (config, state, logs)")
	flag.StringVar(&o.out, "o", "", "also write the markdown report to this file")
	flag.Parse()
	if flag.NArg() > 0 || o.rate <= 0 || o.rounds <= 0 || o.duration <= 0 || o.conns <= 0 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, o, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/shadow:", err)
		os.Exit(1)
	}
	var b strings.Builder
	res.report(&b)
	fmt.Print(b.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(b.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench/shadow:", err)
			os.Exit(1)
		}
	}
}

// round is one measured round.
type round struct {
	n      int    // 1-based per mode
	mode   string // "A" or "B"
	load   loadResult
	rep    shadow.ShadowReport // B: the shadow report over the round (warm-up included)
	repErr error
	// metrics deltas over the round (warm-up and drain included)
	metMirrored, metCompared, metDropped float64
	shadowHits                           int64 // predictions the shadow backend served during the round
	maxQueue                             float64
	rssEnd, rssMax, hwm                  int64 // KiB
	drain                                time.Duration
	loadStart, loadEnd                   string
	// CPU time (user + system) during the measured run, in µs per live
	// request: the gateway, the live backend, the shadow backend and this
	// process (the load generator).
	cpuGateway, cpuLive, cpuShadow, cpuGen float64
	// heap in use and goroutines of modelgate after the round settled
	heapInuse, goroutines float64
}

type result struct {
	o         options
	source    string
	rssIdle   int64
	rounds    []round
	startedAt time.Time
}

func run(ctx context.Context, o options, logw io.Writer) (res *result, err error) {
	tmp, err := os.MkdirTemp("", "modelgate-shadow-bench.")
	if err != nil {
		return nil, err
	}
	var procs []*benchproc.Proc
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Stop()
		}
		if o.keep || err != nil {
			fmt.Fprintf(logw, "kept %s (config, state, logs)\n", tmp)
		} else {
			os.RemoveAll(tmp)
		}
	}()

	bin, source := o.bin, "binary "+o.bin
	if bin == "" {
		if bin, source, err = buildModelgate(ctx, tmp, o.rev, logw); err != nil {
			return nil, err
		}
	}
	live, livePort, err := startBackend("live", o.liveDelay, filepath.Join(tmp, "live.log"))
	if err != nil {
		return nil, err
	}
	procs = append(procs, live)
	shadowB, shadowPort, err := startBackend("shadow", o.liveDelay+o.shadowDelay, filepath.Join(tmp, "shadow.log"))
	if err != nil {
		return nil, err
	}
	procs = append(procs, shadowB)
	g, err := startGateway(ctx, bin, tmp, livePort, shadowPort, o)
	if err != nil {
		return nil, err
	}
	procs = append(procs, g.p)
	fmt.Fprintf(logw, "backends: live :%d (%s), shadow :%d (%s); modelgate %s (pid %d), admin %s\n",
		livePort, o.liveDelay, shadowPort, o.liveDelay+o.shadowDelay, g.addr, g.p.Pid(), g.adminURL)

	res = &result{o: o, source: source, startedAt: time.Now()}
	res.rssIdle, _ = memKiB(g.p.Pid())
	hc := &http.Client{Timeout: 5 * time.Second}
	for i := 1; i <= o.rounds; i++ {
		for _, mode := range []string{"A", "B"} {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r, err := runRound(ctx, g, hc, shadowPort, [3]int{g.p.Pid(), live.Pid(), shadowB.Pid()}, o, mode, i)
			if err != nil {
				return nil, err
			}
			res.rounds = append(res.rounds, r)
			fmt.Fprintf(logw, "round %d %s: %.0f req/s  p50 %.2f ms  p99 %.2f ms  p99.9 %.2f ms  errors %d  mirrored %d compared %d dropped %d  rss %.1f MiB  load %s\n",
				i, mode, r.load.achievedRate(), ms(r.load.quantile(0.5)), ms(r.load.quantile(0.99)), ms(r.load.quantile(0.999)),
				r.load.errors, r.rep.Mirrored, r.rep.Compared, r.rep.Dropped, mib(r.rssEnd), r.loadEnd)
			if g.p.Exited() {
				return nil, fmt.Errorf("modelgate exited during round %d %s: %v", i, mode, g.p.Err())
			}
		}
	}
	if err := g.setMirror(0); err != nil {
		return nil, err
	}
	return res, nil
}

func runRound(ctx context.Context, g *gateway, hc *http.Client, shadowPort int, pids [3]int, o options, mode string, n int) (round, error) {
	r := round{n: n, mode: mode, loadStart: loadAvg()}
	pct := 0.0
	if mode == "B" {
		pct = o.mirror
	}
	if err := g.setMirror(pct); err != nil {
		return r, err
	}
	time.Sleep(500 * time.Millisecond)
	m0, err := g.metrics()
	if err != nil {
		return r, err
	}
	hits0 := backendCount(hc, shadowPort)
	phaseStart := time.Now()

	// Sampler: the gateway's RSS every 200 ms and the shadow queue every
	// second, in both modes alike (the /metrics scrape costs the gateway
	// the same in A and B).
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			rss, _ := memKiB(g.p.Pid())
			r.rssMax = max(r.rssMax, rss)
			if k%5 == 4 {
				if c, err := g.metrics(); err == nil {
					r.maxQueue = max(r.maxQueue, c.queue)
				}
			}
		}
	}()
	if o.warmup > 0 {
		openLoop(ctx, g.addr, "/fraud/predict", o.rate, o.warmup, o.conns)
	}
	var cpu0, cpu1 [4]int64
	all := [4]int{pids[0], pids[1], pids[2], os.Getpid()}
	for i, pid := range all {
		cpu0[i] = cpuTicks(pid)
	}
	r.load = openLoop(ctx, g.addr, "/fraud/predict", o.rate, o.duration, o.conns)
	for i, pid := range all {
		cpu1[i] = cpuTicks(pid)
	}
	if reqs := float64(r.load.ok + r.load.errors); reqs > 0 {
		us := func(i int) float64 { return float64(cpu1[i]-cpu0[i]) / clkTck * 1e6 / reqs }
		r.cpuGateway, r.cpuLive, r.cpuShadow, r.cpuGen = us(0), us(1), us(2), us(3)
	}
	close(done)
	wg.Wait()

	// Let every copy of the round settle (sent and compared, or dropped)
	// before counting and before the next mirror change, which would drop
	// copies still queued.
	var m1 shadowCounts
	drainStart := time.Now()
	for {
		if m1, err = g.metrics(); err != nil {
			return r, err
		}
		if m1.byResult["mirrored"] == m1.settled() && m1.queue == 0 {
			break
		}
		if time.Since(drainStart) > 30*time.Second+o.shadowTimeout {
			return r, fmt.Errorf("round %d %s: shadow copies did not settle in 30 s: %v", n, mode, m1.byResult)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.drain = time.Since(drainStart)
	r.metMirrored = m1.byResult["mirrored"] - m0.byResult["mirrored"]
	r.metCompared = m1.byResult["matched"] + m1.byResult["mismatched"] - m0.byResult["matched"] - m0.byResult["mismatched"]
	r.metDropped = m1.byResult["dropped"] - m0.byResult["dropped"]
	r.shadowHits = backendCount(hc, shadowPort) - hits0
	if mode == "B" {
		// The window covers the whole phase (mirror on, warm-up, round,
		// drain) plus one second of the preceding A round, which mirrors
		// nothing.
		w := time.Duration(math.Ceil(time.Since(phaseStart).Seconds())+1) * time.Second
		r.rep, r.repErr = g.shadowReport(max(w, 10*time.Second))
	}
	r.heapInuse, r.goroutines = m1.heapInuse, m1.goroutines
	r.rssEnd, r.hwm = memKiB(g.p.Pid())
	r.rssMax = max(r.rssMax, r.rssEnd)
	r.loadEnd = loadAvg()
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
func mib(kib int64) float64      { return float64(kib) / 1024 }

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (res *result) byMode(mode string) []round {
	var rs []round
	for _, r := range res.rounds {
		if r.mode == mode {
			rs = append(rs, r)
		}
	}
	return rs
}

func collect(rs []round, f func(round) float64) []float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	return v
}

// verdict is the condition, computed from the medians.
type verdict struct {
	p99A, p99B, allowed float64 // ms
	latencyOK           bool
	mirrored, compared  uint64
	dropped             uint64
	dropRatio           float64
	dropsOK             bool
	rssFirstB, rssLastB int64
	rssLastMax, rssPrev int64 // RSS max of the last B round, highest RSS of every round before it
	memOK               bool
	mirroring           bool
}

func (res *result) verdict() verdict {
	a, b := res.byMode("A"), res.byMode("B")
	var v verdict
	v.p99A = median(collect(a, func(r round) float64 { return ms(r.load.quantile(0.99)) }))
	v.p99B = median(collect(b, func(r round) float64 { return ms(r.load.quantile(0.99)) }))
	v.allowed = math.Max(0.1*v.p99A, 1)
	v.latencyOK = v.p99B <= v.p99A+v.allowed
	for _, r := range b {
		v.mirrored += r.rep.Mirrored
		v.compared += r.rep.Compared
		v.dropped += r.rep.Dropped
	}
	v.mirroring = v.compared > 0
	if v.mirrored > 0 {
		v.dropRatio = float64(v.dropped) / float64(v.mirrored)
	}
	v.dropsOK = v.mirroring && v.dropRatio <= 0.01
	if len(b) > 0 {
		v.rssFirstB, v.rssLastB = b[0].rssEnd, b[len(b)-1].rssEnd
		v.rssLastMax = b[len(b)-1].rssMax
		for _, r := range res.rounds[:len(res.rounds)-1] {
			v.rssPrev = max(v.rssPrev, r.rssMax)
		}
		v.memOK = v.rssLastMax <= v.rssPrev+max(v.rssPrev/10, 4096)
	}
	return v
}

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

func (res *result) report(w io.Writer) {
	o := res.o
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(w, "modelgate: %s; %d CPUs (%s), kernel %s, %s; run started %s\n", res.source, runtime.NumCPU(), cpu,
		strings.TrimSpace(string(kernel)), runtime.Version(), res.startedAt.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "load: %d req/s open loop for %s per round (after %s unmeasured), %d rounds of A (mirror 0) and B (mirror green %g), "+
		"measured A B A B ...; live backend %s, shadow %s; compare: workers %d, queue %d, shadow_timeout %s; load generator %d workers\n",
		o.rate, o.duration, o.warmup, o.rounds, o.mirror, o.liveDelay, o.liveDelay+o.shadowDelay, o.workers, o.queue, o.shadowTimeout, o.conns)
	var loads []string
	for _, r := range res.rounds {
		loads = append(loads, r.loadEnd)
	}
	fmt.Fprintf(w, "1-minute load average at the end of each round: %s (on %d CPUs); modelgate RSS when idle before the rounds: %.1f MiB\n\n",
		strings.Join(loads, ", "), runtime.NumCPU(), mib(res.rssIdle))

	fmt.Fprintln(w, "Per round (latency from the scheduled send time; counts from the shadow report over the round, warm-up and drain included):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | mirror | req/s | errors | p50 ms | p99 ms | p99.9 ms | max ms | mirrored | compared | dropped | shadow errors | timeouts | dropped/mirrored | max queue | RSS end MiB | RSS max MiB | load |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range res.rounds {
		pct := "0"
		cnt := fmt.Sprintf("%.0f | - | - | - | - | - | %.0f", r.metMirrored, r.maxQueue)
		if r.mode == "B" {
			pct = fmt.Sprintf("%g", o.mirror)
			if r.repErr != nil {
				cnt = fmt.Sprintf("report error: %v | | | | | | %.0f", r.repErr, r.maxQueue)
			} else {
				ratio := "-"
				if r.rep.Mirrored > 0 {
					ratio = fmt.Sprintf("%.3f%%", 100*float64(r.rep.Dropped)/float64(r.rep.Mirrored))
				}
				cnt = fmt.Sprintf("%d | %d | %d | %d | %d | %s | %.0f", r.rep.Mirrored, r.rep.Compared, r.rep.Dropped, r.rep.Errors, r.rep.Timeouts, ratio, r.maxQueue)
			}
		}
		fmt.Fprintf(w, "| %s%d | %s | %.0f | %d | %.2f | %.2f | %.2f | %.2f | %s | %.1f | %.1f | %s |\n", r.mode, r.n, pct,
			r.load.achievedRate(), r.load.errors, ms(r.load.quantile(0.5)), ms(r.load.quantile(0.99)), ms(r.load.quantile(0.999)),
			ms(r.load.quantile(1)), cnt, mib(r.rssEnd), mib(r.rssMax), r.loadEnd)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "CPU time (user + system) during each measured run, µs per live request, and modelgate after the round settled:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| round | modelgate µs/req | live backend µs/req | shadow backend µs/req | load generator µs/req | all four, CPUs busy | modelgate heap in use MiB | goroutines |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range res.rounds {
		sum := r.cpuGateway + r.cpuLive + r.cpuShadow + r.cpuGen
		fmt.Fprintf(w, "| %s%d | %.1f | %.1f | %.1f | %.1f | %.2f | %.1f | %.0f |\n", r.mode, r.n, r.cpuGateway, r.cpuLive, r.cpuShadow, r.cpuGen,
			sum*r.load.achievedRate()/1e6, r.heapInuse/(1<<20), r.goroutines)
	}
	fmt.Fprintln(w)

	fmt.Fprintln(w, "Medians over the rounds (range: lowest-highest p99 over the rounds):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| mirror | rounds | req/s | p50 ms | p99 ms | p99 range ms | p99.9 ms | errors (sum) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, mode := range []string{"A", "B"} {
		rs := res.byMode(mode)
		if len(rs) == 0 {
			continue
		}
		p99s := collect(rs, func(r round) float64 { return ms(r.load.quantile(0.99)) })
		errs := 0
		for _, r := range rs {
			errs += r.load.errors
		}
		label := "A: 0"
		if mode == "B" {
			label = fmt.Sprintf("B: green %g", o.mirror)
		}
		fmt.Fprintf(w, "| %s | %d | %.0f | %.2f | %.2f | %.2f-%.2f | %.2f | %d |\n", label, len(rs),
			median(collect(rs, func(r round) float64 { return r.load.achievedRate() })),
			median(collect(rs, func(r round) float64 { return ms(r.load.quantile(0.5)) })),
			median(p99s), slices.Min(p99s), slices.Max(p99s),
			median(collect(rs, func(r round) float64 { return ms(r.load.quantile(0.999)) })), errs)
	}
	fmt.Fprintln(w)

	v := res.verdict()
	var metM, metC, metD float64
	var hits int64
	var maxLag time.Duration
	for _, r := range res.rounds {
		maxLag = max(maxLag, r.load.maxLag)
	}
	for _, r := range res.byMode("B") {
		metM += r.metMirrored
		metC += r.metCompared
		metD += r.metDropped
		hits += r.shadowHits
	}
	var hwm int64
	for _, r := range res.rounds {
		hwm = max(hwm, r.hwm)
	}
	fmt.Fprintf(w, "Shadow copies over the B rounds: mirrored %d, compared %d (matched + mismatched), dropped %d (%.3f%%); "+
		"/metrics counters over the same rounds: mirrored %.0f, compared %.0f, dropped %.0f; the shadow backend served %d.\n",
		v.mirrored, v.compared, v.dropped, 100*v.dropRatio, metM, metC, metD, hits)
	fmt.Fprintf(w, "Memory: peak RSS (VmHWM) of modelgate %.1f MiB; RSS at the end of the first B round %.1f MiB, of the last %.1f MiB. "+
		"Pacer: largest dispatch lag behind schedule %.2f ms.\n\n", mib(hwm), mib(v.rssFirstB), mib(v.rssLastB), ms(maxLag))

	fmt.Fprintln(w, "Verdict (issue 4):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| condition | measured | met |")
	fmt.Fprintln(w, "|---|---|:-:|")
	fmt.Fprintf(w, "| live p99 with mirroring ≤ p99 without + max(10%%, 1 ms) | median p99 %.2f ms (B) vs %.2f ms (A): %+.2f ms, allowed +%.2f ms | %s |\n",
		v.p99B, v.p99A, v.p99B-v.p99A, v.allowed, yes(v.latencyOK))
	fmt.Fprintf(w, "| at most 1%% of copies dropped | %d of %d (%.3f%%), %d compared | %s |\n", v.dropped, v.mirrored, 100*v.dropRatio, v.compared, yes(v.dropsOK))
	fmt.Fprintf(w, "| memory bounded (the last B round sets no new RSS high: its max ≤ the max of every earlier round + max(10%%, 4 MiB)) | last B round max %.1f MiB, earlier max %.1f MiB; peak %.1f MiB | %s |\n",
		mib(v.rssLastMax), mib(v.rssPrev), mib(hwm), yes(v.memOK))
	if !v.mirroring {
		fmt.Fprintln(w, "\nNo copy was compared: mirroring did not happen, so the comparison above says nothing about its cost.")
	}
}
