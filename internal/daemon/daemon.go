// Package daemon is modelgate's composition root: it builds the store,
// telemetry, data plane, control service and admin API from a config file,
// owns every long-lived goroutine, reloads on SIGHUP and shuts down
// gracefully. It is the only package that knows which store backend runs.
package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/modelgate/modelgate/internal/admin"
	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/config"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/proxy"
	"github.com/modelgate/modelgate/internal/rollout"
	"github.com/modelgate/modelgate/internal/shadow"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/store/etcd"
	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/tlsconf"
	"github.com/modelgate/modelgate/internal/webhook"
)

// ShutdownTimeout bounds how long a graceful shutdown waits for in-flight
// requests to finish.
const ShutdownTimeout = 30 * time.Second

// Options configures a Daemon.
type Options struct {
	// Config is the parsed, valid config file.
	Config *config.File
	// ConfigPath is re-read on SIGHUP; empty disables reloads.
	ConfigPath string
	// Logger receives the daemon's logs; nil discards them.
	Logger *slog.Logger
	// RolloutInterval is how often rollouts are looked at. Zero: 1s.
	RolloutInterval time.Duration
	// Stderr is where logging.access_log.path "stderr" writes. Nil:
	// os.Stderr.
	Stderr io.Writer
	// LogFormat is serve's --log-format, which wins over logging.format
	// for the access log too. Empty: logging.format.
	LogFormat string
}

// Daemon is a running modelgate.
type Daemon struct {
	cfg        *config.File
	configPath string
	log        *slog.Logger

	store     store.Store
	telemetry *telemetry.Registry
	proxy     *proxy.Server
	control   *control.Service
	rollouts  *rollout.Controller
	shadows   *shadow.Manager
	webhooks  *webhook.Sender
	tokens    *tokenFiles
	// fleet is the etcd store in cluster mode (state.etcd), nil otherwise.
	fleet *etcd.Store
	// evidence gathers what the other replicas served for the rollouts
	// this gateway leads, and peerClient calls their admin APIs (cluster
	// mode).
	evidence   *fleet.Gatherer
	peerClient *fleet.Client
	// id and started describe this gateway in GET /api/v1/replicas.
	id      string
	started time.Time
	admin   *http.Server
	// proxyTLS and adminTLS are the listeners' certificates (nil: plain
	// HTTP), re-read on SIGHUP.
	proxyTLS, adminTLS *tlsconf.Server

	proxyLn, adminLn net.Listener
	// access is the data plane's access log (logging.access_log); nil: off.
	access *accessLog
	// background runs the rollout controller and webhook deliveries.
	background context.CancelFunc
	bgWG       sync.WaitGroup // the background goroutines
	wg         sync.WaitGroup // the listeners' serve loops
	serveErr   chan error
	reloadMu   sync.Mutex
}

