package cluster

// BenchmarkFleetEvidence: how many canary requests a fleet of three
// gateways serves before its leader rolls back a bad canary whose traffic
// is spread over the three, against one gateway serving the same total
// rate (issue 20). docs/benchmarks.md, "Fleet-wide evidence", has the
// command and a run's numbers.
//
//	go test ./bench/cluster -run '^$' -bench FleetEvidence -benchtime 20x -evidence.alone -timeout 60m
//
// (about 25 minutes; 13 without -evidence.alone). It prints each run and
// the summary on stdout (b.Log keeps only 10 lines of a benchmark's
// output). Each iteration runs one rollout on each setup, one after the
// other, so that a noisy machine disturbs them alike:
//
//   - fleet: three gateways in this process on one embedded etcd member,
//     the load spread evenly over their data planes (the leader serves its
//     third); the leader judges what all three served, pulled every
//     state.etcd.evidence_interval (250 ms);
//   - single: one gateway (bbolt) receiving the same load;
//   - alone (with -evidence.alone): one gateway receiving a third of it,
//     what one replica of the fleet serves: how long a replica judging
//     only its own traffic would take.
//
// The load is paced, the same in every setup: -evidence.rate requests a
// second in all from 30 workers (10 per data plane in the fleet), each
// sending at most one request per 30/rate seconds. The stable fails
// -evidence.stable-errors of its requests, the canary
// -evidence.canary-errors (3× the stable's by default), drawn from a seed
// per iteration that every setup of the iteration shares (faultyModel):
// each setup meets the same failures, so the setups are compared run by
// run (paired) as well as by their medians. Each rollout starts after -evidence.warmup of
// load with the plan: stages 5% then 50%, bake 1h (the first stage never
// ends by promotion), progress deadline -evidence.deadline (pause). The
// canary requests of a run are counted at the canary's model backend,
// which every gateway sends to: from the rollout's start until the
// rolled-back transition is seen, which every gateway routes within a few
// milliseconds (BenchmarkPropagation). The run also records the canary
// requests the deciding look judged (the rollout's stage_requests) and
// the time from start to rollback.
//
// The followers' admin URLs (admin.advertise_url) point at counting
// proxies, so that the bytes of the leader's pulls are measured on the
// wire: request and answer bodies, and the whole TCP traffic.

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/etcdtest"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/testenv"
)

var (
	evRate         = flag.Int("evidence.rate", 600, "BenchmarkFleetEvidence: total requests a second, over all data planes")
	evStableErrors = flag.Float64("evidence.stable-errors", 0.01, "BenchmarkFleetEvidence: the stable's error rate")
	evCanaryErrors = flag.Float64("evidence.canary-errors", 0.03, "BenchmarkFleetEvidence: the canary's error rate")
	evDeadline     = flag.Duration("evidence.deadline", 5*time.Minute, "BenchmarkFleetEvidence: the first stage's progress deadline")
	evWarmup       = flag.Duration("evidence.warmup", 3*time.Second, "BenchmarkFleetEvidence: load before each rollout starts")
	evSeed         = flag.Uint64("evidence.seed", 1, "BenchmarkFleetEvidence: the first iteration's seed of the models' failures (iteration i: seed+i)")
	evAlone        = flag.Bool("evidence.alone", false, "BenchmarkFleetEvidence: also run one gateway at a third of the rate")
)

const (
	evWorkers = 30
	evPath    = "/fraud/v1/models/fraud:predict"
)

// faultyModel is a model backend failing a fraction of its requests
// (500), answering the others at once; it counts what it served. Whether
// its n-th request since the last reseed fails is drawn from the seed and
// n alone: the setups of one iteration, reseeded alike at their rollout's
// start, see the same sequence of failures in the order their requests
// reach the model (common random numbers: what differs between them is
// how the gateways judge it, not the luck of the draw).
type faultyModel struct {
	srv    *httptest.Server
	fail   float64
	served atomic.Int64
	base   atomic.Int64
	seed   atomic.Uint64
}

func newFaultyModel(b *testing.B, fail float64) *faultyModel {
	m := &faultyModel{fail: fail}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := m.served.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		if m.fails(n - m.base.Load()) {
			w.WriteHeader(http.StatusInternalServerError)
			w.Write([]byte(`{"error":"model failed"}`))
			return
		}
		w.Write([]byte(`{"predictions":[1]}`))
	}))
	b.Cleanup(m.srv.Close)
	return m
}

