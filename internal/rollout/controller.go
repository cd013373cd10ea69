package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/control"
	"github.com/modelgate/modelgate/internal/estimate"
	"github.com/modelgate/modelgate/internal/fleet"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/store"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// PersistEvery bounds how much gate evidence a crash can lose: the
// rollout, with its analysis state, is written at least this often.
const PersistEvery = 5 * time.Second

// EndpointState is what the controller needs from the control service.
type EndpointState interface {
	Endpoint(ctx context.Context, name string) (spec.Endpoint, error)
	CommitRollout(ctx context.Context, c control.RolloutChange) (spec.Endpoint, []store.Event, error)
}

// ShadowSource reports shadow comparison counts of a deployment since a
// time (the shadow report's windows). Nil in Options: no shadow data.
type ShadowSource interface {
	Counts(endpoint, deployment string, since, now time.Time) analysis.ShadowCounts
}

// Connections opens connections to a deployment's backends ahead of its
// live traffic (proxy.Server.Preconnect). Nil in Options: none are.
type Connections interface {
	Preconnect(ctx context.Context, endpoint, deployment string) int
}

// Health tells whether a deployment's backends may take requests
// (proxy.Server's health, read by the daemon). Nil in Options: a canary
// is never refused for its health.
type Health interface {
	// NoHealthyBackend says why none of the deployment's backends may take
	// a request (each backend and its last error), or "" when one may.
	NoHealthyBackend(endpoint, deployment string) string
}

// preconnectWait bounds how long the first live stage waits for the
// canary's connections to open (the controller's lock is held meanwhile).
const preconnectWait = time.Second

// Notifier delivers rollout events to webhooks and asks the
// confirm-promotion webhook.
type Notifier interface {
	Send(hooks []spec.Webhook, e store.Event) bool
	Confirm(ctx context.Context, hook spec.Webhook, payload any) error
}

// Options configures a Controller.
type Options struct {
	Store     store.Store
	Endpoints EndpointState
	Telemetry *telemetry.Registry
	Shadow    ShadowSource
	// Connections, when set, opens connections to the canary's backends
	// before its first live stage: its first requests then pay for no
	// connection setup, which the stable's never do.
	Connections Connections
	// Health, when set, makes Start refuse a canary with no healthy
	// backend (unless StartRequest.Force) and a rollback name that cause
	// first.
	Health   Health
	Notifier Notifier
	Logger   *slog.Logger
	// Now is the clock. Nil: time.Now.
	Now func() time.Time
	// Interval between looks at every rollout. Zero: 1s.
	Interval time.Duration
	// LookEvery makes Run look at a live rollout as soon as its canary has
	// served this many more requests, so that the requests a bad canary
	// serves before it is rolled back do not grow with the load. Zero:
	// DefaultLookEvery.
	LookEvery uint64
	// MinLookGap bounds how often those looks come: at most one per gap
	// (every rollout looked at together). Zero: DefaultMinLookGap.
	MinLookGap time.Duration
	// SkipEstimate starts rollouts without their estimate (tens of
	// milliseconds each): for tools that start thousands of them to
	// measure the decisions (bench/stats).
	SkipEstimate bool
	// Elected makes the controller drive rollouts only during the terms
	// Lead runs, for a fleet of gateways sharing one state (cluster mode):
	// outside them, Start and Act fail with a *NotLeaderError. False: it
	// always leads (one gateway).
	Elected bool
	// Leader names the fleet's leader in a NotLeaderError (its admin URL).
	// Nil: unnamed.
	Leader func(ctx context.Context) (string, error)
	// Sync brings the endpoints up to date with the store before a start
	// reads one (cluster mode: a change made through another replica a
	// moment ago may not have reached this one yet, and a start must see
	// it). Nil: the endpoints are always current (one gateway).
	Sync func(ctx context.Context) error
	// Fleet gathers what the fleet's other gateways served for the
	// rollouts this one leads (cluster mode): the analysis judges every
	// replica's requests. Nil: this gateway's alone.
	Fleet *fleet.Gatherer
	// Recent is the endpoint's deployments' traffic over the last window
	// on every replica (cluster mode), for a new rollout's estimate. Nil:
	// this gateway's own.
	Recent func(ctx context.Context, endpoint string, window time.Duration) map[string]telemetry.Summary
}

// ErrNotLeader is what a *NotLeaderError is (errors.Is).
var ErrNotLeader = errors.New("this gateway does not lead the fleet's rollouts")

// NotLeaderError is a rollout start or action sent to a gateway that does
// not lead the fleet's rollouts (cluster mode): it names the one that does.
type NotLeaderError struct {
	// Leader is the leading gateway's admin URL; "" when none leads now
	// (an election is under way).
	Leader string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == "" {
		return ErrNotLeader.Error() + ", and no gateway leads them right now (an election is under way): try again in a few seconds"
	}
	return ErrNotLeader.Error() + ": send it to the leader, " + e.Leader
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }

// Defaults of Options.LookEvery and MinLookGap: a look every 10 canary
// requests, at most one every 5 ms (200 a second, each about 100 µs per
// rollout; see docs/rollouts.md for what they bound).
const (
	DefaultLookEvery  = 10
	DefaultMinLookGap = 5 * time.Millisecond
)

// Controller runs every endpoint's rollout: it looks once per Interval,
// every LookEvery canary requests, and at once on a manual action.
type Controller struct {
	opts Options
	log  *slog.Logger
	now  func() time.Time
	// moved receives the canaries' signals: a live canary served
	// LookEvery more requests.
	moved chan struct{}

	mu   sync.Mutex
	runs map[string]*run // endpoint → its active rollout

	// calls are the confirm-promotion calls in flight; Run waits for them.
	// stopped (under mu) refuses new ones once Run is ending.
	calls       sync.WaitGroup
	callsCtx    context.Context
	cancelCalls context.CancelFunc
	stopped     bool
	// leading (under mu) is whether Start and Act may write: always
	// without Options.Elected, else during a Lead term, whose fence every
	// write then carries.
	leading bool
	fence   *store.Fence
}

