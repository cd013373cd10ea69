package telemetry

import (
	"runtime"
	"sync"
	"time"

	"github.com/modelgate/modelgate/internal/timeslot"
)

// Summary is one deployment's measurements over a window: every live
// request that finished in it is counted, override-routed ones included;
// the latency sketches hold split-routed requests only.
type Summary struct {
	Window           time.Duration      `json:"window_ns"`         // the window length asked for
	Requests         uint64             `json:"requests"`          // live requests, override-routed included
	OverrideRequests uint64             `json:"override_requests"` // routed by the X-Model-Deployment header
	Status           [numClasses]uint64 `json:"status"`            // by status class: Status[2] counts 2xx; Status[0] is unused
	Errors           uint64             `json:"errors"`            // 5xx, transport failures included (the proxy maps them to 502/503/504)
	ClientErrors     uint64             `json:"client_errors"`     // 4xx
	SplitErrors      uint64             `json:"split_errors"`      // 5xx among split-routed requests, which gates judge
	InFlight         int64              `json:"in_flight"`         // requests in flight when the summary was taken
	Latency          Sketch             `json:"latency"`           // until the last body byte; split-routed requests only
	TTFB             Sketch             `json:"ttfb"`              // until the response headers; split-routed requests only
}

// SplitRequests returns the requests routed by the split, the ones the
// measured share and the rollout gates count.
func (s Summary) SplitRequests() uint64 { return s.Requests - s.OverrideRequests }

// Merge adds o's counts and sketches to s; s keeps its Window unless it has
// none. It combines summaries of the same window, e.g. of several replicas.
func (s *Summary) Merge(o Summary) {
	if s.Window == 0 {
		s.Window = o.Window
	}
	s.Requests += o.Requests
	s.OverrideRequests += o.OverrideRequests
	for i := range s.Status {
		s.Status[i] += o.Status[i]
	}
	s.Errors += o.Errors
	s.ClientErrors += o.ClientErrors
	s.SplitErrors += o.SplitErrors
	s.InFlight += o.InFlight
	s.Latency.Merge(o.Latency)
	s.TTFB.Merge(o.TTFB)
}

// AddSlice adds one 1-second slice's counts and sketches to s, so that a
// window can grow by the slices read since it was last read instead of
// being merged again whole. A slice keeps no per-class counts but 4xx and
// 5xx, so Status holds only those two classes of what was added.
func (s *Summary) AddSlice(sl Slice) {
	s.Requests += sl.Requests
	s.OverrideRequests += sl.Requests - sl.SplitRequests
	s.Errors += sl.Errors
	s.ClientErrors += sl.ClientErrors
	s.Status[5], s.Status[4] = s.Errors, s.ClientErrors
	s.SplitErrors += sl.SplitErrors
	s.Latency.Merge(sl.Latency)
	s.TTFB.Merge(sl.TTFB)
}

// Slice is one second of one deployment's measurements, or the part of one
// a Tail read.
type Slice struct {
	Start time.Time `json:"start"` // the slice covers [Start, Start+1s)
	// Span is the time the slice's requests finished in: 1 s for a whole
	// slice, less for the part of one a Tail returned.
	Span time.Duration `json:"span_ns"`
	// Open is set on the part of a second that had not ended when read: a
	// Tail's next Read returns more of the same second.
	Open              bool   `json:"open,omitempty"`
	Requests          uint64 `json:"requests"`            // live requests, override-routed included
	SplitRequests     uint64 `json:"split_requests"`      // routed by the split (not by the override header)
	Errors            uint64 `json:"errors"`              // 5xx
	ClientErrors      uint64 `json:"client_errors"`       // 4xx
	SplitErrors       uint64 `json:"split_errors"`        // 5xx among split-routed requests
	SplitClientErrors uint64 `json:"split_client_errors"` // 4xx among split-routed requests
	Latency           Sketch `json:"latency"`             // the split-routed requests of the slice
	TTFB              Sketch `json:"ttfb"`                // the split-routed requests of the slice
}

// secondCopy is a copy of one second's counts: its packed part and its
// live part added up.
type secondCopy struct {
	classes [2][numClasses]uint64
	lat     [maxBuckets]uint32
	ttfb    [maxBuckets]uint32
}

// readFine sets c to second e's counts: the packed part the compactor
// sealed and the live part being written. It returns false (c then holds
// nothing of use) when the slot holds another second, or was taken for a
// newer one while being read (its data aged out of the 1-s tier). The
// caller holds rc.mu, so the packed part and which live slices exist do
// not change but by writers.
func (r *ring) readFine(e int64, c *secondCopy) bool {
	*c = secondCopy{}
	s := &r.slots[e%fineSlices]
	if !s.guard.Holds(uint64(e)) {
		return false
	}
	if s.packed.epoch == e+1 {
		_ = addPacked(s.packed.data, &c.classes, &c.lat, &c.ttfb) // our own bytes: they decode
	}
	if d := s.live.Load(); d != nil {
		d.addTo(c)
	}
	return s.guard.Holds(uint64(e))
}