// reseed starts the sequence of seed from the next request.
func (m *faultyModel) reseed(seed uint64) {
	m.seed.Store(seed)
	m.base.Store(m.served.Load())
}

// fails reports whether request n of the current sequence fails.
func (m *faultyModel) fails(n int64) bool {
	x := m.seed.Load()*0x9e3779b97f4a7c15 + uint64(n) // splitmix64 of (seed, n)
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11)/(1<<53) < m.fail
}

// pullCounter is a follower's admin API as the leader sees it: a reverse
// proxy counting the evidence pulls, their bodies and the bytes on the
// wire in each direction.
type pullCounter struct {
	ln      net.Listener
	target  atomic.Pointer[url.URL]
	pulls   atomic.Int64
	reqBody atomic.Int64
	ansBody atomic.Int64
	wireIn  atomic.Int64 // leader to follower
	wireOut atomic.Int64 // follower to leader
}

type pullCounts struct{ pulls, reqBody, ansBody, wireIn, wireOut int64 }

func (p *pullCounter) counts() pullCounts {
	return pullCounts{p.pulls.Load(), p.reqBody.Load(), p.ansBody.Load(), p.wireIn.Load(), p.wireOut.Load()}
}

func (c pullCounts) sub(o pullCounts) pullCounts {
	return pullCounts{c.pulls - o.pulls, c.reqBody - o.reqBody, c.ansBody - o.ansBody, c.wireIn - o.wireIn, c.wireOut - o.wireOut}
}

func (c pullCounts) add(o pullCounts) pullCounts {
	return pullCounts{c.pulls + o.pulls, c.reqBody + o.reqBody, c.ansBody + o.ansBody, c.wireIn + o.wireIn, c.wireOut + o.wireOut}
}

// newPullCounter starts the proxy; setTarget points it at the follower.
func newPullCounter(b *testing.B) *pullCounter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	p := &pullCounter{}
	p.ln = &countingListener{Listener: ln, in: &p.wireIn, out: &p.wireOut}
	rp := &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(p.target.Load()) }}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/fleet/evidence" {
			p.pulls.Add(1)
			r.Body = countingBody{r.Body, &p.reqBody}
			w = countingWriter{w, &p.ansBody}
		}
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(p.ln)
	b.Cleanup(func() { srv.Close() })
	return p
}

func (p *pullCounter) URL() string { return "http://" + p.ln.Addr().String() }

func (p *pullCounter) setTarget(adminAddr string) {
	p.target.Store(&url.URL{Scheme: "http", Host: adminAddr})
}

type countingListener struct {
	net.Listener
	in, out *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.in, l.out}, nil
}