// run is an active rollout with what lives beside its record.
type run struct {
	r           Rollout
	key         string
	analyzer    *analysis.Analyzer
	lastPersist time.Time
	confirm     *confirmation
	// window is the stage-to-date telemetry of both deployments, grown by
	// the slices each look hands the analyzer, so that a look reads what
	// is new instead of merging the whole stage (an hour is 600 slices of
	// both deployments).
	window analysis.Window
	// stable and canary follow both deployments' telemetry from the
	// rollout's start (or the analysis' last slice): each look reads what
	// they served since the last one, to the current instant.
	stable, canary *telemetry.Tail
	// canaryRec is the recorder the signal is set on (kept: asking the
	// registry again would create one for a removed deployment).
	canaryRec *telemetry.Recorder
	// requestsOffset is what the stage's canary had served beyond what
	// telemetry still held when the run was loaded (it keeps an hour):
	// min_requests and the deadline in requests count the whole stage.
	requestsOffset uint64
	// signal is raised every LookEvery canary requests; lookedAt is its
	// count at the last look.
	signal   *telemetry.Signal
	lookedAt uint64
	// fleet gathers the other replicas' parts (Options.Fleet); coverage
	// is whose evidence the last look used.
	fleet    *fleet.Run
	coverage *fleet.Coverage
	// failedAt is when a look last failed (the store down, a commit
	// refused): LookMoved leaves the run to the once-a-second looks until
	// a second has passed, so that a failure is not retried 200 times a
	// second.
	failedAt time.Time
}

// confirmation is the state of an asynchronous confirm-promotion call.
type confirmation struct {
	mu       sync.Mutex
	asked    time.Time
	inFlight bool
	ok       bool
	lastErr  string
}

// StartRequest is api.StartRequest, the wire form.
type StartRequest = api.StartRequest

// New builds a Controller; Run loads the active rollouts and drives them.
func New(opts Options) *Controller {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Interval == 0 {
		opts.Interval = time.Second
	}
	if opts.LookEvery == 0 {
		opts.LookEvery = DefaultLookEvery
	}
	if opts.MinLookGap == 0 {
		opts.MinLookGap = DefaultMinLookGap
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Controller{opts: opts, log: log, now: opts.Now, runs: map[string]*run{}, moved: make(chan struct{}, 1), leading: !opts.Elected}
	c.callsCtx, c.cancelCalls = context.WithCancel(context.Background())
	return c
}

const keyPrefix = "rollouts/"

func rolloutKey(endpoint string, n int) string {
	return fmt.Sprintf("%s%s/%010d", keyPrefix, endpoint, n)
}

// Lead drives the fleet's rollouts for one term of leadership (cluster
// mode, Options.Elected): it loads the active rollouts from their stored
// state, so that a new leader continues each where the last one persisted
// it, and runs them until ctx ends with the term. Every write of the term
// is fenced: once another gateway may lead, it fails and changes nothing.
func (c *Controller) Lead(ctx context.Context, fence store.Fence) error {
	ctx = store.Fenced(ctx, fence)
	c.mu.Lock()
	c.runs = map[string]*run{}
	c.stopped = false
	c.callsCtx, c.cancelCalls = context.WithCancel(context.Background())
	c.fence, c.leading = &fence, true
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.fence, c.leading = nil, false
		for _, ru := range c.runs {
			c.forget(ru) // the next leader follows the canaries
		}
		c.runs = map[string]*run{}
		c.stopped = true
		c.mu.Unlock()
		c.cancelCalls()
		c.calls.Wait()
	}()
	c.log.Info("leading the fleet's rollouts")
	defer c.log.Info("no longer leading the fleet's rollouts")
	if err := c.Load(ctx); err != nil {
		return err
	}
	c.Run(ctx)
	return nil
}

// mayWrite is ctx with the term's fence when the controller leads, else
// an empty *NotLeaderError (see nameLeader). Caller holds mu.
func (c *Controller) mayWrite(ctx context.Context) (context.Context, error) {
	if !c.leading {
		return ctx, &NotLeaderError{}
	}
	if c.fence != nil {
		ctx = store.Fenced(ctx, *c.fence)
	}
	return ctx, nil
}

// nameLeader fills in the leader of a *NotLeaderError: called without mu
// held, since asking etcd may take up to its timeout.
func (c *Controller) nameLeader(ctx context.Context, err error) error {
	var nl *NotLeaderError
	if errors.As(err, &nl) && nl.Leader == "" && c.opts.Leader != nil {
		nl.Leader, _ = c.opts.Leader(ctx)
	}
	return err
}

// Load reads the active rollouts from the store; a restart resumes them.
func (c *Controller) Load(ctx context.Context) error {
	kvs, err := c.opts.Store.List(ctx, keyPrefix)
	if err != nil {
		return fmt.Errorf("load rollouts: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, kv := range kvs {
		var r Rollout
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			return fmt.Errorf("load rollout %q: %w", kv.Key, err)
		}
		if r.Phase.Terminal() {
			delete(c.runs, r.Endpoint) // a later record ended it
			continue
		}
		ru, err := c.resumeRun(kv.Key, r)
		if err != nil {
			return err
		}
		c.runs[r.Endpoint] = ru
		c.log.Info("rollout resumed", "endpoint", r.Endpoint, "id", r.ID, "phase", r.Phase, "stage", r.Stage, "baked", r.Baked)
	}
	for _, ru := range c.runs {
		c.follow(ru, false)
	}
	return nil
}

// resumeRun is the run of the stored, running rollout r at key: its
// analysis restored from the state saved with it, its stage's telemetry
// read again.
func (c *Controller) resumeRun(key string, r Rollout) (*run, error) {
	ru := &run{r: r, key: key, confirm: &confirmation{}}
	var err error
	if ru.analyzer, err = c.restoreAnalyzer(r); err != nil {
		return nil, err
	}
	ru.analyzer.SetNames(analysis.Names{Stable: r.Stable, Canary: r.Canary})
	ru.window = c.stageWindow(r, c.now())
	if got := ru.window.Canary.SplitRequests(); r.StageRequests > got {
		ru.requestsOffset = r.StageRequests - got
	}
	return ru, nil
}

// reread takes ru's stored record after a commit that failed in a way that
// may still have applied it (etcd answering after the call's deadline):
// when the record is in another phase or stage than was (the state before
// the transition), the transition was made, and the run continues from
// the record instead of making it again. Caller holds mu.
func (c *Controller) reread(ctx context.Context, ru *run, was Rollout) {
	kv, err := c.opts.Store.Get(ctx, ru.key)
	if err != nil {
		return // the next look tries again from was
	}
	// Every transition is written when made, so a record in another phase
	// or stage than was holds the transition that failed to answer.
	var stored Rollout
	if json.Unmarshal(kv.Value, &stored) != nil || stored.ID != was.ID || (stored.Phase == was.Phase && stored.Stage == was.Stage) {
		return // not applied (or only a periodic save, which the next one repeats)
	}
	c.log.Warn("a rollout write reported failed had been applied: continuing from the stored record", "endpoint", stored.Endpoint, "id", stored.ID, "phase", stored.Phase, "stage", stored.Stage)
	c.forget(ru)
	if stored.Phase.Terminal() {
		return
	}
	nru, err := c.resumeRun(ru.key, stored)
	if err != nil {
		c.log.Error("resume the stored rollout", "id", stored.ID, "err", err)
		return
	}
	c.runs[stored.Endpoint] = nru
	c.follow(nru, false)
}

