package shadow

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelgate/modelgate/internal/telemetry"
	"github.com/modelgate/modelgate/internal/timeslot"
)

// The slice layout follows telemetry's: 1-second slices for the last 10
// minutes, at the resolution the rollout's shadow gate counts in, and
// 10-second slices covering the hour, so that any window up to 1h is a sum.
const (
	fineSlices   = 600
	coarseWidth  = 10
	coarseSlices = 360

	// maxSamples bounds the mismatch samples kept per shadow.
	maxSamples = 20
	// retention is how long the statistics of a removed shadow are kept,
	// so that a report window still covers its last copies.
	retention = time.Hour + coarseWidth*time.Second
)

// kind is what happened to a copy; each is counted per shadow.
type kind uint8

// Every copy a shadow is given (mirrored) ends in exactly one of dropped,
// skipped, matched, mismatched, notCompared, errored, timedOut; sent
// counts the copies that went out to a backend.
const (
	kindMirrored    kind = iota // submitted to the shadow
	kindDropped                 // not sent: queue full, or the shadow was reconfigured or stopped first
	kindSkipped                 // not sent: request body over the capture cap
	kindSent                    // sent to a backend
	kindMatched                 // compared, answers agree
	kindMismatched              // compared, answers differ
	kindNotCompared             // answered, but the comparator could not compare (result.Compared false)
	kindError                   // no answer: transport failure
	kindTimeout                 // no (whole) answer within the shadow timeout
	numKinds
)

// kindLabel is the Prometheus result label of each kind ("" for none).
var kindLabel = [numKinds]string{
	kindMirrored:    "mirrored",
	kindDropped:     "dropped",
	kindSkipped:     "skipped",
	kindSent:        "",
	kindMatched:     "matched",
	kindMismatched:  "mismatched",
	kindNotCompared: "not_compared",
	kindError:       "error",
	kindTimeout:     "timeout",
}

// promBounds are the shadow duration histogram's upper bounds (le), in
// nanoseconds, the same as telemetry's request duration histogram.
var promBounds = [...]int64{
	5e6, 10e6, 25e6, 50e6, 100e6, 250e6, 500e6,
	1e9, 2.5e9, 5e9, 10e9, 30e9, 60e9,
}

// stats holds one shadow's measurements: all-time counters for Prometheus,
// an hour of per-second counters (lock-free, so Submit never waits on a
// lock held by a reader or a worker), and, under mu, the latency sketches,
// mismatch samples and the last detected protocol, which only workers
// write.
type stats struct {
	total      [numKinds]atomic.Uint64
	durBuckets [len(promBounds) + 1]atomic.Uint64 // non-cumulative; last is +Inf
	durSum     atomic.Uint64                      // nanoseconds

	fine   [fineSlices]slot   // second s is fine[s%fineSlices]
	coarse [coarseSlices]slot // 10-s slice c is coarse[c%coarseSlices]

	mu        sync.Mutex
	latFine   [fineSlices]latSlot
	latCoarse [coarseSlices]latSlot
	samples   [maxSamples]Mismatch // a ring; next is the oldest once full
	next      int
	nSamples  int
	protocol  string
	lastErr   *ErrorSample
	removedAt time.Time // when the shadow was removed; guarded by Manager.mu
}

// latSlot holds the latency sketches of one slice: shadow and live latency
// of the same compared requests.
type latSlot struct {
	epoch        int64 // slice number plus one; 0: never used
	shadow, live telemetry.Sketch
}

// count adds one to each of kinds, all-time and in the slices of now.
func (s *stats) count(now time.Time, kinds ...kind) {
	for _, k := range kinds {
		s.total[k].Add(1)
	}
	sec := now.Unix()
	if sec < 0 {
		return // before 1970: no slice holds it
	}
	s.fine[sec%fineSlices].add(uint64(sec), kinds)
	c := sec / coarseWidth
	s.coarse[c%coarseSlices].add(uint64(c), kinds)
}

// observeDuration adds a shadow answer's duration to the histogram.
func (s *stats) observeDuration(d time.Duration) {
	d = max(d, 0)
	i := len(promBounds)
	for j, b := range promBounds {
		if int64(d) <= b {
			i = j
			break
		}
	}
	s.durBuckets[i].Add(1)
	s.durSum.Add(uint64(d))
}

// compared records the latencies of a compared request and the protocol
// the comparator used.
func (s *stats) compared(now time.Time, shadowLat, liveLat time.Duration, protocol string) {
	sec := now.Unix()
	s.mu.Lock()
	defer s.mu.Unlock()
	if protocol != "" && (protocol != "auto" || s.protocol == "") {
		s.protocol = protocol // "auto" only when nothing better was seen
	}
	if sec < 0 {
		return
	}
	s.latFine[sec%fineSlices].add(sec+1, shadowLat, liveLat)
	c := sec / coarseWidth
	s.latCoarse[c%coarseSlices].add(c+1, shadowLat, liveLat)
}

