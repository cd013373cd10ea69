package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelgate/modelgate/internal/analysis"
	"github.com/modelgate/modelgate/internal/spec"
	"github.com/modelgate/modelgate/internal/telemetry"
)

// clock is a fake clock shared by a test's replicas and leader.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var epoch = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// replica is one gateway's telemetry and Reporter.
type replica struct {
	id       string
	reg      *telemetry.Registry
	rep      *Reporter
	silent   bool // answers nothing (stopped, cut off)
	answered int
}

func newReplica(id string, clk *clock) *replica {
	reg := telemetry.NewRegistry()
	reg.Recorder("ep", "blue")
	reg.Recorder("ep", "green")
	return &replica{id: id, reg: reg, rep: NewReporter(id, reg, nil, clk.Now)}
}

// serve records n requests to dep finishing at at, bad of them 5xx.
func (r *replica) serve(dep string, at time.Time, n, bad int) {
	rc := r.reg.Recorder("ep", dep)
	for i := range n {
		status := 200
		if i < bad {
			status = 500
		}
		rc.Begin()
		rc.Observe(telemetry.Observation{Now: at.UnixNano(), Status: status, Latency: time.Millisecond, TTFB: time.Millisecond})
	}
}

// fleetOf makes a leader's gatherer over peers, asking their Reporters in
// process.
func fleetOf(clk *clock, peers ...*replica) *Gatherer {
	byID := map[string]*replica{}
	var list []Peer
	for _, p := range peers {
		byID[p.id] = p
		list = append(list, Peer{ID: p.id, AdminURL: "http://" + p.id})
	}
	return NewGatherer(GatherOptions{Self: "leader", Now: clk.Now, Grace: time.Second,
		Peers: func(context.Context) ([]Peer, error) { return list, nil },
		Ask: func(_ context.Context, p Peer, req EvidenceRequest) (EvidenceAnswer, error) {
			r := byID[p.ID]
			if r.silent {
				return EvidenceAnswer{}, errors.New("connection refused")
			}
			r.answered++
			return r.rep.Answer(req)
		}})
}

// leaderOf follows the rollout of green on g from epoch, as the leader
// whose own telemetry is local's: look merges the leader's parts since the
// last look and adds what is released to *got.
func leaderOf(t *testing.T, g *Gatherer, local *replica, clk *clock) (*Run, func() Coverage, *[]analysis.SlicePair) {
	lt, lc := local.reg.Recorder("ep", "blue").Tail(epoch), local.reg.Recorder("ep", "green").Tail(epoch)
	run := g.Follow(RunSpec{Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}, nil)
	t.Cleanup(run.Close)
	got := new([]analysis.SlicePair)
	return run, func() Coverage {
		pairs, cov := run.Merge(clk.Now(), analysis.ReadPairs(lt, lc, clk.Now()))
		*got = append(*got, pairs...)
		return cov
	}, got
}

func sum(pairs []analysis.SlicePair) (stable, canary, canaryBad uint64) {
	for _, p := range pairs {
		stable += p.Stable.SplitRequests
		canary += p.Canary.SplitRequests
		canaryBad += p.Canary.SplitErrors
	}
	return
}

