package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/api"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// Defaults of GatherOptions.
const (
	DefaultInterval = 250 * time.Millisecond
	DefaultGrace    = 2 * time.Second
)

// GatherOptions configure a Gatherer.
type GatherOptions struct {
	// Self is this gateway's replica id; Peers lists the fleet's gateways
	// (this one is skipped).
	Self   string
	Peers  func(ctx context.Context) ([]Peer, error)
	Client *Client
	// Ask, when set, pulls from a replica instead of Client (tools that
	// run replicas in one process on their own clock: bench/stats).
	Ask func(ctx context.Context, p Peer, req EvidenceRequest) (EvidenceAnswer, error)
	// Interval between pulls. Zero: DefaultInterval.
	Interval time.Duration
	// Grace is how long a replica may go without answering before the
	// seconds it has not reported are released without it. Zero:
	// DefaultGrace.
	Grace  time.Duration
	Now    func() time.Time // nil: time.Now
	Logger *slog.Logger     // nil: discarded
}

// Gatherer pulls, on the leader, every other replica's evidence for the
// rollouts it follows (see the package doc). Safe for concurrent use.
type Gatherer struct {
	opts GatherOptions
	log  *slog.Logger

	mu   sync.Mutex
	runs map[string]*Run
	// listed is the fleet's list at the last pull (others only), read at
	// listedAt; nil before the first.
	listed   []Peer
	listedAt time.Time
}

// NewGatherer returns a Gatherer; Run pulls until its context ends.
func NewGatherer(opts GatherOptions) *Gatherer {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Grace <= 0 {
		opts.Grace = DefaultGrace
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Ask == nil {
		c := opts.Client
		opts.Ask = func(ctx context.Context, p Peer, req EvidenceRequest) (EvidenceAnswer, error) {
			var ans EvidenceAnswer
			err := c.Call(ctx, p, http.MethodPost, "/api/v1/fleet/evidence", "", req, &ans)
			return ans, err
		}
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Gatherer{opts: opts, log: log, runs: map[string]*Run{}}
}

// RunSpec is a rollout to follow on every replica.
type RunSpec struct {
	Endpoint, Stable, Canary string
	// From is where its evidence starts: the second holding it, whole;
	// from the instant itself when FromNow (a rollout starting now).
	From    time.Time
	FromNow bool
}

// Run is one rollout's evidence from the fleet, as the leader gathers it.
type Run struct {
	g      *Gatherer
	key    string
	spec   RunSpec
	notify func()

	// Under g.mu.
	peers map[string]*peerState
	// known is set once the fleet's list has been read for the run:
	// until then (at most Grace) nothing is released, so that no
	// replica's parts come after their second was judged without them.
	known   bool
	started time.Time
	local   []analysis.SlicePair // this gateway's parts not released yet
	// released is the instant through which parts were released: a part
	// of a second before its second arrived too late and is dropped.
	released    time.Time
	shadowSince *time.Time
	dropped     uint64 // parts dropped as late
	// moved is set when a pull brought canary requests, until Merge.
	moved bool
}

// Moved reports whether a pull brought canary requests since the last
// Merge.
func (r *Run) Moved() bool {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	return r.moved
}

// peerState is what one replica reported for a run.
type peerState struct {
	id, url  string
	taken    uint64
	parts    []analysis.SlicePair
	through  time.Time
	joined   time.Time // when the run first knew it
	answered time.Time // its last answer; zero: none yet
	listed   bool      // in the fleet's list at the last pull
	from     time.Time // where its follow starts
	fromNow  bool
	shadow   *analysis.ShadowCounts
	// shadowFor is the stage start shadow counts were asked since.
	shadowFor time.Time
	lastErr   string
}

// Follow starts gathering a rollout's evidence from every replica; notify
// is called (without locks held) when a pull brought canary requests.
func (g *Gatherer) Follow(spec RunSpec, notify func()) *Run {
	var b [8]byte
	_, _ = rand.Read(b[:])
	now := g.opts.Now()
	r := &Run{g: g, key: hex.EncodeToString(b[:]), spec: spec, notify: notify, peers: map[string]*peerState{}, started: now}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.listed != nil {
		r.addPeers(g.listed, now)
	}
	g.runs[r.key] = r
	return r
}

// Close stops gathering the run's evidence.
func (r *Run) Close() {
	r.g.mu.Lock()
	delete(r.g.runs, r.key)
	r.g.mu.Unlock()
}

// SetStage starts a stage at since: its shadow counts (when shadow) are
// counted from there, and replicas that left the fleet before it are no
// longer counted among the stage's.
func (r *Run) SetStage(since time.Time, shadow bool) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	r.shadowSince = nil
	if shadow {
		r.shadowSince = &since
	}
	for id, p := range r.peers {
		p.shadow = nil
		if !p.listed {
			delete(r.peers, id)
		}
	}
}

// Run pulls every Interval until ctx ends. Each replica is pulled on its
// own: one slow to answer is asked again only once it has answered (or
// its call timed out, after Grace), and never holds the others back.
func (g *Gatherer) Run(ctx context.Context) {
	t := time.NewTicker(g.opts.Interval)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	inFlight := map[string]bool{}
	var mu sync.Mutex
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, p := range g.peersNow(ctx, false) {
			mu.Lock()
			busy := inFlight[p.ID]
			inFlight[p.ID] = true
			mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.pullOne(ctx, p)
				mu.Lock()
				delete(inFlight, p.ID)
				mu.Unlock()
			}()
		}
	}
}

