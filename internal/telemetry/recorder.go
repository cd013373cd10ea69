package telemetry

import (
	mathbits "math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/timeslot"
)

const (
	// fineSlices 1-second slices keep the last 10 minutes at the resolution
	// the rollout analysis counts events in.
	fineSlices = 600
	// coarseWidth is the length of a coarse slice in seconds; coarseSlices of
	// them cover the whole hour, so any window up to 1h is a merge.
	coarseWidth  = 10
	coarseSlices = 360
)

// Status classes index the per-class counters: classes[2] counts 2xx.
// Index 0 is unused, so that the class is simply status/100.
const numClasses = 6

// promBounds are the Prometheus histogram upper bounds (le), in
// nanoseconds so that the bucket a request falls in is an exact integer
// comparison, not derived from the sketch.
var promBounds = [...]int64{
	5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9, 30e9, 60e9,
}

// Observation is one finished live request as the proxy saw it. Shadow
// copies are never observed here; they belong to the shadow report.
type Observation struct {
	Now      int64         // unix nanoseconds when the request finished; picks the slice
	Status   int           // status code sent to the client; outside 100..599 counts as 5xx
	Latency  time.Duration // total, until the last body byte
	TTFB     time.Duration // until response headers / first byte
	Override bool          // routed by the X-Model-Deployment header, not by the split: counted, never in a window's sketches
}

// Recorder holds one deployment's measurements: all-time counters for
// Prometheus and an hour of time slices for windows. Begin and Observe are
// safe for concurrent use, lock-free in the common case and allocation-free
// in steady state (see doc.go, "Time slices and memory", for the two
// exceptions: a deployment's first request, and a compactor that lags).
type Recorder struct {
	inFlight atomic.Int64

	// All-time counters, read by the Prometheus collector at scrape time.
	classes    [numClasses]atomic.Uint64
	overrides  atomic.Uint64
	latBuckets [len(promBounds) + 1]atomic.Uint64 // non-cumulative; last is +Inf
	ttfbBucket [len(promBounds) + 1]atomic.Uint64
	latSum     atomic.Uint64 // nanoseconds
	ttfbSum    atomic.Uint64 // nanoseconds

	// late counts observations dropped because their slice had already
	// been reused for newer data (they finished over 10 minutes "ago").
	late atomic.Uint64

	// signal, when set, is raised every few split-routed requests (Tail's
	// readers look when the data moves).
	signal atomic.Pointer[Signal]

	// ring is the time slices, allocated on the first observation: an idle
	// deployment has none.
	ring atomic.Pointer[ring]
	// newest is one more than the newest second observed: the recorder's
	// own clock, which decides what the compactor seals (writers' clocks,
	// not the wall clock, so that tests and replays of past times behave
	// as live traffic does).
	newest atomic.Int64
	// sealed is a stack (linked by live.next) of live slices pushed out of
	// their slot by a newer second before the compactor sealed them; their
	// counts still belong to the 10-s tier.
	sealed atomic.Pointer[live]
	// pushes counts the slices pushed on sealed (after each push): a
	// reader of the 10-s tier rereads a period when it moved.
	pushes atomic.Uint64
	// spares are cleared live slices for writers to take when a second
	// starts: the compactor refills them, so that Observe allocates none.
	spares [numSpares]atomic.Pointer[live]
	// lives counts the live slices the recorder has (attached, sealed but
	// not folded yet, or spare), at most maxLives but for a safety valve.
	lives atomic.Int64
	// queued and nextQueued put the recorder on the compactor's queue.
	queued     atomic.Bool
	nextQueued atomic.Pointer[Recorder]

	// mu serialises the compactor and the readers: it guards the packed
	// slices (slot.packed, ring.coarse). Writers never take it.
	mu sync.Mutex
}

// numSpares is how many cleared live slices a Recorder keeps for writers:
// in steady traffic one is taken and one given back each second.
const numSpares = 2

// maxLives bounds a recorder's live slices. Live traffic needs keepLive+1
// and a spare or two; only a writer that opens seconds faster than the
// compactor can seal them (a replay of past traffic, as the benchmarks'
// fills do: an hour in a fraction of a second) reaches it, and then waits
// for the compactor to give one back rather than allocating a slice per
// second, garbage that would pile up until the next collection. Writers
// into older seconds (stragglers, out-of-order replays) never wait; they
// allocate if no spare is left.
const maxLives = 8

