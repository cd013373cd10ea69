package telemetry

import (
	"time"

	"github.com/modelgate/modelgate/internal/timeslot"
)

// refRecorder is the time slices of the Recorder before issue 22 (modelgate
// 7cfb08f): two rings of dense slots, 600 1-s and 360 10-s, written at once,
// read directly. The tests record the same observations into it and into a
// Recorder and compare what they return: the compacted storage must answer
// exactly as the dense one did.
type refRecorder struct {
	late   int
	fine   [fineSlices]refSlot
	coarse [coarseSlices]refSlot
}

type refSlot struct {
	guard   timeslot.Guard
	classes [2][numClasses]uint64
	lat     [maxBuckets]uint32
	ttfb    [maxBuckets]uint32
}

func (s *refSlot) record(epoch uint64, class int, override bool, li, ti int) bool {
	if !s.guard.Enter(epoch, func() { s.classes, s.lat, s.ttfb = [2][numClasses]uint64{}, [maxBuckets]uint32{}, [maxBuckets]uint32{} }) {
		return false
	}
	if override {
		s.classes[1][class]++
	} else {
		s.classes[0][class]++
		s.lat[li]++
		s.ttfb[ti]++
	}
	s.guard.Leave()
	return true
}

// observe is Recorder.Observe's slice part (single-threaded: the reference
// is the expectation, not the thing tested).
func (rc *refRecorder) observe(o Observation) {
	if o.Now < 0 {
		rc.late++
		return
	}
	class := statusClass(o.Status)
	sec := o.Now / int64(time.Second)
	li, ti := bucketOf(max(o.Latency, 0)), bucketOf(max(o.TTFB, 0))
	if !rc.fine[sec%fineSlices].record(uint64(sec), class, o.Override, li, ti) {
		rc.late++
	}
	c := sec / coarseWidth
	rc.coarse[c%coarseSlices].record(uint64(c), class, o.Override, li, ti)
}

func (a *secondCopy) addRef(s *refSlot, epoch int64) {
	if !s.guard.Holds(uint64(epoch)) {
		return
	}
	for i := range s.classes {
		for j := range s.classes[i] {
			a.classes[i][j] += s.classes[i][j]
		}
	}
	for i := range s.lat {
		a.lat[i] += s.lat[i]
		a.ttfb[i] += s.ttfb[i]
	}
}

type refAccum struct {
	classes   [2][numClasses]uint64
	lat, ttfb denseSketch
}

func (a *refAccum) add(s *refSlot, epoch int64) {
	if !s.guard.Holds(uint64(epoch)) {
		return
	}
	for i := range s.classes {
		for j := range s.classes[i] {
			a.classes[i][j] += s.classes[i][j]
		}
	}
	for i := range s.lat {
		a.lat[i] += uint64(s.lat[i])
		a.ttfb[i] += uint64(s.ttfb[i])
	}
}

func (a *refAccum) summary(window time.Duration) Summary {
	w := windowAccum{classes: a.classes, lat: a.lat, ttfb: a.ttfb}
	return w.summary(window, 0)
}

func (rc *refRecorder) window(now time.Time, window time.Duration) Summary {
	hi := now.UnixNano()
	first, last := timeslot.SecondsIn(hi-int64(window), hi)
	a := new(refAccum)
	fineFrom := last - fineSlices + 1
	if first < fineFrom {
		boundary := timeslot.CeilDiv(fineFrom, coarseWidth)
		for c := max(timeslot.CeilDiv(first, coarseWidth), 0); c < boundary; c++ {
			a.add(&rc.coarse[c%coarseSlices], c)
		}
		first = boundary * coarseWidth
	}
	for s := max(first, 0); s <= last; s++ {
		a.add(&rc.fine[s%fineSlices], s)
	}
	return a.summary(window)
}

func (rc *refRecorder) sumSlices(from, to time.Time, coarse bool) Summary {
	first, last := timeslot.SecondsIn(from.UnixNano(), to.UnixNano())
	a := new(refAccum)
	if coarse {
		cFirst, cLast := timeslot.CeilDiv(first, coarseWidth), timeslot.FloorDiv(last, coarseWidth)
		for c := max(cFirst, cLast-coarseSlices+1, 0); c <= cLast; c++ {
			a.add(&rc.coarse[c%coarseSlices], c)
		}
	} else {
		for s := max(first, last-fineSlices+1, 0); s <= last; s++ {
			a.add(&rc.fine[s%fineSlices], s)
		}
	}
	return a.summary(to.Sub(from))
}

func (rc *refRecorder) slices(from, to time.Time) []Slice {
	first, last := timeslot.SecondsIn(from.UnixNano(), to.UnixNano())
	first = max(first, last-fineSlices+1, 0)
	var out []Slice
	for s := first; s <= last; s++ {
		c := new(secondCopy)
		c.addRef(&rc.fine[s%fineSlices], s)
		out = append(out, c.slice(s))
	}
	return out
}