// New opens the state, loads it, applies the config file's spec and
// builds every component. Nothing listens until Start.
func New(ctx context.Context, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg := opts.Config
	st, snap, err := openState(ctx, cfg)
	if err != nil {
		return nil, err
	}
	d := &Daemon{cfg: cfg, configPath: opts.ConfigPath, log: log, store: st, serveErr: make(chan error, 2), id: replicaID(), started: time.Now().UTC()}
	d.tokens = newTokenFiles(cfg)
	if err := d.tokens.reload(log); err != nil {
		st.Close()
		return nil, err
	}
	if d.proxyTLS, err = listenerTLS("tls", cfg.TLS); err != nil {
		st.Close()
		return nil, err
	}
	if d.adminTLS, err = listenerTLS("admin.tls", cfg.Admin.TLS); err != nil {
		st.Close()
		return nil, err
	}
	var proxyTLS *tls.Config
	if d.proxyTLS != nil {
		proxyTLS = d.proxyTLS.Config()
	}
	stderr := opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	if d.access, err = openAccessLog(cfg.Logging, opts.LogFormat, stderr, log); err != nil {
		st.Close()
		return nil, err
	}
	d.telemetry = telemetry.NewRegistry()
	d.shadows = shadow.NewManager(shadow.Options{Logger: log.With("component", "shadow")})
	d.proxy = proxy.New(proxy.Options{Logger: log.With("component", "proxy"), Recorders: proxy.RecordersFrom(d.telemetry),
		MaxRequestBytes: int(cfg.MaxRequestBytes), Mirror: d.shadows, EventLoops: reserveLoopProcs(),
		Limits: proxy.Limits{MaxConnections: cfg.Limits.MaxConnections, MaxHeaders: cfg.Limits.MaxHeaders,
			MaxURIBytes: cfg.Limits.MaxURIBytes, SendTimeout: cfg.Limits.SendTimeout.D()},
		TLS: proxyTLS, AccessLog: d.access.proxyLog()})
	d.control = control.New(control.Options{Store: st, Router: routes{d.shadows, d.proxy}, Telemetry: d.telemetry, Logger: log.With("component", "control")})
	if err := d.control.Load(ctx); err != nil {
		d.abandon()
		return nil, err
	}
	res, err := d.applyConfig(ctx)
	if err != nil {
		d.abandon()
		return nil, fmt.Errorf("apply config: %w", err)
	}
	logApply(log, "config applied", res)

	d.webhooks = webhook.New(webhook.Options{Logger: log.With("component", "webhook")})
	ropts := rollout.Options{Store: st, Endpoints: d.control, Telemetry: d.telemetry, Shadow: shadowCounts{d.shadows},
		Connections: d.proxy, Health: backendHealth{d.proxy}, Notifier: d.webhooks, Logger: log.With("component", "rollout"), Interval: opts.RolloutInterval}
	if es, ok := st.(*etcd.Store); ok {
		// Cluster mode: the gateway elected leader drives every rollout,
		// on what every replica served.
		d.fleet = es
		ropts.Elected, ropts.Leader = true, es.Leader
		if d.peerClient, err = d.newPeerClient(); err != nil {
			d.abandon()
			return nil, err
		}
		d.evidence = d.newGatherer()
		ropts.Fleet, ropts.Recent, ropts.Sync = d.evidence, d.recent, d.control.Refresh
	}
	d.rollouts = rollout.New(ropts)
	if d.fleet == nil {
		if err := d.rollouts.Load(ctx); err != nil {
			d.abandon()
			return nil, err
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(backendUp{d.proxy}, d.telemetry.Collector(), d.rollouts.Collector(), d.shadows.Collector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), accessLogDropped(d.access))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "modelgate_state_store_up",
		Help: "1 when the state store answered the last probe (cluster mode: etcd, probed every second); 0 while it does not, and the gateway serves the last routes it knew and refuses changes."},
		func() float64 {
			if d.control.Degraded() != "" {
				return 0
			}
			return 1
		}))
	d.admin = &http.Server{
		Handler: admin.New(admin.Options{Backend: d.control, Rollouts: d.rollouts, Shadows: shadowReports{d.control, d.shadows}, Series: d.control,
			Snapshots: snap, Tokens: d.tokens.set, Gatherer: reg, Replicas: replicas{d}, Health: backendHealth{d.proxy}, Evidence: d.reporter(), FleetReads: d.fleetReads(),
			Logger: log.With("component", "admin")}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	// Long-lived requests (the event stream) end when the admin server
	// shuts down: http.Server.Shutdown does not cancel request contexts.
	adminCtx, adminCancel := context.WithCancel(context.Background())
	d.admin.BaseContext = func(net.Listener) context.Context { return adminCtx }
	d.admin.RegisterOnShutdown(adminCancel)
	return d, nil
}

// actor names who made a change in the event log: in cluster mode with
// the replica's id, since every replica applies its own config file.
func (d *Daemon) actor(what string) string {
	if d.cfg.State.Etcd != nil {
		return what + "@" + d.id
	}
	return what
}

// upkeep is what the leader does to keep the fleet's keys in bounds.
func (d *Daemon) upkeep() etcd.Upkeep {
	e := d.cfg.State.Etcd
	u := etcd.Upkeep{Retention: e.EventRetention.D(), Logf: d.log.With("component", "etcd").Info}
	if e.CompactHistory {
		u.CompactEvery = etcd.DefaultCompactEvery
	}
	return u
}

// StoreProbeInterval is how often a gateway of a fleet checks that etcd
// answers (cluster mode): /readyz, /metrics (modelgate_state_store_up) and
// writes follow the last probe.
const StoreProbeInterval = time.Second

// probeStore asks etcd for the last event's Seq every StoreProbeInterval
// and records the outcome in the control service, logging each change.
func (d *Daemon) probeStore(ctx context.Context) {
	t := time.NewTicker(StoreProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := d.fleet.Health(ctx)
		if ctx.Err() != nil {
			return
		}
		changed, downFor := d.control.SetStoreHealth(err)
		switch {
		case changed && err != nil:
			d.log.Warn("etcd does not answer: serving the last routes known, refusing changes until it is back", "err", err)
		case changed:
			d.log.Info("etcd answers again", "down_for", downFor.Round(time.Second).String())
			if err := d.control.Refresh(ctx); err != nil {
				d.log.Warn("reload the state after etcd came back", "err", err)
			}
		}
	}
}

// abandon releases what a failed New had started: the shadow workers and
// health checkers of the routes loaded so far, and the state.
func (d *Daemon) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.proxy.Shutdown(ctx)
	d.access.close()
	d.shadows.Close()
	d.store.Close()
}

