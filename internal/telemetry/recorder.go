package telemetry

import (
	mathbits "math/bits"
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
// safe for concurrent use, lock-free in the common case and never allocate;
// the memory is allocated once, when the Recorder is created.
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

	fine   [fineSlices]slot   // slice of second s is fine[s%fineSlices]
	coarse [coarseSlices]slot // slice of 10 s c is coarse[c%coarseSlices]
}

func newRecorder() *Recorder { return new(Recorder) }

// Begin counts a live request as in flight. Every Begin must be followed by
// exactly one Observe.
func (rc *Recorder) Begin() { rc.inFlight.Add(1) }

// Observe ends a request started with Begin and records it: all-time
// counters and histograms, and the 1-second and 10-second slices of o.Now.
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
	li, ti := bucketOf(lat), bucketOf(ttfb)
	if !rc.fine[sec%fineSlices].record(uint64(sec), class, o.Override, li, ti) {
		rc.late.Add(1)
	}
	c := sec / coarseWidth
	rc.coarse[c%coarseSlices].record(uint64(c), class, o.Override, li, ti)
	if s := rc.signal.Load(); s != nil && !o.Override {
		s.observed() // after recording: the reader it wakes finds the request
	}
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

// A slot is one position of a slice ring; its guard makes every
// observation land exactly once, in its own slice (see timeslot.Guard).
// The latency and TTFB buckets hold split-routed requests only: a request
// any client can pin to a deployment with X-Model-Deployment must not move
// what the rollout gates read (a second pair of arrays for pinned requests
// would double the ring's memory for manual checks).
type slot struct {
	guard   timeslot.Guard
	classes [2][numClasses]atomic.Uint64 // [0] split-routed, [1] override
	lat     [maxBuckets]atomic.Uint32    // split-routed only
	ttfb    [maxBuckets]atomic.Uint32    // split-routed only
	// touched has bit i set once lat[i] or ttfb[i] may be non-zero (set
	// before the bucket is added to), so that reading and clearing a slot
	// visit the few buckets its requests fell in, not all maxBuckets: a
	// look of the rollout controller reads the open second's slots ten
	// times a second or more.
	touched [touchedWords]atomic.Uint64
}

// touchedWords is the length of slot.touched: a bit per bucket.
const touchedWords = (maxBuckets + 63) / 64

// touch marks bucket i as possibly non-zero. The load first keeps the
// common case (already marked) a read.
func (s *slot) touch(i int) {
	w, bit := &s.touched[i/64], uint64(1)<<(i%64)
	if w.Load()&bit == 0 {
		w.Or(bit)
	}
}

// loadBuckets copies the slot's latency and time-to-first-byte buckets
// into lat and ttfb: the buckets marked touched, zeros elsewhere.
func (s *slot) loadBuckets(lat, ttfb *[maxBuckets]uint32) {
	clear(lat[:])
	clear(ttfb[:])
	for w := range s.touched {
		for bits := s.touched[w].Load(); bits != 0; bits &= bits - 1 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			lat[i] = s.lat[i].Load()
			ttfb[i] = s.ttfb[i].Load()
		}
	}
}

// record adds one request to the slot for epoch. It returns false, having
// recorded nothing, when the slot already holds a newer epoch.
func (s *slot) record(epoch uint64, class int, override bool, li, ti int) bool {
	if !s.guard.Enter(epoch, s.clear) {
		return false
	}
	if override {
		s.classes[1][class].Add(1)
	} else {
		s.classes[0][class].Add(1)
		s.touch(li)
		s.touch(ti)
		s.lat[li].Add(1)
		s.ttfb[ti].Add(1)
	}
	s.guard.Leave()
	return true
}

// clear zeroes the counts: of the buckets, those marked touched.
func (s *slot) clear() {
	for i := range s.classes {
		for j := range s.classes[i] {
			s.classes[i][j].Store(0)
		}
	}
	for w := range s.touched {
		for bits := s.touched[w].Load(); bits != 0; bits &= bits - 1 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			s.lat[i].Store(0)
			s.ttfb[i].Store(0)
		}
		s.touched[w].Store(0)
	}
}