// follow starts reading a run's telemetry, and sets the canary's signal. A
// rollout that starts now is read from this instant: the requests of the
// second before it may be a rollout just ended (of the same canary, at
// another weight). One loaded from the store goes on from the second after
// the analysis' last slice, or the one in which it started (telemetry
// keeps 1-s slices for 10 minutes).
func (c *Controller) follow(ru *run, startsNow bool) {
	r := ru.r
	stable, canary := c.opts.Telemetry.Recorder(r.Endpoint, r.Stable), c.opts.Telemetry.Recorder(r.Endpoint, r.Canary)
	if startsNow {
		now := c.now()
		ru.stable, ru.canary = stable.TailFrom(now), canary.TailFrom(now)
	} else {
		from := r.StartedAt
		if st := ru.analyzer.State(); st.LastSlice != nil {
			from = later(from, st.LastSlice.Add(time.Second))
		}
		ru.stable, ru.canary = stable.Tail(from), canary.Tail(from)
	}
	ru.signal, ru.canaryRec = telemetry.NewSignal(c.opts.LookEvery, c.moved), canary
	canary.SetSignal(ru.signal)
	if c.opts.Fleet != nil {
		spec := fleet.RunSpec{Endpoint: r.Endpoint, Stable: r.Stable, Canary: r.Canary, From: c.now(), FromNow: true}
		if !startsNow {
			spec.From, spec.FromNow = r.StartedAt, false
			if st := ru.analyzer.State(); st.LastSlice != nil {
				spec.From = later(spec.From, st.LastSlice.Add(time.Second))
			}
		}
		ru.fleet = c.opts.Fleet.Follow(spec, c.wake)
		ru.fleet.SetStage(r.StageStarted, c.judgesShadows(r))
	}
}

// wake makes Run look at the rollouts whose evidence moved (another
// replica's canary requests arrived) without waiting for the next tick.
func (c *Controller) wake() {
	select {
	case c.moved <- struct{}{}:
	default:
	}
}

// judgesShadows reports whether r's current phase reads shadow counts.
func (c *Controller) judgesShadows(r Rollout) bool {
	return r.Phase == PhaseShadow || r.Plan.Shadow != nil && r.Plan.Shadow.KeepMirror || hasMatchGate(r.Plan)
}

// forget ends a run that has ended: its canary's signal is cleared.
func (c *Controller) forget(ru *run) {
	if ru.signal != nil {
		ru.canaryRec.ClearSignal(ru.signal)
	}
	if ru.fleet != nil {
		ru.fleet.Close()
	}
	if c.runs[ru.r.Endpoint] == ru {
		delete(c.runs, ru.r.Endpoint)
	}
}

// restoreAnalyzer rebuilds a loaded rollout's analysis. A state saved by a
// modelgate with another analysis layout cannot be carried over: its tests
// start again from now (logged), in the stage the rollout is in.
func (c *Controller) restoreAnalyzer(r Rollout) (*analysis.Analyzer, error) {
	if r.Analysis == nil {
		return analysis.New(r.Plan)
	}
	a, err := analysis.Restore(r.Plan, *r.Analysis)
	if errors.Is(err, analysis.ErrStateVersion) {
		c.log.Warn("rollout analysis restarts: its saved state is of another version", "endpoint", r.Endpoint, "id", r.ID, "err", err)
		if a, err = analysis.New(r.Plan); err != nil {
			return nil, fmt.Errorf("restart analysis of rollout %s: %w", r.ID, err)
		}
		if r.Phase == PhaseProgressing || r.Phase == PhasePaused && r.PausedFrom == PhaseProgressing {
			now := c.now()
			a.StartStage(now, r.Weight, c.opts.Telemetry.Recorder(r.Endpoint, r.Stable).Window(now, time.Minute))
		}
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("restore analysis of rollout %s: %w", r.ID, err)
	}
	return a, nil
}

// Run looks at every active rollout each Interval, and at a live one as
// soon as its canary has served LookEvery more requests (at most once per
// MinLookGap), until ctx ends; then it waits for the confirm-promotion
// calls it started.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	gap := time.NewTimer(0)
	defer gap.Stop()
	for {
		select {
		case <-ctx.Done():
			c.mu.Lock()
			c.stopped = true
			c.mu.Unlock()
			c.cancelCalls()
			c.calls.Wait()
			return
		case <-t.C:
			c.Look(ctx)
		case <-c.moved:
			c.LookMoved(ctx)
			// The signals that come meanwhile wait in moved (one is
			// enough): the next look reads everything.
			gap.Reset(c.opts.MinLookGap)
			select {
			case <-gap.C:
			case <-ctx.Done():
			}
		}
	}
}

// Moved receives a value when a live canary has served LookEvery more
// requests; Run then calls LookMoved. Tools that drive the controller on
// their own clock (bench/stats) do the same.
func (c *Controller) Moved() <-chan struct{} { return c.moved }

// LookMoved looks at the rollouts whose canary served requests since
// their last look.
func (c *Controller) LookMoved(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.sortedRuns() {
		ru := c.runs[name]
		moved := ru.signal != nil && ru.signal.Count() != ru.lookedAt || ru.fleet != nil && ru.fleet.Moved()
		if !moved || c.now().Sub(ru.failedAt) < time.Second {
			continue
		}
		if _, err := c.step(ctx, ru, ""); err != nil {
			ru.failedAt = c.now()
			c.log.Error("rollout step", "endpoint", name, "err", err)
		}
	}
}