func logApply(log *slog.Logger, msg string, res control.ApplyResult) {
	log.Info(msg, "created", res.Created, "updated", res.Updated, "removed", res.Removed, "unchanged", len(res.Unchanged))
}

// listenerTLS loads a listener's TLS block; nil when it is empty.
func listenerTLS(field string, t config.TLS) (*tlsconf.Server, error) {
	if !t.Enabled() {
		return nil, nil
	}
	s, err := tlsconf.NewServer(field, t.Files())
	if err != nil {
		return nil, fmt.Errorf("%w (docs/security.md, \"TLS\")", err)
	}
	return s, nil
}

// Start opens both listeners and serves them in the background.
func (d *Daemon) Start() error {
	var err error
	if d.proxyLn, err = net.Listen("tcp", d.cfg.Listen); err != nil {
		return fmt.Errorf("listen (data plane) on %s: %w", d.cfg.Listen, err)
	}
	if d.adminLn, err = net.Listen("tcp", d.cfg.Admin.Listen); err != nil {
		d.proxyLn.Close()
		return fmt.Errorf("listen (admin) on %s: %w", d.cfg.Admin.Listen, err)
	}
	d.proxy.SetAdminURL(d.cfg.AdminURL(d.adminLn.Addr().String()))
	adminLn := d.adminLn
	if d.adminTLS != nil {
		adminLn = tls.NewListener(adminLn, d.adminTLS.Config())
	}
	d.warnExposed()
	bg, cancel := context.WithCancel(context.Background())
	d.background = cancel
	d.bgWG.Add(4)
	go func() {
		defer d.bgWG.Done()
		d.webhooks.Run(bg)
	}()
	go func() {
		defer d.bgWG.Done()
		d.watchHealth(bg) // health.go
	}()
	go func() {
		// Routes changed by the other gateways of a fleet (state.etcd).
		defer d.bgWG.Done()
		d.control.Follow(bg)
	}()
	go func() {
		defer d.bgWG.Done()
		if d.fleet == nil {
			d.rollouts.Run(bg)
			return
		}
		d.bgWG.Add(2)
		go func() {
			defer d.bgWG.Done()
			d.probeStore(bg)
		}()
		go func() {
			defer d.bgWG.Done()
			d.announce(bg)
		}()
		d.fleet.Elect(bg, d.cfg.State.Etcd.LeaseTTL.D(), d.cfg.AdminURL(d.adminLn.Addr().String()), func(ctx context.Context, t etcd.Term) {
			mctx, stop := context.WithCancel(ctx)
			upkept := make(chan struct{})
			go func() {
				defer close(upkept)
				d.fleet.Maintain(mctx, d.upkeep())
			}()
			gathered := make(chan struct{})
			go func() {
				defer close(gathered)
				d.evidence.Run(mctx)
			}()
			if err := d.rollouts.Lead(ctx, t.Fence); err != nil {
				d.log.Error("leading the fleet's rollouts", "err", err)
			}
			stop()
			<-upkept
			<-gathered
		})
	}()
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		if err := d.proxy.Serve(d.proxyLn); err != nil {
			d.serveErr <- fmt.Errorf("data plane: %w", err)
		}
	}()
	go func() {
		defer d.wg.Done()
		if err := d.admin.Serve(adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.serveErr <- fmt.Errorf("admin: %w", err)
		}
	}()
	d.log.Info("modelgate serving", "data_plane", d.ProxyAddr(), "admin", d.AdminAddr(), "dashboard", d.cfg.AdminURL(d.adminLn.Addr().String())+"/", "state", d.cfg.State.Path, "token_file", d.tokens.adminPath,
		"data_plane_tls", d.proxyTLS != nil, "admin_tls", d.adminTLS != nil)
	for _, l := range []struct {
		name string
		s    *tlsconf.Server
	}{{"data plane", d.proxyTLS}, {"admin", d.adminTLS}} {
		if l.s != nil {
			d.log.Info("TLS certificate", "listener", l.name, "subject", l.s.Subject(), "not_after", l.s.NotAfter().UTC().Format(time.RFC3339))
		}
	}
	return nil
}