type countingConn struct {
	net.Conn
	in, out *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// evRun is one rollout of one setup.
type evRun struct {
	phase  rollout.Phase
	canary int64         // canary requests served, at the model backend
	rate   float64       // requests a second both backends served meanwhile
	judged uint64        // canary requests the deciding look judged (stage_requests)
	took   time.Duration // start to the rolled-back transition (the rollout's record)
	load   string        // 1-minute load average at the end
	reason string        // the rollout's reason at the end
}

// decided reports whether the run rolled back before the deadline.
func (r evRun) decided() bool { return r.phase == rollout.PhaseRolledBack }

// evSetup is one way of serving the load: the data planes the load is
// spread over, and the gateway rollouts are started on and watched at.
type evSetup struct {
	name   string
	planes []*testenv.Client // the load's share per data plane: workers/len
	ctl    *testenv.Client
	// workers is the load's workers in all (rate: workers per every).
	workers int
	runs    []evRun
	// pulls counts the followers' evidence traffic during the rollouts
	// (fleet only); watched the time it was counted over.
	pulls   []*pullCounter
	counted pullCounts
	watched time.Duration
}

func BenchmarkFleetEvidence(b *testing.B) {
	every := time.Duration(float64(evWorkers) * float64(time.Second) / float64(*evRate))
	blue, green := newFaultyModel(b, *evStableErrors), newFaultyModel(b, *evCanaryErrors)
	root := b.TempDir()

	// fleet: a leads (started first, waited for), b and c follow, their
	// admin APIs reached by the leader through the counting proxies.
	cluster := etcdtest.Start(b, 1)
	cfg := func(name, advertise string) string {
		c := testenv.ClusterConfig(filepath.Join(root, "fleet", name), cluster.Endpoints(), "/bench/", blue.srv.URL, green.srv.URL)
		// The default lease (ClusterConfig's is 2 s): a machine busy for
		// 2 s must not move the leadership in the middle of the benchmark.
		c = strings.Replace(c, "lease_ttl: 2s", "lease_ttl: 15s", 1)
		if advertise != "" {
			c = strings.Replace(c, "admin:\n", "admin:\n  advertise_url: "+advertise+"\n", 1)
		}
		return c
	}
	da := testenv.StartDaemon(b, cfg("a", ""))
	etcdCli := cluster.Client(b)
	testenv.WaitFor(b, 10*time.Second, "gateway a to lead", func() bool {
		resp, err := etcdCli.Get(b.Context(), "/bench/k/leader/", clientv3.WithFirstCreate()...)
		return err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == "http://"+da.AdminAddr()
	})
	fleet := &evSetup{name: "fleet", workers: evWorkers}
	planes := []*testenv.Client{testenv.Connect(b, da)}
	for _, name := range []string{"b", "c"} {
		pc := newPullCounter(b)
		d := testenv.StartDaemon(b, cfg(name, pc.URL()))
		pc.setTarget(d.AdminAddr())
		fleet.pulls = append(fleet.pulls, pc)
		planes = append(planes, testenv.Connect(b, d))
	}
	fleet.planes, fleet.ctl = planes, planes[0]
	testenv.WaitFor(b, 10*time.Second, "three replicas listed", func() bool {
		var reps api.ReplicaList
		fleet.ctl.Get("/api/v1/replicas", &reps)
		return len(reps.Replicas) == 3
	})

	// single (and alone): one gateway with its state in bbolt.
	ds := testenv.StartDaemon(b, testenv.TwoDeploymentConfig(filepath.Join(root, "single"), blue.srv.URL, green.srv.URL, ""))
	single := &evSetup{name: "single", workers: evWorkers}
	for range 3 {
		single.planes = append(single.planes, testenv.Connect(b, ds))
	}
	single.ctl = single.planes[0]
	setups := []*evSetup{fleet, single}
	if *evAlone {
		setups = append(setups, &evSetup{name: "alone", workers: evWorkers / 3, planes: single.planes[:1], ctl: single.ctl})
	}

	plan := spec.Plan{Stages: []spec.Stage{{Weight: 5 * spec.Full / 100}, {Weight: 50 * spec.Full / 100}},
		Bake: spec.Duration(time.Hour), ProgressDeadline: spec.Duration(*evDeadline)}
	body, err := json.Marshal(rollout.StartRequest{Canary: "green", Plan: plan})
	if err != nil {
		b.Fatal(err)
	}
	say("rate %d/s (%d workers, one request per %v each), stable errors %.2f%%, canary errors %.2f%%, plan %s, warm-up %v",
		*evRate, evWorkers, every, 100**evStableErrors, 100**evCanaryErrors, body, *evWarmup)

	for i := 0; b.Loop(); i++ {
		for _, s := range setups {
			seed := *evSeed + uint64(i)
			r := s.run(b, blue, green, every, string(body), seed)
			s.runs = append(s.runs, r)
			say("run %2d %-6s %-11s canary requests %5d (judged %5d) in %6.2fs, %4.0f requests/s, load %s: %.150s",
				i+1, s.name, r.phase, r.canary, r.judged, r.took.Seconds(), r.rate, r.load, r.reason)
		}
	}
	b.StopTimer()

	for _, s := range setups {
		s.report(b)
	}
	fm, sm := median(canaryOf(fleet.runs)), median(canaryOf(single.runs))
	lo, hi := bootstrapRatio(canaryOf(fleet.runs), canaryOf(single.runs))
	say("ratio of the medians, fleet/single: %.2f (bootstrap 95%% interval %.2f to %.2f, resampling the setups independently; target ≤ 1.5)", fm/sm, lo, hi)
	for _, s := range setups {
		if s == single {
			continue
		}
		r := paired(s.runs, single.runs)
		plo, phi := medianCI(r)
		say("paired by iteration (the same failures), %s/single: median %.2f (95%% CI %.2f to %.2f), p25 %.2f, p75 %.2f, %d of %d above 1.5",
			s.name, median(r), plo, phi, quantile(r, 0.25), quantile(r, 0.75), countAbove(r, 1.5), len(r))
		if s == fleet {
			b.ReportMetric(median(r), "paired-ratio")
		}
	}
	b.ReportMetric(fm, "fleet-canary-req")
	b.ReportMetric(sm, "single-canary-req")
	b.ReportMetric(fm/sm, "ratio")
	b.ReportMetric(median(secondsOf(fleet.runs)), "fleet-s")
	b.ReportMetric(median(secondsOf(single.runs)), "single-s")
	if len(setups) > 2 {
		b.ReportMetric(median(canaryOf(setups[2].runs)), "alone-canary-req")
		b.ReportMetric(median(secondsOf(setups[2].runs)), "alone-s")
	}
	if w := fleet.watched.Seconds(); w > 0 {
		c, n := fleet.counted, float64(len(fleet.pulls))
		say("the leader's pulls, per follower, over %.1f s of rollouts: %.2f pulls/s; bodies %.0f B/s (requests %.0f, answers %.0f), %.0f B a pull; on the wire (headers included) %.0f B/s (%.0f in, %.0f out)",
			w, float64(c.pulls)/n/w, float64(c.reqBody+c.ansBody)/n/w, float64(c.reqBody)/n/w, float64(c.ansBody)/n/w,
			float64(c.reqBody+c.ansBody)/float64(max(c.pulls, 1)), float64(c.wireIn+c.wireOut)/n/w, float64(c.wireIn)/n/w, float64(c.wireOut)/n/w)
		b.ReportMetric(float64(c.reqBody+c.ansBody)/n/w, "pull-body-B/s/replica")
		b.ReportMetric(float64(c.wireIn+c.wireOut)/n/w, "pull-wire-B/s/replica")
	}
}

// run runs one rollout of the bad canary on s and returns what it cost.
func (s *evSetup) run(b *testing.B, blue, green *faultyModel, every time.Duration, body string, seed uint64) evRun {
	var loads []*testenv.Load
	for _, c := range s.planes {
		loads = append(loads, testenv.StartLoad(b, s.workers/len(s.planes), every, func() { c.Predict(evPath, nil) }))
	}
	defer func() {
		for _, l := range loads {
			l.Stop()
		}
	}()
	// The warm-up is so many requests (the stable's recent window for the
	// stage's thresholds), counted as sent rather than waited for.
	warm := int64(evWarmup.Seconds() * float64(*evRate))
	testenv.WaitFor(b, *evWarmup+time.Minute, "the warm-up's requests", func() bool {
		var sent int64
		for _, l := range loads {
			sent += l.Sent()
		}
		return sent >= warm
	})
	var pc0 []pullCounts
	for _, p := range s.pulls {
		pc0 = append(pc0, p.counts())
	}
	blue.reseed(2*seed + 1)
	green.reseed(2 * seed)
	g0, b0, t0 := green.served.Load(), blue.served.Load(), time.Now()
	s.ctl.StartRollout("fraud", body)
	var r rollout.Rollout
	testenv.WaitFor(b, *evDeadline+30*time.Second, s.name+": the rollout to roll back or pause", func() bool {
		r = s.ctl.Rollout("fraud")
		return r.Phase != rollout.PhaseProgressing
	})
	g1, b1, t1 := green.served.Load(), blue.served.Load(), time.Now()
	out := evRun{phase: r.Phase, canary: g1 - g0, rate: float64(g1-g0+b1-b0) / t1.Sub(t0).Seconds(), judged: r.StageRequests, load: loadAvg(), reason: r.Reason}
	s.watched += t1.Sub(t0)
	for i, p := range s.pulls {
		s.counted = s.counted.add(p.counts().sub(pc0[i]))
	}
	if r.FinishedAt != nil {
		out.took = r.FinishedAt.Sub(r.StartedAt)
	} else {
		out.took = r.UpdatedAt.Sub(r.StartedAt)
		if status, resp := s.ctl.API(http.MethodPost, "/api/v1/endpoints/fraud/rollout/abort", nil); status != http.StatusOK {
			b.Fatalf("%s: abort the %s rollout: %d %s", s.name, r.Phase, status, resp)
		}
	}
	testenv.WaitFor(b, 10*time.Second, s.name+": every data plane back on the stable", func() bool {
		for _, c := range s.planes {
			if c.Traffic("fraud")["green"] != 0 {
				return false
			}
		}
		return true
	})
	return out
}

// report logs the setup's medians and quartiles.
func (s *evSetup) report(b *testing.B) {
	canary, secs := canaryOf(s.runs), secondsOf(s.runs)
	judged := make([]float64, 0, len(s.runs))
	decided := 0
	for _, r := range s.runs {
		if r.decided() {
			decided++
			judged = append(judged, float64(r.judged))
		}
	}
	rates := make([]float64, len(s.runs))
	for i, r := range s.runs {
		rates[i] = r.rate
	}
	lo, hi := medianCI(canary)
	say("%-6s %d runs, %d rolled back before the deadline: canary requests to rollback median %.0f (95%% CI %.0f to %.0f), p25 %.0f, p75 %.0f; judged median %.0f; seconds median %.2f (p25 %.2f, p75 %.2f); served %.0f requests/s (median)",
		s.name, len(s.runs), decided, median(canary), lo, hi, quantile(canary, 0.25), quantile(canary, 0.75),
		median(judged), median(secs), quantile(secs, 0.25), quantile(secs, 0.75), median(rates))
	// A progress deadline only cuts a run short: what a shorter one would
	// have let decide is read off the same runs.
	var within []string
	for _, d := range []float64{20, 30, 40, 60} {
		n := 0
		for _, x := range secs {
			if x <= d {
				n++
			}
		}
		within = append(within, fmt.Sprintf("%d of %d within %.0f s", n, len(secs), d))
	}
	say("%-6s rolled back %s", s.name, strings.Join(within, ", "))
}

// paired is a's canary requests over b's, iteration by iteration (runs
// neither rolled back are left out).
func paired(a, b []evRun) []float64 {
	ca, cb := canaryOf(a), canaryOf(b)
	var out []float64
	for i := range min(len(ca), len(cb)) {
		if r := ca[i] / cb[i]; !math.IsNaN(r) {
			out = append(out, r)
		}
	}
	return out
}

func countAbove(xs []float64, v float64) int {
	n := 0
	for _, x := range xs {
		if x > v {
			n++
		}
	}
	return n
}

// canaryOf is the runs' canary requests; a run that did not roll back
// counts as +Inf (it needed more than it served).
func canaryOf(runs []evRun) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = float64(r.canary)
		if !r.decided() {
			out[i] = math.Inf(1)
		}
	}
	return out
}

