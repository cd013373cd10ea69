package telemetry

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
)

// TestMatchesDenseReference records the same random observations into a
// Recorder and into refRecorder (the dense rings it replaced) and compares
// every kind of query, before and after the compactor sealed what it
// could: counts exactly, sketches bucket for bucket (so quantiles are the
// same, and so within 1% of the exact ones, which it also checks). The
// traffic has bursts, idle stretches longer than the 1-s ring, seconds
// recorded out of order (up to 20 s late), overrides and every status
// class, over more than an hour.
func TestMatchesDenseReference(t *testing.T) {
	for _, seed := range []uint64{22, 11} { // 11: past windows over gaps longer than the 1-s ring
		t.Run(fmt.Sprint(seed), func(t *testing.T) { testMatchesDenseReference(t, seed) })
	}
}

func testMatchesDenseReference(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	rc, ref := newRecorder(), new(refRecorder)
	exact := map[int64][]time.Duration{} // split-routed latencies by second, for the exact quantiles
	start := base - 4000
	var queries int
	newest := start
	compare := func(now time.Time) {
		t.Helper()
		queries++
		for _, w := range []time.Duration{10 * time.Second, time.Minute, 5 * time.Minute, 10 * time.Minute, 605 * time.Second, 15 * time.Minute, time.Hour} {
			got, want := rc.Window(now, w), ref.window(now, w)
			got.InFlight = 0
			if diff := cmp.Diff(want, got, cmp.AllowUnexported(Sketch{})); diff != "" {
				t.Fatalf("Window(%d, %v) differs from the dense rings (-dense +packed):\n%s", now.Unix()-start, w, diff)
			}
		}
		for _, span := range []time.Duration{30 * time.Second, 10 * time.Minute, time.Hour} {
			for _, coarse := range []bool{false, true} {
				got, want := rc.SumSlices(now.Add(-span), now, coarse), ref.sumSlices(now.Add(-span), now, coarse)
				if diff := cmp.Diff(want, got, cmp.AllowUnexported(Sketch{})); diff != "" {
					t.Fatalf("SumSlices(%d, -%v, coarse %v) differs (-dense +packed):\n%s", now.Unix()-start, span, coarse, diff)
				}
			}
		}
		if got, want := rc.Slices(now.Add(-10*time.Minute), now), ref.slices(now.Add(-10*time.Minute), now); !cmp.Equal(want, got, cmp.AllowUnexported(Sketch{})) {
			t.Fatalf("Slices(%d, -10m) differ from the dense rings", now.Unix()-start)
		}
		// The 5-minute window's quantiles against the exact ones.
		var vals []time.Duration
		for s := now.Unix() - 299; s <= now.Unix(); s++ {
			vals = append(vals, exact[s]...)
		}
		if len(vals) > 0 && now.Unix() > newest-300 { // (older seconds may have left the 1-s ring)
			slices.Sort(vals)
			sum := rc.Window(now, 5*time.Minute)
			for _, q := range []float64{0.5, 0.9, 0.99, 1} {
				want := vals[nearestRank(q, uint64(len(vals)))-1]
				want = min(max(want, time.Microsecond), time.Hour)
				if got := sum.Latency.Quantile(q); math.Abs(float64(got-want)) > 0.01*float64(want) {
					t.Fatalf("5-min p%v = %v, exact %v: more than 1%% off", q*100, got, want)
				}
			}
		}
	}
	for sec := start; sec < base; sec++ {
		n := 0
		switch r := rng.IntN(100); {
		case r < 3:
			sec += int64(rng.IntN(900)) // idle, sometimes longer than the 1-s ring
		case r < 50:
			n = rng.IntN(5)
		default:
			n = rng.IntN(60)
		}
		newest = max(newest, sec)
		for range n {
			s := sec
			if rng.IntN(20) == 0 {
				s -= int64(rng.IntN(20)) // finished a while ago
			}
			o := Observation{
				Now:      s*1e9 + rng.Int64N(1e9),
				Status:   []int{200, 200, 200, 201, 302, 404, 429, 500, 503, 101, 0, 700}[rng.IntN(12)],
				Latency:  time.Duration(math.Exp(rng.NormFloat64()*2 + math.Log(20e6))),
				Override: rng.IntN(10) == 0,
			}
			o.TTFB = o.Latency / time.Duration(1+rng.IntN(5))
			record(rc, o)
			ref.observe(o)
			if !o.Override {
				exact[s] = append(exact[s], o.Latency)
			}
		}
		switch r := rng.IntN(60); {
		case r == 0:
			compare(time.Unix(newest, rng.Int64N(1e9)))
		case r == 1:
			rc.compact() // what the background compactor does, now
			compare(time.Unix(newest, rng.Int64N(1e9)))
		case r == 2:
			compare(time.Unix(newest-int64(rng.IntN(700)), 0)) // a window in the past
		}
	}
	compare(time.Unix(newest, 0))
	rc.compact()
	compare(time.Unix(newest, 0))
	compare(time.Unix(newest+400, 0)) // queried after the traffic stopped
	t.Logf("%d comparisons", queries)
	if got, want := rc.late.Load(), uint64(ref.late); got != want {
		t.Errorf("late = %d, the dense rings dropped %d", got, want)
	}
}