// warnExposed warns about a listener reachable beyond this machine
// without TLS: the admin token, or the predictions, cross the network in
// clear text.
func (d *Daemon) warnExposed() {
	if d.adminTLS == nil && !loopback(d.adminLn.Addr()) {
		d.log.Warn("the admin API listens beyond loopback without TLS: the admin token and every change cross the network in clear text; set admin.tls (docs/security.md, \"TLS\") or listen on 127.0.0.1",
			"admin.listen", d.AdminAddr())
	}
	if d.proxyTLS == nil && !loopback(d.proxyLn.Addr()) {
		d.log.Warn("the data plane listens beyond loopback without TLS: requests and predictions cross the network in clear text; set tls (docs/security.md, \"TLS\") unless a TLS proxy in front terminates it",
			"listen", d.ProxyAddr())
	}
	if e := d.cfg.State.Etcd; e != nil && e.Username != "" {
		for _, ep := range e.Endpoints {
			if strings.HasPrefix(ep, "http://") {
				d.log.Warn("the etcd password is sent to a member over plain http: use https endpoints with state.etcd.tls", "endpoint", ep)
			}
		}
	}
}

// loopback reports whether a listener's bound address is reachable from
// this machine only.
func loopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// ProxyAddr is the data plane's listening address.
func (d *Daemon) ProxyAddr() string { return d.proxyLn.Addr().String() }

// AdminAddr is the admin API's listening address.
func (d *Daemon) AdminAddr() string { return d.adminLn.Addr().String() }

// Token is the admin bearer token now (the last one read from its file).
func (d *Daemon) Token() string { return d.tokens.admin() }

// TokenPath is the file holding the admin token.
func (d *Daemon) TokenPath() string { return d.tokens.adminPath }

// Rollouts is the rollout controller (for in-process callers such as the demo).
func (d *Daemon) Rollouts() *rollout.Controller { return d.rollouts }

// Control is the state service (for in-process callers such as the demo).
func (d *Daemon) Control() *control.Service { return d.control }

// Telemetry is the registry holding every deployment's Recorder, the same
// one the data plane records into. It is for in-process measurement tools
// (bench/memory fills the recorders' hour of slices with past observations
// to measure the memory of a full ring); the product itself never needs it.
func (d *Daemon) Telemetry() *telemetry.Registry { return d.telemetry }