func secondsOf(runs []evRun) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = r.took.Seconds()
		if !r.decided() {
			out[i] = math.Inf(1)
		}
	}
	return out
}

// quantile is the q-quantile of xs, interpolated between order statistics
// (type 7); NaN for none.
func quantile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	h := q * float64(len(s)-1)
	lo := int(math.Floor(h))
	if lo+1 >= len(s) || s[lo+1] == s[lo] {
		return s[lo]
	}
	return s[lo] + (h-float64(lo))*(s[lo+1]-s[lo])
}

func median(xs []float64) float64 { return quantile(xs, 0.5) }

// medianCI is the order-statistic interval of the median holding it with
// probability at least 95% (the widest ranks k, n+1-k with
// P(Binomial(n, 1/2) < k) ≤ 2.5%).
func medianCI(xs []float64) (float64, float64) {
	n := len(xs)
	if n < 6 {
		return math.NaN(), math.NaN()
	}
	s := slices.Sorted(slices.Values(xs))
	k, cum := 0, 0.0
	for j := 0; j <= n; j++ {
		p := math.Exp(lgamma(n+1) - lgamma(j+1) - lgamma(n-j+1) - float64(n)*math.Ln2)
		if cum+p > 0.025 {
			break
		}
		cum += p
		k = j + 1 // ranks 1..k have P(count below) ≤ 2.5%
	}
	k = max(k, 1)
	return s[k-1], s[n-k]
}

func lgamma(n int) float64 {
	v, _ := math.Lgamma(float64(n))
	return v
}

// bootstrapRatio is the 95% percentile bootstrap interval of
// median(a)/median(b), resampling each independently.
func bootstrapRatio(a, b []float64) (float64, float64) {
	if len(a) == 0 || len(b) == 0 {
		return math.NaN(), math.NaN()
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const reps = 10000
	ratios := make([]float64, reps)
	ra, rb := make([]float64, len(a)), make([]float64, len(b))
	for i := range ratios {
		for j := range ra {
			ra[j] = a[rng.IntN(len(a))]
		}
		for j := range rb {
			rb[j] = b[rng.IntN(len(b))]
		}
		ratios[i] = median(ra) / median(rb)
	}
	return quantile(ratios, 0.025), quantile(ratios, 0.975)
}

// say prints a line of the report: b.Log keeps only 10 lines of a
// benchmark's output.
func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// loadAvg is the machine's 1-minute load average.
func loadAvg() string {
	var l1 float64
	f, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if _, err := fmt.Sscan(string(f), &l1); err != nil {
		return "?"
	}
	return fmt.Sprintf("%.2f", l1)
}