func (c *Controller) sortedRuns() []string {
	names := make([]string, 0, len(c.runs))
	for name := range c.runs {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// Look looks at every active rollout once, as Run does every Interval.
// Tools that drive the controller on their own clock (bench/stats) call it
// instead of Run.
func (c *Controller) Look(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.sortedRuns() {
		if _, err := c.step(ctx, c.runs[name], ""); err != nil {
			c.log.Error("rollout step", "endpoint", name, "err", err)
		}
	}
}

// Start begins a rollout on endpoint. Its estimate (simulated rollouts,
// tens of milliseconds) is made without the controller's lock, so that the
// running rollouts are looked at meanwhile.
func (c *Controller) Start(ctx context.Context, endpoint string, req StartRequest) (Rollout, error) {
	c.mu.Lock()
	ctx, err := c.mayWrite(ctx)
	if err != nil {
		c.mu.Unlock()
		return Rollout{}, c.nameLeader(ctx, err)
	}
	ep, r, err := c.prepare(ctx, endpoint, req)
	c.mu.Unlock()
	if err != nil {
		return Rollout{}, err
	}
	r.Estimate = c.estimate(ctx, r, ep, r.StartedAt)
	c.mu.Lock()
	defer c.mu.Unlock()
	if ctx, err = c.mayWrite(ctx); err != nil { // the term ended meanwhile
		return Rollout{}, err // unnamed: mu is held (the client asks again)
	}
	if ru, running := c.runs[endpoint]; running { // started meanwhile
		return Rollout{}, busy(endpoint, ru)
	}
	return c.begin(ctx, ep, r)
}

// busy is the error of a start on an endpoint whose rollout ru runs.
func busy(endpoint string, ru *run) error {
	return fmt.Errorf("endpoint %q already has rollout %s (%s); abort it first: %w", endpoint, ru.r.ID, ru.r.Phase, store.ErrConflict)
}

// currentEndpoint reads endpoint for a start, as the store holds it now.
func (c *Controller) currentEndpoint(ctx context.Context, endpoint string) (spec.Endpoint, error) {
	if c.opts.Sync != nil {
		if err := c.opts.Sync(ctx); err != nil {
			return spec.Endpoint{}, fmt.Errorf("read the endpoints' state before starting: %w", err)
		}
	}
	return c.opts.Endpoints.Endpoint(ctx, endpoint)
}

// prepare checks that endpoint can start req and builds its rollout.
// Caller holds mu.
func (c *Controller) prepare(ctx context.Context, endpoint string, req StartRequest) (spec.Endpoint, Rollout, error) {
	if ru, running := c.runs[endpoint]; running {
		return spec.Endpoint{}, Rollout{}, busy(endpoint, ru)
	}
	ep, err := c.currentEndpoint(ctx, endpoint)
	if err != nil {
		return spec.Endpoint{}, Rollout{}, err
	}
	r, err := c.newRollout(ctx, ep, req)
	return ep, r, err
}

func (c *Controller) newRollout(ctx context.Context, ep spec.Endpoint, req StartRequest) (Rollout, error) {
	var errs []error
	if req.Canary == "" {
		errs = append(errs, spec.Problemf("canary", "is required: the deployment to roll out"))
	} else if _, _, ok := ep.Deployment(req.Canary); !ok {
		errs = append(errs, spec.UnknownDeployment("canary", ep, req.Canary))
	}
	plan := mergePlan(ep.Rollout, req.Plan)
	if err := plan.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Rollout{}, err
	}
	stable := req.Stable
	if stable == "" {
		for name, w := range ep.Traffic {
			if w == spec.Full {
				stable = name
			}
		}
		if stable == "" {
			return Rollout{}, fmt.Errorf("no deployment of %q holds all live traffic (traffic is %s): name the stable with \"stable\", or set traffic to 100%% on one deployment first: %w",
				ep.Name, control.FormatWeights(ep, ep.Traffic), store.ErrConflict)
		}
	} else if _, _, ok := ep.Deployment(stable); !ok {
		return Rollout{}, spec.UnknownDeployment("stable", ep, stable)
	}
	if stable == req.Canary {
		return Rollout{}, fmt.Errorf("%q already holds all traffic of %q: nothing to roll out: %w", stable, ep.Name, store.ErrConflict)
	}
	for name, w := range ep.Traffic {
		if name != stable && name != req.Canary && w > 0 {
			return Rollout{}, fmt.Errorf("deployment %q also has %s%% of traffic; a rollout moves traffic between two deployments only: %w", name, w, store.ErrConflict)
		}
	}
	if c.opts.Health != nil && !req.Force {
		if why := c.opts.Health.NoHealthyBackend(ep.Name, req.Canary); why != "" {
			return Rollout{}, fmt.Errorf("canary %q of %q has no healthy backend: %s; every canary request would be answered 503 — fix or replace its backends (modelgate health %s shows them), or start anyway with --force (\"force\": true): %w",
				req.Canary, ep.Name, why, ep.Name, store.ErrConflict)
		}
	}
	n, err := c.nextNumber(ctx, ep.Name)
	if err != nil {
		return Rollout{}, err
	}
	plan = plan.WithDefaults()
	now := c.now()
	r := Rollout{Rollout: api.Rollout{
		ID: fmt.Sprintf("%s-%d", ep.Name, n), Endpoint: ep.Name, Stable: stable, Canary: req.Canary, Plan: plan,
		Stage: ShadowStage, StageStarted: now, DeadlineFrom: now, LastLook: now, StartedAt: now, UpdatedAt: now,
		MirrorBefore: ep.Mirror[req.Canary],
	}}
	return r, nil
}

// estimate says how long r will take at the endpoint's traffic of the last
// minute (the stable's error rate over the last ten, where a minute holds
// too few errors to tell), or nil with the reason logged.
func (c *Controller) estimate(ctx context.Context, r Rollout, ep spec.Endpoint, now time.Time) *estimate.Estimate {
	if c.opts.SkipEstimate {
		return nil
	}
	minute, ten := c.recent(ctx, ep, now, time.Minute), c.recent(ctx, ep, now, 10*time.Minute)
	t := estimate.FromSummary(minute[r.Stable])
	t.RequestsPerSecond = splitRate(minute, ep, r.Stable, time.Minute)
	// Traffic that started (or rose) within the minute is the rate from
	// now on: the minute's average would make the estimate too long and
	// warn of deadlines for nothing.
	var rose bool
	if fast := splitRate(c.recent(ctx, ep, now, RecentRateWindow), ep, r.Stable, RecentRateWindow); fast > 2*t.RequestsPerSecond {
		t.RequestsPerSecond, rose = fast, true
	}
	if long := ten[r.Stable]; long.SplitRequests() > 0 {
		t.ErrorRate = float64(long.SplitErrors) / float64(long.SplitRequests())
	}
	t.Mirror = ep.Mirror[r.Canary]
	if sh := r.Plan.Shadow; sh != nil && sh.KeepMirror {
		t.Mirror = sh.Mirror
	}
	e, err := estimate.Rollout(r.Plan, t, estimate.Options{})
	if err != nil {
		c.log.Warn("rollout estimate", "endpoint", r.Endpoint, "err", err)
		return nil
	}
	if rose {
		e.Notes = append(e.Notes, fmt.Sprintf("the rate is the last %s's: the endpoint's traffic rose within the last minute", api.FormatWindow(RecentRateWindow)))
	}
	return &e
}

// RecentRateWindow is the recent past a rollout's estimate takes the rate
// from when it is more than twice the last minute's.
const RecentRateWindow = 10 * time.Second

// splitRate is the split-routed requests per second, over window, of the
// stable and every deployment with traffic: all of them share the stages out.
func splitRate(s map[string]telemetry.Summary, ep spec.Endpoint, stable string, window time.Duration) float64 {
	n := s[stable].SplitRequests()
	for name := range ep.Traffic {
		if name != stable {
			n += s[name].SplitRequests()
		}
	}
	return float64(n) / window.Seconds()
}

// recent is the endpoint's deployments' traffic over the last window: the
// fleet's (Options.Recent), or this gateway's.
func (c *Controller) recent(ctx context.Context, ep spec.Endpoint, now time.Time, window time.Duration) map[string]telemetry.Summary {
	if c.opts.Recent != nil {
		return c.opts.Recent(ctx, ep.Name, window)
	}
	out := make(map[string]telemetry.Summary, len(ep.Deployments))
	for _, d := range ep.Deployments {
		if rc, ok := c.opts.Telemetry.Lookup(ep.Name, d.Name); ok { // none: nothing served
			out[d.Name] = rc.Window(now, window)
		}
	}
	return out
}

// mergePlan lays the request's plan fields over the endpoint's plan.
func mergePlan(base *spec.Plan, over spec.Plan) spec.Plan {
	p := base.Clone()
	if over.Shadow != nil {
		p.Shadow = over.Clone().Shadow
	}
	if len(over.Stages) > 0 {
		p.Stages = append([]spec.Stage(nil), over.Stages...)
	}
	if over.Bake != 0 {
		p.Bake = over.Bake
	}
	if over.MinRequests != 0 {
		p.MinRequests = over.MinRequests
	}
	if over.ProgressDeadline != 0 {
		p.ProgressDeadline = over.ProgressDeadline
	}
	if over.ProgressDeadlineRequests != 0 {
		p.ProgressDeadlineRequests = over.ProgressDeadlineRequests
	}
	if over.OnDeadline != "" {
		p.OnDeadline = over.OnDeadline
	}
	if over.Alpha != 0 {
		p.Alpha = over.Alpha
	}
	if over.PromotionError != 0 {
		p.PromotionError = over.PromotionError
	}
	if over.ErrorAllowance != 0 {
		p.ErrorAllowance = over.ErrorAllowance
	}
	if over.Latency != nil {
		p.Latency = over.Clone().Latency
	}
	if over.Warmup != nil {
		p.Warmup = over.Clone().Warmup
	}
	if len(over.Gates) > 0 {
		p.Gates = append([]spec.Gate(nil), over.Gates...)
	}
	if over.ConfirmPromotion != nil {
		p.ConfirmPromotion = over.Clone().ConfirmPromotion
	}
	if over.FinalBake != 0 {
		p.FinalBake = over.FinalBake
	}
	if over.Timeout != 0 {
		p.Timeout = over.Timeout
	}
	if over.OnTimeout != "" {
		p.OnTimeout = over.OnTimeout
	}
	return p
}

func (c *Controller) nextNumber(ctx context.Context, endpoint string) (int, error) {
	kvs, err := c.opts.Store.List(ctx, keyPrefix+endpoint+"/")
	if err != nil {
		return 0, fmt.Errorf("list rollouts: %w", err)
	}
	if len(kvs) == 0 {
		return 1, nil
	}
	last := kvs[len(kvs)-1].Key
	n, err := strconv.Atoi(last[strings.LastIndexByte(last, '/')+1:])
	if err != nil {
		return 0, fmt.Errorf("rollout key %q: %w", last, err)
	}
	return n + 1, nil
}

// begin persists a new rollout with its first routing change.
func (c *Controller) begin(ctx context.Context, ep spec.Endpoint, r Rollout) (Rollout, error) {
	a, err := analysis.New(r.Plan)
	if err != nil {
		return Rollout{}, err
	}
	a.SetNames(analysis.Names{Stable: r.Stable, Canary: r.Canary})
	n, _ := strconv.Atoi(r.ID[strings.LastIndexByte(r.ID, '-')+1:])
	ru := &run{r: r, key: rolloutKey(ep.Name, n), analyzer: a, confirm: &confirmation{}}
	msg := fmt.Sprintf("rollout %s started: %s → %s on %s, stages %s", r.ID, r.Stable, r.Canary, r.Endpoint, stagesText(r.Plan))
	data := map[string]any{"stable": r.Stable, "canary": r.Canary, "plan": r.Plan.Redacted()} // events are read by every token and sent to webhooks
	if e := r.Estimate; e != nil {
		msg += "; expected: " + e.Text
		for _, w := range e.Warnings {
			msg += "; warning: " + w
		}
		data["estimate"] = e
	}
	eff := Effect{Events: []Event{{Type: EventStarted, Message: msg, Data: data}}}
	if sh := r.Plan.Shadow; sh != nil {
		ru.r.Phase = PhaseShadow
		ru.r.Reason = fmt.Sprintf("shadow phase: %s%% of requests copied to %s and compared with %s", sh.Mirror, r.Canary, r.Stable)
		m := sh.Mirror
		eff.Mirror = &m
		// The shadow phase gives the canary no live traffic, whatever it
		// had when a stable was named.
		eff.Traffic = ru.r.Traffic(0)
	} else {
		var live Effect
		ru.r, live, _ = startLive(ru.r, Effect{}, r.StartedAt, "rollout started")
		eff.Traffic = live.Traffic
		eff2 := live
		eff.StartStage = true
		eff.Events = append(eff.Events, eff2.Events...)
	}
	if eff.StartStage {
		c.startStage(ctx, ru, ru.r, r.StartedAt)
	}
	c.follow(ru, true) // before the routing change: the canary's first requests count
	if err := c.apply(ctx, ru, eff, store.MustNotExist); err != nil {
		c.forget(ru)
		// A start reported failed may have been applied all the same
		// (etcd answering after the deadline): then it runs, from its
		// record, and a second start would be refused as busy.
		if kv, gerr := c.opts.Store.Get(ctx, ru.key); gerr == nil && !errors.Is(err, store.ErrConflict) {
			var stored Rollout
			if json.Unmarshal(kv.Value, &stored) == nil && stored.ID == r.ID && !stored.Phase.Terminal() {
				if nru, rerr := c.resumeRun(ru.key, stored); rerr == nil {
					c.log.Warn("a rollout start reported failed had been applied: it runs", "endpoint", stored.Endpoint, "id", stored.ID)
					c.runs[ep.Name] = nru
					c.follow(nru, false)
				}
			}
		}
		return Rollout{}, err
	}
	if eff.StartStage {
		ru.analyzer.RoutedAt(c.now()) // the split is live from here
	}
	c.runs[ep.Name] = ru
	return ru.r, nil
}

func stagesText(p spec.Plan) string {
	var parts []string
	if p.Shadow != nil {
		parts = append(parts, "shadow "+p.Shadow.Mirror.String()+"%")
	}
	for _, s := range p.Stages {
		parts = append(parts, s.Weight.String()+"%")
	}
	return strings.Join(parts, " → ")
}

// Act applies a manual action to the endpoint's rollout.
func (c *Controller) Act(ctx context.Context, endpoint string, a Action) (Rollout, error) {
	c.mu.Lock()
	ctx, err := c.mayWrite(ctx)
	if err != nil {
		c.mu.Unlock()
		return Rollout{}, c.nameLeader(ctx, err)
	}
	defer c.mu.Unlock()
	if a == ActionRetry || a == ActionUndo {
		last, err := c.last(ctx, endpoint)
		if err != nil {
			return Rollout{}, err
		}
		if a == ActionRetry {
			if last.Phase != PhaseAborted && last.Phase != PhaseRolledBack {
				return Rollout{}, fmt.Errorf("%w", storeConflict(&ErrAction{Action: a, Phase: last.Phase, Why: "retry starts again after an abort or a rollback"}))
			}
			ep, err := c.currentEndpoint(ctx, endpoint)
			if err != nil {
				return Rollout{}, err
			}
			r, err := c.newRollout(ctx, ep, StartRequest{Canary: last.Canary, Stable: last.Stable, Plan: last.Plan})
			if err != nil {
				return Rollout{}, err
			}
			r.Estimate = c.estimate(ctx, r, ep, r.StartedAt)
			return c.begin(ctx, ep, r)
		}
		if _, active := c.runs[endpoint]; active {
			return Rollout{}, storeConflict(&ErrAction{Action: a, Phase: c.runs[endpoint].r.Phase, Why: "a rollout is running; abort it instead"})
		}
		ru := &run{r: last, key: c.keyOf(last), confirm: &confirmation{}}
		next, eff, err := Next(last, Input{Now: c.now(), Action: a})
		if err != nil {
			return Rollout{}, storeConflict(err)
		}
		ru.r = next
		if err := c.apply(ctx, ru, eff, store.MustExist); err != nil {
			return Rollout{}, err
		}
		return ru.r, nil
	}
	ru, ok := c.runs[endpoint]
	if !ok {
		last, err := c.last(ctx, endpoint)
		if err != nil {
			return Rollout{}, err
		}
		return Rollout{}, storeConflict(&ErrAction{Action: a, Phase: last.Phase, Why: "the rollout has ended"})
	}
	return c.step(ctx, ru, a)
}

func storeConflict(err error) error { return fmt.Errorf("%w: %w", err, store.ErrConflict) }

func (c *Controller) keyOf(r Rollout) string {
	n, _ := strconv.Atoi(r.ID[strings.LastIndexByte(r.ID, '-')+1:])
	return rolloutKey(r.Endpoint, n)
}

// last returns the endpoint's newest rollout record.
func (c *Controller) last(ctx context.Context, endpoint string) (Rollout, error) {
	kvs, err := c.opts.Store.List(ctx, keyPrefix+endpoint+"/")
	if err != nil {
		return Rollout{}, err
	}
	if len(kvs) == 0 {
		return Rollout{}, fmt.Errorf("endpoint %q has no rollout: %w", endpoint, store.ErrNotFound)
	}
	var r Rollout
	if err := json.Unmarshal(kvs[len(kvs)-1].Value, &r); err != nil {
		return Rollout{}, err
	}
	return r, nil
}

// Current returns the endpoint's running rollout, or its last one.
func (c *Controller) Current(ctx context.Context, endpoint string) (Rollout, error) {
	c.mu.Lock()
	ru, ok := c.runs[endpoint]
	var r Rollout
	if ok {
		r = ru.r
	}
	c.mu.Unlock()
	if ok {
		return r, nil
	}
	if _, err := c.opts.Endpoints.Endpoint(ctx, endpoint); err != nil {
		return Rollout{}, err
	}
	return c.last(ctx, endpoint)
}

// History lists the endpoint's rollouts, newest first.
func (c *Controller) History(ctx context.Context, endpoint string) ([]Rollout, error) {
	if _, err := c.opts.Endpoints.Endpoint(ctx, endpoint); err != nil {
		return nil, err
	}
	kvs, err := c.opts.Store.List(ctx, keyPrefix+endpoint+"/")
	if err != nil {
		return nil, err
	}
	out := make([]Rollout, 0, len(kvs))
	for i := len(kvs) - 1; i >= 0; i-- {
		var r Rollout
		if err := json.Unmarshal(kvs[i].Value, &r); err != nil {
			return nil, err
		}
		r.Analysis, r.Estimate = nil, nil // the list stays small; GET .../rollout has both
		out = append(out, r)
	}
	return out, nil
}

// step looks at one rollout: gather inputs, Next, apply. Caller holds mu.
func (c *Controller) step(ctx context.Context, ru *run, a Action) (Rollout, error) {
	now := c.now()
	r := ru.r
	if ru.signal != nil {
		ru.lookedAt = ru.signal.Count()
	}
	ep, err := c.opts.Endpoints.Endpoint(ctx, r.Endpoint)
	if errors.Is(err, store.ErrNotFound) {
		return c.endpointGone(ctx, ru, now)
	}
	if err != nil {
		return r, err
	}
	for _, name := range []string{r.Stable, r.Canary} {
		if _, _, ok := ep.Deployment(name); !ok {
			return c.gone(ctx, ru, now, fmt.Sprintf("deployment %s was removed from the endpoint", name),
				fmt.Sprintf("deployment %s of %s was removed; %s", name, r.Endpoint, control.FormatWeights(ep, ep.Traffic)))
		}
	}
	in := Input{Now: now, Action: a}
	if want := r.Traffic(r.Weight); (r.Phase == PhaseProgressing || r.Phase == PhaseShadow || r.Phase == PhasePaused || r.Phase == PhaseFinalBake) && !ep.Traffic.Equal(want) {
		in.TrafficChanged = control.FormatWeights(ep, ep.Traffic)
	}
	switch {
	case r.Phase == PhaseShadow && a == "":
		counts := c.shadowCounts(ru, r, now)
		if ru.fleet != nil {
			// The live traffic of the shadow phase is the stable's alone:
			// the fleet's parts of it are not kept.
			ru.fleet.Merge(now, nil)
		}
		g := analysis.EvaluateShadow(*r.Plan.Shadow, counts, analysis.Names{Stable: r.Stable, Canary: r.Canary})
		in.ShadowGate = &g
	case r.Phase == PhaseProgressing, r.Phase == PhasePaused && r.PausedFrom == PhaseProgressing:
		// A paused live stage is judged as a running one (stepPaused):
		// the canary still serves, so it is still watched.
		ru.analyzer.SetPaused(r.Phase == PhasePaused)
		ru.analyzer.SetLook(now)
		c.observe(ru, r, now)
		w := c.window(ru, r, now)
		in.Result = ru.analyzer.Evaluate(r.Plan.Stages[min(r.Stage, len(r.Plan.Stages)-1)], w)
		in.CanaryRequests = w.Canary.SplitRequests() + ru.requestsOffset
		in.Coverage = ru.coverage
		if r.AwaitingConfirmation && r.Phase == PhaseProgressing {
			in.Confirmed = c.confirmed(ctx, ru)
		}
	case r.Phase == PhaseFinalBake, r.Phase == PhasePaused && r.PausedFrom == PhaseFinalBake:
		// Watched while paused too, as a paused stage is.
		ru.analyzer.SetLook(now)
		c.observe(ru, r, now)
		in.Result = ru.analyzer.EvaluateFinalBake(c.window(ru, r, now))
		in.CanaryRequests = ru.window.Canary.SplitRequests()
		in.Coverage = ru.coverage
	}
	if in.Result.Failed {
		in.NoHealthyBackend = c.noHealthyBackend(r, ru.window.Canary.SplitErrors)
	}
	next, eff, err := Next(r, in)
	if err != nil {
		return r, storeConflict(err)
	}
	if eff.StartStage {
		c.startStage(ctx, ru, next, now)
	}
	if eff.StartFinalBake {
		// The stage just left is the stable's last measurements.
		ru.analyzer.StartFinalBake(now, ru.analyzer.StageBaseline())
		ru.window = analysis.Window{}
	}
	if a == ActionResume {
		// The pause's slices were judged as they came, without the
		// sample-ratio check (the rollout-wide tests use each slice's
		// realised share, so a hand-set split is still fair to them); take
		// any since the last look, then restart the sample-ratio check,
		// which judges the stage's weight from now on.
		ru.analyzer.SetPaused(false)
		c.observe(ru, next, now)
		ru.analyzer.ResetSampleRatio()
	}
	if eff.AskConfirmation {
		c.askConfirmation(ru, next)
	}
	if ru.fleet != nil && !next.StageStarted.Equal(r.StageStarted) {
		ru.fleet.SetStage(next.StageStarted, c.judgesShadows(next))
	}
	changed := len(eff.Events) > 0 || eff.Traffic != nil || eff.Mirror != nil || next.Phase != r.Phase || next.Stage != r.Stage
	ru.r = next
	if !changed && now.Sub(ru.lastPersist) < PersistEvery {
		return ru.r, nil
	}
	if err := c.apply(ctx, ru, eff, store.NoGuard); err != nil {
		ru.r = r // nothing was written, as a rule: the next look tries again
		c.reread(ctx, ru, r)
		return r, err
	}
	if eff.StartStage {
		ru.analyzer.RoutedAt(c.now()) // the split is live from here
	}
	if ru.r.Phase.Terminal() {
		c.forget(ru)
	}
	return ru.r, nil
}

// startStage begins r's live stage, whose routing takes effect at now:
// before the first one, connections to the canary; then the analyzer's
// stage, with the stable's last minute for its thresholds, and an empty
// stage window.
func (c *Controller) startStage(ctx context.Context, ru *run, r Rollout, now time.Time) {
	if r.Stage == 0 {
		c.preconnect(ctx, r)
	}
	stableRecent := c.opts.Telemetry.Recorder(r.Endpoint, r.Stable).Window(now, time.Minute)
	ru.analyzer.StartStage(now, r.Weight, stableRecent)
	ru.window = analysis.Window{}
	ru.requestsOffset = 0
}

// noHealthyBackend says, when none of the canary's backends may take a
// request (Options.Health), that it had none and how many of its requests
// of the stage failed; "" otherwise.
func (c *Controller) noHealthyBackend(r Rollout, failed uint64) string {
	if c.opts.Health == nil {
		return ""
	}
	why := c.opts.Health.NoHealthyBackend(r.Endpoint, r.Canary)
	if why == "" {
		return ""
	}
	return fmt.Sprintf("%s had no healthy backend: %s requests answered 5xx (503 while none may take one; its backends: %s)", r.Canary, analysis.Count(int64(failed)), why)
}

// preconnect opens connections to the canary's backends before its first
// live stage takes traffic, waiting at most preconnectWait.
func (c *Controller) preconnect(ctx context.Context, r Rollout) {
	if c.opts.Connections == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, preconnectWait)
	defer cancel()
	n := c.opts.Connections.Preconnect(ctx, r.Endpoint, r.Canary)
	c.log.Debug("connections opened ahead of the first stage", "endpoint", r.Endpoint, "canary", r.Canary, "connections", n)
}

