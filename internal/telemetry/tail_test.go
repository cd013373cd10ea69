package telemetry

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// readAt reads tl as of t: a Read TailGrace later.
func readAt(tl *Tail, t time.Time) []Slice { return tl.Read(t.Add(TailGrace)) }

// TestTailReturnsEveryRequestOnce: requests recorded between reads at
// arbitrary instants, some reads mid-second, some seconds later, come back
// once each, in the slice of their second, with the read's spans adding up
// to the time covered.
func TestTailReturnsEveryRequestOnce(t *testing.T) {
	rc := newRecorder()
	start := base + 3
	tail := rc.Tail(at(start, 400*time.Millisecond))
	type step struct {
		record []Observation
		now    time.Time
	}
	o := func(sec int64, frac time.Duration, status int, override bool) Observation {
		return Observation{Now: at(sec, frac).UnixNano(), Status: status, Latency: 5 * time.Millisecond, Override: override}
	}
	steps := []step{
		{[]Observation{o(start, 100*time.Millisecond, 200, false), o(start, 500*time.Millisecond, 500, false)}, at(start, 600*time.Millisecond)},
		{[]Observation{o(start, 700*time.Millisecond, 200, true), o(start, 900*time.Millisecond, 404, false)}, at(start, 950*time.Millisecond)},
		{nil, at(start, 960*time.Millisecond)}, // nothing new: an empty open part
		{[]Observation{o(start, 990*time.Millisecond, 500, false), o(start+1, 0, 200, false), o(start+2, 300*time.Millisecond, 200, false)}, at(start+2, 500*time.Millisecond)},
		{[]Observation{o(start+2, 800*time.Millisecond, 503, false)}, at(start+3, 0)}, // no time in start+3 yet: no part of it
	}
	got := map[int64]counts{}
	var span time.Duration
	var parts int
	for i, st := range steps {
		for _, ob := range st.record {
			record(rc, ob)
		}
		for j, sl := range readAt(tail, st.now) {
			parts++
			span += sl.Span
			if wantOpen := sl.Start.Unix() == st.now.Unix(); sl.Open != wantOpen || sl.Span <= 0 {
				t.Errorf("read %d slice %d (%d): open %v, want %v; span %v, want > 0", i, j, sl.Start.Unix()-start, sl.Open, wantOpen, sl.Span)
			}
			c := got[sl.Start.Unix()]
			c.Requests += sl.Requests
			c.Split += sl.SplitRequests
			c.Errors += sl.Errors
			c.ClientErrors += sl.ClientErrors
			c.SplitErrors += sl.SplitErrors
			c.Latency += sl.Latency.Count()
			got[sl.Start.Unix()] = c
		}
	}
	for sec, c := range got {
		if c == (counts{}) {
			delete(got, sec)
		}
	}
	want := sliceCounts(rc.Slices(at(start-1, 0), at(start+3, 0)))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("what the tail returned, per second (-Slices +Tail):\n%s", diff)
	}
	// The first read starts with the whole second holding the tail's start.
	if want := 3 * time.Second; span != want {
		t.Errorf("spans add up to %v, want the %v read", span, want)
	}
	if parts != 1+1+1+3+1 {
		t.Errorf("%d slices returned, want one per second per read (7)", parts)
	}
	if got := readAt(tail, at(start+2, 0)); got != nil {
		t.Errorf("a read before the last returned %d slices, want none", len(got))
	}
}