func (l *latSlot) add(epoch int64, shadowLat, liveLat time.Duration) {
	if l.epoch != epoch {
		if l.epoch > epoch {
			return // a newer slice took the place: this one has aged out
		}
		*l = latSlot{epoch: epoch}
	}
	l.shadow.Add(shadowLat, 1)
	l.live.Add(liveLat, 1)
}

// sample keeps m in the ring of mismatch samples.
func (s *stats) sample(m Mismatch) {
	s.mu.Lock()
	s.samples[s.next] = m
	s.next = (s.next + 1) % maxSamples
	s.nSamples = min(s.nSamples+1, maxSamples)
	s.mu.Unlock()
}

// failed remembers the last shadow request that got no answer.
func (s *stats) failed(e ErrorSample) {
	s.mu.Lock()
	s.lastErr = &e
	s.mu.Unlock()
}

// totals are a shadow's counts (and latencies) over some slices.
type totals struct {
	n            [numKinds]uint64
	shadow, live telemetry.Sketch
}

// window sums the slices whose start lies in (lo, hi] (unix nanoseconds),
// with telemetry's edge rule: 1-s slices for the 600 seconds up to hi,
// 10-s slices (aligned to multiples of 10 s) before that, the old edge
// moving up to the next 10-s boundary. Latencies are merged when latency
// is set.
func (s *stats) window(lo, hi int64, latency bool) totals {
	var t totals
	first, last := timeslot.SecondsIn(lo, hi)
	var fine, coarse [2]int64 // inclusive ranges of slice numbers; empty when [0] > [1]
	fine = [2]int64{first, last}
	coarse = [2]int64{1, 0}
	if fineFrom := last - fineSlices + 1; first < fineFrom {
		boundary := timeslot.CeilDiv(fineFrom, coarseWidth)
		coarse = [2]int64{timeslot.CeilDiv(first, coarseWidth), boundary - 1}
		fine[0] = boundary * coarseWidth
	}
	fine[0], coarse[0] = max(fine[0], 0), max(coarse[0], 0)
	var buf [numKinds]uint64
	for c := coarse[0]; c <= coarse[1]; c++ {
		if s.coarse[c%coarseSlices].read(uint64(c), &buf) {
			t.addCounts(&buf)
		}
	}
	for sec := fine[0]; sec <= fine[1]; sec++ {
		if s.fine[sec%fineSlices].read(uint64(sec), &buf) {
			t.addCounts(&buf)
		}
	}
	if !latency {
		return t
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := coarse[0]; c <= coarse[1]; c++ {
		t.addLatency(&s.latCoarse[c%coarseSlices], c+1)
	}
	for sec := fine[0]; sec <= fine[1]; sec++ {
		t.addLatency(&s.latFine[sec%fineSlices], sec+1)
	}
	return t
}

func (t *totals) addCounts(c *[numKinds]uint64) {
	for i, v := range c {
		t.n[i] += v
	}
}

func (t *totals) addLatency(l *latSlot, epoch int64) {
	if l.epoch == epoch {
		// Merge never writes into the storage it reads, so the merged
		// sketches stay valid after mu is released.
		t.shadow.Merge(l.shadow)
		t.live.Merge(l.live)
	}
}

// A slot is one position of a ring of per-second (or per-10-s) counters;
// its guard makes every count land exactly once, in its own slice, and
// keeps a slice reused for newer data from being read as older data (see
// timeslot.Guard).
type slot struct {
	guard timeslot.Guard
	n     [numKinds]atomic.Uint64
}

// add counts kinds in the slot for epoch; it does nothing if the slot
// already holds a newer epoch.
func (s *slot) add(epoch uint64, kinds []kind) {
	if !s.guard.Enter(epoch, s.clear) {
		return
	}
	for _, k := range kinds {
		s.n[k].Add(1)
	}
	s.guard.Leave()
}

func (s *slot) clear() {
	for i := range s.n {
		s.n[i].Store(0)
	}
}

// read copies the slot's counts for epoch into c. It returns false when
// the slot holds another epoch, or was reset for a newer one while being
// read (the copy is torn and discarded: its data has just aged out).
func (s *slot) read(epoch uint64, c *[numKinds]uint64) bool {
	if !s.guard.Holds(epoch) {
		return false
	}
	for i := range s.n {
		c[i] = s.n[i].Load()
	}
	return s.guard.Holds(epoch)
}
