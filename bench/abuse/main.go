//go:build linux

// Command abuse measures modelgate's memory under two attacks that cost the
// attacker little, and the latency of a normal client meanwhile:
//
//	go run ./bench/abuse                        # build ./cmd/modelgate, run A then B (20-50 s)
//	go run ./bench/abuse -bin /tmp/modelgate    # a binary built before
//	go run ./bench/abuse -attacks B -o json     # only attack B, JSON on stdout
//
// A (held bodies): -conns connections (200) each send request headers
// declaring Content-Length -declared (10 MiB, also written as the config's
// max_request_bytes, so the gateway must accept it) and one byte of body,
// then hold the connections for at least -hold (5 s) and on while the
// gateway's RSS still grows (by 1 MiB a second or more), within -duration
// (20 s). Target: the gateway's peak RSS stays under 100 MiB plus the bytes
// the attacker sent.
//
// B (pipelined flood): one connection sends a request that the backend
// holds for -slow (5 s), then pipelines valid requests (-flood-body bytes of
// JSON each, 16 KiB) behind it as fast as the gateway's socket takes them,
// until -flood bytes (300 MiB) are sent or -duration (20 s) has passed, and
// holds the connection until the slow answer comes. Answers are read as
// they come. Target: the gateway's RSS moves by under 64 MiB.
//
// During each attack a normal client POSTs to the same endpoint at -rate
// (20/s) on one keep-alive connection; target: p50 under 10 ms, latency
// counted from each request's scheduled time.
//
// The gateway runs as its own process, so that its RSS is its own: the
// work tree's cmd/modelgate is built into a temp dir (or -bin is used) and
// `modelgate serve` is started afresh for each attack (VmHWM, the peak, is
// per process) with a generated config and its state in a temp dir, in
// front of a backend in this process. The gateway's VmRSS is read from
// /proc before the attack, every -sample (100 ms) during it, and -settle
// (2 s) after the attacker closed its connections; the peak is VmHWM at the
// end of the attack. "attacker sent" is what the kernel took from the
// attacker's writes, "gateway read" how much of it the gateway process had
// taken off its sockets by the end (sent minus the attacker's send queues,
// SIOCOUTQ, and the gateway's receive queues, /proc/net/tcp): a gateway
// that stops reading leaves the rest to the kernel's socket buffers, which
// are bounded. Linux only (/proc, SIOCOUTQ, Pdeathsig). The gateway and the connections are closed on every exit path,
// Ctrl-C included; the gateway also dies with this process (Pdeathsig).
//
// It exits non-zero only when the run itself fails (the build, the gateway
// not starting), never because a target is missed; a gateway that dies
// under an attack is reported, not an error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/modelgate/modelgate/bench/internal/benchproc"
)

type options struct {
	bin       string
	attacks   string
	conns     int
	declared  uint64
	hold      time.Duration
	flood     uint64
	floodBody int
	slow      time.Duration
	duration  time.Duration
	rate      int
	warmup    time.Duration
	settle    time.Duration
	sample    time.Duration
	out       string
}

const mib = 1 << 20

// Targets, from the issue that this command measures.
const (
	holdBase   = 100 * mib // A: peak RSS under this plus the bytes received
	floodDelta = 64 * mib  // B: RSS moves by under this
	p50Target  = 10.0      // ms, normal requests during either attack
)

func main() {
	o := options{declared: 10 << 20, flood: 300 << 20}
	flag.StringVar(&o.bin, "bin", "", "modelgate binary to run (default: build ./cmd/modelgate of this work tree into a temp dir)")
	flag.StringVar(&o.attacks, "attacks", "A,B", "attacks to run, in order: A (held bodies), B (pipelined flood)")
	flag.IntVar(&o.conns, "conns", 200, "A: connections holding a declared body")
	flag.Var(sizeFlag{&o.declared}, "declared", "A: Content-Length each connection declares, also the gateway's max_request_bytes (10MiB; units B, KiB, MiB, GiB)")
	flag.DurationVar(&o.hold, "hold", 5*time.Second, "A: how long the connections are held at least after the last one sent its byte (then on while the gateway's RSS grows)")
	flag.Var(sizeFlag{&o.flood}, "flood", "B: bytes of pipelined requests to send (300MiB)")
	flag.IntVar(&o.floodBody, "flood-body", 16<<10, "B: body bytes of each pipelined request")
	flag.DurationVar(&o.slow, "slow", 5*time.Second, "B: how long the backend holds the first request")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "time limit of each attack (A: the hold; B: the flood and the wait for the slow answer)")
	flag.IntVar(&o.rate, "rate", 20, "normal requests per second during the attacks (one keep-alive connection)")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "normal requests before each attack, before RSS is read")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "wait after the attacker closed its connections before reading RSS again")
	flag.DurationVar(&o.sample, "sample", 100*time.Millisecond, "RSS sampling interval during an attack")
	flag.StringVar(&o.out, "o", "table", "output: table (markdown) or json")
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/abuse:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/abuse:", err)
		os.Exit(1)
	}
	if o.out == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.table(os.Stdout)
	}
}

