package telemetry

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// base is a unix second that is a multiple of 10, so coarse slices align.
const base = int64(1_700_000_000)

func at(sec int64, frac time.Duration) time.Time {
	return time.Unix(sec, int64(frac))
}

func obs(sec int64, status int, lat time.Duration, override bool) Observation {
	return Observation{Now: sec*1e9 + 123, Status: status, Latency: lat, TTFB: lat / 2, Override: override}
}

func record(rc *Recorder, o Observation) {
	rc.Begin()
	rc.Observe(o)
}

// counts is what the exactness tests compare: per-second counts.
type counts struct {
	Requests, Split, Errors, ClientErrors, SplitErrors, Latency uint64
}

func sliceCounts(ss []Slice) map[int64]counts {
	m := make(map[int64]counts)
	for _, s := range ss {
		if s.Requests == 0 {
			continue
		}
		m[s.Start.Unix()] = counts{s.Requests, s.SplitRequests, s.Errors, s.ClientErrors, s.SplitErrors, s.Latency.Count()}
	}
	return m
}

// TestObserveConcurrentExact records from many goroutines across second
// (and 10-second) boundaries and finds every observation exactly once.
func TestObserveConcurrentExact(t *testing.T) {
	const (
		goroutines = 16
		perG       = 3000
		seconds    = 25 // crosses two 10-s boundaries
	)
	start := base - 12
	rc := newRecorder()
	want := make(map[int64]counts)
	gen := func(g, i int) Observation {
		sec := start + int64((g*7+i)%seconds)
		status := []int{200, 200, 201, 404, 500, 503, 302, 101}[(g+i)%8]
		return obs(sec, status, time.Duration(1+(i%50))*time.Millisecond, (g+i)%5 == 0)
	}
	for g := range goroutines {
		for i := range perG {
			o := gen(g, i)
			c := want[o.Now/1e9]
			c.Requests++
			if !o.Override {
				c.Latency++ // the sketches hold split-routed requests only
				c.Split++
				if o.Status >= 500 {
					c.SplitErrors++
				}
			}
			if o.Status >= 500 {
				c.Errors++
			}
			if o.Status/100 == 4 {
				c.ClientErrors++
			}
			want[o.Now/1e9] = c
		}
	}

	var wg sync.WaitGroup
	ready := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-ready
			for i := range perG {
				record(rc, gen(g, i))
			}
		})
	}
	// A reader runs alongside, so the race detector sees reads racing
	// with writes and resets.
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				rc.Window(at(start+seconds, 0), time.Minute)
				rc.Slices(at(start-1, 0), at(start+seconds, 0))
			}
		}
	})
	close(ready)
	wg.Wait()
	close(stop)
	rwg.Wait()

	now := at(start+seconds-1, 0)
	got := sliceCounts(rc.Slices(now.Add(-time.Minute), now))
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Slices counts mismatch (-want +got):\n%s", diff)
	}
	var total counts
	for _, c := range want {
		total.Requests += c.Requests
		total.Errors += c.Errors
		total.ClientErrors += c.ClientErrors
		total.SplitErrors += c.SplitErrors
		total.Split += c.Split
	}
	// 1-minute window: 1-s slices; 1-hour window: mostly 10-s slices. Both
	// must hold everything (start is 10-aligned minus 2, see the edge rule:
	// the hour's old edge is far away).
	for _, w := range []time.Duration{time.Minute, time.Hour} {
		s := rc.Window(now, w)
		got := counts{s.Requests, s.SplitRequests(), s.Errors, s.ClientErrors, s.SplitErrors, s.Latency.Count()}
		w2 := total
		w2.Latency = total.Split
		if diff := cmp.Diff(w2, got); diff != "" {
			t.Errorf("Window(%v) mismatch (-want +got):\n%s", w, diff)
		}
	}
	if n := rc.inFlight.Load(); n != 0 {
		t.Errorf("in flight = %d, want 0", n)
	}
	if n := rc.late.Load(); n != 0 {
		t.Errorf("late = %d, want 0", n)
	}
}

