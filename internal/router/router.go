// Package router compiles an endpoint's traffic weights into an immutable
// routing table and picks a deployment per request without allocating.
//
// The split has a resolution of 0.01%: the unit interval is cut into
// Buckets (10000) buckets and every deployment owns a contiguous range of
// them, in config order, as wide as its weight in hundredths of a percent.
// A weighted pick and a sticky pick both map a request to a bucket and
// return the deployment owning it; they differ only in how the bucket is
// chosen.
//
// The table also holds the endpoint's mirror: for each request, Mirrors
// says which deployments get a shadow copy. Every shadow deployment draws
// its own sample (see Mirrors).
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

// MaxMirrorIndex is the largest deployment index that may have a mirror
// percent: Mirrors answers with a 64-bit set of indices.
const MaxMirrorIndex = 63

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

	// mirror[i] is the mirror percent of deployment i in hundredths of a
	// percent (a bucket count); mirrorSet has bit i set when it is > 0.
	mirror    []int32
	mirrorSet uint64
	// mirrorCounter numbers the requests sampled by sequence (Mirrors
	// without a key), shared with Recompiled tables like counter.
	mirrorCounter *atomic.Uint64
}

// Compile builds the table of ep: deployments in config order, weights from
// ep.Traffic in hundredths of a percent, which must name only deployments
// of ep and sum to 100%, and mirror percents from ep.Mirror, each 0..100%,
// naming only deployments of ep (at most MaxMirrorIndex+1 of them may be
// mirrored to). A fresh table starts its pick and mirror sequences at zero.
func Compile(ep spec.Endpoint) (*Table, error) {
	return compile(ep, new(atomic.Uint64), new(atomic.Uint64))
}

// Recompile builds the table of ep like Compile, but the new table
// continues t's pick and mirror sequences. Route changes can be frequent
// (every apply, every rollout step); restarting the sequence at zero each
// time would favour the first deployments' buckets and skew the realised
// split.
func (t *Table) Recompile(ep spec.Endpoint) (*Table, error) {
	return compile(ep, t.counter, t.mirrorCounter)
}

