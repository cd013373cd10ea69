package telemetry

import (
	"sync/atomic"
	"time"
)

// A Tail follows one deployment's 1-second slices as they fill, for a
// reader that must act within a fraction of a second (the rollout
// controller, which rolls a bad canary back within a few hundred of its
// requests at any load). Each Read returns what finished since the last
// one: the rest of every second that has ended, then the part of the
// current second so far. Every request is returned once, in the slice of
// the second it finished in, across any number of reads. Not safe for
// concurrent use.
type Tail struct {
	rc *Recorder
	// next is the unix second read next; seen holds what was returned of
	// it already, at seenAt (zero when nothing was).
	next   int64
	seen   secondCopy
	seenAt time.Time
	cur    secondCopy // scratch
}

// TailGrace is how long after its end a second stays open to a Tail: a
// request is recorded a little after the instant that picks its second (the
// proxy reads the clock, then hands the connection back, then records), and
// a second closed too early would lose the late ones.
const TailGrace = 20 * time.Millisecond

// Tail returns a Tail whose first Read starts with the second holding from,
// whole.
func (rc *Recorder) Tail(from time.Time) *Tail {
	return &Tail{rc: rc, next: from.Unix(), seenAt: time.Unix(from.Unix(), 0)}
}

// TailFrom returns a Tail whose first Read starts at now: what finished
// earlier in now's second is left out (a rollout starting now must not be
// judged on the requests of the one just ended).
func (rc *Recorder) TailFrom(now time.Time) *Tail {
	now = now.Round(0)
	t := rc.Tail(now)
	if r := rc.ring.Load(); r != nil {
		rc.mu.Lock()
		if !r.readFine(now.Unix(), &t.seen) {
			t.seen = secondCopy{}
		}
		rc.mu.Unlock()
	}
	t.seenAt = now
	return t
}

// Read returns the slices since the last Read, up to now, oldest first, one
// per second including empty ones: every second before now's whole (Span
// what was not returned of it before), now's second as far as it has been
// recorded, marked Open (left out when no time has passed in it since the
// last Read: a part spans some time). "Now" is now − TailGrace: a second
// closes TailGrace after its end. Seconds no longer kept at 1 s (600 s before now)
// are skipped. A now before the last Read's returns nothing.
//
// Within a slice read while it fills, a request may be counted in the
// status classes and not yet in the latency buckets (the recorder adds them
// in that order, and a Tail reads the buckets first): its latency comes
// with the next Read's slice. So an open slice's Latency.Count() may differ
// from its SplitRequests by the few requests being recorded at that
// instant, never in total.
func (t *Tail) Read(now time.Time) []Slice {
	// Wall time only: a clock stepped back must not read as time passing
	// (the monotonic reading would say it did).
	now = now.Round(0).Add(-TailGrace)
	if now.Before(t.seenAt) || now.Unix() < t.next {
		return nil
	}
	last := now.Unix()
	if first := last - fineSlices + 1; t.next < first {
		t.next, t.seen, t.seenAt = first, secondCopy{}, time.Unix(first, 0)
	}
	out := make([]Slice, 0, last-t.next+1)
	r := t.rc.ring.Load()
	if r != nil {
		t.rc.mu.Lock()
		defer t.rc.mu.Unlock()
	}
	for ; t.next <= last; t.next++ {
		s := t.next
		end := time.Unix(s+1, 0)
		open := s == last
		if open {
			end = now
		}
		if open && !end.After(t.seenAt) {
			break // no time has passed in the current second: nothing to read
		}
		sl := Slice{Start: time.Unix(s, 0), Span: end.Sub(t.seenAt), Open: open}
		if open && t.seen.sameClasses(r, s) {
			// Nothing finished since the last read: skip copying the
			// buckets (most looks at low traffic, and the copy is most of
			// a read's cost). A second that closes is always read whole,
			// so a latency recorded just after its request's class is
			// never lost.
			t.cur = t.seen
		} else if r == nil || !r.readFine(s, &t.cur) {
			t.cur = secondCopy{}
		}
		t.cur.since(&t.seen, &sl)
		out = append(out, sl)
		if open {
			t.seen, t.seenAt = t.cur, now
			break
		}
		t.seen, t.seenAt = secondCopy{}, end
	}
	return out
}

// sameClasses reports whether second e's status-class counters are still
// c's.
func (c *secondCopy) sameClasses(r *ring, e int64) bool {
	if r == nil {
		return c.classes == [2][numClasses]uint64{}
	}
	classes, ok := r.readFineClasses(e)
	if !ok {
		return c.classes == [2][numClasses]uint64{}
	}
	return classes == c.classes
}

// since sets sl's counts and sketches to what c holds beyond prev (a
// counter below prev's, which only a reset slot can give, counts 0).
func (c *secondCopy) since(prev *secondCopy, sl *Slice) {
	var d [2][numClasses]uint64
	for i := range d {
		for j := range d[i] {
			d[i][j] = sub(c.classes[i][j], prev.classes[i][j])
		}
	}
	split, over := &d[0], &d[1]
	sl.SplitRequests = sumClasses(split)
	sl.Requests = sl.SplitRequests + sumClasses(over)
	sl.Errors = split[5] + over[5]
	sl.ClientErrors = split[4] + over[4]
	sl.SplitErrors, sl.SplitClientErrors = split[5], split[4]
	sl.Latency = compactSince(c.lat[:], prev.lat[:])
	sl.TTFB = compactSince(c.ttfb[:], prev.ttfb[:])
}

func sub[T uint32 | uint64](a, b T) T {
	if a < b {
		return 0
	}
	return a - b
}

// compactSince is compact of the bucket-wise difference d − prev (nil:
// zeros).
func compactSince(d, prev []uint32) Sketch {
	at := func(i int) uint32 {
		if prev == nil {
			return d[i]
		}
		return sub(d[i], prev[i])
	}
	lo, hi := -1, -1
	for i := range d {
		if at(i) != 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo < 0 {
		return Sketch{}
	}
	s := Sketch{offset: lo, counts: make([]uint64, hi-lo+1)}
	for i := range s.counts {
		s.counts[i] = uint64(at(lo + i))
		s.total += s.counts[i]
	}
	return s
}

// A Signal wakes a reader every Every split-routed requests a Recorder
// observes (SetSignal): a non-blocking send on its channel, so a reader
// that is busy misses nothing but a wake-up it no longer needs (it reads
// everything recorded when it looks). Observe pays one atomic load for it
// when no signal is set, an add when one is.
type Signal struct {
	every uint64
	n     atomic.Uint64
	c     chan<- struct{}
}

// NewSignal returns a Signal sending on c every every requests (at least 1).
func NewSignal(every uint64, c chan<- struct{}) *Signal {
	return &Signal{every: max(every, 1), c: c}
}

// Count is the number of split-routed requests observed since the signal
// was set.
func (s *Signal) Count() uint64 { return s.n.Load() }

func (s *Signal) observed() {
	if s.n.Add(1)%s.every == 0 {
		select {
		case s.c <- struct{}{}:
		default:
		}
	}
}

// SetSignal makes rc raise s (nil: none) and returns the signal set before.
func (rc *Recorder) SetSignal(s *Signal) *Signal { return rc.signal.Swap(s) }

// ClearSignal removes s if it is still rc's signal.
func (rc *Recorder) ClearSignal(s *Signal) { rc.signal.CompareAndSwap(s, nil) }
