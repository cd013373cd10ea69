// Package router compiles an endpoint's traffic weights into an immutable
// routing table and picks a deployment per request without allocating.
//
// The split has a resolution of 0.01%: the unit interval is cut into
// Buckets (10000) buckets and every deployment owns a contiguous range of
// them, in config order, as wide as its weight in hundredths of a percent.
// A weighted pick and a sticky pick both map a request to a bucket and
// return the deployment owning it; they differ only in how the bucket is
// chosen.
package router

import (
	"errors"
	"fmt"
	"math/bits"
	"sync/atomic"

	"github.com/modelgate/modelgate/internal/spec"
)

// Buckets is the number of buckets the split is cut into: one per 0.01%,
// so that spec.Percent maps onto buckets exactly.
const Buckets = int(spec.Full)

// stride walks the buckets in a scrambled order: bucket(n) = n*stride mod
// Buckets. Because stride is coprime with Buckets (7919 is prime and does
// not divide 10000) the map is a permutation, so every Buckets consecutive
// picks visit every bucket exactly once and each deployment gets exactly
// its configured share. 7919/10000 has small partial quotients in its
// continued fraction, which keeps the sequence well interleaved: over any
// 100 consecutive picks a 5% deployment gets 5±1 of them, where a plain
// counter would send it 500 requests in a row once every 10000.
const stride = 7919

// ErrNoDeployments is returned by Compile for an endpoint without deployments.
var ErrNoDeployments = errors.New("endpoint has no deployments")

// Table is the compiled, immutable routing table of one endpoint. Its
// methods are safe for concurrent use and allocate nothing.
type Table struct {
	// upper[i] is the exclusive upper bucket of deployment i; deployment i
	// owns [upper[i-1], upper[i]). A deployment with weight 0 owns an empty
	// range and is never picked by the split.
	upper []int32
	names []string
	index map[string]int
	// counter numbers the split picks. It is a pointer so that a table
	// compiled by Recompile continues its predecessor's sequence.
	counter *atomic.Uint64
}

// Compile builds the table of ep: deployments in config order, weights from
// ep.Traffic in hundredths of a percent, which must name only deployments
// of ep and sum to 100%. A fresh table starts its pick sequence at zero.
func Compile(ep spec.Endpoint) (*Table, error) {
	return compile(ep, new(atomic.Uint64))
}

// Recompile builds the table of ep like Compile, but the new table
// continues t's pick sequence. Route changes can be frequent (every apply,
// every rollout step); restarting the sequence at zero each time would
// favour the first deployments' buckets and skew the realised split.
func (t *Table) Recompile(ep spec.Endpoint) (*Table, error) {
	return compile(ep, t.counter)
}

func compile(ep spec.Endpoint, counter *atomic.Uint64) (*Table, error) {
	if len(ep.Deployments) == 0 {
		return nil, fmt.Errorf("compile endpoint %q: %w", ep.Name, ErrNoDeployments)
	}
	t := &Table{
		upper:   make([]int32, len(ep.Deployments)),
		names:   make([]string, len(ep.Deployments)),
		index:   make(map[string]int, len(ep.Deployments)),
		counter: counter,
	}
	var sum int32
	for i, d := range ep.Deployments {
		if _, dup := t.index[d.Name]; dup {
			return nil, fmt.Errorf("compile endpoint %q: duplicate deployment %q", ep.Name, d.Name)
		}
		w := ep.Traffic[d.Name]
		if w < 0 || w > spec.Full {
			return nil, fmt.Errorf("compile endpoint %q: weight %s of %q is outside 0..100", ep.Name, w, d.Name)
		}
		sum += int32(w)
		t.upper[i] = sum
		t.names[i] = d.Name
		t.index[d.Name] = i
	}
	for name := range ep.Traffic {
		if _, ok := t.index[name]; !ok {
			return nil, fmt.Errorf("compile endpoint %q: traffic names unknown deployment %q", ep.Name, name)
		}
	}
	if sum != int32(spec.Full) {
		return nil, fmt.Errorf("compile endpoint %q: weights sum to %s, they must sum to 100", ep.Name, spec.Percent(sum))
	}
	return t, nil
}

// Len returns the number of deployments.
func (t *Table) Len() int { return len(t.names) }

// Name returns the name of deployment i (an index returned by a pick).
func (t *Table) Name(i int) string { return t.names[i] }

// Pick returns the index, into the endpoint's deployments, of the
// deployment that serves the next split-routed request. Every Buckets
// consecutive picks give each deployment exactly its weight.
func (t *Table) Pick() int {
	n := t.counter.Add(1) - 1
	return t.owner(int32(n % uint64(Buckets) * stride % uint64(Buckets)))
}

// PickKey returns the deployment for a sticky key: the key hashes to a
// fixed bucket, so a key stays on one deployment while the weights do not
// change. Because ranges are contiguous in config order, growing the last
// (or the first) deployment at the expense of the others only moves keys
// to it: a key on the canary at 5% is still on it at 25%.
func (t *Table) PickKey(key []byte) int {
	return t.owner(KeyBucket(key))
}

// Index returns the index of the deployment named name, for the
// X-Model-Deployment override. A lookup with m[string(b)] does not allocate.
func (t *Table) Index(name []byte) (int, bool) {
	i, ok := t.index[string(name)]
	return i, ok
}

// owner returns the deployment owning bucket b. Endpoints have a handful of
// deployments, so a linear scan beats a binary search or a 10000-entry
// lookup table (which would cost a cache miss per pick).
func (t *Table) owner(b int32) int {
	for i, u := range t.upper {
		if b < u {
			return i
		}
	}
	// Unreachable: upper ends at Buckets and b < Buckets.
	return len(t.upper) - 1
}

// FNV-1a 64-bit parameters.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// KeyBucket returns the bucket in [0, Buckets) of a sticky key. It is a
// fixed function of the key (FNV-1a 64 with a murmur3 finaliser, then a
// multiply-shift range reduction), stable across processes and restarts;
// changing it would move every sticky user, so it must never change.
func KeyBucket(key []byte) int32 {
	h := uint64(fnvOffset)
	for _, c := range key {
		h ^= uint64(c)
		h *= fnvPrime
	}
	// FNV's high bits mix poorly for short keys that differ in the last
	// byte; the finaliser spreads every input bit over the whole word.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	hi, _ := bits.Mul64(h, uint64(Buckets))
	return int32(hi)
}
