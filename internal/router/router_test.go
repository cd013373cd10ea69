package router

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/modelgate/modelgate/internal/spec"
)

func endpoint(weights ...spec.Percent) spec.Endpoint {
	ep := spec.Endpoint{Name: "fraud", Traffic: spec.Weights{}}
	for i, w := range weights {
		name := fmt.Sprintf("d%d", i)
		ep.Deployments = append(ep.Deployments, spec.Deployment{Name: name, Backends: []string{"http://127.0.0.1:1"}})
		ep.Traffic[name] = w
	}
	return ep
}

func mustCompile(t testing.TB, ep spec.Endpoint) *Table {
	t.Helper()
	tb, err := Compile(ep)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tb
}

func TestPickExactShare(t *testing.T) {
	tests := []struct {
		name    string
		weights []spec.Percent
	}{
		{"all on one", []spec.Percent{10000}},
		{"95/5", []spec.Percent{9500, 500}},
		{"0.01%", []spec.Percent{9999, 1}},
		{"first 0.01%", []spec.Percent{1, 9999}},
		{"zero weight in the middle", []spec.Percent{5000, 0, 5000}},
		{"three way with decimals", []spec.Percent{3333, 3333, 3334}},
		{"12.25/87.75", []spec.Percent{1225, 8775}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustCompile(t, endpoint(tc.weights...))
			// Start mid-sequence: any Buckets consecutive picks must be exact.
			for range 1234 {
				tb.Pick()
			}
			got := make([]spec.Percent, len(tc.weights))
			for range Buckets {
				got[tb.Pick()]++
			}
			for i := range tc.weights {
				if got[i] != tc.weights[i] {
					t.Errorf("deployment %d got %d of %d picks, want %d", i, got[i], Buckets, tc.weights[i])
				}
			}
		})
	}
}

func TestPickInterleaved(t *testing.T) {
	// A 5% deployment must not get its share in bursts: every window of 100
	// consecutive picks holds 5±2 of its requests.
	tb := mustCompile(t, endpoint(9500, 500))
	seq := make([]int, 2*Buckets)
	for i := range seq {
		seq[i] = tb.Pick()
	}
	count := 0
	for i, d := range seq {
		count += d
		if i >= 100 {
			count -= seq[i-100]
		}
		if i >= 99 && (count < 3 || count > 7) {
			t.Fatalf("window ending at pick %d has %d canary picks, want 5±2", i, count)
		}
	}
}

func TestRecompileContinuesSequence(t *testing.T) {
	ep := endpoint(9500, 500)
	a := mustCompile(t, ep)
	got := [2]int{}
	// Recompile after every 10 picks: a restarted sequence would never reach
	// the top 5% of buckets within 10 picks; a continued one stays exact.
	tb := a
	for i := range Buckets {
		if i%10 == 0 {
			var err error
			if tb, err = tb.Recompile(ep); err != nil {
				t.Fatal(err)
			}
		}
		got[tb.Pick()]++
	}
	if got[1] != 500 {
		t.Errorf("canary got %d picks over %d with recompiles, want 500", got[1], Buckets)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		ep   spec.Endpoint
	}{
		{"no deployments", spec.Endpoint{Name: "x"}},
		{"sum 99", endpoint(9000, 900)},
		{"unknown name", func() spec.Endpoint {
			ep := endpoint(10000)
			ep.Traffic["ghost"] = 0
			return ep
		}()},
		{"negative", endpoint(10100, -100)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Compile(tc.ep); err == nil {
				t.Errorf("Compile(%v) = nil error, want an error", tc.ep.Traffic)
			}
		})
	}
}

func TestIndex(t *testing.T) {
	tb := mustCompile(t, endpoint(5000, 5000, 0))
	for i := range 3 {
		name := fmt.Sprintf("d%d", i)
		if got, ok := tb.Index([]byte(name)); !ok || got != i {
			t.Errorf("Index(%q) = %d, %v, want %d, true", name, got, ok, i)
		}
		if tb.Name(i) != name {
			t.Errorf("Name(%d) = %q, want %q", i, tb.Name(i), name)
		}
	}
	if _, ok := tb.Index([]byte("nope")); ok {
		t.Errorf("Index(nope) found a deployment")
	}
}

