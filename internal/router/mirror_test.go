package router

import (
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
)

// mirrored returns ep with mirror percents for its deployments d0, d1, ...
// (a zero percent is left out of the map, like an unset mirror).
func mirrored(ep spec.Endpoint, percents ...spec.Percent) spec.Endpoint {
	ep.Mirror = spec.Weights{}
	for i, p := range percents {
		if p != 0 {
			ep.Mirror[fmt.Sprintf("d%d", i)] = p
		}
	}
	return ep
}

func TestMirrorsShare(t *testing.T) {
	tests := []struct {
		name     string
		traffic  []spec.Percent
		mirror   []spec.Percent
		maxDevOf int // allowed deviation from the exact count over Buckets requests
	}{
		{"10% to a shadow without traffic", []spec.Percent{10000, 0}, []spec.Percent{0, 1000}, 3},
		{"0.01%", []spec.Percent{10000, 0}, []spec.Percent{0, 1}, 1},
		{"100%", []spec.Percent{10000, 0}, []spec.Percent{0, 10000}, 0},
		{"two shadows 10% and 33.33%", []spec.Percent{10000, 0, 0}, []spec.Percent{0, 1000, 3333}, 3},
		{"50% to a 5% canary and 12.5% to the stable", []spec.Percent{9500, 500}, []spec.Percent{1250, 5000}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustCompile(t, mirrored(endpoint(tc.traffic...), tc.mirror...))
			// Start mid-sequence: any Buckets consecutive requests count.
			for range 4321 {
				tb.Mirrors(nil)
			}
			got := make([]int, len(tc.mirror))
			for range Buckets {
				set := tb.Mirrors(nil)
				for i := range got {
					if set&(1<<i) != 0 {
						got[i]++
					}
				}
			}
			for i, want := range tc.mirror {
				if d := got[i] - int(want); d < -tc.maxDevOf || d > tc.maxDevOf {
					t.Errorf("deployment %d mirrored %d of %d requests, want %d±%d", i, got[i], Buckets, want, tc.maxDevOf)
				}
			}
		})
	}
}

func TestMirrorsInterleaved(t *testing.T) {
	// A 5% mirror is spread out: every window of 100 requests holds 5±2.
	tb := mustCompile(t, mirrored(endpoint(10000, 0), 0, 500))
	seq := make([]int, 2*Buckets)
	for i := range seq {
		seq[i] = int(tb.Mirrors(nil) >> 1 & 1)
	}
	count := 0
	for i, m := range seq {
		count += m
		if i >= 100 {
			count -= seq[i-100]
		}
		if i >= 99 && (count < 3 || count > 7) {
			t.Fatalf("window ending at request %d has %d mirrored, want 5±2", i, count)
		}
	}
}

func TestMirrorsIndependent(t *testing.T) {
	// Every deployment index mirrors 10%: every pair of shadows must share
	// about 1% of requests (the product), not the same 10%.
	const n = 100000
	ep := endpoint(make([]spec.Percent, MaxMirrorIndex+1)...)
	ep.Traffic["d0"] = spec.Full
	percents := make([]spec.Percent, MaxMirrorIndex+1)
	for i := range percents {
		percents[i] = 1000
	}
	tb := mustCompile(t, mirrored(ep, percents...))
	var single [MaxMirrorIndex + 1]int
	var both [MaxMirrorIndex + 1][MaxMirrorIndex + 1]int
	for range n {
		set := tb.Mirrors(nil)
		for a := set; a != 0; a &= a - 1 {
			i := bits.TrailingZeros64(a)
			single[i]++
			for b := a & (a - 1); b != 0; b &= b - 1 {
				both[i][bits.TrailingZeros64(b)]++
			}
		}
	}
	for i := range single {
		if single[i] < n/10-10 || single[i] > n/10+10 {
			t.Errorf("deployment %d mirrored %d of %d, want %d±10", i, single[i], n, n/10)
		}
		for j := i + 1; j < len(single); j++ {
			// Independent: 1% of requests, within 5% of it.
			if got := both[i][j]; got < 950 || got > 1050 {
				t.Errorf("deployments %d and %d were both mirrored on %d of %d requests, want 1000±50", i, j, got, n)
			}
		}
	}
}