// maxLiveWait is the safety valve of that wait: after so many yields the
// writer allocates anyway.
const maxLiveWait = 100_000

// keepLive is how many seconds before the newest one stay live (dense,
// written in place) before the compactor seals them: a request is recorded
// a moment after the clock reading that picks its second, so the previous
// second still receives a few. A later straggler is not lost: it opens a
// new live slice for its second, sealed in turn and added to what was.
const keepLive = 1

func newRecorder() *Recorder { return new(Recorder) }

// Begin counts a live request as in flight. Every Begin must be followed by
// exactly one Observe.
func (rc *Recorder) Begin() { rc.inFlight.Add(1) }

// Observe ends a request started with Begin and records it: all-time
// counters and histograms, and the slice of the second o.Now.
func (rc *Recorder) Observe(o Observation) {
	rc.inFlight.Add(-1)
	class := statusClass(o.Status)
	lat, ttfb := max(o.Latency, 0), max(o.TTFB, 0)
	rc.classes[class].Add(1)
	if o.Override {
		rc.overrides.Add(1)
	}
	rc.latBuckets[promBucket(lat)].Add(1)
	rc.ttfbBucket[promBucket(ttfb)].Add(1)
	rc.latSum.Add(uint64(lat))
	rc.ttfbSum.Add(uint64(ttfb))

	if o.Now < 0 {
		rc.late.Add(1) // before 1970: no slice can hold it
		return
	}
	sec := o.Now / int64(time.Second)
	r := rc.ring.Load()
	if r == nil {
		r = rc.newRing()
	}
	s := &r.slots[sec%fineSlices]
	if !s.guard.Enter(uint64(sec), func() { rc.rotate(s) }) {
		rc.late.Add(1)
		return
	}
	d := s.live.Load()
	if d == nil {
		d = rc.attach(s, sec)
	}
	d.record(class, o.Override, bucketOf(lat), bucketOf(ttfb))
	s.guard.Leave()
	for {
		n := rc.newest.Load()
		if sec+1 <= n {
			break
		}
		if rc.newest.CompareAndSwap(n, sec+1) {
			rc.kick() // a new second: the ones before it can be sealed
			break
		}
	}
	if s := rc.signal.Load(); s != nil && !o.Override {
		s.observed() // after recording: the reader it wakes finds the request
	}
}

// newRing allocates the recorder's slices on its first observation: the
// one allocation a deployment's recording makes, once (39 KiB).
func (rc *Recorder) newRing() *ring {
	rc.ring.CompareAndSwap(nil, new(ring))
	return rc.ring.Load()
}

// rotate runs when a writer of a newer second takes slot s (no writer
// inside): the older second's live counts, if not yet sealed, go on the
// sealed stack for the 10-s tier; its 1-s slice is gone (it is 600 s old).
func (rc *Recorder) rotate(s *slot) {
	if d := s.live.Swap(nil); d != nil {
		rc.pushSealed(d)
	}
}

// attach gives slot s, held for second sec, a live slice to write into: a
// spare, or a new one when the compactor has not given any back yet.
func (rc *Recorder) attach(s *slot, sec int64) *live {
	var d *live
	for wait := 0; d == nil; wait++ {
		for i := range rc.spares {
			if d = rc.spares[i].Swap(nil); d != nil {
				break
			}
		}
		// Only a writer opening the newest second waits: one that writes
		// into an older second (already sealed: a straggler) would wait
		// for the compactor to seal seconds no other writer moves on from.
		if d == nil && (rc.lives.Load() < maxLives || sec+1 < rc.newest.Load() || wait == maxLiveWait) {
			rc.lives.Add(1)
			d = new(live)
		}
		if d == nil {
			if d = s.live.Load(); d != nil {
				return d // another writer of this second attached one meanwhile
			}
			rc.kick()
			runtime.Gosched()
		}
	}
	d.epoch = sec
	if s.live.CompareAndSwap(nil, d) {
		return d
	}
	rc.giveSpare(d) // another writer attached one first; d is still clear
	return s.live.Load()
}

// giveSpare keeps a cleared live slice for writers, if there is room;
// otherwise it is dropped.
func (rc *Recorder) giveSpare(d *live) {
	for i := range rc.spares {
		if rc.spares[i].CompareAndSwap(nil, d) {
			return
		}
	}
	rc.lives.Add(-1)
}

