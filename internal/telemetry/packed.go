package telemetry

import (
	"bytes"
	"encoding/binary"
	"errors"
	mathbits "math/bits"
	"slices"
	"sync"
	"sync/atomic"
)

// A packed slice is a sealed slice's counts in compact form:
//
//	12 uvarints      the status-class counts, split-routed [0..5] then override [0..5]
//	runs(latency)    the latency buckets
//	runs(ttfb)       the TTFB buckets
//
// where runs is a uvarint count of runs of consecutive non-zero buckets,
// then for each run a uvarint token gap<<2|kind (gap: the zero buckets
// skipped since the end of the previous run, or from bucket 0), then by
// kind: runOne, a lone bucket counting 1, nothing more; runSingle, a lone
// bucket, its uvarint count; runMany, the uvarint number of buckets and
// their uvarint counts. So a lone request's bucket takes 1 byte (2 when
// 32 or more empty buckets precede it), the sparse slices of light traffic
// and of distributions' tails cost about a byte a bucket, and even every
// bucket full (all 1159, counts below 128) takes about 1 byte a bucket, a
// quarter of the dense array's 4.
var errPacked = errors.New("telemetry: invalid packed slice")

// appendPacked appends the packed form of the counts to b.
func appendPacked[T uint32 | uint64](b []byte, classes *[2][numClasses]uint64, lat, ttfb *[maxBuckets]T) []byte {
	for i := range classes {
		for j := range classes[i] {
			b = binary.AppendUvarint(b, classes[i][j])
		}
	}
	b = appendRuns(b, lat[:])
	return appendRuns(b, ttfb[:])
}

func appendRuns[T uint32 | uint64](b []byte, d []T) []byte {
	runs := 0
	for i := 0; i < len(d); i++ {
		if d[i] != 0 && (i == 0 || d[i-1] == 0) {
			runs++
		}
	}
	b = binary.AppendUvarint(b, uint64(runs))
	prev := 0
	for i := 0; i < len(d); {
		if d[i] == 0 {
			i++
			continue
		}
		j := i
		for j < len(d) && d[j] != 0 {
			j++
		}
		var counts bool
		if b, counts = appendRunHeader(b, i-prev, j-i, uint64(d[i])); counts {
			for _, c := range d[i:j] {
				b = binary.AppendUvarint(b, uint64(c))
			}
		}
		prev, i = j, j
	}
	return b
}

// Run kinds, the low two bits of a run's token (gap<<2 | kind).
const (
	runOne    = 0 // one bucket counting 1: nothing follows
	runSingle = 1 // one bucket: its count follows
	runMany   = 2 // several buckets: their number, then their counts
)

// appendRunHeader appends the token (and length) of a run of n buckets,
// gap after the previous one, whose first count is first; counts reports
// whether the run's counts must follow.
func appendRunHeader(b []byte, gap, n int, first uint64) (_ []byte, counts bool) {
	switch {
	case n == 1 && first == 1:
		return binary.AppendUvarint(b, uint64(gap)<<2|runOne), false
	case n == 1:
		return binary.AppendUvarint(b, uint64(gap)<<2|runSingle), true
	}
	b = binary.AppendUvarint(b, uint64(gap)<<2|runMany)
	return binary.AppendUvarint(b, uint64(n)), true
}

// addPacked adds the counts of packed slice b to classes, lat and ttfb. It
// refuses (errPacked) what appendPacked cannot have written: truncated or
// trailing bytes, buckets outside the layout, counts that overflow T. On
// error some counts may have been added.
func addPacked[T uint32 | uint64](b []byte, classes *[2][numClasses]uint64, lat, ttfb *[maxBuckets]T) error {
	return addPackedTouched(b, classes, lat, ttfb, nil)
}

// addPackedTouched is addPacked that also sets, in touched (unless nil),
// the bit of every bucket it adds to.
func addPackedTouched[T uint32 | uint64](b []byte, classes *[2][numClasses]uint64, lat, ttfb *[maxBuckets]T, touched *[touchedWords]uint64) error {
	for i := range classes {
		for j := range classes[i] {
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return errPacked
			}
			classes[i][j] += v
			b = b[n:]
		}
	}
	var err error
	if b, err = addRuns(b, lat, touched); err != nil {
		return err
	}
	if b, err = addRuns(b, ttfb, touched); err != nil {
		return err
	}
	if len(b) != 0 {
		return errPacked
	}
	return nil
}