// Pull asks every other replica once for the runs followed, at once, and
// waits for their answers (each bounded by Grace and ctx).
func (g *Gatherer) Pull(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range g.peersNow(ctx, true) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.pullOne(ctx, p)
		}()
	}
	wg.Wait()
}

// listEvery bounds how often the fleet's list is read from etcd.
const listEvery = time.Second

// peersNow are the other replicas to pull (none while no run is
// followed): the fleet's list, read again when older than listEvery (or
// when fresh), else the last one read.
func (g *Gatherer) peersNow(ctx context.Context, fresh bool) []Peer {
	now := g.opts.Now()
	g.mu.Lock()
	n, listed, listedAt := len(g.runs), g.listed, g.listedAt
	g.mu.Unlock()
	if n == 0 {
		return nil
	}
	if !fresh && listed != nil && now.Sub(listedAt) < listEvery {
		return listed
	}
	peers, err := g.opts.Peers(ctx)
	if err != nil {
		// The fleet's list is in etcd: while it cannot be read, ask the
		// replicas already known.
		g.log.Debug("fleet evidence: list the replicas", "err", err)
		return g.knownPeers()
	}
	peers = slices.DeleteFunc(peers, func(p Peer) bool { return p.ID == g.opts.Self })
	g.markListed(peers, now)
	return peers
}

// knownPeers are the replicas some run has heard of, for when the fleet's
// list cannot be read.
func (g *Gatherer) knownPeers() []Peer {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	var out []Peer
	for _, r := range g.runs {
		for _, p := range r.peers {
			if !seen[p.id] && p.listed {
				seen[p.id] = true
				out = append(out, Peer{ID: p.id, AdminURL: p.url})
			}
		}
	}
	return out
}

// markListed records which replicas are in the fleet's list now, adding
// the new ones to every run.
func (g *Gatherer) markListed(peers []Peer, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	listed := make(map[string]bool, len(peers))
	for _, p := range peers {
		listed[p.ID] = true
	}
	g.listed, g.listedAt = append(make([]Peer, 0, len(peers)), peers...), now
	for _, r := range g.runs {
		for id, p := range r.peers {
			p.listed = listed[id]
		}
		r.addPeers(peers, now)
	}
}

// addPeers adds the replicas of the fleet's list the run does not know
// yet. Caller holds g.mu.
func (r *Run) addPeers(peers []Peer, now time.Time) {
	r.known = true
	for _, p := range peers {
		if ps, ok := r.peers[p.ID]; ok {
			ps.url = p.AdminURL
		} else {
			r.peers[p.ID] = &peerState{id: p.ID, url: p.AdminURL, joined: now, listed: true, from: r.spec.From, fromNow: r.spec.FromNow}
		}
	}
}

func (g *Gatherer) pullOne(ctx context.Context, p Peer) {
	g.mu.Lock()
	req := EvidenceRequest{Follows: make([]Follow, 0, len(g.runs))}
	for _, r := range g.runs {
		ps, ok := r.peers[p.ID]
		if !ok {
			continue
		}
		req.Follows = append(req.Follows, Follow{Key: r.key, Endpoint: r.spec.Endpoint, Stable: r.spec.Stable, Canary: r.spec.Canary,
			From: ps.from, FromNow: ps.fromNow, Taken: ps.taken, ShadowSince: r.shadowSince})
	}
	g.mu.Unlock()
	if len(req.Follows) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, g.opts.Grace)
	ans, err := g.opts.Ask(cctx, p, req)
	cancel()
	now := g.opts.Now()
	var wake []func()
	g.mu.Lock()
	since := make(map[string]*time.Time, len(req.Follows))
	for _, f := range req.Follows {
		since[f.Key] = f.ShadowSince
		r, ok := g.runs[f.Key]
		if !ok {
			continue
		}
		if ps := r.peers[p.ID]; ps != nil && err != nil {
			ps.lastErr = err.Error()
		}
	}
	if err == nil {
		for _, a := range ans.Follows {
			r, ok := g.runs[a.Key]
			if !ok {
				continue
			}
			ps := r.peers[p.ID]
			if ps == nil {
				continue
			}
			if a.Shadow != nil && since[a.Key] != nil {
				ps.shadow, ps.shadowFor = a.Shadow, *since[a.Key]
			}
			if r.take(ps, a, now) {
				r.moved = true
				wake = append(wake, r.notify)
			}
		}
	}
	g.mu.Unlock()
	if err != nil {
		g.log.Debug("fleet evidence: pull", "replica", p.ID, "err", err)
	}
	for _, f := range wake {
		if f != nil {
			f()
		}
	}
}