func TestMirrorsIndependentOfSplit(t *testing.T) {
	// A 5% canary also shadowed at 50%: about half of its live requests
	// fall in its mirror sample, as for any other request.
	tb := mustCompile(t, mirrored(endpoint(9500, 500), 0, 5000))
	const n = 100000
	live, liveAndMirrored := 0, 0
	for range n {
		i := tb.Pick()
		m := tb.Mirrors(nil)
		if i == 1 {
			live++
			if m&(1<<1) != 0 {
				liveAndMirrored++
			}
		}
	}
	if live != n/20 {
		t.Fatalf("canary got %d live requests, want %d", live, n/20)
	}
	if got := float64(liveAndMirrored) / float64(live); math.Abs(got-0.5) > 0.03 {
		t.Errorf("%.3f of the canary's live requests are in its 50%% mirror sample, want 0.5±0.03", got)
	}
}

func TestMirrorsSticky(t *testing.T) {
	ks := keys(40000)
	ep := mirrored(endpoint(5000, 5000, 0), 0, 1000, 3000)
	tb := mustCompile(t, ep)
	again := mustCompile(t, ep)
	var count [3]int
	both, mirroredAndLiveOn1 := 0, 0
	liveOn1 := 0
	for _, k := range ks {
		set := tb.Mirrors(k)
		for range 2 {
			if got := tb.Mirrors(k); got != set {
				t.Fatalf("Mirrors(%s) = %b, then %b", k, set, got)
			}
		}
		if got := again.Mirrors(k); got != set {
			t.Fatalf("Mirrors(%s) differs between equal tables: %b vs %b", k, set, got)
		}
		for i := range count {
			if set&(1<<i) != 0 {
				count[i]++
			}
		}
		if set&0b110 == 0b110 {
			both++
		}
		if tb.PickKey(k) == 1 {
			liveOn1++
			if set&0b10 != 0 {
				mirroredAndLiveOn1++
			}
		}
	}
	n := float64(len(ks))
	share := func(c int) float64 { return float64(c) / n }
	if count[0] != 0 {
		t.Errorf("deployment 0 without a mirror was mirrored to %d times", count[0])
	}
	if s := share(count[1]); math.Abs(s-0.10) > 0.01 {
		t.Errorf("10%% mirror holds %.4f of keys", s)
	}
	if s := share(count[2]); math.Abs(s-0.30) > 0.015 {
		t.Errorf("30%% mirror holds %.4f of keys", s)
	}
	// Per-deployment salts: the two shadows' key samples are independent
	// (3% together), and independent of the live sticky split.
	if s := share(both); math.Abs(s-0.03) > 0.005 {
		t.Errorf("%.4f of keys are mirrored to both shadows, want 0.03±0.005", s)
	}
	if s := float64(mirroredAndLiveOn1) / float64(liveOn1); math.Abs(s-0.10) > 0.01 {
		t.Errorf("%.4f of the keys on deployment 1 are in its 10%% mirror sample, want 0.10±0.01", s)
	}
}

func TestMirrorsStickyMonotone(t *testing.T) {
	// Raising a mirror percent only adds keys to the sample.
	ks := keys(20000)
	var prev []bool
	for _, p := range []spec.Percent{0, 1, 500, 1000, 5000, 9999, 10000} {
		tb := mustCompile(t, mirrored(endpoint(10000, 0), 0, p))
		cur := make([]bool, len(ks))
		n := 0
		for i, k := range ks {
			cur[i] = tb.Mirrors(k)&0b10 != 0
			if prev != nil && prev[i] && !cur[i] {
				t.Fatalf("key %s left the mirror sample when it grew to %s%%", k, p)
			}
			if cur[i] {
				n++
			}
		}
		if s := float64(n) / float64(len(ks)); math.Abs(s-p.Fraction()) > 0.015 {
			t.Errorf("at %s%% the mirror holds %.4f of keys", p, s)
		}
		prev = cur
	}
}

