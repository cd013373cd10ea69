package telemetry

import (
	"iter"
	"math"
	"math/bits"
	"slices"
	"time"
)

// The bucket layout is fixed at init so that every sketch, live or merged,
// shares it: merging is adding counts index by index.
const (
	// relAccuracy is the worst relative error of a bucket's representative
	// value against any value in the bucket. It sits below 1% so that
	// rounding the representative to whole nanoseconds (at most 0.05% at the
	// 1µs floor) still keeps the quantile within 1% of the exact one.
	relAccuracy = 0.0095

	minTracked = int64(time.Microsecond) // smaller values are clamped up to it
	maxTracked = int64(time.Hour)        // larger values are clamped down to it

	// subBits splits each power of two into 64 sub-bins. A sub-bin (at most
	// 1/64 wide) is narrower than a bucket (about 1.9% wide), so the lookup
	// table plus at most one comparison finds the bucket.
	subBits   = 6
	minExp    = 9 // bits.Len64(minTracked) - 1
	maxExp    = 41
	tableSize = (maxExp - minExp + 1) << subBits
)

var (
	// numBuckets is the number of log buckets between minTracked and
	// maxTracked (1159). It is a var computed at init; arrays that
	// need a constant length use maxBuckets and a test pins the two.
	numBuckets int
	// lowerBound[i] is the smallest nanosecond value of bucket i; bucket i is
	// [lowerBound[i], lowerBound[i+1]). lowerBound[numBuckets] > maxTracked.
	lowerBound [maxBuckets + 1]int64
	// bucketValue[i] is bucket i's representative value: the point with the
	// smallest worst-case relative error against the bucket's range.
	bucketValue [maxBuckets]int64
	// firstBucket maps a sub-bin (exponent, top mantissa bits) to the
	// bucket holding the sub-bin's smallest value.
	firstBucket [tableSize]uint16
)

// maxBuckets is the array length used for dense bucket arrays. It equals
// numBuckets (checked in init), but has to be a constant.
const maxBuckets = 1159

func init() {
	gamma := (1 + relAccuracy) / (1 - relAccuracy)
	n := 0
	for {
		lb := int64(math.Round(float64(minTracked) * math.Pow(gamma, float64(n))))
		if n > 0 && lb <= lowerBound[n-1] {
			lb = lowerBound[n-1] + 1
		}
		if n == maxBuckets+1 {
			panic("telemetry: bucket layout does not fit maxBuckets")
		}
		lowerBound[n] = lb
		if lb > maxTracked {
			break
		}
		n++
	}
	if n != maxBuckets {
		panic("telemetry: maxBuckets must equal the computed bucket count")
	}
	numBuckets = n
	for i := range n {
		a := float64(lowerBound[i])
		b := float64(min(lowerBound[i+1]-1, maxTracked))
		bucketValue[i] = int64(math.Round(2 * a * b / (a + b)))
	}
	for key := range tableSize {
		e := key>>subBits + minExp
		sub := int64(key & (1<<subBits - 1))
		x := (1<<subBits + sub) << (e - subBits)
		if x < minTracked {
			continue // below the floor: never looked up
		}
		// The bucket holding x: the last bound <= x.
		i, _ := slices.BinarySearch(lowerBound[:n+1], x+1)
		firstBucket[key] = uint16(i - 1)
	}
}

// bucketOf returns the bucket index of d, clamping d into [1µs, 1h]. It
// neither allocates nor branches on floating point: the hot path calls it
// twice per request.
func bucketOf(d time.Duration) int {
	x := int64(d)
	if x <= minTracked {
		return 0
	}
	if x >= maxTracked {
		return maxBuckets - 1
	}
	e := bits.Len64(uint64(x)) - 1
	key := (e-minExp)<<subBits | int(x>>(e-subBits))&(1<<subBits-1)
	i := int(firstBucket[key])
	for x >= lowerBound[i+1] {
		i++
	}
	return i
}

// Sketch is a latency distribution in fixed log buckets from 1µs to 1h
// (values outside are clamped). A quantile read from it is within 1% of the
// exact nearest-rank quantile of the recorded values. Sketches share one
// bucket layout, so they merge exactly: a window is the merge of its slices.
//
// The zero Sketch is empty and ready to use. Methods never write into
// storage another copy may share, so a Sketch can be copied like a value.
type Sketch struct {
	offset int      // bucket index of counts[0]
	counts []uint64 // counts[i] is the count of bucket offset+i; no zero ends
	total  uint64
}

// Count returns the number of values in the sketch.
func (s Sketch) Count() uint64 { return s.total }

// Quantile returns the nearest-rank q-quantile: the value of rank ceil(q*n)
// among the n recorded values in ascending order (rank 1 for q <= 0, n for
// q >= 1), to within 1%. It returns 0 for an empty sketch.
func (s Sketch) Quantile(q float64) time.Duration {
	if s.total == 0 {
		return 0
	}
	rank := nearestRank(q, s.total)
	var seen uint64
	for i, c := range s.counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketValue[s.offset+i])
		}
	}
	return time.Duration(bucketValue[s.offset+len(s.counts)-1]) // not reached
}

// nearestRank is ceil(q*n) clamped to 1..n.
func nearestRank(q float64, n uint64) uint64 {
	if q <= 0 || math.IsNaN(q) {
		return 1
	}
	if q >= 1 {
		return n
	}
	r := uint64(math.Ceil(q * float64(n)))
	return min(max(r, 1), n)
}

// Buckets yields each non-empty bucket's representative value and count in
// ascending order of value; rank statistics can walk it without expanding
// the values.
func (s Sketch) Buckets() iter.Seq2[time.Duration, uint64] {
	return func(yield func(time.Duration, uint64) bool) {
		for i, c := range s.counts {
			if c != 0 && !yield(time.Duration(bucketValue[s.offset+i]), c) {
				return
			}
		}
	}
}

// Add records n occurrences of d. It copies the buckets, so it is meant
// for tests and tools; live requests are recorded by Recorder.Observe.
func (s *Sketch) Add(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	s.Merge(Sketch{offset: bucketOf(d), counts: []uint64{n}, total: n})
}

// Merge adds o's values to s. It builds new storage, so copies of s that
// share the old storage are unchanged.
func (s *Sketch) Merge(o Sketch) {
	if o.total == 0 {
		return
	}
	if s.total == 0 {
		*s = o // o's storage is never written to, so sharing it is safe
		return
	}
	lo := min(s.offset, o.offset)
	hi := max(s.offset+len(s.counts), o.offset+len(o.counts))
	counts := make([]uint64, hi-lo)
	for i, c := range s.counts {
		counts[s.offset-lo+i] += c
	}
	for i, c := range o.counts {
		counts[o.offset-lo+i] += c
	}
	*s = Sketch{offset: lo, counts: counts, total: s.total + o.total}
}

// denseSketch accumulates counts in the full bucket array; query code sums
// many slices into one and compacts it into a Sketch at the end.
type denseSketch [maxBuckets]uint64

// sketch compacts d into a Sketch holding only the non-empty range.
func (d *denseSketch) sketch() Sketch {
	lo, hi := -1, -1
	var total uint64
	for i, c := range d {
		if c == 0 {
			continue
		}
		if lo < 0 {
			lo = i
		}
		hi = i
		total += c
	}
	if lo < 0 {
		return Sketch{}
	}
	return Sketch{offset: lo, counts: slices.Clone(d[lo : hi+1]), total: total}
}