// Reload re-reads the config file and applies its spec. An invalid file
// changes nothing and the error lists every problem.
func (d *Daemon) Reload(ctx context.Context) (control.ApplyResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	// The token files first, and on their own: a rotation (revoking a
	// leaked token) must not wait for a config that does not apply or an
	// etcd that does not answer. A token file that is refused changes no
	// token and stops the reload.
	tokens, err := d.tokens.read()
	if err != nil {
		return control.ApplyResult{}, fmt.Errorf("%w; the tokens are unchanged", err)
	}
	d.tokens.put(d.log, tokens)
	if d.configPath == "" {
		return control.ApplyResult{}, errNoConfig
	}
	f, err := config.Load(d.configPath)
	if err != nil {
		return control.ApplyResult{}, err
	}
	if f.Listen != d.cfg.Listen || f.Admin.Listen != d.cfg.Admin.Listen || f.State.Path != d.cfg.State.Path {
		d.log.Warn("listen addresses and state path change only on restart")
	}
	if f.TokenPath() != d.tokens.adminPath || f.Admin.ReadOnlyTokenFile != d.tokens.readOnlyPath || f.Admin.TokenOverlap != d.cfg.Admin.TokenOverlap {
		d.log.Warn("admin.token_file, admin.read_only_token_file and admin.token_overlap change only on restart; the files named at start were re-read")
	}
	if f.Logging != d.cfg.Logging {
		d.log.Warn("logging (format, level, access_log) changes only on restart")
	}
	// The listeners' certificates are read first and swapped in only once
	// the spec applied: a reload is taken whole or not at all.
	var commits []func()
	for _, l := range []struct {
		field       string
		s           *tlsconf.Server
		old, want   config.TLS
		description string
	}{{"tls", d.proxyTLS, d.cfg.TLS, f.TLS, "data plane"}, {"admin.tls", d.adminTLS, d.cfg.Admin.TLS, f.Admin.TLS, "admin"}} {
		if l.s == nil || !l.want.Enabled() {
			if l.s != nil || l.want.Enabled() {
				d.log.Warn("TLS is turned on or off only on restart", "listener", l.description)
			}
			continue
		}
		commit, err := l.s.Prepare(l.want.Files())
		if err != nil {
			return control.ApplyResult{}, fmt.Errorf("%w; the %s keeps its certificate (docs/security.md, \"TLS\")", err, l.description)
		}
		s, desc := l.s, l.description
		commits = append(commits, func() {
			if commit() {
				d.log.Info("TLS certificate reloaded", "listener", desc, "subject", s.Subject(), "not_after", s.NotAfter().UTC().Format(time.RFC3339))
			}
		})
	}
	res, err := d.control.ApplyFile(ctx, f, false, d.actor("reload"))
	if err != nil {
		return res, err
	}
	for _, c := range commits {
		c()
	}
	return res, nil
}

// errNoConfig is Reload's answer when the daemon runs without a config
// file: the token files were re-read, nothing else was.
var errNoConfig = errors.New("no config file to reload (the token files were re-read)")

// Run starts the daemon and serves until ctx ends or a listener fails,
// reloading the config on SIGHUP, then shuts down gracefully.
func (d *Daemon) Run(ctx context.Context) error {
	// SIGHUP is always caught, and before the daemon says it serves (a
	// reload sent right after that must not kill it); without a config file
	// it is logged, not fatal.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := d.Start(); err != nil {
		d.abandon()
		return err
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-d.serveErr:
			runErr = err
			break loop
		case <-hup:
			res, err := d.Reload(ctx)
			if errors.Is(err, errNoConfig) {
				d.log.Info("SIGHUP: token files re-read; there is no config file to reload")
				continue
			}
			if err != nil {
				d.log.Error("reload refused, nothing changed", "config", d.configPath, "problems", problemList(err))
				continue
			}
			logApply(d.log, "config reloaded", res)
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := d.Shutdown(sctx); err != nil && runErr == nil {
		runErr = err
	}
	return runErr
}

