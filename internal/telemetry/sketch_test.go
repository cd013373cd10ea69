package telemetry

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"
)

// exactQuantile is the nearest-rank quantile of sorted values: the value of
// rank ceil(q*n), computed independently of the sketch.
func exactQuantile(sorted []time.Duration, q float64) time.Duration {
	r := int(math.Ceil(q * float64(len(sorted))))
	r = min(max(r, 1), len(sorted))
	return sorted[r-1]
}

func TestBucketLayout(t *testing.T) {
	if numBuckets != maxBuckets {
		t.Fatalf("numBuckets = %d, want maxBuckets %d", numBuckets, maxBuckets)
	}
	if lowerBound[0] != minTracked || lowerBound[numBuckets-1] > maxTracked || lowerBound[numBuckets] <= maxTracked {
		t.Fatalf("bounds [%d, %d], want to cover [%d, %d]", lowerBound[0], lowerBound[numBuckets], minTracked, maxTracked)
	}
	// The representative of each bucket is within 1% of both ends of its
	// integer range, so of every value in it (relative error is monotone
	// from the representative outwards).
	for i := range numBuckets {
		lo, hi := lowerBound[i], min(lowerBound[i+1]-1, maxTracked)
		v := bucketValue[i]
		if e := float64(v-lo) / float64(lo); e > 0.01 || v < lo {
			t.Errorf("bucket %d [%d, %d]: value %d is %.5f above the low end", i, lo, hi, v, e)
		}
		if e := float64(hi-v) / float64(hi); e > 0.01 || v > hi {
			t.Errorf("bucket %d [%d, %d]: value %d is %.5f below the high end", i, lo, hi, v, e)
		}
	}
}

func TestBucketOf(t *testing.T) {
	ref := func(x int64) int {
		x = min(max(x, minTracked), maxTracked)
		i, _ := slices.BinarySearch(lowerBound[:numBuckets+1], x+1)
		return i - 1
	}
	var xs []int64
	for i := range numBuckets + 1 {
		b := lowerBound[i]
		xs = append(xs, b-1, b, b+1)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200000 {
		xs = append(xs, int64(math.Exp(rng.Float64()*math.Log(float64(maxTracked)*2))))
	}
	xs = append(xs, -5, 0, 1, 999, math.MaxInt64)
	for _, x := range xs {
		if got, want := bucketOf(time.Duration(x)), ref(x); got != want {
			t.Fatalf("bucketOf(%d) = %d, want %d", x, got, want)
		}
	}
}

func TestSketchAccuracy(t *testing.T) {
	const n = 20000
	rng := rand.New(rand.NewPCG(7, 11))
	dists := []struct {
		name string
		gen  func() time.Duration
	}{
		{"lognormal", func() time.Duration {
			return time.Duration(math.Exp(math.Log(20e6) + 0.8*rng.NormFloat64()))
		}},
		{"lognormal wide", func() time.Duration {
			return time.Duration(math.Exp(math.Log(1e6) + 3*rng.NormFloat64()))
		}},
		{"uniform", func() time.Duration { return time.Duration(1e6 + rng.Int64N(499e6)) }},
		{"uniform micro", func() time.Duration { return time.Duration(1000 + rng.Int64N(9000)) }},
		{"bimodal", func() time.Duration {
			if rng.IntN(10) < 7 {
				return time.Duration(5e6 + 1e6*rng.NormFloat64())
			}
			return time.Duration(800e6 + 50e6*rng.NormFloat64())
		}},
		{"constant", func() time.Duration { return 42 * time.Millisecond }},
		{"constant at floor", func() time.Duration { return time.Microsecond }},
		{"constant at ceiling", func() time.Duration { return time.Hour }},
	}
	qs := []float64{0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1}
	for _, d := range dists {
		t.Run(d.name, func(t *testing.T) {
			vals := make([]time.Duration, n)
			var dense denseSketch
			for i := range vals {
				v := d.gen()
				dense[bucketOf(v)]++
				// The sketch clamps to [1µs, 1h] by design; so does the reference.
				vals[i] = min(max(v, time.Duration(minTracked)), time.Duration(maxTracked))
			}
			sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
			sk := dense.sketch()
			if sk.Count() != n {
				t.Fatalf("Count() = %d, want %d", sk.Count(), n)
			}
			for _, q := range qs {
				got, want := sk.Quantile(q), exactQuantile(vals, q)
				if e := math.Abs(float64(got-want)) / float64(want); e > 0.01 {
					t.Errorf("Quantile(%v) = %v, want %v (error %.4f%%)", q, got, want, e*100)
				}
			}
		})
	}
}

func TestSketchClamps(t *testing.T) {
	var s Sketch
	s.Add(-time.Second, 1)
	s.Add(0, 1)
	s.Add(2*time.Hour, 1)
	if got := s.Quantile(0); got != time.Duration(bucketValue[0]) || math.Abs(float64(got-time.Microsecond)) > 10 {
		t.Errorf("Quantile(0) = %v, want about 1µs", got)
	}
	if got := s.Quantile(1); math.Abs(float64(got-time.Hour))/float64(time.Hour) > 0.01 {
		t.Errorf("Quantile(1) = %v, want about 1h", got)
	}
}

func TestSketchEmpty(t *testing.T) {
	var s Sketch
	if got := s.Quantile(0.5); got != 0 {
		t.Errorf("Quantile(0.5) of empty = %v, want 0", got)
	}
	for range s.Buckets() {
		t.Error("empty sketch yielded a bucket")
	}
}

func TestSketchMergeDoesNotAlias(t *testing.T) {
	var a Sketch
	a.Add(10*time.Millisecond, 3)
	a.Add(20*time.Millisecond, 1)
	b := a // shares storage
	b.Add(10*time.Millisecond, 5)
	b.Merge(a)
	if a.Count() != 4 || a.Quantile(0.75) > 11*time.Millisecond {
		t.Errorf("a changed after merging into its copy: count %d, p75 %v", a.Count(), a.Quantile(0.75))
	}
	if b.Count() != 13 {
		t.Errorf("b.Count() = %d, want 13", b.Count())
	}
	var got []uint64
	for _, n := range b.Buckets() {
		got = append(got, n)
	}
	if !slices.Equal(got, []uint64{11, 2}) {
		t.Errorf("b buckets = %v, want [11 2]", got)
	}
}

func TestSketchMergeEqualsWhole(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var whole, merged Sketch
	var dense [4]denseSketch
	var all denseSketch
	for i := range 4000 {
		d := time.Duration(math.Exp(math.Log(5e6) + rng.NormFloat64()))
		dense[i%4][bucketOf(d)]++
		all[bucketOf(d)]++
	}
	for i := range dense {
		merged.Merge(dense[i].sketch())
	}
	whole = all.sketch()
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99} {
		if whole.Quantile(q) != merged.Quantile(q) {
			t.Errorf("merged Quantile(%v) = %v, want %v", q, merged.Quantile(q), whole.Quantile(q))
		}
	}
}