// readFineClasses is readFine's status-class counts alone.
func (r *ring) readFineClasses(e int64) (classes [2][numClasses]uint64, ok bool) {
	s := &r.slots[e%fineSlices]
	if !s.guard.Holds(uint64(e)) {
		return classes, false
	}
	if s.packed.epoch == e+1 {
		var lat, ttfb [maxBuckets]uint32 // not read: unpacking them is cheap next to a copy
		_ = addPacked(s.packed.data, &classes, &lat, &ttfb)
	}
	if d := s.live.Load(); d != nil {
		for i := range d.classes {
			for j := range d.classes[i] {
				classes[i][j] += d.classes[i][j].Load()
			}
		}
	}
	return classes, s.guard.Holds(uint64(e))
}

// windowAccum sums seconds and 10-s periods into a Summary.
type windowAccum struct {
	copy    secondCopy
	classes [2][numClasses]uint64
	lat     denseSketch
	ttfb    denseSketch
}

func (a *windowAccum) addCopy(c *secondCopy) {
	for i := range a.classes {
		for j := range a.classes[i] {
			a.classes[i][j] += c.classes[i][j]
		}
	}
	for i := range a.lat {
		a.lat[i] += uint64(c.lat[i])
		a.ttfb[i] += uint64(c.ttfb[i])
	}
}

// livePeriods returns the 10-s periods of the live slices (usually one or
// two): a reader of the 10-s tier must know which ring positions they
// take before the compactor folds them in.
func (r *ring) livePeriods() []int64 {
	var out []int64
	for i := range r.slots {
		if d := r.slots[i].live.Load(); d != nil {
			out = append(out, timeslot.FloorDiv(d.epoch, coarseWidth))
		}
	}
	return out
}

// addFine adds second e's 1-s slice.
func (a *windowAccum) addFine(r *ring, e int64) {
	if r.readFine(e, &a.copy) {
		a.addCopy(&a.copy)
	}
}

// addCoarse adds 10-s period c: its packed slice plus the live parts of
// its seconds not sealed yet. The caller holds rc.mu. A live slice a
// writer pushes out of its slot meanwhile moves to the sealed stack, and
// from there (drainLocked) into the packed slice: so the period is read
// again whenever a push happened while it was read, lest a slice be
// counted twice or not at all.
func (a *windowAccum) addCoarse(rc *Recorder, r *ring, c int64, live []int64) {
	// A period whose ring position a newer one took is gone, as in a ring
	// written at once: the newer one may still be live, not folded yet.
	for _, p := range live {
		if p > c && p%coarseSlices == c%coarseSlices {
			return
		}
	}
	for {
		pushes := rc.pushes.Load()
		rc.drainLocked(r)
		a.copy = secondCopy{}
		settled := true
		for e := c * coarseWidth; e < (c+1)*coarseWidth && settled; e++ {
			s := &r.slots[e%fineSlices]
			if !s.guard.Settled() {
				settled = false // a writer is moving this slot's live slice
				break
			}
			d := s.live.Load()
			if d == nil || d.epoch != e {
				continue
			}
			d.addTo(&a.copy)
			settled = s.guard.Holds(uint64(e))
		}
		if !settled || rc.pushes.Load() != pushes {
			runtime.Gosched()
			continue
		}
		if cs := &r.coarse[c%coarseSlices]; cs.epoch == c+1 {
			_ = addPacked(cs.data, &a.classes, (*[maxBuckets]uint64)(&a.lat), (*[maxBuckets]uint64)(&a.ttfb))
		}
		a.addCopy(&a.copy)
		return
	}
}

// Window summarises the requests that finished in the window ending at now.
//
// Edge rule: the window is the merge of the slices whose start lies in
// (now-window, now]. Slices are 1 s long for the 600 seconds up to now and
// 10 s long (aligned to multiples of 10 s of unix time) before that, so:
//   - a window up to 10 min holds exactly the seconds s with
//     now-window < s <= now, the current, partial second included;
//   - a longer window takes the 1-s slices from the first 10-s boundary
//     inside the last 600 s, and 10-s slices before it; its old edge moves
//     up to the next 10-s boundary, so it can cover up to 9 s less.
//
// Window validates nothing; callers keep window within 10s..1h. Data older
// than an hour is gone, and a slice reused for newer data is never read
// as older data.
func (rc *Recorder) Window(now time.Time, window time.Duration) Summary {
	hi := now.UnixNano()
	first, last := timeslot.SecondsIn(hi-int64(window), hi)
	a := getAccum()
	defer accums.Put(a)
	if r := rc.ring.Load(); r != nil {
		rc.mu.Lock()
		fineFrom := last - fineSlices + 1
		if first < fineFrom {
			boundary := timeslot.CeilDiv(fineFrom, coarseWidth) // first coarse epoch read from the fine ring
			live := r.livePeriods()
			for c := max(timeslot.CeilDiv(first, coarseWidth), 0); c < boundary; c++ {
				a.addCoarse(rc, r, c, live)
			}
			first = boundary * coarseWidth
		}
		for s := max(first, 0); s <= last; s++ {
			a.addFine(r, s)
		}
		rc.mu.Unlock()
	}
	return a.summary(window, rc.inFlight.Load())
}