func problemList(err error) []string {
	var out []string
	for _, p := range spec.Problems(err) {
		pp := p
		out = append(out, pp.Error())
	}
	return out
}

// Shutdown stops accepting, drains in-flight requests until ctx ends and
// closes the state.
func (d *Daemon) Shutdown(ctx context.Context) error {
	var errs []error
	if d.proxyLn != nil {
		// Writers of state stop first (rollout controller, webhooks, admin
		// API), so that nothing commits while the data plane drains.
		d.background()
		d.bgWG.Wait()
		if err := d.admin.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop admin: %w", err))
		}
		if err := d.proxy.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("drain data plane: %w", err))
		}
		d.wg.Wait()
	} else if err := d.proxy.Shutdown(ctx); err != nil {
		// Never started: the data plane's event loops and health checkers
		// have run since New all the same.
		errs = append(errs, fmt.Errorf("stop data plane: %w", err))
	}
	if err := d.access.close(); err != nil {
		errs = append(errs, fmt.Errorf("close access log: %w", err))
	}
	d.shadows.Close()
	if d.peerClient != nil {
		d.peerClient.Close()
	}
	if err := d.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close state: %w", err))
	}
	d.log.Info("modelgate stopped")
	return errors.Join(errs...)
}

// applyAttempts bounds how often a start applies its config again after
// another gateway's change got in first.
const applyAttempts = 5

// applyConfig applies the config file's endpoints at start. The replicas
// of a fleet started together all apply the same file to the same state:
// one's commit makes the others' guards fail, so each of them reads the
// state again and applies on top of it (then usually nothing is left to
// change), instead of exiting.
func (d *Daemon) applyConfig(ctx context.Context) (control.ApplyResult, error) {
	_, shared := d.store.(*etcd.Store)
	res, err := d.control.ApplyFile(ctx, d.cfg, false, d.actor("config"))
	for i := 1; i < applyAttempts && errors.Is(err, store.ErrConflict) && shared; i++ {
		if rerr := d.control.Refresh(ctx); rerr != nil {
			return res, errors.Join(err, rerr)
		}
		res, err = d.control.ApplyFile(ctx, d.cfg, false, d.actor("config"))
	}
	return res, err
}

// routes hands every committed set of endpoints to the shadow workers and
// then to the data plane. The shadows go first so that a copy never finds
// its shadow deployment unknown; a copy for a shadow already removed is
// dropped and counted.
type routes struct {
	shadows *shadow.Manager
	proxy   *proxy.Server
}

func (r routes) SetRoutes(eps []spec.Endpoint) error {
	if err := r.shadows.SetShadows(eps); err != nil {
		return fmt.Errorf("configure shadows: %w", err)
	}
	return r.proxy.SetRoutes(eps)
}

// shadowCounts adapts the shadow manager to the rollout controller.
type shadowCounts struct{ m *shadow.Manager }

func (s shadowCounts) Counts(endpoint, deployment string, since, now time.Time) analysis.ShadowCounts {
	c := s.m.Counts(endpoint, deployment, since)
	return analysis.ShadowCounts{Compared: c.Compared, Matched: c.Matched, Errors: c.Errors}
}

// startProcs is GOMAXPROCS as the runtime chose it (the CPUs, or the
// container's CPU limit).
var startProcs = runtime.GOMAXPROCS(0)

// reserveLoopProcs returns how many event loops the proxy runs (one per
// CPU) and, unless GOMAXPROCS was set explicitly, doubles the Ps. A loop
// holds its P while it runs and while it waits in epoll_wait; without Ps to
// spare, the runtime's monitor would take a waiting loop's P away every
// 20 µs to run other goroutines (shadow copies, telemetry, the admin
// API), at a cost of about a tenth of the gateway's CPU under load.
func reserveLoopProcs() int {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2*startProcs {
		runtime.GOMAXPROCS(2 * startProcs)
	}
	return startProcs
}