func (o options) check() error {
	for _, a := range strings.Split(o.attacks, ",") {
		if a != "A" && a != "B" {
			return fmt.Errorf("-attacks %q: want a list of A and B", o.attacks)
		}
	}
	switch {
	case o.out != "table" && o.out != "json":
		return fmt.Errorf("-o %q: want table or json", o.out)
	case o.conns < 1 || o.declared < 2 || o.flood < 1 || o.floodBody < 0 || o.rate < 1:
		return errors.New("-conns, -flood and -rate must be at least 1, -declared at least 2, -flood-body at least 0")
	case o.hold <= 0 || o.slow <= 0 || o.duration <= 0 || o.sample <= 0 || o.warmup <= 0 || o.settle < 0:
		return errors.New("-hold, -slow, -duration, -sample and -warmup must be positive")
	}
	return nil
}

// sizeFlag is a byte count written as a number with an optional binary
// unit: 10485760, 10MiB, 300M, 1GiB.
type sizeFlag struct{ p *uint64 }

func (f sizeFlag) String() string {
	if f.p == nil {
		return ""
	}
	return size(*f.p)
}

func (f sizeFlag) Set(s string) error {
	units := []struct {
		suffix string
		mult   uint64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, mult := s, uint64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || v < 0 {
		return fmt.Errorf("%q: want a byte count such as 10485760, 10MiB or 300M", s)
	}
	*f.p = uint64(v * float64(mult))
	return nil
}

// size prints n in the largest binary unit that keeps it readable.
func size(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= mib:
		return fmt.Sprintf("%.1f MiB", float64(n)/mib)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// report is the whole run, as printed and as -o json.
type report struct {
	Time    string         `json:"time"`
	Gateway string         `json:"gateway"` // binary and its source
	Go      string         `json:"go"`
	CPUs    int            `json:"cpus"`
	Options map[string]any `json:"options"`
	Attacks []attackResult `json:"attacks"`
}

// attackResult is one attack on a fresh gateway. Memory is in bytes.
type attackResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	GatewayPID  int    `json:"gateway_pid"`
	// RSSBefore is VmRSS after the warm-up, just before the attack;
	// PeakRSS is VmHWM at the end of the attack (the process's peak, which
	// includes its start); MaxSampledRSS the largest VmRSS sampled during
	// the attack, and MaxSampledAt when, since the attack started.
	RSSBefore     uint64  `json:"rss_before_bytes"`
	PeakRSS       uint64  `json:"peak_rss_bytes"`
	MaxSampledRSS uint64  `json:"max_sampled_rss_bytes"`
	MaxSampledAt  float64 `json:"max_sampled_at_seconds"`
	Samples       int     `json:"samples"`
	Delta         int64   `json:"delta_bytes"` // PeakRSS - RSSBefore
	RSSAfter      uint64  `json:"rss_after_bytes"`
	Seconds       float64 `json:"attack_seconds"`
	// Sent is what the attacker's writes handed to the kernel; GatewayRead
	// is the part of it the gateway process had read at the end of the
	// attack (Sent minus what still waited in the sockets' queues).
	Sent        uint64 `json:"attacker_sent_bytes"`
	GatewayRead uint64 `json:"gateway_read_bytes"`
	// GatewayDied is set when the gateway exited during the attack.
	GatewayDied string       `json:"gateway_died,omitempty"`
	Baseline    latencies    `json:"normal_before"` // the warm-up
	Normal      latencies    `json:"normal_during"`
	Hold        *holdResult  `json:"hold,omitempty"`
	Flood       *floodResult `json:"flood,omitempty"`
	Targets     []target     `json:"targets"`
}

type target struct {
	What     string  `json:"what"`
	Limit    float64 `json:"limit"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
}

func run(ctx context.Context, o options) (*report, error) {
	dir, err := os.MkdirTemp("", "modelgate-abuse-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)

	rep := &report{
		Time: time.Now().UTC().Format(time.RFC3339), Go: runtime.Version(), CPUs: runtime.NumCPU(),
		Options: map[string]any{
			"conns": o.conns, "declared": o.declared, "hold": o.hold.String(), "flood": o.flood,
			"flood_body": o.floodBody, "slow": o.slow.String(), "duration": o.duration.String(),
			"rate": o.rate, "warmup": o.warmup.String(), "settle": o.settle.String(), "sample": o.sample.String(),
		},
	}
	bin := o.bin
	if bin == "" {
		fmt.Fprintln(os.Stderr, "building ./cmd/modelgate")
		var desc string
		if bin, desc, err = buildModelgate(ctx, dir); err != nil {
			return nil, err
		}
		rep.Gateway = "modelgate built from the " + desc
	} else {
		if bin, err = filepath.Abs(bin); err != nil {
			return nil, err
		}
		rep.Gateway = bin + " (-bin)"
	}

	be, err := startBackend(o.slow)
	if err != nil {
		return nil, err
	}
	defer be.close()

	for _, name := range strings.Split(o.attacks, ",") {
		r, err := runAttack(ctx, name, bin, filepath.Join(dir, "attack-"+name), be.addr, o)
		if err != nil {
			return nil, fmt.Errorf("attack %s: %w", name, err)
		}
		rep.Attacks = append(rep.Attacks, r)
	}
	return rep, nil
}

// runAttack starts a fresh gateway, warms it with normal requests, runs
// one attack while sampling RSS, releases the attacker's connections and
// reads RSS once more after o.settle.
func runAttack(ctx context.Context, name, bin, dir, backendAddr string, o options) (attackResult, error) {
	r := attackResult{Name: name}
	g, err := startGateway(ctx, bin, dir, backendAddr, o)
	if err != nil {
		return r, err
	}
	defer g.Stop()
	r.GatewayPID = g.Pid()
	fmt.Fprintf(os.Stderr, "attack %s: gateway pid %d on %s\n", name, g.Pid(), g.addr)

	nc := startNormal(g.addr, o.rate)
	stopped := false
	stopNormal := func() {
		if !stopped {
			stopped = true
			nc.stop()
		}
	}
	defer stopNormal()
	warm := time.Now()
	if err := sleep(ctx, o.warmup); err != nil {
		return r, err
	}
	if g.Exited() {
		return r, fmt.Errorf("the gateway exited during the warm-up: %v\n%s", g.Err(), g.logTail())
	}
	r.RSSBefore, _, _ = benchproc.Mem(g.Pid())

	s := startSampler(g.Pid(), o.sample)
	start := time.Now()
	var release func()
	switch name {
	case "A":
		r.Description = fmt.Sprintf("%d connections declare Content-Length %d (%s), send 1 byte of body and hold at least %s, then until RSS stops growing (at most %s in all)",
			o.conns, o.declared, size(o.declared), o.hold, o.duration)
		var h holdResult
		h, release, err = attackHold(ctx, g.addr, o, func() uint64 { rss, _, _ := benchproc.Mem(g.Pid()); return rss })
		r.Hold, r.Sent, r.GatewayRead = &h, h.Sent, h.Sent-min(h.Sent, h.Unread)
	case "B":
		r.Description = fmt.Sprintf("1 connection: a request held %s by the backend, then up to %s of pipelined %d-byte-body requests within %s",
			o.slow, size(o.flood), o.floodBody, o.duration)
		var f floodResult
		f, release, err = attackFlood(ctx, g.addr, o)
		r.Flood, r.Sent, r.GatewayRead = &f, f.Sent, f.Sent-min(f.Sent, f.Unread)
	}
	end := time.Now()
	s.stop()
	if err != nil {
		return r, err
	}
	r.Seconds = end.Sub(start).Seconds()
	_, r.PeakRSS, _ = benchproc.Mem(g.Pid())
	r.MaxSampledRSS, r.MaxSampledAt, r.Samples = s.max, s.maxAt.Seconds(), s.n
	if g.Exited() || s.lost {
		// The last sample is the best peak there is; the kernel's went with
		// the process.
		r.GatewayDied = fmt.Sprintf("exited during the attack: %v", g.Err())
		r.PeakRSS = max(r.PeakRSS, s.max)
	}
	release()
	if err := sleep(ctx, o.settle); err != nil {
		return r, err
	}
	r.RSSAfter, _, _ = benchproc.Mem(g.Pid())
	stopNormal()
	r.Baseline = nc.between(warm, start)
	r.Normal = nc.between(start, end)
	r.Delta = int64(r.PeakRSS) - int64(r.RSSBefore)

	p50 := target{What: fmt.Sprintf("%s: normal request p50 < %g ms", name, p50Target), Limit: p50Target, Measured: r.Normal.P50ms, Unit: "ms"}
	p50.Met = r.Normal.Requests > 0 && r.Normal.P50ms < p50Target
	switch name {
	case "A":
		limit := float64(holdBase + r.Sent)
		r.Targets = append(r.Targets, target{
			What:  fmt.Sprintf("A: peak RSS < 100 MiB + %d bytes received", r.Sent),
			Limit: limit, Measured: float64(r.PeakRSS), Unit: "bytes", Met: float64(r.PeakRSS) < limit && r.GatewayDied == "",
		})
	case "B":
		r.Targets = append(r.Targets, target{
			What:  "B: RSS moves by < 64 MiB (peak - before)",
			Limit: floodDelta, Measured: float64(r.Delta), Unit: "bytes", Met: r.Delta < floodDelta && r.GatewayDied == "",
		})
	}
	r.Targets = append(r.Targets, p50)
	return r, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO"
}

// table prints the report as markdown: one row per attack, one per target,
// then what each attack saw in words.
func (rep *report) table(w io.Writer) {
	fmt.Fprintf(w, "modelgate under memory attacks (bench/abuse), %s\n\n", rep.Time)
	fmt.Fprintf(w, "- gateway: %s, a separate process, fresh for each attack; bench %s, %d CPUs\n", rep.Gateway, rep.Go, rep.CPUs)
	fmt.Fprintf(w, "- backend: in this process (net/http on loopback); the normal client: %v POST/s on one keep-alive connection, latency from the scheduled time, a failed request counted as %s\n", rep.Options["rate"], normalTimeout)
	fmt.Fprintf(w, "- RSS is the gateway's (/proc/PID/status): before = VmRSS after the warm-up, peak = VmHWM at the end of the attack, after = VmRSS %v after the attacker closed its connections\n", rep.Options["settle"])
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| attack | RSS before | peak RSS | delta | RSS after | attacker sent | gateway read | normal p50 | normal p99 | normal n / errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, a := range rep.Attacks {
		delta := size(uint64(max(a.Delta, -a.Delta)))
		if a.Delta < 0 {
			delta = "-" + delta
		}
		after := size(a.RSSAfter)
		if a.GatewayDied != "" {
			after = "(died)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %.2f ms | %.2f ms | %d / %d |\n",
			a.Name, size(a.RSSBefore), size(a.PeakRSS), delta, after, size(a.Sent), size(a.GatewayRead),
			a.Normal.P50ms, a.Normal.P99ms, a.Normal.Requests, a.Normal.Errors)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | limit | measured | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	for _, a := range rep.Attacks {
		for _, t := range a.Targets {
			if t.Unit == "bytes" {
				m := size(uint64(max(t.Measured, 0)))
				if t.Measured < 0 {
					m = "-" + size(uint64(-t.Measured))
				}
				fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.What, size(uint64(t.Limit)), m, yesNo(t.Met))
			} else {
				fmt.Fprintf(w, "| %s | %g %s | %.2f %s | %s |\n", t.What, t.Limit, t.Unit, t.Measured, t.Unit, yesNo(t.Met))
			}
		}
	}
	fmt.Fprintln(w)
	for _, a := range rep.Attacks {
		fmt.Fprintf(w, "%s: %s.\n", a.Name, a.Description)
		fmt.Fprintf(w, "- took %.1f s; %d RSS samples, the largest %s at %.1f s; normal p50 %.2f ms before the attack (%d requests)\n",
			a.Seconds, a.Samples, size(a.MaxSampledRSS), a.MaxSampledAt, a.Baseline.P50ms, a.Baseline.Requests)
		if h := a.Hold; h != nil {
			fmt.Fprintf(w, "- %d connections opened (%d dial errors), %d answered or closed by the gateway during the hold", h.Opened, h.DialErrs, h.Ended)
			if h.FirstAnswer != "" {
				fmt.Fprintf(w, " (first: %q)", h.FirstAnswer)
			}
			fmt.Fprintln(w)
			if h.FirstErr != "" {
				fmt.Fprintf(w, "- first attacker error: %s\n", h.FirstErr)
			}
		}
		if f := a.Flood; f != nil {
			fmt.Fprintf(w, "- flood stopped by %s after %.1f s: %s sent (%d pipelined requests of %d bytes), of which the gateway had read %s by the end (%s still in the socket queues)\n",
				f.Stopped, f.FloodSeconds, size(a.Sent), f.PipelinedRequests, f.RequestBytes, size(a.GatewayRead), size(f.Unread))
			if f.SlowAnswerSeconds > 0 {
				fmt.Fprintf(w, "- slow answer (status %d) after %.1f s; %d answers read in all before the connection was closed\n", f.SlowStatus, f.SlowAnswerSeconds, f.Answers)
			} else {
				fmt.Fprintf(w, "- no answer before the attack ended (%d read)\n", f.Answers)
			}
			if f.ReadEnd != "" {
				fmt.Fprintf(w, "- the connection ended early: %s\n", f.ReadEnd)
			}
		}
		if a.Normal.Errors > 0 {
			fmt.Fprintf(w, "- normal requests: %d errors, the first: %s\n", a.Normal.Errors, a.Normal.FirstErr)
		}
		if a.GatewayDied != "" {
			fmt.Fprintf(w, "- the gateway %s\n", a.GatewayDied)
		}
		fmt.Fprintln(w)
	}
}