// TestConcurrentObserveCompactRead races writers moving through 700
// seconds (so that slices are sealed, rotated out unsealed and folded into
// the 10-s tier while being read) with readers of every kind and explicit
// compactions. Afterwards every second of the last 600 holds exactly its
// observations, and the hour holds every observation not dropped as late.
// Run with -race.
func TestConcurrentObserveCompactRead(t *testing.T) {
	const (
		writers = 4
		perW    = 3000
		seconds = 700
	)
	rc := newRecorder()
	first := base - seconds + 1
	gen := func(w, i int) Observation {
		sec := first + int64(i*seconds/perW) - int64((w*7+i)%13) // up to 12 s late
		return obs(max(sec, first), []int{200, 500, 404, 200}[(w+i)%4], time.Duration(1+(i+w)%300)*time.Millisecond, (w+i)%9 == 0)
	}
	want := map[int64]uint64{}
	for w := range writers {
		for i := range perW {
			want[gen(w, i).Now/1e9]++
		}
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perW {
				record(rc, gen(w, i))
			}
		})
	}
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	for k := range 2 {
		rwg.Go(func() {
			tail := rc.Tail(at(first, 0))
			for {
				select {
				case <-stop:
					return
				default:
				}
				now := at(rc.newest.Load()-1, 0)
				switch k {
				case 0:
					rc.Window(now, time.Hour)
					rc.SumSlices(now.Add(-time.Hour), now, true)
					rc.compact()
				case 1:
					rc.Window(now, time.Minute)
					rc.Slices(now.Add(-10*time.Second), now)
					tail.Read(now)
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	rwg.Wait()

	now := at(base, 0)
	got := map[int64]uint64{}
	for _, sl := range rc.Slices(now.Add(-10*time.Minute), now) {
		if sl.Requests > 0 {
			got[sl.Start.Unix()] = sl.Requests
		}
	}
	wantFine := map[int64]uint64{}
	var total uint64
	for s, n := range want {
		total += n
		if s > base-fineSlices {
			wantFine[s] = n
		}
	}
	if diff := cmp.Diff(wantFine, got); diff != "" {
		t.Errorf("last 10 minutes per second (-want +got):\n%s", diff)
	}
	late := rc.late.Load()
	t.Logf("%d observations, %d late, %d live slices rotated out unsealed", total, late, rc.pushes.Load())
	if hour := rc.Window(now, time.Hour).Requests; hour+late != total {
		t.Errorf("hour holds %d, %d dropped as late: %d, want all %d written", hour, late, hour+late, total)
	}
}

// TestObserveSteadyStateAllocatesNothing: with the compactor keeping up,
// Observe allocates nothing, the second boundaries (a spare live slice
// taken, the compactor queued) included. The compactor runs between the
// measured stretches here, so that its own allocations (packed slices) are
// not counted; only a deployment's first seconds allocate (its ring, and
// live slices until the compactor gives some back).
func TestObserveSteadyStateAllocatesNothing(t *testing.T) {
	waitCompactorIdle(t)
	startCompactor = func() {} // queued recorders wait for compactQueued below
	t.Cleanup(func() {
		startCompactor = func() { go compactQueued() }
		if compactQueue.running.Load() {
			compactQueued()
		}
	})
	rc := newRecorder()
	// Warm-up: the first request allocates the ring, and the first
	// seconds their live slices until the compactor gives sealed ones back
	// (keepLive+1 of them).
	for s := base; s < base+3; s++ {
		if compactQueue.running.Load() {
			compactQueued()
		}
		record(rc, obs(s, 200, time.Millisecond, false))
	}
	var before, after runtime.MemStats
	var mallocs uint64
	for s := base + 3; s < base+42; s++ {
		if compactQueue.running.Load() {
			compactQueued() // what the background goroutine would do
		}
		runtime.ReadMemStats(&before)
		for i := range 200 {
			rc.Begin()
			rc.Observe(Observation{Now: s*1e9 + int64(i)*4e6, Status: 200 + 300*(i%7/6), Latency: time.Duration(i+1) * time.Millisecond, TTFB: time.Millisecond, Override: i%50 == 0})
		}
		runtime.ReadMemStats(&after)
		mallocs += after.Mallocs - before.Mallocs
	}
	if mallocs != 0 {
		t.Errorf("7,800 observations over 39 seconds allocated %d times, want 0", mallocs)
	}
}

// waitCompactorIdle waits until the background compactor has stopped (it
// stops as soon as no recorder is queued).
func waitCompactorIdle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for compactQueue.running.Load() || compactQueue.head.Load() != nil {
		if time.Now().After(deadline) {
			t.Fatal("the compactor is still running after 10 s")
		}
		runtime.Gosched()
	}
}

// TestIdleAndActiveFootprint: a deployment that never received a request
// costs a few hundred bytes; one with its hour full of the worst traffic
// for packing (bench/memory's fill: 16 requests a second spread over all
// 1159 buckets) keeps well under a megabyte once the compactor sealed it,
// against 8.5 MiB of dense slices before issue 22.
func TestIdleAndActiveFootprint(t *testing.T) {
	const limit = 1 << 20
	size := unsafe.Sizeof(Recorder{})
	t.Logf("Recorder: %d bytes", size)
	if size > 1024 {
		t.Errorf("an idle Recorder is %d bytes, want at most 1 KiB", size)
	}
	reg := NewRegistry()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const n = 8
	for i := range n {
		reg.Recorder("ep", string(rune('a'+i)))
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / n; per > 2048 {
		t.Errorf("allocated %d bytes per idle recorder, want at most 2 KiB", per)
	}

	const active = 4
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range active {
		rc := reg.Recorder("ep", string(rune('a'+i)))
		fillHour(rc, base, 16)
		rc.compact()
	}
	waitCompactorIdle(t)
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := int64(after.HeapAlloc-before.HeapAlloc) / active
	t.Logf("retained per active recorder with its hour full: %d bytes (%.0f KiB)", per, float64(per)/1024)
	if per > limit {
		t.Errorf("an active recorder retains %d bytes, want under %d", per, limit)
	}
	rc := reg.Recorder("ep", "a")
	if got := rc.Window(at(base, 0), time.Hour).Requests; got != 3591*16 {
		t.Errorf("1-h window holds %d, want %d", got, 3591*16)
	}
}

// fillHour is bench/memory's fill: perSecond observations in each second of
// the hour up to last, latencies from 1µs to 1h, shifted every second.
func fillHour(rc *Recorder, last int64, perSecond int) {
	for s := last - 3600 + 1; s <= last; s++ {
		phase := math.Mod(float64(s)*0.618034, 1)
		for j := range perSecond {
			f := (float64(j) + phase) / float64(perSecond)
			lat := time.Duration(float64(time.Microsecond) * math.Pow(float64(time.Hour/time.Microsecond), f))
			record(rc, Observation{Now: s*1e9 + int64(j)*1e9/int64(perSecond), Status: 200, Latency: lat, TTFB: lat / 3})
		}
	}
}

// TestPackedRoundTrip: packing and unpacking gives back the counts, for
// empty, sparse, dense and full bucket arrays and counts of every size; a
// full array of small counts takes at most 2 bytes a bucket.
func TestPackedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for k, fill := range []float64{0, 0.001, 0.05, 0.5, 1} {
		for _, maxCount := range []uint64{1, 127, 16383, math.MaxUint32} {
			var classes [2][numClasses]uint64
			var lat, ttfb [maxBuckets]uint64
			for i := range lat {
				if rng.Float64() < fill {
					lat[i] = 1 + rng.Uint64N(maxCount)
				}
				if rng.Float64() < fill {
					ttfb[i] = 1 + rng.Uint64N(maxCount)
				}
			}
			for i := range classes {
				for j := range classes[i] {
					classes[i][j] = rng.Uint64N(1 << (10 * k))
				}
			}
			b := appendPacked(nil, &classes, &lat, &ttfb)
			// The compactor's packing, which visits the touched buckets
			// only (some touched ones are zero), writes the same bytes.
			p := new(packScratch)
			p.classes, p.lat, p.ttfb = classes, lat, ttfb
			for i := range maxBuckets {
				if lat[i] != 0 || ttfb[i] != 0 || rng.IntN(10) == 0 {
					p.touched[i/64] |= 1 << (i % 64)
				}
			}
			if b2 := p.pack(nil); !slices.Equal(b, b2) {
				t.Fatalf("fill %v max %d: the compactor packs %d bytes, appendPacked %d", fill, maxCount, len(b2), len(b))
			}
			var c2 [2][numClasses]uint64
			var l2, t2 [maxBuckets]uint64
			if err := addPacked(b, &c2, &l2, &t2); err != nil {
				t.Fatalf("fill %v max %d: %v", fill, maxCount, err)
			}
			if c2 != classes || l2 != lat || t2 != ttfb {
				t.Fatalf("fill %v max %d: round trip changed the counts", fill, maxCount)
			}
			if fill == 1 && maxCount <= 127 && len(b) > 2*2*maxBuckets {
				t.Errorf("every bucket full: %d bytes, want at most 2 a bucket (%d)", len(b), 2*2*maxBuckets)
			}
		}
	}
}

// FuzzAddPacked: unpacking arbitrary bytes never panics, and what it
// accepts packs again into bytes that unpack to the same counts.
func FuzzAddPacked(f *testing.F) {
	var classes [2][numClasses]uint64
	var lat, ttfb [maxBuckets]uint64
	f.Add(appendPacked(nil, &classes, &lat, &ttfb))
	classes[0][2], lat[0], lat[1], lat[700], ttfb[maxBuckets-1] = 3, 1, 2, 300, 1<<40
	f.Add(appendPacked(nil, &classes, &lat, &ttfb))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var c1 [2][numClasses]uint64
		var l1, t1 [maxBuckets]uint64
		if addPacked(b, &c1, &l1, &t1) != nil {
			var l32, t32 [maxBuckets]uint32
			_ = addPacked(b, &c1, &l32, &t32)
			return
		}
		b2 := appendPacked(nil, &c1, &l1, &t1)
		var c2 [2][numClasses]uint64
		var l2, t2 [maxBuckets]uint64
		if err := addPacked(b2, &c2, &l2, &t2); err != nil {
			t.Fatalf("repacked bytes do not unpack: %v", err)
		}
		if c1 != c2 || l1 != l2 || t1 != t2 {
			t.Fatal("repacking changed the counts")
		}
	})
}

// TestRotationOfUnsealedSlices: when a second's slot is taken by the second
// 600 s later while its live slice is not sealed yet (the compactor keeps
// the newest two live), the slice moves to the sealed stack and from there
// into its 10-s slice, while readers of the hour run: every observation is
// counted once. Writers move together, 600 s a step, so none is late.
func TestRotationOfUnsealedSlices(t *testing.T) {
	const writers, per, steps = 4, 200, 20
	rc := newRecorder()
	sec := func(k int) int64 { return base + 600*int64(k) + 3 }
	stop := make(chan struct{})
	var rwg sync.WaitGroup
	rwg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			now := at(rc.newest.Load()-1, 0)
			rc.Window(now, time.Hour)
			rc.SumSlices(now.Add(-time.Hour), now, true)
		}
	})
	for k := range steps {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range per {
					record(rc, obs(sec(k), 200+300*((w+i)%2), time.Duration(1+i)*time.Millisecond, false))
				}
			})
		}
		wg.Wait()
	}
	close(stop)
	rwg.Wait()
	if n := rc.late.Load(); n != 0 {
		t.Fatalf("%d observations late, want none", n)
	}
	if rc.pushes.Load() == 0 {
		t.Error("no live slice was rotated out unsealed: the test did not test that")
	}
	// The hour up to the last step holds the last six steps (the seventh
	// back is 3,600 s before: outside).
	if got, want := rc.Window(at(sec(steps-1), 0), time.Hour).Requests, uint64(6*writers*per); got != want {
		t.Errorf("hour holds %d, want %d", got, want)
	}
	for k := steps - 6; k < steps; k++ {
		s := rc.SumSlices(at(sec(k)-1, 0), at(sec(k), 0), false)
		if k == steps-1 && s.Requests != writers*per {
			t.Errorf("step %d's 1-s slice holds %d, want %d", k, s.Requests, writers*per)
		}
		c := rc.SumSlices(at(sec(k)-4, 0), at(sec(k)+6, 0), true) // its 10-s slice
		if c.Requests != writers*per || c.Errors != writers*per/2 {
			t.Errorf("step %d's 10-s slice holds %d requests, %d errors; want %d, %d", k, c.Requests, c.Errors, writers*per, writers*per/2)
		}
	}
}