func TestMirrorsNone(t *testing.T) {
	for _, ep := range []spec.Endpoint{endpoint(9500, 500), mirrored(endpoint(9500, 500), 0, 0)} {
		tb := mustCompile(t, ep)
		if tb.HasMirrors() {
			t.Errorf("HasMirrors() = true for mirror %v", ep.Mirror)
		}
		for range 1000 {
			if set := tb.Mirrors(nil); set != 0 {
				t.Fatalf("Mirrors(nil) = %b with no mirror", set)
			}
			if set := tb.Mirrors([]byte("user-1")); set != 0 {
				t.Fatalf("Mirrors(key) = %b with no mirror", set)
			}
		}
		if n := tb.mirrorCounter.Load(); n != 0 {
			t.Errorf("mirror sequence advanced to %d with no mirror", n)
		}
	}
	if !mustCompile(t, mirrored(endpoint(9500, 500), 0, 1)).HasMirrors() {
		t.Errorf("HasMirrors() = false with a 0.01%% mirror")
	}
}

func TestMirrorsRecompileContinuesSequence(t *testing.T) {
	ep := mirrored(endpoint(10000, 0), 0, 1000)
	tb := mustCompile(t, ep)
	got := 0
	for i := range Buckets {
		if i%7 == 0 {
			var err error
			if tb, err = tb.Recompile(ep); err != nil {
				t.Fatal(err)
			}
		}
		if tb.Mirrors(nil) != 0 {
			got++
		}
	}
	// A restarted sequence would mirror request 0 of every table: 1429
	// extra. A continued one stays within its bound.
	if got < 997 || got > 1003 {
		t.Errorf("10%% mirror got %d of %d requests with recompiles, want 1000±3", got, Buckets)
	}
}

func TestCompileMirrorErrors(t *testing.T) {
	many := endpoint(make([]spec.Percent, MaxMirrorIndex+2)...)
	many.Traffic["d0"] = spec.Full
	tests := []struct {
		name string
		ep   spec.Endpoint
	}{
		{"unknown name", func() spec.Endpoint {
			ep := endpoint(10000)
			ep.Mirror = spec.Weights{"ghost": 100}
			return ep
		}()},
		{"over 100", mirrored(endpoint(10000, 0), 0, 10001)},
		{"negative", mirrored(endpoint(10000, 0), 0, -1)},
		{"index past the set", func() spec.Endpoint {
			ep := many
			ep.Mirror = spec.Weights{"d" + strconv.Itoa(MaxMirrorIndex+1): 100}
			return ep
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(tc.ep); err == nil {
				t.Errorf("Compile(mirror %v) = nil error, want an error", tc.ep.Mirror)
			}
		})
	}
	// The last index that fits is fine, and a zero percent past it too.
	ok := many
	ok.Mirror = spec.Weights{"d" + strconv.Itoa(MaxMirrorIndex): 100, "d" + strconv.Itoa(MaxMirrorIndex+1): 0}
	tb := mustCompile(t, ok)
	if got := tb.Mirrors([]byte("k")) | tb.Mirrors(nil); got&^(1<<MaxMirrorIndex) != 0 {
		t.Errorf("Mirrors = %b, want at most bit %d", got, MaxMirrorIndex)
	}
}

func TestMirrorsZeroAllocs(t *testing.T) {
	tb := mustCompile(t, mirrored(endpoint(9500, 500, 0), 1000, 5000, 10000))
	key := []byte("user-42")
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Mirrors(nil)", func() { tb.Mirrors(nil) }},
		{"Mirrors(key)", func() { tb.Mirrors(key) }},
		{"HasMirrors", func() { tb.HasMirrors() }},
	} {
		if got := testing.AllocsPerRun(1000, tc.fn); got != 0 {
			t.Errorf("%s allocates %v times per run, want 0", tc.name, got)
		}
	}
}

func BenchmarkMirrors(b *testing.B) {
	for _, tc := range []struct {
		name   string
		mirror []spec.Percent
		key    []byte
	}{
		{"none", []spec.Percent{0, 0}, nil},
		{"one", []spec.Percent{0, 1000}, nil},
		{"two", []spec.Percent{1000, 5000}, nil},
		{"one-sticky", []spec.Percent{0, 1000}, []byte("0f8fad5b-d9cb-469f-a165-70867728950e")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tb := mustCompile(b, mirrored(endpoint(9500, 500), tc.mirror...))
			b.ReportAllocs()
			for b.Loop() {
				tb.Mirrors(tc.key)
			}
		})
	}
}