// Every request a replica served reaches the leader once, as that
// replica's own parts, in order of their second, and only once every
// replica reporting has sent what it served up to it.
func TestMergeReleasesEachReplicasPartsInOrder(t *testing.T) {
	clk := &clock{t: epoch}
	local, b, c := newReplica("leader", clk), newReplica("b", clk), newReplica("c", clk)
	g := fleetOf(clk, b, c)
	_, look, released := leaderOf(t, g, local, clk)
	for s := range 3 {
		at := epoch.Add(time.Duration(s)*time.Second + 100*time.Millisecond)
		local.serve("green", at, 1, 0)
		b.serve("green", at, 2, 1)
		c.serve("green", at, 4, 0)
		local.serve("blue", at, 10, 0)
		clk.add(time.Second)
		if s == 0 {
			// The leader's own parts wait for the fleet's list, then
			// for the replicas that have not answered yet (within the
			// grace).
			if look(); len(*released) != 0 {
				t.Fatalf("before the fleet's list was read: released %d parts, want none", len(*released))
			}
			b.silent, c.silent = true, true
			g.Pull(t.Context())
			if cov := look(); len(*released) != 0 || cov.Reporting != 3 || cov.Of != 3 {
				t.Fatalf("before the replicas answered: released %d parts, coverage %+v; want none, 3 of 3", len(*released), cov)
			}
			b.silent, c.silent = false, false
		}
		g.Pull(t.Context())
		look()
	}
	_, canary, bad := sum(*released)
	if canary != 3*7 || bad != 3 {
		t.Fatalf("canary requests %d (bad %d) released over three seconds, want 21 (3)", canary, bad)
	}
	for i, p := range *released {
		if !p.Open || (i > 0 && p.Start.Before((*released)[i-1].Start)) {
			t.Fatalf("part %d %+v: want Open, in order of its second", i, p)
		}
		if p.Span > 400*time.Millisecond {
			t.Errorf("part %d spans %v: a second's span is shared among the three replicas", i, p.Span)
		}
	}
	// No part mixes two replicas: each canary part holds 1, 2 or 4
	// requests, never a sum.
	for _, p := range *released {
		if n := p.Canary.SplitRequests; n != 0 && n != 1 && n != 2 && n != 4 {
			t.Fatalf("a part holds %d canary requests: replicas' parts were added together", n)
		}
	}
}

// A replica that stops answering is waited for at most the grace: then
// the seconds it has not reported are released without it, the coverage
// names it, and what it sends late for them is dropped, not added.
func TestMergeLeavesOutASilentReplica(t *testing.T) {
	clk := &clock{t: epoch}
	local, b := newReplica("leader", clk), newReplica("b", clk)
	g := fleetOf(clk, b)
	run, look, released := leaderOf(t, g, local, clk)
	second := func(s int) time.Time { return epoch.Add(time.Duration(s)*time.Second + 100*time.Millisecond) }
	local.serve("green", second(0), 1, 0)
	b.serve("green", second(0), 2, 0)
	clk.add(time.Second)
	g.Pull(t.Context())
	look()

	b.silent = true
	for s := 1; s <= 4; s++ {
		local.serve("green", second(s), 1, 0)
		b.serve("green", second(s), 2, 0)
		clk.add(time.Second)
		g.Pull(t.Context())
		cov := look()
		if s >= 2 && (cov.Reporting != 1 || cov.Of != 2 || len(cov.Missing) != 1 || cov.Missing[0].ID != "b" || !strings.Contains(cov.Missing[0].Error, "refused")) {
			t.Fatalf("%d s after b fell silent: coverage %+v, want 1 of 2 naming b and why", s, cov)
		}
	}
	_, canary, _ := sum(*released)
	if canary != 3+3 && canary != 3+4 {
		t.Fatalf("released %d canary requests: want b's first second and the leader's own (b's silent seconds not counted as anything)", canary)
	}
	before := canary
	b.silent = false
	clk.add(time.Second)
	g.Pull(t.Context())
	cov := look()
	if cov.Reporting != 2 {
		t.Fatalf("b answers again: coverage %+v", cov)
	}
	_, canary, _ = sum(*released)
	if late := canary - before; late > 2 {
		t.Errorf("%d canary requests released once b was back: its parts of seconds already judged must be dropped", late)
	}
	if run.dropped == 0 {
		t.Error("no part dropped as late")
	}
}