func TestWindowEdges(t *testing.T) {
	rc := newRecorder()
	// One request per second from base-3700 to base inclusive.
	for s := base - 3700; s <= base; s++ {
		record(rc, obs(s, 200, time.Millisecond, false))
	}
	tests := []struct {
		name string
		now  time.Time
		w    time.Duration
		want uint64
	}{
		{"10s on a second", at(base, 0), 10 * time.Second, 10},
		{"10s mid-second", at(base, 500*time.Millisecond), 10 * time.Second, 10},
		{"10s just before a second", at(base, time.Second-1), 10 * time.Second, 10},
		{"1s", at(base, 0), time.Second, 1},
		{"1.5s", at(base, 0), 1500 * time.Millisecond, 2},
		{"now in the past", at(base-100, 0), 10 * time.Second, 10},
		{"now in the future", at(base+5, 0), 10 * time.Second, 5},
		{"5m", at(base, 0), 5 * time.Minute, 300},
		{"10m", at(base, 0), 10 * time.Minute, 600},
		{"10m mid-second", at(base, 999*time.Millisecond), 10 * time.Minute, 600},
		// Beyond 10 minutes the old edge moves up to a 10-s boundary.
		{"605s", at(base, 0), 605 * time.Second, 601},
		{"15m", at(base, 0), 15 * time.Minute, 891},
		{"1h", at(base, 0), time.Hour, 3591},
		{"1h, now not 10-aligned", at(base+5, 0), time.Hour, 3591},
		{"1h, now just after 10-aligned", at(base+1, 0), time.Hour, 3591},
		{"2h: older than kept", at(base, 0), 2 * time.Hour, 3591},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := rc.Window(tc.now, tc.w)
			if s.Requests != tc.want || s.Latency.Count() != tc.want || s.Status[2] != tc.want {
				t.Errorf("Window(%v, %v): requests %d, latency count %d, 2xx %d; want %d",
					tc.now.Unix(), tc.w, s.Requests, s.Latency.Count(), s.Status[2], tc.want)
			}
			if s.Window != tc.w {
				t.Errorf("Window(%v, %v).Window = %v", tc.now.Unix(), tc.w, s.Window)
			}
		})
	}
}

// TestSlicesMergeToWindow: Window(now, w) is the slices of its seconds
// added up (Summary.AddSlice, with which the rollout controller grows a
// stage's window), counts and sketches alike.
func TestSlicesMergeToWindow(t *testing.T) {
	rc := newRecorder()
	for s := base - 700; s <= base; s++ {
		for i := range int(s % 7) {
			record(rc, obs(s, 200+100*(i%4), time.Duration(s%97+1)*time.Millisecond, i%3 == 0))
		}
	}
	now := at(base, 250*time.Millisecond)
	for _, w := range []time.Duration{10 * time.Second, 90 * time.Second, 5 * time.Minute, 10 * time.Minute} {
		ss := rc.Slices(now.Add(-w), now)
		if len(ss) != int(w/time.Second) {
			t.Errorf("len(Slices(now-%v, now)) = %d, want %d", w, len(ss), w/time.Second)
		}
		var m Summary
		for i, s := range ss {
			if want := at(base-int64(len(ss)-1-i), 0); !s.Start.Equal(want) {
				t.Fatalf("Slices[%d].Start = %v, want %v", i, s.Start, want)
			}
			m.AddSlice(s)
		}
		win := rc.Window(now, w)
		got := []uint64{win.Requests, win.OverrideRequests, win.Errors, win.ClientErrors, win.SplitErrors, win.Status[4], win.Status[5], win.Latency.Count(), win.TTFB.Count()}
		want := []uint64{m.Requests, m.OverrideRequests, m.Errors, m.ClientErrors, m.SplitErrors, m.Status[4], m.Status[5], m.Latency.Count(), m.TTFB.Count()}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Window(now, %v) vs merged slices (-slices +window):\n%s", w, diff)
		}
		for _, q := range []float64{0.5, 0.99} {
			if a, b := win.Latency.Quantile(q), m.Latency.Quantile(q); a != b {
				t.Errorf("Window(now, %v) p%v = %v, merged slices %v", w, q*100, a, b)
			}
		}
	}
	if ss := rc.Slices(at(base-2000, 0), at(base, 0)); len(ss) != fineSlices {
		t.Errorf("Slices over 2000 s returned %d slices, want the %d kept at 1 s", len(ss), fineSlices)
	}
	if ss := rc.Slices(at(base, 0), at(base, 0)); len(ss) != 0 {
		t.Errorf("Slices over an empty range returned %d slices", len(ss))
	}
}