func keys(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = []byte("user-" + strconv.Itoa(i))
	}
	return out
}

func TestPickKeyStable(t *testing.T) {
	tb := mustCompile(t, endpoint(7000, 3000))
	again := mustCompile(t, endpoint(7000, 3000))
	for _, k := range keys(5000) {
		first := tb.PickKey(k)
		for range 3 {
			if got := tb.PickKey(k); got != first {
				t.Fatalf("PickKey(%s) = %d, then %d", k, first, got)
			}
		}
		if got := again.PickKey(k); got != first {
			t.Fatalf("PickKey(%s) differs between equal tables: %d vs %d", k, first, got)
		}
	}
}

func TestKeyBucketFixed(t *testing.T) {
	// The hash must never change between releases: a change would move
	// every sticky user to another bucket. These values are pinned.
	tests := []struct {
		key  string
		want int32
	}{
		{"", 9367},
		{"user-1", 2563},
		{"user-2", 6638},
		{"0f8fad5b-d9cb-469f-a165-70867728950e", 3371},
	}
	for _, tc := range tests {
		if got := KeyBucket([]byte(tc.key)); got != tc.want {
			t.Errorf("KeyBucket(%q) = %d, want %d", tc.key, got, tc.want)
		}
	}
}

func TestPickKeyMonotoneRamp(t *testing.T) {
	ks := keys(20000)
	ramp := []spec.Percent{0, 1, 500, 2500, 5000, 7500, 9999, 10000}
	for _, canaryFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("canaryFirst=%v", canaryFirst), func(t *testing.T) {
			canary := 1
			if canaryFirst {
				canary = 0
			}
			onCanary := func(w spec.Percent) []bool {
				ep := endpoint(spec.Full-w, w)
				if canaryFirst {
					ep = endpoint(w, spec.Full-w)
				}
				tb := mustCompile(t, ep)
				out := make([]bool, len(ks))
				for i, k := range ks {
					out[i] = tb.PickKey(k) == canary
				}
				return out
			}
			prev := onCanary(ramp[0])
			for _, w := range ramp[1:] {
				cur := onCanary(w)
				n := 0
				for i := range ks {
					if prev[i] && !cur[i] {
						t.Fatalf("key %s left the canary when its weight grew to %s", ks[i], w)
					}
					if cur[i] {
						n++
					}
				}
				// The hash spreads keys evenly: the share is within 1.5 pp.
				if share := float64(n) / float64(len(ks)); share < w.Fraction()-0.015 || share > w.Fraction()+0.015 {
					t.Errorf("at %s%% the canary holds %.4f of keys", w, share)
				}
				prev = cur
			}
		})
	}
}

func TestZeroAllocs(t *testing.T) {
	tb := mustCompile(t, endpoint(9500, 500))
	key := []byte("user-42")
	name := []byte("d1")
	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"Pick", func() { tb.Pick() }},
		{"PickKey", func() { tb.PickKey(key) }},
		{"Index", func() { tb.Index(name) }},
	} {
		if got := testing.AllocsPerRun(1000, tc.fn); got != 0 {
			t.Errorf("%s allocates %v times per run, want 0", tc.name, got)
		}
	}
}

func BenchmarkPick(b *testing.B) {
	tb := mustCompile(b, endpoint(9500, 500))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tb.Pick()
		}
	})
}

func BenchmarkPickKey(b *testing.B) {
	tb := mustCompile(b, endpoint(9500, 500))
	key := []byte("0f8fad5b-d9cb-469f-a165-70867728950e")
	b.ReportAllocs()
	for b.Loop() {
		tb.PickKey(key)
	}
}

func BenchmarkIndex(b *testing.B) {
	tb := mustCompile(b, endpoint(9500, 500))
	name := []byte("d1")
	b.ReportAllocs()
	for b.Loop() {
		tb.Index(name)
	}
}