func (rc *Recorder) pushSealed(d *live) {
	for {
		h := rc.sealed.Load()
		d.next = h
		if rc.sealed.CompareAndSwap(h, d) {
			break
		}
	}
	rc.pushes.Add(1)
	rc.kick()
}

// statusClass maps a status code to its class 1..5. Anything outside
// 100..599 is a server-side fault of the response, so it counts as 5xx.
func statusClass(code int) int {
	if code < 100 || code > 599 {
		return 5
	}
	return code / 100
}

// promBucket returns the index of the first bound >= d (le is inclusive),
// or len(promBounds) for +Inf.
func promBucket(d time.Duration) int {
	for i, b := range promBounds {
		if int64(d) <= b {
			return i
		}
	}
	return len(promBounds)
}

// A ring holds a deployment's time slices: 600 slots of 1 s (the last ten
// minutes) and 360 packed 10-s slices (the hour).
type ring struct {
	slots  [fineSlices]slot
	coarse [coarseSlices]packedSlice // of 10-s period c at coarse[c%coarseSlices]; under Recorder.mu
}

// A slot is the 1-s slice of the second its guard holds: counts still being
// written in a live slice, and counts sealed by the compactor in packed
// form (both added up when read). Its guard makes every observation land
// exactly once, in its own second (see timeslot.Guard).
type slot struct {
	guard  timeslot.Guard
	live   atomic.Pointer[live] // nil when nothing is being written
	packed packedSlice          // under Recorder.mu; the guard's second's only if packed.epoch says so
}

// A packedSlice is a sealed slice in compact form (packed.go).
type packedSlice struct {
	epoch int64 // second (or 10-s period) + 1; 0: none
	data  []byte
}

// live is a slice being written: dense atomic counts, one add per sketch.
// The latency and TTFB buckets hold split-routed requests only: a request
// any client can pin to a deployment with X-Model-Deployment must not move
// what the rollout gates read.
type live struct {
	classes [2][numClasses]atomic.Uint64 // [0] split-routed, [1] override
	lat     [maxBuckets]atomic.Uint32    // split-routed only
	ttfb    [maxBuckets]atomic.Uint32    // split-routed only
	// touched has bit i set once lat[i] or ttfb[i] may be non-zero (set
	// before the bucket is added to), so that reading, packing and clearing
	// visit the few buckets its requests fell in, not all maxBuckets.
	touched [touchedWords]atomic.Uint64
	epoch   int64 // the second it holds; set before it is published
	next    *live // on Recorder.sealed; set before it is published
}

// touchedWords is the length of live.touched: a bit per bucket.
const touchedWords = (maxBuckets + 63) / 64

// touch marks bucket i as possibly non-zero. The load first keeps the
// common case (already marked) a read.
func (d *live) touch(i int) {
	w, bit := &d.touched[i/64], uint64(1)<<(i%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

func (d *live) record(class int, override bool, li, ti int) {
	if override {
		d.classes[1][class].Add(1)
		return
	}
	d.classes[0][class].Add(1)
	d.touch(li)
	d.touch(ti)
	d.lat[li].Add(1)
	d.ttfb[ti].Add(1)
}

// addTo adds the live counts to c, buckets first: a request's class is
// added before its buckets, so a copy taken while writers add holds no
// latency without its class (see Tail.Read).
func (d *live) addTo(c *secondCopy) {
	for w := range d.touched {
		for bits := d.touched[w].Load(); bits != 0; bits &= bits - 1 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			c.lat[i] += d.lat[i].Load()
			c.ttfb[i] += d.ttfb[i].Load()
		}
	}
	for i := range d.classes {
		for j := range d.classes[i] {
			c.classes[i][j] += d.classes[i][j].Load()
		}
	}
}

// clear zeroes the counts (of the buckets, those marked touched) once no
// writer can reach d, for reuse.
func (d *live) clear() {
	for i := range d.classes {
		for j := range d.classes[i] {
			d.classes[i][j].Store(0)
		}
	}
	for w := range d.touched {
		for bits := d.touched[w].Load(); bits != 0; bits &= bits - 1 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			d.lat[i].Store(0)
			d.ttfb[i].Store(0)
		}
		d.touched[w].Store(0)
	}
	d.next = nil
}
