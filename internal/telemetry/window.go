package telemetry

import (
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

// slotCopy is a consistent copy of one slot's counts.
type slotCopy struct {
	classes  [2][numClasses]uint64
	lat      [maxBuckets]uint32
	ttfb     [maxBuckets]uint32
	requests uint64
}

// read copies the slot's counts for epoch into c. It returns false when the
// slot holds another epoch or no request. If a writer of a newer epoch
// resets the slot while it is being read, the copy is torn and discarded:
// the data it held has just aged out.
func (s *slot) read(epoch uint64, c *slotCopy) bool {
	if !s.guard.Holds(epoch) {
		return false
	}
	c.requests = 0
	for i := range s.classes {
		for j := range s.classes[i] {
			c.classes[i][j] = s.classes[i][j].Load()
			c.requests += c.classes[i][j]
		}
	}
	if c.requests == 0 {
		return false
	}
	s.loadBuckets(&c.lat, &c.ttfb)
	return s.guard.Holds(epoch)
}

// windowAccum sums slot copies into a Summary.
type windowAccum struct {
	copy    slotCopy
	classes [2][numClasses]uint64
	lat     denseSketch
	ttfb    denseSketch
}

func (a *windowAccum) add(s *slot, epoch uint64) {
	if !s.read(epoch, &a.copy) {
		return
	}
	for i := range a.classes {
		for j := range a.classes[i] {
			a.classes[i][j] += a.copy.classes[i][j]
		}
	}
	for i := range a.lat {
		a.lat[i] += uint64(a.copy.lat[i])
		a.ttfb[i] += uint64(a.copy.ttfb[i])
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
	fineFrom := last - fineSlices + 1
	if first < fineFrom {
		boundary := timeslot.CeilDiv(fineFrom, coarseWidth) // first coarse epoch read from the fine ring
		for c := max(timeslot.CeilDiv(first, coarseWidth), 0); c < boundary; c++ {
			a.add(&rc.coarse[c%coarseSlices], uint64(c))
		}
		first = boundary * coarseWidth
	}
	for s := max(first, 0); s <= last; s++ {
		a.add(&rc.fine[s%fineSlices], uint64(s))
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
	if coarse {
		cFirst, cLast := timeslot.CeilDiv(first, coarseWidth), timeslot.FloorDiv(last, coarseWidth)
		for c := max(cFirst, cLast-coarseSlices+1, 0); c <= cLast; c++ {
			a.add(&rc.coarse[c%coarseSlices], uint64(c))
		}
	} else {
		for s := max(first, last-fineSlices+1, 0); s <= last; s++ {
			a.add(&rc.fine[s%fineSlices], uint64(s))
		}
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
	c := new(slotCopy)
	for s := first; s <= last; s++ {
		out = append(out, c.slice(&rc.fine[s%fineSlices], s, s))
	}
	return out
}

// slice reads slot s for epoch into a Slice starting at unix second start;
// the slice is empty when the slot holds no request of that epoch.
func (c *slotCopy) slice(s *slot, epoch, start int64) Slice {
	sl := Slice{Start: time.Unix(start, 0), Span: time.Second}
	if !s.read(uint64(epoch), c) {
		return sl
	}
	split, over := &c.classes[0], &c.classes[1]
	sl.SplitRequests = sumClasses(split)
	sl.Requests = sl.SplitRequests + sumClasses(over)
	sl.Errors = split[5] + over[5]
	sl.ClientErrors = split[4] + over[4]
	sl.SplitErrors, sl.SplitClientErrors = split[5], split[4]
	sl.Latency = compact(c.lat[:])
	sl.TTFB = compact(c.ttfb[:])
	return sl
}

// compact turns a dense bucket array into a Sketch of its non-empty range.
func compact(d []uint32) Sketch { return compactSince(d, nil) }