func addRuns[T uint32 | uint64](b []byte, d *[maxBuckets]T, touched *[touchedWords]uint64) ([]byte, error) {
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	runs, ok := next()
	if !ok || runs > maxBuckets {
		return nil, errPacked
	}
	pos := uint64(0)
	for range runs {
		tok, ok1 := next()
		gap, n, ok2 := tok>>2, uint64(1), true
		switch tok & 3 {
		case runMany:
			n, ok2 = next()
		case runOne, runSingle:
		default:
			return nil, errPacked
		}
		if !ok1 || !ok2 || gap > maxBuckets-pos || n > maxBuckets-pos-gap {
			return nil, errPacked
		}
		pos += gap
		for range n {
			v, ok := uint64(1), true
			if tok&3 != runOne {
				v, ok = next()
			}
			if !ok || uint64(T(v)) != v {
				return nil, errPacked
			}
			d[pos] += T(v)
			if touched != nil {
				touched[pos/64] |= 1 << (pos % 64)
			}
			pos++
		}
	}
	return b, nil
}

// packScratch is the compactor's working space: a second or a 10-s period
// unpacked, with a bit per bucket that may be non-zero so that clearing and
// packing it visit only those (a sealed slice usually has a few), and the
// buffer it is packed into before being copied at its exact size.
type packScratch struct {
	classes [2][numClasses]uint64
	lat     [maxBuckets]uint64
	ttfb    [maxBuckets]uint64
	touched [touchedWords]uint64
	idx     []int
	buf     []byte
}

var packScratches = sync.Pool{New: func() any { return new(packScratch) }}

func (p *packScratch) reset() {
	p.classes = [2][numClasses]uint64{}
	for w := range p.touched {
		for bits := p.touched[w]; bits != 0; bits &= bits - 1 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			p.lat[i], p.ttfb[i] = 0, 0
		}
		p.touched[w] = 0
	}
}

// addLive adds live slice d's counts (of no writer: sealed).
func (p *packScratch) addLive(d *live) {
	for i := range d.classes {
		for j := range d.classes[i] {
			p.classes[i][j] += d.classes[i][j].Load()
		}
	}
	for w := range d.touched {
		bits := d.touched[w].Load()
		p.touched[w] |= bits
		for ; bits != 0; bits &= bits - 1 {
			i := w*64 + mathbits.TrailingZeros64(bits)
			p.lat[i] += uint64(d.lat[i].Load())
			p.ttfb[i] += uint64(d.ttfb[i].Load())
		}
	}
}

// fold returns ps with the lives added: ps's data unpacked (if it holds
// epoch), the lives added, packed again at its exact size.
//
// With room set (a 10-s slice still filling up: it is folded again as each
// of its seconds is sealed), the result is written over ps's bytes when
// they have the capacity, and gets twice what it needs when they have
// not: a period's ten folds then make two or three allocations instead of
// ten, the garbage of a fast replay a fraction. Without room (a 1-s slice,
// or a period whose seconds are all sealed) it gets its exact size. Only
// the compactor and readers holding Recorder.mu touch packed bytes, and
// readers keep none after unlocking, so writing over them is safe.
func (p *packScratch) fold(ps packedSlice, epoch int64, lives []*live, room bool) packedSlice {
	p.reset()
	if ps.epoch == epoch+1 {
		_ = addPackedTouched(ps.data, &p.classes, &p.lat, &p.ttfb, &p.touched) // our own bytes: they decode
	} else {
		ps.data = ps.data[:0] // another period's bytes: free to reuse
	}
	for _, d := range lives {
		p.addLive(d)
	}
	p.buf = p.pack(p.buf[:0])
	switch {
	case room && len(p.buf) <= cap(ps.data):
		ps.data = append(ps.data[:0], p.buf...)
	case room:
		ps.data = append(make([]byte, 0, 2*len(p.buf)), p.buf...)
	case len(p.buf) == cap(ps.data):
		ps.data = append(ps.data[:0], p.buf...)
	default:
		ps.data = bytes.Clone(p.buf)
	}
	return packedSlice{epoch: epoch + 1, data: ps.data}
}

// pack is appendPacked of the scratch, visiting only the touched buckets.
func (p *packScratch) pack(b []byte) []byte {
	for i := range p.classes {
		for j := range p.classes[i] {
			b = binary.AppendUvarint(b, p.classes[i][j])
		}
	}
	for _, d := range []*[maxBuckets]uint64{&p.lat, &p.ttfb} {
		p.idx = p.idx[:0]
		for w := range p.touched {
			for bits := p.touched[w]; bits != 0; bits &= bits - 1 {
				if i := w*64 + mathbits.TrailingZeros64(bits); d[i] != 0 {
					p.idx = append(p.idx, i)
				}
			}
		}
		runs := 0
		for k, i := range p.idx {
			if k == 0 || p.idx[k-1] != i-1 {
				runs++
			}
		}
		b = binary.AppendUvarint(b, uint64(runs))
		prev := 0
		for k := 0; k < len(p.idx); {
			j := k + 1
			for j < len(p.idx) && p.idx[j] == p.idx[j-1]+1 {
				j++
			}
			i, n := p.idx[k], j-k
			var counts bool
			if b, counts = appendRunHeader(b, i-prev, n, d[i]); counts {
				for _, i := range p.idx[k:j] {
					b = binary.AppendUvarint(b, d[i])
				}
			}
			prev, k = i+n, j
		}
	}
	return b
}