// TestNoLeakAfterReuse: ring positions reused after two hours hold only
// the new data.
func TestNoLeakAfterReuse(t *testing.T) {
	rc := newRecorder()
	for s := base - 300; s <= base; s++ {
		record(rc, obs(s, 500, time.Second, false))
	}
	later := base + 2*3600
	record(rc, obs(later, 200, time.Millisecond, false))
	record(rc, obs(later-1, 200, time.Millisecond, false))
	for _, w := range []time.Duration{10 * time.Second, 5 * time.Minute, time.Hour} {
		s := rc.Window(at(later, 0), w)
		if s.Requests != 2 || s.Errors != 0 || s.Latency.Quantile(1) > 2*time.Millisecond {
			t.Errorf("Window(t+2h, %v): requests %d, errors %d, max latency %v; want only the 2 new requests",
				w, s.Requests, s.Errors, s.Latency.Quantile(1))
		}
	}
	got := sliceCounts(rc.Slices(at(later-600, 0), at(later, 0)))
	want := map[int64]counts{
		later - 1: {1, 1, 0, 0, 0, 1},
		later:     {1, 1, 0, 0, 0, 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Slices after reuse (-want +got):\n%s", diff)
	}
}

// TestLateObservationDropped: an observation whose slice position already
// holds newer data is dropped rather than counted in the wrong slice.
func TestLateObservationDropped(t *testing.T) {
	rc := newRecorder()
	record(rc, obs(base+fineSlices, 200, time.Millisecond, false))
	record(rc, obs(base, 200, time.Millisecond, false)) // same position, older
	if n := rc.late.Load(); n != 1 {
		t.Errorf("late = %d, want 1", n)
	}
	if s := rc.Window(at(base, 0), 10*time.Second); s.Requests != 0 {
		t.Errorf("Window at the late second: %d requests in 1-s slices, want 0", s.Requests)
	}
	if s := rc.Window(at(base+fineSlices, 0), 10*time.Second); s.Requests != 1 {
		t.Errorf("Window at the newer second: %d requests, want 1", s.Requests)
	}
}

func TestSummaryCounts(t *testing.T) {
	rc := newRecorder()
	rc.Begin()
	rc.Begin() // stays in flight
	rc.Observe(obs(base, 200, 10*time.Millisecond, false))
	record(rc, obs(base, 404, 10*time.Millisecond, true))
	record(rc, obs(base, 502, 10*time.Millisecond, false))
	record(rc, obs(base, 0, 10*time.Millisecond, true)) // invalid: 5xx
	record(rc, obs(base, 700, 10*time.Millisecond, false))
	record(rc, obs(base, 101, 10*time.Millisecond, false))
	got := rc.Window(at(base, 0), 10*time.Second)
	got.Latency, got.TTFB = Sketch{}, Sketch{}
	want := Summary{
		Window:           10 * time.Second,
		Requests:         6,
		OverrideRequests: 2,
		Status:           [numClasses]uint64{0, 1, 1, 0, 1, 3},
		Errors:           3,
		ClientErrors:     1,
		SplitErrors:      2,
		InFlight:         1,
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(Sketch{})); diff != "" {
		t.Errorf("Window mismatch (-want +got):\n%s", diff)
	}
	if got.SplitRequests() != 4 {
		t.Errorf("SplitRequests() = %d, want 4", got.SplitRequests())
	}
}

func TestObserveZeroAllocs(t *testing.T) {
	rc := newRecorder()
	now := base * 1e9
	allocs := testing.AllocsPerRun(10000, func() {
		now += 7 * int64(time.Millisecond) // crosses seconds: rotation included
		rc.Begin()
		rc.Observe(Observation{Now: now, Status: 200, Latency: 12 * time.Millisecond, TTFB: 3 * time.Millisecond})
	})
	if allocs != 0 {
		t.Errorf("Begin+Observe allocates %v times per call, want 0", allocs)
	}
}

// TestConcurrentReuse races writers of a second with writers of the second
// that reuses its ring position: the newer second must hold exactly its own
// observations, however the resets interleave.
func TestConcurrentReuse(t *testing.T) {
	const goroutines, perG = 8, 2000
	rc := newRecorder()
	old, cur := base, base+fineSlices
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perG {
				sec := old
				if (g+i)%2 == 0 {
					sec = cur
				}
				record(rc, obs(sec, 200, time.Millisecond, false))
			}
		})
	}
	wg.Wait()
	const newer = goroutines * perG / 2
	s := rc.Window(at(cur, 0), 10*time.Second)
	if s.Requests != newer || s.Latency.Count() != newer {
		t.Errorf("newer second: %d requests, %d latencies; want %d", s.Requests, s.Latency.Count(), newer)
	}
	if late := rc.late.Load(); late > goroutines*perG-newer {
		t.Errorf("late = %d, more than the %d older observations", late, goroutines*perG-newer)
	}
}

