// Package timeslot is the shared machinery of modelgate's rings of time
// slices (telemetry's per-deployment counters and the shadows' comparison
// counters): the guard that lets many writers count into a slot lock-free
// while the slot is reused for newer slices, and the arithmetic that maps
// times to slice numbers.
package timeslot

import (
	"runtime"
	"sync/atomic"
	"time"
)

// Guard is the state word of one ring slot. It packs, from the top: the
// epoch (slice number) the slot holds plus one (0: never used), a
// resetting flag, and the number of writers inside. Writers enter only
// while the epoch is theirs and nobody resets; a writer of a newer epoch
// resets the slot only once no writer is inside. So a late writer never
// adds into the next epoch's counts, a reset never erases a write in
// progress, and every count lands exactly once, in its own slice.
//
// The zero Guard holds no epoch.
type Guard struct{ state atomic.Uint64 }

const (
	epochShift = 32
	resetting  = 1 << 31
	writerMask = resetting - 1
)

// Enter registers a writer for epoch. If the slot holds an older epoch it
// first calls reset (with no writer inside) and takes the slot for epoch.
// It returns false, registering nothing, when the slot holds a newer
// epoch. Every Enter that returned true must be followed by one Leave.
func (g *Guard) Enter(epoch uint64, reset func()) bool {
	want := (epoch + 1) << epochShift
	for {
		st := g.state.Load()
		switch cur := st &^ (resetting | writerMask); {
		case cur == want && st&resetting == 0:
			// Fast path. Adding first and checking after is what makes it
			// exact: a resetter needs the writer count at zero.
			if st = g.state.Add(1); st&^(resetting|writerMask) == want && st&resetting == 0 {
				return true
			}
			g.state.Add(^uint64(0))
		case cur > want:
			return false
		case cur < want && st&(resetting|writerMask) == 0:
			if g.state.CompareAndSwap(st, want|resetting) {
				reset()
				// Clear only the flag: a writer that loaded the state
				// before the swap may have added itself meanwhile and
				// will take itself off again (it sees the flag, or the
				// new epoch). Storing want would erase its add, and its
				// leaving would then borrow from the epoch.
				g.state.Add(^uint64(resetting - 1))
			}
			continue
		}
		// Someone is resetting, or a late writer of the old epoch is still
		// inside: it is a handful of atomic adds away from leaving.
		runtime.Gosched()
	}
}

// Leave ends a write that Enter let in.
func (g *Guard) Leave() { g.state.Add(^uint64(0)) }

// Lock takes the slot holding epoch for a short section no writer is in:
// it waits (yielding) for the writers inside to leave, then keeps new ones
// out until Unlock, as a reset does. It returns false, taking nothing, when
// the slot does not hold epoch. Telemetry's compactor uses it to detach a
// slot's live counts; writers that arrive meanwhile wait a few atomic
// operations, as they do for a reset.
func (g *Guard) Lock(epoch uint64) bool {
	want := (epoch + 1) << epochShift
	for {
		st := g.state.Load()
		if st&^(resetting|writerMask) != want {
			return false
		}
		if st&(resetting|writerMask) == 0 && g.state.CompareAndSwap(st, st|resetting) {
			return true
		}
		runtime.Gosched()
	}
}

// Unlock ends a section Lock began. Like the end of a reset it clears only
// the flag: a writer that added itself meanwhile takes itself off again.
func (g *Guard) Unlock() { g.state.Add(^uint64(resetting - 1)) }

// Settled reports whether no reset (or Lock section) is running: a reader
// that must know where a reset moves the old epoch's data waits for it.
func (g *Guard) Settled() bool { return g.state.Load()&resetting == 0 }

// Holds reports whether the slot holds epoch's data right now (and no
// reset is running). A reader copies the slot between two calls and keeps
// the copy only if both hold: otherwise the slot was reset for a newer
// epoch meanwhile and the copy is torn (its data has just aged out).
func (g *Guard) Holds(epoch uint64) bool {
	st := g.state.Load()
	return st&^(resetting|writerMask) == (epoch+1)<<epochShift && st&resetting == 0
}

// SecondsIn returns the first and last unix second whose start lies in
// the nanosecond interval (lo, hi]: the slices a window ending at hi holds.
func SecondsIn(lo, hi int64) (first, last int64) {
	const ns = int64(time.Second)
	return FloorDiv(lo, ns) + 1, FloorDiv(hi, ns)
}

// FloorDiv is a/b rounded towards minus infinity (b > 0).
func FloorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// CeilDiv is a/b rounded towards plus infinity (b > 0).
func CeilDiv(a, b int64) int64 { return -FloorDiv(-a, b) }