func TestReporterAnswersEachPartUntilTaken(t *testing.T) {
	clk := &clock{t: epoch}
	r := newReplica("b", clk)
	r.serve("green", epoch.Add(100*time.Millisecond), 3, 1)
	clk.add(1500 * time.Millisecond)
	f := Follow{Key: "k", Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}
	ask := func(f Follow) FollowAnswer {
		ans, err := r.rep.Answer(EvidenceRequest{Follows: []Follow{f}})
		if err != nil || len(ans.Follows) != 1 || ans.Replica != "b" {
			t.Fatalf("answer %+v, %v", ans, err)
		}
		return ans.Follows[0]
	}
	a := ask(f)
	if a.Error != "" || a.First != 0 || len(a.Parts) == 0 || a.Parts[0].Canary.SplitRequests != 3 || a.Parts[0].Canary.SplitErrors != 1 {
		t.Fatalf("first answer %+v", a)
	}
	// The answer was lost: asked again with nothing taken, the same parts.
	if again := ask(f); len(again.Parts) != len(a.Parts) || again.Parts[0].Canary.SplitRequests != 3 {
		t.Fatalf("asked again before taking: %+v", again)
	}
	f.Taken = uint64(len(a.Parts))
	if next := ask(f); next.First != f.Taken || (len(next.Parts) > 0 && next.Parts[0].Canary.SplitRequests != 0) {
		t.Fatalf("after taking them: %+v", next)
	}
	lost := Follow{Key: "gone", Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch, Taken: 5}
	if a := ask(lost); !strings.Contains(a.Error, "lost") {
		t.Errorf("a follow the replica does not keep, parts already taken: %+v, want an error saying its parts are lost", a)
	}
	unknown := Follow{Key: "new", Endpoint: "ep", Stable: "blue", Canary: "red", From: epoch}
	if a := ask(unknown); a.Error != "" || len(a.Parts) != 0 || a.Through.IsZero() {
		t.Errorf("a deployment not routed here: %+v, want nothing served, through now", a)
	}
	if _, ok := r.reg.Lookup("ep", "red"); ok {
		t.Error("a pull naming an unknown deployment created its recorder")
	}
	clk.add(FollowIdle + time.Second)
	ask(Follow{Key: "other", Endpoint: "ep", Stable: "blue", Canary: "green", From: clk.Now()})
	if _, kept := r.rep.follows["k"]; kept {
		t.Error("a follow not asked for past FollowIdle is still kept")
	}
}