// take adds a replica's answer to the run; it reports whether the answer
// brought canary requests. Caller holds g.mu.
func (r *Run) take(ps *peerState, a FollowAnswer, now time.Time) bool {
	if a.Error != "" {
		// The replica lost the follow: start it again from what it
		// reported last (what it served since is lost, and said so).
		ps.lastErr = a.Error
		ps.from, ps.fromNow, ps.taken = later(ps.through, r.spec.From), true, 0
		return false
	}
	ps.answered, ps.lastErr = now, ""
	if a.Through.After(ps.through) {
		ps.through = a.Through
	}
	moved := false
	for i, p := range a.Parts {
		if a.First+uint64(i) < ps.taken {
			continue // taken before: the answer to it was lost
		}
		if checkPair(p) != nil {
			continue
		}
		ps.parts = append(ps.parts, p)
		moved = moved || p.Canary.SplitRequests > 0
	}
	if end := a.First + uint64(len(a.Parts)); end > ps.taken {
		ps.taken = end
	}
	if over := len(ps.parts) - MaxParts; over > 0 {
		// Not merged for minutes (the controller looks every second):
		// the oldest are judged too late to matter.
		ps.parts = append(ps.parts[:0], ps.parts[over:]...)
		r.dropped += uint64(over)
	}
	return moved
}

// checkPair refuses a part whose counts cannot be (the analysis would
// refuse the whole look for it).
func checkPair(p analysis.SlicePair) error {
	return errors.Join(analysis.CheckSlice(p.Stable), analysis.CheckSlice(p.Canary))
}

// Coverage is api.Evidence, the wire form.
type Coverage = api.Evidence

// MissingReplica is api.SilentReplica, the wire form.
type MissingReplica = api.SilentReplica

// Merge takes this gateway's parts since the last look and returns every
// part the fleet served that can be judged now, in order of their second,
// each marked Open (several replicas' parts of one second follow each
// other) with its Span shared out among the replicas reporting, and whose
// evidence they are.
func (r *Run) Merge(now time.Time, local []analysis.SlicePair) ([]analysis.SlicePair, Coverage) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	r.local = append(r.local, local...)
	if over := len(r.local) - MaxParts; over > 0 {
		r.local = append(r.local[:0], r.local[over:]...)
		r.dropped += uint64(over)
	}
	r.moved = false
	localThrough := now.Add(-telemetry.TailGrace)
	w := localThrough
	cov := Coverage{Reporting: 1, Of: 1}
	if !r.known && now.Sub(r.started) <= r.g.opts.Grace {
		return nil, cov // the fleet's list is not read yet
	}
	ids := make([]string, 0, len(r.peers))
	for id := range r.peers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var in []*peerState
	for _, id := range ids {
		p := r.peers[id]
		cov.Of++
		switch {
		case !p.answered.IsZero() && now.Sub(p.answered) <= r.g.opts.Grace:
			cov.Reporting++
			in = append(in, p)
			if p.through.Before(w) {
				w = p.through
			}
		case p.answered.IsZero() && p.listed && now.Sub(p.joined) <= r.g.opts.Grace:
			// Not heard from yet: waited for, within the grace.
			cov.Reporting++
			w = time.Time{}
		default:
			cov.Missing = append(cov.Missing, MissingReplica{ID: id, LastAnswered: p.answered, Gone: !p.listed, Error: p.lastErr})
		}
	}
	if w.IsZero() {
		return nil, cov
	}
	var out []analysis.SlicePair
	out, r.local = r.release(out, r.local, w)
	for _, id := range ids {
		p := r.peers[id]
		out, p.parts = r.release(out, p.parts, w)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	share := time.Duration(1 + len(in))
	for i := range out {
		out[i].Open = true
		out[i].Span = max(out[i].Span/share, 1)
	}
	if w.After(r.released) {
		r.released = w
	}
	return out, cov
}

// release moves the parts of seconds starting before w from parts to out;
// parts of seconds before the last released one are dropped (late).
func (r *Run) release(out, parts []analysis.SlicePair, w time.Time) ([]analysis.SlicePair, []analysis.SlicePair) {
	floor := r.released.Truncate(time.Second)
	keep := parts[:0]
	for _, p := range parts {
		switch {
		case p.Start.Before(floor):
			r.dropped++
		case p.Start.Before(w):
			out = append(out, p)
		default:
			keep = append(keep, p)
		}
	}
	return out, keep
}

// AddShadow adds the other replicas' shadow counts of the stage to c.
func (r *Run) AddShadow(c *analysis.ShadowCounts) {
	r.g.mu.Lock()
	defer r.g.mu.Unlock()
	if r.shadowSince == nil {
		return
	}
	for _, p := range r.peers {
		if s := p.shadow; s != nil && p.shadowFor.Equal(*r.shadowSince) {
			c.Compared += s.Compared
			c.Matched += s.Matched
			c.Errors += s.Errors
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