// The compactor seals live slices into packed ones, off the hot path: one
// goroutine for the whole process, started when a recorder needs it (a
// writer opened a new second, or pushed an unsealed slice out of its slot)
// and gone when no recorder does, so that an idle process runs nothing
// and tests see no goroutine left behind. Starting it is a `go` of a
// plain function: no allocation on the writer's side.
var compactQueue struct {
	head    atomic.Pointer[Recorder]
	running atomic.Bool
}

// kick queues rc for the compactor, once until the compactor takes it.
func (rc *Recorder) kick() {
	if rc.queued.Load() || !rc.queued.CompareAndSwap(false, true) {
		return
	}
	for {
		h := compactQueue.head.Load()
		rc.nextQueued.Store(h)
		if compactQueue.head.CompareAndSwap(h, rc) {
			break
		}
	}
	if compactQueue.running.CompareAndSwap(false, true) {
		startCompactor()
	}
}

// startCompactor starts the compactor; a test replaces it to run the
// compactor itself, between the stretches it measures.
var startCompactor = func() { go compactQueued() }

func compactQueued() {
	for {
		for rc := compactQueue.head.Swap(nil); rc != nil; {
			next := rc.nextQueued.Swap(nil)
			rc.queued.Store(false) // a kick from now on queues it again
			rc.compact()
			rc = next
		}
		compactQueue.running.Store(false)
		if compactQueue.head.Load() == nil || !compactQueue.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// compact seals what can be sealed: the live slices of seconds more than
// keepLive before the newest one into their 1-s packed slice and their
// 10-s one, and the slices rotated out unsealed into their 10-s one.
func (rc *Recorder) compact() {
	r := rc.ring.Load()
	if r == nil {
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	before := rc.newest.Load() - 1 - keepLive
	var sealed []*live
	for i := range r.slots {
		s := &r.slots[i]
		d := s.live.Load()
		if d == nil || d.epoch >= before || !s.guard.Lock(uint64(d.epoch)) {
			continue // nothing live, too recent, or rotated out meanwhile (then on the sealed stack)
		}
		d = s.live.Swap(nil)
		s.guard.Unlock()
		if d != nil {
			sealed = append(sealed, d)
		}
	}
	p := packScratches.Get().(*packScratch)
	defer packScratches.Put(p)
	for _, d := range sealed {
		s := &r.slots[d.epoch%fineSlices]
		s.packed = p.fold(s.packed, d.epoch, []*live{d}, false)
	}
	rc.foldCoarse(r, p, append(sealed, rc.takeSealed()...))
}

// drainLocked folds the slices rotated out unsealed into the 10-s tier;
// readers of that tier call it first. The caller holds rc.mu.
func (rc *Recorder) drainLocked(r *ring) {
	if rc.sealed.Load() == nil {
		return
	}
	p := packScratches.Get().(*packScratch)
	defer packScratches.Put(p)
	rc.foldCoarse(r, p, rc.takeSealed())
}

func (rc *Recorder) takeSealed() []*live {
	var out []*live
	for d := rc.sealed.Swap(nil); d != nil; d = d.next {
		out = append(out, d)
	}
	return out
}

// foldCoarse adds the sealed lives to their 10-s packed slices (one unpack
// and pack per period), then clears them for reuse. A period whose ring
// position already holds a newer one has aged out: its lives are dropped.
func (rc *Recorder) foldCoarse(r *ring, p *packScratch, lives []*live) {
	before := rc.newest.Load() - 1 - keepLive // seconds before it are sealed or stragglers
	slices.SortFunc(lives, func(a, b *live) int { return int(a.epoch - b.epoch) })
	for i := 0; i < len(lives); {
		c := lives[i].epoch / coarseWidth
		j := i
		for j < len(lives) && lives[j].epoch/coarseWidth == c {
			j++
		}
		if cs := &r.coarse[c%coarseSlices]; cs.epoch <= c+1 {
			*cs = p.fold(*cs, c, lives[i:j], (c+1)*coarseWidth > before)
		}
		i = j
	}
	for _, d := range lives {
		d.clear()
		rc.giveSpare(d)
	}
}