// TestTailUnderConcurrentWriters: reads racing with writers in the same
// second return every request once, and an open part never counts more
// errors than requests.
func TestTailUnderConcurrentWriters(t *testing.T) {
	rc := newRecorder()
	sec := base + 5
	tail := rc.Tail(at(sec, 0))
	const writers, per = 4, 5000
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				status := 200
				if (g+i)%7 == 0 {
					status = 500
				}
				record(rc, Observation{Now: at(sec, time.Duration(i)*time.Microsecond).UnixNano(), Status: status, Latency: time.Duration(1+i%40) * time.Millisecond})
			}
		}()
	}
	var split, errs, lat uint64
	read := func(now time.Time) {
		for _, sl := range readAt(tail, now) {
			if sl.SplitErrors > sl.SplitRequests {
				t.Errorf("a part counts %d errors of %d requests", sl.SplitErrors, sl.SplitRequests)
			}
			split, errs, lat = split+sl.SplitRequests, errs+sl.SplitErrors, lat+sl.Latency.Count()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for ns := int64(1); ; ns++ {
		select {
		case <-done:
			read(at(sec+1, 0))
			want := rc.Slices(at(sec-1, 0), at(sec, 0))[0]
			if split != writers*per || split != want.SplitRequests || errs != want.SplitErrors || lat != want.Latency.Count() {
				t.Errorf("tail returned %d requests, %d errors, %d latencies; the slice holds %d, %d, %d (%d written)",
					split, errs, lat, want.SplitRequests, want.SplitErrors, want.Latency.Count(), writers*per)
			}
			return
		default:
			read(at(sec, time.Duration(ns))) // time stands still; the data does not
		}
	}
}

// TestTailSkipsWhatTheRingNoLongerHolds: after a gap longer than the 1-s
// ring, a read starts 600 s before now, and the spans cover only that.
func TestTailSkipsWhatTheRingNoLongerHolds(t *testing.T) {
	rc := newRecorder()
	tail := rc.Tail(at(base, 0))
	record(rc, obs(base+2000, 200, time.Millisecond, false))
	parts := readAt(tail, at(base+2000, 500*time.Millisecond))
	if len(parts) != fineSlices || parts[0].Start.Unix() != base+2000-fineSlices+1 {
		t.Fatalf("read after a long gap returned %d slices from %v, want %d from 600 s back", len(parts), parts[0].Start, fineSlices)
	}
	if last := parts[len(parts)-1]; last.SplitRequests != 1 || !last.Open || last.Span != 500*time.Millisecond {
		t.Errorf("the current second's part: %+v", last)
	}
}

// TestSignal: a signal is raised every `every` split-routed requests, not
// for pinned ones, without blocking on a reader that is not listening; a
// replaced signal is not cleared by its old owner.
func TestSignal(t *testing.T) {
	rc := newRecorder()
	c := make(chan struct{}, 1)
	s := NewSignal(3, c)
	rc.SetSignal(s)
	for i := range 7 {
		record(rc, obs(base, 200, time.Millisecond, false))
		record(rc, obs(base, 200, time.Millisecond, true)) // pinned: not counted
		want := i == 2 || i == 5
		select {
		case <-c:
			if !want {
				t.Errorf("signal raised after %d requests", i+1)
			}
		default:
			if want {
				t.Errorf("no signal after %d requests", i+1)
			}
		}
	}
	if s.Count() != 7 {
		t.Errorf("Count = %d, want 7", s.Count())
	}
	for range 10 { // nobody reads: never blocks
		record(rc, obs(base, 200, time.Millisecond, false))
	}
	s2 := NewSignal(1, c)
	rc.SetSignal(s2)
	rc.ClearSignal(s) // the old owner's clear leaves the new signal
	if rc.signal.Load() != s2 {
		t.Errorf("ClearSignal of a replaced signal removed the new one")
	}
	rc.ClearSignal(s2)
	if rc.signal.Load() != nil {
		t.Errorf("ClearSignal of the current signal left it")
	}
}

// TestTailFromLeavesOutTheSecondSoFar: a tail that starts now returns none
// of the requests that finished earlier in the same second, and all later.
func TestTailFromLeavesOutTheSecondSoFar(t *testing.T) {
	rc := newRecorder()
	sec := base + 7
	for range 5 {
		record(rc, Observation{Now: at(sec, 100*time.Millisecond).UnixNano(), Status: 500, Latency: time.Millisecond})
	}
	tail := rc.TailFrom(at(sec, 200*time.Millisecond))
	record(rc, Observation{Now: at(sec, 300*time.Millisecond).UnixNano(), Status: 200, Latency: time.Millisecond})
	record(rc, Observation{Now: at(sec+1, 0).UnixNano(), Status: 200, Latency: time.Millisecond})
	var split, errs uint64
	var span time.Duration
	for _, sl := range readAt(tail, at(sec+1, 500*time.Millisecond)) {
		split, errs, span = split+sl.SplitRequests, errs+sl.SplitErrors, span+sl.Span
	}
	if split != 2 || errs != 0 || span != 1300*time.Millisecond {
		t.Errorf("tail from 0.2 s into the second returned %d requests, %d errors over %v; want the 2 later requests, no error, 1.3 s", split, errs, span)
	}
}

// TestTailKeepsASecondOpenForLateRecords: a request recorded just after its
// second ended (within TailGrace) is still returned with that second, and a
// clock stepped back reads nothing instead of failing.
func TestTailKeepsASecondOpenForLateRecords(t *testing.T) {
	rc := newRecorder()
	sec := base + 9
	tail := rc.TailFrom(at(sec, 0))
	record(rc, obs(sec, 200, time.Millisecond, false))
	first := tail.Read(at(sec+1, TailGrace/2))                                                                     // just past the second's end
	record(rc, Observation{Now: at(sec, 999*time.Millisecond).UnixNano(), Status: 500, Latency: time.Millisecond}) // recorded late
	second := tail.Read(at(sec+1, 2*TailGrace))
	var n, errs uint64
	for _, sl := range append(first, second...) {
		if sl.Start.Unix() == sec {
			n, errs = n+sl.SplitRequests, errs+sl.SplitErrors
		}
	}
	if n != 2 || errs != 1 {
		t.Errorf("the second's requests returned: %d (%d errors), want both, the late error too", n, errs)
	}
	if got := tail.Read(at(sec-5, 0)); got != nil {
		t.Errorf("a read with the clock stepped back returned %d slices, want none", len(got))
	}
}