func TestSumSlicesCoarseAndFine(t *testing.T) {
	// base is a multiple of 10: 10-s slice c covers [10c, 10c+10).
	rc := newRecorder()
	for s := base - 3700; s <= base; s++ {
		for i := range int(s % 5) {
			record(rc, obs(s, 200+300*(i%2), time.Duration(s%89+1)*time.Millisecond, i == 3))
		}
	}
	// expect counts what was recorded in seconds [lo, hi], independently.
	expect := func(lo, hi int64) (requests, split, errs uint64) {
		for s := max(lo, base-3700); s <= min(hi, base); s++ {
			for i := range uint64(s % 5) {
				requests++
				if i != 3 {
					split++
				}
				if i%2 == 1 {
					errs++
				}
			}
		}
		return
	}
	check := func(what string, sum Summary, lo, hi int64) {
		t.Helper()
		r, sp, e := expect(lo, hi)
		if sum.Requests != r || sum.SplitRequests() != sp || sum.Errors != e || sum.Latency.Count() != sp || sum.TTFB.Count() != sp {
			t.Errorf("%s: requests %d split %d errors %d latencies %d ttfbs %d, want %d %d %d %d %d (the sketches hold split requests)",
				what, sum.Requests, sum.SplitRequests(), sum.Errors, sum.Latency.Count(), sum.TTFB.Count(), r, sp, e, sp, sp)
		}
	}
	// Each 10-s slice of the last hour, and runs of them.
	for c := base/10 - coarseSlices + 1; c <= base/10; c += 7 {
		check(fmt.Sprintf("coarse slice at %d", 10*c), rc.SumSlices(at(10*c-1, 0), at(10*c, 0), true), 10*c, 10*c+9)
		check(fmt.Sprintf("coarse slices from %d", 10*c), rc.SumSlices(at(10*c-1, 0), at(base, 0), true), 10*c, base+9)
	}
	// Fine: the same as merging Slices, and the same as Window.
	now := at(base, 0)
	check("fine 5 min", rc.SumSlices(now.Add(-5*time.Minute), now, false), base-299, base)
	if a, b := rc.SumSlices(now.Add(-5*time.Minute), now, false), rc.Window(now, 5*time.Minute); a.Latency.Quantile(0.99) != b.Latency.Quantile(0.99) {
		t.Errorf("fine sum p99 %v, window p99 %v", a.Latency.Quantile(0.99), b.Latency.Quantile(0.99))
	}
	// Fine seconds older than 600 s are no longer kept.
	check("fine beyond 10 min", rc.SumSlices(at(base-2000, 0), now, false), base-599, base)
	// Slots reused for newer data read as nothing, never as the newer data.
	if s := rc.SumSlices(at(base-7200, 0), at(base-3700, 0), true); s.Requests != 0 {
		t.Errorf("coarse slices more than an hour before the last record hold %d requests", s.Requests)
	}
}