// SumSlices sums the 1-second slices (coarse: the 10-second ones) whose
// start lies in (from, to] into one Summary whose Window is to-from and
// InFlight zero. Fine, it is the merge of Slices(from, to) without
// building each slice: charts sum many slices per point. Coarse slices are
// aligned to multiples of 10 s of unix time, and those that started more
// than an hour before to are gone (as fine ones 600 s before to).
func (rc *Recorder) SumSlices(from, to time.Time, coarse bool) Summary {
	first, last := timeslot.SecondsIn(from.UnixNano(), to.UnixNano())
	a := getAccum()
	defer accums.Put(a)
	if r := rc.ring.Load(); r != nil {
		rc.mu.Lock()
		if coarse {
			cFirst, cLast := timeslot.CeilDiv(first, coarseWidth), timeslot.FloorDiv(last, coarseWidth)
			live := r.livePeriods()
			for c := max(cFirst, cLast-coarseSlices+1, 0); c <= cLast; c++ {
				a.addCoarse(rc, r, c, live)
			}
		} else {
			for s := max(first, last-fineSlices+1, 0); s <= last; s++ {
				a.addFine(r, s)
			}
		}
		rc.mu.Unlock()
	}
	return a.summary(to.Sub(from), 0)
}

// accums recycles accumulators: one is about 27 KiB, and dashboards and
// gates sum slices every second.
var accums = sync.Pool{New: func() any { return new(windowAccum) }}

func getAccum() *windowAccum {
	a := accums.Get().(*windowAccum)
	a.classes = [2][numClasses]uint64{}
	clear(a.lat[:])
	clear(a.ttfb[:])
	return a
}

// summary turns the sums into a Summary.
func (a *windowAccum) summary(window time.Duration, inFlight int64) Summary {
	sum := Summary{
		Window:   window,
		InFlight: inFlight,
		Latency:  a.lat.sketch(),
		TTFB:     a.ttfb.sketch(),
	}
	for o := range a.classes {
		for c, n := range a.classes[o] {
			sum.Status[c] += n
			sum.Requests += n
		}
	}
	sum.OverrideRequests = sum.Requests - sumClasses(&a.classes[0])
	sum.Errors, sum.ClientErrors = sum.Status[5], sum.Status[4]
	sum.SplitErrors = a.classes[0][5]
	return sum
}

func sumClasses(c *[numClasses]uint64) uint64 {
	var n uint64
	for _, v := range c {
		n += v
	}
	return n
}

// Slices returns the 1-second slices whose start lies in (from, to], the
// same edge rule as Window, oldest first, one per second, empty seconds
// included, so that Window(now, w) for w <= 10m is exactly the merge of
// Slices(now-w, now). Seconds more than 600 s before to are no longer kept
// at 1 s and are left out.
func (rc *Recorder) Slices(from, to time.Time) []Slice {
	first, last := timeslot.SecondsIn(from.UnixNano(), to.UnixNano())
	first = max(first, last-fineSlices+1, 0)
	if first > last {
		return nil
	}
	out := make([]Slice, 0, last-first+1)
	r := rc.ring.Load()
	c := new(secondCopy)
	if r != nil {
		rc.mu.Lock()
		defer rc.mu.Unlock()
	}
	for s := first; s <= last; s++ {
		if r == nil || !r.readFine(s, c) {
			*c = secondCopy{}
		}
		out = append(out, c.slice(s))
	}
	return out
}

// slice turns second start's counts into a Slice (empty when c is).
func (c *secondCopy) slice(start int64) Slice {
	sl := Slice{Start: time.Unix(start, 0), Span: time.Second}
	split, over := &c.classes[0], &c.classes[1]
	sl.SplitRequests = sumClasses(split)
	sl.Requests = sl.SplitRequests + sumClasses(over)
	if sl.Requests == 0 {
		return sl
	}
	sl.Errors = split[5] + over[5]
	sl.ClientErrors = split[4] + over[4]
	sl.SplitErrors, sl.SplitClientErrors = split[5], split[4]
	sl.Latency = compact(c.lat[:])
	sl.TTFB = compact(c.ttfb[:])
	return sl
}

// compact turns a dense bucket array into a Sketch of its non-empty range.
func compact(d []uint32) Sketch { return compactSince(d, nil) }