// endpointGone ends a rollout whose endpoint was removed (apply --prune):
// there is no traffic left to move, so it is recorded as aborted, with an
// event, instead of being looked at forever.
func (c *Controller) endpointGone(ctx context.Context, ru *run, now time.Time) (Rollout, error) {
	return c.gone(ctx, ru, now, "the endpoint was removed", fmt.Sprintf("endpoint %s was removed", ru.r.Endpoint))
}

// gone ends a rollout whose endpoint, stable or canary was removed: no
// routing change can be made for it (the one it would make names a
// deployment that no longer exists), so it is recorded as aborted, with an
// event, instead of failing at every look.
func (c *Controller) gone(ctx context.Context, ru *run, now time.Time, reason, what string) (Rollout, error) {
	r := ru.r
	r.Phase, r.Weight, r.Reason, r.FinishedAt, r.UpdatedAt = PhaseAborted, 0, reason, &now, now
	value, err := json.Marshal(r)
	if err != nil {
		return ru.r, fmt.Errorf("encode rollout: %w", err)
	}
	ev := store.Event{Endpoint: r.Endpoint, Type: EventAborted, Actor: "rollout",
		Message: fmt.Sprintf("rollout %s aborted: %s", r.ID, what)}
	if _, _, err := c.opts.Store.Commit(ctx, store.Txn{Ops: []store.Op{{Key: ru.key, Value: value}}, Events: []store.Event{ev}}); err != nil {
		return ru.r, fmt.Errorf("end rollout %s (%s): %w", r.ID, what, err)
	}
	c.forget(ru)
	ru.r = r
	return r, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// observe hands the analyzer what was served since the last look and adds
// what belongs to the current stage to the run's window.
func (c *Controller) observe(ru *run, r Rollout, now time.Time) {
	pairs := analysis.ReadPairs(ru.stable, ru.canary, now)
	if ru.fleet != nil {
		var cov fleet.Coverage
		pairs, cov = ru.fleet.Merge(now, pairs)
		ru.coverage = &cov
	}
	if err := ru.analyzer.Observe(pairs); err != nil {
		c.log.Warn("rollout analysis skipped slices", "endpoint", r.Endpoint, "err", err)
		return
	}
	// The slice in which the stage started counts whole: min_requests and
	// the threshold gates may see up to a second of the previous weight.
	from := r.StageStarted.Truncate(time.Second)
	for _, p := range pairs {
		if !p.Start.Before(from) {
			ru.window.Stable.AddSlice(p.Stable)
			ru.window.Canary.AddSlice(p.Canary)
		}
	}
}

// stageWindow reads the stage-to-date window from telemetry, for a run
// loaded from the store (telemetry keeps the last hour).
func (c *Controller) stageWindow(r Rollout, now time.Time) analysis.Window {
	d := now.Sub(r.StageStarted)
	d = min(max(d, time.Second), time.Hour)
	return analysis.Window{
		Stable: c.opts.Telemetry.Recorder(r.Endpoint, r.Stable).Window(now, d),
		Canary: c.opts.Telemetry.Recorder(r.Endpoint, r.Canary).Window(now, d),
	}
}

// window is the stage-to-date telemetry of both deployments, with the
// stage's shadow comparison when a gate or the plan needs it.
func (c *Controller) window(ru *run, r Rollout, now time.Time) analysis.Window {
	w := analysis.Window{Stable: ru.window.Stable, Canary: ru.window.Canary}
	if c.opts.Shadow != nil && (r.Plan.Shadow != nil && r.Plan.Shadow.KeepMirror || hasMatchGate(r.Plan)) {
		counts := c.shadowCounts(ru, r, now)
		w.Shadow = &counts
	}
	return w
}

// shadowCounts are the canary's shadow comparisons in the stage, on every
// replica of the fleet.
func (c *Controller) shadowCounts(ru *run, r Rollout, now time.Time) analysis.ShadowCounts {
	var counts analysis.ShadowCounts
	if c.opts.Shadow != nil {
		counts = c.opts.Shadow.Counts(r.Endpoint, r.Canary, r.StageStarted, now)
	}
	if ru.fleet != nil {
		ru.fleet.AddShadow(&counts)
	}
	return counts
}

func hasMatchGate(p spec.Plan) bool {
	for _, g := range p.Gates {
		if g.Type == spec.GateMatchRate {
			return true
		}
	}
	return false
}

// askConfirmation calls the confirm-promotion webhook in the background,
// at most once per PersistEvery. Caller holds c.mu.
func (c *Controller) askConfirmation(ru *run, r Rollout) {
	hook := r.Plan.ConfirmPromotion
	if hook == nil || c.opts.Notifier == nil {
		return
	}
	cf := ru.confirm
	cf.mu.Lock()
	defer cf.mu.Unlock()
	now := c.now()
	if c.stopped || cf.inFlight || cf.ok || now.Sub(cf.asked) < PersistEvery {
		return
	}
	cf.inFlight, cf.asked = true, now
	payload := map[string]any{"rollout": r.ID, "endpoint": r.Endpoint, "stable": r.Stable, "canary": r.Canary, "stage": r.Stage, "weight": r.Weight, "gates": r.Gates}
	c.calls.Add(1) // under c.mu, before Run's Wait (it sets stopped under c.mu first)
	go func() {
		defer c.calls.Done()
		ctx, cancel := context.WithTimeout(c.callsCtx, hook.Timeout.D()+time.Second)
		defer cancel()
		err := c.opts.Notifier.Confirm(ctx, *hook, payload)
		cf.mu.Lock()
		defer cf.mu.Unlock()
		cf.inFlight = false
		cf.ok = err == nil
		if err != nil {
			cf.lastErr = err.Error()
		}
	}()
}

func (c *Controller) confirmed(ctx context.Context, ru *run) bool {
	ru.confirm.mu.Lock()
	defer ru.confirm.mu.Unlock()
	return ru.confirm.ok
}

// apply persists the rollout with its routing change and events in one
// transaction, then notifies webhooks.
func (c *Controller) apply(ctx context.Context, ru *run, eff Effect, guard store.Guard) error {
	if ru.analyzer != nil { // nil for actions on an ended rollout (undo)
		st := ru.analyzer.State()
		ru.r.Analysis = &st
	}
	value, err := json.Marshal(ru.r)
	if err != nil {
		return fmt.Errorf("encode rollout: %w", err)
	}
	events := make([]store.Event, 0, len(eff.Events))
	for _, e := range eff.Events {
		data := map[string]any{"rollout": ru.r.ID, "phase": ru.r.Phase, "stage": ru.r.Stage, "weight": ru.r.Weight}
		if e.Data != nil {
			data["evidence"] = e.Data
		}
		raw, _ := json.Marshal(data)
		events = append(events, store.Event{Endpoint: ru.r.Endpoint, Type: e.Type, Actor: "rollout", Message: e.Message, Data: raw})
	}
	change := control.RolloutChange{
		Endpoint: ru.r.Endpoint, Traffic: eff.Traffic,
		Ops:    []store.Op{{Key: ru.key, Value: value, Guard: guard}},
		Events: events,
	}
	if eff.Mirror != nil {
		change.MirrorDeployment, change.Mirror = ru.r.Canary, eff.Mirror
	}
	ep, stored, err := c.opts.Endpoints.CommitRollout(ctx, change)
	if err != nil {
		return fmt.Errorf("commit rollout %s: %w", ru.r.ID, err)
	}
	ru.lastPersist = c.now()
	if c.opts.Notifier != nil && len(ep.Webhooks) > 0 {
		for _, e := range stored {
			c.opts.Notifier.Send(ep.Webhooks, e)
		}
	}
	return nil
}
