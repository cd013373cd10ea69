package timeslot

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGuardCountsEachWriteInItsOwnEpoch(t *testing.T) {
	// Writers of consecutive epochs race on one slot: every write of the
	// newest epoch must be in the slot, none of an older one, and a reset
	// never erases a write in progress.
	var g Guard
	var n atomic.Int64
	resets := 0
	reset := func() { n.Store(0); resets++ }
	const epochs, writers, perWriter = 50, 4, 200
	var accepted [epochs]atomic.Int64
	for e := range uint64(epochs) {
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for range perWriter {
					// Half the writes come late, for the previous epoch.
					for _, ep := range []uint64{e, max(e, 1) - 1} {
						if g.Enter(ep, reset) {
							n.Add(1)
							accepted[ep].Add(1)
							g.Leave()
						}
					}
				}
			})
		}
		wg.Wait()
		if !g.Holds(e) || (e > 0 && g.Holds(e-1)) {
			t.Fatalf("after epoch %d: Holds(e) %v, Holds(e-1) %v", e, g.Holds(e), e > 0 && g.Holds(e-1))
		}
		if got, want := n.Load(), accepted[e].Load(); got != want {
			t.Fatalf("epoch %d: slot counts %d, want exactly the %d writes Enter let in", e, got, want)
		}
		if accepted[e].Load() < writers*perWriter {
			t.Fatalf("epoch %d: only %d of its own %d writes were let in", e, accepted[e].Load(), writers*perWriter)
		}
	}
	if resets != epochs {
		t.Errorf("%d resets for %d epochs", resets, epochs)
	}
	var fresh Guard
	if fresh.Holds(0) {
		t.Error("a zero Guard holds epoch 0")
	}
}

func TestSliceArithmetic(t *testing.T) {
	s := int64(time.Second)
	for _, c := range []struct{ lo, hi, first, last int64 }{
		{0, s, 1, 1},                 // (0, 1s]: the slice starting at 1 s
		{-s / 2, s / 2, 0, 0},        // straddling zero
		{-3 * s, -s, -2, -1},         // before 1970
		{10*s + 1, 10*s + 1, 11, 10}, // empty
	} {
		if f, l := SecondsIn(c.lo, c.hi); f != c.first || l != c.last {
			t.Errorf("SecondsIn(%d, %d) = %d, %d, want %d, %d", c.lo, c.hi, f, l, c.first, c.last)
		}
	}
	for _, c := range []struct{ a, b, floor, ceil int64 }{
		{7, 10, 0, 1}, {10, 10, 1, 1}, {-7, 10, -1, 0}, {-10, 10, -1, -1}, {0, 10, 0, 0},
	} {
		if got := FloorDiv(c.a, c.b); got != c.floor {
			t.Errorf("FloorDiv(%d, %d) = %d, want %d", c.a, c.b, got, c.floor)
		}
		if got := CeilDiv(c.a, c.b); got != c.ceil {
			t.Errorf("CeilDiv(%d, %d) = %d, want %d", c.a, c.b, got, c.ceil)
		}
	}
}

func TestGuardResetKeepsABackingOutWritersAdd(t *testing.T) {
	// A writer of the old epoch loads the state, a writer of the new epoch
	// swaps it to resetting, the old writer adds itself (the fast path adds
	// before it checks), the reset ends, and only then does the old writer,
	// having seen the mismatch, take itself off again. Ending the reset must
	// keep that add, or taking it off borrows from the epoch bits: the slot
	// would claim the old epoch with a reset running and 2^31-1 writers
	// inside, and every later Enter would spin forever.
	var g Guard
	if !g.Enter(0, func() {}) {
		t.Fatal("Enter(0) on a zero Guard refused")
	}
	g.Leave()
	if !g.Enter(1, func() { g.state.Add(1) }) { // the old writer's add, mid-reset
		t.Fatal("Enter(1) refused")
	}
	g.state.Add(^uint64(0)) // the old writer backs out
	g.Leave()
	if !g.Holds(1) || g.Holds(0) {
		t.Fatalf("after the reset: state %#x, want epoch 1 held, no writer inside", g.state.Load())
	}
	if st := g.state.Load(); st&writerMask != 0 {
		t.Fatalf("after the reset: %d writers inside, want 0", st&writerMask)
	}
}

func TestGuardLockKeepsWritersOut(t *testing.T) {
	// Writers of one epoch race with Lock/Unlock sections: no write is ever
	// inside a section, and every write is let in.
	var g Guard
	var inside atomic.Int64
	var sectionBroken atomic.Bool
	const writers, perWriter = 4, 2000
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range perWriter {
				if !g.Enter(7, func() {}) {
					t.Error("Enter(7) refused")
					return
				}
				inside.Add(1)
				inside.Add(-1)
				g.Leave()
			}
		})
	}
	locks := 0
	for range 500 {
		if g.Lock(7) {
			if inside.Load() != 0 {
				sectionBroken.Store(true)
			}
			locks++
			g.Unlock()
		}
	}
	wg.Wait()
	if sectionBroken.Load() {
		t.Error("a writer was inside a Lock section")
	}
	if g.Lock(6) || g.Lock(8) {
		t.Error("Lock of an epoch the slot does not hold succeeded")
	}
	if !g.Lock(7) {
		t.Fatal("Lock(7) failed with no writer inside")
	}
	g.Unlock()
	if !g.Holds(7) {
		t.Errorf("after Unlock: state %#x, want epoch 7 held", g.state.Load())
	}
}