func compile(ep spec.Endpoint, counter, mirrorCounter *atomic.Uint64) (*Table, error) {
	if len(ep.Deployments) == 0 {
		return nil, fmt.Errorf("compile endpoint %q: %w", ep.Name, ErrNoDeployments)
	}
	t := &Table{
		upper:         make([]int32, len(ep.Deployments)),
		names:         make([]string, len(ep.Deployments)),
		index:         make(map[string]int, len(ep.Deployments)),
		counter:       counter,
		mirror:        make([]int32, len(ep.Deployments)),
		mirrorCounter: mirrorCounter,
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
	for name, p := range ep.Mirror {
		i, ok := t.index[name]
		switch {
		case !ok:
			return nil, fmt.Errorf("compile endpoint %q: mirror names unknown deployment %q", ep.Name, name)
		case p < 0 || p > spec.Full:
			return nil, fmt.Errorf("compile endpoint %q: mirror percent %s of %q is outside 0..100", ep.Name, p, name)
		case p > 0 && i > MaxMirrorIndex:
			return nil, fmt.Errorf("compile endpoint %q: cannot mirror to %q: only the first %d deployments can be mirrored to",
				ep.Name, name, MaxMirrorIndex+1)
		}
		t.mirror[i] = int32(p)
		if p > 0 {
			t.mirrorSet |= 1 << i
		}
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

// HasMirrors reports whether any deployment has a mirror percent above
// zero, i.e. whether Mirrors can return a non-empty set.
func (t *Table) HasMirrors() bool { return t.mirrorSet != 0 }

// Mirrors returns the set of deployments that get a shadow copy of the
// next request, as a bit set of deployment indices (bit i: deployment i).
// It may include the deployment serving the request live; the caller
// decides what to do with it.
//
// Every shadow deployment draws its own sample, independent of the other
// shadows' and of the live split, so that two 10% mirrors are not the same
// 10% of requests (they overlap on about 1% of them):
//
//   - Without a key, by request: deployment i mirrors request n of the
//     table's mirror sequence when frac(n·α_i) falls under its percent,
//     where α_i is a fixed irrational (the fractional part of the square
//     root of a squarefree number, one per index). Such a Kronecker
//     sequence is low-discrepancy: a 10% mirror gets 10% of any 10000
//     consecutive requests within ±3, and 5% of any 100 within ±2; and
//     for distinct α_i the pairs are jointly equidistributed, which is
//     the independence. The α_i were chosen by a search that checked both
//     properties for every pair of indices (see the tests).
//   - With a key (the endpoint's sticky header, when the request carries
//     it), by key: the key hashes with a per-deployment salt to a bucket,
//     so the same key is always mirrored to a deployment or never, and
//     raising a mirror percent only adds keys to it.
//
// It allocates nothing. With no mirror configured it returns 0 without
// touching the sequence.
func (t *Table) Mirrors(key []byte) uint64 {
	if t.mirrorSet == 0 {
		return 0
	}
	var set uint64
	if len(key) > 0 {
		h := fnv(key)
		for m := t.mirrorSet; m != 0; m &= m - 1 {
			i := bits.TrailingZeros64(m)
			if bucketOf(fmix(h^mirrorAlpha[i])) < t.mirror[i] {
				set |= 1 << i
			}
		}
		return set
	}
	n := t.mirrorCounter.Add(1) - 1
	for m := t.mirrorSet; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		// n·α_i mod 1 in 64-bit fixed point: the product wraps modulo 2^64.
		if bucketOf(n*mirrorAlpha[i]) < t.mirror[i] {
			set |= 1 << i
		}
	}
	return set
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
	return bucketOf(fmix(fnv(key)))
}

func fnv(key []byte) uint64 {
	h := uint64(fnvOffset)
	for _, c := range key {
		h ^= uint64(c)
		h *= fnvPrime
	}
	return h
}

// fmix is murmur3's 64-bit finaliser. FNV's high bits mix poorly for short
// keys that differ in the last byte; the finaliser spreads every input bit
// over the whole word.
func fmix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// bucketOf maps a 64-bit fraction of 1 to a bucket in [0, Buckets) by a
// multiply-shift range reduction.
func bucketOf(h uint64) int32 {
	hi, _ := bits.Mul64(h, uint64(Buckets))
	return int32(hi)
}

// mirrorAlpha[i] is α_i of deployment index i for Mirrors, as a 64-bit
// fraction of 1: frac(sqrt(d)) for the squarefree d in the comment. They
// double as the per-deployment salts of sticky mirror keys. They were
// picked greedily from increasing d, keeping a d when a 10% mirror drawn
// with it deviates by at most 3 requests from its share in windows of
// 10000 (2 in windows of 100, at shares from 0.01% to 90%), and its joint
// share with every α already kept is within 4% of the product of the two
// shares (10%x10%, 50%x50%, 5%x30%, 20%x20% over 100000 requests). Never
// reorder them: that would reshuffle which requests and keys are mirrored.
var mirrorAlpha = [MaxMirrorIndex + 1]uint64{
	0x6a09e667f3bcc908, // frac(sqrt(2))
	0xbb67ae8584caa73b, // frac(sqrt(3))
	0x3c6ef372fe94f82b, // frac(sqrt(5))
	0x7311c2812425cfa0, // frac(sqrt(6))
	0xa54ff53a5f1d36f1, // frac(sqrt(7))
	0x510e527fade682d1, // frac(sqrt(11))
	0x9b05688c2b3e6c1f, // frac(sqrt(13))
	0x9523ae4547a14ccc, // frac(sqrt(21))
	0xb0bf165515a9b348, // frac(sqrt(22))
	0x3eb83056b4e27892, // frac(sqrt(39))
	0xc846c71c3408c03c, // frac(sqrt(46))
	0x8cc1f315b3d6f707, // frac(sqrt(57))
	0x8b43d4570a51b936, // frac(sqrt(73))
	0x8a15985494d598dc, // frac(sqrt(91))
	0xb467369e08efd70e, // frac(sqrt(137))
	0xca320b75e2b634f9, // frac(sqrt(139))
	0x7420b49edc5a21ee, // frac(sqrt(181))
	0xc8b76b44b276126a, // frac(sqrt(190))
	0x2d6d289d0ac972a8, // frac(sqrt(201))
	0x869d6342f6d22822, // frac(sqrt(211))
	0xa0f5074c57c89246, // frac(sqrt(214))
	0x75a9f91d5813e9e8, // frac(sqrt(239))
	0xc79ca3060cd43136, // frac(sqrt(249))
	0xd7cd8173f479197a, // frac(sqrt(251))
	0x433ec467effb2580, // frac(sqrt(298))
	0x596f1acc669b16cf, // frac(sqrt(301))
	0x60ce41341d742ce0, // frac(sqrt(302))
	0x9411bfcb592e90ee, // frac(sqrt(309))
	0x236b5fbe771130ba, // frac(sqrt(329))
	0xc9cda6892035228a, // frac(sqrt(353))
	0xd768da651c6287a9, // frac(sqrt(355))
	0x502e64db5455ca07, // frac(sqrt(373))
	0xbc876ba7f6ec383d, // frac(sqrt(430))
	0x1e63ea3d95b07b3d, // frac(sqrt(446))
	0x308af161f4a4e085, // frac(sqrt(449))
	0xb3d94b9d59789edc, // frac(sqrt(471))
	0x39e2653e421ac114, // frac(sqrt(494))
	0x4b229b5ebf1a8a93, // frac(sqrt(497))
	0x620e350f0f43e392, // frac(sqrt(501))
	0xbcd594fa2a99d6f7, // frac(sqrt(517))
	0x2dea50d285cfc2fa, // frac(sqrt(634))
	0x6b70c7877dbf153a, // frac(sqrt(698))
	0xb3ba31acd8eb88c8, // frac(sqrt(713))
	0x25d28bacdcd24aae, // frac(sqrt(737))
	0xe484ccb65c140a72, // frac(sqrt(778))
	0xb01f3b9c740c2c33, // frac(sqrt(823))
	0xcad81c829a5f26e3, // frac(sqrt(829))
	0x2c01eb6e9763a932, // frac(sqrt(851))
	0xc1d2284fc275b52b, // frac(sqrt(946))
	0xc5fb4171d2dbeae4, // frac(sqrt(947))
	0xa64fd18d66793581, // frac(sqrt(1066))
	0xd91f66fe2bf9d135, // frac(sqrt(1079))
	0x1ef938c9f4ed1b1e, // frac(sqrt(1097))
	0x6440ed6cc789c9aa, // frac(sqrt(1115))
	0x749885102763685a, // frac(sqrt(1329))
	0x75305a29f199dbc5, // frac(sqrt(1479))
	0xdf2017d2708a7664, // frac(sqrt(1511))
	0x61fb12f0e9f5c599, // frac(sqrt(1551))
	0xc15fc7cfa33f55fd, // frac(sqrt(1661))
	0xc7a754907fb65be5, // frac(sqrt(1663))
	0xd4338858f68b803d, // frac(sqrt(1667))
	0x2b9ddf7b8514e4e7, // frac(sqrt(1695))
	0x4475ac9057d170f7, // frac(sqrt(1703))
	0x636e74b54ee0b3da, // frac(sqrt(1713))
}