func TestEvidenceRequestValidate(t *testing.T) {
	ok := Follow{Key: "k", Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}
	for name, req := range map[string]EvidenceRequest{
		"no key":    {Follows: []Follow{{Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}}},
		"twice":     {Follows: []Follow{ok, ok}},
		"no canary": {Follows: []Follow{{Key: "k", Endpoint: "ep", Stable: "blue", From: epoch}}},
		"no from":   {Follows: []Follow{{Key: "k", Endpoint: "ep", Stable: "blue", Canary: "green"}}},
		"long key":  {Follows: []Follow{{Key: strings.Repeat("k", 129), Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}}},
		"too many":  {Follows: make([]Follow, MaxFollows+1)},
	} {
		if err := req.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (EvidenceRequest{Follows: []Follow{ok}}).Validate(); err != nil {
		t.Error(err)
	}
}

// FuzzEvidenceRequest: whatever a pull holds, a replica answers or
// refuses it without panicking, and creates no recorder.
func FuzzEvidenceRequest(f *testing.F) {
	f.Add([]byte(`{"follows":[{"key":"k","endpoint":"ep","stable":"blue","canary":"green","from":"2026-12-07T12:00:00Z","taken":0}]}`))
	f.Add([]byte(`{"follows":[{"key":"k","endpoint":"ep","stable":"blue","canary":"green","from":"2026-12-07T12:00:00Z","from_now":true,"taken":18446744073709551615}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var req EvidenceRequest
		if json.Unmarshal(b, &req) != nil {
			return
		}
		clk := &clock{t: epoch.Add(time.Hour)}
		r := newReplica("b", clk)
		ans, err := r.rep.Answer(req)
		if err == nil && len(ans.Follows) != len(req.Follows) {
			t.Fatalf("%d answers to %d follows", len(ans.Follows), len(req.Follows))
		}
		if len(r.rep.follows) > MaxFollows {
			t.Fatalf("%d follows kept", len(r.rep.follows))
		}
	})
}

// FuzzEvidenceAnswer: whatever a replica answers, the leader takes what
// is consistent and releases parts a analysis accepts, without panicking.
func FuzzEvidenceAnswer(f *testing.F) {
	f.Add([]byte(`{"replica":"b","follows":[{"key":"K","first":0,"parts":[{"start":"2026-12-07T12:00:00Z","stable":{"requests":3,"split_requests":3},"canary":{"requests":2,"split_requests":2,"split_errors":1,"errors":1},"span_ns":1000000000}],"through":"2026-12-07T12:00:01Z"}]}`))
	f.Add([]byte(`{"follows":[{"key":"K","first":18446744073709551615,"parts":[{"canary":{"split_errors":5}}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ans EvidenceAnswer
		if json.Unmarshal(b, &ans) != nil {
			return
		}
		clk := &clock{t: epoch.Add(2 * time.Second)}
		var run *Run
		g := NewGatherer(GatherOptions{Self: "leader", Now: clk.Now,
			Peers: func(context.Context) ([]Peer, error) { return []Peer{{ID: "b"}}, nil },
			Ask: func(context.Context, Peer, EvidenceRequest) (EvidenceAnswer, error) {
				for i := range ans.Follows {
					ans.Follows[i].Key = run.key
				}
				return ans, nil
			}})
		run = g.Follow(RunSpec{Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}, nil)
		g.Pull(context.Background())
		pairs, _ := run.Merge(clk.Now(), nil)
		a, err := analysis.New(defaultPlan())
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Observe(pairs); err != nil {
			t.Fatalf("released parts the analysis refuses: %v", err)
		}
	})
}

func defaultPlan() spec.Plan { return spec.Plan{}.WithDefaults() }

// shadowAt counts a fixed comparison result since any time.
type shadowAt analysis.ShadowCounts

func (s shadowAt) Counts(_, _ string, _, _ time.Time) analysis.ShadowCounts {
	return analysis.ShadowCounts(s)
}

// The stage's shadow counts are every replica's, asked since the stage's
// start; a stage that starts anew does not take the last stage's.
func TestShadowCountsOfTheFleet(t *testing.T) {
	clk := &clock{t: epoch}
	b, c := newReplica("b", clk), newReplica("c", clk)
	b.rep.shadow = shadowAt{Compared: 10, Matched: 9}
	c.rep.shadow = shadowAt{Compared: 5, Matched: 5, Errors: 1}
	g := fleetOf(clk, b, c)
	run := g.Follow(RunSpec{Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}, nil)
	defer run.Close()
	run.SetStage(epoch, true)
	g.Pull(t.Context())
	got := analysis.ShadowCounts{Compared: 1, Matched: 1}
	run.AddShadow(&got)
	if want := (analysis.ShadowCounts{Compared: 16, Matched: 15, Errors: 1}); got != want {
		t.Fatalf("fleet's shadow counts %+v, want %+v", got, want)
	}
	run.SetStage(epoch.Add(time.Minute), false)
	got = analysis.ShadowCounts{}
	run.AddShadow(&got)
	if got != (analysis.ShadowCounts{}) {
		t.Fatalf("after a stage that judges no shadows: %+v", got)
	}
}

// A replica that hangs does not hold the others' pulls back.
func TestAHungReplicaDoesNotHoldTheOthersBack(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	answered := map[string]int{}
	clk := &clock{t: epoch}
	c := newReplica("c", clk)
	g := NewGatherer(GatherOptions{Self: "leader", Interval: time.Millisecond, Grace: time.Hour,
		Peers: func(context.Context) ([]Peer, error) { return []Peer{{ID: "b"}, {ID: "c"}}, nil },
		Ask: func(_ context.Context, p Peer, req EvidenceRequest) (EvidenceAnswer, error) {
			if p.ID == "b" {
				<-release // hangs, whatever the context says
				return EvidenceAnswer{}, errors.New("gone")
			}
			mu.Lock()
			answered[p.ID]++
			mu.Unlock()
			return c.rep.Answer(req)
		}})
	run := g.Follow(RunSpec{Endpoint: "ep", Stable: "blue", Canary: "green", From: epoch}, nil)
	defer run.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		g.Run(ctx)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := answered["c"]
		mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("c answered %d pulls while b hung: its pulls wait for b's", n)
		}
		runtime.Gosched()
	}
	cancel()
	close(release)
	<-done
}
